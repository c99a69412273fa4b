//! The settings API of `earshot run --http` over real HTTP: updates validated field by field
//! and persisted into the TOML file (comments kept), live detector changes and restarts,
//! authentication, and a live-stream client that never reads.
//!
//! These tests use synthetic audio only (noise and tones written by the test); the browser
//! test (`tests/web_browser.rs`) plays a real glass clip.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::web::{free_port, request, Earshot, LiveStream};
use common::{write_wav, WavFormat};
use serde_json::{json, Value};

const RATE: u32 = 16_000;

/// Quiet noise (about −50 dBFS) with a 1 kHz tone at −20 dBFS for 2 s every 30 s.
fn test_audio(seconds: f64) -> Vec<f32> {
    let n = (seconds * RATE as f64) as usize;
    let mut x: u32 = 12345;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.01;
            let t = i as f64 / RATE as f64;
            let tone = if t % 30.0 >= 20.0 && t % 30.0 < 22.0 {
                0.14 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin() as f32
            } else {
                0.0
            };
            noise + tone
        })
        .collect()
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for_log(path: &Path, message: &str, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if log_lines(path).iter().any(|l| l["message"] == message) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

const FILE: &str = "\
# Lobby camera, tuned on site
device_id = \"lobby-1\"

[detectors.glass_break]
# raised after the first week
sensitivity = 60
";

#[test]
fn settings_updates_are_validated_field_by_field_persisted_and_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("noise.wav");
    write_wav(&wav, RATE, 1, WavFormat::S16, &test_audio(120.0));
    let cfg = tmp.path().join("earshot.toml");
    std::fs::write(&cfg, FILE).unwrap();
    let log = tmp.path().join("earshot.log");
    let port = free_port();
    let input = format!("wav:{}", wav.display());
    let cfg_s = cfg.display().to_string();
    let mut e = Earshot::start(
        &["--input", &input, "--realtime", "--config", &cfg_s],
        &log,
        port,
        None,
    );

    let before = request(port, "GET", "/api/settings", None, None);
    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type"), Some("application/json"));
    let before = before.json();
    assert_eq!(before["file"], cfg_s.as_str());
    assert_eq!(before["classes"][0]["class"], "glass_break");
    assert_eq!(before["classes"][0]["sensitivity"], 60);

    // Every problem is reported with its key; nothing changes.
    let bad = json!({
        "detectors": {
            "glass_break": {"sensitivity": 150, "sensitivty": 70},
            "aggression": {"hold_s": "long"}
        },
        "level": {"adaptive_margin_db": 1.0}
    });
    let r = request(port, "PUT", "/api/settings", None, Some(&bad.to_string()));
    assert_eq!(r.status, 400, "{}", r.body);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    let mut keys: Vec<String> = errors
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "detectors.aggression.hold_s",
            "detectors.glass_break.sensitivity",
            "detectors.glass_break.sensitivty",
            "level.adaptive_margin_db"
        ],
        "{errors:?}"
    );
    let sens = errors
        .iter()
        .find(|e| e["key"] == "detectors.glass_break.sensitivity")
        .unwrap();
    assert_eq!(sens["value"], "150");
    assert_eq!(sens["expected"], "expected 0 to 100");
    assert_eq!(
        request(port, "GET", "/api/settings", None, None).json(),
        before
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), FILE);

    // Sections outside detectors/level, and bodies that are not JSON objects.
    for (body, key) in [
        (r#"{"sinks": {"mqtt": {"host": "evil"}}}"#, "sinks"),
        (r#"{"detectors": "#, ""),
        (r#"[1, 2]"#, ""),
    ] {
        let r = request(port, "PUT", "/api/settings", None, Some(body));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["errors"][0]["key"], key, "{body}");
    }
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), FILE);

    // A detector change applies live and persists into the file, its comments kept.
    let r = request(
        port,
        "PUT",
        "/api/settings",
        None,
        Some(r#"{"detectors": {"glass_break": {"sensitivity": 80}, "speech": {"enabled": true}}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let after = r.json();
    assert_eq!(after["classes"][0]["sensitivity"], 80);
    // on = 0.5 · 2^((50 − 80)/50) = 0.3299
    let on = after["classes"][0]["on_threshold"].as_f64().unwrap();
    assert!((on - 0.3299).abs() < 1e-3, "{on}");
    assert_eq!(after["classes"][3]["enabled"], true);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("# raised after the first week\nsensitivity = 80"),
        "{text}"
    );
    assert!(text.contains("# Lobby camera, tuned on site"), "{text}");
    assert!(
        wait_for_log(&log, "detector settings applied", Duration::from_secs(10)),
        "the running detectors did not take the change"
    );
    assert_eq!(
        request(port, "GET", "/api/settings", None, None).json(),
        after
    );

    // A level change restarts the pipeline; the server stays up through it.
    let r = request(
        port,
        "PUT",
        "/api/settings",
        None,
        Some(r#"{"level": {"calibration_offset_db": 110.5}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        wait_for_log(
            &log,
            "restarting the pipeline with the new settings",
            Duration::from_secs(15)
        ),
        "no restart for a level change"
    );
    let t0 = Instant::now();
    loop {
        let s = request(port, "GET", "/api/settings", None, None).json();
        if s["level"]["calibration_offset_db"] == 110.5 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = request(port, "GET", "/api/status", None, None);
    assert_eq!(status.status, 200, "{}", status.body);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let reread: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        reread["level"]["calibration_offset_db"].as_float(),
        Some(110.5)
    );

    // The read-only half for viewers.
    assert_eq!(
        request(port, "GET", "/view/settings", None, None).json(),
        request(port, "GET", "/api/settings", None, None).json()
    );
    assert_eq!(request(port, "GET", "/view/status", None, None).status, 200);
    let r = request(
        port,
        "PUT",
        "/view/settings",
        None,
        Some(r#"{"detectors":{"gunshot":{"sensitivity":90}}}"#),
    );
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(
        request(port, "POST", "/view/test/gunshot", None, None).status,
        405
    );
    assert_eq!(
        request(port, "GET", "/view/test/gunshot", None, None).status,
        404
    );

    // Unknown paths and methods.
    assert_eq!(request(port, "GET", "/api/nothing", None, None).status, 404);
    assert_eq!(
        request(port, "DELETE", "/api/settings", None, None).status,
        405
    );
    assert_eq!(
        request(port, "POST", "/api/test/dog_bark", None, None).status,
        404
    );
    assert_eq!(e.stop(), Some(0));
}

#[test]
fn the_api_needs_credentials_when_they_are_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("noise.wav");
    write_wav(&wav, RATE, 1, WavFormat::S16, &test_audio(60.0));
    let input = format!("wav:{}", wav.display());
    let token = "s3cret-token-0123456789";

    // Bearer.
    let cfg = tmp.path().join("bearer.toml");
    std::fs::write(&cfg, format!("[http]\nbearer_token = \"{token}\"\n")).unwrap();
    let port = free_port();
    let bearer = format!("Bearer {token}");
    let mut e = Earshot::start(
        &[
            "--input",
            &input,
            "--realtime",
            "--config",
            &cfg.display().to_string(),
        ],
        &tmp.path().join("bearer.log"),
        port,
        Some(&bearer),
    );
    for path in [
        "/api/settings",
        "/api/status",
        "/api/events",
        "/api/live",
        "/view/settings",
        "/view/live",
    ] {
        let r = request(port, "GET", path, None, None);
        assert_eq!(r.status, 401, "{path} without credentials");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"earshot\"")
        );
        let r = request(
            port,
            "GET",
            path,
            Some("Bearer wrong-token-0123456789"),
            None,
        );
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    assert_eq!(
        request(port, "POST", "/api/test/glass_break", None, None).status,
        401
    );
    assert_eq!(
        request(
            port,
            "PUT",
            "/api/settings",
            None,
            Some(r#"{"detectors":{"gunshot":{"sensitivity":90}}}"#)
        )
        .status,
        401
    );
    assert_eq!(
        request(port, "GET", "/api/settings", Some(&bearer), None).status,
        200
    );
    // The page itself holds no data and loads without credentials.
    let page = request(port, "GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // EventSource cannot send headers: the token as a query parameter.
    let mut live = LiveStream::open(port, &format!("/api/live?access_token={token}"));
    let (name, data) = live.next().expect("a live message");
    assert!(name == "level" || name == "patch", "{name}: {data}");
    assert_eq!(e.stop(), Some(0));

    // Basic.
    let cfg = tmp.path().join("basic.toml");
    std::fs::write(
        &cfg,
        "[http]\nusername = \"installer\"\npassword = \"pa:ss wörd\"\n",
    )
    .unwrap();
    let port = free_port();
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("installer:pa:ss wörd")
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("installer:guess")
    );
    let mut e = Earshot::start(
        &[
            "--input",
            &input,
            "--realtime",
            "--config",
            &cfg.display().to_string(),
        ],
        &tmp.path().join("basic.log"),
        port,
        Some(&good),
    );
    let r = request(port, "GET", "/api/settings", None, None);
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    assert_eq!(
        request(port, "GET", "/api/settings", Some(&bad), None).status,
        401
    );
    assert_eq!(
        request(port, "GET", "/api/settings", Some(&good), None).status,
        200
    );
    assert_eq!(e.stop(), Some(0));

    // Beyond loopback without credentials: refused before anything starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["run", "--input", &input, "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.listen") && err.contains("beyond loopback"),
        "{err}"
    );
}

