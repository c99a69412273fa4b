//! Events of `earshot run`: one typed envelope, serialised with serde, shared by every sink.
//!
//! An [`Event`] is what leaves the pipeline: detections (stateful start/stop and the stateless
//! pulse), loudness events ([`LevelEvent`], the same objects `analyze --format json` lists under
//! `level_events`), and the periodic [`Health`] report. Its JSON form is the documented event
//! schema ([`EVENT_SCHEMA`], `README.md`, "Event schema"): one object per event, fields of the
//! envelope first, then the body, tagged by `"event"`.
//!
//! Timestamps come from the audio clock: `stream_time_s` counts samples since the input started.
//! `time` maps it to wall-clock time (RFC 3339, UTC, milliseconds) from the moment the first
//! sample arrived ([`AudioClock`]); for a file read faster than real time, `time` is that start
//! plus the position in the file.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::classes::EarshotClass;
use crate::detector::DetectorEvent;
use crate::detectors::Detection;
use crate::level_events::{LevelEvent, LoudnessMode};

/// Version tag of the event schema, in every event (`"schema"`).
pub const EVENT_SCHEMA: &str = "earshot.event.v1";

/// One event as every sink receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Always [`EVENT_SCHEMA`].
    pub schema: &'static str,
    /// The device or host that heard it (configuration `device_id`).
    pub device_id: String,
    /// Sequence number within this run, from 0, in the order events were produced.
    pub seq: u64,
    /// Wall-clock time of the event's audio time, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Audio-clock time of the event, seconds since the input's first sample.
    pub stream_time_s: f64,
    /// For stateful events: `true` on start, `false` on stop; absent on stateless events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// True for events raised by hand (`POST /test/<class>`, `earshot action test`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The body of an [`Event`]; each variant's JSON carries its own `"event"` tag.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EventBody {
    /// A detection start, pulse or stop.
    Detection(DetectionEvent),
    /// A loudness event: loud noise, SPL summary, audio input lost/restored.
    Level(LevelEvent),
    /// The periodic health report.
    Health(Health),
}

/// Detection events of one class. Times are seconds of audio since the input started,
/// levels dBFS (dB SPL when calibrated), scores the class evidence in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DetectionEvent {
    /// Stateful: the class became active.
    DetectionStart(DetectionOnset),
    /// Stateless: one detection, sent together with the start (for rules that want a pulse);
    /// the same fields as the start.
    Detection(DetectionOnset),
    /// Stateful: the class became inactive. The body is the finished [`Detection`], the same
    /// object `analyze` lists under `detections`.
    DetectionStop(Detection),
}

/// The body of a detection start and of its stateless pulse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionOnset {
    /// The class.
    pub class: EarshotClass,
    /// First sample of the evidence that started it, at the input's rate.
    pub start_sample: u64,
    /// `start_sample` in seconds.
    pub start_s: f64,
    /// When the start was known (end of the patch that completed it), seconds.
    pub emitted_s: f64,
    /// Highest evidence so far.
    pub score: f32,
    /// Highest LAFmax so far, dBFS.
    pub lafmax_dbfs: f64,
    /// `lafmax_dbfs` in dB SPL, when calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lafmax_db_spl: Option<f64>,
}

impl DetectionEvent {
    /// The class the event is about.
    pub fn class(&self) -> EarshotClass {
        match self {
            DetectionEvent::DetectionStart(o) | DetectionEvent::Detection(o) => o.class,
            DetectionEvent::DetectionStop(d) => d.class,
        }
    }

    /// The start or pulse event of a raw detector event (`None` for its stop: stops are built
    /// from the finished [`Detection`]).
    pub fn from_detector(
        e: &DetectorEvent,
        rate_hz: u32,
        calibration_offset_db: Option<f64>,
    ) -> Option<Self> {
        let sample = |t: f64| (t * rate_hz as f64).round().max(0.0) as u64;
        let spl = |db: f64| calibration_offset_db.map(|o| db + o);
        match *e {
            DetectorEvent::Start {
                class,
                time_s,
                emitted_s,
                score,
                lafmax_dbfs,
            }
            | DetectorEvent::Pulse {
                class,
                time_s,
                emitted_s,
                score,
                lafmax_dbfs,
            } => {
                let onset = DetectionOnset {
                    class,
                    start_sample: sample(time_s),
                    start_s: time_s,
                    emitted_s,
                    score,
                    lafmax_dbfs,
                    lafmax_db_spl: spl(lafmax_dbfs),
                };
                Some(if matches!(e, DetectorEvent::Start { .. }) {
                    DetectionEvent::DetectionStart(onset)
                } else {
                    DetectionEvent::Detection(onset)
                })
            }
            DetectorEvent::Stop { .. } => None,
        }
    }
}

