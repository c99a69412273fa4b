//! `earshot eval`: runs the whole pipeline (front end, classifier, evidence, detectors) on a
//! labelled set and reports how it did.
//!
//! Three inputs, told apart by their form:
//! - a **clip list** (`labels.csv`: `file,class,source,license,original_path,duration_s,
//!   recording_type`): clip-level recall per class on its positives, the share of negatives
//!   flagged as each class, a confusion table, and the same split by recording type
//!   (`real`/`acted` against the stylised game, music and UI clips);
//! - a **scene list** (`scenes.csv`: `file,class,onset_s,offset_s,snr_db,…`): event-based recall
//!   per class and SNR, and the latency from the event's onset to the start event being
//!   published;
//! - an **audio file** (a long background recording): false alarms per hour by class.
//!
//! Paths in a list are relative to the list's folder. Class names in lists: `glass_break`,
//! `aggression`, `gunshot_explosion` (or `gunshot`) and `negative`.
//!
//! A clip counts as detected as a class when the detectors emit a start event of that class
//! anywhere in it. A scene's event counts as detected when a detection of its class overlaps
//! `[onset_s − 0.5 s, offset_s + 1.0 s]` (the tolerance covers the patch length); every other
//! detection of an alarm class in a scene is counted as a false alarm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::{AnalyzeError, FileAnalyzer, FileReport};
use crate::classes::EarshotClass;

/// The alarm classes evaluated (speech is informational).
pub const ALARM_CLASSES: [EarshotClass; 3] = [
    EarshotClass::GlassBreak,
    EarshotClass::Aggression,
    EarshotClass::Gunshot,
];

/// Seconds before a scene event's onset a matching detection may start.
pub const SCENE_EARLY_S: f64 = 0.5;
/// Seconds after a scene event's offset a matching detection may start.
pub const SCENE_LATE_S: f64 = 1.0;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The list could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The list.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A row of the list is malformed.
    #[error("{path}, line {line}: {message}")]
    Row {
        /// The list.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong, naming the column and value.
        message: String,
    },
    /// A listed clip could not be analysed.
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
}

