//! `earshot run --input alsa:DEVICE` without a sound card: an ALSA PCM defined in a test
//! `asoundrc` (alsa-lib's `file` plugin over the `null` PCM) reads a real clip of
//! `../shared/eval`, and the run must report the same detections as `analyze` on that clip.
//!
//! How the `file` plugin behaves for capture (alsa-lib 1.2.8), and what the test does about it:
//! - the `null` slave does not pace: a regular `infile` is read far faster than real time.
//!   The `infile` is therefore a FIFO that the test writes at real time, like a microphone;
//! - a short read of `infile` is padded (stale or zeroed data), not waited for: the test
//!   writes whole periods (480 frames = 10 ms at 48 kHz, what the source negotiates, checked
//!   in its log), each write atomic (≤ `PIPE_BUF`), so every read of a period gets a whole one;
//! - past the end of `infile` the plugin keeps returning full periods it did not write: the
//!   end is invisible, so the test keeps writing silence after the clip and stops the run with
//!   SIGINT, as an operator would.
//!
//! The clip is converted once with sox to a 48 kHz S16 mono WAV with 2 s of silence after it
//! (so detections close before the file ends), and the raw frames written into the FIFO are
//! that WAV's data: both paths see the same samples.
#![cfg(feature = "alsa")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::analyze_json;

/// Frames per period the source negotiates at 48 kHz (10 ms), and so per FIFO write.
const PERIOD_FRAMES: usize = 480;
const RATE_HZ: u32 = 48_000;
/// Silence after each clip in the converted WAV, s.
const PAD_S: f64 = 2.0;
/// One patch hop of the classifier, s: detections start and end on patch boundaries, so two
/// paths that feed the same samples in different block sizes may differ by at most one hop
/// where a block boundary moves a patch (and the run's input goes on past the file's end, where
/// `analyze` closes what is still open at end of file).
const HOP_S: f64 = 0.48;

/// `../shared/eval`, or a clear failure.
fn eval_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    assert!(
        dir.join("labels.csv").is_file(),
        "{} is missing: this test needs ../shared/eval (the evaluation audio) beside the repository",
        dir.display()
    );
    dir
}

fn tool(name: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Converts `clip` to a 48 kHz S16 mono WAV with [`PAD_S`] of silence after it; returns the
/// WAV and its raw S16 frames.
fn convert(clip: &Path, dir: &Path) -> (PathBuf, Vec<u8>) {
    let wav = dir.join(format!(
        "{}.48k.wav",
        clip.file_stem().unwrap().to_string_lossy()
    ));
    let pad = PAD_S.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        clip.as_os_str(),
        "-e".as_ref(),
        "signed".as_ref(),
        "-b".as_ref(),
        "16".as_ref(),
        "-c".as_ref(),
        "1".as_ref(),
        "-r".as_ref(),
        "48000".as_ref(),
        wav.as_os_str(),
        "pad".as_ref(),
        "0".as_ref(),
        pad.as_ref(),
    ];
    tool("sox", &args);
    let raw = dir.join("clip.raw");
    tool(
        "sox",
        &[
            wav.as_os_str(),
            "-t".as_ref(),
            "raw".as_ref(),
            raw.as_os_str(),
        ],
    );
    let bytes = std::fs::read(&raw).unwrap();
    assert!(!bytes.is_empty() && bytes.len() % 2 == 0);
    (wav, bytes)
}

/// Writes `.asoundrc` into `home`: PCM `earshot_test` captures from the FIFO `fifo`.
fn write_asoundrc(home: &Path, fifo: &Path) {
    let rc = format!(
        "pcm.earshot_test {{\n    type file\n    slave.pcm \"null\"\n    file \"/dev/null\"\n    \
         infile \"{}\"\n    format \"raw\"\n}}\n",
        fifo.display()
    );
    std::fs::write(home.join(".asoundrc"), rc).unwrap();
}

