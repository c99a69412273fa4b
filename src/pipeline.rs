//! The analysis pipeline: native-rate samples in, one [`PatchReport`] per classified patch out.
//!
//! ```text
//! samples (native rate) ─┬─► level meter (IEC 61672-1, 10 ms blocks) ─► level history ─┐
//!                        ├─► loudness (BS.1770-4)                                        │
//!                        └─► resampler → 16 kHz → log-mel front end → patches ─► classifier ─► PatchReport
//! ```
//!
//! Level meters and loudness run at the input's own rate; only the classifier's path is
//! resampled. Every patch report carries the level measured over the same span of audio.
//!
//! **Re-levelling** (on by default, [`Relevel`]): YAMNet's log-mel adds 0.001 before the log,
//! so a quiet sound (a window breaking 10 m away reads −35 dBFS) reaches the network compressed
//! against that floor and loses what identifies it. Before classification each patch is
//! re-levelled, exactly in the log-mel domain ([`earshot_dsp::spectral::normalise_gain`]), by
//! the gain that brings its LCpeak to [`Relevel::target_peak_dbfs`], limited to
//! [`Relevel::max_gain_db`] (so room tone is not blown up into a sound). Measured on
//! `../shared/eval`: glass-break recall at ≤ 2 % false alarms rises from 0.76 to 0.96 on YAMNet's
//! "Smash, crash" score. The level meters always see the untouched input.
//!
//! **Cascade gate** (on by default in `earshot run`, `analyze` and `eval`, [`Gate`]): the
//! classifier costs about a thousand times more than everything else, and most patches of a
//! quiet scene cannot start any detection, because every alarm detector has a level gate
//! ([`crate::detector::LevelGate`]). The gate skips inference for those patches; their report
//! has [`PatchReport::output`] `None` and zero class evidence.

use std::collections::VecDeque;

use earshot_dsp::background::{BackgroundConfig, BackgroundTracker};
use earshot_dsp::level::{db_from_mean_square, LevelBlock, LevelMeter, LevelStats};
use earshot_dsp::logmel::{LogMelConfig, LogMelFrontEnd};
use earshot_dsp::loudness::LoudnessMeter;
use earshot_dsp::resample::StreamResampler;
use earshot_dsp::spectral::{normalise_gain, BackgroundSpectrum, PatchShape, SpectralShape};
use earshot_dsp::DspError;
use serde::Serialize;

use crate::classes::ClassScores;
use crate::classifier::{Classifier, ClassifierError, ClassifierOutput};
use crate::evidence::evidence;

/// Seconds of input before the background estimate is reported (and level gates use it).
pub const BACKGROUND_WARM_UP_S: f64 = 5.0;

/// Sample rate of the classifier's input, Hz.
pub const MODEL_RATE_HZ: u32 = 16_000;

/// Patch re-levelling before the classifier (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relevel {
    /// LCpeak a patch is brought to, dBFS (default −6).
    pub target_peak_dbfs: f64,
    /// Largest gain applied, dB (default 30); patches louder than the target are attenuated
    /// without limit.
    pub max_gain_db: f64,
}

impl Default for Relevel {
    fn default() -> Self {
        Self {
            target_peak_dbfs: -6.0,
            max_gain_db: 30.0,
        }
    }
}

impl Relevel {
    /// The gain for a patch whose LCpeak is `lcpeak_dbfs`, dB. Silence (the level floor) gets
    /// the maximum gain.
    pub fn gain_db(&self, lcpeak_dbfs: f64) -> f64 {
        (self.target_peak_dbfs - lcpeak_dbfs).min(self.max_gain_db)
    }
}

