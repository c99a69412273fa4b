//! Settings from the app parameters (axparameter): read at start, re-read on every change.
//!
//! The parameters are those of [`crate::settings::DEVICE_SETTINGS`] (the manifest's
//! `paramConfig`); [`crate::settings::apply_device_params`] lays their values over the
//! configuration file. A value that does not validate is not taken: at start the parameter
//! falls back to its default (the file's value or Earshot's), at run time the previous value
//! stays in force; either way the problem is logged naming the parameter, the value and what
//! is expected.

use std::collections::BTreeMap;

use earshot_sdk::parameter::Parameters;

use crate::config::{Config, ConfigError};
use crate::settings::{apply_device_params, find, DeviceSetting, ParamKind, DEVICE_SETTINGS};

/// The current value of every declared parameter the device has, by name. A parameter the
/// device does not list (an older package's `param.conf`) is left out, so its default applies;
/// each one is returned in the second list as a message.
pub fn read_values(params: &Parameters) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for s in DEVICE_SETTINGS {
        match params.get(s.name) {
            Ok(v) => {
                values.insert(s.name.to_owned(), v);
            }
            Err(e) => missing.push(format!("parameter {}: {e}; its default applies", s.name)),
        }
    }
    (values, missing)
}

/// The parameter an error is about: `parameter <Name>` errors by name, range errors by the
/// TOML key the parameter sets.
fn setting_of(e: &ConfigError) -> Option<&'static DeviceSetting> {
    match e.key.strip_prefix("parameter ") {
        Some(name) => find(name),
        None => DEVICE_SETTINGS.iter().find(|s| s.key == e.key),
    }
}

/// The configuration from `base_toml` and the parameter `values`, then `overlay` (the
/// command-line flags). Values that do not validate are left out (their defaults apply) and
/// removed from `values`; the errors about them are returned.
///
/// # Errors
/// The errors of `base_toml` itself (or of an error no parameter explains): nothing to fall
/// back to.
pub fn initial_config(
    base_toml: &str,
    values: &mut BTreeMap<String, String>,
    overlay: &dyn Fn(&mut Config),
) -> Result<(Config, Vec<ConfigError>), Vec<ConfigError>> {
    let mut rejected = Vec::new();
    // Each round removes at least one parameter or ends, so this ends.
    loop {
        match apply_device_params(base_toml, values) {
            Ok(mut config) => {
                overlay(&mut config);
                return Ok((config, rejected));
            }
            Err(errors) => {
                let mut removed = false;
                for e in &errors {
                    if let Some(s) = setting_of(e) {
                        removed |= values.remove(s.name).is_some();
                    }
                }
                if !removed {
                    return Err(errors);
                }
                rejected.extend(errors.into_iter().filter(|e| setting_of(e).is_some()));
            }
        }
    }
}

/// The configuration after the device reported `name` changed to `value`, or the errors that
/// keep it from being taken (then `values` is unchanged). `name` may be the full name
/// (`root.Earshot.GlassBreakSensitivity`) the SDK's callback gives.
///
/// # Errors
/// The parameter is not one of Earshot's, or the configuration with it does not validate.
pub fn changed_config(
    base_toml: &str,
    values: &mut BTreeMap<String, String>,
    name: &str,
    value: &str,
    overlay: &dyn Fn(&mut Config),
) -> Result<Config, Vec<ConfigError>> {
    let short = name.rsplit('.').next().unwrap_or(name);
    if find(short).is_none() {
        return Err(vec![ConfigError {
            key: format!("parameter {short}"),
            value: String::new(),
            expected: "a parameter Earshot declares".to_owned(),
        }]);
    }
    let mut next = values.clone();
    next.insert(short.to_owned(), value.to_owned());
    let mut config = apply_device_params(base_toml, &next)?;
    overlay(&mut config);
    *values = next;
    Ok(config)
}

/// `value` as it may be logged: secrets are masked.
pub fn loggable(name: &str, value: &str) -> String {
    let short = name.rsplit('.').next().unwrap_or(name);
    match find(short) {
        Some(s) if s.kind == ParamKind::Secret => "***".to_owned(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::EarshotClass;
    use crate::settings::defaults;

    #[test]
    fn a_bad_value_at_start_falls_back_and_is_named() {
        let mut values = defaults();
        values.insert("GlassBreakSensitivity".into(), "70".into());
        values.insert("AdaptiveMarginDb".into(), "loud".into());
        values.insert("InputLossAfterS".into(), "-3".into());
        let (config, rejected) = initial_config("", &mut values, &|_| {}).unwrap();
        let keys: Vec<&str> = rejected.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"parameter AdaptiveMarginDb"), "{keys:?}");
        assert!(
            keys.iter().any(|k| k.contains("input_loss_after_s")),
            "{keys:?}"
        );
        assert!(!values.contains_key("AdaptiveMarginDb"));
        assert!(!values.contains_key("InputLossAfterS"));
        // What was good is kept.
        assert_eq!(
            config.detectors.class(EarshotClass::GlassBreak).sensitivity,
            Some(70)
        );
        let default = Config::from_toml("").unwrap();
        assert_eq!(
            config.level, default.level,
            "the bad ones fall back to the defaults"
        );
    }

    #[test]
    fn a_change_is_taken_or_refused_whole() {
        let mut values = defaults();
        let c = changed_config(
            "",
            &mut values,
            "root.Earshot.AggressionSensitivity",
            "80",
            &|_| {},
        )
        .unwrap();
        assert_eq!(
            c.detectors.class(EarshotClass::Aggression).sensitivity,
            Some(80)
        );
        assert_eq!(values["AggressionSensitivity"], "80");
        let before = values.clone();
        let e =
            changed_config("", &mut values, "AggressionSensitivity", "180", &|_| {}).unwrap_err();
        assert_eq!(e[0].key, "parameter AggressionSensitivity");
        assert_eq!(values, before, "nothing changed");
        let e = changed_config("", &mut values, "root.Earshot.Nope", "1", &|_| {}).unwrap_err();
        assert_eq!(e[0].key, "parameter Nope");
        assert_eq!(loggable("root.Earshot.MqttPassword", "hunter2"), "***");
        assert_eq!(loggable("MqttHost", "broker"), "broker");
    }
}