/// The periodic health report (`"event": "health"`): what the input and every sink are doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    /// Always `"health"`.
    pub event: HealthTag,
    /// The input as configured (`alsa:default`, `wav:PATH`, …).
    pub input: String,
    /// The input's sample rate, Hz.
    pub sample_rate_hz: u32,
    /// Seconds of audio analysed so far.
    pub audio_s: f64,
    /// Wall-clock seconds since the run started.
    pub uptime_s: f64,
    /// Capture ring size, frames, and its latency budget, milliseconds.
    pub ring_frames: usize,
    /// Ring overruns: times the capture thread found the ring full and dropped frames.
    pub overruns: u64,
    /// Frames dropped by those overruns.
    pub overrun_frames: u64,
    /// Underruns: times the analysis waited for audio longer than the ring's latency budget
    /// on a live input (the source stalled).
    pub underruns: u64,
    /// Device buffer overruns (xruns) the source recovered from (ALSA `EPIPE`).
    pub xruns: u64,
    /// Seconds of audio the analysis is behind the capture (ring fill level).
    pub backlog_s: f64,
    /// Patches (0.96 s log-mel windows, one every 0.48 s) the front end has produced since the
    /// run (or its last restart) began.
    pub patches: u64,
    /// Of [`Health::patches`], those the classifier ran on; the cascade gate skipped the rest
    /// (`[gate]` in the configuration). `patches_classified / patches` is the share the CPU
    /// estimate of the README's "Performance" section scales with.
    pub patches_classified: u64,
    /// One entry per sink, in configuration order.
    pub sinks: Vec<SinkHealth>,
}

/// The constant tag `"health"` of [`Health`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename = "health")]
pub enum HealthTag {
    /// `"health"`.
    #[default]
    #[serde(rename = "health")]
    Health,
}

/// One sink's counters in a [`Health`] report. Every event offered to a sink ends in exactly one
/// of `delivered`, `dropped_queue_full`, `dropped_backlog_full`, `failed`, or is still `pending`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkHealth {
    /// The sink's name (`jsonl`, `mqtt`, `webhook:<host>` …).
    pub name: String,
    /// `up`, `down` or `starting`.
    pub state: &'static str,
    /// Events the sink confirmed delivered (MQTT: PUBACK received; webhook: 2xx).
    pub delivered: u64,
    /// Events dropped because the sink's queue was full (the sink was too slow).
    pub dropped_queue_full: u64,
    /// Events dropped because the sink's own backlog was full while it was down.
    pub dropped_backlog_full: u64,
    /// Events given up on after the sink's retries.
    pub failed: u64,
    /// Events accepted and not yet delivered (queue plus backlog).
    pub pending: u64,
}

/// Maps the audio clock (samples since the first sample) to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct AudioClock {
    start: SystemTime,
    rate_hz: u32,
}

impl AudioClock {
    /// A clock whose sample 0 arrived at `start`, counting at `rate_hz`.
    pub fn new(start: SystemTime, rate_hz: u32) -> Self {
        Self {
            start,
            rate_hz: rate_hz.max(1),
        }
    }

    /// The wall-clock time of audio time `stream_s` (seconds), RFC 3339 UTC with milliseconds.
    pub fn wall_time(&self, stream_s: f64) -> String {
        let t = self.start + Duration::from_secs_f64(stream_s.max(0.0));
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// The sample rate of the clock, Hz.
    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }
}

