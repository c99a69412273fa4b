//! A per-class detector: a small state machine over (time, score, level) that turns per-patch
//! evidence into stateful start/stop events and stateless pulses.
//!
//! ```text
//!            score ≥ on for min_duration            score < off for hold
//!   Idle ──────────────────────────────► Active ──────────────────────────► Cooldown ──► Idle
//!    ▲  (level gate must pass)             │ emits Start + Pulse              emits Stop   (after cooldown)
//!    └── score falls below on before min_duration: back to Idle, nothing emitted
//! ```
//!
//! - **Hysteresis**: an event starts at `on_threshold` and only ends once the score has stayed
//!   below `off_threshold` (≤ `on_threshold`) for the hold time, so a score hovering around one
//!   threshold does not chatter.
//! - **Minimum duration**: the score must stay at or above `on_threshold` for `min_duration_s`
//!   (measured between evidence times) before the start is emitted; 0 starts on the first patch.
//! - **Hold time**: once active, the event stays active until `hold_s` seconds after the last
//!   evidence at or above `off_threshold`.
//! - **Cooldown**: after a stop, no new start for `cooldown_s` seconds.
//! - **Level gate** (optional): evidence counts towards a start only when its level passes the
//!   gate: an absolute LAFmax in dBFS, or a margin in dB above the background estimate.
//!
//! Times are seconds on the audio clock (sample count / rate), not wall time; the caller feeds
//! evidence in time order.

use serde::Serialize;

use crate::classes::EarshotClass;

/// When evidence is loud enough to count towards a start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LevelGate {
    /// LAFmax of the evidence at or above this level, dBFS.
    AbsoluteDbfs(f64),
    /// LAFmax at least this many dB above the background estimate of the evidence.
    AboveBackgroundDb(f64),
    /// Both: LAFmax at or above `min_dbfs`, and `above_background_db` above the background
    /// when a background estimate exists; with `above_recent_db`, also the evidence's LAeq at
    /// least that many dB above the recent level (the 80th percentile of the 100 ms LAeq over
    /// the last 60 s) when it is known: "louder than what this place has been hearing", which
    /// tells a raised voice from ongoing speech.
    Both {
        /// Absolute floor, dBFS.
        min_dbfs: f64,
        /// Margin above the background, dB.
        above_background_db: f64,
        /// Margin of the LAeq above the recent level, dB; `None`: not checked.
        above_recent_db: Option<f64>,
    },
}

/// Settings of one detector. Validated by [`DetectorSettings::validate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSettings {
    /// Score at or above which evidence can start an event, in [0, 1].
    pub on_threshold: f32,
    /// Score below which an active event starts to end, in [0, `on_threshold`].
    pub off_threshold: f32,
    /// Seconds of evidence at or above `on_threshold` before a start, ≥ 0.
    pub min_duration_s: f64,
    /// Seconds an event stays active after the last evidence at or above `off_threshold`, ≥ 0.
    pub hold_s: f64,
    /// Seconds after a stop during which no new event starts, ≥ 0.
    pub cooldown_s: f64,
    /// Optional level condition for starting.
    pub level_gate: Option<LevelGate>,
}

impl DetectorSettings {
    /// Checks ranges; the error names the field, its value and what is allowed.
    ///
    /// # Errors
    /// A message for the first field out of range.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32, hi: f32| {
            if (0.0..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v}: expected a score from 0 to {hi}"))
            }
        };
        unit("on_threshold", self.on_threshold, 1.0)?;
        unit("off_threshold", self.off_threshold, self.on_threshold)?;
        for (name, v) in [
            ("min_duration_s", self.min_duration_s),
            ("hold_s", self.hold_s),
            ("cooldown_s", self.cooldown_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} = {v}: expected seconds ≥ 0"));
            }
        }
        let gate_values = match self.level_gate {
            None => [0.0, 0.0],
            Some(LevelGate::AbsoluteDbfs(v) | LevelGate::AboveBackgroundDb(v)) => [v, 0.0],
            Some(LevelGate::Both {
                min_dbfs,
                above_background_db,
                above_recent_db,
            }) => {
                if above_recent_db.is_some_and(|v| !v.is_finite()) {
                    return Err(format!(
                        "level gate above_recent_db = {above_recent_db:?}: expected a finite number of dB"
                    ));
                }
                [min_dbfs, above_background_db]
            }
        };
        if let Some(v) = gate_values.iter().find(|v| !v.is_finite()) {
            return Err(format!("level gate = {v}: expected a finite number of dB"));
        }
        Ok(())
    }
}

