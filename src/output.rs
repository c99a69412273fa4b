//! Writers for `analyze` reports: a human table, JSON lines, CSV.

use std::io::{self, Write};

use crate::analyze::FileReport;
use crate::classes::EarshotClass;
use crate::level_events::LevelEvent;

/// Output format of `analyze` (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table per file, for people.
    Table,
    /// One JSON object per file per line (the schema in `README.md`).
    Json,
    /// CSV: one row per detection, or with `--scores` one row per patch.
    Csv,
}

/// Writes reports in one format. CSV writes its header once, before the first row.
pub struct ReportWriter<W: Write> {
    format: Format,
    out: W,
    csv_header_done: bool,
}

/// The serde name of a unit enum value (`adaptive`, `silence`, …).
fn tag(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Formats a level in dBFS, adding dB SPL when calibrated.
fn level(dbfs: f64, offset: Option<f64>) -> String {
    match offset {
        Some(o) => format!("{dbfs:.1} dBFS ({:.1} dB SPL)", dbfs + o),
        None => format!("{dbfs:.1} dBFS"),
    }
}

impl<W: Write> ReportWriter<W> {
    /// A writer of `format` to `out`.
    pub fn new(format: Format, out: W) -> Self {
        Self {
            format,
            out,
            csv_header_done: false,
        }
    }

    /// Writes one file's report.
    ///
    /// # Errors
    /// The I/O error of `out` (e.g. a closed pipe).
    pub fn write(&mut self, r: &FileReport) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, r)?;
                writeln!(self.out)?;
            }
            Format::Table => self.table(r)?,
            Format::Csv => self.csv(r)?,
        }
        self.out.flush()
    }

    fn table(&mut self, r: &FileReport) -> io::Result<()> {
        let o = &mut self.out;
        let cal = r.calibration_offset_db;
        let s = &r.summary;
        writeln!(
            o,
            "{}  ({} Hz, {} ch, {}, {:.2} s{})",
            r.file,
            r.sample_rate_hz,
            r.channels,
            r.codec,
            s.duration_s,
            if r.truncated { ", TRUNCATED" } else { "" }
        )?;
        let lufs = s
            .integrated_lufs
            .map_or("-".into(), |l| format!("{l:.1} LUFS"));
        writeln!(
            o,
            "  LAeq {}   LAFmax {}   LCpeak {}   loudness {}",
            level(s.level.laeq_dbfs, cal),
            level(s.level.lafmax_dbfs, cal),
            level(s.level.lcpeak_dbfs, cal),
            lufs
        )?;
        if r.detections.is_empty() {
            writeln!(o, "  no detections")?;
        } else {
            writeln!(
                o,
                "  {:<12} {:>9} {:>9} {:>6} {:>10}  LAFmax / LAeq",
                "class", "start s", "end s", "score", "known at s"
            )?;
            for d in &r.detections {
                writeln!(
                    o,
                    "  {:<12} {:>9.2} {:>9.2} {:>6.2} {:>10.2}  {} / {}",
                    d.class.name(),
                    d.start_s,
                    d.end_s,
                    d.peak_score,
                    d.emitted_s,
                    level(d.lafmax_dbfs, cal),
                    level(d.laeq_dbfs, cal)
                )?;
            }
        }
        let mut summaries = 0;
        for e in &r.level_events {
            match e {
                LevelEvent::LoudNoiseStop {
                    mode,
                    start_s,
                    end_s,
                    lafmax_dbfs,
                    laeq_dbfs,
                    ..
                } => writeln!(
                    o,
                    "  loud noise ({}) {start_s:.2}–{end_s:.2} s   LAFmax {}   LAeq {}",
                    tag(mode),
                    level(*lafmax_dbfs, cal),
                    level(*laeq_dbfs, cal)
                )?,
                LevelEvent::AudioInputLost {
                    reason,
                    fault_start_s,
                    time_s,
                    ..
                } => writeln!(
                    o,
                    "  audio input lost at {time_s:.2} s ({}, since {fault_start_s:.2} s)",
                    tag(reason)
                )?,
                LevelEvent::AudioInputRestored { time_s, .. } => {
                    writeln!(o, "  audio input restored at {time_s:.2} s")?
                }
                LevelEvent::SplSummary { .. } => summaries += 1,
                LevelEvent::LoudNoiseStart { .. } => {}
            }
        }
        if summaries > 0 {
            writeln!(o, "  {summaries} SPL summaries (in --format json)")?;
        }
        if let Some(patches) = &r.patches {
            writeln!(
                o,
                "  {:>8} {:>8} {:>8}  {:<5} {:<5} {:<5} {:<5}  top AudioSet classes",
                "start s", "LAFmax", "LAeq", "glass", "aggr", "gun", "speech"
            )?;
            for p in patches {
                let c = |k: EarshotClass| p.classes.get(&k).copied().unwrap_or(0.0);
                let top: Vec<String> = p
                    .top
                    .iter()
                    .map(|t| format!("{} {:.2}", t.name, t.score))
                    .collect();
                writeln!(
                    o,
                    "  {:>8.2} {:>8.1} {:>8.1}  {:<5.2} {:<5.2} {:<5.2} {:<5.2}  {}",
                    p.start_s,
                    p.level.lafmax_dbfs,
                    p.level.laeq_dbfs,
                    c(EarshotClass::GlassBreak),
                    c(EarshotClass::Aggression),
                    c(EarshotClass::Gunshot),
                    c(EarshotClass::Speech),
                    top.join(", ")
                )?;
            }
        }
        writeln!(o)
    }

    fn csv(&mut self, r: &FileReport) -> io::Result<()> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(&mut self.out);
        let header = !self.csv_header_done;
        self.csv_header_done = true;
        let f = |v: f64| format!("{v:.3}");
        if let Some(patches) = &r.patches {
            if header {
                let mut h = vec![
                    "file",
                    "patch",
                    "start_s",
                    "end_s",
                    "laeq_dbfs",
                    "lafmax_dbfs",
                    "lafmin_dbfs",
                    "lcpeak_dbfs",
                ];
                h.extend(EarshotClass::ALL.iter().map(|c| c.name()));
                h.extend(["top_class", "top_score"]);
                w.write_record(&h)?;
            }
            for p in patches {
                let mut row = vec![
                    r.file.clone(),
                    p.index.to_string(),
                    f(p.start_s),
                    f(p.end_s),
                    f(p.level.laeq_dbfs),
                    f(p.level.lafmax_dbfs),
                    f(p.level.lafmin_dbfs),
                    f(p.level.lcpeak_dbfs),
                ];
                row.extend(
                    EarshotClass::ALL
                        .iter()
                        .map(|c| format!("{:.4}", p.classes.get(c).copied().unwrap_or(0.0))),
                );
                let top = p.top.first();
                row.push(top.map_or(String::new(), |t| t.name.to_owned()));
                row.push(top.map_or(String::new(), |t| format!("{:.4}", t.score)));
                w.write_record(&row)?;
            }
        } else {
            if header {
                w.write_record([
                    "file",
                    "class",
                    "start_sample",
                    "end_sample",
                    "start_s",
                    "end_s",
                    "emitted_s",
                    "peak_score",
                    "lafmax_dbfs",
                    "laeq_dbfs",
                ])?;
            }
            for d in &r.detections {
                w.write_record([
                    r.file.clone(),
                    d.class.name().to_owned(),
                    d.start_sample.to_string(),
                    d.end_sample.to_string(),
                    f(d.start_s),
                    f(d.end_s),
                    f(d.emitted_s),
                    format!("{:.4}", d.peak_score),
                    f(d.lafmax_dbfs),
                    f(d.laeq_dbfs),
                ])?;
            }
        }
        w.flush()
    }
}
