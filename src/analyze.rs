//! `earshot analyze`: files in, one [`FileReport`] per file out.
//!
//! The JSON form of [`FileReport`] is the documented output schema (`README.md`, "Output
//! schema"); `--format json` writes one report per line.

use std::path::Path;

use earshot_dsp::logmel::LogMelConfig;
use serde::Serialize;

use crate::audio_file::{AudioFileError, AudioFileReader};
use crate::audioset;
use crate::classes::EarshotClass;
use crate::classifier::Classifier;
use crate::detectors::{Detection, DetectorBank, DetectorConfig};
use crate::level_events::{LevelEvent, LevelEvents, LevelEventsConfig, LevelEventsError};
use crate::pipeline::{
    Analyzer, LevelSummary, PatchReport, PipelineError, Relevel, StreamSummary, Suppression,
};

/// Version tag written in every report (`"schema"`); bumped on any incompatible change.
pub const SCHEMA: &str = "earshot.analyze.v2";

/// Settings of one `analyze` run.
#[derive(Debug, Clone)]
pub struct AnalyzeSettings {
    /// Per-class detector settings (sensitivity, thresholds, hold, cooldown, level gate).
    pub detectors: DetectorConfig,
    /// Patch re-levelling before the classifier; `None` turns it off.
    pub relevel: Option<Relevel>,
    /// Background suppression before the classifier; `None` turns it off.
    pub suppression: Option<Suppression>,
    /// Loudness events: loud noise, SPL summaries, audio input lost/restored.
    pub level_events: LevelEventsConfig,
    /// Front-end parameters (patch hop).
    pub frontend: LogMelConfig,
    /// Cascade gate slack, dB ([`crate::detectors::DetectorConfig::cascade_gate`]); `None`
    /// classifies every patch. A `--scores` timeline classifies every patch regardless.
    pub gate_slack_db: Option<f64>,
    /// Keep a per-patch timeline with this many top AudioSet classes (`--scores`); `None`: no timeline.
    pub timeline_top: Option<usize>,
    /// Add YAMNet's 1024-d embedding to every timeline patch (`--embeddings`).
    pub timeline_embeddings: bool,
    /// dB SPL = dBFS + this offset (see `README.md`, "Calibration"); `None`: uncalibrated.
    pub calibration_offset_db: Option<f64>,
}

/// Everything `analyze` says about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The path as given.
    pub file: String,
    /// The file's own sample rate, Hz.
    pub sample_rate_hz: u32,
    /// The file's channel count (analysis uses their average).
    pub channels: u16,
    /// Codec as the decoder names it (`pcm_s16le`, `flac`, …).
    pub codec: String,
    /// True if the file ended before its header said; what was there was analysed.
    pub truncated: bool,
    /// Where the classifier came from.
    pub model: String,
    /// dB SPL = dBFS + this offset, when calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_offset_db: Option<f64>,
    /// Whole-file level and loudness.
    pub summary: StreamSummary,
    /// What was heard, by start time.
    pub detections: Vec<Detection>,
    /// Loudness events (loud noise start/stop, SPL summaries, audio input lost/restored), in
    /// the order they happened.
    pub level_events: Vec<LevelEvent>,
    /// The per-patch timeline (`--scores` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<Vec<PatchLine>>,
}

