//! Earshot's events as the device's event system sees them: what is declared, and what each
//! occurrence carries.
//!
//! Conventions of `../shared/handbook/acap-platform.md` ("Events"): namespace `tnsaxis`,
//! `topic0 = CameraApplicationPlatform`, `topic1 = Earshot`, `topic2 = ` the event
//! ([`Topic::name`]); stateful events carry the BOOL data key `active`, so that the device's
//! rule engine can use them as a condition ("while glass break is active"); stateless events
//! are pulses. Every topic has a nice name for the device's web pages ("Earshot",
//! "Glass break").
//!
//! | topic2 | kind | data keys (besides `active`) |
//! |---|---|---|
//! | `GlassBreak`, `Aggression`, `Gunshot`, `Speech` | stateful | `score`, `level`, `level_unit` |
//! | `LoudNoise` | stateful | `level`, `level_unit`, `mode` (`absolute`, `adaptive`) |
//! | `AudioInputLost` | stateful | `reason` (`silence`, `stuck`, `clipped`, `non_finite`) |
//! | `Detection` | stateless | `class`, `score`, `level`, `level_unit` |
//! | `SplSummary` | stateless | `laeq`, `lafmax`, `lafmin`, `lcpeak`, `lufs_max`, `unit` |
//!
//! `score` is the detector's evidence in [0, 1]; levels are A-weighted fast maxima (LAFmax,
//! IEC 61672-1) in dB SPL when a calibration offset is set, in dBFS otherwise, as `level_unit`
//! (`unit`) says. `lufs_max` is the largest BS.1770-4 momentary loudness of the interval, LUFS,
//! −70 (the BS.1770 absolute gate) when the interval had none above it. This module only maps
//! events; [`crate::device`] declares and sends them through the SDK.

use crate::classes::EarshotClass;
use crate::events::{DetectionEvent, Event, EventBody};
use crate::level_events::{InputFault, LevelEvent, LoudnessMode};

/// The namespace of every topic key (Axis's).
pub const NAMESPACE: &str = "tnsaxis";
/// `topic0`: where ACAP apps' events live.
pub const TOPIC0: &str = "CameraApplicationPlatform";
/// `topic1`: the app.
pub const TOPIC1: &str = "Earshot";
/// Nice name of `topic1` in the device's pages.
pub const TOPIC1_NICE: &str = "Earshot";
/// The `lufs_max` of an interval without momentary loudness above the BS.1770-4 absolute gate,
/// LUFS.
pub const LUFS_FLOOR: f64 = -70.0;

/// One declared device event (`topic2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A detector class: stateful, active from its detection start to its stop.
    Class(EarshotClass),
    /// Loud noise (absolute or adaptive): stateful.
    LoudNoise,
    /// Audio input lost: stateful, active until the input is restored.
    AudioInputLost,
    /// Every detection start (and every pulse of a stateless detector): stateless.
    Detection,
    /// The periodic level summary: stateless.
    SplSummary,
}

/// Type of a data key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `xs:double`.
    Double,
    /// `xs:string`.
    Text,
}

/// A data value of one occurrence.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (score, level in dB).
    Double(f64),
    /// Text (unit, class, mode, reason).
    Text(&'static str),
}

impl Topic {
    /// Every topic, in declaration order.
    pub fn all() -> Vec<Topic> {
        let mut all: Vec<Topic> = EarshotClass::ALL.into_iter().map(Topic::Class).collect();
        all.extend([
            Topic::LoudNoise,
            Topic::AudioInputLost,
            Topic::Detection,
            Topic::SplSummary,
        ]);
        all
    }