#[test]
fn a_live_client_that_never_reads_stalls_nothing_and_memory_stays_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("earshot.log");
    let port = free_port();
    let minutes = 10.0;
    let mut e =
        Earshot::start_with_stdin(&["--input", "stdin:s16le@16000"], &log, port, None, true);
    // A client that asks for the stream and never reads a byte, with a small receive buffer
    // so that the kernel does not absorb what the server's queue is there to bound.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stuck: TcpStream = sock.into();
    stuck
        .write_all(b"GET /api/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // And one that reads everything.
    let reader = std::thread::spawn(move || {
        let mut live = LiveStream::open(port, "/api/live");
        let (mut levels, mut patches, mut last_patch_t) = (0u64, 0u64, 0f64);
        while let Some((name, data)) = live.next() {
            match name.as_str() {
                "level" => levels += 1,
                "patch" => {
                    patches += 1;
                    last_patch_t = data["t"].as_f64().unwrap();
                    for c in ["glass_break", "aggression", "gunshot", "speech"] {
                        let s = data["scores"][c].as_f64().unwrap();
                        assert!((0.0..=1.0).contains(&s), "{data}");
                    }
                }
                _ => {}
            }
        }
        (levels, patches, last_patch_t)
    });
    std::thread::sleep(Duration::from_millis(500));

    let audio = test_audio(minutes * 60.0);
    let bytes: Vec<u8> = audio
        .iter()
        .flat_map(|&x| ((x * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut stdin = e.child.stdin.take().unwrap();
    let t0 = Instant::now();
    let mut rss = Vec::new();
    let mut dropped = 0u64;
    for (i, chunk) in bytes.chunks(RATE as usize * 2 * 30).enumerate() {
        stdin.write_all(chunk).unwrap();
        if i % 2 == 1 {
            rss.push(e.rss_kb());
            let s = request(port, "GET", "/api/status", None, None).json();
            dropped = s["live_dropped"].as_u64().unwrap();
            // Patch counts are of the same snapshot as audio_s: one patch per 0.48 s once the
            // first 0.96 s window is full; the gate's share is at most all of them.
            let (audio_s, patches) = (
                s["audio_s"].as_f64().unwrap(),
                s["patches"].as_u64().unwrap(),
            );
            let expected = ((audio_s - 0.96) / 0.48).floor() + 1.0;
            assert!(
                (patches as f64 - expected.max(0.0)).abs() <= 1.0,
                "{patches} patches after {audio_s} s of audio: {s}"
            );
            assert!(s["patches_classified"].as_u64().unwrap() <= patches, "{s}");
        }
    }
    let wrote_in = t0.elapsed();
    drop(stdin);
    let t1 = Instant::now();
    while e.child.try_wait().unwrap().is_none() {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "earshot did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.child.wait().unwrap().code(), Some(0));
    let (levels, patches, last_patch_t) = reader.join().unwrap();
    drop(stuck);

    eprintln!(
        "{minutes} min of audio in {:.1} s; RSS every minute (kB): {rss:?}; reader: {levels} levels, \
         {patches} patches, last at {last_patch_t:.1} s; dropped for slow clients: {dropped}",
        wrote_in.as_secs_f64()
    );
    // The pipeline was not held up: it read everything, and the reading client saw it all.
    let expected_levels = (minutes * 60.0 / 0.1) as u64;
    assert!(
        levels >= expected_levels * 95 / 100,
        "{levels} of {expected_levels} level messages"
    );
    assert!(last_patch_t > minutes * 60.0 - 2.0, "{last_patch_t}");
    assert!(
        patches as f64 >= (minutes * 60.0 - 1.0) / 0.48 - 2.0,
        "{patches} patches"
    );
    // What the stuck client could not take was dropped for it, not held.
    assert!(dropped > 0, "the stuck client's queue never filled?");
    // Flat memory: from the second minute on, RSS grows by less than 4 MB.
    let base = rss[1];
    // (and the last status, read after the stuck client had long been full)
    let max = *rss.iter().max().unwrap();
    assert!(
        max < base + 4096,
        "RSS grew from {base} kB to {max} kB: {rss:?}"
    );
}
