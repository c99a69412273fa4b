//! The `earshot` command.
//!
//! Exit codes: 0 success; 1 an error of Earshot's own (model, output); 2 bad input (a file
//! that cannot be read or decoded, a bad argument). With several files, every readable file is
//! still analysed and reported when another one fails.
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use earshot::analyze::{AnalyzeSettings, FileAnalyzer};
use earshot::classes::Thresholds;
use earshot::classifier::Classifier;
use earshot::output::{Format, ReportWriter};
use earshot_dsp::logmel::LogMelConfig;
use indicatif::{ProgressBar, ProgressStyle};

/// Earshot: hears glass breaking, aggression and gunshots, and measures sound levels.
#[derive(Debug, Parser)]
#[command(name = "earshot", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse audio files: what was heard, when, and how loud.
    ///
    /// Reads WAV (8/16/24/32-bit PCM, 32/64-bit float, any channel count and rate from 8 to
    /// 192 kHz), FLAC, Ogg Vorbis and MP3. Channels are averaged to mono.
    Analyze(AnalyzeArgs),
}

#[derive(Debug, clap::Args)]
struct AnalyzeArgs {
    /// Audio files to analyse.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Output format: table (people), json (one object per file per line), csv.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Add a per-patch timeline (every 0.48 s): level, Earshot class scores and the top
    /// AudioSet classes.
    #[arg(long)]
    scores: bool,

    /// Add YAMNet's 1024-d embedding to every patch of the timeline (implies --scores);
    /// for training and inspecting classifier heads.
    #[arg(long)]
    embeddings: bool,

    /// How many AudioSet classes the --scores timeline lists per patch.
    #[arg(long, default_value_t = 3, value_name = "N")]
    top: usize,

    /// Per-class threshold on the class score, e.g. `--threshold glass_break=0.4`
    /// (classes: glass_break, aggression, gunshot, speech). Repeatable.
    #[arg(long = "threshold", value_name = "CLASS=VALUE")]
    thresholds: Vec<String>,

    /// Frames between patch starts (10 ms each; 48 = 0.48 s, YAMNet's reference hop).
    #[arg(long, default_value_t = 48, value_name = "FRAMES",
          value_parser = clap::value_parser!(u16).range(1..=96))]
    patch_hop_frames: u16,

    /// Calibration offset in dB: dB SPL = dBFS + offset. Play a 94 dB SPL 1 kHz calibrator,
    /// read its LAeq in dBFS, and pass 94 minus that reading.
    #[arg(long, value_name = "DB", allow_negative_numbers = true)]
    calibration_offset: Option<f64>,

    /// Use this ONNX model instead of the embedded YAMNet (same interface as
    /// yamnet_logmel.onnx: input [96, 64], outputs scores, logits, embedding).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

const EXIT_ERROR: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze(args),
    }
}

fn analyze(args: AnalyzeArgs) -> ExitCode {
    let mut thresholds = Thresholds::default();
    for t in &args.thresholds {
        if let Err(e) = thresholds.set_from_arg(t) {
            eprintln!("error: --threshold: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    if let Some(o) = args.calibration_offset {
        if !o.is_finite() || o.abs() > 200.0 {
            eprintln!("error: --calibration-offset {o}: expected a number of dB from -200 to 200");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    let classifier = match &args.model {
        Some(p) => Classifier::from_path(p),
        None => Classifier::embedded(),
    };
    let classifier = match classifier {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(if args.model.is_some() {
                EXIT_BAD_INPUT
            } else {
                EXIT_ERROR
            });
        }
    };
    let settings = AnalyzeSettings {
        thresholds,
        frontend: LogMelConfig {
            patch_hop_frames: args.patch_hop_frames as usize,
            ..LogMelConfig::default()
        },
        timeline_top: (args.scores || args.embeddings).then_some(args.top),
        timeline_embeddings: args.embeddings,
        calibration_offset_db: args.calibration_offset,
    };
    let mut analyzer = FileAnalyzer::new(classifier, settings);
    let mut writer = ReportWriter::new(args.format, io::stdout().lock());
    let show_progress = !args.quiet && io::stderr().is_terminal();
    let mut code = 0u8;
    for path in &args.files {
        let bar = show_progress.then(|| {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {percent}% ({eta} left)")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(path.display().to_string());
            bar
        });
        let result = analyzer.analyze(path, |done, total| {
            if let (Some(bar), Some(total)) = (&bar, total) {
                // Only long inputs get a bar: more than a minute at 16 kHz.
                if total > 16_000 * 60 && bar.is_hidden() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.set_length(total);
                }
                bar.set_position(done.min(total));
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(report) => {
                if report.truncated {
                    eprintln!(
                        "warning: {}: the file ends before its header says; analysed the {:.2} s that are there",
                        report.file, report.summary.duration_s
                    );
                }
                if let Err(e) = writer.write(&report) {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return ExitCode::from(code);
                    }
                    eprintln!("error: writing the report: {e}");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                let this = if e.is_bad_input() {
                    EXIT_BAD_INPUT
                } else {
                    EXIT_ERROR
                };
                code = code.max(this);
            }
        }
    }
    let _ = io::stdout().flush();
    ExitCode::from(code)
}
