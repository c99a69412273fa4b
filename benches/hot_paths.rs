//! criterion benchmarks of Earshot's hot paths, on real audio from
//! `../shared/eval/background/background_60min.flac` (needs `../shared` beside the repository).
//!
//! ```text
//! cargo bench --bench hot_paths            # all; prints a real-time-factor table at the end
//! cargo bench --bench hot_paths -- frontend  # a group
//! ```
//!
//! | benchmark | one iteration |
//! |---|---|
//! | `frontend/hop_48k` | one 10 ms hop at 48 kHz: resampler → 16 kHz, STFT, log-mel (YAMNet front end) |
//! | `frontend/hop_16k` | one 10 ms hop at 16 kHz: STFT and log-mel only |
//! | `level/10ms_48k` | IEC 61672-1 A/C level meter and BS.1770-4 loudness meter on 10 ms at 48 kHz |
//! | `classifier/patch` | the embedded YAMNet on one [96, 64] log-mel patch |
//! | `pipeline/minute_ungated` | `Analyzer` on one minute of the background recording, every patch classified |
//! | `pipeline/minute_gated` | the same minute with the cascade gate of the default detectors |
//!
//! The real-time factor printed at the end is audio seconds per second of one core: the
//! iteration's audio duration divided by criterion's mean time (from
//! `target/criterion/<group>/<bench>/new/estimates.json`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use earshot::audio_file::AudioFileReader;
use earshot::classifier::Classifier;
use earshot::detectors::DetectorConfig;
use earshot::pipeline::{Analyzer, Relevel};
use earshot_dsp::level::LevelMeter;
use earshot_dsp::logmel::{LogMelConfig, LogMelFrontEnd};
use earshot_dsp::loudness::LoudnessMeter;
use earshot_dsp::resample::StreamResampler;

/// Start of the benchmarked minute in the background recording, seconds: read speech and room
/// tone (`../shared/eval/background/segments.csv`), a quiet place with something happening.
const MINUTE_START_S: usize = 300;

fn background() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/eval/background/background_60min.flac");
    assert!(
        path.is_file(),
        "{} is missing: these benchmarks need ../shared (the evaluation audio) beside the repository",
        path.display()
    );
    path
}

/// `seconds` of the background recording from `start_s`, mono at its own rate (16 kHz).
fn read_background(start_s: usize, seconds: usize) -> (u32, Vec<f32>) {
    let mut r = AudioFileReader::open(&background()).expect("background decodes");
    let rate = r.info().sample_rate_hz;
    let (from, to) = (start_s * rate as usize, (start_s + seconds) * rate as usize);
    let mut all = Vec::with_capacity(to);
    while all.len() < to && r.read_mono(&mut all).expect("background decodes") > 0 {}
    assert!(all.len() >= to, "background shorter than {to} samples");
    (rate, all[from..to].to_vec())
}

/// The same audio at 48 kHz (a camera's capture rate), through Earshot's own resampler.
fn at_48k(rate: u32, audio: &[f32]) -> Vec<f32> {
    let mut up = StreamResampler::new(rate, 48_000).expect("resampler");
    let mut out = Vec::with_capacity(audio.len() * 48_000 / rate as usize + 1024);
    up.push(audio, |s| out.extend_from_slice(s));
    up.finish(|s| out.extend_from_slice(s));
    out
}

fn frontend(c: &mut Criterion) {
    let (rate, audio16) = read_background(MINUTE_START_S, 10);
    let audio48 = at_48k(rate, &audio16);
    let mut g = c.benchmark_group("frontend");
    g.throughput(Throughput::Elements(1));
    let mut resampler = StreamResampler::new(48_000, 16_000).unwrap();
    let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
    let mut hops = audio48.chunks_exact(480).cycle();
    let mut patches = 0u64;
    g.bench_function(BenchmarkId::new("hop_48k", "10ms"), |b| {
        b.iter(|| {
            let hop = hops.next().unwrap();
            resampler.push(black_box(hop), |s| fe.push(s, |p| patches += p.index & 1));
        })
    });
    let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
    let mut hops = audio16.chunks_exact(160).cycle();
    g.bench_function(BenchmarkId::new("hop_16k", "10ms"), |b| {
        b.iter(|| fe.push(black_box(hops.next().unwrap()), |p| patches += p.index & 1))
    });
    g.finish();
    black_box(patches);
}