    /// The `topic2` value, e.g. `GlassBreak`.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Class(EarshotClass::GlassBreak) => "GlassBreak",
            Topic::Class(EarshotClass::Aggression) => "Aggression",
            Topic::Class(EarshotClass::Gunshot) => "Gunshot",
            Topic::Class(EarshotClass::Speech) => "Speech",
            Topic::LoudNoise => "LoudNoise",
            Topic::AudioInputLost => "AudioInputLost",
            Topic::Detection => "Detection",
            Topic::SplSummary => "SplSummary",
        }
    }

    /// The nice name the device's pages show, e.g. `Glass break`.
    pub fn nice_name(self) -> &'static str {
        match self {
            Topic::Class(EarshotClass::GlassBreak) => "Glass break",
            Topic::Class(EarshotClass::Aggression) => "Aggression",
            Topic::Class(EarshotClass::Gunshot) => "Gunshot",
            Topic::Class(EarshotClass::Speech) => "Speech",
            Topic::LoudNoise => "Loud noise",
            Topic::AudioInputLost => "Audio input lost",
            Topic::Detection => "Detection",
            Topic::SplSummary => "Sound level summary",
        }
    }

    /// Stateful (carries `active`) or stateless (a pulse).
    pub fn stateful(self) -> bool {
        !matches!(self, Topic::Detection | Topic::SplSummary)
    }

    /// The data keys besides `active`, with their types and nice names.
    pub fn data_keys(self) -> &'static [(&'static str, KeyType, &'static str)] {
        use KeyType::{Double, Text};
        match self {
            Topic::Class(_) => &[
                ("score", Double, "Score"),
                ("level", Double, "Level"),
                ("level_unit", Text, "Level unit"),
            ],
            Topic::LoudNoise => &[
                ("level", Double, "Level"),
                ("level_unit", Text, "Level unit"),
                ("mode", Text, "Mode"),
            ],
            Topic::AudioInputLost => &[("reason", Text, "Reason")],
            Topic::Detection => &[
                ("class", Text, "Class"),
                ("score", Double, "Score"),
                ("level", Double, "Level"),
                ("level_unit", Text, "Level unit"),
            ],
            Topic::SplSummary => &[
                ("laeq", Double, "LAeq"),
                ("lafmax", Double, "LAFmax"),
                ("lafmin", Double, "LAFmin"),
                ("lcpeak", Double, "LCpeak"),
                ("lufs_max", Double, "Momentary loudness max (LUFS)"),
                ("unit", Text, "Unit"),
            ],
        }
    }
}

/// One event to send: its topic, the `active` state of a stateful topic, and the data keys'
/// values in [`Topic::data_keys`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    /// The declared event.
    pub topic: Topic,
    /// `Some` for stateful topics.
    pub active: Option<bool>,
    /// `(key, value)` for every data key of the topic.
    pub data: Vec<(&'static str, Value)>,
}

/// A level in dB SPL when calibrated, dBFS otherwise, with its unit.
fn level(dbfs: f64, db_spl: Option<f64>) -> (f64, &'static str) {
    match db_spl {
        Some(spl) => (spl, "dB SPL"),
        None => (dbfs, "dBFS"),
    }
}

fn class_data(
    score: f32,
    lafmax_dbfs: f64,
    lafmax_db_spl: Option<f64>,
) -> Vec<(&'static str, Value)> {
    let (l, unit) = level(lafmax_dbfs, lafmax_db_spl);
    vec![
        ("score", Value::Double(f64::from(score))),
        ("level", Value::Double(l)),
        ("level_unit", Value::Text(unit)),
    ]
}

fn fault_name(f: InputFault) -> &'static str {
    match f {
        InputFault::Silence => "silence",
        InputFault::Stuck => "stuck",
        InputFault::Clipped => "clipped",
        InputFault::NonFinite => "non_finite",
    }
}

fn mode_name(m: LoudnessMode) -> &'static str {
    match m {
        LoudnessMode::Absolute => "absolute",
        LoudnessMode::Adaptive => "adaptive",
    }
}

