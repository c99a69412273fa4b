//! Level-based events straight from the samples: loud noise (above an absolute level, or above
//! the learned background), periodic sound-level summaries, and audio input loss.
//!
//! One [`LevelEvents`] is fed the raw mono samples at the input rate, in chunks of any size; it
//! runs an IEC 61672-1 [`LevelMeter`] emitting one [`LevelBlock`] per 10 ms (`rate / 100`
//! samples), a BS.1770-4 [`LoudnessMeter`], a [`BackgroundTracker`] and a per-sample input check,
//! and calls `emit` with a [`LevelEvent`] whenever something happens. Every offset in an event
//! is a sample count at the input rate since the stream start (`*_s` fields are the same divided
//! by the rate); events are emitted when they are detected, which can be later than the instant
//! they report (a loud-noise start is reported at its first loud block but only emitted once the
//! minimum duration has passed).
//!
//! # Levels
//!
//! All levels are dBFS, RMS-referenced as in [`earshot_dsp::level`]: a full-scale 1 kHz sine has
//! LAeq = LAF = −3.01 dBFS, and LCpeak is 20·log10 of the largest |C-weighted sample|. Silence
//! reads [`LEVEL_FLOOR_DBFS`] (−120 dBFS). With a [`Calibration`], every dBFS level is also given
//! in dB SPL (re 20 µPa) as dBFS + `offset_db`; LUFS values are not converted.
//!
//! - **LAF**: A-weighted, Fast (τ = 125 ms) time-weighted level, IEC 61672-1:2013 clause 5.8.
//! - **LAeq,10ms**: the A-weighted energy mean over one 10 ms block (no time constant, clause
//!   5.9). This is the *short-term level* of both loud-noise detectors.
//! - **LAeq,T, LAFmax, LAFmin, LCpeak**: over an interval of whole blocks ([`LevelStats`]).
//! - **Momentary loudness**: ITU-R BS.1770-4 over the last 400 ms, LUFS, evaluated every 100 ms
//!   (10 blocks, the minimum refresh rate of EBU Tech 3341).
//!
//! # Loud noise (stateful: [`LevelEvent::LoudNoiseStart`] / [`LevelEvent::LoudNoiseStop`])
//!
//! Both modes run the same state machine once per 10 ms block, with an *on* level and an *off*
//! level `hysteresis_db` (default 3 dB) below it:
//!
//! ```text
//!          LAeq,10ms ≥ on                   time with LAeq,10ms ≥ on ≥ min_duration_s
//!   Idle ─────────────────► Candidate ───────────────────────────────────────────────► Active
//!    ▲                          │ max(LAeq,10ms, LAF) < off: dropped, nothing emitted     │
//!    └──────────────────────────┴─────────────────────────────────────────────────────────┘
//!                                          max(LAeq,10ms, LAF) < off: Stop
//! ```
//!
//! - The **start** condition counts the time the 10 ms LAeq is at or above *on*, summed over the
//!   blocks since the first one (short dips between *off* and *on* do not reset the count). It
//!   does not use LAF for this: after a sound ends, LAF decays at 34.7 dB/s, so a 0.2 s burst
//!   10 dB over the threshold keeps LAF above it for about 0.45 s and would pass a 0.3 s minimum
//!   duration. The 10 ms LAeq measures how long the sound itself lasts.
//! - The **start offset** (`start_sample`) is the first sample of the first block whose 10 ms
//!   LAeq reached *on*: 10 ms block resolution (the block containing the onset, or the next one
//!   when the onset is late in its block). The start is emitted `min_duration_s` later.
//! - The **stop** comes at the end of the first block at which both the 10 ms LAeq and LAF (at
//!   the block's end) are below *off*; LAF's Fast decay acts as a short, level-dependent hold
//!   (≈ 0.3 s for a sound 11 dB above *off*). A candidate that falls below *off* the same way is
//!   dropped without any event.
//! - **Absolute** ([`AbsoluteLoudness`]): *on* = `threshold_dbfs`.
//! - **Adaptive** ([`AdaptiveLoudness`]): *on* = background + `margin_db` (default 12 dB),
//!   re-evaluated every block with the current background estimate. The background is a
//!   [`BackgroundTracker`] fed the LAeq of every 100 ms (10 blocks): the 20th percentile over the
//!   last 60 s, in 0.5 dB steps. It is fed all the audio, the detector's own events included: a
//!   low percentile already ignores them, as any louder sound filling less than 80 % of the
//!   window (48 s, [`LevelEvents::background_learning_time_up_s`]) leaves the estimate where it
//!   was; only a lasting change of the scene is learned (a rise after 48 s, which then ends an
//!   event that lasted that long; a drop after 12 s,
//!   [`LevelEvents::background_learning_time_down_s`]). While the input is lost (see below) the
//!   tracker is not fed, so a dead microphone does not teach it −120 dBFS. The adaptive detector
//!   starts nothing until the tracker has been fed `warmup_s` (default 10 s) of audio, nor
//!   while the input is lost.
//!
//! # SPL summary (stateless: [`LevelEvent::SplSummary`])
//!
//! Every `spl_summary_interval_s` (default 10 s), aligned to the stream start: LAeq,T, LAFmax,
//! LAFmin and LCpeak over the interval, the largest momentary loudness evaluated in it (400 ms
//! windows ending in the interval, so the first window reaches 300 ms into the previous one),
//! and the background estimate. The interval is rounded to whole 10 ms blocks; at rates that
//! are multiples of 100 Hz (8, 16, 32, 44.1, 48, 96 kHz …) a 10 s interval is exactly
//! 10 · rate samples, so the bounds are `[k·10·rate, (k+1)·10·rate)`. [`LevelEvents::finish`]
//! emits the last, partial interval only if it holds at least [`MIN_PARTIAL_SUMMARY_S`] (1 s),
//! as a shorter one says little and would skew per-interval statistics.
//!
//! # Audio input loss (stateful: [`LevelEvent::AudioInputLost`] / [`LevelEvent::AudioInputRestored`])
//!
//! The input is *lost* once one of these faults has lasted `after_s` (default 5 s):
//!
//! - **silence**: every sample's |x| is below 10^(`silence_dbfs`/20) (default −100 dBFS, i.e.
//!   1e-5: digital silence; one 16-bit LSB is −90 dBFS); sample-accurate.
//! - **stuck**: every sample equals the one before (e.g. an ADC stuck at a DC value), the value
//!   itself not silent (an all-zero input is *silence*); sample-accurate. A constant full-scale
//!   value is therefore reported as *stuck*.
//! - **clipped**: in every 10 ms block at least `clipped_fraction` (default 50 %) of the samples
//!   have |x| ≥ `clip_level` (default 0.999), for `after_s`. Requiring it of every block rather
//!   than of the whole `after_s` window means loud material that clips in bursts (a gunshot,
//!   shouting into the microphone) is never taken for a dead input, while a railed ADC or a
//!   saturated square wave is, exactly `after_s` after it began (to the block).
//! - **non_finite**: every 10 ms block holds at least one NaN or ±∞ sample. Non-finite samples
//!   never panic and are measured as 0.0 by the meters.
//!
//! `start_sample` of the lost event is where the fault reached `after_s` (fault start +
//! `after_s` for silence and stuck; the end of the block where it did for the block-based
//! faults); `fault_start_sample` is where it began. The input is *restored* once `restore_after_s`
//! (default 0.5 s) of whole blocks have passed with none of the four faults (a block is faulty if
//! it is entirely silent, entirely stuck, clipped as above, or holds a non-finite sample): 10 ms
//! resolution. Only one lost/restored pair is open at a time; a fault of another kind while lost
//! keeps the input lost under the first reason.
//!
//! # End of stream
//!
//! [`LevelEvents::finish`] closes what is open: an active loud noise stops at the end of the
//! last complete block, a lost input is "restored" at the last sample, both with
//! `end_of_stream: true`; a final partial block (< 10 ms) is not measured by the level meter.
//!
//! # Cost
//!
//! Everything is allocated in [`LevelEvents::new`]; `push` and `finish` never allocate (the
//! meters, the loudness meter's histogram mode and the background tracker are fixed-size).