/// What the detector is given for each patch, in time order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Time of the evidence (the patch's start), seconds on the audio clock.
    pub time_s: f64,
    /// When the evidence became available (the patch's end), seconds on the audio clock; a
    /// start event is published at this time.
    pub end_s: f64,
    /// The class score, in [0, 1].
    pub score: f32,
    /// LAFmax over the patch, dBFS.
    pub lafmax_dbfs: f64,
    /// LAeq over the patch, dBFS.
    pub laeq_dbfs: f64,
    /// The background level estimate at that time, dBFS, when one is tracked.
    pub background_dbfs: Option<f64>,
    /// The recent level (80th percentile of the 100 ms LAeq over 60 s), dBFS, when known.
    pub recent_dbfs: Option<f64>,
}

/// What a detector emits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DetectorEvent {
    /// Stateful: the event became active (emitted together with a [`Pulse`](Self::Pulse)).
    Start {
        /// The class.
        class: EarshotClass,
        /// Time of the first evidence of the run that started it, seconds.
        time_s: f64,
        /// When the start was known (end of the evidence that completed it), seconds.
        emitted_s: f64,
        /// Highest score so far.
        score: f32,
        /// Highest LAFmax so far, dBFS.
        lafmax_dbfs: f64,
    },
    /// Stateless: one detection (emitted at the start).
    Pulse {
        /// The class.
        class: EarshotClass,
        /// Time of the first evidence of the run, seconds.
        time_s: f64,
        /// When the detection was known, seconds.
        emitted_s: f64,
        /// Highest score so far.
        score: f32,
        /// Highest LAFmax so far, dBFS.
        lafmax_dbfs: f64,
    },
    /// Stateful: the event ended.
    Stop {
        /// The class.
        class: EarshotClass,
        /// When it started, seconds.
        start_s: f64,
        /// When it ended (last evidence at or above `off_threshold` + hold time), seconds.
        time_s: f64,
        /// Highest score over the event.
        peak_score: f32,
        /// Highest LAFmax over the event, dBFS.
        lafmax_dbfs: f64,
        /// LAeq over the event's evidence (energy mean of the patches' LAeq), dBFS.
        laeq_dbfs: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Idle,
    /// Evidence at or above `on` since `since`; not yet long enough.
    Arming {
        since: f64,
        peak: f32,
        lafmax: f64,
    },
    /// Active since `start`; `last_above_off` is the last evidence time at or above `off`.
    Active {
        start: f64,
        last_above_off: f64,
        peak: f32,
        lafmax: f64,
        /// Sum of the evidence's mean-square A-weighted levels, and how many.
        energy: f64,
        count: u32,
    },
    /// Stopped at `until − cooldown`; no start before `until`.
    Cooldown {
        until: f64,
    },
}

/// One class's detector.
#[derive(Debug, Clone)]
pub struct Detector {
    class: EarshotClass,
    settings: DetectorSettings,
    state: State,
}

impl Detector {
    /// A detector for `class`.
    ///
    /// # Errors
    /// The message of [`DetectorSettings::validate`].
    pub fn new(class: EarshotClass, settings: DetectorSettings) -> Result<Self, String> {
        settings.validate()?;
        Ok(Self {
            class,
            settings,
            state: State::Idle,
        })
    }

