//! Configuration of `earshot run`: one TOML file, one typed struct, validated once.
//!
//! [`Config::from_toml`] deserialises the file with serde and collects *every* problem before
//! giving up: TOML syntax, unknown keys (errors, never silently ignored), values of the wrong
//! type and values out of range, each as a [`ConfigError`] naming the key, the value and what is
//! allowed. `earshot config check FILE` prints them all; `earshot config default` prints
//! [`DEFAULT_CONFIG_TOML`], the commented default file. Command-line flags of `earshot run`
//! override the file after it is read, and the result is validated again.
//!
//! Credentials are [`Secret`]s: they print as `"***"` in logs and debug output.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::actions::rules::{self, RuleConfig};
use crate::actions::{ActionsConfig, CredentialSource, GpioLine};
use crate::classes::EarshotClass;
use crate::detector::LevelGate;
use crate::detectors::{ClassSettings, DetectorConfig};
use crate::level_events::{AbsoluteLoudness, InputLossConfig, LevelEventsConfig};
use earshot_dsp::level::Calibration;

/// A credential (password, token). Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything `earshot run` is configured with. Every field has a default; see
/// [`DEFAULT_CONFIG_TOML`] for the documented file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Name of this device in events and MQTT topics (letters, digits, `-`, `_`, `.`; 1 to 64
    /// characters). Default: the host name.
    pub device_id: String,
    /// Where audio comes from.
    pub input: InputConfig,
    /// Classifier model: `None` is the embedded YAMNet.
    pub model: Option<PathBuf>,
    /// Per-class detector settings.
    pub detectors: DetectorsConfig,
    /// Levels: calibration, loud noise, SPL summaries, input loss.
    pub level: LevelConfig,
    /// `[gate]`: the cascade gate that skips the classifier on patches no detector could
    /// start on ([`crate::pipeline::Gate`]).
    pub gate: GateConfig,
    /// Periodic health report.
    pub health: HealthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Event sinks.
    pub sinks: SinksConfig,
    /// Action backends: VAPIX, GPIO, local playback.
    pub actions: ActionsConfig,
    /// `[[rules]]`: which events fire which actions.
    pub rules: Vec<RuleConfig>,
    /// `[http]`: the settings page, live view and JSON API ([`crate::web`]); off unless
    /// `listen` is set.
    pub http: HttpConfig,
}

/// `[http]`: the embedded HTTP server of `earshot run` ([`crate::web`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// `ADDRESS:PORT` to listen on, e.g. `127.0.0.1:8080`; absent: no server. An address
    /// beyond loopback needs `bearer_token` or `username`/`password`.
    pub listen: Option<String>,
    /// Requests must carry `Authorization: Bearer <token>` (or `?access_token=` for the live
    /// stream, which browsers cannot give headers).
    pub bearer_token: Option<Secret>,
    /// Basic auth user name (with `password`).
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<Secret>,
    /// Live-stream clients served at once (1 to 64); more get 503.
    pub stream_clients: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            bearer_token: None,
            username: None,
            password: None,
            stream_clients: 8,
        }
    }
}

impl HttpConfig {
    /// True when requests must authenticate (a token or basic credentials are set).
    pub fn has_auth(&self) -> bool {
        self.bearer_token.is_some() || self.username.is_some()
    }
}

/// `[input]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct InputConfig {
    /// The source: `alsa:DEVICE`, `wav:PATH`, `stdin:s16le@48000[/CHANNELS]`, `pipewire:NODE`.
    pub source: String,
    /// Pace a file source at real time (as a live input would arrive).
    pub realtime: bool,
    /// Capture ring size as a latency budget, milliseconds (100 to 60 000): how long the
    /// analysis may fall behind before a live source overruns.
    pub ring_ms: u32,
}

/// `[detectors.<class>]`: each field left out keeps the class's tuned default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClassConfig {
    /// Detect this class at all.
    pub enabled: Option<bool>,
    /// 0 to 100 (50: tuned default; every 50 points halve or double the evidence needed).
    pub sensitivity: Option<u32>,
    /// Explicit on-threshold on the class evidence in (0, 1], overriding `sensitivity`.
    pub threshold: Option<f32>,
    /// Seconds of evidence before a start (0 to 60).
    pub min_duration_s: Option<f64>,
    /// Seconds an event stays active after its last evidence (0 to 600).
    pub hold_s: Option<f64>,
    /// Seconds after a stop in which no new start is raised (0 to 3600).
    pub cooldown_s: Option<f64>,
    /// LAFmax floor of the evidence, dBFS (−120 to 0).
    pub min_dbfs: Option<f64>,
    /// LAFmax margin above the learned background, dB (0 to 60).
    pub above_background_db: Option<f64>,
}