use serde::Serialize;

use earshot_dsp::background::{BackgroundConfig, BackgroundTracker};
use earshot_dsp::level::{Calibration, LevelBlock, LevelMeter, LevelStats, LEVEL_FLOOR_DBFS};
use earshot_dsp::loudness::LoudnessMeter;
use earshot_dsp::DspError;

/// Blocks per background/momentary-loudness step: 10 blocks of 10 ms = 100 ms.
pub const BLOCKS_PER_STEP: usize = 10;
/// Shortest final partial interval [`LevelEvents::finish`] still reports, seconds.
pub const MIN_PARTIAL_SUMMARY_S: f64 = 1.0;
/// Default hysteresis of both loud-noise detectors, dB (stop at *on* − 3 dB).
pub const DEFAULT_HYSTERESIS_DB: f64 = 3.0;
/// Lowest supported sample rate, Hz (that of the IEC 61672-1 weighting filters).
pub const MIN_RATE_HZ: u32 = 8_000;
/// Highest supported sample rate, Hz.
pub const MAX_RATE_HZ: u32 = 192_000;

/// Loud noise above an absolute level (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AbsoluteLoudness {
    /// The *on* level: the 10 ms LAeq must reach it, dBFS (−120 to 0).
    pub threshold_dbfs: f64,
    /// Time the 10 ms LAeq must spend at or above the threshold before the start, seconds
    /// (0 to 60; 0 starts on the first loud block).
    pub min_duration_s: f64,
    /// The event stops once LAF and the 10 ms LAeq are below threshold − this, dB (0 to 20,
    /// default 3).
    pub hysteresis_db: f64,
}

impl AbsoluteLoudness {
    /// `threshold_dbfs` (dBFS) for `min_duration_s` (seconds), with the default 3 dB hysteresis.
    pub fn new(threshold_dbfs: f64, min_duration_s: f64) -> Self {
        Self {
            threshold_dbfs,
            min_duration_s,
            hysteresis_db: DEFAULT_HYSTERESIS_DB,
        }
    }
}

/// Loud noise above the learned background (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveLoudness {
    /// The *on* level is background + this, dB (above `hysteresis_db`, at most 60; default 12).
    pub margin_db: f64,
    /// Time the 10 ms LAeq must spend at or above the *on* level before the start, seconds
    /// (0 to 60, default 0.2).
    pub min_duration_s: f64,
    /// The event stops once LAF and the 10 ms LAeq are below background + margin − this, dB
    /// (0 to 20, default 3).
    pub hysteresis_db: f64,
    /// Seconds of audio the background tracker must have been fed before the detector starts
    /// anything (0 to 60, default 10).
    pub warmup_s: f64,
}

impl Default for AdaptiveLoudness {
    fn default() -> Self {
        Self {
            margin_db: 12.0,
            min_duration_s: 0.2,
            hysteresis_db: DEFAULT_HYSTERESIS_DB,
            warmup_s: 10.0,
        }
    }
}

/// Audio input loss detection (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputLossConfig {
    /// Samples with 20·log10|x| below this are silent, dBFS (peak, not RMS; −200 to −40,
    /// default −100).
    pub silence_dbfs: f64,
    /// Samples with |x| at or above this are clipped, full-scale units (0.5 to 1.0,
    /// default 0.999).
    pub clip_level: f64,
    /// A 10 ms block is clipped when at least this fraction of its samples are (above 0, at
    /// most 1; default 0.5).
    pub clipped_fraction: f64,
    /// A fault must last this long before the input is lost, seconds (0.1 to 3600, default 5).
    pub after_s: f64,
    /// The input is restored after this long without any fault, seconds (0.01 to 60,
    /// default 0.5).
    pub restore_after_s: f64,
}

impl Default for InputLossConfig {
    fn default() -> Self {
        Self {
            silence_dbfs: -100.0,
            clip_level: 0.999,
            clipped_fraction: 0.5,
            after_s: 5.0,
            restore_after_s: 0.5,
        }
    }
}

/// What [`LevelEvents`] detects. `None` disables a detector.
///
/// `Default`: adaptive loud noise, a summary every 10 s and input-loss detection with their
/// defaults; no absolute loud noise (it needs a threshold) and no calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelEventsConfig {
    /// Loud noise above an absolute level.
    pub loud_noise_absolute: Option<AbsoluteLoudness>,
    /// Loud noise above the learned background.
    pub loud_noise_adaptive: Option<AdaptiveLoudness>,
    /// Seconds between SPL summaries (1 to 86 400; rounded to whole 10 ms blocks).
    pub spl_summary_interval_s: Option<f64>,
    /// Audio input loss detection.
    pub input_loss: Option<InputLossConfig>,
    /// dBFS → dB SPL; when set, events carry dB SPL fields too.
    pub calibration: Option<Calibration>,
}

impl Default for LevelEventsConfig {
    fn default() -> Self {
        Self {
            loud_noise_absolute: None,
            loud_noise_adaptive: Some(AdaptiveLoudness::default()),
            spl_summary_interval_s: Some(10.0),
            input_loss: Some(InputLossConfig::default()),
            calibration: None,
        }
    }
}

/// Why [`LevelEvents::new`] refused its arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LevelEventsError {
    /// A configuration value out of range.
    #[error("invalid {field} = {value}: expected {expected}")]
    InvalidConfig {
        /// The field, as in the config structs (e.g. `loud_noise_absolute.threshold_dbfs`).
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What is allowed, in words with units.
        expected: String,
    },
    /// A DSP stage refused its parameters.
    #[error(transparent)]
    Dsp(#[from] DspError),
}

/// Which loud-noise detector an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoudnessMode {
    /// Above an absolute level ([`AbsoluteLoudness`]).
    Absolute,
    /// Above the learned background ([`AdaptiveLoudness`]).
    Adaptive,
}

/// Why the audio input is considered lost (definitions in the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFault {
    /// Every sample below the silence level (digital silence).
    Silence,
    /// Every sample equal to the previous one, not silent (stuck ADC).
    Stuck,
    /// Most samples of every 10 ms block at full scale.
    Clipped,
    /// NaN or ±∞ samples in every 10 ms block.
    NonFinite,
}