/// The truth of a clip: one of the alarm classes, or none (a negative).
fn class_of(label: &str) -> Option<Option<EarshotClass>> {
    match label {
        "glass_break" => Some(Some(EarshotClass::GlassBreak)),
        "aggression" => Some(Some(EarshotClass::Aggression)),
        "gunshot_explosion" | "gunshot" => Some(Some(EarshotClass::Gunshot)),
        "negative" => Some(None),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct ClipRow {
    file: String,
    class: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    recording_type: String,
}

#[derive(Debug, Deserialize)]
struct SceneRow {
    file: String,
    class: String,
    onset_s: f64,
    offset_s: f64,
    snr_db: f64,
}

/// What is being evaluated.
#[derive(Debug)]
pub enum EvalInput {
    /// Clips with one class each.
    Clips(Vec<Clip>),
    /// Events mixed into background.
    Scenes(Vec<Scene>),
    /// A recording with nothing to detect.
    Background(PathBuf),
}

/// One labelled clip.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Resolved path.
    pub path: PathBuf,
    /// The class, `None` for a negative.
    pub class: Option<EarshotClass>,
    /// The `source` column (for grouped splits).
    pub source: String,
    /// The `recording_type` column.
    pub recording_type: String,
}

/// One scene: an event of `class` from `onset_s` to `offset_s` at `snr_db`.
#[derive(Debug, Clone)]
pub struct Scene {
    /// Resolved path.
    pub path: PathBuf,
    /// The event's class.
    pub class: EarshotClass,
    /// Event onset, seconds.
    pub onset_s: f64,
    /// Event offset, seconds.
    pub offset_s: f64,
    /// Event-to-background ratio, dB.
    pub snr_db: f64,
}

impl EvalInput {
    /// Reads a clip or scene list (by its header), or takes `path` as a background recording
    /// when it is not a `.csv` file.
    ///
    /// # Errors
    /// [`EvalError`] naming the file, line, column and value.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let name = path.display().to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            if !path.is_file() {
                return Err(EvalError::Io {
                    path: name,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such file (expected a clip list, a scene list or an audio file)",
                    ),
                });
            }
            return Ok(Self::Background(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
            path: name.clone(),
            source,
        })?;
        Self::parse(&name, &bytes, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses the bytes of a clip or scene list named `name` (for messages), resolving its
    /// paths against `dir`. Never panics, whatever the bytes.
    ///
    /// # Errors
    /// [`EvalError::Row`] naming the list, line, column and value.
    pub fn parse(name: &str, bytes: &[u8], dir: &Path) -> Result<Self, EvalError> {
        let name = name.to_owned();
        let mut reader = csv::Reader::from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| EvalError::Row {
                path: name.clone(),
                line: 1,
                message: e.to_string(),
            })?
            .clone();
        let has = |c: &str| headers.iter().any(|h| h == c);
        let row_err = |line: u64, message: String| EvalError::Row {
            path: name.clone(),
            line,
            message,
        };
        if !has("file") || !has("class") {
            return Err(row_err(
                1,
                "expected a header with at least the columns file,class (and onset_s,offset_s,snr_db for a scene list)".into(),
            ));
        }
        let class = |line: u64, label: &str| {
            class_of(label).ok_or_else(|| {
                row_err(
                    line,
                    format!("class '{label}': expected glass_break, aggression, gunshot_explosion or negative"),
                )
            })
        };
        if has("onset_s") {
            let mut scenes = Vec::new();
            for (i, row) in reader.deserialize::<SceneRow>().enumerate() {
                let line = i as u64 + 2;
                let row = row.map_err(|e| row_err(line, e.to_string()))?;
                let Some(c) = class(line, &row.class)? else {
                    return Err(row_err(
                        line,
                        "class 'negative' has no event in a scene list".into(),
                    ));
                };
                if !(row.onset_s.is_finite() && row.offset_s >= row.onset_s) {
                    return Err(row_err(
                        line,
                        format!(
                            "onset_s {} / offset_s {}: expected 0 ≤ onset ≤ offset",
                            row.onset_s, row.offset_s
                        ),
                    ));
                }
                scenes.push(Scene {
                    path: dir.join(&row.file),
                    class: c,
                    onset_s: row.onset_s,
                    offset_s: row.offset_s,
                    snr_db: row.snr_db,
                });
            }
            Ok(Self::Scenes(scenes))
        } else {
            let mut clips = Vec::new();
            for (i, row) in reader.deserialize::<ClipRow>().enumerate() {
                let line = i as u64 + 2;
                let row = row.map_err(|e| row_err(line, e.to_string()))?;
                clips.push(Clip {
                    path: dir.join(&row.file),
                    class: class(line, &row.class)?,
                    source: row.source,
                    recording_type: row.recording_type,
                });
            }
            Ok(Self::Clips(clips))
        }
    }

    /// Number of files to analyse.
    pub fn len(&self) -> usize {
        match self {
            Self::Clips(c) => c.len(),
            Self::Scenes(s) => s.len(),
            Self::Background(_) => 1,
        }
    }

    /// True when there is nothing to analyse.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Recall and false-positive figures for one class over a set of clips.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClassFigures {
    /// Positives of the class.
    pub positives: u32,
    /// Positives detected as the class.
    pub detected: u32,
    /// `detected / positives` (0 when there are none).
    pub recall: f64,
    /// Negatives in the set.
    pub negatives: u32,
    /// Negatives detected as the class.
    pub false_positives: u32,
    /// `false_positives / negatives`.
    pub false_positive_rate: f64,
}