/// `[detectors]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetectorsConfig {
    /// Glass breaking.
    pub glass_break: ClassConfig,
    /// Screaming, shouting, angry raised voices.
    pub aggression: ClassConfig,
    /// Gunshots and explosions.
    pub gunshot: ClassConfig,
    /// Speech (off by default in `run`: it is context, not an alarm).
    pub speech: ClassConfig,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        Self {
            glass_break: ClassConfig::default(),
            aggression: ClassConfig::default(),
            gunshot: ClassConfig::default(),
            speech: ClassConfig {
                enabled: Some(false),
                ..ClassConfig::default()
            },
        }
    }
}

/// `[level]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LevelConfig {
    /// dB SPL = dBFS + this (−200 to 200); absent: uncalibrated, events in dBFS only.
    pub calibration_offset_db: Option<f64>,
    /// Seconds between SPL summaries (1 to 86 400); 0 turns them off.
    pub spl_summary_s: f64,
    /// Absolute loud noise: LAF at or above this many dBFS (−120 to 0); absent: off.
    pub loud_noise_dbfs: Option<f64>,
    /// Seconds the level must stay above `loud_noise_dbfs` (0 to 60).
    pub loud_noise_min_s: f64,
    /// Adaptive loud noise (above the learned background).
    pub adaptive_loud_noise: bool,
    /// Adaptive loud noise margin above the background, dB (above 3, at most 60).
    pub adaptive_margin_db: f64,
    /// Audio input loss after this many seconds of silence, stuck, clipped or non-finite
    /// input (0.1 to 3600); 0 turns it off.
    pub input_loss_after_s: f64,
}

/// `[gate]`: the cascade gate ([`crate::pipeline::Gate`], README "Performance").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Skip the classifier on patches below every enabled detector's level gate (default
    /// true). Start events are the same either way; only the CPU time differs.
    pub enabled: bool,
    /// Classify patches up to this many dB below the loosest detector level gate too (0 to
    /// 30 dB; default 0).
    pub slack_db: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            slack_db: 0.0,
        }
    }
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Seconds between health events (1 to 86 400).
    pub interval_s: f64,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `auto` (human on a terminal, JSON otherwise), `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `earshot=debug,rumqttc=warn` …
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[sinks]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SinksConfig {
    /// At shutdown, seconds the sinks get to deliver what they hold (0 to 600).
    pub flush_timeout_s: f64,
    /// `[[sinks.jsonl]]`: JSON-lines outputs (standard output, files, FIFOs); any number.
    pub jsonl: Vec<JsonlConfig>,
    /// `[sinks.mqtt]`: MQTT; absent: none.
    pub mqtt: Option<MqttConfig>,
    /// `[[sinks.webhook]]`: any number of webhooks.
    pub webhook: Vec<WebhookConfig>,
}

/// `[[sinks.jsonl]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct JsonlConfig {
    /// `-` for standard output, else a file to append to.
    pub path: String,
    /// Events the sink's queue holds (1 to 1 000 000).
    pub queue: usize,
}

/// `[sinks.mqtt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1 to 65 535; 1883 plain, 8883 TLS by convention).
    pub port: u16,
    /// MQTT client id (1 to 23 characters of letters and digits is what every broker accepts);
    /// default `earshot-<device_id>`.
    pub client_id: Option<String>,
    /// First topic level (default `earshot`): topics are `<prefix>/<device_id>/…`.
    pub topic_prefix: String,
    /// User name for the broker.
    pub username: Option<String>,
    /// Password for the broker.
    pub password: Option<Secret>,
    /// Connect with TLS.
    pub tls: bool,
    /// PEM file of the CA certificates to trust (TLS); absent: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Keep-alive interval, seconds (5 to 3600).
    pub keep_alive_s: u16,
    /// Events held while the broker is unreachable (1 to 1 000 000); beyond it the oldest are
    /// dropped and counted.
    pub backlog: usize,
    /// Events the sink's queue holds (1 to 1 000 000).
    pub queue: usize,
    /// First reconnect delay, seconds (0.1 to 60); doubles up to `reconnect_max_s`.
    pub reconnect_min_s: f64,
    /// Longest reconnect delay, seconds (`reconnect_min_s` to 3600).
    pub reconnect_max_s: f64,
}