    /// True while an event is active.
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    fn gate_passes(&self, e: &Evidence) -> bool {
        match self.settings.level_gate {
            None => true,
            Some(LevelGate::AbsoluteDbfs(min)) => e.lafmax_dbfs >= min,
            Some(LevelGate::AboveBackgroundDb(margin)) => e
                .background_dbfs
                .is_none_or(|bg| e.lafmax_dbfs >= bg + margin),
            Some(LevelGate::Both {
                min_dbfs,
                above_background_db,
                above_recent_db,
            }) => {
                e.lafmax_dbfs >= min_dbfs
                    && e.background_dbfs
                        .is_none_or(|bg| e.lafmax_dbfs >= bg + above_background_db)
                    && above_recent_db.is_none_or(|margin| {
                        e.recent_dbfs.is_none_or(|r| e.laeq_dbfs >= r + margin)
                    })
            }
        }
    }

    /// Takes the next evidence (time order) and appends the events it causes to `out`.
    pub fn push(&mut self, e: &Evidence, out: &mut Vec<DetectorEvent>) {
        let s = self.settings;
        let class = self.class;
        // An active event whose hold ran out before this evidence ends first.
        if let Some(end) = self.hold_end() {
            if e.score < s.off_threshold && e.time_s >= end {
                out.extend(self.stop_at(end));
                self.state = State::Cooldown {
                    until: end + s.cooldown_s,
                };
            } else if let State::Active {
                start,
                last_above_off,
                peak,
                lafmax,
                energy,
                count,
            } = self.state
            {
                let above = e.score >= s.off_threshold;
                self.state = State::Active {
                    start,
                    energy: energy + mean_square(e.laeq_dbfs),
                    count: count + 1,
                    last_above_off: if above { e.time_s } else { last_above_off },
                    peak: peak.max(e.score),
                    lafmax: if above {
                        lafmax.max(e.lafmax_dbfs)
                    } else {
                        lafmax
                    },
                };
                return;
            }
        }
        if let State::Cooldown { until } = self.state {
            if e.time_s < until {
                return;
            }
            self.state = State::Idle;
        }
        let counts = e.score >= s.on_threshold && self.gate_passes(e);
        self.state = match (self.state, counts) {
            (_, false) => State::Idle,
            (
                State::Arming {
                    since,
                    peak,
                    lafmax,
                },
                true,
            ) => State::Arming {
                since,
                peak: peak.max(e.score),
                lafmax: lafmax.max(e.lafmax_dbfs),
            },
            (_, true) => State::Arming {
                since: e.time_s,
                peak: e.score,
                lafmax: e.lafmax_dbfs,
            },
        };
        if let State::Arming {
            since,
            peak,
            lafmax,
        } = self.state
        {
            if e.time_s - since >= s.min_duration_s {
                out.push(DetectorEvent::Start {
                    class,
                    time_s: since,
                    emitted_s: e.end_s,
                    score: peak,
                    lafmax_dbfs: lafmax,
                });
                out.push(DetectorEvent::Pulse {
                    class,
                    time_s: since,
                    emitted_s: e.end_s,
                    score: peak,
                    lafmax_dbfs: lafmax,
                });
                self.state = State::Active {
                    start: since,
                    last_above_off: e.time_s,
                    peak,
                    lafmax,
                    energy: mean_square(e.laeq_dbfs),
                    count: 1,
                };
            }
        }
    }

    /// Ends the stream at `time_s`: an active event stops there (at the latest), so no stateful
    /// event is left open. Appends the stop, if any, to `out`; the detector is then idle.
    pub fn finish(&mut self, time_s: f64, out: &mut Vec<DetectorEvent>) {
        if let Some(end) = self.hold_end() {
            out.extend(self.stop_at(end.min(time_s)));
        }
        self.state = State::Idle;
    }