/// Cascade gate: which patches are worth classifying (see the module documentation).
///
/// A patch is classified when any of these holds:
/// - its LAFmax is at least `min_dbfs` **and** at least `above_background_db` over the learned
///   background (or the background is still warming up, [`BACKGROUND_WARM_UP_S`]);
/// - the last classified patch's evidence for a class reached that class's `hold_scores` entry
///   (an ongoing sound is followed while its evidence lasts, whatever its level).
///
/// [`crate::detectors::DetectorConfig::cascade_gate`] derives these values from the detectors'
/// own level gates (the loosest of the enabled classes) and their off-thresholds, so a patch the
/// gate skips could not have started any detection: start events are the same with the gate on
/// and off. Onsets and voice activity are not separate conditions: a detector cannot start on
/// them without its level gate passing. What the gate can change is the end of a detection whose
/// evidence dipped below the off-threshold and then returned while the level was below the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Smallest LAFmax of a classified patch, dBFS (`-inf`: no absolute condition).
    pub min_dbfs: f64,
    /// Smallest LAFmax above the background estimate, dB (`-inf`: no background condition).
    pub above_background_db: f64,
    /// Per class ([`crate::classes::EarshotClass::slot`]): evidence in [0, 1] of the last
    /// classified patch that keeps the gate open for the next one; `None`: the class does not
    /// hold it open.
    pub hold_scores: ClassScoresHold,
}

/// One optional evidence threshold per Earshot class.
pub type ClassScoresHold = [Option<f32>; crate::classes::EarshotClass::ALL.len()];

impl Gate {
    /// Whether a patch with this level is classified, given the last classified evidence.
    fn opens(&self, lafmax_dbfs: f64, background_dbfs: Option<f64>, last: &ClassScores) -> bool {
        let level = lafmax_dbfs >= self.min_dbfs
            && background_dbfs.is_none_or(|bg| lafmax_dbfs >= bg + self.above_background_db);
        level
            || self
                .hold_scores
                .iter()
                .zip(last)
                .any(|(hold, score)| hold.is_some_and(|h| *score >= h))
    }
}

/// Background suppression before the classifier: the background's mel spectrum (minimum
/// statistics over 3 s, [`BackgroundSpectrum`]) is subtracted from each patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suppression {
    /// How much of the estimate is subtracted (over-subtraction factor, ≥ 0).
    pub alpha: f64,
    /// Smallest share of each cell's magnitude kept, 0 to 1.
    pub floor: f64,
}

/// Errors while analysing a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A DSP stage refused its parameters (e.g. an unsupported sample rate).
    #[error(transparent)]
    Dsp(#[from] DspError),
    /// The classifier failed.
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
}

/// Level over a span of audio, per IEC 61672-1, in dBFS (RMS-referenced: a full-scale sine is
/// −3.01 dBFS). Silence reads [`earshot_dsp::level::LEVEL_FLOOR_DBFS`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LevelSummary {
    /// A-weighted equivalent continuous level, dBFS.
    pub laeq_dbfs: f64,
    /// Maximum A-weighted Fast level, dBFS.
    pub lafmax_dbfs: f64,
    /// Minimum A-weighted Fast level, dBFS.
    pub lafmin_dbfs: f64,
    /// C-weighted peak level, dBFS (20·log10 of the peak absolute sample).
    pub lcpeak_dbfs: f64,
}

impl LevelSummary {
    fn from_stats(s: &LevelStats) -> Self {
        Self {
            laeq_dbfs: s.laeq_db(),
            lafmax_dbfs: s.lafmax_db(),
            lafmin_dbfs: s.lafmin_db(),
            lcpeak_dbfs: s.lcpeak_db(),
        }
    }
}

/// What the pipeline reports for one patch.
#[derive(Debug, Clone)]
pub struct PatchReport {
    /// Patch number from 0.
    pub index: u64,
    /// Start of the patch's audio, seconds from the start of the stream.
    pub start_s: f64,
    /// End of the patch's audio (start + 0.975 s with YAMNet's front end), seconds.
    pub end_s: f64,
    /// Evidence for each Earshot class, in [0, 1] ([`crate::evidence`]).
    pub class_scores: ClassScores,
    /// The classifier's full output (521 scores, logits, 1024-d embedding); `None` when the
    /// cascade gate skipped the patch ([`Gate`]).
    pub output: Option<ClassifierOutput>,
    /// Level over the patch's span, at the input's native rate.
    pub level: LevelSummary,
    /// The learned background level when the patch was classified, dBFS: the 20th percentile
    /// of the 100 ms LAeq over the last 60 s ([`earshot_dsp::background`]); `None` during the
    /// first [`BACKGROUND_WARM_UP_S`] seconds.
    pub background_dbfs: Option<f64>,
    /// The recent level when the patch was classified, dBFS: the 80th percentile of the 100 ms
    /// LAeq over the last 60 s; `None` during the first [`BACKGROUND_WARM_UP_S`] seconds.
    pub recent_dbfs: Option<f64>,
    /// Gain the patch was re-levelled by before the classifier, dB (0 when re-levelling is off
    /// or the gate skipped the patch).
    pub gain_db: f64,
    /// Spectral shape of the patch (tilt, high-frequency ratio), from the log-mel values
    /// before re-levelling.
    pub shape: PatchShape,
}