/// Clip-level results.
#[derive(Debug, Clone, Serialize)]
pub struct ClipsReport {
    /// Clips evaluated.
    pub clips: usize,
    /// Per alarm class, over all clips.
    pub overall: BTreeMap<EarshotClass, ClassFigures>,
    /// Per recording-type group (`real_or_acted`, `stylised`) and class.
    pub by_recording_type: BTreeMap<String, BTreeMap<EarshotClass, ClassFigures>>,
    /// Rows: true class (`glass_break`, …, `negative`); columns: detected class or `none`;
    /// a clip detected as two classes counts in both columns.
    pub confusion: BTreeMap<String, BTreeMap<String, u32>>,
    /// Positives missed and negatives flagged, by file, for inspection.
    pub errors: Vec<ClipError>,
}

/// A clip the detectors got wrong.
#[derive(Debug, Clone, Serialize)]
pub struct ClipError {
    /// The file.
    pub file: String,
    /// Its true class (`negative` for none).
    pub truth: String,
    /// What was detected.
    pub detected: Vec<EarshotClass>,
}

/// Event-based results on scenes.
#[derive(Debug, Clone, Serialize)]
pub struct ScenesReport {
    /// Scenes evaluated.
    pub scenes: usize,
    /// Per class, then per SNR (dB, as text): events and how many were detected.
    pub recall: BTreeMap<EarshotClass, BTreeMap<String, RecallAt>>,
    /// Per class: median latency from onset to the published start event, seconds.
    pub median_latency_s: BTreeMap<EarshotClass, Option<f64>>,
    /// Detections of an alarm class that matched no event, by class.
    pub false_alarms: BTreeMap<EarshotClass, u32>,
}

/// Recall at one SNR.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RecallAt {
    /// Events.
    pub events: u32,
    /// Events detected.
    pub detected: u32,
    /// `detected / events`.
    pub recall: f64,
}

/// False alarms on a background recording.
#[derive(Debug, Clone, Serialize)]
pub struct BackgroundReport {
    /// The recording.
    pub file: String,
    /// Its length, hours.
    pub hours: f64,
    /// Detections per class.
    pub false_alarms: BTreeMap<EarshotClass, u32>,
    /// Detections per class per hour.
    pub false_alarms_per_hour: BTreeMap<EarshotClass, f64>,
    /// All classes together, per hour.
    pub total_per_hour: f64,
    /// When each false alarm started, seconds, per class (for listening to them).
    pub at_s: BTreeMap<EarshotClass, Vec<f64>>,
    /// Patches the front end produced.
    pub patches: u64,
    /// Patches the classifier ran on (fewer than `patches` with the cascade gate).
    pub classified: u64,
}

/// The result of `earshot eval`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalReport {
    /// From a clip list.
    Clips(ClipsReport),
    /// From a scene list.
    Scenes(ScenesReport),
    /// From a background recording.
    Background(BackgroundReport),
}