fn level(c: &mut Criterion) {
    let (rate, audio16) = read_background(MINUTE_START_S, 10);
    let audio48 = at_48k(rate, &audio16);
    let mut g = c.benchmark_group("level");
    g.throughput(Throughput::Elements(1));
    let mut meter = LevelMeter::new(48_000, 480).unwrap();
    let mut loudness = LoudnessMeter::new(1, 48_000).unwrap();
    let mut hops = audio48.chunks_exact(480).cycle();
    let mut energy = 0.0;
    g.bench_function(BenchmarkId::new("10ms_48k", "A+C+LUFS"), |b| {
        b.iter(|| {
            let hop = black_box(hops.next().unwrap());
            meter.process(hop, |blk| energy += blk.a_energy);
            loudness.process_interleaved_f32(hop).unwrap();
        })
    });
    g.finish();
    black_box(energy);
}

/// Real log-mel patches of the benchmarked minute, as the classifier receives them.
fn real_patches(rate: u32, audio: &[f32]) -> Vec<Vec<f32>> {
    let mut resampler = StreamResampler::new(rate, 16_000).unwrap();
    let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
    let mut out = Vec::new();
    resampler.push(audio, |s| fe.push(s, |p| out.push(p.log_mel.to_vec())));
    out
}

fn classifier(c: &mut Criterion) {
    let (rate, audio) = read_background(MINUTE_START_S, 20);
    let patches = real_patches(rate, &audio);
    let mut model = Classifier::embedded().expect("embedded model");
    let mut g = c.benchmark_group("classifier");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(10));
    let mut next = patches.iter().cycle();
    g.bench_function(BenchmarkId::new("patch", "yamnet"), |b| {
        b.iter(|| model.classify(black_box(next.next().unwrap())).unwrap())
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let (rate, audio) = read_background(MINUTE_START_S, 60);
    let mut model = Classifier::embedded().expect("embedded model");
    let gate = DetectorConfig::default().cascade_gate(0.0).unwrap();
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(1));
    for (name, gate) in [("minute_ungated", None), ("minute_gated", gate)] {
        let mut analyzer = Analyzer::new(rate, LogMelConfig::default())
            .and_then(|a| a.with_relevel(Some(Relevel::default())))
            .unwrap()
            .with_gate(gate);
        let mut classified = 0u64;
        g.bench_function(BenchmarkId::new(name, "bg300s"), |b| {
            b.iter(|| {
                for chunk in audio.chunks(rate as usize / 10) {
                    analyzer.push(&mut model, chunk, &mut |_| {}).unwrap();
                }
                let s = analyzer.finish(&mut model, &mut |_| {}).unwrap();
                classified = s.classified;
                s.patches
            })
        });
        eprintln!("{name}: {classified} patches classified of the minute");
    }
    g.finish();
}

/// Audio seconds per iteration of each benchmark, for the real-time factor.
const AUDIO_S: &[(&str, &str, f64)] = &[
    ("frontend", "hop_48k/10ms", 0.01),
    ("frontend", "hop_16k/10ms", 0.01),
    ("level", "10ms_48k/A+C+LUFS", 0.01),
    ("classifier", "patch/yamnet", 0.48),
    ("pipeline", "minute_ungated/bg300s", 60.0),
    ("pipeline", "minute_gated/bg300s", 60.0),
];

/// Prints the real-time factor of every benchmark that ran, from criterion's estimates.
fn report_real_time_factors() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("criterion"))
        .unwrap_or(root);
    println!("\nreal-time factor (audio seconds per second of one core; classifier: per 0.48 s patch hop)");
    for (group, id, audio_s) in AUDIO_S {
        let file = root.join(group).join(id).join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("criterion estimates");
        let mean_ns = v["mean"]["point_estimate"].as_f64().expect("mean estimate");
        println!(
            "  {group}/{id:<40} {:>12.0} ns  {:>10.0}× real time",
            mean_ns,
            audio_s * 1e9 / mean_ns
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    frontend(&mut c);
    level(&mut c);
    classifier(&mut c);
    pipeline(&mut c);
    c.final_summary();
    report_real_time_factors();
}
