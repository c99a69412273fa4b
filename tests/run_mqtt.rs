//! `earshot run --mqtt` against a real mosquitto on a free loopback port: topics and payloads,
//! retained state and status, delivery across a broker restart, backlog overflow, and latency.
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`), `sox`, and `../shared/eval` beside
//! the repository. The subscriber is a rumqttc client in the test, started before earshot; for
//! the restart tests it keeps a persistent session on a broker with persistence, so what earshot
//! publishes after the restart is queued for it even before it has reconnected.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const DEVICE: &str = "test-cam";
const GLASS_CLIP: &str =
    "glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000.wav";

fn eval_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
    assert!(
        dir.join("labels.csv").is_file(),
        "{} is missing: these tests need ../shared/eval beside the repository",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A mosquitto on 127.0.0.1:`port`, killed on drop.
struct Broker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts mosquitto; `persistent` keeps sessions (and queued messages) across a stop/start.
    fn start(dir: &Path, persistent: bool) -> Broker {
        let port = free_port();
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
        if persistent {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        Broker::start_with(dir, port, &text)
    }

    /// Starts mosquitto with the configuration `text`; `port` is the one to wait for.
    fn start_with(dir: &Path, port: u16, text: &str) -> Broker {
        assert!(
            Path::new(MOSQUITTO).is_file(),
            "{MOSQUITTO} not found: install the Debian package mosquitto; .ci/run does"
        );
        std::fs::write(dir.join("mosquitto.conf"), text).expect("write mosquitto.conf");
        let mut b = Broker {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .expect("mosquitto.log");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on port {} within 10 s; see {}",
                self.port,
                self.dir.join("mosquitto.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM (it saves its sessions when persistent) and waits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t0 = Instant::now();
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(5) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message the subscriber received.
#[derive(Debug, Clone)]
struct Msg {
    at: SystemTime,
    topic: String,
    payload: String,
    retain: bool,
}

/// A rumqttc subscriber to `filter` on its own thread, reconnecting (and resubscribing) on its
/// own after a broker restart.
struct Subscriber {
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    client: Client,
    subscribed: Arc<AtomicBool>,
}

impl Subscriber {
    fn start(port: u16, id: &str, filter: &str, persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(!persistent)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(o, 100);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        {
            let (msgs, stop, subscribed, client) = (
                Arc::clone(&msgs),
                Arc::clone(&stop),
                Arc::clone(&subscribed),
                client.clone(),
            );
            let filter = filter.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match conn.recv_timeout(Duration::from_millis(200)) {
                        Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => {
                            let _ = client.try_subscribe(filter.as_str(), QoS::AtLeastOnce);
                        }
                        Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => {
                            subscribed.store(true, Ordering::Relaxed)
                        }
                        Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                            msgs.lock().unwrap().push(Msg {
                                at: SystemTime::now(),
                                topic: p.topic.clone(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                retain: p.retain,
                            })
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                        Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Err(_) => break,
                    }
                }
            });
        }
        let s = Subscriber {
            msgs,
            stop,
            client,
            subscribed,
        };
        let t0 = Instant::now();
        while !s.subscribed.load(Ordering::Relaxed) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the test subscriber {id} could not subscribe on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    fn msgs(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// `earshot run` with the MQTT sink on `port` and JSON lines into `jsonl`.
fn earshot(input: &Path, port: u16, jsonl: &Path, config: Option<&Path>, realtime: bool) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_earshot"));
    c.arg("run")
        .arg("--input")
        .arg(format!("wav:{}", input.display()))
        .arg("--mqtt")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--device-id")
        .arg(DEVICE)
        .arg("--jsonl")
        .arg(jsonl);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    if realtime {
        c.arg("--realtime");
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start earshot")
}

/// Waits for earshot to end, asserts success, returns its log lines (JSON, stderr).
fn finish(mut child: Child) -> Vec<Value> {
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().expect("earshot wait");
    assert!(status.success(), "earshot failed: {}", lines.join("\n"));
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read the JSON lines")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The MQTT sink's entry of a health event.
fn mqtt_health(health: &Value) -> Value {
    health["sinks"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["name"].as_str().unwrap_or("").starts_with("mqtt:"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no mqtt sink in {health}"))
}

/// The MQTT sink's counters after it closed, from the `sink closed` log line.
fn mqtt_closed(logs: &[Value]) -> Value {
    logs.iter()
        .map(|l| l.get("fields").unwrap_or(l))
        .find(|f| {
            f["message"] == "sink closed" && f["sink"].as_str().unwrap_or("").starts_with("mqtt:")
        })
        .cloned()
        .unwrap_or_else(|| panic!("no `sink closed` log line for mqtt in {logs:?}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Distinct seq numbers received on `events/` topics, and the number of messages.
fn received_seqs(msgs: &[Msg]) -> (BTreeSet<u64>, usize) {
    let prefix = format!("earshot/{DEVICE}/events/");
    let mut seqs = BTreeSet::new();
    let mut n = 0;
    for m in msgs.iter().filter(|m| m.topic.starts_with(&prefix)) {
        let v: Value = serde_json::from_str(&m.payload).expect("event payload is JSON");
        seqs.insert(u(&v["seq"]));
        n += 1;
    }
    (seqs, n)
}

fn glass_clip() -> PathBuf {
    let p = eval_dir().join(GLASS_CLIP);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

#[test]
fn glass_clip_topics_payloads_retained_state_and_status() {
    let clip = glass_clip();
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path(), false);
    let sub = Subscriber::start(broker.port, "test-sub", "earshot/#", false);
    let jsonl = tmp.path().join("events.jsonl");
    let logs = finish(earshot(&clip, broker.port, &jsonl, None, false));
    std::thread::sleep(Duration::from_millis(300));
    let msgs = sub.msgs();
    let produced = read_jsonl(&jsonl);

    let topic = format!("earshot/{DEVICE}/events/glass_break");
    let glass: Vec<Value> = msgs
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| serde_json::from_str(&m.payload).unwrap())
        .collect();
    let kinds: Vec<&str> = glass.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"detection_start") && kinds.contains(&"detection_stop"),
        "glass_break events received: {kinds:?}"
    );
    for v in &glass {
        assert_eq!(v["schema"], "earshot.event.v1");
        assert_eq!(v["device_id"], DEVICE);
        assert_eq!(v["class"], "glass_break");
        assert!(v["seq"].is_u64() && v["time"].is_string(), "{v}");
    }
    let start = glass
        .iter()
        .find(|v| v["event"] == "detection_start")
        .unwrap();
    assert_eq!(start["active"], true);
    assert!(
        start["start_s"].is_f64() && start["score"].is_f64(),
        "{start}"
    );
    let stop = glass
        .iter()
        .find(|v| v["event"] == "detection_stop")
        .unwrap();
    assert_eq!(stop["active"], false);
    for k in ["start_s", "end_s", "peak_score"] {
        assert!(stop[k].is_f64(), "detection_stop lacks {k}: {stop}");
    }
    // Payload = the same JSON as the JSON lines sink.
    let same = produced.iter().find(|v| v["seq"] == stop["seq"]).unwrap();
    assert_eq!(same, stop);

    // Every event arrived, once (no reconnection here).
    let (seqs, n) = received_seqs(&msgs);
    let want: BTreeSet<u64> = produced.iter().map(|v| u(&v["seq"])).collect();
    assert_eq!(seqs, want);
    assert_eq!(n, want.len());

    // Status: online, then offline at the clean shutdown.
    let status: Vec<&str> = msgs
        .iter()
        .filter(|m| m.topic == format!("earshot/{DEVICE}/status"))
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(status, ["online", "offline"]);

    // A late subscriber sees the retained state (the stop) and status.
    let late = Subscriber::start(
        broker.port,
        "test-late",
        &format!("earshot/{DEVICE}/+/#"),
        false,
    );
    std::thread::sleep(Duration::from_millis(500));
    let retained: BTreeMap<String, Msg> = late
        .msgs()
        .into_iter()
        .filter(|m| m.retain)
        .map(|m| (m.topic.clone(), m))
        .collect();
    let state = retained
        .get(&format!("earshot/{DEVICE}/state/glass_break"))
        .expect("retained state/glass_break");
    let state: Value = serde_json::from_str(&state.payload).unwrap();
    assert_eq!(state["event"], "detection_stop");
    assert_eq!(state["active"], false);
    assert_eq!(
        retained
            .get(&format!("earshot/{DEVICE}/status"))
            .map(|m| m.payload.as_str()),
        Some("offline")
    );
    assert!(
        !retained.keys().any(|t| t.contains("/events/")),
        "events/ must not be retained: {:?}",
        retained.keys()
    );

    let closed = mqtt_closed(&logs);
    assert_eq!(u(&closed["delivered"]), want.len() as u64, "{closed}");
    assert_eq!(u(&closed["pending"]), 0);
}

/// A ~24 s piece of the background recording, made with sox into `dir`.
fn background_piece(dir: &Path, offset_s: u32, secs: u32) -> PathBuf {
    let src = eval_dir().join("background/background_60min.flac");
    assert!(src.is_file(), "{} is missing", src.display());
    let out = dir.join("background.wav");
    let st = Command::new("sox")
        .arg(&src)
        .arg(&out)
        .arg("trim")
        .arg(offset_s.to_string())
        .arg(secs.to_string())
        .status()
        .expect("sox (Debian package sox) must be installed");
    assert!(st.success(), "sox failed");
    out
}

struct RestartOutcome {
    produced: Vec<Value>,
    msgs: Vec<Msg>,
    logs: Vec<Value>,
}

/// Runs earshot paced at real time on a background piece with one SPL summary a second, stops
/// the broker `down_at` seconds in and starts it again `down_for` seconds later.
fn run_with_broker_restart(backlog: usize, down_at: f64, down_for: f64) -> RestartOutcome {
    let tmp = tempfile::tempdir().unwrap();
    let input = background_piece(tmp.path(), 600, 20);
    let cfg = tmp.path().join("earshot.toml");
    std::fs::write(
        &cfg,
        format!(
            "[level]\nspl_summary_s = 1\n\n[sinks]\nflush_timeout_s = 10\n\n\
             [sinks.mqtt]\nbacklog = {backlog}\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n"
        ),
    )
    .unwrap();
    let mut broker = Broker::start(tmp.path(), true);
    let sub = Subscriber::start(broker.port, "test-sub-persistent", "earshot/#", true);
    let jsonl = tmp.path().join("events.jsonl");
    let child = earshot(&input, broker.port, &jsonl, Some(&cfg), true);
    std::thread::sleep(Duration::from_secs_f64(down_at));
    broker.stop();
    eprintln!("broker stopped at {down_at} s");
    std::thread::sleep(Duration::from_secs_f64(down_for));
    broker.restart();
    eprintln!("broker restarted at {} s", down_at + down_for);
    let logs = finish(child);
    std::thread::sleep(Duration::from_millis(500));
    RestartOutcome {
        produced: read_jsonl(&jsonl),
        msgs: sub.msgs(),
        logs,
    }
}

#[test]
fn broker_restart_loses_nothing() {
    let o = run_with_broker_restart(10_000, 5.0, 4.0);
    let want: BTreeSet<u64> = o.produced.iter().map(|v| u(&v["seq"])).collect();
    let (got, n) = received_seqs(&o.msgs);
    let last = o.produced.last().expect("events");
    assert_eq!(last["event"], "health");
    let h = mqtt_health(last);
    let closed = mqtt_closed(&o.logs);
    eprintln!(
        "restart: produced {} events, subscriber got {} distinct ({} messages, {} duplicates); \
         last health event: {h}; after close: {closed}",
        want.len(),
        got.len(),
        n,
        n - got.len()
    );
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "seqs never received: {missing:?}");
    assert!(
        want.len() >= 15,
        "expected a steady stream of SPL summaries"
    );
    assert_eq!(u(&h["dropped_backlog_full"]), 0);
    assert_eq!(u(&h["failed"]), 0);
    // The last health event was taken before it was itself offered: it accounts for every
    // event but itself.
    assert_eq!(
        u(&h["delivered"]) + u(&h["pending"]),
        want.len() as u64 - 1,
        "{h}"
    );
    // After the flush, every event including that health event is confirmed.
    assert_eq!(u(&closed["delivered"]), want.len() as u64, "{closed}");
    assert_eq!(u(&closed["pending"]), 0);
    assert_eq!(u(&closed["dropped_backlog_full"]), 0);
    let status: Vec<&str> = o
        .msgs
        .iter()
        .filter(|m| m.topic.ends_with("/status"))
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(status.first(), Some(&"online"));
    assert_eq!(status.last(), Some(&"offline"));
    assert!(
        status.iter().filter(|s| **s == "online").count() >= 2,
        "online again after the restart: {status:?}"
    );
}

#[test]
fn backlog_overflow_drops_oldest_and_counts() {
    let o = run_with_broker_restart(5, 4.0, 9.0);
    let want: BTreeSet<u64> = o.produced.iter().map(|v| u(&v["seq"])).collect();
    let (got, n) = received_seqs(&o.msgs);
    let h = mqtt_health(o.produced.last().unwrap());
    let closed = mqtt_closed(&o.logs);
    let dropped = u(&closed["dropped_backlog_full"]);
    eprintln!(
        "overflow: produced {}, subscriber got {} distinct ({} messages), dropped {dropped}; \
         last health event: {h}; after close: {closed}",
        want.len(),
        got.len(),
        n
    );
    assert!(u(&h["dropped_backlog_full"]) > 0, "{h}");
    assert_eq!(
        u(&h["dropped_backlog_full"]),
        dropped,
        "drops only while down"
    );
    assert_eq!(got.len() as u64 + dropped, want.len() as u64);
    assert_eq!(u(&closed["delivered"]) + dropped, want.len() as u64);
    // The dropped ones are the oldest of the outage: received seqs are all of the produced
    // ones but one contiguous run.
    let missing: Vec<u64> = want.difference(&got).copied().collect();
    assert!(
        missing.windows(2).all(|w| w[1] == w[0] + 1),
        "dropped seqs should be one run (the oldest while down): {missing:?}"
    );
}

#[test]
fn latency_from_event_time_to_subscriber() {
    let clip = glass_clip();
    let mut lat_ms = Vec::new();
    for run in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let broker = Broker::start(tmp.path(), false);
        let sub = Subscriber::start(broker.port, "test-sub", "earshot/#", false);
        let jsonl = tmp.path().join("events.jsonl");
        finish(earshot(&clip, broker.port, &jsonl, None, true));
        std::thread::sleep(Duration::from_millis(200));
        let topic = format!("earshot/{DEVICE}/events/glass_break");
        let m = sub
            .msgs()
            .into_iter()
            .find(|m| m.topic == topic && m.payload.contains("\"detection_start\""))
            .expect("a glass_break detection_start");
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        let t = humantime::parse_rfc3339(v["time"].as_str().unwrap()).unwrap();
        let ms = match m.at.duration_since(t) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -e.duration().as_secs_f64() * 1000.0,
        };
        eprintln!(
            "latency run {run}: detection_start time {} (stream {:.3} s, emitted_s {}), received {:.1} ms later",
            v["time"], v["stream_time_s"].as_f64().unwrap_or(0.0), v["emitted_s"], ms
        );
        lat_ms.push(ms);
    }
    eprintln!("latency ms: {lat_ms:?}");
    assert!(
        lat_ms.iter().all(|&ms| ms > -50.0 && ms < 5000.0),
        "latency out of sanity bounds: {lat_ms:?}"
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for 127.0.0.1 / localhost, signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=earshot test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// TLS with a private CA and a broker that wants a user name and password: events arrive with
/// the right password; with a wrong one the broker refuses, nothing is delivered, the run still
/// ends cleanly, and the password appears in no log line.
#[test]
fn tls_with_a_private_ca_and_a_password() {
    let clip = glass_clip();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_certificates(dir);
    let st = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(dir.join("passwd"))
        .args(["earshot", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto)");
    assert!(st.success());
    let (plain, tls) = (free_port(), free_port());
    let d = dir.display();
    // A plain anonymous listener for the test's subscriber, a TLS one with passwords for earshot.
    let conf = format!(
        "per_listener_settings true\npersistence false\nuser root\n\
         listener {plain} 127.0.0.1\nallow_anonymous true\n\
         listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n\
         cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
    );
    let _broker = Broker::start_with(dir, tls, &conf);
    let sub = Subscriber::start(plain, "tls-test-sub", "earshot/#", false);

    for (password, should_deliver) in [("s3cret-pass", true), ("wrong-pass-123", false)] {
        let cfg = dir.join(format!("earshot-{should_deliver}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[sinks]\nflush_timeout_s = 2\n[sinks.mqtt]\ntls = true\nca_file = \"{d}/ca.crt\"\n\
                 username = \"earshot\"\npassword = \"{password}\"\nreconnect_max_s = 1\n"
            ),
        )
        .unwrap();
        let jsonl = dir.join(format!("events-{should_deliver}.jsonl"));
        let before = sub.msgs().len();
        let mut child = earshot(&clip, tls, &jsonl, Some(&cfg), false);
        let stderr = child.stderr.take().unwrap();
        let log = std::io::read_to_string(stderr).unwrap_or_default();
        let status = child.wait().unwrap();
        assert!(status.success(), "{log}");
        assert!(
            !log.contains(password),
            "the password is in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let got: Vec<Msg> = sub.msgs()[before..].to_vec();
        let starts = got
            .iter()
            .filter(|m| m.topic == format!("earshot/{DEVICE}/events/glass_break"))
            .filter(|m| m.payload.contains("\"detection_start\""))
            .count();
        let logs: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let closed = mqtt_closed(&logs);
        if should_deliver {
            assert_eq!(starts, 1, "over TLS: {got:?}\n{log}");
            assert_eq!(
                u(&closed["delivered"]),
                read_jsonl(&jsonl).len() as u64,
                "{closed}"
            );
        } else {
            assert_eq!(starts, 0, "a refused client must not publish: {got:?}");
            assert_eq!(u(&closed["delivered"]), 0, "{closed}");
            assert!(
                log.to_lowercase().contains("authoriz"),
                "the refusal is logged: {log}"
            );
        }
    }
}
