//! `earshot config check` on arbitrary text: never panics, every error names something.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = earshot::config::Config::from_toml(&text) {
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| !e.expected.is_empty()));
    }
    let _ = earshot::source::InputSpec::parse(&text);
});
