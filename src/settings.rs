//! Device settings: the user settings an integrator changes on a camera, declared once.
//!
//! Off the device every setting lives in the TOML configuration ([`crate::config::Config`]). On
//! an Axis device the same settings are app parameters (axparameter): the ACAP package declares
//! them in `manifest.json` `configuration.paramConfig` (generated from [`DEVICE_SETTINGS`] by
//! the `earshot-acap` packaging tool), AXIS OS keeps their values in `/etc/dynamic/earshot.conf`,
//! and [`apply_device_params`] lays those values over the TOML configuration. A new device
//! setting is one row of [`DEVICE_SETTINGS`] naming the TOML key it sets; the manifest, the
//! generated `param.conf` and the run-time overlay all follow from that row.
//!
//! Parameter types follow the ACAP manifest's `paramConfig` type strings
//! (`../shared/handbook/acap-platform.md`, "App parameters"): `int:min=0;max=100`, `bool:no,yes`,
//! `string`, `hidden:string`. Decimal settings (dB, seconds) are `string` parameters holding a
//! decimal number, as axparameter has no decimal type; an empty string means "not set" where the
//! TOML key is optional.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError};

/// What an empty parameter value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenEmpty {
    /// Not allowed: an error naming the parameter.
    Invalid,
    /// The TOML key is left out (its default applies; `None` for optional keys).
    Unset,
    /// The TOML table holding the key is left out (e.g. no `MqttHost`: no `[sinks.mqtt]`).
    UnsetTable,
}

/// The type of a device parameter and how its text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A whole number in `min..=max` (manifest type `int:min=MIN;max=MAX`).
    Int {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// `yes` or `no` (manifest type `bool:no,yes`).
    Bool,
    /// A decimal number (dB, seconds) in a `string` parameter; ranges are checked by
    /// [`Config::validate`].
    Decimal,
    /// Free text (manifest type `string`).
    Text,
    /// A credential: free text the device UI does not show (manifest type `hidden:string`).
    Secret,
}

impl ParamKind {
    /// The manifest `paramConfig` type string, e.g. `int:min=0;max=100`.
    pub fn manifest_type(&self) -> String {
        match self {
            ParamKind::Int { min, max } => format!("int:min={min};max={max}"),
            ParamKind::Bool => "bool:no,yes".to_owned(),
            ParamKind::Decimal | ParamKind::Text => "string".to_owned(),
            ParamKind::Secret => "hidden:string".to_owned(),
        }
    }
}

/// One device setting: an app parameter and the TOML key it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSetting {
    /// Parameter name on the device (`GlassBreakSensitivity`): letters and digits.
    pub name: &'static str,
    /// Dotted TOML key of [`Config`] it sets (`detectors.glass_break.sensitivity`).
    pub key: &'static str,
    /// Parameter type.
    pub kind: ParamKind,
    /// Default value as the device stores it (`"50"`, `"yes"`, `""`); equal in effect to the
    /// TOML default (checked by a test).
    pub default: &'static str,
    /// What an empty value means.
    pub when_empty: WhenEmpty,
    /// One line for installers, with the unit.
    pub description: &'static str,
}

const fn setting(
    name: &'static str,
    key: &'static str,
    kind: ParamKind,
    default: &'static str,
    when_empty: WhenEmpty,
    description: &'static str,
) -> DeviceSetting {
    DeviceSetting {
        name,
        key,
        kind,
        default,
        when_empty,
        description,
    }
}

const SENSITIVITY: ParamKind = ParamKind::Int { min: 0, max: 100 };
use ParamKind::{Bool, Decimal, Secret, Text};
use WhenEmpty::{Invalid, Unset, UnsetTable};