/// Whole-stream measurements, available at [`Analyzer::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StreamSummary {
    /// Duration of the input, seconds.
    pub duration_s: f64,
    /// Level over the whole input.
    #[serde(flatten)]
    pub level: LevelSummary,
    /// Integrated loudness per ITU-R BS.1770-4 (gated), LUFS; `None` when every block was gated
    /// out (silence, or shorter than 400 ms).
    pub integrated_lufs: Option<f64>,
    /// Number of patches the front end produced.
    pub patches: u64,
    /// Number of those the classifier ran on (the rest were skipped by the [`Gate`]).
    pub classified: u64,
}

/// Streaming analyser of one mono input at its native rate.
pub struct Analyzer {
    rate_hz: u32,
    resampler: StreamResampler,
    frontend: LogMelFrontEnd,
    level: LevelMeter,
    loudness: LoudnessMeter,
    /// Recent 10 ms level blocks, oldest first, kept until no future patch can cover them.
    history: VecDeque<LevelBlock>,
    whole: LevelStats,
    /// Patches emitted by the front end and not yet classified: (index, first 16 kHz sample, log-mel).
    queued: Vec<(u64, u64, Vec<f32>)>,
    /// Spare patch buffers, so steady-state running does not allocate for patches.
    spare: Vec<Vec<f32>>,
    samples_in: u64,
    patches: u64,
    classified: u64,
    gate: Option<Gate>,
    /// Evidence of the last classified patch (zero after a skipped one), for the gate's hold.
    last_scores: ClassScores,
    relevel: Option<Relevel>,
    suppression: Option<Suppression>,
    spectrum: BackgroundSpectrum,
    /// Frames of the log-mel stream already fed to `spectrum`.
    frames_seen: u64,
    /// The suppressed copy of a patch (allocated once).
    scratch: Vec<f32>,
    shape: SpectralShape,
    background: BackgroundTracker,
    /// The recent level: 80th percentile of the same 100 ms levels.
    recent: BackgroundTracker,
    /// A-weighted energy and samples of the 100 ms interval being collected for `background`.
    interval: (f64, usize),
}

impl Analyzer {
    /// An analyser for mono input at `rate_hz` (8 000 to 192 000 Hz) with the given front-end
    /// configuration (its `sample_rate_hz` must be 16 000). The classifier is passed to each
    /// call, so one loaded model serves analysers of any rate.
    ///
    /// # Errors
    /// [`PipelineError::Dsp`] naming the rate or parameter that is not supported.
    pub fn new(rate_hz: u32, frontend: LogMelConfig) -> Result<Self, PipelineError> {
        if frontend.sample_rate_hz != MODEL_RATE_HZ {
            return Err(DspError::InvalidParameter {
                name: "sample_rate_hz",
                value: frontend.sample_rate_hz.to_string(),
                expected: "16000 Hz, the classifier's rate",
            }
            .into());
        }
        let block = (rate_hz as usize).div_ceil(100);
        Ok(Self {
            rate_hz,
            resampler: StreamResampler::new(rate_hz, MODEL_RATE_HZ)?,
            shape: SpectralShape::new(&frontend)?,
            suppression: None,
            spectrum: BackgroundSpectrum::new(frontend.mel_bands, 300, 5, frontend.log_offset)?,
            frames_seen: 0,
            scratch: Vec::with_capacity(frontend.patch_frames * frontend.mel_bands),
            background: BackgroundTracker::new(BackgroundConfig::default())?,
            recent: BackgroundTracker::new(BackgroundConfig {
                percentile: 0.8,
                ..BackgroundConfig::default()
            })?,
            interval: (0.0, 0),
            relevel: Some(Relevel::default()),
            frontend: LogMelFrontEnd::new(frontend)?,
            level: LevelMeter::new(rate_hz, block)?,
            loudness: LoudnessMeter::new(1, rate_hz)?,
            history: VecDeque::with_capacity(512),
            whole: LevelStats::default(),
            queued: Vec::with_capacity(4),
            spare: Vec::new(),
            samples_in: 0,
            patches: 0,
            classified: 0,
            gate: None,
            last_scores: ClassScores::default(),
        })
    }

