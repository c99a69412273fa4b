//! The detector bank: one [`Detector`] per Earshot class over the per-patch [`evidence`], the
//! per-class sensitivity integrators set, and the detections it reports.
//!
//! **Sensitivity** (0–100, 50 = the tuned default, as camera UIs present it) maps to the
//! detector's on-threshold on the class evidence:
//!
//! ```text
//! on  = base_on · 2^((50 − sensitivity) / 50)
//! off = 0.6 · on
//! ```
//!
//! so every 50 points halve (more sensitive) or double (less sensitive) the evidence needed:
//! with `base_on` = 0.5, sensitivity 0 needs evidence 1.0, 25 needs 0.71, 50 needs 0.5,
//! 75 needs 0.35 and 100 needs 0.25. `base_on` is 0.5 for every class because the evidence is already normalised
//! per class ([`crate::evidence`]).
//!
//! Defaults (tuned for few false alarms on `../shared/eval`, see `README.md`):
//!
//! | class | min duration | hold | cooldown | level gate |
//! |---|---|---|---|---|
//! | glass_break | 0 s | 1.0 s | 2 s | LAFmax ≥ −70 dBFS and ≥ 6 dB above the background |
//! | aggression | 0 s | 2.0 s | 5 s | the same, and LAeq ≥ 3 dB above the recent level |
//! | gunshot | 0 s | 1.0 s | 2 s | LAFmax ≥ −70 dBFS and ≥ 6 dB above the background |
//! | speech | 0 s | 0.5 s | 0 s | none (informational, not an alarm class) |
//!
//! Minimum durations are 0 because one patch already spans 0.975 s of audio.

use serde::Serialize;

use crate::classes::EarshotClass;
use crate::detector::{Detector, DetectorEvent, DetectorSettings, Evidence, LevelGate};
use crate::pipeline::{Gate, PatchReport};

/// Aggression's LAeq must exceed the recent level (80th percentile of the 100 ms LAeq over
/// 60 s) by this much, dB: a raised voice is louder than the speech a place has been hearing.
pub const AGGRESSION_ABOVE_RECENT_DB: f64 = 3.0;

/// Sensitivity that gives the tuned default threshold.
pub const DEFAULT_SENSITIVITY: u8 = 50;
/// On-threshold at the default sensitivity, for every class (evidence is normalised).
pub const BASE_ON_THRESHOLD: f32 = 0.5;
/// Off-threshold as a fraction of the on-threshold (hysteresis).
pub const OFF_FRACTION: f32 = 0.6;

/// The (on, off) thresholds for a sensitivity from 0 to 100 (values above 100 count as 100).
pub fn thresholds_for_sensitivity(sensitivity: u8) -> (f32, f32) {
    let s = sensitivity.min(100) as f32;
    let on = (BASE_ON_THRESHOLD * 2f32.powf((50.0 - s) / 50.0)).clamp(0.02, 1.0);
    (on, on * OFF_FRACTION)
}

/// Settings of one class's detector, in the units integrators use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassSettings {
    /// Whether the class is detected at all.
    pub enabled: bool,
    /// 0–100; see the module documentation.
    pub sensitivity: u8,
    /// An explicit on-threshold on the evidence, in (0, 1], overriding the sensitivity.
    pub on_threshold: Option<f32>,
    /// Seconds of evidence before a start, ≥ 0.
    pub min_duration_s: f64,
    /// Seconds an event stays active after its last evidence, ≥ 0.
    pub hold_s: f64,
    /// Seconds after a stop without a new start, ≥ 0.
    pub cooldown_s: f64,
    /// Level condition for starting.
    pub level_gate: Option<LevelGate>,
}

impl ClassSettings {
    /// The tuned defaults of `class` (see the module documentation).
    pub fn default_for(class: EarshotClass) -> Self {
        let gate = |above_recent_db| {
            Some(LevelGate::Both {
                min_dbfs: -70.0,
                above_background_db: 6.0,
                above_recent_db,
            })
        };
        let (hold_s, cooldown_s, level_gate) = match class {
            EarshotClass::GlassBreak | EarshotClass::Gunshot => (1.0, 2.0, gate(None)),
            EarshotClass::Aggression => (2.0, 5.0, gate(Some(AGGRESSION_ABOVE_RECENT_DB))),
            EarshotClass::Speech => (0.5, 0.0, None),
        };
        Self {
            enabled: true,
            sensitivity: DEFAULT_SENSITIVITY,
            on_threshold: None,
            min_duration_s: 0.0,
            hold_s,
            cooldown_s,
            level_gate,
        }
    }