impl Event {
    /// The event's short name as used in MQTT topics and logs: the Earshot class for
    /// detections (`glass_break`), `loud_noise_adaptive` / `loud_noise_absolute`,
    /// `spl_summary`, `audio_input`, `health`.
    pub fn topic_name(&self) -> &'static str {
        match &self.body {
            EventBody::Detection(d) => d.class().name(),
            EventBody::Level(l) => match l {
                LevelEvent::LoudNoiseStart { mode, .. }
                | LevelEvent::LoudNoiseStop { mode, .. } => match mode {
                    LoudnessMode::Adaptive => "loud_noise_adaptive",
                    LoudnessMode::Absolute => "loud_noise_absolute",
                },
                LevelEvent::SplSummary { .. } => "spl_summary",
                LevelEvent::AudioInputLost { .. } | LevelEvent::AudioInputRestored { .. } => {
                    "audio_input"
                }
            },
            EventBody::Health(_) => "health",
        }
    }

    /// The value of the `"event"` tag (`detection_start`, `loud_noise_stop`, `health` …).
    pub fn kind(&self) -> &'static str {
        match &self.body {
            EventBody::Detection(DetectionEvent::DetectionStart(_)) => "detection_start",
            EventBody::Detection(DetectionEvent::Detection(_)) => "detection",
            EventBody::Detection(DetectionEvent::DetectionStop(_)) => "detection_stop",
            EventBody::Level(l) => match l {
                LevelEvent::LoudNoiseStart { .. } => "loud_noise_start",
                LevelEvent::LoudNoiseStop { .. } => "loud_noise_stop",
                LevelEvent::SplSummary { .. } => "spl_summary",
                LevelEvent::AudioInputLost { .. } => "audio_input_lost",
                LevelEvent::AudioInputRestored { .. } => "audio_input_restored",
            },
            EventBody::Health(_) => "health",
        }
    }

    /// True for the start/stop events of a stateful event (detections, loud noise, input loss).
    pub fn is_stateful(&self) -> bool {
        self.active.is_some()
    }

    /// The event as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: string keys, finite or null numbers.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"schema\":\"{EVENT_SCHEMA}\",\"event\":\"error\",\"error\":{:?}}}",
                e.to_string()
            )
        })
    }
}

/// Numbers events in order and stamps them with wall-clock time.
#[derive(Debug, Clone)]
pub struct EventStamper {
    device_id: String,
    clock: AudioClock,
    next_seq: u64,
}

impl EventStamper {
    /// A stamper for `device_id` over `clock`.
    pub fn new(device_id: String, clock: AudioClock) -> Self {
        Self {
            device_id,
            clock,
            next_seq: 0,
        }
    }

    /// The audio clock.
    pub fn clock(&self) -> &AudioClock {
        &self.clock
    }

    /// Wraps `body` into the next [`Event`]; `stream_time_s` is when it happened on the audio
    /// clock.
    pub fn stamp(&mut self, body: EventBody, stream_time_s: f64) -> Event {
        let active = match &body {
            EventBody::Detection(DetectionEvent::DetectionStart(_)) => Some(true),
            EventBody::Detection(DetectionEvent::DetectionStop(_)) => Some(false),
            EventBody::Level(LevelEvent::LoudNoiseStart { .. })
            | EventBody::Level(LevelEvent::AudioInputLost { .. }) => Some(true),
            EventBody::Level(LevelEvent::LoudNoiseStop { .. })
            | EventBody::Level(LevelEvent::AudioInputRestored { .. }) => Some(false),
            _ => None,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        Event {
            schema: EVENT_SCHEMA,
            device_id: self.device_id.clone(),
            seq,
            time: self.clock.wall_time(stream_time_s),
            stream_time_s,
            active,
            test: false,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_envelope_then_tagged_body() {
        let clock = AudioClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            16_000,
        );
        let mut s = EventStamper::new("cam-1".into(), clock);
        let e = s.stamp(
            EventBody::Detection(DetectionEvent::DetectionStart(DetectionOnset {
                class: EarshotClass::GlassBreak,
                start_sample: 16_000,
                start_s: 1.0,
                emitted_s: 1.5,
                score: 0.9,
                lafmax_dbfs: -20.0,
                lafmax_db_spl: None,
            })),
            1.5,
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["schema"], EVENT_SCHEMA);
        assert_eq!(v["event"], "detection_start");
        assert_eq!(v["class"], "glass_break");
        assert_eq!(v["active"], true);
        assert_eq!(v["seq"], 0);
        assert_eq!(v["time"], "2023-11-14T22:13:21.500Z");
        assert!(v.get("lafmax_db_spl").is_none());
        assert!(v.get("test").is_none());
        assert_eq!(e.topic_name(), "glass_break");
        let h = s.stamp(EventBody::Health(Health::default()), 2.0);
        let v: serde_json::Value = serde_json::from_str(&h.to_json()).unwrap();
        assert_eq!(v["event"], "health");
        assert_eq!(v["seq"], 1);
        assert!(v.get("active").is_none());
    }
}
