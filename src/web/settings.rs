//! The settings the page changes: a JSON view of the tunable part of [`Config`], and updates
//! validated exactly like the configuration file and persisted to it.
//!
//! An update (`PUT /api/settings`) is a JSON object shaped like the TOML file, holding only the
//! keys to change: `{"detectors": {"glass_break": {"sensitivity": 70}}}`; `null` removes a key
//! (it falls back to its default: `{"level": {"calibration_offset_db": null}}` is
//! uncalibrated). Only the `detectors` and `level` sections can be changed this way; sinks,
//! actions, rules and credentials stay in the file an administrator edits.
//!
//! The update is written into the file's own document ([`toml_edit`], so its comments and
//! layout stay), the result is parsed and validated by [`Config::from_toml`] with the
//! command-line flags laid over it, and only when every check passes is the file replaced
//! (write to a temporary file, then rename) and the new [`Config`] handed to the pipeline.
//! A refused update changes nothing and returns every problem, each naming its key.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use toml_edit::{DocumentMut, Item, TableLike};

use crate::classes::EarshotClass;
use crate::config::{Config, ConfigError};
use crate::detectors::{thresholds_for_sensitivity, OFF_FRACTION};

/// Sections `PUT /api/settings` may change.
pub const SETTABLE_SECTIONS: [&str; 2] = ["detectors", "level"];

/// Deepest nesting of an update (`detectors.glass_break.sensitivity` is 3).
const MAX_DEPTH: usize = 3;

/// Lays the command line's flags over a configuration read from the file (see
/// [`SettingsStore::new`]).
pub type Overlay = Box<dyn Fn(&mut Config) + Send>;

/// Sets app parameters on a device as one change and returns the configuration they give
/// (`earshot::device::ParameterWriter::set`): short parameter names and their text values.
pub type ParameterWriter =
    Box<dyn Fn(Vec<(String, String)>) -> Result<Config, Vec<ConfigError>> + Send>;

/// What [`SettingsStore::view`] names as the store on a device.
pub const DEVICE_STORE: &str = "app parameters (root.Earshot)";

/// The settings as the page sees them, and where they persist.
pub struct SettingsStore {
    file: Option<PathBuf>,
    doc: DocumentMut,
    overlay: Overlay,
    current: Config,
    device: Option<ParameterWriter>,
}

/// The label an installer reads for a class.
pub fn class_label(class: EarshotClass) -> &'static str {
    match class {
        EarshotClass::GlassBreak => "Glass break",
        EarshotClass::Aggression => "Aggression",
        EarshotClass::Gunshot => "Gunshot / explosion",
        EarshotClass::Speech => "Speech",
    }
}

