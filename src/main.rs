//! The `earshot` command.
//!
//! Exit codes: 0 success; 1 an error of Earshot's own (model, output); 2 bad input (a file
//! that cannot be read or decoded, a bad argument). With several files, every readable file is
//! still analysed and reported when another one fails.
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use earshot::analyze::{AnalyzeSettings, FileAnalyzer};
use earshot::classes::parse_class_value;
use earshot::classifier::Classifier;
use earshot::config::{Config, ConfigErrors, LogFormat, MqttConfig, WebhookConfig};
use earshot::detectors::DetectorConfig;
use earshot::eval::{self, EvalInput};
use earshot::level_events::{AbsoluteLoudness, LevelEventsConfig};
use earshot::output::{Format, ReportWriter};
use earshot::pipeline::{Relevel, Suppression};
use earshot_dsp::level::Calibration;
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
    /// Evaluate the detectors on labelled audio: a clip list (labels.csv), a scene list
    /// (scenes.csv) or a long background recording (an audio file).
    ///
    /// Clip lists give per-class recall, the share of negatives flagged, a confusion table and
    /// the split by recording type; scene lists give event recall by SNR and the latency from
    /// onset to the start event; a background recording gives false alarms per hour by class.
    Eval(EvalArgs),
    /// Listen continuously: capture audio from a device, a pipe or a file, and send events
    /// to JSON lines, MQTT and webhooks until stopped (SIGINT/SIGTERM) or the input ends.
    ///
    /// Settings come from --config (TOML; `earshot config default` prints one), then the
    /// flags below override them.
    Run(RunArgs),
    /// Check a configuration file, or print the commented default one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Installers' tools for the actions of [[rules]].
    #[command(subcommand)]
    Action(ActionCommand),
}

