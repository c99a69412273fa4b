//! `[[rules]]`: which events fire which actions.
//!
//! ```toml
//! [[rules]]
//! name = "glass-siren"
//! on = "glass_break"          # a class (fires on its detection start), or an event kind
//! min_score = 0.6             # optional: evidence at the start, 0 to 1
//! min_lafmax_dbfs = -40       # optional: LAFmax at the start, dBFS (or min_lafmax_db_spl)
//! cooldown_s = 30             # after firing, the rule ignores its events for this long
//! schedule = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "18:00", to = "07:00" }]
//! actions = [
//!   { type = "output", port = "1", duration_ms = 3000 },
//!   { type = "clip", clip = "2", volume = 80 },
//! ]
//! ```
//!
//! `on` is one of the classes (`glass_break`, `aggression`, `gunshot`, `speech`: the rule fires
//! on the class's `detection_start`), `loud_noise` (a `loud_noise_start`, absolute or adaptive),
//! `audio_input_lost` or `audio_input_restored`.
//!
//! The cooldown runs on the audio clock (`stream_time_s` of the events), so a file analysed
//! faster than real time behaves as it would live. The schedule is local wall-clock time (the
//! system's time zone, `TZ` or `/etc/localtime`); a window whose `to` is earlier than its `from`
//! runs past midnight into the next day, and belongs to the day it starts on. No schedule: always.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{ActionsConfig, Command, CommandKind, PortState};
use crate::classes::EarshotClass;
use crate::config::ConfigError;
use crate::events::{DetectionEvent, Event, EventBody};
use crate::level_events::LevelEvent;

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, for logs and `earshot action test NAME` (letters, digits, `-`, `_`, `.`;
    /// 1 to 64 characters).
    pub name: String,
    /// `false`: the rule is kept but never fires (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What fires the rule.
    pub on: Trigger,
    /// Minimum evidence score at the detection start, 0 to 1 (detections only).
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Minimum LAFmax at the start, dBFS (−120 to 0; detections and `loud_noise`).
    #[serde(default)]
    pub min_lafmax_dbfs: Option<f64>,
    /// Minimum LAFmax at the start, dB SPL (0 to 200; needs `level.calibration_offset_db`).
    #[serde(default)]
    pub min_lafmax_db_spl: Option<f64>,
    /// Seconds after firing during which the rule's events are ignored (0 to 86 400; default 30).
    #[serde(default = "default_cooldown")]
    pub cooldown_s: f64,
    /// When the rule may fire (local time); empty: always.
    #[serde(default)]
    pub schedule: Vec<ScheduleWindow>,
    /// What it does, in order (1 to 16 actions).
    pub actions: Vec<ActionConfig>,
}

fn yes() -> bool {
    true
}

fn default_cooldown() -> f64 {
    30.0
}

/// What fires a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A class's `detection_start`.
    Class(EarshotClass),
    /// A `loud_noise_start` (absolute or adaptive).
    LoudNoise,
    /// An `audio_input_lost`.
    AudioInputLost,
    /// An `audio_input_restored`.
    AudioInputRestored,
}

impl Trigger {
    /// The name as written in `on`.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Class(c) => c.name(),
            Trigger::LoudNoise => "loud_noise",
            Trigger::AudioInputLost => "audio_input_lost",
            Trigger::AudioInputRestored => "audio_input_restored",
        }
    }

    /// Parses `on`.
    ///
    /// # Errors
    /// The accepted names, in words.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(c) = EarshotClass::from_name(s) {
            return Ok(Trigger::Class(c));
        }
        match s {
            "loud_noise" => Ok(Trigger::LoudNoise),
            "audio_input_lost" => Ok(Trigger::AudioInputLost),
            "audio_input_restored" => Ok(Trigger::AudioInputRestored),
            _ => Err(format!(
                "expected one of {}, loud_noise, audio_input_lost, audio_input_restored",
                EarshotClass::ALL.map(|c| c.name()).join(", ")
            )),
        }
    }

    /// Whether events of this trigger carry a score (`min_score` applies).
    pub fn has_score(self) -> bool {
        matches!(self, Trigger::Class(_))
    }

    /// Whether events of this trigger carry a LAFmax (`min_lafmax_*` applies).
    pub fn has_level(self) -> bool {
        matches!(self, Trigger::Class(_) | Trigger::LoudNoise)
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Trigger::parse(&s).map_err(de::Error::custom)
    }
}