/// An event of [`LevelEvents`]. Sample offsets count samples at the input rate since the stream
/// start; `*_s` fields are the same in seconds. Levels in dBFS (RMS-referenced, IEC 61672-1),
/// dB SPL fields only with a calibration, loudness in LUFS (ITU-R BS.1770-4).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LevelEvent {
    /// A loud noise started (emitted `min_duration_s` after `start_sample`).
    LoudNoiseStart {
        /// Which detector.
        mode: LoudnessMode,
        /// First sample of the first block whose 10 ms LAeq reached the *on* level (10 ms
        /// resolution).
        start_sample: u64,
        /// `start_sample` in seconds.
        time_s: f64,
        /// The *on* level in force when the start was decided, dBFS.
        threshold_dbfs: f64,
        /// LAFmax from `start_sample` until the start was decided, dBFS.
        lafmax_dbfs: f64,
        /// Background estimate when the start was decided, dBFS (`None` before the first
        /// 100 ms).
        background_dbfs: Option<f64>,
        /// `lafmax_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        lafmax_db_spl: Option<f64>,
    },
    /// A loud noise stopped.
    LoudNoiseStop {
        /// Which detector.
        mode: LoudnessMode,
        /// As in the start event.
        start_sample: u64,
        /// One past the last sample of the event (end of the block where it fell below *off*).
        end_sample: u64,
        /// `start_sample` in seconds.
        start_s: f64,
        /// `end_sample` in seconds.
        end_s: f64,
        /// LAFmax over the event, dBFS.
        lafmax_dbfs: f64,
        /// LAeq over the event, dBFS.
        laeq_dbfs: f64,
        /// LCpeak over the event, dBFS.
        lcpeak_dbfs: f64,
        /// `lafmax_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        lafmax_db_spl: Option<f64>,
        /// `laeq_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        laeq_db_spl: Option<f64>,
        /// True when closed by [`LevelEvents::finish`] rather than by the level falling.
        end_of_stream: bool,
    },
    /// Sound levels over one summary interval `[start_sample, end_sample)`.
    SplSummary {
        /// First sample of the interval.
        start_sample: u64,
        /// One past the last sample of the interval.
        end_sample: u64,
        /// `start_sample` in seconds.
        start_s: f64,
        /// `end_sample` in seconds.
        end_s: f64,
        /// LAeq over the interval, dBFS.
        laeq_dbfs: f64,
        /// LAFmax over the interval, dBFS.
        lafmax_dbfs: f64,
        /// LAFmin over the interval, dBFS.
        lafmin_dbfs: f64,
        /// LCpeak over the interval, dBFS.
        lcpeak_dbfs: f64,
        /// Largest BS.1770-4 momentary loudness (400 ms) evaluated in the interval, LUFS;
        /// `None` if none was evaluated or all were silent.
        momentary_lufs_max: Option<f64>,
        /// Background estimate at the end of the interval, dBFS.
        background_dbfs: Option<f64>,
        /// `laeq_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        laeq_db_spl: Option<f64>,
        /// `lafmax_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        lafmax_db_spl: Option<f64>,
        /// `lafmin_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        lafmin_db_spl: Option<f64>,
        /// `lcpeak_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        lcpeak_db_spl: Option<f64>,
        /// `background_dbfs` in dB SPL.
        #[serde(skip_serializing_if = "Option::is_none")]
        background_db_spl: Option<f64>,
    },
    /// The audio input is lost.
    AudioInputLost {
        /// The fault.
        reason: InputFault,
        /// Where the fault began.
        fault_start_sample: u64,
        /// `fault_start_sample` in seconds.
        fault_start_s: f64,
        /// Where the fault had lasted `after_s` (the loss is declared).
        start_sample: u64,
        /// `start_sample` in seconds.
        time_s: f64,
    },
    /// The audio input is back (or the stream ended while it was lost).
    AudioInputRestored {
        /// The fault of the matching lost event.
        reason: InputFault,
        /// `start_sample` of the matching lost event.
        lost_at_sample: u64,
        /// First sample of the fault-free stretch (10 ms resolution).
        fault_end_sample: u64,
        /// Where the input had been fault-free for `restore_after_s`.
        start_sample: u64,
        /// `start_sample` in seconds.
        time_s: f64,
        /// (`start_sample` − `lost_at_sample`) in seconds: how long the input was reported lost.
        lost_for_s: f64,
        /// True when closed by [`LevelEvents::finish`] rather than by the input coming back.
        end_of_stream: bool,
    },
}

// ---------------------------------------------------------------------------------------------
// Loud-noise state machine

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    Candidate,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LoudStep {
    Nothing,
    Started,
    Stopped,
}

/// The Idle → Candidate → Active machine of both loud-noise modes, one step per block.
#[derive(Debug, Clone, Copy)]
struct LoudMachine {
    min_samples: u64,
    hysteresis_db: f64,
    phase: Phase,
    start_sample: u64,
    above_samples: u64,
    stats: LevelStats,
}

impl LoudMachine {
    fn new(min_samples: u64, hysteresis_db: f64) -> Self {
        Self {
            min_samples,
            hysteresis_db,
            phase: Phase::Idle,
            start_sample: 0,
            above_samples: 0,
            stats: LevelStats::default(),
        }
    }

    /// One block with the current *on* level; `may_start` false keeps an idle machine idle and
    /// drops a candidate. After `Stopped`, `start_sample` and `stats` still describe the event.
    fn step(&mut self, block: &LevelBlock, on_dbfs: f64, may_start: bool) -> LoudStep {
        let short = block.laeq_db();
        let off_dbfs = on_dbfs - self.hysteresis_db;
        let below_off = short.max(block.laf_db()) < off_dbfs;
        match self.phase {
            Phase::Idle => {
                if !may_start || short < on_dbfs {
                    return LoudStep::Nothing;
                }
                self.phase = Phase::Candidate;
                self.start_sample = block.start_sample;
                self.above_samples = block.len as u64;
                self.stats.reset();
                self.stats.add(block);
                self.promote()
            }
            Phase::Candidate => {
                if !may_start || below_off {
                    self.phase = Phase::Idle;
                    return LoudStep::Nothing;
                }
                self.stats.add(block);
                if short >= on_dbfs {
                    self.above_samples += block.len as u64;
                }
                self.promote()
            }
            Phase::Active => {
                self.stats.add(block);
                if below_off {
                    self.phase = Phase::Idle;
                    LoudStep::Stopped
                } else {
                    LoudStep::Nothing
                }
            }
        }
    }

    fn promote(&mut self) -> LoudStep {
        if self.above_samples >= self.min_samples {
            self.phase = Phase::Active;
            LoudStep::Started
        } else {
            LoudStep::Nothing
        }
    }

    /// Ends the stream: true if an active event must be closed. Back to idle either way.
    fn finish(&mut self) -> bool {
        let was_active = self.phase == Phase::Active;
        self.phase = Phase::Idle;
        was_active
    }
}

// ---------------------------------------------------------------------------------------------
// Input-loss tracker

#[derive(Debug, Clone, Copy)]
struct Lost {
    reason: InputFault,
    at: u64,
}

/// Runs of each fault, per sample (silence, stuck) or per block (clipped, non-finite).
#[derive(Debug, Clone)]
struct FaultTracker {
    silence_amplitude: f32,
    clip_level: f32,
    clipped_fraction: f64,
    after_samples: u64,
    restore_samples: u64,
    prev: f32,
    silence_since: Option<u64>,
    stuck_since: Option<u64>,
    clipped_since: Option<u64>,
    non_finite_since: Option<u64>,
    // Counts in the current block.
    blk_silent: usize,
    blk_stuck: usize,
    blk_clipped: usize,
    blk_non_finite: usize,
    lost: Option<Lost>,
    good_since: Option<u64>,
}