/// Writes `raw` into `fifo` one period at a time at real time (after a 50 ms lead), then
/// silence until `stop` is set or the reader goes away. Returns when done; `clip_done` is set
/// once `raw` is written.
fn feed(fifo: PathBuf, raw: Vec<u8>, clip_done: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    // Opening blocks until earshot opens the PCM (the plugin opens its infile then).
    let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
        return;
    };
    let period_bytes = PERIOD_FRAMES * 2;
    let silence = vec![0u8; period_bytes];
    let start = Instant::now();
    let lead = Duration::from_millis(50);
    let mut chunks = raw.chunks(period_bytes);
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let due = start + Duration::from_secs_f64(i as f64 * PERIOD_FRAMES as f64 / RATE_HZ as f64);
        let now = Instant::now();
        if due > now + lead {
            std::thread::sleep(due - now - lead);
        }
        let chunk = match chunks.next() {
            Some(c) if c.len() == period_bytes => c,
            Some(c) => {
                // The last partial period, completed with silence: writes stay whole periods.
                let mut last = silence.clone();
                last[..c.len()].copy_from_slice(c);
                if f.write_all(&last).is_err() {
                    return;
                }
                clip_done.store(true, Ordering::Release);
                continue;
            }
            None => {
                clip_done.store(true, Ordering::Release);
                &silence[..]
            }
        };
        if f.write_all(chunk).is_err() {
            return;
        }
    }
}

/// What one `earshot run` through the test PCM reported.
struct RunOutput {
    detections: Vec<(String, f64, f64)>,
    health: serde_json::Value,
    negotiated: serde_json::Value,
    stderr: String,
}