#[derive(Debug, Subcommand)]
enum ActionCommand {
    /// Fire a rule's actions once, now, in order (outputs, virtual inputs, clips), ignoring its
    /// trigger, schedule and cooldown; prints each action's outcome (exit 1 if any failed).
    Test {
        /// The rule's name.
        rule: String,
        /// Configuration file (TOML) with the rule and its [actions] backends.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Report every problem of a configuration file (exit 2 if there is any).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the commented default configuration.
    Default,
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Audio source: alsa:DEVICE, wav:PATH, stdin:s16le@48000[/CHANNELS] (or f32le),
    /// pipewire:NODE. Overrides input.source.
    #[arg(long, short, value_name = "SPEC")]
    input: Option<String>,

    /// Pace a file source at real time (input.realtime).
    #[arg(long)]
    realtime: bool,

    /// Device name in events and MQTT topics (device_id).
    #[arg(long, value_name = "ID")]
    device_id: Option<String>,

    /// Write events as JSON lines to this file, or `-` for standard output (adds a
    /// [[sinks.jsonl]]). Repeatable.
    #[arg(long, value_name = "PATH")]
    jsonl: Vec<String>,

    /// Publish events to this MQTT broker, HOST or HOST:PORT (sinks.mqtt.host/port).
    #[arg(long, value_name = "HOST[:PORT]")]
    mqtt: Option<String>,

    /// POST events to this URL (adds a [[sinks.webhook]]). Repeatable.
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,

    /// Per-class sensitivity 0 to 100, e.g. `glass_break=70` (detectors.<class>.sensitivity).
    /// Repeatable.
    #[arg(long = "sensitivity", value_name = "CLASS=0..100")]
    sensitivities: Vec<String>,

    /// dB SPL = dBFS + this (level.calibration_offset_db).
    #[arg(long, value_name = "DB", allow_negative_numbers = true)]
    calibration_offset: Option<f64>,

    /// Seconds between health events (health.interval_s).
    #[arg(long, value_name = "S")]
    health_interval: Option<f64>,

    /// ONNX model instead of the embedded YAMNet (model).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,

    /// Log format (log.format): auto is human on a terminal, JSON otherwise.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<earshot::config::LogFormat>,

    /// Log filter (log.level), e.g. `debug` or `earshot=debug,warn`.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,

    /// Serve the settings page, live view and JSON API on ADDRESS:PORT (http.listen), e.g.
    /// 127.0.0.1:8080. Beyond loopback it needs credentials in [http] of --config.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<String>,

    /// On an Axis device: settings from the app parameters (laid over --config, under the
    /// flags; changes apply while running) and events to the device's event system. Needs a
    /// build with the `device` feature (the ACAP package built with Axis's SDK).
    #[cfg(feature = "axsdk")]
    #[arg(long)]
    device: bool,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// labels.csv, scenes.csv (paths inside are relative to the list) or an audio file.
    #[arg(value_name = "LIST_OR_AUDIO")]
    input: PathBuf,

    /// Output format: table (people) or json (one object).
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    format: EvalFormat,

    #[command(flatten)]
    detection: DetectionArgs,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EvalFormat {
    /// Tables for people.
    Table,
    /// One JSON object.
    Json,
}

/// Options shared by `analyze` and `eval`: what the detectors and the front end do.
#[derive(Debug, clap::Args)]
struct DetectionArgs {
    /// Per-class sensitivity from 0 to 100 (50 = tuned default; every 50 points halve or
    /// double the evidence needed), e.g. `--sensitivity aggression=70`. Repeatable.
    #[arg(long = "sensitivity", value_name = "CLASS=0..100")]
    sensitivities: Vec<String>,

    /// Per-class on-threshold on the class evidence in (0, 1], overriding the sensitivity,
    /// e.g. `--threshold glass_break=0.4` (classes: glass_break, aggression, gunshot, speech).
    /// Repeatable.
    #[arg(long = "threshold", value_name = "CLASS=VALUE")]
    thresholds: Vec<String>,

    /// Do not re-level quiet patches before the classifier (see README, "Detectors").
    #[arg(long)]
    no_relevel: bool,

    /// Subtract this many times the background's mel spectrum (minimum statistics over 3 s)
    /// from each patch before the classifier; 0 turns it off.
    #[arg(long, value_name = "ALPHA", default_value_t = 0.0)]
    suppress: f64,

    /// Classify every patch: turn off the cascade gate, which skips patches too quiet for any
    /// enabled detector to start on (README, "Performance"). A --scores timeline always
    /// classifies every patch.
    #[arg(long)]
    no_gate: bool,

    /// Frames between patch starts (10 ms each; 48 = 0.48 s, YAMNet's reference hop).
    #[arg(long, default_value_t = 48, value_name = "FRAMES",
          value_parser = clap::value_parser!(u16).range(1..=96))]
    patch_hop_frames: u16,

    /// Raise `loud_noise` (absolute) when the level stays at or above this many dBFS for
    /// --loud-noise-min-s (off by default; the adaptive loud-noise detector is always on).
    #[arg(long, value_name = "DBFS", allow_negative_numbers = true)]
    loud_noise_dbfs: Option<f64>,

    /// Seconds the level must stay above --loud-noise-dbfs.
    #[arg(long, value_name = "S", default_value_t = 0.3)]
    loud_noise_min_s: f64,

    /// Seconds between SPL summaries (LAeq, LAFmax, LAFmin, LCpeak, momentary LUFS max).
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    spl_summary_s: f64,

    /// Calibration offset in dB: dB SPL = dBFS + offset. Play a 94 dB SPL 1 kHz calibrator,
    /// read its LAeq in dBFS, and pass 94 minus that reading.
    #[arg(long, value_name = "DB", allow_negative_numbers = true)]
    calibration_offset: Option<f64>,

    /// Use this ONNX model instead of the embedded YAMNet (same interface as
    /// yamnet_logmel.onnx: input [96, 64], outputs scores, logits, embedding).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
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

    /// Draw level, class evidence and detections over time into this picture (.svg or .png).
    /// With several input files, each file's name is added: OUT-<file stem>.svg.
    #[arg(long, value_name = "OUT.svg|OUT.png")]
    plot: Option<PathBuf>,

