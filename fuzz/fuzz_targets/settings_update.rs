//! `PUT /api/settings` bodies on arbitrary bytes: never panics; a refused update names every
//! problem and changes nothing, an accepted one is a configuration that validates.
#![no_main]

use libfuzzer_sys::fuzz_target;

use earshot::config::Config;
use earshot::web::settings::SettingsStore;

const FILE: &str = "# site\n[detectors.glass_break]\nsensitivity = 60\n";

fuzz_target!(|data: &[u8]| {
    let Ok(update) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let before = Config::from_toml(FILE).unwrap();
    let mut store = SettingsStore::new(None, FILE, Box::new(|_| {}), before.clone()).unwrap();
    match store.apply(&update) {
        Ok(c) => {
            assert!(c.validate().is_empty());
            assert_eq!(store.current(), &c);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| !e.expected.is_empty()));
            assert_eq!(store.current(), &before);
        }
    }
    let _ = store.view();
});