    /// Sets or disables (`None`) patch re-levelling before the classifier; on by default.
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] when a value is not finite or the maximum gain is negative.
    pub fn with_relevel(mut self, relevel: Option<Relevel>) -> Result<Self, PipelineError> {
        if let Some(r) = relevel {
            let valid =
                r.target_peak_dbfs.is_finite() && r.max_gain_db.is_finite() && r.max_gain_db >= 0.0;
            if !valid {
                return Err(DspError::InvalidParameter {
                    name: "relevel",
                    value: format!("{r:?}"),
                    expected: "a finite target peak in dBFS and a maximum gain ≥ 0 dB",
                }
                .into());
            }
        }
        self.relevel = relevel;
        Ok(self)
    }

    /// Sets or disables (`None`, the default) the cascade gate ([`Gate`]).
    pub fn with_gate(mut self, gate: Option<Gate>) -> Self {
        self.gate = gate;
        self
    }

    /// Changes the cascade gate of a running analyser (e.g. after the detector settings
    /// changed); takes effect from the next patch.
    pub fn set_gate(&mut self, gate: Option<Gate>) {
        self.gate = gate;
    }

    /// Sets or disables (`None`, the default) background suppression before the classifier.
    pub fn with_suppression(mut self, suppression: Option<Suppression>) -> Self {
        self.suppression = suppression;
        self
    }

    /// Input sample rate, Hz.
    pub fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// Feeds mono samples in [-1, 1] at the native rate; every patch completed by them is
    /// classified and handed to `on_patch`, in order.
    ///
    /// # Errors
    /// [`PipelineError::Classifier`] if inference fails.
    pub fn push(
        &mut self,
        classifier: &mut Classifier,
        samples: &[f32],
        on_patch: &mut impl FnMut(PatchReport),
    ) -> Result<(), PipelineError> {
        self.samples_in += samples.len() as u64;
        let (history, whole) = (&mut self.history, &mut self.whole);
        let (background, recent, interval) =
            (&mut self.background, &mut self.recent, &mut self.interval);
        let interval_len = (self.rate_hz as usize).div_ceil(10);
        self.level.process(samples, |b| {
            whole.add(b);
            history.push_back(*b);
            interval.0 += b.a_energy;
            interval.1 += b.len;
            if interval.1 >= interval_len {
                let level = db_from_mean_square(interval.0 / interval.1 as f64);
                background.push(level);
                recent.push(level);
                *interval = (0.0, 0);
            }
        });
        self.loudness.process_interleaved_f32(samples)?;
        let (frontend, queued, spare) = (&mut self.frontend, &mut self.queued, &mut self.spare);
        self.resampler.push(samples, |s16| {
            frontend.push(s16, |p| queue_patch(queued, spare, p))
        });
        self.classify_queued(classifier, on_patch)
    }

    /// Patches the front end has produced so far and how many of them were classified (the rest
    /// were skipped by the [`Gate`]), since construction or the last [`Analyzer::finish`]. Patches
    /// still queued for classification count as produced, not yet as classified.
    pub fn patch_counts(&self) -> (u64, u64) {
        (self.patches, self.classified)
    }

    /// Ends the stream: flushes the resampler and the front end (YAMNet's end padding),
    /// classifies the last patches and returns the whole-stream summary. The analyser is then
    /// ready for a new stream at the same rate.
    ///
    /// # Errors
    /// [`PipelineError::Classifier`] if inference fails.
    pub fn finish(
        &mut self,
        classifier: &mut Classifier,
        on_patch: &mut impl FnMut(PatchReport),
    ) -> Result<StreamSummary, PipelineError> {
        let (frontend, queued, spare) = (&mut self.frontend, &mut self.queued, &mut self.spare);
        self.resampler
            .finish(|s16| frontend.push(s16, |p| queue_patch(queued, spare, p)));
        frontend.finish(|p| queue_patch(queued, spare, p));
        self.classify_queued(classifier, on_patch)?;
        let summary = StreamSummary {
            duration_s: self.samples_in as f64 / self.rate_hz as f64,
            level: LevelSummary::from_stats(&self.whole),
            integrated_lufs: self.loudness.integrated_lufs(),
            patches: self.patches,
            classified: self.classified,
        };
        self.history.clear();
        self.background.reset();
        self.recent.reset();
        self.spectrum.reset();
        self.frames_seen = 0;
        self.interval = (0.0, 0);
        self.level.reset();
        self.whole = LevelStats::default();
        self.loudness.reset();
        self.samples_in = 0;
        self.patches = 0;
        self.classified = 0;
        self.last_scores = ClassScores::default();
        Ok(summary)
    }

    fn classify_queued(
        &mut self,
        classifier: &mut Classifier,
        on_patch: &mut impl FnMut(PatchReport),
    ) -> Result<(), PipelineError> {
        let patch_len = self.frontend.config().patch_len_samples() as u64;
        let hop = self.frontend.config().patch_hop_samples() as u64;
        let rate = self.rate_hz as u64;
        let log_offset = self.frontend.config().log_offset;
        for (index, start16, mut log_mel) in self.queued.drain(..) {
            // The patch's span in native samples; the level blocks starting inside it.
            let start = start16 * rate / MODEL_RATE_HZ as u64;
            let end = (start16 + patch_len) * rate / MODEL_RATE_HZ as u64;
            let mut stats = LevelStats::default();
            for b in self
                .history
                .iter()
                .filter(|b| b.start_sample >= start && b.start_sample < end)
            {
                stats.add(b);
            }
            let shape = self.shape.analyse(&log_mel);
            let warm = self.samples_in as f64 >= BACKGROUND_WARM_UP_S * self.rate_hz as f64;
            let background_dbfs = warm.then(|| self.background.estimate_dbfs()).flatten();
            let recent_dbfs = warm.then(|| self.recent.estimate_dbfs()).flatten();
            if let Some(sup) = self.suppression {
                // Suppress with what was known before this patch, then learn its new frames.
                self.scratch.clear();
                self.scratch.extend_from_slice(&log_mel);
                self.spectrum
                    .suppress(&mut self.scratch, sup.alpha, sup.floor);
                let bands = self.frontend.config().mel_bands;
                let first = start16 / self.frontend.config().hop_len as u64;
                for (i, frame) in log_mel.chunks(bands).enumerate() {
                    if first + i as u64 >= self.frames_seen {
                        self.spectrum.push_frame(frame);
                    }
                }
                self.frames_seen = self.frames_seen.max(first + (log_mel.len() / bands) as u64);
                log_mel.copy_from_slice(&self.scratch);
            }
            let open = self
                .gate
                .is_none_or(|g| g.opens(stats.lafmax_db(), background_dbfs, &self.last_scores));
            let (gain_db, output) = if open {
                let gain_db = self.relevel.map_or(0.0, |r| r.gain_db(stats.lcpeak_db()));
                normalise_gain(&mut log_mel, gain_db, log_offset);
                (gain_db, Some(classifier.classify(&log_mel)))
            } else {
                (0.0, None)
            };
            self.spare.push(log_mel);
            let output = output.transpose()?;
            let class_scores = output
                .as_ref()
                .map_or_else(ClassScores::default, |o| evidence(&o.scores, &shape));
            self.last_scores = class_scores;
            self.classified += u64::from(output.is_some());
            // Blocks before the next patch's start are no longer needed.
            let next_start = (start16 + hop) * rate / MODEL_RATE_HZ as u64;
            while self
                .history
                .front()
                .is_some_and(|b| b.start_sample + (b.len as u64) <= next_start)
            {
                self.history.pop_front();
            }
            self.patches += 1;
            on_patch(PatchReport {
                index,
                start_s: start16 as f64 / MODEL_RATE_HZ as f64,
                end_s: (start16 + patch_len) as f64 / MODEL_RATE_HZ as f64,
                class_scores,
                output,
                level: LevelSummary::from_stats(&stats),
                background_dbfs,
                recent_dbfs,
                gain_db,
                shape,
            });
        }
        Ok(())
    }
}

fn queue_patch(
    queued: &mut Vec<(u64, u64, Vec<f32>)>,
    spare: &mut Vec<Vec<f32>>,
    p: &earshot_dsp::logmel::Patch<'_>,
) {
    let mut buf = spare.pop().unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(p.log_mel);
    queued.push((p.index, p.start_sample, buf));
}