/// Every device setting, in the order the device UI lists them.
// One row a line group, laid out by hand for reading as a table.
#[rustfmt::skip]
pub const DEVICE_SETTINGS: &[DeviceSetting] = &[
    setting(
        "DeviceId",
        "device_id",
        Text,
        "",
        Unset,
        "Name of this device in events and MQTT topics; empty: the host name",
    ),
    setting(
        "GlassBreakEnabled",
        "detectors.glass_break.enabled",
        Bool,
        "yes",
        Invalid,
        "Detect glass breaking",
    ),
    setting(
        "GlassBreakSensitivity",
        "detectors.glass_break.sensitivity",
        SENSITIVITY,
        "50",
        Invalid,
        "Glass break sensitivity, 0 to 100 (50: tuned default)",
    ),
    setting(
        "AggressionEnabled",
        "detectors.aggression.enabled",
        Bool,
        "yes",
        Invalid,
        "Detect aggression (screaming, shouting, angry raised voices)",
    ),
    setting(
        "AggressionSensitivity",
        "detectors.aggression.sensitivity",
        SENSITIVITY,
        "50",
        Invalid,
        "Aggression sensitivity, 0 to 100 (50: tuned default)",
    ),
    setting(
        "GunshotEnabled",
        "detectors.gunshot.enabled",
        Bool,
        "yes",
        Invalid,
        "Detect gunshots and explosions",
    ),
    setting(
        "GunshotSensitivity",
        "detectors.gunshot.sensitivity",
        SENSITIVITY,
        "50",
        Invalid,
        "Gunshot sensitivity, 0 to 100 (50: tuned default)",
    ),
    setting(
        "SpeechEnabled",
        "detectors.speech.enabled",
        Bool,
        "no",
        Invalid,
        "Report speech (context, not an alarm)",
    ),
    setting(
        "SpeechSensitivity",
        "detectors.speech.sensitivity",
        SENSITIVITY,
        "50",
        Invalid,
        "Speech sensitivity, 0 to 100",
    ),
    setting(
        "CalibrationOffsetDb",
        "level.calibration_offset_db",
        Decimal,
        "",
        Unset,
        "dB SPL = dBFS + this offset (94 minus a 94 dB calibrator's reading); empty: uncalibrated",
    ),
    setting(
        "SplSummaryIntervalS",
        "level.spl_summary_s",
        Decimal,
        "10",
        Invalid,
        "Seconds between SPL summaries; 0: off",
    ),
    setting(
        "LoudNoiseDbfs",
        "level.loud_noise_dbfs",
        Decimal,
        "",
        Unset,
        "Absolute loud noise: LAF at or above this many dBFS; empty: off",
    ),
    setting(
        "LoudNoiseMinS",
        "level.loud_noise_min_s",
        Decimal,
        "0.3",
        Invalid,
        "Seconds LAF must stay above the loud noise level",
    ),
    setting(
        "AdaptiveLoudNoise",
        "level.adaptive_loud_noise",
        Bool,
        "yes",
        Invalid,
        "Loud noise relative to the learned background",
    ),
    setting(
        "AdaptiveMarginDb",
        "level.adaptive_margin_db",
        Decimal,
        "12",
        Invalid,
        "Adaptive loud noise: dB above the learned background",
    ),
    setting(
        "InputLossAfterS",
        "level.input_loss_after_s",
        Decimal,
        "5",
        Invalid,
        "Seconds of silent, stuck or clipped input before audio_input_lost; 0: off",
    ),
    setting(
        "MqttHost",
        "sinks.mqtt.host",
        Text,
        "",
        UnsetTable,
        "MQTT broker host name or address; empty: no MQTT",
    ),
    setting(
        "MqttPort",
        "sinks.mqtt.port",
        ParamKind::Int { min: 1, max: 65535 },
        "1883",
        Invalid,
        "MQTT broker port (1883 plain, 8883 TLS)",
    ),
    setting(
        "MqttTls",
        "sinks.mqtt.tls",
        Bool,
        "no",
        Invalid,
        "Connect to the broker with TLS",
    ),
    setting(
        "MqttTopicPrefix",
        "sinks.mqtt.topic_prefix",
        Text,
        "earshot",
        Invalid,
        "First MQTT topic level: topics are <prefix>/<device id>/...",
    ),
    setting(
        "MqttUsername",
        "sinks.mqtt.username",
        Text,
        "",
        Unset,
        "MQTT user name; empty: none",
    ),
    setting(
        "MqttPassword",
        "sinks.mqtt.password",
        Secret,
        "",
        Unset,
        "MQTT password; empty: none",
    ),
];

