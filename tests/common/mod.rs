//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod vapix_server;
pub mod web;

use std::path::PathBuf;

/// `../shared` beside the repository: the YAMNet mirror and the evaluation audio.
///
/// Tests that need it call this first. When it is missing they are skipped with a message on
/// a developer's machine, and fail under CI (`CI=true`), where `../shared` must be present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("eval/labels.csv").is_file() && dir.join("models/SHA256SUMS").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{} is missing: CI needs ../shared (models/ and eval/) beside the repository",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not found; this test needs ../shared (models/ and eval/) beside the repository",
        dir.display()
    );
    None
}

/// One row of `eval/labels.csv`.
#[derive(Debug, Clone)]
pub struct Clip {
    pub file: PathBuf,
    pub class: String,
    pub source: String,
    pub recording_type: String,
}

/// All rows of `eval/labels.csv`, with `file` resolved against `eval/`.
pub fn eval_clips(shared: &std::path::Path) -> Vec<Clip> {
    let eval = shared.join("eval");
    let mut r = csv::Reader::from_path(eval.join("labels.csv")).expect("labels.csv readable");
    let headers = r.headers().expect("labels.csv header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("labels.csv has no column {name}"))
    };
    let (f, c, s, t) = (
        col("file"),
        col("class"),
        col("source"),
        col("recording_type"),
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("labels.csv row");
            Clip {
                file: eval.join(&rec[f]),
                class: rec[c].to_owned(),
                source: rec[s].to_owned(),
                recording_type: rec[t].to_owned(),
            }
        })
        .collect()
}

/// Sample encodings [`write_wav`] can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    U8,
    S16,
    S24,
    S32,
    F32,
}

/// Writes a canonical RIFF/WAVE file: `samples` are interleaved frames in [-1, 1].
pub fn write_wav(
    path: &std::path::Path,
    rate: u32,
    channels: u16,
    format: WavFormat,
    samples: &[f32],
) {
    let (bits, tag): (u16, u16) = match format {
        WavFormat::U8 => (8, 1),
        WavFormat::S16 => (16, 1),
        WavFormat::S24 => (24, 1),
        WavFormat::S32 => (32, 1),
        WavFormat::F32 => (32, 3),
    };
    let mut data = Vec::new();
    for &x in samples {
        let x = x.clamp(-1.0, 1.0) as f64;
        match format {
            WavFormat::U8 => data.push(((x * 128.0).round() as i32 + 128).clamp(0, 255) as u8),
            WavFormat::S16 => {
                data.extend(((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
            }
            WavFormat::S24 => {
                let v = (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
                data.extend(&v.to_le_bytes()[..3]);
            }
            WavFormat::S32 => data.extend(
                ((x * 2_147_483_648.0)
                    .round()
                    .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32)
                    .to_le_bytes(),
            ),
            WavFormat::F32 => data.extend((x as f32).to_le_bytes()),
        }
    }
    let block_align = channels as u32 * bits as u32 / 8;
    let mut f = Vec::new();
    f.extend(b"RIFF");
    f.extend((36 + data.len() as u32).to_le_bytes());
    f.extend(b"WAVEfmt ");
    f.extend(16u32.to_le_bytes());
    f.extend(tag.to_le_bytes());
    f.extend(channels.to_le_bytes());
    f.extend(rate.to_le_bytes());
    f.extend((rate * block_align).to_le_bytes());
    f.extend((block_align as u16).to_le_bytes());
    f.extend(bits.to_le_bytes());
    f.extend(b"data");
    f.extend((data.len() as u32).to_le_bytes());
    f.extend(data);
    std::fs::write(path, f).expect("write test WAV");
}

/// Decodes a 16-bit PCM mono WAV of `../shared/eval` to f32 (through Earshot's own reader).
pub fn read_clip(path: &std::path::Path) -> (u32, Vec<f32>) {
    let mut r = earshot::audio_file::AudioFileReader::open(path).expect("clip decodes");
    let rate = r.info().sample_rate_hz;
    let mut all = Vec::new();
    while r.read_mono(&mut all).expect("clip decodes") > 0 {}
    (rate, all)
}

/// Runs the `earshot` binary with `args`; returns (exit code, stdout, stderr).
pub fn earshot(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(args)
        .output()
        .expect("earshot runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `earshot analyze --format json FILES…`: exit code, one parsed report per line, stderr.
pub fn analyze_json(
    files: &[std::path::PathBuf],
    extra: &[&str],
) -> (i32, Vec<serde_json::Value>, String) {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["analyze".as_ref(), "--format".as_ref(), "json".as_ref()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    args.extend(files.iter().map(|f| f.as_os_str()));
    let (code, out, err) = earshot(&args);
    let reports = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    (code, reports, err)
}

/// The classes detected in one report.
pub fn detected(report: &serde_json::Value) -> std::collections::BTreeSet<String> {
    report["detections"]
        .as_array()
        .expect("detections array")
        .iter()
        .map(|d| d["class"].as_str().expect("class").to_owned())
        .collect()
}

/// `values` plus uniform noise in ±`amplitude` (a fixed LCG seeded by `seed`, advanced per
/// value): the float-noise control of the classifier comparisons.
pub fn with_float_noise(values: &[f32], amplitude: f32, seed: &mut u32) -> Vec<f32> {
    values
        .iter()
        .map(|v| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            v + ((*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * amplitude
        })
        .collect()
}
