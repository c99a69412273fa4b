//! `earshot run` end to end: raw PCM on stdin, a sink that blocks forever, shutdown on SIGTERM,
//! and `earshot config check`. MQTT, webhook and ALSA have their own test files.
//!
//! Needs `../shared` (real audio from `eval/`) and `sox` (Debian package; `.ci/run` installs it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_earshot");

/// The scene the README's first command analyses: glass breaking at 4.3 s in a +10 dB mix.
fn glass_scene(shared: &Path) -> PathBuf {
    shared.join(
        "eval/scenes/glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000_snr+10.flac",
    )
}

fn sox(args: &[&str]) {
    let out = Command::new("sox")
        .args(args)
        .output()
        .expect("sox must be installed (Debian package sox; .ci/run installs it)");
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// (class, start_s, end_s, peak_score) of the alarm classes' finished detections.
type Span = (String, f64, f64, f64);

/// The alarm-class detections among `detections` (analyze's list, or run's stop events),
/// by start time.
fn spans<'a>(detections: impl Iterator<Item = &'a Value>) -> Vec<Span> {
    let mut v: Vec<Span> = detections
        .filter(|e| e["class"] != "speech")
        .map(|e| {
            (
                e["class"].as_str().unwrap().to_owned(),
                e["start_s"].as_f64().unwrap(),
                e["end_s"].as_f64().unwrap(),
                e["peak_score"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    v
}

fn run_detections(events: &[Value]) -> Vec<Span> {
    spans(events.iter().filter(|e| e["event"] == "detection_stop"))
}

fn analyze_report(path: &Path) -> Value {
    let out = Command::new(BIN)
        .args(["analyze", "--format", "json", "-q"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn last_health(events: &[Value]) -> &Value {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "health")
        .expect("a final health event")
}

#[test]
fn stdin_pcm_gives_the_same_detections_as_the_file() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("scene48k.wav");
    let raw = dir.path().join("scene48k.raw");
    let scene = glass_scene(&shared);
    let scene = scene.to_str().unwrap();
    // The same 48 kHz s16 samples as a WAV (for the file paths) and as raw PCM (for stdin).
    sox(&[
        scene,
        "-b",
        "16",
        "-e",
        "signed",
        "-c",
        "1",
        "-r",
        "48000",
        wav.to_str().unwrap(),
    ]);
    sox(&[wav.to_str().unwrap(), "-t", "raw", raw.to_str().unwrap()]);

    let report = analyze_report(&wav);
    let analyzed = spans(report["detections"].as_array().unwrap().iter());
    assert!(
        analyzed.iter().any(|d| d.0 == "glass_break"),
        "analyze should hear the glass: {analyzed:?}"
    );

    let file_run = Command::new(BIN)
        .args(["run", "--jsonl", "-", "--log-format", "json", "--input"])
        .arg(format!("wav:{}", wav.display()))
        .output()
        .unwrap();
    assert!(
        file_run.status.success(),
        "{}",
        String::from_utf8_lossy(&file_run.stderr)
    );
    let file_events = json_lines(&String::from_utf8_lossy(&file_run.stdout));

    let mut child = Command::new(BIN)
        .args([
            "run",
            "--input",
            "stdin:s16le@48000",
            "--jsonl",
            "-",
            "--log-format",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread in odd-sized pieces: frames split across reads must survive.
    let writer = std::thread::spawn(move || {
        for piece in bytes.chunks(12_345) {
            stdin.write_all(piece).unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdin_events = json_lines(&String::from_utf8_lossy(&out.stdout));

    assert_eq!(run_detections(&stdin_events), analyzed, "stdin vs analyze");
    assert_eq!(run_detections(&file_events), analyzed, "wav: vs analyze");
    let h = last_health(&stdin_events);
    let frames = (bytes_len(&raw) / 2) as f64;
    assert!(
        (h["audio_s"].as_f64().unwrap() - frames / 48_000.0).abs() < 1e-6,
        "{h}"
    );
    assert_eq!(h["overruns"], 0);
    // The final health event counts the patches as analyze does: all produced, and those the
    // cascade gate let through to the classifier (the same gate, so the same ones).
    let summary = &report["summary"];
    assert!(summary["patches"].as_u64().unwrap() > 10, "{summary}");
    assert_eq!(h["patches"], summary["patches"], "{h}\n{summary}");
    assert_eq!(
        h["patches_classified"], summary["classified"],
        "{h}\n{summary}"
    );
    assert!(
        h["patches_classified"].as_u64() <= h["patches"].as_u64(),
        "{h}"
    );
    // Every detection start comes with its stateless pulse and, later, its stop.
    let count = |kind: &str| stdin_events.iter().filter(|e| e["event"] == kind).count();
    assert_eq!(count("detection_start"), count("detection"));
    assert_eq!(count("detection_start"), count("detection_stop"));
    // Sequence numbers count every event from 0.
    for (i, e) in stdin_events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64), "{e}");
        assert_eq!(e["schema"], "earshot.event.v1");
    }
}

fn bytes_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// Runs `earshot run` with `args`, returns (wall time, JSON lines of `out`, stderr).
fn timed_run(args: &[&str], out: &Path, timeout: Duration) -> (Duration, Vec<Value>, String) {
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .arg("--jsonl")
        .arg(out)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let took = t0.elapsed();
            let errs = errs.join().unwrap();
            assert!(status.success(), "earshot run failed: {errs}");
            let text = std::fs::read_to_string(out).unwrap();
            return (took, json_lines(&text), errs);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            panic!("earshot run did not finish within {timeout:?}: the pipeline stalled");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sink_that_blocks_forever_does_not_slow_the_pipeline() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("ten_minutes.wav");
    let bg = shared.join("eval/background/background_60min.flac");
    // Ten minutes of the real background recording.
    sox(&[
        bg.to_str().unwrap(),
        wav.to_str().unwrap(),
        "trim",
        "0",
        "600",
    ]);
    let input = format!("wav:{}", wav.display());

    // A FIFO whose reader never reads: once the pipe's 64 KiB fill, every write blocks forever.
    let fifo = dir.path().join("stuck.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let reader_path = fifo.clone();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let f = std::fs::File::open(&reader_path).unwrap();
        let _ = hold_rx.recv(); // keep it open, never read
        drop(f);
    });

    let config = dir.path().join("earshot.toml");
    std::fs::write(
        &config,
        format!(
            "[level]\nspl_summary_s = 1\n[sinks]\nflush_timeout_s = 1\n[[sinks.jsonl]]\npath = {:?}\nqueue = 16\n",
            fifo.display().to_string()
        ),
    )
    .unwrap();
    let baseline_cfg = dir.path().join("baseline.toml");
    std::fs::write(&baseline_cfg, "[level]\nspl_summary_s = 1\n").unwrap();

    let (base_t, base_events, _) = timed_run(
        &[
            "--input",
            &input,
            "--config",
            baseline_cfg.to_str().unwrap(),
        ],
        &dir.path().join("baseline.jsonl"),
        Duration::from_secs(600),
    );
    let (stuck_t, events, _) = timed_run(
        &["--input", &input, "--config", config.to_str().unwrap()],
        &dir.path().join("with_stuck_sink.jsonl"),
        base_t * 3 + Duration::from_secs(60),
    );
    let _ = hold_tx.send(());
    reader.join().unwrap();
    eprintln!(
        "10 min of audio: {:.1} s without the stuck sink, {:.1} s with it",
        base_t.as_secs_f64(),
        stuck_t.as_secs_f64()
    );

    let h = last_health(&events);
    assert!((h["audio_s"].as_f64().unwrap() - 600.0).abs() < 0.01, "{h}");
    let sinks = h["sinks"].as_array().unwrap();
    let stuck = sinks
        .iter()
        .find(|s| s["name"].as_str().unwrap().ends_with("stuck.fifo"))
        .expect("the stuck sink in the health event");
    let dropped = stuck["dropped_queue_full"].as_u64().unwrap();
    let produced = events.len() as u64;
    assert!(dropped > 0, "the stuck sink must drop, and say so: {stuck}");
    // Every event is accounted for: dropped, delivered into the pipe, or still held.
    let delivered = stuck["delivered"].as_u64().unwrap();
    let pending = stuck["pending"].as_u64().unwrap();
    assert_eq!(
        dropped + delivered + pending + stuck["failed"].as_u64().unwrap(),
        produced - 1,
        "{stuck} (the health event itself is produced after the counts)"
    );
    // The healthy sink saw everything the baseline did.
    assert_eq!(events.len(), base_events.len());
    // Full speed: the stuck sink costs no more than the noise between two runs.
    assert!(
        stuck_t.as_secs_f64() <= base_t.as_secs_f64() * 1.5 + 5.0,
        "with a stuck sink {stuck_t:?}, without {base_t:?}"
    );
}

#[test]
fn sigterm_closes_open_events_flushes_and_exits_0() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("earshot.toml");
    // A long hold keeps the glass event open until we stop the run.
    std::fs::write(&config, "[detectors.glass_break]\nhold_s = 60\n").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--realtime",
            "--jsonl",
            "-",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&config)
        .arg("--input")
        .arg(format!("wav:{}", glass_scene(&shared).display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    let mut signalled = false;
    for line in stdout.lines() {
        let e: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["event"] == "detection_start" && !signalled {
            let st = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(st.success());
            signalled = true;
        }
        events.push(e);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(signalled, "no detection_start seen: {stderr}");
    assert!(status.success(), "exit {status:?}: {stderr}");
    let stop = events
        .iter()
        .find(|e| e["event"] == "detection_stop" && e["class"] == "glass_break")
        .unwrap_or_else(|| panic!("the open glass event must be closed at shutdown: {events:?}"));
    let h = last_health(&events);
    let audio_s = h["audio_s"].as_f64().unwrap();
    // Stopped early (the scene is longer) and the stop ends where the audio ended.
    assert!(audio_s < 9.0, "{h}");
    assert!(stop["end_s"].as_f64().unwrap() <= audio_s + 1e-9, "{stop}");
    assert_eq!(stop["active"], false);
}

#[test]
fn config_check_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[input]\nring_ms = \"two seconds\"\n\n[detectors.aggression]\nsensitivity = 120\nsensitivty = 60\n\n[sinks.mqtt]\nport = 1883\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.toml",
        "input.ring_ms = \"two seconds\"",
        "detectors.aggression.sensitivity = 120: expected 0 to 100",
        "detectors.aggression.sensitivty: unknown key",
        "3 problem(s)",
    ] {
        assert!(msg.contains(expected), "missing {expected:?} in:\n{msg}");
    }

    // The printed default file is valid, and `run` refuses a bad file before starting.
    let out = Command::new(BIN)
        .args(["config", "default"])
        .output()
        .unwrap();
    let default = dir.path().join("default.toml");
    std::fs::write(&default, &out.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&default)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["run", "--input", "wav:/nonexistent.wav", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sensitivty"));
}

#[test]
fn bad_inputs_are_refused_with_exit_2_naming_them() {
    for (spec, words) in [
        ("stdin:s24le@48000", "stdin:FORMAT@RATE"),
        ("stdin:s16le@1000", "RATE 8000 to 192000"),
        ("mic:0", "expected wav:PATH"),
        ("pipewire:", "node name"),
    ] {
        let out = Command::new(BIN)
            .args(["run", "--input", spec])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(msg.contains(spec) && msg.contains(words), "{spec}: {msg}");
    }
    let out = Command::new(BIN)
        .args([
            "run",
            "--log-format",
            "human",
            "--input",
            "wav:/nonexistent/x.wav",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.wav"));
}
