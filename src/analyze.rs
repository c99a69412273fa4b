//! `earshot analyze`: files in, one [`FileReport`] per file out.
//!
//! The JSON form of [`FileReport`] is the documented output schema (`README.md`, "Output
//! schema"); `--format json` writes one report per line.

use std::path::Path;

use earshot_dsp::logmel::LogMelConfig;
use serde::Serialize;

use crate::audio_file::{AudioFileError, AudioFileReader};
use crate::audioset;
use crate::classes::{EarshotClass, Thresholds};
use crate::classifier::Classifier;
use crate::detection::{Detection, DetectionMerger};
use crate::pipeline::{Analyzer, LevelSummary, PatchReport, PipelineError, StreamSummary};

/// Version tag written in every report (`"schema"`); bumped on any incompatible change.
pub const SCHEMA: &str = "earshot.analyze.v1";

/// Settings of one `analyze` run.
#[derive(Debug, Clone)]
pub struct AnalyzeSettings {
    /// Per-class thresholds on the class score.
    pub thresholds: Thresholds,
    /// Front-end parameters (patch hop).
    pub frontend: LogMelConfig,
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
    /// Earshot class scores, by class name.
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
            AnalyzeError::File(_) => true,
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
        let analyzer = match &mut self.analyzer {
            Some(a) if a.rate_hz() == info.sample_rate_hz => a,
            slot => slot.insert(
                Analyzer::new(info.sample_rate_hz, self.settings.frontend.clone())
                    .map_err(pipeline_err)?,
            ),
        };
        let classifier = &mut self.classifier;
        let mut merger = DetectionMerger::new(self.settings.thresholds);
        let mut detections = Vec::new();
        let mut timeline = self.settings.timeline_top.map(|_| Vec::new());
        let top = self.settings.timeline_top.unwrap_or(0);
        let embeddings = self.settings.timeline_embeddings;
        let mut on_patch = |p: PatchReport| {
            merger.push(&p, &mut detections);
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
            analyzer
                .push(classifier, &buf, &mut on_patch)
                .map_err(pipeline_err)?;
            progress(read, info.frames);
        }
        let summary = analyzer
            .finish(classifier, &mut on_patch)
            .map_err(pipeline_err)?;
        merger.finish(summary.duration_s, &mut detections);
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
            patches: timeline,
        })
    }
}

fn patch_line(p: PatchReport, top: usize, embedding: bool) -> PatchLine {
    PatchLine {
        index: p.index,
        start_s: p.start_s,
        end_s: p.end_s,
        level: p.level,
        classes: EarshotClass::ALL
            .iter()
            .map(|c| (*c, p.class_scores[c.slot()]))
            .collect(),
        top: audioset::top_k(&p.output.scores, top)
            .into_iter()
            .map(|(index, score)| TopClass {
                index,
                name: audioset::display_name(index),
                score,
            })
            .collect(),
        embedding: embedding.then_some(p.output.embedding),
    }
}