/// The device events one Earshot event becomes (none for health reports).
///
/// A detection start is the class's `active = true` and a `Detection` pulse; a stateless
/// detector's pulse is a `Detection` pulse; a detection stop is `active = false` with the
/// detection's peak score and LAFmax. A loud-noise start/stop and an input lost/restored are
/// their topic's `active` true/false.
pub fn occurrences(event: &Event) -> Vec<Occurrence> {
    match &event.body {
        EventBody::Detection(d) => match d {
            DetectionEvent::DetectionStart(o) | DetectionEvent::Detection(o) => {
                let data = class_data(o.score, o.lafmax_dbfs, o.lafmax_db_spl);
                let mut pulse = vec![("class", Value::Text(o.class.name()))];
                pulse.extend(data.iter().cloned());
                let mut out = Vec::with_capacity(2);
                if matches!(d, DetectionEvent::DetectionStart(_)) {
                    out.push(Occurrence {
                        topic: Topic::Class(o.class),
                        active: Some(true),
                        data,
                    });
                }
                out.push(Occurrence {
                    topic: Topic::Detection,
                    active: None,
                    data: pulse,
                });
                out
            }
            DetectionEvent::DetectionStop(det) => vec![Occurrence {
                topic: Topic::Class(det.class),
                active: Some(false),
                data: class_data(det.peak_score, det.lafmax_dbfs, det.lafmax_db_spl),
            }],
        },
        EventBody::Level(l) => match l {
            LevelEvent::LoudNoiseStart {
                mode,
                lafmax_dbfs,
                lafmax_db_spl,
                ..
            }
            | LevelEvent::LoudNoiseStop {
                mode,
                lafmax_dbfs,
                lafmax_db_spl,
                ..
            } => {
                let (l_db, unit) = level(*lafmax_dbfs, *lafmax_db_spl);
                vec![Occurrence {
                    topic: Topic::LoudNoise,
                    active: Some(matches!(l, LevelEvent::LoudNoiseStart { .. })),
                    data: vec![
                        ("level", Value::Double(l_db)),
                        ("level_unit", Value::Text(unit)),
                        ("mode", Value::Text(mode_name(*mode))),
                    ],
                }]
            }
            LevelEvent::AudioInputLost { reason, .. }
            | LevelEvent::AudioInputRestored { reason, .. } => vec![Occurrence {
                topic: Topic::AudioInputLost,
                active: Some(matches!(l, LevelEvent::AudioInputLost { .. })),
                data: vec![("reason", Value::Text(fault_name(*reason)))],
            }],
            LevelEvent::SplSummary {
                laeq_dbfs,
                lafmax_dbfs,
                lafmin_dbfs,
                lcpeak_dbfs,
                momentary_lufs_max,
                laeq_db_spl,
                lafmax_db_spl,
                lafmin_db_spl,
                lcpeak_db_spl,
                ..
            } => {
                let calibrated = laeq_db_spl.is_some();
                let pick = |fs: f64, spl: Option<f64>| Value::Double(spl.unwrap_or(fs));
                vec![Occurrence {
                    topic: Topic::SplSummary,
                    active: None,
                    data: vec![
                        ("laeq", pick(*laeq_dbfs, *laeq_db_spl)),
                        ("lafmax", pick(*lafmax_dbfs, *lafmax_db_spl)),
                        ("lafmin", pick(*lafmin_dbfs, *lafmin_db_spl)),
                        ("lcpeak", pick(*lcpeak_dbfs, *lcpeak_db_spl)),
                        (
                            "lufs_max",
                            Value::Double(momentary_lufs_max.unwrap_or(LUFS_FLOOR).max(LUFS_FLOOR)),
                        ),
                        (
                            "unit",
                            Value::Text(if calibrated { "dB SPL" } else { "dBFS" }),
                        ),
                    ],
                }]
            }
        },
        EventBody::Health(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: EventBody) -> Event {
        Event {
            schema: crate::events::EVENT_SCHEMA,
            device_id: "cam".into(),
            seq: 0,
            time: String::new(),
            stream_time_s: 1.0,
            active: None,
            test: false,
            body,
        }
    }

    fn check_keys(o: &Occurrence) {
        let declared: Vec<&str> = o.topic.data_keys().iter().map(|k| k.0).collect();
        let sent: Vec<&str> = o.data.iter().map(|k| k.0).collect();
        assert_eq!(declared, sent, "{o:?}");
        assert_eq!(o.active.is_some(), o.topic.stateful());
    }

    #[test]
    fn level_events_map_to_their_topics_in_the_declared_units() {
        let lost = event(EventBody::Level(LevelEvent::AudioInputLost {
            reason: InputFault::Silence,
            fault_start_sample: 0,
            fault_start_s: 0.0,
            start_sample: 240_000,
            time_s: 5.0,
        }));
        let o = occurrences(&lost);
        assert_eq!(o.len(), 1);
        check_keys(&o[0]);
        assert_eq!(o[0].topic, Topic::AudioInputLost);
        assert_eq!(o[0].active, Some(true));
        assert_eq!(o[0].data, [("reason", Value::Text("silence"))]);

        let restored = event(EventBody::Level(LevelEvent::AudioInputRestored {
            reason: InputFault::Clipped,
            lost_at_sample: 0,
            fault_end_sample: 0,
            start_sample: 0,
            time_s: 9.0,
            lost_for_s: 4.0,
            end_of_stream: false,
        }));
        let o = occurrences(&restored);
        assert_eq!(
            (o[0].topic, o[0].active),
            (Topic::AudioInputLost, Some(false))
        );

        let loud = event(EventBody::Level(LevelEvent::LoudNoiseStart {
            mode: LoudnessMode::Adaptive,
            start_sample: 0,
            time_s: 2.0,
            threshold_dbfs: -40.0,
            lafmax_dbfs: -20.5,
            background_dbfs: Some(-52.0),
            lafmax_db_spl: Some(73.5),
        }));
        let o = occurrences(&loud);
        check_keys(&o[0]);
        assert_eq!(o[0].active, Some(true));
        assert_eq!(
            o[0].data,
            [
                ("level", Value::Double(73.5)),
                ("level_unit", Value::Text("dB SPL")),
                ("mode", Value::Text("adaptive")),
            ]
        );

        let summary = |spl: Option<f64>, lufs: Option<f64>| {
            event(EventBody::Level(LevelEvent::SplSummary {
                start_sample: 0,
                end_sample: 480_000,
                start_s: 0.0,
                end_s: 10.0,
                laeq_dbfs: -40.0,
                lafmax_dbfs: -30.0,
                lafmin_dbfs: -50.0,
                lcpeak_dbfs: -20.0,
                momentary_lufs_max: lufs,
                background_dbfs: Some(-45.0),
                laeq_db_spl: spl.map(|o| -40.0 + o),
                lafmax_db_spl: spl.map(|o| -30.0 + o),
                lafmin_db_spl: spl.map(|o| -50.0 + o),
                lcpeak_db_spl: spl.map(|o| -20.0 + o),
                background_db_spl: spl.map(|o| -45.0 + o),
            }))
        };
        let o = occurrences(&summary(None, None));
        check_keys(&o[0]);
        assert_eq!(o[0].data[0], ("laeq", Value::Double(-40.0)));
        assert_eq!(o[0].data[4], ("lufs_max", Value::Double(LUFS_FLOOR)));
        assert_eq!(o[0].data[5], ("unit", Value::Text("dBFS")));
        let o = occurrences(&summary(Some(94.0), Some(-23.0)));
        assert_eq!(o[0].data[1], ("lafmax", Value::Double(64.0)));
        assert_eq!(o[0].data[3], ("lcpeak", Value::Double(74.0)));
        assert_eq!(o[0].data[4], ("lufs_max", Value::Double(-23.0)));
        assert_eq!(o[0].data[5], ("unit", Value::Text("dB SPL")));
    }

    #[test]
    fn names_are_unique_and_occurrences_match_their_declarations() {
        let all = Topic::all();
        let mut names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert_eq!(all.len(), EarshotClass::ALL.len() + 4);
        for t in all {
            assert!(t.name().chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(!t.nice_name().is_empty());
        }
    }
}