/// One patch of the `--scores` timeline.
#[derive(Debug, Clone, Serialize)]
pub struct PatchLine {
    /// Patch number from 0.
    pub index: u64,
    /// Start of the patch's audio, seconds.
    pub start_s: f64,
    /// End of the patch's audio, seconds.
    pub end_s: f64,
    /// Level over the patch, dBFS.
    #[serde(flatten)]
    pub level: LevelSummary,
    /// Gain the patch was re-levelled by before the classifier, dB.
    pub gain_db: f64,
    /// Spectral tilt of the patch, dB per octave ([`earshot_dsp::spectral`]).
    pub tilt_db_per_octave: f32,
    /// Share of the patch's energy at or above 2 kHz, dB ([`earshot_dsp::spectral`]).
    pub hf_ratio_db: f32,
    /// Background level estimate, dBFS (after the first 5 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_dbfs: Option<f64>,
    /// Recent level (80th percentile of the 100 ms LAeq over 60 s), dBFS (after the first 5 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_dbfs: Option<f64>,
    /// Earshot class evidence, by class name.
    pub classes: std::collections::BTreeMap<EarshotClass, f32>,
    /// The highest-scoring AudioSet classes, best first.
    pub top: Vec<TopClass>,
    /// YAMNet's embedding of the patch, 1024 values (`--embeddings` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// An AudioSet class and its score.
#[derive(Debug, Clone, Serialize)]
pub struct TopClass {
    /// Row in YAMNet's output (0 to 520).
    pub index: usize,
    /// AudioSet display name.
    pub name: &'static str,
    /// Sigmoid score in [0, 1].
    pub score: f32,
}

/// Why one file could not be analysed. `is_bad_input` separates the input's fault (exit 2)
/// from ours (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The file could not be read or decoded.
    #[error(transparent)]
    File(#[from] AudioFileError),
    /// The detector settings are invalid (names the class and field).
    #[error("detector settings: {0}")]
    Settings(String),
    /// The loudness-event settings are invalid, or the rate is unsupported.
    #[error("{file}: {source}")]
    LevelEvents {
        /// The file.
        file: String,
        /// What is wrong.
        source: LevelEventsError,
    },
    /// The pipeline refused the stream or failed.
    #[error("{file}: {source}")]
    Pipeline {
        /// The file.
        file: String,
        /// What failed.
        source: PipelineError,
    },
}

impl AnalyzeError {
    /// True when the input itself is at fault: missing, unreadable, malformed, unsupported.
    pub fn is_bad_input(&self) -> bool {
        match self {
            AnalyzeError::File(_)
            | AnalyzeError::Settings(_)
            | AnalyzeError::LevelEvents { .. } => true,
            AnalyzeError::Pipeline { source, .. } => matches!(source, PipelineError::Dsp(_)),
        }
    }
}

/// Runs files through one classifier, rebuilding the rate-dependent stages when the rate changes.
pub struct FileAnalyzer {
    settings: AnalyzeSettings,
    classifier: Classifier,
    analyzer: Option<Analyzer>,
}

impl FileAnalyzer {
    /// The settings it runs with.
    pub fn settings(&self) -> &AnalyzeSettings {
        &self.settings
    }

    /// A file analyser using `classifier` for every file.
    pub fn new(classifier: Classifier, settings: AnalyzeSettings) -> Self {
        Self {
            settings,
            classifier,
            analyzer: None,
        }
    }