fn error(
    key: impl Into<String>,
    value: impl Into<String>,
    expected: impl Into<String>,
) -> ConfigError {
    ConfigError {
        key: key.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

impl SettingsStore {
    /// A store over `file`'s text (`text`; empty when there is no file), with `current` the
    /// configuration running now (the file with the flags laid over it by `overlay`).
    ///
    /// # Errors
    /// The text is not TOML (it was validated when the run started, so this means the file
    /// changed since), naming the file.
    pub fn new(
        file: Option<PathBuf>,
        text: &str,
        overlay: Overlay,
        current: Config,
    ) -> Result<Self, String> {
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            let name = file
                .as_deref()
                .map_or_else(|| "settings".into(), |p| p.display().to_string());
            format!("{name}: not valid TOML: {e}")
        })?;
        Ok(Self {
            file,
            doc,
            overlay,
            current,
            device: None,
        })
    }

    /// A store whose updates are the device's app parameters: each key of an update is
    /// mapped to its parameter ([`crate::settings::DEVICE_SETTINGS`]) and `write` validates
    /// and sets them on the device thread, which publishes the new configuration itself.
    pub fn for_device(write: ParameterWriter, current: Config) -> Self {
        Self {
            file: None,
            doc: DocumentMut::new(),
            overlay: Box::new(|_| {}),
            current,
            device: Some(write),
        }
    }

    /// True when an accepted update must be handed to the pipeline by the caller (a file
    /// store); a device store's parameters reach it through the device integration.
    pub fn publishes_updates(&self) -> bool {
        self.device.is_none()
    }

    /// The configuration in force.
    pub fn current(&self) -> &Config {
        &self.current
    }

    /// Where accepted updates are written; `None`: only in memory.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// `GET /api/settings`: per class `enabled`, `sensitivity` (0–100), the on/off thresholds
    /// on the evidence they give, and the level settings (dB, dBFS), with the file they persist
    /// to.
    pub fn view(&self) -> Value {
        let d = self.current.detector_config();
        let classes: Vec<Value> = EarshotClass::ALL
            .iter()
            .map(|&c| {
                let s = d.class(c);
                let on = s
                    .on_threshold
                    .unwrap_or_else(|| thresholds_for_sensitivity(s.sensitivity).0);
                json!({
                    "class": c.name(),
                    "label": class_label(c),
                    "enabled": s.enabled,
                    "sensitivity": s.sensitivity,
                    "threshold_set": s.on_threshold.is_some(),
                    "on_threshold": on,
                    "off_threshold": on * OFF_FRACTION,
                })
            })
            .collect();
        let l = &self.current.level;
        json!({
            "classes": classes,
            "level": {
                "calibration_offset_db": l.calibration_offset_db,
                "adaptive_loud_noise": l.adaptive_loud_noise,
                "adaptive_margin_db": l.adaptive_margin_db,
                "loud_noise_dbfs": l.loud_noise_dbfs,
            },
            "file": match (&self.file, &self.device) {
                (Some(p), _) => Some(p.display().to_string()),
                (None, Some(_)) => Some(DEVICE_STORE.to_owned()),
                (None, None) => None,
            },
        })
    }

    /// Applies an update (see the module documentation): validates it like the file, writes
    /// the file, and returns the new configuration. On any error nothing changes.
    ///
    /// # Errors
    /// Every problem found, each with its dotted key: a key outside [`SETTABLE_SECTIONS`], a
    /// list or a too deep object, a wrong type or an out-of-range value (as
    /// [`Config::from_toml`] words them), or the file that could not be written.
    pub fn apply(&mut self, update: &Value) -> Result<Config, Vec<ConfigError>> {
        let Value::Object(top) = update else {
            return Err(vec![error(
                "",
                "",
                "expected a JSON object shaped like the configuration file, e.g. {\"detectors\": {\"glass_break\": {\"sensitivity\": 70}}}",
            )]);
        };
        if let Some(write) = &self.device {
            let changes = parameter_changes(top)?;
            let config = write(changes)?;
            self.current = config.clone();
            return Ok(config);
        }
        let mut doc = self.doc.clone();
        let mut errors = Vec::new();
        for (k, v) in top {
            if !SETTABLE_SECTIONS.contains(&k.as_str()) {
                errors.push(error(
                    k.clone(),
                    "",
                    "not settable here (only detectors and level); edit the configuration file",
                ));
                continue;
            }
            merge(doc.as_table_mut(), k, v, k, 1, &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let text = doc.to_string();
        let mut config = Config::from_toml(&text)?;
        (self.overlay)(&mut config);
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(path) = &self.file {
            write_atomically(path, &text).map_err(|e| {
                vec![error(
                    "",
                    "",
                    format!("cannot write {}: {e}; nothing was changed", path.display()),
                )]
            })?;
        }
        self.doc = doc;
        self.current = config.clone();
        Ok(config)
    }

    /// Records a configuration taken from elsewhere (a restart of the pipeline) as current.
    pub fn set_current(&mut self, config: Config) {
        self.current = config;
    }
}

/// The app parameters an update sets: each leaf's dotted key must be a device setting's key.
fn parameter_changes(
    top: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, String)>, Vec<ConfigError>> {
    use crate::settings::{ParamKind, WhenEmpty, DEVICE_SETTINGS};
    let mut leaves = Vec::new();
    let mut errors = Vec::new();
    fn walk(
        prefix: &str,
        v: &Value,
        depth: usize,
        leaves: &mut Vec<(String, Value)>,
        errors: &mut Vec<ConfigError>,
    ) {
        match v {
            Value::Object(m) if depth < MAX_DEPTH => {
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, depth + 1, leaves, errors);
                }
            }
            Value::Object(_) => errors.push(error(prefix, "{…}", "expected a value, not a table")),
            Value::Array(_) => errors.push(error(prefix, "[…]", "lists are not settable here")),
            other => leaves.push((prefix.to_owned(), other.clone())),
        }
    }
    for (k, v) in top {
        if !SETTABLE_SECTIONS.contains(&k.as_str()) {
            errors.push(error(
                k.clone(),
                "",
                "not settable here (only detectors and level)",
            ));
            continue;
        }
        walk(k, v, 1, &mut leaves, &mut errors);
    }
    let mut changes = Vec::new();
    for (key, v) in leaves {
        let Some(setting) = DEVICE_SETTINGS.iter().find(|s| s.key == key) else {
            errors.push(error(
                key,
                v.to_string(),
                "not an app parameter on this device",
            ));
            continue;
        };
        let text = match (setting.kind, &v) {
            (ParamKind::Bool, Value::Bool(b)) => Some(if *b { "yes" } else { "no" }.to_owned()),
            (ParamKind::Int { min, max }, Value::Number(n)) => n
                .as_i64()
                .filter(|i| (min..=max).contains(i))
                .map(|i| i.to_string()),
            (ParamKind::Decimal, Value::Number(n)) => Some(n.to_string()),
            (ParamKind::Text, Value::String(t)) => Some(t.clone()),
            (_, Value::Null) if setting.when_empty != WhenEmpty::Invalid => Some(String::new()),
            _ => None,
        };
        match text {
            Some(t) => changes.push((setting.name.to_owned(), t)),
            None => errors.push(error(
                key,
                v.to_string(),
                match setting.kind {
                    ParamKind::Bool => "expected true or false".to_owned(),
                    ParamKind::Int { min, max } => format!("expected {min} to {max}"),
                    ParamKind::Decimal => "expected a number".to_owned(),
                    _ => "expected a string".to_owned(),
                },
            )),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// Writes `value` at `key` of `table`: objects merge, `null` removes.
fn merge(
    table: &mut dyn TableLike,
    key: &str,
    value: &Value,
    path: &str,
    depth: usize,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::Null => {
            table.remove(key);
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                errors.push(error(path, "{…}", "expected a value, not a table"));
                return;
            }
            let entry = table
                .entry(key)
                .or_insert_with(|| Item::Table(toml_edit::Table::new()));
            let Some(sub) = entry.as_table_like_mut() else {
                errors.push(error(path, entry.to_string().trim(), "expected a table"));
                return;
            };
            for (k, v) in map {
                merge(sub, k, v, &format!("{path}.{k}"), depth + 1, errors);
            }
        }
        Value::Array(_) => errors.push(error(
            path,
            "[…]",
            "lists are not settable here; edit the configuration file",
        )),
        Value::Bool(b) => set(table, key, toml_edit::value(*b)),
        Value::String(s) => set(table, key, toml_edit::value(s.as_str())),
        Value::Number(n) => {
            let item = if let Some(i) = n.as_i64() {
                toml_edit::value(i)
            } else if let Some(f) = n.as_f64() {
                toml_edit::value(f)
            } else {
                errors.push(error(path, n.to_string(), "expected a number"));
                return;
            };
            set(table, key, item);
        }
    }
}

/// Sets `key` to `item`, keeping the comments around an existing key.
fn set(table: &mut dyn TableLike, key: &str, item: Item) {
    match table.get_mut(key) {
        Some(existing) => *existing = item,
        None => {
            table.insert(key, item);
        }
    }
}

/// Replaces `path` with `text`: a temporary file beside it, synced, then renamed over it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".earshot-tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# site settings\n[detectors.glass_break]\n# tuned on site\nsensitivity = 60\n\n[level]\nspl_summary_s = 10.0\n";

    fn store(dir: &Path) -> SettingsStore {
        let path = dir.join("earshot.toml");
        std::fs::write(&path, FILE).unwrap();
        let config = Config::from_toml(FILE).unwrap();
        SettingsStore::new(Some(path), FILE, Box::new(|_| {}), config).unwrap()
    }

    #[test]
    fn an_accepted_update_is_applied_persisted_and_keeps_the_files_comments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        let c = s
            .apply(&json!({"detectors": {"glass_break": {"sensitivity": 75}, "speech": {"enabled": true}},
                           "level": {"calibration_offset_db": 120.5}}))
            .unwrap();
        assert_eq!(c.detectors.glass_break.sensitivity, Some(75));
        assert_eq!(c.detectors.speech.enabled, Some(true));
        assert_eq!(c.level.calibration_offset_db, Some(120.5));
        let text = std::fs::read_to_string(dir.path().join("earshot.toml")).unwrap();
        assert!(text.contains("# tuned on site"), "{text}");
        assert_eq!(Config::from_toml(&text).unwrap(), c);
        let v = s.view();
        assert_eq!(v["classes"][0]["sensitivity"], 75);
        // 0.5 · 2^((50 − 75)/50) = 0.3536
        let on = v["classes"][0]["on_threshold"].as_f64().unwrap();
        assert!((on - 0.3536).abs() < 1e-3, "{on}");
        // null removes the key: uncalibrated again.
        let c = s
            .apply(&json!({"level": {"calibration_offset_db": null}}))
            .unwrap();
        assert_eq!(c.level.calibration_offset_db, None);
    }

    #[test]
    fn a_refused_update_names_every_field_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        let before = s.current().clone();
        let errors = s
            .apply(&json!({
                "detectors": {"glass_break": {"sensitivity": 150}, "aggression": {"hold_s": "long"}},
                "level": {"adaptive_margin_db": 1.0},
                "sinks": {"mqtt": {"host": "x"}}
            }))
            .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["sinks"], "sections are checked first");
        let errors = s
            .apply(&json!({
                "detectors": {"glass_break": {"sensitivity": 150}, "aggression": {"hold_s": "long"}},
                "level": {"adaptive_margin_db": 1.0}
            }))
            .unwrap_err();
        let mut keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec![
                "detectors.aggression.hold_s",
                "detectors.glass_break.sensitivity",
                "level.adaptive_margin_db"
            ],
            "{errors:?}"
        );
        assert_eq!(s.current(), &before);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("earshot.toml")).unwrap(),
            FILE
        );
        for bad in [
            json!([1]),
            json!({"detectors": {"glass_break": {"x": {"y": 1}}}}),
            json!({"detectors": []}),
        ] {
            assert!(s.apply(&bad).is_err(), "{bad}");
        }
        assert_eq!(s.current(), &before);
    }

    #[test]
    fn flags_stay_on_top_of_an_update() {
        let overlay: Overlay =
            Box::new(|c: &mut Config| c.detectors.gunshot.sensitivity = Some(10));
        let mut s = SettingsStore::new(None, "", overlay, Config::default()).unwrap();
        let c = s
            .apply(&json!({"detectors": {"gunshot": {"sensitivity": 90}, "glass_break": {"sensitivity": 90}}}))
            .unwrap();
        assert_eq!(c.detectors.gunshot.sensitivity, Some(10));
        assert_eq!(c.detectors.glass_break.sensitivity, Some(90));
        assert_eq!(s.view()["file"], Value::Null);
    }
}