    /// When the active event ends if no more evidence at or above `off_threshold` comes:
    /// the last such evidence plus the hold time. `None` when not active.
    fn hold_end(&self) -> Option<f64> {
        match self.state {
            State::Active { last_above_off, .. } => Some(last_above_off + self.settings.hold_s),
            _ => None,
        }
    }

    /// The stop event of the active event, ending at `end_s` (never before its start).
    fn stop_at(&self, end_s: f64) -> Option<DetectorEvent> {
        match self.state {
            State::Active {
                start,
                peak,
                lafmax,
                energy,
                count,
                ..
            } => Some(DetectorEvent::Stop {
                class: self.class,
                start_s: start,
                time_s: end_s.max(start),
                peak_score: peak,
                lafmax_dbfs: lafmax,
                laeq_dbfs: earshot_dsp::level::db_from_mean_square(energy / count.max(1) as f64),
            }),
            _ => None,
        }
    }
}

/// Mean square (relative to full scale) of a level in dB.
fn mean_square(db: f64) -> f64 {
    if db.is_finite() {
        10f64.powf(db / 10.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: f64 = 0.48;

    fn settings() -> DetectorSettings {
        DetectorSettings {
            on_threshold: 0.6,
            off_threshold: 0.4,
            min_duration_s: 0.0,
            hold_s: 1.0,
            cooldown_s: 0.0,
            level_gate: None,
        }
    }

    /// Runs a score sequence (one per 0.48 s patch, LAFmax −20 dBFS) and returns the events.
    fn run(s: DetectorSettings, scores: &[f32]) -> Vec<DetectorEvent> {
        let mut d = Detector::new(EarshotClass::GlassBreak, s).unwrap();
        let mut out = Vec::new();
        for (i, &score) in scores.iter().enumerate() {
            let e = Evidence {
                time_s: i as f64 * HOP,
                end_s: i as f64 * HOP + 0.975,
                score,
                lafmax_dbfs: -20.0,
                laeq_dbfs: -25.0,
                background_dbfs: Some(-40.0),
                recent_dbfs: None,
            };
            d.push(&e, &mut out);
        }
        d.finish(scores.len() as f64 * HOP, &mut out);
        out
    }

    fn spans(events: &[DetectorEvent]) -> Vec<(f64, f64)> {
        events
            .iter()
            .filter_map(|e| match e {
                DetectorEvent::Stop {
                    start_s, time_s, ..
                } => Some((*start_s, *time_s)),
                _ => None,
            })
            .collect()
    }

    fn approx(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.0 - y.0).abs() < 1e-9 && (x.1 - y.1).abs() < 1e-9)
    }

    #[test]
    fn start_comes_with_a_pulse_and_every_start_has_a_stop() {
        let ev = run(settings(), &[0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1]);
        assert!(
            matches!(ev[0], DetectorEvent::Start { time_s, score, .. } if time_s == HOP && score == 0.9)
        );
        assert!(matches!(ev[1], DetectorEvent::Pulse { .. }));
        // Last evidence ≥ off at 0.96 s, hold 1 s → stop at 1.96 s.
        assert!(approx(&spans(&ev), &[(HOP, 2.0 * HOP + 1.0)]));
        assert_eq!(ev.len(), 3);
    }

    #[test]
    fn hysteresis_keeps_a_hovering_score_as_one_event() {
        // Between off (0.4) and on (0.6) the event goes on; a plain 0.6 threshold would split it.
        let ev = run(settings(), &[0.7, 0.5, 0.45, 0.55, 0.7, 0.1, 0.1, 0.1, 0.1]);
        assert_eq!(spans(&ev).len(), 1);
        let starts = ev
            .iter()
            .filter(|e| matches!(e, DetectorEvent::Start { .. }))
            .count();
        assert_eq!(starts, 1);
    }

    #[test]
    fn hold_time_bridges_short_gaps_and_ends_long_ones() {
        let s = DetectorSettings {
            hold_s: 1.0,
            ..settings()
        };
        // Gap of one patch (0.48 s < hold): one event.
        assert_eq!(
            spans(&run(s, &[0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1])).len(),
            1
        );
        // Gap of three patches (1.44 s > hold): two events.
        assert_eq!(
            spans(&run(s, &[0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1])).len(),
            2
        );
        // Without hold, the first patch below off ends it at the last evidence above off.
        let s0 = DetectorSettings {
            hold_s: 0.0,
            ..settings()
        };
        assert!(approx(&spans(&run(s0, &[0.9, 0.9, 0.1])), &[(0.0, HOP)]));
    }

    #[test]
    fn minimum_duration_ignores_blips() {
        let s = DetectorSettings {
            min_duration_s: 0.9,
            ..settings()
        };
        // Two consecutive patches span 0.48 s < 0.9 s: nothing.
        assert!(run(s, &[0.9, 0.9, 0.1, 0.1]).is_empty());
        // Three span 0.96 s: one event, starting at the first of them.
        let ev = run(s, &[0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]);
        assert!(
            matches!(ev[0], DetectorEvent::Start { time_s, .. } if (time_s - HOP).abs() < 1e-9)
        );
    }

    #[test]
    fn cooldown_suppresses_a_new_start() {
        let seq = [
            0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1,
        ];
        let s = DetectorSettings {
            hold_s: 0.0,
            cooldown_s: 3.0,
            ..settings()
        };
        // Stop at 0 s (hold 0), cooldown to 3 s: the 1.92 s evidence is ignored, 5.76 s starts.
        let sp = spans(&run(s, &seq));
        assert_eq!(sp.len(), 2, "{sp:?}");
        assert!((sp[1].0 - 12.0 * HOP).abs() < 1e-9);
        let s0 = DetectorSettings {
            hold_s: 0.0,
            cooldown_s: 0.0,
            ..settings()
        };
        assert_eq!(spans(&run(s0, &seq)).len(), 3);
    }

    #[test]
    fn level_gate_blocks_quiet_evidence() {
        let mut d = Detector::new(
            EarshotClass::Gunshot,
            DetectorSettings {
                level_gate: Some(LevelGate::AboveBackgroundDb(10.0)),
                ..settings()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        let e = |t: f64, l: f64| Evidence {
            time_s: t,
            end_s: t + 0.975,
            score: 0.95,
            lafmax_dbfs: l,
            laeq_dbfs: l - 5.0,
            background_dbfs: Some(-40.0),
            recent_dbfs: None,
        };
        d.push(&e(0.0, -35.0), &mut out); // only 5 dB above background
        assert!(out.is_empty());
        d.push(&e(0.48, -25.0), &mut out); // 15 dB above
        assert!(matches!(out[0], DetectorEvent::Start { .. }));
        let mut g = Detector::new(
            EarshotClass::Gunshot,
            DetectorSettings {
                level_gate: Some(LevelGate::AbsoluteDbfs(-30.0)),
                ..settings()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        g.push(&e(0.0, -35.0), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn finish_closes_an_open_event_at_the_end_of_the_stream() {
        let ev = run(
            DetectorSettings {
                hold_s: 5.0,
                ..settings()
            },
            &[0.9, 0.9],
        );
        assert!(approx(&spans(&ev), &[(0.0, 2.0 * HOP)]));
    }

    #[test]
    fn invalid_settings_are_named() {
        let e = Detector::new(
            EarshotClass::Speech,
            DetectorSettings {
                off_threshold: 0.8,
                ..settings()
            },
        )
        .unwrap_err();
        assert!(e.contains("off_threshold = 0.8"), "{e}");
        let e = Detector::new(
            EarshotClass::Speech,
            DetectorSettings {
                hold_s: f64::NAN,
                ..settings()
            },
        )
        .unwrap_err();
        assert!(e.contains("hold_s"), "{e}");
    }
}