/// What a matching event carried: the figures `min_score` and `min_lafmax_*` are checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firing {
    /// The trigger it matched.
    pub trigger: Trigger,
    /// Evidence at the start (detections).
    pub score: Option<f32>,
    /// LAFmax at the start, dBFS.
    pub lafmax_dbfs: Option<f64>,
    /// LAFmax at the start, dB SPL (calibrated).
    pub lafmax_db_spl: Option<f64>,
    /// Audio time of the event, seconds.
    pub stream_time_s: f64,
}

impl Firing {
    /// The trigger an event is, with its figures; `None` for events no rule can fire on
    /// (stops, pulses, summaries, health).
    pub fn of(event: &Event) -> Option<Self> {
        let base = |trigger| Firing {
            trigger,
            score: None,
            lafmax_dbfs: None,
            lafmax_db_spl: None,
            stream_time_s: event.stream_time_s,
        };
        match &event.body {
            EventBody::Detection(DetectionEvent::DetectionStart(o)) => Some(Firing {
                score: Some(o.score),
                lafmax_dbfs: Some(o.lafmax_dbfs),
                lafmax_db_spl: o.lafmax_db_spl,
                ..base(Trigger::Class(o.class))
            }),
            EventBody::Level(LevelEvent::LoudNoiseStart {
                lafmax_dbfs,
                lafmax_db_spl,
                ..
            }) => Some(Firing {
                lafmax_dbfs: Some(*lafmax_dbfs),
                lafmax_db_spl: *lafmax_db_spl,
                ..base(Trigger::LoudNoise)
            }),
            EventBody::Level(LevelEvent::AudioInputLost { .. }) => {
                Some(base(Trigger::AudioInputLost))
            }
            EventBody::Level(LevelEvent::AudioInputRestored { .. }) => {
                Some(base(Trigger::AudioInputRestored))
            }
            _ => None,
        }
    }

    /// A firing of `trigger` as `earshot action test` makes it: passes every minimum.
    pub fn test(trigger: Trigger) -> Self {
        Firing {
            trigger,
            score: None,
            lafmax_dbfs: None,
            lafmax_db_spl: None,
            stream_time_s: 0.0,
        }
    }
}

impl RuleConfig {
    /// Whether `firing` passes this rule's trigger and minimums (not the schedule or cooldown).
    /// A minimum on a figure the event does not carry fails (e.g. `min_lafmax_db_spl` without
    /// calibration is refused by validation, so it cannot happen in a running config).
    pub fn matches(&self, firing: &Firing) -> bool {
        if !self.enabled || firing.trigger != self.on {
            return false;
        }
        let at_least = |min: Option<f64>, v: Option<f64>| match (min, v) {
            (None, _) => true,
            (Some(m), Some(v)) => v >= m,
            (Some(_), None) => false,
        };
        at_least(self.min_score.map(f64::from), firing.score.map(f64::from))
            && at_least(self.min_lafmax_dbfs, firing.lafmax_dbfs)
            && at_least(self.min_lafmax_db_spl, firing.lafmax_db_spl)
    }

    /// Whether the schedule allows the rule at local `weekday` and `minute` of the day
    /// (0 to 1439). An empty schedule allows always.
    pub fn scheduled(&self, weekday: Weekday, minute: u32) -> bool {
        self.schedule.is_empty() || self.schedule.iter().any(|w| w.contains(weekday, minute))
    }

    /// The backend commands of the rule's actions, in order.
    pub fn commands(&self) -> Vec<Command> {
        self.actions.iter().map(ActionConfig::command).collect()
    }
}