    /// The state machine's settings.
    ///
    /// # Errors
    /// A message naming the field, its value and what is allowed.
    pub fn detector_settings(&self) -> Result<DetectorSettings, String> {
        if self.sensitivity > 100 {
            return Err(format!(
                "sensitivity = {}: expected 0 to 100",
                self.sensitivity
            ));
        }
        let (on, off) = match self.on_threshold {
            Some(on) if on > 0.0 && on <= 1.0 => (on, on * OFF_FRACTION),
            Some(on) => return Err(format!("threshold = {on}: expected a score in (0, 1]")),
            None => thresholds_for_sensitivity(self.sensitivity),
        };
        let s = DetectorSettings {
            on_threshold: on,
            off_threshold: off,
            min_duration_s: self.min_duration_s,
            hold_s: self.hold_s,
            cooldown_s: self.cooldown_s,
            level_gate: self.level_gate,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Settings of every class, indexed by [`EarshotClass::slot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Per class.
    pub classes: [ClassSettings; EarshotClass::ALL.len()],
    /// dB SPL = dBFS + this offset, when calibrated.
    pub calibration_offset_db: Option<f64>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            classes: EarshotClass::ALL.map(ClassSettings::default_for),
            calibration_offset_db: None,
        }
    }
}

impl DetectorConfig {
    /// The settings of `class`.
    pub fn class(&self, class: EarshotClass) -> &ClassSettings {
        &self.classes[class.slot()]
    }

    /// The settings of `class`, to change.
    pub fn class_mut(&mut self, class: EarshotClass) -> &mut ClassSettings {
        &mut self.classes[class.slot()]
    }

    /// The cascade gate ([`Gate`]) that skips only patches no enabled alarm detector could
    /// start on: the loosest level gate of the enabled alarm classes (glass break, aggression,
    /// gunshot), lowered by `slack_db` (dB, ≥ 0), held open while a class's evidence stays at or
    /// above its off-threshold. `None` (classify every patch) when an enabled alarm class has
    /// no level gate, or when none is enabled.
    ///
    /// Speech is context, not an alarm, and has no level gate: it neither opens nor holds the
    /// gate, so with the gate on, speech is detected only in the patches classified for the
    /// alarm classes (`--no-gate`, or `[gate] enabled = false`, for all of it).
    ///
    /// # Errors
    /// A message naming `slack_db` when it is negative or not finite, or a class's invalid
    /// threshold (as [`ClassSettings::detector_settings`]).
    pub fn cascade_gate(&self, slack_db: f64) -> Result<Option<Gate>, String> {
        if !(slack_db.is_finite() && slack_db >= 0.0) {
            return Err(format!("gate slack_db = {slack_db}: expected 0 dB or more"));
        }
        let mut gate = Gate {
            min_dbfs: f64::INFINITY,
            above_background_db: f64::INFINITY,
            hold_scores: [None; EarshotClass::ALL.len()],
        };
        let mut any = false;
        for class in EarshotClass::ALL {
            let c = self.class(class);
            if !c.enabled || class == EarshotClass::Speech {
                continue;
            }
            any = true;
            let (min_dbfs, above) = match c.level_gate {
                None => return Ok(None),
                Some(LevelGate::AbsoluteDbfs(min)) => (min, f64::NEG_INFINITY),
                Some(LevelGate::AboveBackgroundDb(margin)) => (f64::NEG_INFINITY, margin),
                Some(LevelGate::Both {
                    min_dbfs,
                    above_background_db,
                    ..
                }) => (min_dbfs, above_background_db),
            };
            gate.min_dbfs = gate.min_dbfs.min(min_dbfs - slack_db);
            gate.above_background_db = gate.above_background_db.min(above - slack_db);
            gate.hold_scores[class.slot()] = Some(c.detector_settings()?.off_threshold);
        }
        Ok(any.then_some(gate))
    }
}

/// A span of audio in which one class was detected: a start event and its stop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The Earshot class.
    pub class: EarshotClass,
    /// Start: the first sample of the evidence that started it, at the input's rate.
    pub start_sample: u64,
    /// End: one past the last sample (last evidence above the off-threshold + hold time,
    /// clamped to the input).
    pub end_sample: u64,
    /// `start_sample` in seconds.
    pub start_s: f64,
    /// `end_sample` in seconds.
    pub end_s: f64,
    /// When the start event was published (end of the patch that completed it), seconds;
    /// the detection latency is `emitted_s` minus the sound's onset.
    pub emitted_s: f64,
    /// Highest evidence over the detection, in [0, 1].
    pub peak_score: f32,
    /// Highest LAFmax over the detection's evidence, dBFS.
    pub lafmax_dbfs: f64,
    /// LAeq over the detection's evidence, dBFS.
    pub laeq_dbfs: f64,
    /// LAFmax in dB SPL, when calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lafmax_db_spl: Option<f64>,
    /// LAeq in dB SPL, when calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laeq_db_spl: Option<f64>,
}

/// What [`DetectorBank`] reports as it happens: a raw start or pulse, or a finished detection
/// (the stop, with its end clamped to the input when the bank is finishing).
#[derive(Debug, Clone, Copy)]
pub enum BankEvent<'a> {
    /// A [`DetectorEvent::Start`] or [`DetectorEvent::Pulse`].
    Raw(&'a DetectorEvent),
    /// A detection ended (the stateful stop).
    Finished(&'a Detection),
}

/// Runs every enabled class's detector over patch reports.
#[derive(Debug, Clone)]
pub struct DetectorBank {
    detectors: Vec<(EarshotClass, Detector)>,
    /// Start events waiting for their stop: (class, emitted_s).
    emitted: Vec<(EarshotClass, f64)>,
    rate_hz: u32,
    calibration_offset_db: Option<f64>,
    events: Vec<DetectorEvent>,
    /// Set by `finish`: detections end by then.
    duration_s: Option<f64>,
}

impl DetectorBank {
    /// A bank for an input at `rate_hz` (for sample offsets).
    ///
    /// # Errors
    /// A message naming the class, the field, its value and what is allowed.
    pub fn new(rate_hz: u32, config: &DetectorConfig) -> Result<Self, String> {
        let mut detectors = Vec::new();
        for class in EarshotClass::ALL {
            let c = config.class(class);
            if !c.enabled {
                continue;
            }
            let settings = c.detector_settings().map_err(|e| format!("{class}: {e}"))?;
            detectors.push((class, Detector::new(class, settings)?));
        }
        Ok(Self {
            detectors,
            emitted: Vec::new(),
            rate_hz: rate_hz.max(1),
            calibration_offset_db: config.calibration_offset_db,
            events: Vec::with_capacity(8),
            duration_s: None,
        })
    }

    /// Takes the next patch (in order) with the background level estimate at that time, and
    /// appends every detection it completes to `done`; `on_event` sees every start and pulse,
    /// and every finished detection, as they happen.
    pub fn push(
        &mut self,
        patch: &PatchReport,
        background_dbfs: Option<f64>,
        done: &mut Vec<Detection>,
        on_event: &mut impl FnMut(BankEvent<'_>),
    ) {
        for (class, detector) in &mut self.detectors {
            let e = Evidence {
                time_s: patch.start_s,
                end_s: patch.end_s,
                score: patch.class_scores[class.slot()],
                lafmax_dbfs: patch.level.lafmax_dbfs,
                laeq_dbfs: patch.level.laeq_dbfs,
                background_dbfs,
                recent_dbfs: patch.recent_dbfs,
            };
            detector.push(&e, &mut self.events);
        }
        self.drain(done, on_event);
    }

    /// Ends the input at `duration_s`: every active detection stops by then.
    pub fn finish(
        &mut self,
        duration_s: f64,
        done: &mut Vec<Detection>,
        on_event: &mut impl FnMut(BankEvent<'_>),
    ) {
        self.duration_s = Some(duration_s);
        for (_, d) in &mut self.detectors {
            d.finish(duration_s, &mut self.events);
        }
        self.drain(done, on_event);
        for d in done.iter_mut() {
            if d.end_s > duration_s {
                d.end_s = duration_s.max(d.start_s);
                d.end_sample = self.sample(d.end_s);
            }
        }
        done.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.class.cmp(&b.class)));
    }

    fn sample(&self, t: f64) -> u64 {
        (t * self.rate_hz as f64).round().max(0.0) as u64
    }

    fn drain(&mut self, done: &mut Vec<Detection>, on_event: &mut impl FnMut(BankEvent<'_>)) {
        // Take the buffer out to call `self` methods while draining it, then put it back so
        // its capacity is kept: steady running does not allocate here.
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                DetectorEvent::Start {
                    class, emitted_s, ..
                } => {
                    on_event(BankEvent::Raw(&ev));
                    self.emitted.push((class, emitted_s));
                }
                DetectorEvent::Pulse { .. } => on_event(BankEvent::Raw(&ev)),
                DetectorEvent::Stop {
                    class,
                    start_s,
                    time_s,
                    peak_score,
                    lafmax_dbfs,
                    laeq_dbfs,
                } => {
                    let emitted_s = match self.emitted.iter().position(|(c, _)| *c == class) {
                        Some(i) => self.emitted.swap_remove(i).1,
                        None => start_s,
                    };
                    let spl = |db: f64| self.calibration_offset_db.map(|o| db + o);
                    let end_s = match self.duration_s {
                        Some(d) if time_s > d => d.max(start_s),
                        _ => time_s,
                    };
                    let detection = Detection {
                        class,
                        start_sample: self.sample(start_s),
                        end_sample: self.sample(end_s),
                        start_s,
                        end_s,
                        emitted_s,
                        peak_score,
                        lafmax_dbfs,
                        laeq_dbfs,
                        lafmax_db_spl: spl(lafmax_dbfs),
                        laeq_db_spl: spl(laeq_dbfs),
                    };
                    on_event(BankEvent::Finished(&detection));
                    done.push(detection);
                }
            }
        }
        self.events = events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitivity_maps_to_documented_thresholds() {
        let (on, off) = thresholds_for_sensitivity(50);
        assert_eq!(on, 0.5);
        assert!((off - 0.3).abs() < 1e-6);
        assert!((thresholds_for_sensitivity(75).0 - 0.3536).abs() < 1e-4);
        assert!((thresholds_for_sensitivity(100).0 - 0.25).abs() < 1e-6);
        // 0.5 · √2.
        assert!((thresholds_for_sensitivity(25).0 - std::f32::consts::SQRT_2 / 2.0).abs() < 1e-6);
        assert_eq!(thresholds_for_sensitivity(0).0, 1.0);
        assert_eq!(thresholds_for_sensitivity(255).0, 0.25);
        // Monotonic: more sensitive never needs more evidence.
        for s in 0..100u8 {
            assert!(thresholds_for_sensitivity(s + 1).0 <= thresholds_for_sensitivity(s).0);
        }
    }

    #[test]
    fn cascade_gate_is_the_loosest_enabled_level_gate() {
        let c = DetectorConfig::default();
        let g = c
            .cascade_gate(0.0)
            .unwrap()
            .expect("every alarm class has a level gate");
        assert_eq!((g.min_dbfs, g.above_background_db), (-70.0, 6.0));
        // Held open at each enabled alarm class's off-threshold; never for speech.
        let holds = g.hold_scores;
        assert!((holds[EarshotClass::GlassBreak.slot()].unwrap() - 0.3).abs() < 1e-6);
        assert_eq!(holds[EarshotClass::Speech.slot()], None);
        // A more sensitive class holds at its own lower off-threshold.
        let mut c = DetectorConfig::default();
        c.class_mut(EarshotClass::Gunshot).sensitivity = 100;
        let g = c.cascade_gate(2.5).unwrap().unwrap();
        assert!((g.hold_scores[EarshotClass::Gunshot.slot()].unwrap() - 0.15).abs() < 1e-6);
        assert_eq!((g.min_dbfs, g.above_background_db), (-72.5, 3.5));
        // One class with a looser gate loosens the whole gate.
        c.class_mut(EarshotClass::GlassBreak).level_gate = Some(LevelGate::AboveBackgroundDb(2.0));
        let g = c.cascade_gate(0.0).unwrap().unwrap();
        assert_eq!(
            (g.min_dbfs, g.above_background_db),
            (f64::NEG_INFINITY, 2.0)
        );
        // Speech (context, no level gate) does not keep the gate open.
        let mut c = DetectorConfig::default();
        c.class_mut(EarshotClass::Speech).enabled = true;
        assert!(c.cascade_gate(0.0).unwrap().is_some());
        // An enabled alarm class without a level gate can start on any patch: no gate.
        c.class_mut(EarshotClass::Gunshot).level_gate = None;
        assert_eq!(c.cascade_gate(0.0), Ok(None));
        // Nothing enabled: nothing to classify for, but no gate either (timelines still work).
        let mut c = DetectorConfig::default();
        for class in EarshotClass::ALL {
            c.class_mut(class).enabled = false;
        }
        assert_eq!(c.cascade_gate(0.0), Ok(None));
        let e = DetectorConfig::default().cascade_gate(-1.0).unwrap_err();
        assert!(e.contains("slack_db = -1"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_class_and_field() {
        let mut c = DetectorConfig::default();
        c.class_mut(EarshotClass::Gunshot).sensitivity = 120;
        let e = DetectorBank::new(16_000, &c).unwrap_err();
        assert!(
            e.contains("gunshot") && e.contains("sensitivity = 120"),
            "{e}"
        );
        let mut c = DetectorConfig::default();
        c.class_mut(EarshotClass::Aggression).hold_s = -1.0;
        let e = DetectorBank::new(16_000, &c).unwrap_err();
        assert!(e.contains("aggression") && e.contains("hold_s"), "{e}");
    }
}