/// The setting named `name` (exact, case-sensitive, as axparameter names are).
pub fn find(name: &str) -> Option<&'static DeviceSetting> {
    DEVICE_SETTINGS.iter().find(|s| s.name == name)
}

/// The defaults of every device setting, by name: what a fresh install's `param.conf` holds.
pub fn defaults() -> BTreeMap<String, String> {
    DEVICE_SETTINGS
        .iter()
        .map(|s| (s.name.to_owned(), s.default.to_owned()))
        .collect()
}

fn param_error(name: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        key: format!("parameter {name}"),
        value: format!("{value:?}"),
        expected: expected.into(),
    }
}

/// The TOML value of `value` for `setting`, `Ok(None)` for "leave the key out".
fn toml_value(setting: &DeviceSetting, value: &str) -> Result<Option<toml::Value>, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return match setting.when_empty {
            WhenEmpty::Invalid => Err(param_error(
                setting.name,
                value,
                format!("a value ({})", setting.kind.manifest_type()),
            )),
            WhenEmpty::Unset | WhenEmpty::UnsetTable => Ok(None),
        };
    }
    let parsed = match setting.kind {
        ParamKind::Int { min, max } => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => toml::Value::Integer(n),
            _ => {
                return Err(param_error(
                    setting.name,
                    value,
                    format!("a whole number from {min} to {max}"),
                ))
            }
        },
        ParamKind::Bool => match v {
            "yes" | "true" | "1" => toml::Value::Boolean(true),
            "no" | "false" | "0" => toml::Value::Boolean(false),
            _ => return Err(param_error(setting.name, value, "yes or no")),
        },
        ParamKind::Decimal => match v.parse::<f64>() {
            Ok(x) if x.is_finite() => toml::Value::Float(x),
            _ => {
                return Err(param_error(
                    setting.name,
                    value,
                    "a decimal number (e.g. 12 or -3.5)",
                ))
            }
        },
        ParamKind::Text | ParamKind::Secret => toml::Value::String(value.to_owned()),
    };
    Ok(Some(parsed))
}

fn set_key(root: &mut toml::Table, key: &str, value: Option<toml::Value>, drop_table: bool) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().unwrap_or(key);
    if drop_table && value.is_none() {
        // Remove the table that holds the key (e.g. `sinks.mqtt`).
        let Some((table_name, parents)) = parts.split_last() else {
            root.remove(leaf);
            return;
        };
        let mut t = &mut *root;
        for p in parents {
            match t.get_mut(*p).and_then(toml::Value::as_table_mut) {
                Some(next) => t = next,
                None => return,
            }
        }
        t.remove(*table_name);
        return;
    }
    let mut t = &mut *root;
    for p in parts {
        let entry = t
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("made a table just above");
    }
    match value {
        Some(v) => {
            t.insert(leaf.to_owned(), v);
        }
        None => {
            t.remove(leaf);
        }
    }
}