    /// How many AudioSet classes the --scores timeline lists per patch.
    #[arg(long, default_value_t = 3, value_name = "N")]
    top: usize,

    #[command(flatten)]
    detection: DetectionArgs,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

const EXIT_ERROR: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => {
            init_batch_logging();
            analyze(args)
        }
        Command::Eval(args) => {
            init_batch_logging();
            evaluate(args)
        }
        Command::Run(args) => run(args),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", earshot::config::DEFAULT_CONFIG_TOML);
            ExitCode::SUCCESS
        }
        Command::Action(ActionCommand::Test { rule, config }) => action_test(&rule, &config),
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}

/// Builds the classifier and the analysis settings, or says what is wrong (exit code, message).
fn setup(
    d: &DetectionArgs,
    timeline_top: Option<usize>,
    timeline_embeddings: bool,
) -> Result<FileAnalyzer, (u8, String)> {
    let bad = |m: String| (EXIT_BAD_INPUT, m);
    let mut detectors = DetectorConfig::default();
    for arg in &d.sensitivities {
        let (class, value) =
            parse_class_value(arg).map_err(|e| bad(format!("--sensitivity {e}")))?;
        let v: u8 = value.parse().ok().filter(|v| *v <= 100).ok_or_else(|| {
            bad(format!(
                "--sensitivity '{arg}': expected a whole number from 0 to 100"
            ))
        })?;
        detectors.class_mut(class).sensitivity = v;
    }
    for arg in &d.thresholds {
        let (class, value) = parse_class_value(arg).map_err(|e| bad(format!("--threshold {e}")))?;
        let v: f32 = value
            .parse()
            .ok()
            .filter(|v: &f32| *v > 0.0 && *v <= 1.0)
            .ok_or_else(|| {
                bad(format!(
                    "--threshold '{arg}': value '{value}' is not a number in (0, 1]"
                ))
            })?;
        detectors.class_mut(class).on_threshold = Some(v);
    }
    if let Some(o) = d.calibration_offset {
        if !o.is_finite() || o.abs() > 200.0 {
            return Err(bad(format!(
                "--calibration-offset {o}: expected a number of dB from -200 to 200"
            )));
        }
    }
    detectors.calibration_offset_db = d.calibration_offset;
    let classifier = match &d.model {
        Some(p) => Classifier::from_path(p).map_err(|e| bad(e.to_string()))?,
        None => Classifier::embedded().map_err(|e| (EXIT_ERROR, e.to_string()))?,
    };
    let level_events = LevelEventsConfig {
        loud_noise_absolute: d
            .loud_noise_dbfs
            .map(|t| AbsoluteLoudness::new(t, d.loud_noise_min_s)),
        spl_summary_interval_s: Some(d.spl_summary_s),
        calibration: d
            .calibration_offset
            .map(|offset_db| Calibration { offset_db }),
        ..LevelEventsConfig::default()
    };
    level_events.validate().map_err(|e| bad(e.to_string()))?;
    let settings = AnalyzeSettings {
        level_events,
        detectors,
        relevel: (!d.no_relevel).then(Relevel::default),
        suppression: (d.suppress > 0.0).then_some(Suppression {
            alpha: d.suppress,
            floor: 0.05,
        }),
        frontend: LogMelConfig {
            patch_hop_frames: d.patch_hop_frames as usize,
            ..LogMelConfig::default()
        },
        gate_slack_db: (!d.no_gate).then_some(0.0),
        timeline_top,
        timeline_embeddings,
        calibration_offset_db: d.calibration_offset,
    };
    Ok(FileAnalyzer::new(classifier, settings))
}