fn detected_classes(report: &FileReport) -> Vec<EarshotClass> {
    let mut v: Vec<EarshotClass> = report
        .detections
        .iter()
        .map(|d| d.class)
        .filter(|c| ALARM_CLASSES.contains(c))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Whether a recording type counts as real or acted (as opposed to stylised game audio,
/// produced music or synthetic UI sounds).
pub fn is_real_or_acted(recording_type: &str) -> bool {
    recording_type.starts_with("real") || recording_type.starts_with("acted")
}

/// Clip-level figures from (truth, detected classes, recording type) per clip.
pub fn clip_figures<'a>(
    results: impl IntoIterator<Item = (Option<EarshotClass>, &'a [EarshotClass])> + Clone,
) -> BTreeMap<EarshotClass, ClassFigures> {
    let mut out = BTreeMap::new();
    for class in ALARM_CLASSES {
        let mut f = ClassFigures::default();
        for (truth, detected) in results.clone() {
            let hit = detected.contains(&class);
            match truth {
                Some(t) if t == class => {
                    f.positives += 1;
                    f.detected += hit as u32;
                }
                None => {
                    f.negatives += 1;
                    f.false_positives += hit as u32;
                }
                Some(_) => {}
            }
        }
        f.recall = ratio(f.detected, f.positives);
        f.false_positive_rate = ratio(f.false_positives, f.negatives);
        out.insert(class, f);
    }
    out
}

fn truth_name(t: Option<EarshotClass>) -> String {
    t.map_or("negative".to_owned(), |c| c.name().to_owned())
}

/// Runs the evaluation. `progress` is called after each file with (done, total).
///
/// # Errors
/// The first file that cannot be analysed (the error names it).
pub fn run(
    input: &EvalInput,
    analyzer: &mut FileAnalyzer,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let total = input.len();
    match input {
        EvalInput::Clips(clips) => {
            let mut results: Vec<(Option<EarshotClass>, Vec<EarshotClass>, bool)> = Vec::new();
            let mut errors = Vec::new();
            for (i, clip) in clips.iter().enumerate() {
                let report = analyzer.analyze(&clip.path, |_, _| {})?;
                let detected = detected_classes(&report);
                let right = match clip.class {
                    Some(c) => detected.contains(&c),
                    None => detected.is_empty(),
                };
                if !right {
                    errors.push(ClipError {
                        file: report.file.clone(),
                        truth: truth_name(clip.class),
                        detected: detected.clone(),
                    });
                }
                results.push((clip.class, detected, is_real_or_acted(&clip.recording_type)));
                progress(i + 1, total);
            }
            let view = |filter: Option<bool>| {
                results
                    .iter()
                    .filter(move |r| filter.is_none_or(|f| r.2 == f))
                    .map(|r| (r.0, r.1.as_slice()))
            };
            let mut by_type = BTreeMap::new();
            by_type.insert("real_or_acted".to_owned(), clip_figures(view(Some(true))));
            by_type.insert("stylised".to_owned(), clip_figures(view(Some(false))));
            let mut confusion: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
            for (truth, detected, _) in &results {
                let row = confusion.entry(truth_name(*truth)).or_default();
                if detected.is_empty() {
                    *row.entry("none".to_owned()).or_default() += 1;
                }
                for d in detected {
                    *row.entry(d.name().to_owned()).or_default() += 1;
                }
            }
            Ok(EvalReport::Clips(ClipsReport {
                clips: clips.len(),
                overall: clip_figures(view(None)),
                by_recording_type: by_type,
                confusion,
                errors,
            }))
        }
        EvalInput::Scenes(scenes) => {
            let mut recall: BTreeMap<EarshotClass, BTreeMap<String, RecallAt>> = BTreeMap::new();
            let mut latencies: BTreeMap<EarshotClass, Vec<f64>> = BTreeMap::new();
            let mut false_alarms: BTreeMap<EarshotClass, u32> =
                ALARM_CLASSES.iter().map(|c| (*c, 0)).collect();
            for (i, scene) in scenes.iter().enumerate() {
                let report = analyzer.analyze(&scene.path, |_, _| {})?;
                let window = (scene.onset_s - SCENE_EARLY_S, scene.offset_s + SCENE_LATE_S);
                let mut first: Option<f64> = None;
                for d in report
                    .detections
                    .iter()
                    .filter(|d| ALARM_CLASSES.contains(&d.class))
                {
                    let overlaps = d.start_s <= window.1 && d.end_s >= window.0;
                    if d.class == scene.class && overlaps {
                        let latency = d.emitted_s - scene.onset_s;
                        first = Some(first.map_or(latency, |f: f64| f.min(latency)));
                    } else {
                        *false_alarms.entry(d.class).or_default() += 1;
                    }
                }
                let r = recall
                    .entry(scene.class)
                    .or_default()
                    .entry(format!("{:+}", scene.snr_db))
                    .or_default();
                r.events += 1;
                if let Some(l) = first {
                    r.detected += 1;
                    latencies.entry(scene.class).or_default().push(l);
                }
                progress(i + 1, total);
            }
            for per_snr in recall.values_mut() {
                for r in per_snr.values_mut() {
                    r.recall = ratio(r.detected, r.events);
                }
            }
            let median_latency_s = recall
                .keys()
                .map(|c| (*c, latencies.get_mut(c).and_then(|v| median(v))))
                .collect();
            Ok(EvalReport::Scenes(ScenesReport {
                scenes: scenes.len(),
                recall,
                median_latency_s,
                false_alarms,
            }))
        }
        EvalInput::Background(path) => {
            let report = analyzer.analyze(path, |_, _| {})?;
            progress(1, 1);
            let hours = report.summary.duration_s / 3600.0;
            let mut false_alarms: BTreeMap<EarshotClass, u32> =
                ALARM_CLASSES.iter().map(|c| (*c, 0)).collect();
            let mut at_s: BTreeMap<EarshotClass, Vec<f64>> = BTreeMap::new();
            for d in report
                .detections
                .iter()
                .filter(|d| ALARM_CLASSES.contains(&d.class))
            {
                *false_alarms.entry(d.class).or_default() += 1;
                at_s.entry(d.class).or_default().push(d.start_s);
            }
            let per_hour = |n: u32| if hours > 0.0 { n as f64 / hours } else { 0.0 };
            Ok(EvalReport::Background(BackgroundReport {
                file: report.file,
                hours,
                false_alarms_per_hour: false_alarms
                    .iter()
                    .map(|(c, n)| (*c, per_hour(*n)))
                    .collect(),
                total_per_hour: per_hour(false_alarms.values().sum()),
                false_alarms,
                at_s,
                patches: report.summary.patches,
                classified: report.summary.classified,
            }))
        }
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Writes a report as tables for people.
///
/// # Errors
/// Errors of `out`.
pub fn write_table(report: &EvalReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let pct = |x: f64| format!("{:5.1} %", 100.0 * x);
    let figures = |out: &mut dyn std::io::Write,
                   title: &str,
                   f: &BTreeMap<EarshotClass, ClassFigures>|
     -> std::io::Result<()> {
        writeln!(out, "{title}")?;
        writeln!(
            out,
            "  {:<12} {:>14} {:>8} {:>20} {:>8}",
            "class", "detected/pos.", "recall", "negatives flagged", "rate"
        )?;
        for (c, x) in f {
            writeln!(
                out,
                "  {:<12} {:>14} {:>8} {:>20} {:>8}",
                c.name(),
                format!("{}/{}", x.detected, x.positives),
                pct(x.recall),
                format!("{}/{}", x.false_positives, x.negatives),
                pct(x.false_positive_rate)
            )?;
        }
        Ok(())
    };
    match report {
        EvalReport::Clips(r) => {
            figures(out, &format!("All clips ({})", r.clips), &r.overall)?;
            for (group, f) in &r.by_recording_type {
                figures(out, &format!("Recording type: {group}"), f)?;
            }
            writeln!(out, "Confusion (rows: truth; columns: detected)")?;
            let cols = ["glass_break", "aggression", "gunshot", "none"];
            writeln!(
                out,
                "  {:<12} {:>12} {:>12} {:>12} {:>12}",
                "", cols[0], cols[1], cols[2], cols[3]
            )?;
            for (truth, row) in &r.confusion {
                write!(out, "  {truth:<12}")?;
                for c in cols {
                    write!(out, " {:>12}", row.get(c).copied().unwrap_or(0))?;
                }
                writeln!(out)?;
            }
        }
        EvalReport::Scenes(r) => {
            writeln!(out, "Scenes ({}): event recall by SNR", r.scenes)?;
            for (class, per_snr) in &r.recall {
                let cells: Vec<String> = per_snr
                    .iter()
                    .map(|(snr, x)| {
                        format!(
                            "{snr} dB: {}/{} ({})",
                            x.detected,
                            x.events,
                            pct(x.recall).trim()
                        )
                    })
                    .collect();
                let latency = r
                    .median_latency_s
                    .get(class)
                    .copied()
                    .flatten()
                    .map_or("–".to_owned(), |l| format!("{l:.2} s"));
                writeln!(
                    out,
                    "  {:<12} {}   median latency {latency}",
                    class.name(),
                    cells.join("  ")
                )?;
            }
            writeln!(
                out,
                "False alarms in scenes (detections matching no event):"
            )?;
            for (c, n) in &r.false_alarms {
                writeln!(out, "  {:<12} {n}", c.name())?;
            }
        }
        EvalReport::Background(r) => {
            writeln!(
                out,
                "Background {} ({:.2} h): false alarms",
                r.file, r.hours
            )?;
            for (c, n) in &r.false_alarms {
                writeln!(
                    out,
                    "  {:<12} {n:>4}  ({:.2} per hour)",
                    c.name(),
                    r.false_alarms_per_hour[c]
                )?;
            }
            writeln!(out, "  {:<12} {:>10.2} per hour", "total", r.total_per_hour)?;
            writeln!(
                out,
                "Patches classified: {} of {} ({:.1} %; the rest skipped by the cascade gate)",
                r.classified,
                r.patches,
                100.0 * r.classified as f64 / r.patches.max(1) as f64
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_recall_and_false_positives() {
        let g = [EarshotClass::GlassBreak];
        let none: [EarshotClass; 0] = [];
        let rows: Vec<(Option<EarshotClass>, &[EarshotClass])> = vec![
            (Some(EarshotClass::GlassBreak), &g),
            (Some(EarshotClass::GlassBreak), &none),
            (None, &g),
            (None, &none),
            (None, &none),
            (None, &none),
        ];
        let f = clip_figures(rows.iter().copied());
        let glass = &f[&EarshotClass::GlassBreak];
        assert_eq!((glass.positives, glass.detected), (2, 1));
        assert_eq!(glass.recall, 0.5);
        assert_eq!((glass.negatives, glass.false_positives), (4, 1));
        assert_eq!(glass.false_positive_rate, 0.25);
        assert_eq!(f[&EarshotClass::Gunshot].positives, 0);
    }

    #[test]
    fn lists_are_validated_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "file,class\na.wav,glass_break\nb.wav,cat\n").unwrap();
        let e = EvalInput::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("class 'cat'"), "{e}");
        std::fs::write(&p, "name,label\n").unwrap();
        let e = EvalInput::load(&p).unwrap_err().to_string();
        assert!(e.contains("file,class"), "{e}");
        std::fs::write(
            &p,
            "file,class,onset_s,offset_s,snr_db\ns.flac,aggression,2.0,1.0,3\n",
        )
        .unwrap();
        let e = EvalInput::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("onset"), "{e}");
        std::fs::write(
            &p,
            "file,class,onset_s,offset_s,snr_db\ns.flac,aggression,1.0,2.0,+3\n",
        )
        .unwrap();
        match EvalInput::load(&p).unwrap() {
            EvalInput::Scenes(s) => {
                assert_eq!(s[0].class, EarshotClass::Aggression);
                assert_eq!(s[0].path, dir.path().join("s.flac"));
            }
            other => panic!("{other:?}"),
        }
        let e = EvalInput::load(&dir.path().join("missing.flac"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.flac"), "{e}");
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_list_parser() {
        // A cheap deterministic fuzz: random bytes, and random byte edits of a valid list.
        let valid = b"file,class,onset_s,offset_s,snr_db\ns.flac,aggression,1.0,2.0,+3\n";
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for case in 0..20_000 {
            let bytes: Vec<u8> = if case % 2 == 0 {
                (0..next() % 200).map(|_| next() as u8).collect()
            } else {
                let mut v = valid.to_vec();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % v.len();
                    v[i] = next() as u8;
                }
                v
            };
            if let Err(e) = EvalInput::parse("fuzz.csv", &bytes, Path::new(".")) {
                assert!(e.to_string().starts_with("fuzz.csv"), "{e}");
            }
        }
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
