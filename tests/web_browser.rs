//! The settings page in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/page_test.mjs`) against `earshot run --input wav:<real glass clip> --realtime
//! --http`, with events to a real mosquitto and a `mosquitto_sub` subscriber.
//!
//! The page must show the level graph moving and the glass_break detection; the glass
//! sensitivity slider, moved to 80, must be persisted (GET /api/settings and the TOML file);
//! the aggression test button must bring a `"test": true` event to the MQTT subscriber.
//! Screenshots go to `target/browser-shots/`.
//!
//! Needs `../shared/eval`, `/usr/bin/chromium` (Debian `chromium`), Node.js with
//! `npm ci --prefix tests/browser` done, `/usr/sbin/mosquitto` and `mosquitto_sub`
//! (`mosquitto`, `mosquitto-clients`). `.ci/run` installs them all; under `CI=true` a missing
//! one fails the test, elsewhere it is skipped with a message.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::web::{free_port, request, Earshot};
use common::{read_clip, shared_dir, write_wav, WavFormat};
use serde_json::Value;

const GLASS_CLIP: &str =
    "glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000.wav";
const DEVICE: &str = "browser-cam";

fn needs(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    let msg = format!("{} is missing: {what}", path.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The clip after 6 s of quiet noise (about −75 dBFS), then 60 s more of it: long enough for
/// the browser to connect first and go through every step while the input plays.
fn scene(clip: &Path, out: &Path) {
    let (rate, samples) = read_clip(clip);
    let mut x: u32 = 7;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.0006
            })
            .collect()
    };
    let mut all = noise(6 * rate as usize);
    let mut tail = noise(samples.len() + 60 * rate as usize);
    for (t, s) in tail.iter_mut().zip(&samples) {
        *t += s;
    }
    all.extend(tail);
    write_wav(out, rate, 1, WavFormat::S16, &all);
}

#[test]
fn the_page_shows_a_glass_break_saves_a_slider_and_sends_a_test_alarm_to_mqtt() {
    let Some(shared) = shared_dir() else { return };
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !needs(
        Path::new("/usr/bin/chromium"),
        "install the Debian package chromium",
    ) || !needs(
        &browser_dir.join("node_modules/playwright-core"),
        "run `npm ci --prefix tests/browser` (playwright-core, pinned in its package-lock.json)",
    ) || !needs(
        Path::new("/usr/sbin/mosquitto"),
        "install the Debian package mosquitto",
    ) || !needs(
        Path::new("/usr/bin/mosquitto_sub"),
        "install the Debian package mosquitto-clients",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("glass-scene.wav");
    scene(&shared.join("eval").join(GLASS_CLIP), &wav);

    // A real broker and a real subscriber.
    let mqtt_port = free_port();
    std::fs::write(
        tmp.path().join("mosquitto.conf"),
        format!("listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let _broker = Guard(
        Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(tmp.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto"),
    );
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", mqtt_port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sub = Command::new("/usr/bin/mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt_port.to_string(),
            "-q",
            "1",
            "-v",
        ])
        .args(["-t", &format!("earshot/{DEVICE}/events/#")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto_sub");
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    {
        let received = Arc::clone(&received);
        let out = sub.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((topic, payload)) = line.split_once(' ') {
                    if let Ok(v) = serde_json::from_str(payload) {
                        received.lock().unwrap().push((topic.to_owned(), v));
                    }
                }
            }
        });
    }
    let _sub = Guard(sub);

    let cfg = tmp.path().join("earshot.toml");
    std::fs::write(
        &cfg,
        format!(
            "device_id = \"{DEVICE}\"\n\n[sinks.mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\n\n\
             [detectors.glass_break]\n# tuned by the installer\nsensitivity = 50\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let input = format!("wav:{}", wav.display());
    let log = tmp.path().join("earshot.log");
    let mut earshot = Earshot::start(
        &[
            "--input",
            &input,
            "--realtime",
            "--config",
            &cfg.display().to_string(),
        ],
        &log,
        port,
        None,
    );

    let shots: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let node = Command::new("node")
        .arg(browser_dir.join("page_test.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(&shots)
        .current_dir(&browser_dir)
        .output()
        .expect("node runs (Node.js is needed for the browser test)");
    let stdout = String::from_utf8_lossy(&node.stdout);
    let result: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "page_test.mjs printed no result (exit {:?}): {stdout}\n{}\nearshot log:\n{}",
                node.status.code(),
                String::from_utf8_lossy(&node.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    eprintln!(
        "page_test.mjs: {result}\nscreenshots in {}",
        shots.display()
    );
    assert!(
        node.status.success() && result["ok"] == true,
        "the page test failed: {result}\nearshot log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        result["offsite"],
        serde_json::json!([]),
        "the page asked for other hosts"
    );
    assert_eq!(result["consoleErrors"], serde_json::json!([]));
    assert_eq!(result["seen"]["slider_after"], "80");

    // The slider's change is in force and persisted, the file's comment kept.
    let settings = request(port, "GET", "/api/settings", None, None).json();
    assert_eq!(settings["classes"][0]["class"], "glass_break");
    assert_eq!(settings["classes"][0]["sensitivity"], 80, "{settings}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("# tuned by the installer\nsensitivity = 80"),
        "{text}"
    );

    // The test button's event reached the MQTT subscriber, marked as a test.
    let t0 = Instant::now();
    let test_event = loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|(topic, v)| {
                topic == &format!("earshot/{DEVICE}/events/aggression")
                    && v["event"] == "detection_start"
                    && v["test"] == true
            })
            .cloned();
        if let Some(f) = found {
            break f;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no test aggression event on MQTT; received: {:?}",
            received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(test_event.1["class"], "aggression");
    assert_eq!(test_event.1["device_id"], DEVICE);
    // The real detection went there too, not marked as a test.
    assert!(
        received.lock().unwrap().iter().any(|(topic, v)| {
            topic == &format!("earshot/{DEVICE}/events/glass_break")
                && v["event"] == "detection_start"
                && v.get("test").is_none()
        }),
        "no glass_break detection on MQTT"
    );
    assert_eq!(earshot.stop(), Some(0));
}