/// Day of the week, as written in schedules (`mon` … `sun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Days since Monday (0 to 6).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The day before.
    pub fn previous(self) -> Self {
        Weekday::ALL[(self.index() + 6) % 7]
    }

    /// From days since Monday (taken modulo 7).
    pub fn from_index(i: usize) -> Self {
        Weekday::ALL[i % 7]
    }
}

/// One window of a rule's `schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// Days the window starts on; empty or absent: every day.
    #[serde(default)]
    pub days: BTreeSet<Weekday>,
    /// Start, local time `HH:MM` (00:00 to 23:59).
    pub from: ClockTime,
    /// End, local time `HH:MM`, exclusive; earlier than `from`: the next day; equal to `from`:
    /// the whole day.
    pub to: ClockTime,
}

impl ScheduleWindow {
    fn on(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// Whether local `weekday`, `minute` of the day (0 to 1439) is inside the window.
    pub fn contains(&self, weekday: Weekday, minute: u32) -> bool {
        let (from, to) = (self.from.minute(), self.to.minute());
        if from == to {
            self.on(weekday)
        } else if from < to {
            self.on(weekday) && (from..to).contains(&minute)
        } else {
            // Runs past midnight: the evening part belongs to today, the morning part to the
            // window that started yesterday.
            (self.on(weekday) && minute >= from) || (self.on(weekday.previous()) && minute < to)
        }
    }
}

/// A local time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
}

impl ClockTime {
    /// Minutes since midnight.
    pub fn minute(self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }

    /// Parses `HH:MM` (also `H:MM`).
    ///
    /// # Errors
    /// What was expected, in words.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a time of day HH:MM (00:00 to 23:59), not {s:?}");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(ClockTime { hour, minute })
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClockTime::parse(&s).map_err(de::Error::custom)
    }
}

/// A port or clip id: written as a string (`"1"`) or a whole number (`1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub String);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port or clip id (a string or a whole number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of a rule's `actions`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Set a digital output, or pulse it with `duration_ms`.
    Output {
        /// Port id: VAPIX ports are zero-based (`"0"`, `"1"`); GPIO ports are the keys of
        /// `[actions.gpio.outputs]`.
        port: Id,
        /// State to set (default `closed`, the active state).
        #[serde(default = "closed")]
        state: PortState,
        /// Pulse length, milliseconds (1 to 3 600 000); absent: the port stays in `state`.
        #[serde(default)]
        duration_ms: Option<u32>,
    },
    /// Activate (or deactivate) a virtual input of the device (VAPIX only).
    VirtualInput {
        /// Virtual input number (1 to 64).
        port: u32,
        /// Seconds until the device deactivates it (1 to 65 535); absent: stays active.
        #[serde(default)]
        duration_s: Option<u32>,
        /// `true`: deactivate it instead.
        #[serde(default)]
        deactivate: bool,
    },
    /// Play an audio clip: a VAPIX media clip id, or on boards a key of
    /// `[actions.playback.clips]` or a WAV file path.
    Clip {
        /// The clip.
        clip: Id,
        /// Volume, percent (0 to 100); absent: the device's default.
        #[serde(default)]
        volume: Option<u32>,
        /// Extra plays after the first (0 to 100).
        #[serde(default)]
        repeat: u32,
    },
    /// Stop the clip playing.
    StopClip {},
}

fn closed() -> PortState {
    PortState::Closed
}

impl ActionConfig {
    /// The backend command.
    pub fn command(&self) -> Command {
        match self {
            ActionConfig::Output {
                port,
                state,
                duration_ms,
            } => Command::Output {
                port: port.0.clone(),
                state: *state,
                duration_ms: *duration_ms,
            },
            ActionConfig::VirtualInput {
                port,
                duration_s,
                deactivate,
            } => Command::VirtualInput {
                port: *port,
                duration_s: *duration_s,
                deactivate: *deactivate,
            },
            ActionConfig::Clip {
                clip,
                volume,
                repeat,
            } => Command::Clip {
                clip: clip.0.clone(),
                volume: *volume,
                repeat: *repeat,
            },
            ActionConfig::StopClip {} => Command::StopClip,
        }
    }
}