fn evaluate(args: EvalArgs) -> ExitCode {
    let input = match EvalInput::load(&args.input) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut analyzer = match setup(&args.detection, None, false) {
        Ok(a) => a,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(code);
        }
    };
    let bar = (!args.quiet && io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(input.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(short_name(&args.input));
        bar
    });
    let result = eval::run(&input, &mut analyzer, |done, _| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut out = io::stdout().lock();
    let written = match args.format {
        EvalFormat::Json => serde_json::to_writer(&mut out, &report)
            .map_err(io::Error::from)
            .and_then(|_| writeln!(out)),
        EvalFormat::Table => eval::write_table(&report, &mut out),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the report: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The picture's path for `input`: `out` itself for a single input, else `out` with
/// `-<input stem>` added before its extension.
fn plot_path(out: &Path, input: &Path, several: bool) -> PathBuf {
    if !several {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let input_stem = input
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}-{input_stem}.{ext}"))
}

fn short_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn analyze(args: AnalyzeArgs) -> ExitCode {
    let keep_timeline = args.scores || args.embeddings;
    let timeline_top = (keep_timeline || args.plot.is_some()).then_some(args.top);
    let mut analyzer = match setup(&args.detection, timeline_top, args.embeddings) {
        Ok(a) => a,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(code);
        }
    };
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
            Ok(mut report) => {
                if let Some(out) = &args.plot {
                    let target = plot_path(out, path, args.files.len() > 1);
                    if let Err(e) = report.write_plot(&target, &analyzer.settings().detectors) {
                        eprintln!("error: {e}");
                        code = code.max(EXIT_BAD_INPUT);
                    }
                }
                if !keep_timeline {
                    report.patches = None;
                }
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

/// The configuration of `earshot run`: the file (or the defaults), then the flags, validated.
fn run_config(args: &RunArgs) -> Result<Config, ConfigErrors> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    with_flags(config, args)
}

/// `config` with the command line's flags applied, validated.
fn with_flags(mut config: Config, args: &RunArgs) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let flag_error = |key: &str, value: &str, expected: &str| earshot::config::ConfigError {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    };
    if let Some(i) = &args.input {
        config.input.source = i.clone();
    }
    if args.realtime {
        config.input.realtime = true;
    }
    if let Some(d) = &args.device_id {
        config.device_id = d.clone();
    }
    for p in &args.jsonl {
        config.sinks.jsonl.push(earshot::config::JsonlConfig {
            path: p.clone(),
            ..Default::default()
        });
    }
    if let Some(m) = &args.mqtt {
        let c = config.sinks.mqtt.get_or_insert_with(MqttConfig::default);
        match m.rsplit_once(':') {
            Some((host, port)) if !host.contains(']') || host.ends_with(']') => {
                c.host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                match port.parse() {
                    Ok(p) => c.port = p,
                    Err(_) => errors.push(flag_error(
                        "--mqtt",
                        m,
                        "expected HOST or HOST:PORT with PORT 1 to 65535",
                    )),
                }
            }
            _ => c.host = m.clone(),
        }
    }
    for url in &args.webhook {
        config.sinks.webhook.push(WebhookConfig {
            url: url.clone(),
            ..WebhookConfig::default()
        });
    }
    for arg in &args.sensitivities {
        match parse_class_value(arg) {
            Ok((class, value)) => match value.parse::<u8>() {
                Ok(v) if v <= 100 => config.detectors.class_mut(class).sensitivity = Some(v.into()),
                _ => errors.push(flag_error("--sensitivity", arg, "expected CLASS=0..100")),
            },
            Err(e) => errors.push(flag_error("--sensitivity", arg, &e.to_string())),
        }
    }
    if let Some(o) = args.calibration_offset {
        config.level.calibration_offset_db = Some(o);
    }
    if let Some(h) = args.health_interval {
        config.health.interval_s = h;
    }
    if let Some(m) = &args.model {
        config.model = Some(m.clone());
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    if let Some(l) = &args.log_level {
        config.log.level = l.clone();
    }
    if let Some(h) = &args.http {
        config.http.listen = Some(h.clone());
    }
    errors.extend(config.validate());
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            file: args.config.as_ref().map_or_else(
                || "command line".to_owned(),
                |p| format!("{} with the command line", p.display()),
            ),
            errors,
        })
    }
}