impl FaultTracker {
    fn new(cfg: &InputLossConfig, rate: f64) -> Self {
        Self {
            silence_amplitude: 10f64.powf(cfg.silence_dbfs / 20.0) as f32,
            clip_level: cfg.clip_level as f32,
            clipped_fraction: cfg.clipped_fraction,
            after_samples: seconds_to_samples(cfg.after_s, rate).max(1),
            restore_samples: seconds_to_samples(cfg.restore_after_s, rate).max(1),
            prev: f32::NAN,
            silence_since: None,
            stuck_since: None,
            clipped_since: None,
            non_finite_since: None,
            blk_silent: 0,
            blk_stuck: 0,
            blk_clipped: 0,
            blk_non_finite: 0,
            lost: None,
            good_since: None,
        }
    }

    fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    fn declare(
        &mut self,
        reason: InputFault,
        since: u64,
        at: u64,
        rate: f64,
        emit: &mut impl FnMut(LevelEvent),
    ) {
        self.lost = Some(Lost { reason, at });
        self.good_since = None;
        emit(LevelEvent::AudioInputLost {
            reason,
            fault_start_sample: since,
            fault_start_s: since as f64 / rate,
            start_sample: at,
            time_s: at as f64 / rate,
        });
    }

    /// Samples of one block (or part of one) starting at stream offset `first`.
    fn feed(&mut self, samples: &[f32], first: u64, rate: f64, emit: &mut impl FnMut(LevelEvent)) {
        for (pos, &x) in (first..).zip(samples) {
            if !x.is_finite() {
                self.blk_non_finite += 1;
                self.silence_since = None;
                self.stuck_since = None;
                self.prev = f32::NAN;
                continue;
            }
            let a = x.abs();
            let silent = a < self.silence_amplitude;
            if silent {
                self.blk_silent += 1;
                self.silence_since.get_or_insert(pos);
            } else {
                self.silence_since = None;
            }
            if !silent && x == self.prev {
                self.blk_stuck += 1;
                // The run began with the previous sample (the first of the equal values).
                self.stuck_since.get_or_insert(pos.saturating_sub(1));
            } else {
                self.stuck_since = None;
            }
            if a >= self.clip_level {
                self.blk_clipped += 1;
            }
            self.prev = x;
            if self.lost.is_none() {
                let end = pos + 1;
                if let Some(s) = self
                    .silence_since
                    .filter(|&s| end - s >= self.after_samples)
                {
                    self.declare(InputFault::Silence, s, end, rate, emit);
                } else if let Some(s) = self.stuck_since.filter(|&s| end - s >= self.after_samples)
                {
                    self.declare(InputFault::Stuck, s, end, rate, emit);
                }
            }
        }
    }

    /// Closes the block `[start, start + len)`.
    fn end_block(&mut self, start: u64, len: usize, rate: f64, emit: &mut impl FnMut(LevelEvent)) {
        let end = start + len as u64;
        let non_finite = self.blk_non_finite > 0;
        let clipped = self.blk_clipped as f64 >= self.clipped_fraction * len as f64;
        let silent = self.blk_silent == len;
        let stuck = self.blk_stuck == len;
        self.non_finite_since = if non_finite {
            Some(self.non_finite_since.unwrap_or(start))
        } else {
            None
        };
        self.clipped_since = if clipped {
            Some(self.clipped_since.unwrap_or(start))
        } else {
            None
        };
        self.blk_silent = 0;
        self.blk_stuck = 0;
        self.blk_clipped = 0;
        self.blk_non_finite = 0;
        match self.lost {
            None => {
                let due = |since: Option<u64>| since.filter(|&s| end - s >= self.after_samples);
                if let Some(s) = due(self.non_finite_since) {
                    self.declare(InputFault::NonFinite, s, end, rate, emit);
                } else if let Some(s) = due(self.clipped_since) {
                    self.declare(InputFault::Clipped, s, end, rate, emit);
                }
            }
            Some(lost) => {
                if non_finite || clipped || silent || stuck {
                    self.good_since = None;
                    return;
                }
                let good_since = *self.good_since.get_or_insert(start.max(lost.at));
                if end - good_since >= self.restore_samples {
                    self.restore(good_since, end, false, rate, emit);
                }
            }
        }
    }