    /// Analyses one file. `progress` is called with (frames read, total frames if known).
    ///
    /// # Errors
    /// [`AnalyzeError`] naming the file; see [`AnalyzeError::is_bad_input`].
    pub fn analyze(
        &mut self,
        path: &Path,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<FileReport, AnalyzeError> {
        let mut reader = AudioFileReader::open(path)?;
        let info = reader.info().clone();
        let file = path.display().to_string();
        let pipeline_err = |source| AnalyzeError::Pipeline {
            file: file.clone(),
            source,
        };
        let gate = match self.settings.gate_slack_db {
            Some(slack) if self.settings.timeline_top.is_none() => self
                .settings
                .detectors
                .cascade_gate(slack)
                .map_err(AnalyzeError::Settings)?,
            _ => None,
        };
        let analyzer = match &mut self.analyzer {
            Some(a) if a.rate_hz() == info.sample_rate_hz => a,
            slot => slot.insert(
                Analyzer::new(info.sample_rate_hz, self.settings.frontend.clone())
                    .and_then(|a| a.with_relevel(self.settings.relevel))
                    .map(|a| a.with_suppression(self.settings.suppression))
                    .map_err(pipeline_err)?,
            ),
        };
        analyzer.set_gate(gate);
        let classifier = &mut self.classifier;
        let mut bank = DetectorBank::new(info.sample_rate_hz, &self.settings.detectors)
            .map_err(AnalyzeError::Settings)?;
        let mut detections = Vec::new();
        let mut level = LevelEvents::new(info.sample_rate_hz, self.settings.level_events).map_err(
            |source| AnalyzeError::LevelEvents {
                file: file.clone(),
                source,
            },
        )?;
        let mut level_events = Vec::new();
        let mut timeline = self.settings.timeline_top.map(|_| Vec::new());
        let top = self.settings.timeline_top.unwrap_or(0);
        let embeddings = self.settings.timeline_embeddings;
        let mut on_patch = |p: PatchReport| {
            bank.push(&p, p.background_dbfs, &mut detections, &mut |_| {});
            if let Some(t) = timeline.as_mut() {
                t.push(patch_line(p, top, embeddings));
            }
        };
        let mut buf = Vec::with_capacity(1 << 16);
        let mut read = 0u64;
        loop {
            buf.clear();
            let n = reader.read_mono(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            level.push(&buf, &mut |e| level_events.push(e));
            analyzer
                .push(classifier, &buf, &mut on_patch)
                .map_err(pipeline_err)?;
            progress(read, info.frames);
        }
        let summary = analyzer
            .finish(classifier, &mut on_patch)
            .map_err(pipeline_err)?;
        bank.finish(summary.duration_s, &mut detections, &mut |_| {});
        level.finish(&mut |e| level_events.push(e));
        Ok(FileReport {
            schema: SCHEMA,
            file,
            sample_rate_hz: info.sample_rate_hz,
            channels: info.channels,
            codec: info.codec.clone(),
            truncated: reader.was_truncated(),
            model: classifier.source().to_owned(),
            calibration_offset_db: self.settings.calibration_offset_db,
            summary,
            detections,
            level_events,
            patches: timeline,
        })
    }
}

impl FileReport {
    /// Draws the file's picture ([`crate::plot`]): LAFmax per patch (dB SPL when calibrated),
    /// the evidence of each alarm class with its on-threshold from `detectors`, and the
    /// detections. Needs the per-patch timeline (`patches`).
    ///
    /// # Errors
    /// [`crate::plot::PlotError`] naming the path; a report without a timeline draws only the
    /// detections.
    pub fn write_plot(
        &self,
        path: &Path,
        detectors: &DetectorConfig,
    ) -> Result<(), crate::plot::PlotError> {
        use crate::plot::{write_plot, PlotData, ScoreSeries, Span};
        let patches = self.patches.as_deref().unwrap_or(&[]);
        let offset = self.calibration_offset_db.unwrap_or(0.0);
        // Each patch's level is drawn at its centre.
        let centre = |p: &PatchLine| (p.start_s + p.end_s) / 2.0;
        let level: Vec<(f64, f64)> = patches
            .iter()
            .map(|p| (centre(p), p.level.lafmax_dbfs + offset))
            .collect();
        let classes = [
            EarshotClass::GlassBreak,
            EarshotClass::Aggression,
            EarshotClass::Gunshot,
        ];
        let points: Vec<Vec<(f64, f32)>> = classes
            .iter()
            .map(|c| {
                patches
                    .iter()
                    .map(|p| (centre(p), p.classes.get(c).copied().unwrap_or(0.0)))
                    .collect()
            })
            .collect();
        let scores: Vec<ScoreSeries<'_>> = classes
            .iter()
            .zip(&points)
            .map(|(c, pts)| ScoreSeries {
                class: c.name(),
                points: pts,
            })
            .collect();
        let thresholds: Vec<(&str, f32)> = classes
            .iter()
            .filter_map(|c| {
                let s = detectors.class(*c).detector_settings().ok()?;
                Some((c.name(), s.on_threshold))
            })
            .collect();
        let detections: Vec<Span<'_>> = self
            .detections
            .iter()
            .filter(|d| classes.contains(&d.class))
            .map(|d| Span {
                class: d.class.name(),
                start_s: d.start_s,
                end_s: d.end_s,
            })
            .collect();
        let title = Path::new(&self.file)
            .file_name()
            .map_or_else(|| self.file.clone(), |n| n.to_string_lossy().into_owned());
        write_plot(
            path,
            &PlotData {
                title: &title,
                duration_s: self.summary.duration_s,
                level: &level,
                level_label: if self.calibration_offset_db.is_some() {
                    "LAFmax per patch, dB SPL"
                } else {
                    "LAFmax per patch, dBFS"
                },
                scores: &scores,
                thresholds: &thresholds,
                detections: &detections,
            },
        )
    }
}

fn patch_line(p: PatchReport, top: usize, embedding: bool) -> PatchLine {
    PatchLine {
        index: p.index,
        start_s: p.start_s,
        end_s: p.end_s,
        level: p.level,
        background_dbfs: p.background_dbfs,
        recent_dbfs: p.recent_dbfs,
        gain_db: p.gain_db,
        tilt_db_per_octave: p.shape.tilt_db_per_octave,
        hf_ratio_db: p.shape.hf_ratio_db,
        classes: EarshotClass::ALL
            .iter()
            .map(|c| (*c, p.class_scores[c.slot()]))
            .collect(),
        top: p
            .output
            .as_ref()
            .map(|o| audioset::top_k(&o.scores, top))
            .unwrap_or_default()
            .into_iter()
            .map(|(index, score)| TopClass {
                index,
                name: audioset::display_name(index),
                score,
            })
            .collect(),
        embedding: p.output.filter(|_| embedding).map(|o| o.embedding),
    }
}