/// Logging of the batch commands (`analyze`, `eval`): warnings and errors on stderr, or what
/// `RUST_LOG` asks for (e.g. `RUST_LOG=tract_linalg=info` shows the SIMD kernels tract picks).
fn init_batch_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn init_logging(config: &Config) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !config.log.level.contains("tract") {
        // tract announces its SIMD kernels at info; that is noise in a daemon's log.
        if let Ok(d) = "tract_linalg=warn".parse() {
            filter = filter.add_directive(d);
        }
    }
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// `earshot action test RULE --config FILE`.
fn action_test(rule: &str, file: &std::path::Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    init_logging(&config);
    let outcomes = match earshot::actions::dispatch::test_rule(&config, rule) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut failed = 0;
    for (command, result) in &outcomes {
        match result {
            Ok(()) => println!("ok      {command}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {command}: {e}");
            }
        }
    }
    println!(
        "rule {rule}: {} of {} actions done",
        outcomes.len() - failed,
        outcomes.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// glibc's mmap threshold for `earshot run`, in bytes: weight tensors above it get their own
/// mapping, so the holes the model load leaves are returned to the kernel (README, "Where the
/// memory goes"). 1 MiB keeps tract's per-patch activations (up to 0.4 MB) in the heap; 128 KiB
/// would mmap them on every patch (17 % slower, measured). On 32-bit targets glibc's own
/// dynamic ceiling, 512 KiB, is lower: that is kept.
const RUN_MMAP_THRESHOLD: usize = if earshot_sdk::memory::DYNAMIC_MMAP_THRESHOLD_MAX < 1 << 20 {
    earshot_sdk::memory::DYNAMIC_MMAP_THRESHOLD_MAX
} else {
    1 << 20
};

/// Sets [`RUN_MMAP_THRESHOLD`], unless `MALLOC_MMAP_THRESHOLD_` is set in the environment
/// (glibc has applied the user's value then).
fn fix_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        tracing::debug!("mmap threshold from MALLOC_MMAP_THRESHOLD_");
        return;
    }
    match earshot_sdk::memory::set_mmap_threshold(RUN_MMAP_THRESHOLD) {
        Ok(true) => tracing::debug!(bytes = RUN_MMAP_THRESHOLD, "mmap threshold fixed"),
        Ok(false) => tracing::debug!("not glibc: mmap threshold left to the allocator"),
        Err(e) => tracing::warn!(error = %e, "mmap threshold left dynamic"),
    }
}

/// After the model load: returns the heap's free pages (the load's temporaries) to the kernel
/// (README, "Where the memory goes").
fn trim_heap() {
    let trimmed = earshot_sdk::memory::trim_heap();
    tracing::debug!(trimmed, "heap trimmed after the model load");
}

