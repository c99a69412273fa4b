//! `earshot run` with a `[[rules]]` action against a fake Axis device (tests/common/vapix_server.rs:
//! plain HTTP on loopback, Basic and Digest checked by the server itself, responses as the VAPIX
//! documentation shows them), and `earshot action test`.
//!
//! Needs `../shared/eval` beside the repository (a real glass-break clip).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vapix_server::{Knobs, Recorded, Scheme, VapixServer};
use common::{read_clip, write_wav, WavFormat};
use serde_json::{json, Value};

const GLASS_CLIP: &str =
    "glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000.wav";
const PASSWORD: &str = "s3cret-Pw!x";

fn eval_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    assert!(
        dir.join("labels.csv").is_file(),
        "{} is missing: these tests need ../shared/eval beside the repository",
        dir.display()
    );
    dir
}

/// The glass clip twice, 4 s apart, on a faint noise floor (−60 dBFS): two glass breaks, the
/// second well inside a 60 s cooldown.
fn two_glass_breaks(dir: &Path) -> PathBuf {
    let (rate, clip) = read_clip(&eval_dir().join(GLASS_CLIP));
    let mut seed = 0x2545_f491_u32;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed as f32 / u32::MAX as f32 - 0.5) * 0.002
            })
            .collect()
    };
    let mut audio = noise(rate as usize);
    for _ in 0..2 {
        audio.extend(clip.iter().zip(noise(clip.len())).map(|(a, b)| a + b));
        audio.extend(noise(4 * rate as usize));
    }
    let path = dir.join("two_glass_breaks.wav");
    write_wav(&path, rate, 1, WavFormat::S16, &audio);
    path
}

fn config(dir: &Path, server: &VapixServer, auth: &str, extra: &str) -> PathBuf {
    let path = dir.join("earshot.toml");
    std::fs::write(
        &path,
        format!(
            r#"device_id = "cam-test"

[actions.vapix]
url = "{url}"
credentials = "config"
username = "root"
password = "{PASSWORD}"
auth = "{auth}"
timeout_s = 2.0
retries = 1
backoff_s = 0.2
{extra}
[[rules]]
name = "glass-alarm"
on = "glass_break"
cooldown_s = 60
actions = [
  {{ type = "output", port = "1", duration_ms = 3000 }},
  {{ type = "clip", clip = "2" }},
]
"#,
            url = server.url()
        ),
    )
    .unwrap();
    path
}

/// Runs `earshot run`; returns the JSONL lines with the instant each was read, and stderr.
fn run(config: &Path, input: &Path, realtime: bool) -> (Vec<(Instant, Value)>, String, i32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_earshot"));
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(format!("wav:{}", input.display()))
        .args(["--jsonl", "-", "--log-format", "human"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if realtime {
        cmd.arg("--realtime");
    }
    let mut child = cmd.spawn().expect("earshot runs");
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        lines.push((
            Instant::now(),
            serde_json::from_str(&line).expect("JSON line"),
        ));
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (lines, err.join().unwrap(), code)
}

fn glass_starts(lines: &[(Instant, Value)]) -> Vec<Instant> {
    lines
        .iter()
        .filter(|(_, e)| e["event"] == "detection_start" && e["class"] == "glass_break")
        .map(|(t, _)| *t)
        .collect()
}

fn actions_of(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|r| r.path() != "/axis-cgi/param.cgi" && r.status == 200)
        .collect()
}

fn assert_one_pulse_and_one_clip(actions: &[&Recorded], auth: &str) {
    assert_eq!(actions.len(), 2, "{actions:#?}");
    let pulse = actions[0];
    assert_eq!(
        (pulse.method.as_str(), pulse.path()),
        ("POST", "/axis-cgi/io/portmanagement.cgi")
    );
    let body: Value = serde_json::from_str(&pulse.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"apiVersion":"1.0","method":"setStateSequence","params":{"port":"1","sequence":[{"state":"closed","time":3000},{"state":"open","time":0}]}})
    );
    let clip = actions[1];
    assert_eq!(
        (clip.method.as_str(), clip.path()),
        ("GET", "/axis-cgi/mediaclip.cgi")
    );
    let q = clip.query();
    assert!(q.contains(&("action".into(), "play".into())), "{q:?}");
    assert!(q.contains(&("clip".into(), "2".into())), "{q:?}");
    for r in actions {
        assert_eq!(r.auth.as_deref(), Some(auth), "{r:#?}");
    }
}