/// `[[sinks.webhook]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the event JSON is POSTed to.
    pub url: String,
    /// Per-request timeout, seconds (0.1 to 600).
    pub timeout_s: f64,
    /// Retries after a failed attempt (0 to 100).
    pub retries: u32,
    /// First retry delay, seconds (0 to 600); doubles each retry.
    pub backoff_s: f64,
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Basic auth user name (with `password`).
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<Secret>,
    /// Events the sink's queue holds (1 to 1 000 000).
    pub queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_id: default_device_id(),
            input: InputConfig::default(),
            model: None,
            detectors: DetectorsConfig::default(),
            level: LevelConfig::default(),
            gate: GateConfig::default(),
            health: HealthConfig::default(),
            log: LogConfig::default(),
            sinks: SinksConfig::default(),
            actions: ActionsConfig::default(),
            rules: Vec::new(),
            http: HttpConfig::default(),
        }
    }
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            source: "alsa:default".into(),
            realtime: false,
            ring_ms: 2000,
        }
    }
}

impl Default for LevelConfig {
    fn default() -> Self {
        Self {
            calibration_offset_db: None,
            spl_summary_s: 10.0,
            loud_noise_dbfs: None,
            loud_noise_min_s: 0.3,
            adaptive_loud_noise: true,
            adaptive_margin_db: 12.0,
            input_loss_after_s: 5.0,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval_s: 60.0 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl Default for SinksConfig {
    fn default() -> Self {
        Self {
            flush_timeout_s: 5.0,
            jsonl: Vec::new(),
            mqtt: None,
            webhook: Vec::new(),
        }
    }
}

impl Default for JsonlConfig {
    fn default() -> Self {
        Self {
            path: "-".into(),
            queue: 4096,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 1883,
            client_id: None,
            topic_prefix: "earshot".into(),
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            keep_alive_s: 30,
            backlog: 10_000,
            queue: 4096,
            reconnect_min_s: 0.5,
            reconnect_max_s: 30.0,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_s: 5.0,
            retries: 3,
            backoff_s: 1.0,
            bearer_token: None,
            username: None,
            password: None,
            queue: 1024,
        }
    }
}

fn default_device_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| valid_device_id(s));
    host.unwrap_or_else(|| "earshot".into())
}

fn valid_device_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One problem in a configuration: the key (dotted path, e.g.
/// `detectors.glass_break.sensitivity`), the value as written, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path; `""` for the file as a whole (a syntax error).
    pub key: String,
    /// The value as written (`""` when the problem is not one value).
    pub value: String,
    /// What is wrong or allowed, in words with units.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.value.is_empty()) {
            (true, _) => write!(f, "{}", self.expected),
            (false, true) => write!(f, "{}: {}", self.key, self.expected),
            (false, false) => write!(f, "{} = {}: {}", self.key, self.value, self.expected),
        }
    }
}