fn run(args: RunArgs) -> ExitCode {
    let config = match run_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    init_logging(&config);
    fix_mmap_threshold();
    #[cfg(feature = "axsdk")]
    let (config, device) = if args.device {
        match start_device(&args) {
            Ok((device, config)) => (config, Some(device)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the device integration");
                return ExitCode::from(EXIT_ERROR);
            }
        }
    } else {
        (config, None)
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once (exit code 1).
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            tracing::error!(error = %e, "cannot install the signal handlers");
            return ExitCode::from(EXIT_ERROR);
        }
    }
    let mut classifier = match &config.model {
        Some(p) => match Classifier::from_path(p) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "model");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        None => match Classifier::embedded() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "embedded model");
                return ExitCode::from(EXIT_ERROR);
            }
        },
    };
    trim_heap();
    #[cfg(feature = "axsdk")]
    let writer = device.as_ref().map(|d| d.parameter_writer());
    #[cfg(not(feature = "axsdk"))]
    let writer: Option<()> = None;
    let web = match config.http.listen.is_some() {
        true => match start_web(&args, &config, writer) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the settings page");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        false => None,
    };
    // Each pass runs until the input ends, a signal, or a settings change (device parameters,
    // the settings page) that the running pipeline cannot take live; then the next pass starts
    // with it.
    let mut config = config;
    loop {
        let source = match earshot::source::open(&config.input.source, config.input.realtime) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the input");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        };
        #[allow(unused_mut)]
        let mut sinks = match earshot::sinks::spawn_from_config(&config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sinks");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        };
        let mut hooks = earshot::run::RunHooks::default();
        if let Some(w) = &web {
            match earshot::sinks::SinkHandle::spawn(Box::new(w.event_sink()), 1024) {
                Ok(h) => sinks.push(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the live-view sink");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
            w.set_current(config.clone());
            hooks.on_config = Some(w);
            hooks.updates = Some(w.updates());
            hooks.tests = Some(w.tests());
            hooks.live = Some(w.tap());
        }
        #[cfg(feature = "axsdk")]
        if let Some(d) = &device {
            match earshot::sinks::SinkHandle::spawn(
                Box::new(d.event_sink()),
                earshot::device::QUEUE,
            ) {
                Ok(h) => sinks.push(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the device event sink");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
            hooks.updates = Some(d.updates());
        }
        if sinks.is_empty() {
            tracing::warn!("no sink configured: events are only logged (add --jsonl -, --mqtt or a [sinks] section)");
        }
        let result =
            earshot::run::run_with(&config, &mut classifier, source, sinks, stop.clone(), hooks);
        match result {
            Ok(report) => match report.restart_with {
                Some(next) if !stop.load(std::sync::atomic::Ordering::Relaxed) => {
                    tracing::info!("restarting the pipeline with the new settings");
                    config = *next;
                }
                _ => return ExitCode::SUCCESS,
            },
            Err(e) => {
                tracing::error!(error = %e, "run failed");
                return ExitCode::from(EXIT_ERROR);
            }
        }
    }
}

/// The settings page: its store over `--config` (changes are written there; without
/// `--config`, they hold until the process ends), the flags laid over every change; with
/// `--device`, the app parameters.
fn start_web(
    args: &RunArgs,
    config: &Config,
    #[cfg(feature = "axsdk")] device: Option<earshot::device::ParameterWriter>,
    #[cfg(not(feature = "axsdk"))] _device: Option<()>,
) -> Result<earshot::web::WebServer, Box<dyn std::error::Error>> {
    use earshot::web::settings::SettingsStore;
    #[cfg(feature = "axsdk")]
    if let Some(w) = device {
        let store =
            SettingsStore::for_device(Box::new(move |changes| w.set(changes)), config.clone());
        return Ok(earshot::web::WebServer::start(&config.http, store)?);
    }
    let (file, text) = match &args.config {
        Some(p) => (
            Some(p.clone()),
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => (None, String::new()),
    };
    let flags = args.clone();
    let overlay = move |c: &mut Config| {
        if let Ok(with) = with_flags(c.clone(), &flags) {
            *c = with;
        }
    };
    let store = SettingsStore::new(file, &text, Box::new(overlay), config.clone())?;
    Ok(earshot::web::WebServer::start(&config.http, store)?)
}

/// `run --device`: the device thread, and the configuration from the app parameters laid
/// over `--config` and under the flags.
#[cfg(feature = "axsdk")]
fn start_device(
    args: &RunArgs,
) -> Result<(earshot::device::Device, Config), Box<dyn std::error::Error>> {
    let base_toml = match &args.config {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    let flags = args.clone();
    let overlay = move |c: &mut Config| {
        // The flags were validated with the file at start; re-applied over every parameter
        // change they keep precedence. A combination they make invalid is logged and the
        // parameters' configuration is used as is.
        match with_flags(c.clone(), &flags) {
            Ok(with) => *c = with,
            Err(e) => {
                tracing::warn!(error = %e, "command-line flags not applied over the app parameters")
            }
        }
    };
    let (device, config) = earshot::device::Device::start(earshot::device::DeviceOptions {
        app_name: earshot::device::APP_NAME.to_owned(),
        base_toml,
        overlay: Box::new(overlay),
    })?;
    Ok((device, config))
}