/// Whether a clip id names a file rather than an entry of `[actions.playback.clips]`.
pub fn clip_is_path(clip: &str) -> bool {
    clip.contains('/') || clip.to_ascii_lowercase().ends_with(".wav")
}

/// Every problem of `[[rules]]` against `[actions]`: ranges, unique names, a backend for every
/// action, and the ports and clips the configuration itself declares (GPIO outputs, playback
/// clips). VAPIX clip ids are checked at start-up against the device's list. `calibrated`:
/// whether `level.calibration_offset_db` is set.
pub fn validate(
    rules: &[RuleConfig],
    actions: &ActionsConfig,
    calibrated: bool,
    errors: &mut Vec<ConfigError>,
) {
    let mut fail = |key: String, value: String, expected: String| {
        errors.push(ConfigError {
            key,
            value,
            expected,
        })
    };
    let mut names = BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let k = |f: &str| format!("rules[{i}].{f}");
        if r.name.is_empty()
            || r.name.len() > 64
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            fail(
                k("name"),
                format!("{:?}", r.name),
                "expected 1 to 64 letters, digits, '-', '_' or '.'".into(),
            );
        } else if !names.insert(r.name.as_str()) {
            fail(
                k("name"),
                format!("{:?}", r.name),
                "another rule has this name; names must be unique".into(),
            );
        }
        if let Some(s) = r.min_score {
            if !r.on.has_score() {
                fail(
                    k("min_score"),
                    s.to_string(),
                    format!("{} events carry no score; remove it", r.on.name()),
                );
            } else if !(0.0..=1.0).contains(&s) {
                fail(k("min_score"), s.to_string(), "expected 0 to 1".into());
            }
        }
        for (key, v, lo, hi, unit) in [
            ("min_lafmax_dbfs", r.min_lafmax_dbfs, -120.0, 0.0, "dBFS"),
            (
                "min_lafmax_db_spl",
                r.min_lafmax_db_spl,
                0.0,
                200.0,
                "dB SPL",
            ),
        ] {
            let Some(v) = v else { continue };
            if !r.on.has_level() {
                fail(
                    k(key),
                    v.to_string(),
                    format!("{} events carry no level; remove it", r.on.name()),
                );
            } else if !(v.is_finite() && (lo..=hi).contains(&v)) {
                fail(
                    k(key),
                    v.to_string(),
                    format!("expected {lo} to {hi} {unit}"),
                );
            }
        }
        if r.min_lafmax_db_spl.is_some() && !calibrated {
            fail(
                k("min_lafmax_db_spl"),
                String::new(),
                "needs level.calibration_offset_db (dB SPL is only known when calibrated)".into(),
            );
        }
        if !(r.cooldown_s.is_finite() && (0.0..=86_400.0).contains(&r.cooldown_s)) {
            fail(
                k("cooldown_s"),
                r.cooldown_s.to_string(),
                "expected 0 to 86400 seconds".into(),
            );
        }
        if r.actions.is_empty() || r.actions.len() > 16 {
            fail(
                k("actions"),
                format!("{} actions", r.actions.len()),
                "expected 1 to 16 actions".into(),
            );
        }
        for (j, a) in r.actions.iter().enumerate() {
            validate_action(a, &format!("rules[{i}].actions[{j}]"), actions, &mut fail);
        }
    }
}

/// Which backend serves `kind` under `actions` (boards' GPIO and playback before VAPIX).
pub fn backend_for(kind: CommandKind, actions: &ActionsConfig) -> Option<&'static str> {
    match kind {
        CommandKind::Output if actions.gpio.is_some() => Some("gpio"),
        CommandKind::Clip if actions.playback.is_some() => Some("playback"),
        _ if actions.vapix.is_some() => Some("vapix"),
        _ => None,
    }
}