/// All the problems of one configuration file, with its name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {} problem(s):\n{}", errors.len(), errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors {
    /// The file as given.
    pub file: String,
    /// Every problem found, in file order where known.
    pub errors: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigErrors`] with every problem (an unreadable file is one problem).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                key: String::new(),
                value: String::new(),
                expected: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::from_toml(&text).map_err(|errors| ConfigErrors { file, errors })
    }

    /// Parses and validates TOML text.
    ///
    /// # Errors
    /// Every problem found: syntax (then nothing else can be checked), unknown keys, wrong
    /// types, out-of-range values.
    pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigError>> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            vec![ConfigError {
                key: String::new(),
                value: String::new(),
                expected: format!("not valid TOML: {}", e.to_string().trim_end()),
            }]
        })?;
        let mut errors = Vec::new();
        // Each round either succeeds or removes the one key serde stopped at, so every wrong
        // type is reported, not just the first; a key removed falls back to its default.
        let config = loop {
            let mut unknown = Vec::new();
            let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let de = serde_ignored::Deserializer::new(
                toml::Value::Table(table.clone()),
                &mut note_unknown,
            );
            let result: Result<Config, _> = serde_path_to_error::deserialize(de);
            match result {
                Ok(c) => {
                    for key in unknown {
                        errors.push(ConfigError {
                            value: String::new(),
                            expected: "unknown key (`earshot config default` lists every key)"
                                .into(),
                            key,
                        });
                    }
                    break c;
                }
                Err(e) => {
                    let segments: Vec<_> = e.path().iter().cloned().collect();
                    let removed = remove_at(&mut table, &segments);
                    errors.push(ConfigError {
                        key: e.path().to_string(),
                        value: removed.as_ref().map(value_text).unwrap_or_default(),
                        expected: plain_words(e.inner().message().trim_end()),
                    });
                    if removed.is_none() || errors.len() > 1000 {
                        // Nothing to take away (the error is not one key's): stop here.
                        return Err(errors);
                    }
                }
            }
        };
        errors.extend(config.validate());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }
}

/// Removes the value at `path` from `table`; returns it.
fn remove_at(
    table: &mut toml::Table,
    path: &[serde_path_to_error::Segment],
) -> Option<toml::Value> {
    use serde_path_to_error::Segment;
    let (last, parents) = path.split_last()?;
    let mut here: &mut toml::Value = table.get_mut(match parents.first() {
        Some(Segment::Map { key }) => key.as_str(),
        Some(_) => return None,
        None => {
            return match last {
                Segment::Map { key } => table.remove(key),
                _ => None,
            }
        }
    })?;
    for seg in parents.iter().skip(1) {
        here = match seg {
            Segment::Map { key } => here.as_table_mut()?.get_mut(key)?,
            Segment::Seq { index } => here.as_array_mut()?.get_mut(*index)?,
            _ => return None,
        };
    }
    match last {
        Segment::Map { key } => here.as_table_mut()?.remove(key),
        Segment::Seq { index } => {
            let a = here.as_array_mut()?;
            (*index < a.len()).then(|| a.remove(*index))
        }
        _ => None,
    }
}

/// serde's type names in words an installer reads.
fn plain_words(message: &str) -> String {
    [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (from, to)| {
        if m.ends_with(from) {
            format!("{}{}", &m[..m.len() - from.len()], to)
        } else {
            m
        }
    })
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(_) => "{…}".into(),
        other => other.to_string(),
    }
}

/// Collects range errors.
struct Check<'a> {
    errors: &'a mut Vec<ConfigError>,
}

impl Check<'_> {
    fn range(&mut self, key: &str, v: f64, lo: f64, hi: f64, unit: &str) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.errors.push(ConfigError {
                key: key.into(),
                value: fmt_num(v),
                expected: format!("expected {lo} to {hi} {unit}").trim_end().into(),
            });
        }
    }

    fn opt_range(&mut self, key: &str, v: Option<f64>, lo: f64, hi: f64, unit: &str) {
        if let Some(v) = v {
            self.range(key, v, lo, hi, unit);
        }
    }

    fn fail(&mut self, key: &str, value: impl fmt::Display, expected: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        });
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

impl Config {
    /// Every range and consistency problem of an already typed configuration (the file's
    /// types are checked by [`Config::from_toml`]); empty when valid.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut c = Check {
            errors: &mut errors,
        };
        if !valid_device_id(&self.device_id) {
            c.fail(
                "device_id",
                format!("{:?}", self.device_id),
                "expected 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        if let Err(e) = crate::source::InputSpec::parse(&self.input.source) {
            c.fail(
                "input.source",
                format!("{:?}", self.input.source),
                e.to_string(),
            );
        }
        c.range(
            "input.ring_ms",
            self.input.ring_ms as f64,
            100.0,
            60_000.0,
            "ms",
        );
        for class in EarshotClass::ALL {
            let cc = self.detectors.class(class);
            let key = |f: &str| format!("detectors.{}.{f}", class.name());
            if let Some(s) = cc.sensitivity {
                c.range(&key("sensitivity"), s as f64, 0.0, 100.0, "");
            }
            if let Some(t) = cc.threshold {
                if !(t > 0.0 && t <= 1.0) {
                    c.fail(&key("threshold"), t, "expected a score in (0, 1]");
                }
            }
            c.opt_range(&key("min_duration_s"), cc.min_duration_s, 0.0, 60.0, "s");
            c.opt_range(&key("hold_s"), cc.hold_s, 0.0, 600.0, "s");
            c.opt_range(&key("cooldown_s"), cc.cooldown_s, 0.0, 3600.0, "s");
            c.opt_range(&key("min_dbfs"), cc.min_dbfs, -120.0, 0.0, "dBFS");
            c.opt_range(
                &key("above_background_db"),
                cc.above_background_db,
                0.0,
                60.0,
                "dB",
            );
        }
        let l = &self.level;
        c.opt_range(
            "level.calibration_offset_db",
            l.calibration_offset_db,
            -200.0,
            200.0,
            "dB",
        );
        if l.spl_summary_s != 0.0 {
            c.range(
                "level.spl_summary_s",
                l.spl_summary_s,
                1.0,
                86_400.0,
                "s (or 0: off)",
            );
        }
        c.opt_range(
            "level.loud_noise_dbfs",
            l.loud_noise_dbfs,
            -120.0,
            0.0,
            "dBFS",
        );
        c.range("level.loud_noise_min_s", l.loud_noise_min_s, 0.0, 60.0, "s");
        if !(l.adaptive_margin_db.is_finite()
            && l.adaptive_margin_db > 3.0
            && l.adaptive_margin_db <= 60.0)
        {
            c.fail(
                "level.adaptive_margin_db",
                fmt_num(l.adaptive_margin_db),
                "expected more than 3 and at most 60 dB",
            );
        }
        if l.input_loss_after_s != 0.0 {
            c.range(
                "level.input_loss_after_s",
                l.input_loss_after_s,
                0.1,
                3600.0,
                "s (or 0: off)",
            );
        }
        c.range("gate.slack_db", self.gate.slack_db, 0.0, 30.0, "dB");
        c.range(
            "health.interval_s",
            self.health.interval_s,
            1.0,
            86_400.0,
            "s",
        );
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            c.fail(
                "log.level",
                format!("{:?}", self.log.level),
                "expected a tracing filter such as \"info\" or \"earshot=debug,warn\"",
            );
        }
        let s = &self.sinks;
        c.range("sinks.flush_timeout_s", s.flush_timeout_s, 0.0, 600.0, "s");
        let queue = |c: &mut Check<'_>, key: &str, q: usize| {
            c.range(key, q as f64, 1.0, 1_000_000.0, "events");
        };
        for (i, j) in s.jsonl.iter().enumerate() {
            if j.path.is_empty() {
                c.fail(
                    &format!("sinks.jsonl[{i}].path"),
                    "\"\"",
                    "expected \"-\" (standard output) or a file path",
                );
            }
            queue(&mut c, &format!("sinks.jsonl[{i}].queue"), j.queue);
        }
        if let Some(m) = &s.mqtt {
            if m.host.is_empty() {
                c.fail("sinks.mqtt.host", "\"\"", "expected a host name or address");
            }
            if m.port == 0 {
                c.fail("sinks.mqtt.port", 0, "expected 1 to 65535");
            }
            if let Some(id) = &m.client_id {
                if id.is_empty() || id.len() > 65_535 {
                    c.fail(
                        "sinks.mqtt.client_id",
                        format!("{id:?}"),
                        "expected a non-empty id",
                    );
                }
            }
            if m.topic_prefix.is_empty() || m.topic_prefix.contains(['+', '#', '\0']) {
                c.fail(
                    "sinks.mqtt.topic_prefix",
                    format!("{:?}", m.topic_prefix),
                    "expected a non-empty topic level without '+', '#' or NUL",
                );
            }
            if m.password.is_some() && m.username.is_none() {
                c.fail(
                    "sinks.mqtt.password",
                    "***",
                    "a password needs sinks.mqtt.username",
                );
            }
            if m.ca_file.is_some() && !m.tls {
                c.fail(
                    "sinks.mqtt.ca_file",
                    m.ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    "needs sinks.mqtt.tls = true",
                );
            }
            c.range(
                "sinks.mqtt.keep_alive_s",
                m.keep_alive_s as f64,
                5.0,
                3600.0,
                "s",
            );
            queue(&mut c, "sinks.mqtt.backlog", m.backlog);
            queue(&mut c, "sinks.mqtt.queue", m.queue);
            c.range(
                "sinks.mqtt.reconnect_min_s",
                m.reconnect_min_s,
                0.1,
                60.0,
                "s",
            );
            c.range(
                "sinks.mqtt.reconnect_max_s",
                m.reconnect_max_s,
                m.reconnect_min_s.max(0.1),
                3600.0,
                "s",
            );
        }
        for (i, w) in s.webhook.iter().enumerate() {
            let key = |f: &str| format!("sinks.webhook[{i}].{f}");
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                c.fail(
                    &key("url"),
                    format!("{:?}", w.url),
                    "expected an http:// or https:// URL",
                );
            }
            c.range(&key("timeout_s"), w.timeout_s, 0.1, 600.0, "s");
            c.range(&key("retries"), w.retries as f64, 0.0, 100.0, "");
            c.range(&key("backoff_s"), w.backoff_s, 0.0, 600.0, "s");
            if w.bearer_token.is_some() && (w.username.is_some() || w.password.is_some()) {
                c.fail(
                    &key("bearer_token"),
                    "***",
                    "use either bearer_token or username/password, not both",
                );
            }
            if w.password.is_some() != w.username.is_some() {
                c.fail(
                    &key("username"),
                    w.username.as_deref().unwrap_or(""),
                    "basic auth needs both username and password",
                );
            }
            queue(&mut c, &key("queue"), w.queue);
        }
        self.validate_http(&mut c);
        self.validate_actions(&mut c);
        crate::actions::rules::validate(
            &self.rules,
            &self.actions,
            self.level.calibration_offset_db.is_some(),
            &mut errors,
        );
        errors
    }

    fn validate_http(&self, c: &mut Check<'_>) {
        let h = &self.http;
        if let Some(listen) = &h.listen {
            match listen.parse::<std::net::SocketAddr>() {
                Err(_) => c.fail(
                    "http.listen",
                    format!("{listen:?}"),
                    "expected ADDRESS:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
                ),
                Ok(a) if !a.ip().is_loopback() && !h.has_auth() => c.fail(
                    "http.listen",
                    format!("{listen:?}"),
                    "an address beyond loopback needs http.bearer_token or http.username/password",
                ),
                Ok(_) => {}
            }
        }
        if h.bearer_token.is_some() && (h.username.is_some() || h.password.is_some()) {
            c.fail(
                "http.bearer_token",
                "***",
                "use either bearer_token or username/password, not both",
            );
        }
        if h.password.is_some() != h.username.is_some() {
            c.fail(
                "http.username",
                h.username.as_deref().unwrap_or(""),
                "basic auth needs both username and password",
            );
        }
        if h.bearer_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            c.fail(
                "http.bearer_token",
                "***",
                "expected at least 16 characters",
            );
        }
        c.range(
            "http.stream_clients",
            h.stream_clients as f64,
            1.0,
            64.0,
            "clients",
        );
    }

    fn validate_actions(&self, c: &mut Check<'_>) {
        let a = &self.actions;
        c.range("actions.queue", a.queue as f64, 1.0, 10_000.0, "commands");
        if let Some(v) = &a.vapix {
            let lower = v.url.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("http://")
                .or_else(|| lower.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                c.fail(
                    "actions.vapix.url",
                    format!("{:?}", v.url),
                    "expected the device's base URL, http://HOST[:PORT] or https://HOST[:PORT]",
                );
            }
            c.range("actions.vapix.timeout_s", v.timeout_s, 0.1, 60.0, "s");
            c.range("actions.vapix.retries", v.retries as f64, 0.0, 10.0, "");
            c.range("actions.vapix.backoff_s", v.backoff_s, 0.0, 60.0, "s");
            match v.credentials {
                CredentialSource::Config => {
                    if v.username.is_none() || v.password.is_none() {
                        c.fail(
                            "actions.vapix.username",
                            v.username.as_deref().unwrap_or(""),
                            "credentials = \"config\" needs both username and password",
                        );
                    }
                }
                CredentialSource::Dbus => {
                    if v.username.is_some() || v.password.is_some() {
                        c.fail(
                            "actions.vapix.credentials",
                            "\"dbus\"",
                            "the D-Bus service account is used; remove username/password or \
                             set credentials = \"config\"",
                        );
                    }
                    if v.dbus_account.is_empty()
                        || !v
                            .dbus_account
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
                    {
                        c.fail(
                            "actions.vapix.dbus_account",
                            format!("{:?}", v.dbus_account),
                            "expected letters, digits, '-' or '_'",
                        );
                    }
                }
            }
            if let Some(ca) = &v.ca_file {
                if !lower.starts_with("https://") {
                    c.fail(
                        "actions.vapix.ca_file",
                        ca.display(),
                        "only used with an https:// url",
                    );
                }
            }
        }
        if let Some(g) = &a.gpio {
            if g.outputs.is_empty() {
                c.fail(
                    "actions.gpio.outputs",
                    "",
                    "expected at least one output, e.g. [actions.gpio.outputs.1] line = 17",
                );
            }
            for (port, line) in &g.outputs {
                if port.is_empty() || port.len() > 32 {
                    c.fail(
                        "actions.gpio.outputs",
                        format!("{port:?}"),
                        "expected a port id of 1 to 32 characters",
                    );
                }
                if let GpioLine::Name(n) = &line.line {
                    if n.is_empty() {
                        c.fail(
                            &format!("actions.gpio.outputs.{port}.line"),
                            "\"\"",
                            "expected a line offset or a line name",
                        );
                    }
                }
            }
        }
        if let Some(p) = &a.playback {
            c.range(
                "actions.playback.queue",
                p.queue as f64,
                1.0,
                100.0,
                "clips",
            );
            if p.device.is_empty() {
                c.fail(
                    "actions.playback.device",
                    "\"\"",
                    "expected an ALSA PCM name (default, hw:0,0, …)",
                );
            }
            for (id, path) in &p.clips {
                if rules::clip_is_path(id) {
                    c.fail(
                        &format!("actions.playback.clips.{id}"),
                        "",
                        "clip ids must not look like file paths (no '/', no .wav)",
                    );
                }
                if !path.is_file() {
                    c.fail(
                        &format!("actions.playback.clips.{id}"),
                        path.display(),
                        "no such WAV file",
                    );
                }
            }
        }
    }

    /// The detector settings: each class's tuned defaults with this file's overrides.
    pub fn detector_config(&self) -> DetectorConfig {
        let mut d = DetectorConfig::default();
        for class in EarshotClass::ALL {
            let cc = self.detectors.class(class);
            cc.apply(d.class_mut(class));
        }
        d.calibration_offset_db = self.level.calibration_offset_db;
        d
    }

    /// The cascade gate for these detector settings; `None` when `[gate]` is off or an enabled
    /// class has no level gate (then every patch is classified).
    pub fn cascade_gate(&self) -> Option<crate::pipeline::Gate> {
        if !self.gate.enabled {
            return None;
        }
        self.detector_config()
            .cascade_gate(self.gate.slack_db)
            .ok()
            .flatten()
    }

    /// The loudness-event settings.
    pub fn level_events_config(&self) -> LevelEventsConfig {
        let l = &self.level;
        let mut c = LevelEventsConfig {
            loud_noise_absolute: l
                .loud_noise_dbfs
                .map(|t| AbsoluteLoudness::new(t, l.loud_noise_min_s)),
            spl_summary_interval_s: (l.spl_summary_s > 0.0).then_some(l.spl_summary_s),
            calibration: l
                .calibration_offset_db
                .map(|offset_db| Calibration { offset_db }),
            input_loss: (l.input_loss_after_s > 0.0).then(|| InputLossConfig {
                after_s: l.input_loss_after_s,
                ..InputLossConfig::default()
            }),
            ..LevelEventsConfig::default()
        };
        if !l.adaptive_loud_noise {
            c.loud_noise_adaptive = None;
        } else if let Some(a) = c.loud_noise_adaptive.as_mut() {
            a.margin_db = l.adaptive_margin_db;
        }
        c
    }
}

impl DetectorsConfig {
    /// The section of `class`.
    pub fn class(&self, class: EarshotClass) -> &ClassConfig {
        match class {
            EarshotClass::GlassBreak => &self.glass_break,
            EarshotClass::Aggression => &self.aggression,
            EarshotClass::Gunshot => &self.gunshot,
            EarshotClass::Speech => &self.speech,
        }
    }

    /// The section of `class`, to change.
    pub fn class_mut(&mut self, class: EarshotClass) -> &mut ClassConfig {
        match class {
            EarshotClass::GlassBreak => &mut self.glass_break,
            EarshotClass::Aggression => &mut self.aggression,
            EarshotClass::Gunshot => &mut self.gunshot,
            EarshotClass::Speech => &mut self.speech,
        }
    }
}

impl ClassConfig {
    /// Overrides `s` with what this section sets.
    pub fn apply(&self, s: &mut ClassSettings) {
        if let Some(v) = self.enabled {
            s.enabled = v;
        }
        if let Some(v) = self.sensitivity {
            // Validated to 0..=100 by `Config::validate`.
            s.sensitivity = v.min(100) as u8;
        }
        if self.threshold.is_some() {
            s.on_threshold = self.threshold;
        }
        if let Some(v) = self.min_duration_s {
            s.min_duration_s = v;
        }
        if let Some(v) = self.hold_s {
            s.hold_s = v;
        }
        if let Some(v) = self.cooldown_s {
            s.cooldown_s = v;
        }
        if self.min_dbfs.is_some() || self.above_background_db.is_some() {
            let (min0, above0, recent) = match s.level_gate {
                Some(LevelGate::Both {
                    min_dbfs,
                    above_background_db,
                    above_recent_db,
                }) => (min_dbfs, above_background_db, above_recent_db),
                Some(LevelGate::AbsoluteDbfs(m)) => (m, 0.0, None),
                Some(LevelGate::AboveBackgroundDb(a)) => (-120.0, a, None),
                None => (-120.0, 0.0, None),
            };
            s.level_gate = Some(LevelGate::Both {
                min_dbfs: self.min_dbfs.unwrap_or(min0),
                above_background_db: self.above_background_db.unwrap_or(above0),
                above_recent_db: recent,
            });
        }
    }
}

/// The commented default configuration (`earshot config default`). Parsing it gives
/// [`Config::default`] except `device_id`, which it leaves to the host name.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        let c = Config::from_toml(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
device_id = "cam 1"
[input]
ring_ms = "lots"
[detectors.glass_break]
sensitivity = 300
hold = 2
[sinks.mqtt]
port = 1883
keep_alive_s = 1
"#;
        let errors = Config::from_toml(text).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "device_id",
            "input.ring_ms",
            "detectors.glass_break.sensitivity",
            "detectors.glass_break.hold",
            "sinks.mqtt.keep_alive_s",
        ] {
            assert!(keys.contains(&k), "{k} missing from {errors:#?}");
        }
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    /// A file that sets every key (values as in the default file).
    const FULL: &str = r#"
device_id = "cam-1"
model = "m.onnx"
[input]
source = "stdin:s16le@48000/2"
realtime = true
ring_ms = 500
[detectors.glass_break]
enabled = true
sensitivity = 60
threshold = 0.4
min_duration_s = 0.0
hold_s = 1.0
cooldown_s = 2.0
min_dbfs = -70.0
above_background_db = 6.0
[detectors.speech]
enabled = true
[level]
calibration_offset_db = 120.0
spl_summary_s = 10.0
loud_noise_dbfs = -20.0
loud_noise_min_s = 0.3
adaptive_loud_noise = true
adaptive_margin_db = 12.0
input_loss_after_s = 5.0
[health]
interval_s = 60.0
[log]
format = "json"
level = "info"
[sinks]
flush_timeout_s = 5.0
[[sinks.jsonl]]
path = "-"
queue = 10
[sinks.mqtt]
host = "b"
port = 8883
client_id = "x"
topic_prefix = "e"
username = "u"
password = "p"
tls = true
ca_file = "ca.pem"
keep_alive_s = 30
backlog = 5
queue = 5
reconnect_min_s = 0.5
reconnect_max_s = 30.0
[[sinks.webhook]]
url = "https://h/x"
timeout_s = 5.0
retries = 3
backoff_s = 1.0
bearer_token = "t"
queue = 3
"#;

    #[test]
    fn a_file_setting_every_key_is_valid() {
        let c = Config::from_toml(FULL).unwrap();
        assert_eq!(c.sinks.mqtt.as_ref().unwrap().backlog, 5);
        assert_eq!(c.sinks.webhook.len(), 1);
        assert_eq!(
            c.detector_config()
                .class(EarshotClass::GlassBreak)
                .sensitivity,
            60
        );
    }

    #[test]
    fn arbitrary_edits_never_panic_and_every_error_names_something() {
        // A cheap deterministic fuzz (cargo-fuzz has the open-ended one: fuzz/fuzz_targets/
        // config.rs): random bytes, and random edits of a file that sets every key.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let alphabet = b"\"'[]{}=.,-+0123456789eE_ \nabcxyz#\\";
        for case in 0..5_000 {
            let text: Vec<u8> = if case % 4 == 0 {
                (0..next() % 300)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let mut v = FULL.as_bytes().to_vec();
                for _ in 0..1 + next() % 6 {
                    let i = (next() as usize) % v.len();
                    let b = alphabet[(next() % alphabet.len() as u64) as usize];
                    match next() % 3 {
                        0 => v[i] = b,
                        1 => v.insert(i, b),
                        _ => {
                            v.remove(i);
                        }
                    }
                }
                v
            };
            let text = String::from_utf8_lossy(&text);
            if let Err(errors) = Config::from_toml(&text) {
                assert!(!errors.is_empty());
                for e in errors {
                    assert!(!e.expected.is_empty(), "{e:?}");
                }
            }
            let _ = crate::source::InputSpec::parse(&text[..text.len().min(40)]);
        }
    }

    #[test]
    fn syntax_error_is_one_error() {
        let e = Config::from_toml("[input\nsource = 1").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].expected.contains("TOML"), "{e:?}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c =
            Config::from_toml("[sinks.mqtt]\nusername = \"u\"\npassword = \"hunter2\"\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(c.sinks.mqtt.unwrap().password.unwrap().expose(), "hunter2");
    }

    #[test]
    fn overrides_apply_over_class_defaults() {
        let c = Config::from_toml("[detectors.aggression]\nsensitivity = 70\nmin_dbfs = -50\n")
            .unwrap();
        let d = c.detector_config();
        let a = d.class(EarshotClass::Aggression);
        assert_eq!(a.sensitivity, 70);
        assert_eq!(
            a.hold_s,
            ClassSettings::default_for(EarshotClass::Aggression).hold_s
        );
        match a.level_gate {
            Some(LevelGate::Both {
                min_dbfs,
                above_recent_db,
                ..
            }) => {
                assert_eq!(min_dbfs, -50.0);
                assert!(above_recent_db.is_some());
            }
            g => panic!("{g:?}"),
        }
        assert!(!d.class(EarshotClass::Speech).enabled);
    }
}