/// Runs `earshot run --input alsa:earshot_test` on `raw` fed through a FIFO; stops it with
/// SIGINT 1 s after the clip (with its pad) was written.
fn run_through_alsa(dir: &Path, raw: Vec<u8>) -> RunOutput {
    let fifo = dir.join("capture.fifo");
    tool("mkfifo", &[fifo.as_os_str()]);
    write_asoundrc(dir, &fifo);
    let jsonl = dir.join("events.jsonl");
    // A 10 s ring: a busy test machine must not drop frames (overruns are asserted to be 0).
    let config = dir.join("earshot.toml");
    std::fs::write(&config, "[input]\nring_ms = 10000\n").unwrap();
    let clip_s = raw.len() as f64 / 2.0 / RATE_HZ as f64;

    let clip_done = Arc::new(AtomicBool::new(false));
    let stop_feed = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (fifo, clip_done, stop_feed) = (fifo.clone(), clip_done.clone(), stop_feed.clone());
        std::thread::spawn(move || feed(fifo, raw, clip_done, stop_feed))
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args([
            "run",
            "--input",
            "alsa:earshot_test",
            "--log-format",
            "json",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--jsonl")
        .arg(&jsonl)
        .env("HOME", dir)
        .env_remove("ALSA_CONFIG_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("earshot runs");
    let stderr_reader = {
        let mut e = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    };

    // The clip takes clip_s of real time; give model loading and start-up 60 s on top.
    let deadline = Instant::now() + Duration::from_secs_f64(clip_s + 60.0);
    let mut clip_done_at: Option<Instant> = None;
    let mut signalled = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if clip_done.load(Ordering::Acquire) {
            let at = *clip_done_at.get_or_insert_with(Instant::now);
            if !signalled && at.elapsed() > Duration::from_secs(1) {
                let ok = Command::new("kill")
                    .arg("-INT")
                    .arg(child.id().to_string())
                    .status()
                    .expect("kill runs")
                    .success();
                assert!(ok, "kill -INT {} failed", child.id());
                signalled = true;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            stop_feed.store(true, Ordering::Relaxed);
            panic!(
                "earshot run did not finish in time (clip written: {}); stderr:\n{}",
                clip_done.load(Ordering::Acquire),
                stderr_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop_feed.store(true, Ordering::Relaxed);
    if !clip_done.load(Ordering::Acquire) {
        // earshot ended without opening the FIFO: open its read end so the feeder's open returns.
        let _ = std::fs::File::open(&fifo);
    }
    let _ = feeder.join();
    let stderr = stderr_reader.join().unwrap_or_default();
    assert!(
        signalled && status.success(),
        "earshot run: {status} (stopped by the test: {signalled}); stderr:\n{stderr}"
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .expect("events.jsonl written")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    let detections = lines
        .iter()
        .filter(|v| v["event"] == "detection_stop")
        .map(|v| {
            (
                v["class"].as_str().expect("class").to_owned(),
                v["start_s"].as_f64().expect("start_s"),
                v["end_s"].as_f64().expect("end_s"),
            )
        })
        .collect();
    let health = lines
        .last()
        .cloned()
        .expect("at least the final health event");
    let negotiated = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "ALSA capture negotiated")
        .unwrap_or_else(|| panic!("no 'ALSA capture negotiated' log line; stderr:\n{stderr}"));
    RunOutput {
        detections,
        health,
        negotiated,
        stderr,
    }
}

/// `analyze --format json` detections of `wav`.
fn analyze_detections(wav: &Path) -> Vec<(String, f64, f64)> {
    let (code, reports, stderr) = analyze_json(&[wav.to_owned()], &[]);
    assert_eq!(code, 0, "analyze {}: {stderr}", wav.display());
    reports[0]["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| {
            (
                d["class"].as_str().expect("class").to_owned(),
                d["start_s"].as_f64().expect("start_s"),
                d["end_s"].as_f64().expect("end_s"),
            )
        })
        .collect()
}

/// Runs `clip` (relative to `../shared/eval`) through both paths and compares.
fn same_detections_as_analyze(clip: &str, expect_class: &str) {
    let clip = eval_dir().join(clip);
    let dir = tempfile::tempdir().unwrap();
    let (wav, raw) = convert(&clip, dir.path());
    let mut expected = analyze_detections(&wav);
    expected.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert!(
        expected.iter().any(|d| d.0 == expect_class),
        "analyze no longer detects {expect_class} in {}: {expected:?} (pick another clip)",
        clip.display()
    );

    let run = run_through_alsa(dir.path(), raw);
    let n = &run.negotiated;
    assert_eq!(
        (
            n["format"].as_str(),
            n["channels"].as_u64(),
            n["rate_hz"].as_u64()
        ),
        (Some("S16_LE"), Some(1), Some(RATE_HZ as u64)),
        "negotiated: {n}"
    );
    assert_eq!(
        n["period_frames"].as_u64(),
        Some(PERIOD_FRAMES as u64),
        "the feeder writes {PERIOD_FRAMES}-frame periods; negotiated: {n}"
    );
    let mut got = run.detections.clone();
    got.sort_by(|a, b| a.1.total_cmp(&b.1));
    let h = &run.health;
    eprintln!(
        "{}:\n  analyze: {expected:?}\n  run (alsa): {got:?}\n  health: overruns {} ({} frames), \
         xruns {}, underruns {}, audio_s {}",
        clip.display(),
        h["overruns"],
        h["overrun_frames"],
        h["xruns"],
        h["underruns"],
        h["audio_s"]
    );

    assert_eq!(
        got.iter().map(|d| &d.0).collect::<Vec<_>>(),
        expected.iter().map(|d| &d.0).collect::<Vec<_>>(),
        "same classes in the same order; run stderr:\n{}",
        run.stderr
    );
    for (g, e) in got.iter().zip(&expected) {
        assert!(
            (g.1 - e.1).abs() <= HOP_S + 1e-6 && (g.2 - e.2).abs() <= HOP_S + 1e-6,
            "{}: run {g:?} vs analyze {e:?}: start/end differ by more than one hop ({HOP_S} s)",
            g.0
        );
    }

    assert_eq!(
        h["event"], "health",
        "the last event is the final health report: {h}"
    );
    assert_eq!(h["input"], "alsa:earshot_test");
    assert_eq!(h["sample_rate_hz"].as_u64(), Some(RATE_HZ as u64));
    // Paced at real time into a 10 s ring: nothing may be dropped, and the null PCM has no
    // hardware pointer to overrun.
    assert_eq!(h["overruns"].as_u64(), Some(0), "ring overruns: {h}");
    assert_eq!(h["overrun_frames"].as_u64(), Some(0), "{h}");
    assert_eq!(h["xruns"].as_u64(), Some(0), "device xruns: {h}");
    let wav_s = (std::fs::metadata(&wav).unwrap().len() - 44) as f64 / 2.0 / RATE_HZ as f64;
    let audio_s = h["audio_s"].as_f64().expect("audio_s");
    assert!(
        audio_s >= wav_s,
        "the run analysed {audio_s} s, less than the {wav_s} s clip: {h}"
    );
}

#[test]
fn glass_clip_through_an_alsa_pcm_gives_the_same_detections_as_analyze() {
    same_detections_as_analyze(
        "glass_break/gh-glassbreakDetector__explore_eAAB_spl-calculation_ifx_labeled_levels_glassbreak_3.wav",
        "glass_break",
    );
}

#[test]
fn gunshot_clip_through_an_alsa_pcm_gives_the_same_detections_as_analyze() {
    same_detections_as_analyze(
        "gunshot_explosion/deb-hedgewars__shotgunfire.wav",
        "gunshot",
    );
}

#[test]
fn a_missing_alsa_device_is_refused_with_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["run", "--input", "alsa:earshot_no_such_pcm", "--jsonl"])
        .arg(&jsonl)
        .env("HOME", dir.path())
        .env_remove("ALSA_CONFIG_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("earshot runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("earshot_no_such_pcm") && stderr.contains("snd_pcm_open"),
        "the message names the device and the call: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