fn validate_action(
    a: &ActionConfig,
    key: &str,
    actions: &ActionsConfig,
    fail: &mut impl FnMut(String, String, String),
) {
    let command = a.command();
    let Some(backend) = backend_for(command.kind(), actions) else {
        let needs = match command.kind() {
            CommandKind::Output => "[actions.vapix] or [actions.gpio]",
            CommandKind::VirtualInput => "[actions.vapix] (virtual inputs are a device feature)",
            CommandKind::Clip => "[actions.vapix] or [actions.playback]",
        };
        fail(
            format!("{key}.type"),
            format!("{command}"),
            format!("no backend can do this; configure {needs}"),
        );
        return;
    };
    match a {
        ActionConfig::Output {
            port, duration_ms, ..
        } => {
            if let Some(ms) = duration_ms {
                if !(1..=3_600_000).contains(ms) {
                    fail(
                        format!("{key}.duration_ms"),
                        ms.to_string(),
                        "expected 1 to 3600000 milliseconds".into(),
                    );
                }
            }
            if backend == "gpio" {
                let outputs = &actions.gpio.as_ref().expect("backend gpio").outputs;
                if !outputs.contains_key(&port.0) {
                    fail(
                        format!("{key}.port"),
                        format!("{:?}", port.0),
                        format!(
                            "not an output of [actions.gpio.outputs] (known: {})",
                            known(outputs.keys())
                        ),
                    );
                }
            } else if port.0.is_empty()
                || port.0.len() > 8
                || !port.0.bytes().all(|b| b.is_ascii_digit())
            {
                fail(
                    format!("{key}.port"),
                    format!("{:?}", port.0),
                    "expected a VAPIX port number, zero-based (\"0\", \"1\", …)".into(),
                );
            }
        }
        ActionConfig::VirtualInput {
            port, duration_s, ..
        } => {
            if !(1..=64).contains(port) {
                fail(
                    format!("{key}.port"),
                    port.to_string(),
                    "expected a virtual input number from 1 to 64".into(),
                );
            }
            if let Some(s) = duration_s {
                if !(1..=65_535).contains(s) {
                    fail(
                        format!("{key}.duration_s"),
                        s.to_string(),
                        "expected 1 to 65535 seconds".into(),
                    );
                }
            }
        }
        ActionConfig::Clip {
            clip,
            volume,
            repeat,
        } => {
            if let Some(v) = volume {
                if *v > 100 {
                    fail(
                        format!("{key}.volume"),
                        v.to_string(),
                        "expected 0 to 100 percent".into(),
                    );
                }
            }
            if *repeat > 100 {
                fail(
                    format!("{key}.repeat"),
                    repeat.to_string(),
                    "expected 0 to 100 extra plays".into(),
                );
            }
            if backend == "playback" {
                let clips = &actions.playback.as_ref().expect("backend playback").clips;
                if clip_is_path(&clip.0) {
                    if !std::path::Path::new(&clip.0).is_file() {
                        fail(
                            format!("{key}.clip"),
                            format!("{:?}", clip.0),
                            "no such WAV file".into(),
                        );
                    }
                } else if !clips.contains_key(&clip.0) {
                    fail(
                        format!("{key}.clip"),
                        format!("{:?}", clip.0),
                        format!(
                            "not a clip of [actions.playback.clips] (known: {}), nor a WAV file path",
                            known(clips.keys())
                        ),
                    );
                }
            } else if clip.0.is_empty() || !clip.0.bytes().all(|b| b.is_ascii_digit()) {
                fail(
                    format!("{key}.clip"),
                    format!("{:?}", clip.0),
                    "expected a media clip number of the device (\"0\", \"1\", …)".into(),
                );
            }
        }
        ActionConfig::StopClip {} => {}
    }
}