/// The acceptance case: a real glass break at real speed fires one pulse of output 1 for 3 s and
/// clip 2, authenticated (Basic, as on the device), within 1 s of the start event; the second
/// glass break, inside the cooldown, sends nothing.
#[test]
fn glass_break_pulses_output_1_and_plays_clip_2_once_per_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let input = two_glass_breaks(dir.path());
    let server = VapixServer::start(Knobs {
        scheme: Scheme::Basic,
        password: PASSWORD.into(),
        ..Knobs::default()
    });
    let cfg = config(dir.path(), &server, "basic", "");
    let (lines, stderr, code) = run(&cfg, &input, true);
    assert_eq!(code, 0, "{stderr}");
    let starts = glass_starts(&lines);
    assert_eq!(starts.len(), 2, "two glass breaks expected: {stderr}");
    let requests = server.requests();
    let actions = actions_of(&requests);
    assert_one_pulse_and_one_clip(&actions, "basic");
    for r in &actions {
        let after = r.at.saturating_duration_since(starts[0]);
        let before = starts[0].saturating_duration_since(r.at);
        println!(
            "{} {}: {:+.0} ms from the start event",
            r.method,
            r.path(),
            after.as_secs_f64() * 1e3 - before.as_secs_f64() * 1e3
        );
        assert!(
            after < Duration::from_secs(1) && before < Duration::from_millis(500),
            "request not within 1 s of the start event"
        );
        assert!(
            r.at < starts[1],
            "the pulse came from the first glass break"
        );
    }
    assert!(stderr.contains("rule fired"), "{stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "the password leaked into the log"
    );
}

/// The same through Digest (a remote camera), chosen by the device's challenge (`auth = "auto"`),
/// and a run faster than real time.
#[test]
fn digest_auth_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = two_glass_breaks(dir.path());
    let server = VapixServer::start(Knobs {
        scheme: Scheme::Digest,
        password: PASSWORD.into(),
        ..Knobs::default()
    });
    let cfg = config(dir.path(), &server, "auto", "");
    let (lines, stderr, code) = run(&cfg, &input, false);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(glass_starts(&lines).len(), 2, "{stderr}");
    let requests = server.requests();
    let actions = actions_of(&requests);
    assert!(actions[0]
        .auth
        .as_deref()
        .unwrap_or("")
        .starts_with("digest"));
    let auth = actions[0].auth.clone().unwrap();
    assert_one_pulse_and_one_clip(&actions, &auth);
}

/// A device that never answers: the actions time out on their own thread while detection goes
/// on: both glass breaks are still detected, started and stopped, and the run ends.
#[test]
fn a_device_that_never_answers_does_not_stop_detection() {
    let dir = tempfile::tempdir().unwrap();
    let input = two_glass_breaks(dir.path());
    let server = VapixServer::start(Knobs {
        scheme: Scheme::Basic,
        password: PASSWORD.into(),
        hang_paths: vec![
            "/axis-cgi/io/portmanagement.cgi".into(),
            "/axis-cgi/mediaclip.cgi".into(),
            "/axis-cgi/param.cgi".into(),
        ],
        ..Knobs::default()
    });
    let cfg = config(dir.path(), &server, "basic", "");
    let t0 = Instant::now();
    let (lines, stderr, code) = run(&cfg, &input, false);
    assert_eq!(code, 0, "{stderr}");
    let stops = lines
        .iter()
        .filter(|(_, e)| e["event"] == "detection_stop" && e["class"] == "glass_break")
        .count();
    assert_eq!(glass_starts(&lines).len(), 2, "{stderr}");
    assert_eq!(stops, 2, "{stderr}");
    assert!(stderr.contains("no answer within 2 s"), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "run took {:?}",
        t0.elapsed()
    );
}

/// `earshot action test RULE`: fires the rule's actions once, now; with a wrong password it fails
/// naming the device and the user, never the password.
#[test]
fn action_test_fires_the_rule_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = VapixServer::start(Knobs {
        scheme: Scheme::Digest,
        password: PASSWORD.into(),
        ..Knobs::default()
    });
    let cfg = config(dir.path(), &server, "auto", "");
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["action", "test", "glass-alarm", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("2 of 2 actions done"), "{stdout}");
    let requests = server.requests();
    let actions = actions_of(&requests);
    let auth = actions[0].auth.clone().expect("authenticated");
    assert!(auth.starts_with("digest"), "{auth}");
    assert_one_pulse_and_one_clip(&actions, &auth);

    let wrong = VapixServer::start(Knobs {
        scheme: Scheme::Digest,
        password: "another".into(),
        ..Knobs::default()
    });
    let cfg = config(dir.path(), &wrong, "auto", "");
    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["action", "test", "glass-alarm", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains(&wrong.host()), "names the device: {stdout}");
    assert!(stdout.contains("\"root\""), "names the user: {stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let out = Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["action", "test", "no-such-rule", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules: glass-alarm"));
}