/// Lays device parameter values over a TOML configuration and validates the result.
///
/// `base_toml` is the configuration file's text (may be empty); `params` maps parameter names
/// ([`DeviceSetting::name`]) to their values as axparameter stores them (`"50"`, `"yes"`).
/// Parameters are applied in [`DEVICE_SETTINGS`] order; a parameter whose table is unset by an
/// empty value (`MqttHost = ""`) leaves out that whole table, whatever the other parameters of
/// the table say.
///
/// # Errors
/// Every problem at once, as [`Config::from_toml`] reports them: unknown parameter names and
/// values of the wrong form are named `parameter <Name>`; ranges are checked by
/// [`Config::validate`] and named by TOML key.
pub fn apply_device_params(
    base_toml: &str,
    params: &BTreeMap<String, String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut root: toml::Table = match toml::from_str(base_toml) {
        Ok(t) => t,
        // The base's own syntax error, reported the usual way.
        Err(_) => return Config::from_toml(base_toml),
    };
    let mut errors = Vec::new();
    for name in params.keys() {
        if find(name).is_none() {
            errors.push(param_error(
                name,
                &params[name],
                "a parameter Earshot declares",
            ));
        }
    }
    let mut dropped_tables = Vec::new();
    for setting in DEVICE_SETTINGS {
        let Some(value) = params.get(setting.name) else {
            continue;
        };
        match toml_value(setting, value) {
            Ok(v) => {
                let drop_table = setting.when_empty == WhenEmpty::UnsetTable && v.is_none();
                if drop_table {
                    dropped_tables.push(setting.key.rsplit_once('.').map_or("", |(t, _)| t));
                }
                set_key(&mut root, setting.key, v, drop_table);
            }
            Err(e) => errors.push(e),
        }
    }
    for table in dropped_tables {
        set_key(&mut root, &format!("{table}.x"), None, true);
    }
    let text = toml::to_string(&root).unwrap_or_default();
    match Config::from_toml(&text) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_plain() {
        let mut names: Vec<&str> = DEVICE_SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DEVICE_SETTINGS.len());
        for s in DEVICE_SETTINGS {
            assert!(
                s.name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn defaults_mean_the_toml_defaults() {
        let base = Config::from_toml("").unwrap();
        let from_params = apply_device_params("", &defaults()).unwrap();
        assert_eq!(from_params.detector_config(), base.detector_config());
        assert_eq!(
            from_params.level_events_config(),
            base.level_events_config()
        );
        assert_eq!(from_params.level, base.level);
        assert_eq!(from_params.sinks, base.sinks);
        assert_eq!(from_params.device_id, base.device_id);
    }

    #[test]
    fn every_setting_reaches_its_key() {
        // A non-default value for each setting must change the configuration; with MqttHost
        // set so the MQTT settings have a table to land in.
        let with_host = |mut p: BTreeMap<String, String>| {
            p.insert("MqttHost".into(), "broker.example".into());
            // A password needs a user name.
            p.insert("MqttUsername".into(), "user".into());
            p
        };
        let base = apply_device_params("", &with_host(defaults())).unwrap();
        for s in DEVICE_SETTINGS {
            let other = match s.kind {
                ParamKind::Int { min, .. } => (min + 7).to_string(),
                ParamKind::Bool => if s.default == "yes" { "no" } else { "yes" }.to_owned(),
                ParamKind::Decimal => "-40".to_owned(),
                ParamKind::Text | ParamKind::Secret => "abc-1".to_owned(),
            };
            let other = if s.key == "level.spl_summary_s" || s.key.ends_with("_after_s") {
                "30".to_owned()
            } else if s.key.ends_with("_min_s") || s.key.ends_with("margin_db") {
                "20".to_owned()
            } else {
                other
            };
            let mut p = with_host(defaults());
            p.insert(s.name.to_owned(), other.clone());
            let changed = apply_device_params("", &p)
                .unwrap_or_else(|e| panic!("{} = {other}: {e:?}", s.name));
            assert_ne!(changed, base, "{} = {other} changed nothing", s.name);
        }
    }

    #[test]
    fn empty_mqtt_host_means_no_mqtt_and_bad_values_are_named() {
        let base = "[sinks.mqtt]\nhost = \"file-broker\"\n";
        let mut p = BTreeMap::new();
        p.insert("MqttHost".to_owned(), String::new());
        p.insert("MqttPort".to_owned(), "1884".to_owned());
        assert_eq!(apply_device_params(base, &p).unwrap().sinks.mqtt, None);

        let mut p = BTreeMap::new();
        p.insert("GlassBreakSensitivity".to_owned(), "101".to_owned());
        p.insert("GunshotEnabled".to_owned(), "maybe".to_owned());
        p.insert("Bogus".to_owned(), "1".to_owned());
        let errors = apply_device_params("", &p).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:?}");
        assert!(text
            .iter()
            .any(|t| t.contains("parameter GlassBreakSensitivity") && t.contains("0 to 100")));
        assert!(text.iter().any(|t| t.contains("parameter GunshotEnabled")));
        assert!(text.iter().any(|t| t.contains("parameter Bogus")));
    }

    #[test]
    fn parameters_override_the_file() {
        let base = "[detectors.glass_break]\nsensitivity = 20\n";
        let mut p = BTreeMap::new();
        p.insert("GlassBreakSensitivity".to_owned(), "80".to_owned());
        let c = apply_device_params(base, &p).unwrap();
        assert_eq!(c.detectors.glass_break.sensitivity, Some(80));
    }
}