    fn restore(
        &mut self,
        fault_end: u64,
        at: u64,
        end_of_stream: bool,
        rate: f64,
        emit: &mut impl FnMut(LevelEvent),
    ) {
        if let Some(lost) = self.lost.take() {
            self.good_since = None;
            emit(LevelEvent::AudioInputRestored {
                reason: lost.reason,
                lost_at_sample: lost.at,
                fault_end_sample: fault_end,
                start_sample: at,
                time_s: at as f64 / rate,
                lost_for_s: at.saturating_sub(lost.at) as f64 / rate,
                end_of_stream,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

#[derive(Debug, Clone)]
struct Summary {
    interval_samples: u64,
    start: u64,
    stats: LevelStats,
    momentary_max: Option<f64>,
}

// ---------------------------------------------------------------------------------------------

fn seconds_to_samples(seconds: f64, rate: f64) -> u64 {
    (seconds * rate).round().max(0.0) as u64
}

/// Loud-noise, SPL-summary and input-loss events from raw mono samples (see the
/// [module docs](self) for every definition).
#[derive(Debug)]
pub struct LevelEvents {
    rate_hz: u32,
    block_len: usize,
    meter: LevelMeter,
    loudness: LoudnessMeter,
    background: BackgroundTracker,
    calibration: Option<Calibration>,
    absolute: Option<(AbsoluteLoudness, LoudMachine)>,
    adaptive: Option<(AdaptiveLoudness, LoudMachine)>,
    warmup_steps: u64,
    summary: Option<Summary>,
    faults: Option<FaultTracker>,
    /// Samples consumed.
    pos: u64,
    /// End of the last complete block.
    blocks_end: u64,
    step_stats: LevelStats,
    step_blocks: usize,
    /// Background pushes so far.
    steps_fed: u64,
    /// The last second of 10 ms blocks for [`LevelEvents::now`]: A-weighted energies and
    /// lengths, a ring of [`BLOCKS_PER_SECOND`] slots.
    second: [(f64, u32); BLOCKS_PER_SECOND],
    /// Next slot of `second`.
    second_pos: usize,
    /// LAF at the end of the last block, linear mean square.
    laf_end_ms: f64,
}

/// 10 ms blocks in one second ([`LevelEvents::now`]'s LAeq 1 s).
const BLOCKS_PER_SECOND: usize = 100;

/// The level right now, for a live view ([`LevelEvents::now`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelNow {
    /// Samples consumed when it was read (the end of the last complete 10 ms block).
    pub end_sample: u64,
    /// LAF (A-weighted, Fast) at the end of the last block, dBFS (IEC 61672-1).
    pub laf_dbfs: f64,
    /// LAeq over the last second (the last 100 blocks), dBFS.
    pub laeq_1s_dbfs: f64,
    /// The learned background, dBFS ([`LevelEvents::background_dbfs`]).
    pub background_dbfs: Option<f64>,
}

fn invalid(field: &'static str, value: f64, expected: &str) -> LevelEventsError {
    LevelEventsError::InvalidConfig {
        field,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

fn check(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    unit: &str,
) -> Result<(), LevelEventsError> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, value, &format!("{lo} to {hi} {unit}")))
    }
}

impl LevelEventsConfig {
    /// Checks every enabled field's range.
    ///
    /// # Errors
    /// [`LevelEventsError::InvalidConfig`] for the first field out of range, naming it, its
    /// value and the allowed range with its unit.
    pub fn validate(&self) -> Result<(), LevelEventsError> {
        if let Some(a) = &self.loud_noise_absolute {
            check(
                "loud_noise_absolute.threshold_dbfs",
                a.threshold_dbfs,
                LEVEL_FLOOR_DBFS,
                0.0,
                "dBFS",
            )?;
            check(
                "loud_noise_absolute.min_duration_s",
                a.min_duration_s,
                0.0,
                60.0,
                "s",
            )?;
            check(
                "loud_noise_absolute.hysteresis_db",
                a.hysteresis_db,
                0.0,
                20.0,
                "dB",
            )?;
        }
        if let Some(a) = &self.loud_noise_adaptive {
            check(
                "loud_noise_adaptive.hysteresis_db",
                a.hysteresis_db,
                0.0,
                20.0,
                "dB",
            )?;
            if !(a.margin_db.is_finite() && a.margin_db > a.hysteresis_db && a.margin_db <= 60.0) {
                return Err(invalid(
                    "loud_noise_adaptive.margin_db",
                    a.margin_db,
                    &format!(
                        "more than hysteresis_db ({} dB) and at most 60 dB",
                        a.hysteresis_db
                    ),
                ));
            }
            check(
                "loud_noise_adaptive.min_duration_s",
                a.min_duration_s,
                0.0,
                60.0,
                "s",
            )?;
            check("loud_noise_adaptive.warmup_s", a.warmup_s, 0.0, 60.0, "s")?;
        }
        if let Some(s) = self.spl_summary_interval_s {
            check("spl_summary_interval_s", s, 1.0, 86_400.0, "s")?;
        }
        if let Some(l) = &self.input_loss {
            check(
                "input_loss.silence_dbfs",
                l.silence_dbfs,
                -200.0,
                -40.0,
                "dBFS",
            )?;
            check(
                "input_loss.clip_level",
                l.clip_level,
                0.5,
                1.0,
                "(full-scale units)",
            )?;
            if !(l.clipped_fraction > 0.0 && l.clipped_fraction <= 1.0) {
                return Err(invalid(
                    "input_loss.clipped_fraction",
                    l.clipped_fraction,
                    "a fraction above 0 and at most 1",
                ));
            }
            check("input_loss.after_s", l.after_s, 0.1, 3_600.0, "s")?;
            check(
                "input_loss.restore_after_s",
                l.restore_after_s,
                0.01,
                60.0,
                "s",
            )?;
        }
        if let Some(c) = &self.calibration {
            check("calibration.offset_db", c.offset_db, -300.0, 300.0, "dB")?;
        }
        Ok(())
    }
}

impl LevelEvents {
    /// Detectors for a mono stream at `sample_rate_hz` Hz (8 000 to 192 000).
    ///
    /// # Errors
    /// [`LevelEventsError::InvalidConfig`] for a rate out of range or a config field out of
    /// range ([`LevelEventsConfig::validate`]), naming the field, its value and what is
    /// expected; [`LevelEventsError::Dsp`] if a meter refuses its parameters.
    pub fn new(sample_rate_hz: u32, config: LevelEventsConfig) -> Result<Self, LevelEventsError> {
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&sample_rate_hz) {
            return Err(LevelEventsError::InvalidConfig {
                field: "sample_rate_hz",
                value: sample_rate_hz.to_string(),
                expected: format!("{MIN_RATE_HZ} to {MAX_RATE_HZ} Hz"),
            });
        }
        config.validate()?;
        let rate = f64::from(sample_rate_hz);
        let block_len = (sample_rate_hz / 100) as usize;
        let meter = LevelMeter::new(sample_rate_hz, block_len)?;
        let loudness = LoudnessMeter::new(1, sample_rate_hz)?;
        let background = BackgroundTracker::new(BackgroundConfig {
            interval_s: (BLOCKS_PER_STEP * block_len) as f64 / rate,
            ..BackgroundConfig::default()
        })?;
        let step_samples = (BLOCKS_PER_STEP * block_len) as f64;
        let warmup_steps = config
            .loud_noise_adaptive
            .map_or(0, |a| (a.warmup_s * rate / step_samples).ceil() as u64);
        let summary = config.spl_summary_interval_s.map(|s| {
            let blocks = (s * rate / block_len as f64).round().max(1.0) as u64;
            Summary {
                interval_samples: blocks * block_len as u64,
                start: 0,
                stats: LevelStats::default(),
                momentary_max: None,
            }
        });
        Ok(Self {
            rate_hz: sample_rate_hz,
            block_len,
            meter,
            loudness,
            background,
            calibration: config.calibration,
            absolute: config.loud_noise_absolute.map(|a| {
                let min = seconds_to_samples(a.min_duration_s, rate);
                (a, LoudMachine::new(min, a.hysteresis_db))
            }),
            adaptive: config.loud_noise_adaptive.map(|a| {
                let min = seconds_to_samples(a.min_duration_s, rate);
                (a, LoudMachine::new(min, a.hysteresis_db))
            }),
            warmup_steps,
            summary,
            faults: config.input_loss.map(|l| FaultTracker::new(&l, rate)),
            pos: 0,
            blocks_end: 0,
            step_stats: LevelStats::default(),
            step_blocks: 0,
            steps_fed: 0,
            second: [(0.0, 0); BLOCKS_PER_SECOND],
            second_pos: 0,
            laf_end_ms: 0.0,
        })
    }

    /// The level at the end of the last complete 10 ms block: LAF, LAeq over the last second
    /// and the background. Levels are dBFS, floored at the meter's floor; before the first
    /// block every level reads the floor. Never allocates.
    pub fn now(&self) -> LevelNow {
        let (energy, len) = self
            .second
            .iter()
            .fold((0.0, 0u64), |(e, n), &(be, bn)| (e + be, n + u64::from(bn)));
        let laeq = if len == 0 {
            earshot_dsp::level::LEVEL_FLOOR_DBFS
        } else {
            earshot_dsp::level::db_from_mean_square(energy / len as f64)
        };
        LevelNow {
            end_sample: self.blocks_end,
            laf_dbfs: earshot_dsp::level::db_from_mean_square(self.laf_end_ms),
            laeq_1s_dbfs: laeq,
            background_dbfs: self.background.estimate_dbfs(),
        }
    }

    /// The sample rate, Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// Samples per level block: `rate / 100` (10 ms at rates that are multiples of 100 Hz).
    pub fn block_len(&self) -> usize {
        self.block_len
    }

    /// Samples consumed since the stream start.
    pub fn samples_in(&self) -> u64 {
        self.pos
    }

    /// The learned background level, dBFS: the 20th percentile of the 100 ms LAeq over the
    /// last 60 s, in 0.5 dB steps; `None` before the first 100 ms.
    pub fn background_dbfs(&self) -> Option<f64> {
        self.background.estimate_dbfs()
    }

    /// Seconds a lasting rise of the level takes to become the background (48 s); louder
    /// events shorter than this leave the background estimate alone.
    pub fn background_learning_time_up_s(&self) -> f64 {
        self.background.learning_time_up_s()
    }

    /// Seconds a lasting drop of the level takes to become the background (12 s).
    pub fn background_learning_time_down_s(&self) -> f64 {
        self.background.learning_time_down_s()
    }

    fn rate(&self) -> f64 {
        f64::from(self.rate_hz)
    }

    fn spl(&self, dbfs: f64) -> Option<f64> {
        self.calibration.map(|c| c.to_db_spl(dbfs))
    }

    /// Feeds mono samples (full scale ±1.0, any chunk size) and calls `emit` for every event
    /// they complete. Never panics, whatever the sample values (NaN and ±∞ included), and never
    /// allocates.
    pub fn push(&mut self, samples: &[f32], emit: &mut impl FnMut(LevelEvent)) {
        let rate = self.rate();
        let mut rest = samples;
        while !rest.is_empty() {
            let in_block = (self.pos % self.block_len as u64) as usize;
            let n = (self.block_len - in_block).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if let Some(f) = &mut self.faults {
                f.feed(piece, self.pos, rate, emit);
            }
            // Mono input is always a whole number of frames, and ebur128 does not fail on
            // valid input; an error would only leave the momentary loudness undefined.
            let _ = self.loudness.process_interleaved_f32(piece);
            let mut done = None;
            self.meter.process(piece, |b| done = Some(*b));
            self.pos += n as u64;
            if let Some(block) = done {
                self.on_block(&block, emit);
            }
        }
    }

    fn on_block(&mut self, block: &LevelBlock, emit: &mut impl FnMut(LevelEvent)) {
        let rate = self.rate();
        let end = block.start_sample + block.len as u64;
        self.blocks_end = end;
        self.second[self.second_pos] = (block.a_energy, block.len as u32);
        self.second_pos = (self.second_pos + 1) % BLOCKS_PER_SECOND;
        self.laf_end_ms = block.laf_end_ms;
        if let Some(f) = &mut self.faults {
            f.end_block(block.start_sample, block.len, rate, emit);
        }
        let lost = self.faults.as_ref().is_some_and(FaultTracker::is_lost);

        // Every 100 ms: background and momentary loudness.
        self.step_stats.add(block);
        self.step_blocks += 1;
        if self.step_blocks == BLOCKS_PER_STEP {
            if !lost {
                self.background.push(self.step_stats.laeq_db());
                self.steps_fed += 1;
            }
            self.step_stats.reset();
            self.step_blocks = 0;
            if let Some(s) = &mut self.summary {
                if let Some(m) = self.loudness.momentary_lufs() {
                    s.momentary_max = Some(s.momentary_max.map_or(m, |x| x.max(m)));
                }
            }
        }
        let background = self.background.estimate_dbfs();

        if let Some((cfg, machine)) = &mut self.absolute {
            let on = cfg.threshold_dbfs;
            let step = machine.step(block, on, true);
            let machine = *machine;
            self.emit_loud(LoudnessMode::Absolute, step, &machine, on, background, emit);
        }
        if let Some((cfg, machine)) = &mut self.adaptive {
            if let Some(bg) = background {
                let on = bg + cfg.margin_db;
                let may_start = !lost && self.steps_fed >= self.warmup_steps;
                let step = machine.step(block, on, may_start);
                let machine = *machine;
                self.emit_loud(LoudnessMode::Adaptive, step, &machine, on, background, emit);
            }
        }

        if let Some(s) = &mut self.summary {
            s.stats.add(block);
            if end - s.start >= s.interval_samples {
                self.emit_summary(end, emit);
            }
        }
    }

    fn emit_loud(
        &self,
        mode: LoudnessMode,
        step: LoudStep,
        m: &LoudMachine,
        on_dbfs: f64,
        background_dbfs: Option<f64>,
        emit: &mut impl FnMut(LevelEvent),
    ) {
        match step {
            LoudStep::Nothing => {}
            LoudStep::Started => emit(LevelEvent::LoudNoiseStart {
                mode,
                start_sample: m.start_sample,
                time_s: m.start_sample as f64 / self.rate(),
                threshold_dbfs: on_dbfs,
                lafmax_dbfs: m.stats.lafmax_db(),
                background_dbfs,
                lafmax_db_spl: self.spl(m.stats.lafmax_db()),
            }),
            LoudStep::Stopped => self.emit_stop(mode, m, false, emit),
        }
    }

    fn emit_stop(
        &self,
        mode: LoudnessMode,
        m: &LoudMachine,
        end_of_stream: bool,
        emit: &mut impl FnMut(LevelEvent),
    ) {
        let end = m.start_sample + m.stats.duration_samples();
        emit(LevelEvent::LoudNoiseStop {
            mode,
            start_sample: m.start_sample,
            end_sample: end,
            start_s: m.start_sample as f64 / self.rate(),
            end_s: end as f64 / self.rate(),
            lafmax_dbfs: m.stats.lafmax_db(),
            laeq_dbfs: m.stats.laeq_db(),
            lcpeak_dbfs: m.stats.lcpeak_db(),
            lafmax_db_spl: self.spl(m.stats.lafmax_db()),
            laeq_db_spl: self.spl(m.stats.laeq_db()),
            end_of_stream,
        });
    }

    /// Emits the summary of `[start, end)` and starts the next interval at `end`.
    fn emit_summary(&mut self, end: u64, emit: &mut impl FnMut(LevelEvent)) {
        let rate = self.rate();
        let background = self.background.estimate_dbfs();
        let Some(s) = &mut self.summary else {
            return;
        };
        let (start, stats, momentary) = (s.start, s.stats, s.momentary_max);
        s.start = end;
        s.stats.reset();
        s.momentary_max = None;
        emit(LevelEvent::SplSummary {
            start_sample: start,
            end_sample: end,
            start_s: start as f64 / rate,
            end_s: end as f64 / rate,
            laeq_dbfs: stats.laeq_db(),
            lafmax_dbfs: stats.lafmax_db(),
            lafmin_dbfs: stats.lafmin_db(),
            lcpeak_dbfs: stats.lcpeak_db(),
            momentary_lufs_max: momentary,
            background_dbfs: background,
            laeq_db_spl: self.spl(stats.laeq_db()),
            lafmax_db_spl: self.spl(stats.lafmax_db()),
            lafmin_db_spl: self.spl(stats.lafmin_db()),
            lcpeak_db_spl: self.spl(stats.lcpeak_db()),
            background_db_spl: background.and_then(|b| self.spl(b)),
        });
    }

    /// Ends the stream: stops an active loud noise at the end of the last complete block and
    /// restores a lost input at the last sample (both with `end_of_stream: true`), and emits
    /// the partial summary interval if it holds at least [`MIN_PARTIAL_SUMMARY_S`] (1 s) of
    /// complete blocks. Never allocates. A later [`push`](Self::push) continues the same stream
    /// (offsets go on) with every detector idle; use a new `LevelEvents` for a new stream.
    pub fn finish(&mut self, emit: &mut impl FnMut(LevelEvent)) {
        let rate = self.rate();
        let absolute = self.absolute.as_mut().map(|(_, m)| (m.finish(), *m));
        let adaptive = self.adaptive.as_mut().map(|(_, m)| (m.finish(), *m));
        for (mode, closed) in [
            (LoudnessMode::Absolute, absolute),
            (LoudnessMode::Adaptive, adaptive),
        ] {
            if let Some((true, machine)) = closed {
                self.emit_stop(mode, &machine, true, emit);
            }
        }
        let pos = self.pos;
        if let Some(f) = &mut self.faults {
            f.restore(pos, pos, true, rate, emit);
        }
        let end = self.blocks_end;
        if let Some(s) = &mut self.summary {
            if s.stats.duration_samples() as f64 >= MIN_PARTIAL_SUMMARY_S * rate {
                self.emit_summary(end, emit);
            } else {
                s.start = end;
                s.stats.reset();
                s.momentary_max = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const LEN: usize = 480;

    /// A synthetic 10 ms block with the given 10 ms LAeq and end-of-block LAF, dBFS.
    fn block(index: u64, laeq_dbfs: f64, laf_dbfs: f64) -> LevelBlock {
        let ms = |db: f64| 10f64.powf(db / 10.0);
        LevelBlock {
            start_sample: index * LEN as u64,
            len: LEN,
            a_energy: ms(laeq_dbfs) * LEN as f64,
            laf_max_ms: ms(laf_dbfs.max(laeq_dbfs)),
            laf_min_ms: ms(laf_dbfs.min(laeq_dbfs)),
            laf_end_ms: ms(laf_dbfs),
            las_end_ms: ms(laf_dbfs),
            c_peak: ms(laeq_dbfs).sqrt(),
        }
    }

    fn err_of(config: LevelEventsConfig) -> String {
        LevelEvents::new(RATE, config).unwrap_err().to_string()
    }

    #[test]
    fn config_errors_name_the_field_the_value_and_the_range() {
        let e = LevelEvents::new(4_000, LevelEventsConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sample_rate_hz = 4000") && e.contains("8000 to 192000 Hz"),
            "{e}"
        );

        let cases: [(LevelEventsConfig, &str, &str); 10] = [
            (
                LevelEventsConfig {
                    loud_noise_absolute: Some(AbsoluteLoudness::new(3.0, 0.3)),
                    ..LevelEventsConfig::default()
                },
                "loud_noise_absolute.threshold_dbfs = 3",
                "dBFS",
            ),
            (
                LevelEventsConfig {
                    loud_noise_absolute: Some(AbsoluteLoudness::new(-20.0, -1.0)),
                    ..LevelEventsConfig::default()
                },
                "loud_noise_absolute.min_duration_s = -1",
                "0 to 60 s",
            ),
            (
                LevelEventsConfig {
                    loud_noise_absolute: Some(AbsoluteLoudness::new(f64::NAN, 0.3)),
                    ..LevelEventsConfig::default()
                },
                "loud_noise_absolute.threshold_dbfs = NaN",
                "-120 to 0 dBFS",
            ),
            (
                LevelEventsConfig {
                    loud_noise_adaptive: Some(AdaptiveLoudness {
                        margin_db: 2.0,
                        ..AdaptiveLoudness::default()
                    }),
                    ..LevelEventsConfig::default()
                },
                "loud_noise_adaptive.margin_db = 2",
                "more than hysteresis_db (3 dB)",
            ),
            (
                LevelEventsConfig {
                    loud_noise_adaptive: Some(AdaptiveLoudness {
                        warmup_s: 100.0,
                        ..AdaptiveLoudness::default()
                    }),
                    ..LevelEventsConfig::default()
                },
                "loud_noise_adaptive.warmup_s = 100",
                "0 to 60 s",
            ),
            (
                LevelEventsConfig {
                    spl_summary_interval_s: Some(0.5),
                    ..LevelEventsConfig::default()
                },
                "spl_summary_interval_s = 0.5",
                "1 to 86400 s",
            ),
            (
                LevelEventsConfig {
                    input_loss: Some(InputLossConfig {
                        silence_dbfs: 0.0,
                        ..InputLossConfig::default()
                    }),
                    ..LevelEventsConfig::default()
                },
                "input_loss.silence_dbfs = 0",
                "-200 to -40 dBFS",
            ),
            (
                LevelEventsConfig {
                    input_loss: Some(InputLossConfig {
                        clipped_fraction: 0.0,
                        ..InputLossConfig::default()
                    }),
                    ..LevelEventsConfig::default()
                },
                "input_loss.clipped_fraction = 0",
                "above 0 and at most 1",
            ),
            (
                LevelEventsConfig {
                    input_loss: Some(InputLossConfig {
                        after_s: f64::INFINITY,
                        ..InputLossConfig::default()
                    }),
                    ..LevelEventsConfig::default()
                },
                "input_loss.after_s = inf",
                "0.1 to 3600 s",
            ),
            (
                LevelEventsConfig {
                    calibration: Some(Calibration {
                        offset_db: f64::NAN,
                    }),
                    ..LevelEventsConfig::default()
                },
                "calibration.offset_db = NaN",
                "dB",
            ),
        ];
        for (config, field_and_value, expected) in cases {
            let e = err_of(config);
            assert!(
                e.contains(field_and_value),
                "{e:?} lacks {field_and_value:?}"
            );
            assert!(e.contains(expected), "{e:?} lacks {expected:?}");
        }
        assert!(LevelEvents::new(RATE, LevelEventsConfig::default()).is_ok());
    }

    #[test]
    fn absolute_machine_needs_the_duration_and_has_hysteresis() {
        // on −20 dBFS, off −23 dBFS, 0.3 s = 30 blocks above.
        let mut m = LoudMachine::new(14_400, 3.0);
        let mut i = 0u64;
        fn run(m: &mut LoudMachine, i: &mut u64, n: u64, laeq: f64, laf: f64) -> Vec<LoudStep> {
            let mut steps = Vec::new();
            for _ in 0..n {
                steps.push(m.step(&block(*i, laeq, laf), -20.0, true));
                *i += 1;
            }
            steps
        }
        // 0.2 s loud, then an LAF tail between off and on: a candidate, never promoted...
        assert!(run(&mut m, &mut i, 20, -10.0, -10.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert!(run(&mut m, &mut i, 30, -40.0, -21.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert_eq!(m.phase, Phase::Candidate);
        // ...and dropped once both levels are below off.
        assert!(run(&mut m, &mut i, 1, -40.0, -24.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert_eq!(m.phase, Phase::Idle);

        // A dip between off and on does not reset the count: 15 + 15 blocks above start it.
        let first = i;
        assert!(run(&mut m, &mut i, 15, -10.0, -10.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert!(run(&mut m, &mut i, 5, -22.0, -21.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        let steps = run(&mut m, &mut i, 15, -10.0, -10.0);
        assert_eq!(steps.iter().filter(|s| **s == LoudStep::Started).count(), 1);
        assert_eq!(steps[14], LoudStep::Started);
        assert_eq!(m.start_sample, first * LEN as u64);

        // Active: hovering between off and on does not stop it, nor does LAF alone above off.
        assert!(run(&mut m, &mut i, 200, -22.0, -22.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert!(run(&mut m, &mut i, 1, -30.0, -22.9)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert_eq!(
            run(&mut m, &mut i, 1, -30.0, -23.1),
            vec![LoudStep::Stopped]
        );
        assert_eq!(
            m.start_sample + m.stats.duration_samples(),
            i * LEN as u64,
            "the stop block is the last of the event"
        );
        // Back in between off and on: no new start.
        assert!(run(&mut m, &mut i, 300, -21.0, -21.0)
            .iter()
            .all(|s| *s == LoudStep::Nothing));
        assert_eq!(m.phase, Phase::Idle);
        // min_duration 0 starts on the first loud block.
        let mut m0 = LoudMachine::new(0, 3.0);
        assert_eq!(
            m0.step(&block(0, -19.0, -30.0), -20.0, true),
            LoudStep::Started
        );
    }

    fn adaptive_only() -> LevelEvents {
        LevelEvents::new(
            RATE,
            LevelEventsConfig {
                loud_noise_adaptive: Some(AdaptiveLoudness::default()),
                spl_summary_interval_s: None,
                input_loss: None,
                ..LevelEventsConfig::default()
            },
        )
        .unwrap()
    }

    fn feed_blocks(
        ev: &mut LevelEvents,
        i: &mut u64,
        n: u64,
        laeq: f64,
        laf: f64,
        out: &mut Vec<LevelEvent>,
    ) {
        for _ in 0..n {
            ev.on_block(&block(*i, laeq, laf), &mut |e| out.push(e));
            *i += 1;
        }
    }

    #[test]
    fn adaptive_machine_follows_the_background_with_hysteresis() {
        let mut ev = adaptive_only();
        let (mut i, mut out) = (0, Vec::new());
        feed_blocks(&mut ev, &mut i, 6_000, -50.0, -50.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(ev.background_dbfs(), Some(-50.0));
        // on = −38, off = −41. +11 dB is not enough.
        feed_blocks(&mut ev, &mut i, 100, -39.0, -39.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // +13 dB for 0.2 s starts it, reported at its first block.
        let first = i;
        feed_blocks(&mut ev, &mut i, 20, -37.0, -37.0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let LevelEvent::LoudNoiseStart {
            mode,
            start_sample,
            threshold_dbfs,
            background_dbfs,
            ..
        } = out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(mode, LoudnessMode::Adaptive);
        assert_eq!(start_sample, first * LEN as u64);
        assert_eq!(threshold_dbfs, -38.0);
        assert_eq!(background_dbfs, Some(-50.0));
        // Between off and on for 5 s: still active.
        feed_blocks(&mut ev, &mut i, 500, -40.0, -40.0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        // Below off: stop.
        feed_blocks(&mut ev, &mut i, 1, -42.0, -42.0, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            out[1],
            LevelEvent::LoudNoiseStop { end_sample, end_of_stream: false, .. }
                if end_sample == i * LEN as u64
        ));
        // Between off and on again: no new start.
        feed_blocks(&mut ev, &mut i, 300, -39.5, -39.5, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn adaptive_detector_waits_for_the_warmup() {
        let mut ev = adaptive_only();
        let (mut i, mut out) = (0, Vec::new());
        feed_blocks(&mut ev, &mut i, 500, -50.0, -50.0, &mut out); // 5 s < 10 s warm-up
        feed_blocks(&mut ev, &mut i, 100, -20.0, -20.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        feed_blocks(&mut ev, &mut i, 600, -50.0, -50.0, &mut out);
        feed_blocks(&mut ev, &mut i, 100, -20.0, -20.0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    /// Feeds `samples` through a tracker in 10 ms blocks starting at `*pos`.
    fn faults_feed(
        t: &mut FaultTracker,
        pos: &mut u64,
        samples: &[f32],
        out: &mut Vec<LevelEvent>,
    ) {
        for chunk in samples.chunks(LEN) {
            let mut emit = |e| out.push(e);
            t.feed(chunk, *pos, f64::from(RATE), &mut emit);
            t.end_block(*pos, chunk.len(), f64::from(RATE), &mut emit);
            *pos += chunk.len() as u64;
        }
    }

    fn tone(secs: f64) -> Vec<f32> {
        (0..(secs * f64::from(RATE)) as usize)
            .map(|n| 0.1 * (std::f32::consts::TAU * 1000.0 * n as f32 / RATE as f32 + 0.3).sin())
            .collect()
    }

    fn zeros(secs: f64) -> Vec<f32> {
        vec![0.0; (secs * f64::from(RATE)) as usize]
    }

    #[test]
    fn input_loss_has_hysteresis_and_one_pair_at_a_time() {
        let mut t = FaultTracker::new(&InputLossConfig::default(), f64::from(RATE));
        let (mut pos, mut out) = (0, Vec::new());
        faults_feed(&mut t, &mut pos, &tone(1.0), &mut out);
        // Silence shorter than after_s, twice, with a short tone between: nothing.
        faults_feed(&mut t, &mut pos, &zeros(4.9), &mut out);
        faults_feed(&mut t, &mut pos, &tone(0.1), &mut out);
        faults_feed(&mut t, &mut pos, &zeros(4.9), &mut out);
        faults_feed(&mut t, &mut pos, &tone(1.0), &mut out);
        assert!(out.is_empty(), "{out:?}");
        let silence_at = pos;
        faults_feed(&mut t, &mut pos, &zeros(6.0), &mut out);
        assert_eq!(
            out,
            vec![LevelEvent::AudioInputLost {
                reason: InputFault::Silence,
                fault_start_sample: silence_at,
                fault_start_s: silence_at as f64 / 48_000.0,
                start_sample: silence_at + 240_000,
                time_s: (silence_at + 240_000) as f64 / 48_000.0,
            }]
        );
        // 0.3 s of signal is not enough; a stuck input after it keeps it lost (no new event).
        faults_feed(&mut t, &mut pos, &tone(0.3), &mut out);
        faults_feed(&mut t, &mut pos, &[0.3; 48_000], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let back_at = pos;
        faults_feed(&mut t, &mut pos, &tone(0.49), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        faults_feed(&mut t, &mut pos, &tone(0.02), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let LevelEvent::AudioInputRestored {
            reason,
            fault_end_sample,
            start_sample,
            end_of_stream,
            ..
        } = out[1]
        else {
            panic!("{out:?}")
        };
        assert_eq!(reason, InputFault::Silence);
        assert_eq!(fault_end_sample, back_at);
        assert_eq!(start_sample, back_at + 24_000);
        assert!(!end_of_stream);
        // A new fault can be reported after the restore.
        faults_feed(&mut t, &mut pos, &[0.3; 6 * 48_000], &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(
            out[2],
            LevelEvent::AudioInputLost {
                reason: InputFault::Stuck,
                ..
            }
        ));
    }

    fn summaries_of(secs: f64) -> Vec<LevelEvent> {
        let mut ev = LevelEvents::new(
            RATE,
            LevelEventsConfig {
                loud_noise_adaptive: None,
                input_loss: None,
                ..LevelEventsConfig::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        ev.push(&tone(secs), &mut |e| out.push(e));
        ev.finish(&mut |e| out.push(e));
        ev.finish(&mut |e| out.push(e)); // idempotent
        out
    }

    #[test]
    fn finish_reports_a_partial_interval_of_at_least_one_second() {
        let out = summaries_of(11.5);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            out[1],
            LevelEvent::SplSummary {
                start_sample: 480_000,
                end_sample: 552_000,
                ..
            }
        ));
        let out = summaries_of(10.995);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn events_serialise_with_snake_case_tags() {
        let e = LevelEvent::AudioInputLost {
            reason: InputFault::NonFinite,
            fault_start_sample: 0,
            fault_start_s: 0.0,
            start_sample: 240_000,
            time_s: 5.0,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""event":"audio_input_lost""#), "{json}");
        assert!(json.contains(r#""reason":"non_finite""#), "{json}");
    }
}