fn known<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = ids.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], from: &str, to: &str) -> ScheduleWindow {
        ScheduleWindow {
            days: days.iter().copied().collect(),
            from: ClockTime::parse(from).unwrap(),
            to: ClockTime::parse(to).unwrap(),
        }
    }

    #[test]
    fn clock_times_parse_and_refuse() {
        assert_eq!(ClockTime::parse("07:05").unwrap().minute(), 425);
        assert_eq!(ClockTime::parse("7:05").unwrap().minute(), 425);
        for bad in [
            "24:00", "12:60", "12", "12:5", "-1:00", "ab:cd", "", "1:2:3", "+1:00",
        ] {
            assert!(ClockTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let w = window(&[Weekday::Fri], "22:00", "06:00");
        assert!(w.contains(Weekday::Fri, 22 * 60));
        assert!(w.contains(Weekday::Sat, 5 * 60 + 59));
        assert!(!w.contains(Weekday::Sat, 6 * 60));
        assert!(
            !w.contains(Weekday::Fri, 5 * 60),
            "Friday morning is Thursday's night"
        );
        assert!(!w.contains(Weekday::Sat, 22 * 60));
        let day = window(&[Weekday::Mon, Weekday::Tue], "08:00", "18:00");
        assert!(day.contains(Weekday::Tue, 8 * 60));
        assert!(!day.contains(Weekday::Tue, 18 * 60), "`to` is exclusive");
        assert!(!day.contains(Weekday::Wed, 12 * 60));
        let all_day = window(&[], "00:00", "00:00");
        assert!(Weekday::ALL.iter().all(|d| all_day.contains(*d, 0)));
    }

    fn problems(text: &str) -> Vec<String> {
        match crate::config::Config::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn rules_are_checked_against_the_backends_and_named_by_key() {
        let text = r#"
[level]
spl_summary_s = 60

[actions.gpio.outputs.siren]
line = 17

[[rules]]
name = "a"
on = "glass_break"
min_lafmax_db_spl = 90
actions = [{ type = "output", port = "door", duration_ms = 0 }]

[[rules]]
name = "a"
on = "audio_input_lost"
min_score = 0.5
actions = [{ type = "virtual_input", port = 3 }, { type = "clip", clip = 2 }]
"#;
        let p = problems(text);
        let has = |needle: &str| p.iter().any(|e| e.contains(needle));
        assert!(
            has("rules[0].min_lafmax_db_spl: needs level.calibration_offset_db"),
            "{p:#?}"
        );
        assert!(has("rules[0].actions[0].port = \"door\": not an output of [actions.gpio.outputs] (known: siren)"), "{p:#?}");
        assert!(has("rules[0].actions[0].duration_ms = 0"), "{p:#?}");
        assert!(
            has("rules[1].name = \"a\": another rule has this name"),
            "{p:#?}"
        );
        assert!(
            has("rules[1].min_score = 0.5: audio_input_lost events carry no score"),
            "{p:#?}"
        );
        assert!(
            has("rules[1].actions[0].type = virtual input 3 on: no backend can do this"),
            "{p:#?}"
        );
        assert!(
            has("rules[1].actions[1].type = clip 2: no backend can do this"),
            "{p:#?}"
        );
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn unknown_triggers_and_action_types_are_refused() {
        let p = problems(
            "[actions.vapix]\n[[rules]]\nname = \"x\"\non = \"glass\"\nactions = [{ type = \"siren\" }]\n",
        );
        assert!(
            p.iter()
                .any(|e| e.contains("rules[0].on") && e.contains("expected one of glass_break")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|e| e.contains("rules[0].actions") && e.contains("siren")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_vapix_rule_with_a_pulse_and_a_clip_is_valid() {
        let p = problems(
            "[actions.vapix]\n[[rules]]\nname = \"glass-alarm\"\non = \"glass_break\"\n\
             schedule = [{ days = [\"sat\", \"sun\"], from = \"00:00\", to = \"00:00\" }]\n\
             actions = [{ type = \"output\", port = \"1\", duration_ms = 3000 }, { type = \"clip\", clip = \"2\", volume = 80 }, { type = \"stop_clip\" }]\n",
        );
        assert!(p.is_empty(), "{p:#?}");
        let p = problems("[actions.vapix]\nusername = \"root\"\n");
        assert!(
            p.iter().any(|e| e.contains("actions.vapix.credentials")),
            "{p:#?}"
        );
        let p = problems("[actions.vapix]\nurl = \"camera.local\"\n");
        assert!(
            p.iter()
                .any(|e| e.contains("actions.vapix.url = \"camera.local\"")),
            "{p:#?}"
        );
    }
}
