//! The webhook sink of `earshot run` against a real HTTP server in this process (tiny_http on
//! 127.0.0.1): what is POSTed, authentication, retries, refusals and a receiver that hangs.
//!
//! The runs read a real glass clip of `../shared/eval` (they need `../shared`); the tests of the
//! sink alone (`sink_*`) make their own events.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot::events::{Event, EventBody, Health, EVENT_SCHEMA};
use earshot::sinks::webhook::WebhookSink;
use earshot::sinks::SinkHandle;
use serde_json::Value;

/// One request the test server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
    /// The `X-Earshot-Seq` header, parsed.
    seq: Option<u64>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the server answers: status and extra headers, given the request and how many requests
/// with the same path and `X-Earshot-Seq` came before it (0 for the first).
type Responder = dyn Fn(&Received, usize) -> (u16, Vec<(&'static str, &'static str)>) + Send + Sync;

/// A tiny_http server on 127.0.0.1 recording every request.
struct TestServer {
    base: String,
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(respond: Box<Responder>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("test server binds"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let thread = {
            let server = Arc::clone(&server);
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let headers: BTreeMap<String, String> = request
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.as_str().to_owned(),
                            )
                        })
                        .collect();
                    let r = Received {
                        method: request.method().as_str().to_owned(),
                        path: request.url().to_owned(),
                        seq: headers.get("x-earshot-seq").and_then(|s| s.parse().ok()),
                        headers,
                        body,
                    };
                    let before = {
                        let mut all = received.lock().unwrap();
                        let n = all
                            .iter()
                            .filter(|o| o.path == r.path && o.seq == r.seq)
                            .count();
                        all.push(r.clone());
                        n
                    };
                    let (status, extra) = respond(&r, before);
                    let mut response = tiny_http::Response::from_string(format!("status {status}"))
                        .with_status_code(status);
                    for (k, v) in extra {
                        response = response.with_header(
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                        );
                    }
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            base: format!("http://127.0.0.1:{port}"),
            server,
            received,
            thread: Some(thread),
        }
    }

    /// A server answering every request with `status`.
    fn always(status: u16) -> Self {
        Self::start(Box::new(move |_, _| (status, Vec::new())))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The requests received on `path`, in order.
    fn received(&self, path: &str) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Requests on `path` per `X-Earshot-Seq`.
    fn count_per_seq(&self, path: &str) -> BTreeMap<u64, usize> {
        let mut m = BTreeMap::new();
        for r in self.received(path) {
            let seq = r.seq.expect("every request carries X-Earshot-Seq");
            *m.entry(seq).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A glass clip of `../shared/eval`: the first in `labels.csv` order, whose run is known to start
/// and stop a glass_break detection.
fn glass_clip() -> Option<PathBuf> {
    let shared = common::shared_dir()?;
    let clips = common::eval_clips(&shared);
    let clip = clips.iter().find(|c| c.class == "glass_break").expect(
        "labels.csv lists glass_break clips; this test needs ../shared beside the repository",
    );
    assert!(
        clip.file.is_file(),
        "{} is missing: this test needs ../shared beside the repository",
        clip.file.display()
    );
    Some(clip.file.clone())
}

/// What one `earshot run` did.
struct Run {
    code: i32,
    stderr: String,
    /// The JSON-lines sink's output, one event per line.
    events: Vec<Value>,
    elapsed: Duration,
}

impl Run {
    /// The seqs the run produced, from its JSON lines.
    fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    }

    /// The last line: the final health event.
    fn final_health(&self) -> &Value {
        let last = self.events.last().expect("at least one event");
        assert_eq!(last["event"], "health", "the last line is the health event");
        last
    }

    /// The final health's entry of the sink whose name starts with `webhook:<url>`.
    fn webhook_health(&self, url: &str) -> &Value {
        let want = format!("webhook:{url}");
        self.final_health()["sinks"]
            .as_array()
            .expect("sinks array")
            .iter()
            .find(|s| s["name"].as_str() == Some(want.as_str()))
            .unwrap_or_else(|| panic!("no sink {want} in {}", self.final_health()))
    }

    /// Events offered to every sink before the final health was taken (the final health itself
    /// is offered after it counted the others): all lines but the last.
    fn offered_before_health(&self) -> u64 {
        self.events.len() as u64 - 1
    }
}

/// `earshot run --input wav:CLIP --jsonl FILE --config FILE` with `toml` as the configuration.
fn run(clip: &Path, toml: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let config = dir.path().join("earshot.toml");
    std::fs::write(&config, toml).unwrap();
    let input = format!("wav:{}", clip.display());
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["run", "--input", &input, "--log-format", "json"])
        .arg("--jsonl")
        .arg(&jsonl)
        .arg("--config")
        .arg(&config)
        .args(extra)
        .output()
        .expect("earshot runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr,
        events,
        elapsed,
    }
}

/// A `[[sinks.webhook]]` table.
fn webhook_toml(url: &str, settings: &str) -> String {
    format!("[[sinks.webhook]]\nurl = \"{url}\"\n{settings}\n")
}

/// Standard base64 decoding, for checking basic auth.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("{s:?} is not base64")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn glass_break_events_arrive_once_each_with_their_headers() {
    let Some(clip) = glass_clip() else { return };
    let server = TestServer::always(200);
    let url = server.url("/hook");
    let r = run(&clip, &webhook_toml(&url, ""), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Every event of the run arrived exactly once, as the JSON the JSON-lines sink wrote.
    let got = server.received("/hook");
    let by_seq: BTreeMap<u64, &Received> = got.iter().map(|q| (q.seq.unwrap(), q)).collect();
    assert_eq!(got.len(), by_seq.len(), "a seq arrived twice: {got:#?}");
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        r.seqs(),
        "the server got other seqs than the run wrote"
    );
    for line in &r.events {
        let seq = line["seq"].as_u64().unwrap();
        let q = by_seq[&seq];
        let body: Value = serde_json::from_str(&q.body).expect("the body is JSON");
        assert_eq!(&body, line, "seq {seq}: the body is not the event");
        assert_eq!(q.method, "POST");
        assert_eq!(q.header("content-type"), Some("application/json"));
        assert_eq!(
            q.header("user-agent"),
            Some(concat!("earshot/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(q.header("x-earshot-event"), body["event"].as_str());
        assert_eq!(q.header("x-earshot-seq"), Some(seq.to_string().as_str()));
        assert_eq!(q.header("authorization"), None);
        assert_eq!(body["schema"], EVENT_SCHEMA);
    }

    // The glass break, as documented.
    let of = |kind: &str| {
        got.iter()
            .map(|q| serde_json::from_str::<Value>(&q.body).unwrap())
            .find(|b| b["event"] == kind && b["class"] == "glass_break")
            .unwrap_or_else(|| panic!("no glass_break {kind} among {got:#?}"))
    };
    let start = of("detection_start");
    assert_eq!(start["active"], true);
    assert!(start["start_s"].as_f64().is_some(), "{start}");
    assert!(start["score"].as_f64().is_some(), "{start}");
    assert!(start["device_id"].as_str().is_some(), "{start}");
    assert!(start["time"].as_str().is_some(), "{start}");
    let stop = of("detection_stop");
    assert_eq!(stop["active"], false);
    let (s, e) = (stop["start_s"].as_f64(), stop["end_s"].as_f64());
    assert!(
        matches!((s, e), (Some(s), Some(e)) if e > s),
        "start_s {s:?} end_s {e:?}"
    );
    assert!(stop["seq"].as_u64() > start["seq"].as_u64());

    // The final health counts what was offered before it as delivered or still pending.
    let h = r.webhook_health(&url);
    assert_eq!(h["failed"], 0, "{h}");
    assert_eq!(h["dropped_queue_full"], 0, "{h}");
    assert_eq!(
        h["delivered"].as_u64().unwrap() + h["pending"].as_u64().unwrap(),
        r.offered_before_health(),
        "{h}"
    );
    assert!(
        !r.stderr.contains("did not deliver everything"),
        "{}",
        r.stderr
    );
}

#[test]
fn bearer_token_and_basic_auth_from_the_config_file() {
    let Some(clip) = glass_clip() else { return };
    let server = TestServer::always(204);
    let (bearer, basic) = (server.url("/bearer"), server.url("/basic"));
    let toml = webhook_toml(&bearer, "bearer_token = \"t0ken-s3cret\"")
        + &webhook_toml(
            &basic,
            "username = \"alarm-user\"\npassword = \"pä:ss wörd\"",
        );
    let r = run(&clip, &toml, &["--log-level", "debug"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let got = server.received("/bearer");
    assert_eq!(got.len(), r.events.len());
    for q in &got {
        assert_eq!(q.header("authorization"), Some("Bearer t0ken-s3cret"));
    }
    let got = server.received("/basic");
    assert_eq!(got.len(), r.events.len());
    for q in &got {
        let value = q.header("authorization").expect("an Authorization header");
        let encoded = value
            .strip_prefix("Basic ")
            .unwrap_or_else(|| panic!("not basic auth: {value}"));
        assert_eq!(
            String::from_utf8(base64_decode(encoded)).unwrap(),
            "alarm-user:pä:ss wörd"
        );
    }
    // Credentials stay out of the log, even at debug.
    for secret in ["t0ken-s3cret", "wörd", "YWxhcm0tdXNlcj"] {
        assert!(!r.stderr.contains(secret), "{secret} logged: {}", r.stderr);
    }
}

#[test]
fn retried_until_the_server_accepts() {
    let Some(clip) = glass_clip() else { return };
    let server = TestServer::start(Box::new(|q, before| match (q.path.as_str(), before) {
        // 500 twice, then 200.
        ("/flaky", 0 | 1) => (500, Vec::new()),
        // Busy with Retry-After: 0, which must win over the 30 s backoff.
        ("/busy", 0) => (503, vec![("Retry-After", "0")]),
        ("/busy", 1) => (429, vec![("Retry-After", "0")]),
        _ => (200, Vec::new()),
    }));
    let (flaky, busy) = (server.url("/flaky"), server.url("/busy"));
    let toml = webhook_toml(&flaky, "retries = 3\nbackoff_s = 0.05")
        + &webhook_toml(&busy, "retries = 2\nbackoff_s = 30");
    let r = run(&clip, &toml, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seqs = r.seqs();
    for (path, attempts) in [("/flaky", 3), ("/busy", 3)] {
        let counts = server.count_per_seq(path);
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            seqs,
            "{path}: {counts:?}"
        );
        assert!(
            counts.values().all(|&n| n == attempts),
            "{path}: expected {attempts} requests per event: {counts:?}"
        );
        // Every attempt carries the same event.
        for q in server.received(path) {
            let body: Value = serde_json::from_str(&q.body).unwrap();
            assert_eq!(body["seq"].as_u64(), q.seq);
        }
    }
    // Nothing was still being retried when the run ended (30 s backoffs would have been).
    assert!(
        !r.stderr.contains("did not deliver everything"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed < Duration::from_secs(20), "{:?}", r.elapsed);
}

#[test]
fn server_errors_fail_after_the_retries_and_client_errors_at_once() {
    let Some(clip) = glass_clip() else { return };
    let server = TestServer::start(Box::new(|q, _| match q.path.as_str() {
        "/broken" => (500, Vec::new()),
        _ => (404, Vec::new()),
    }));
    let (broken, missing) = (server.url("/broken"), server.url("/missing"));
    let toml = webhook_toml(&broken, "retries = 1\nbackoff_s = 0.1")
        + &webhook_toml(&missing, "retries = 3\nbackoff_s = 0.1");
    let r = run(&clip, &toml, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seqs = r.seqs();
    for (path, url, attempts) in [("/broken", &broken, 2), ("/missing", &missing, 1)] {
        let counts = server.count_per_seq(path);
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            seqs,
            "{path}: {counts:?}"
        );
        assert!(
            counts.values().all(|&n| n == attempts),
            "{path}: expected {attempts} requests per event: {counts:?}"
        );
        // At the final health every event offered before it had failed or was still being
        // tried (the sink works while the run finishes); none was delivered.
        let h = r.webhook_health(url);
        assert_eq!(h["delivered"], 0, "{h}");
        assert_eq!(h["dropped_queue_full"], 0, "{h}");
        assert_eq!(
            h["failed"].as_u64().unwrap() + h["pending"].as_u64().unwrap(),
            r.offered_before_health(),
            "{h}"
        );
    }
    // The refusal is logged with its status and the URL, once.
    let refusals: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("HTTP 404 Not Found") && l.contains("WARN"))
        .collect();
    assert_eq!(refusals.len(), 1, "{}", r.stderr);
    assert!(refusals[0].contains(&missing), "{}", refusals[0]);
    // Once a failed event is counted, the sink is down (if the first one failed in time).
    let h = r.webhook_health(&missing);
    if h["failed"].as_u64().unwrap() > 0 {
        assert_eq!(h["state"], "down", "{h}");
    }
    // Every event ended within the flush timeout: nothing left pending.
    assert!(
        !r.stderr.contains("did not deliver everything"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_up_the_run() {
    let Some(clip) = glass_clip() else { return };
    // Accepts connections and never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hang", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = Arc::clone(&held);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        });
    }
    let toml = "[sinks]\nflush_timeout_s = 1\n".to_owned()
        + &webhook_toml(&url, "timeout_s = 0.5\nretries = 0");
    let r = run(&clip, &toml, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Each event takes 0.5 s to time out: five or more events need 2.5 s, the run gives the
    // sink 1 s after the input ends and leaves it behind.
    assert!(r.events.len() >= 4, "{:?}", r.events);
    assert!(
        r.elapsed < Duration::from_secs(15),
        "the run took {:?}",
        r.elapsed
    );
    assert!(!held.lock().unwrap().is_empty(), "no connection was made");
    let h = r.webhook_health(&url);
    assert_eq!(h["delivered"], 0, "{h}");
    assert_eq!(
        h["failed"].as_u64().unwrap() + h["pending"].as_u64().unwrap(),
        r.offered_before_health(),
        "{h}"
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("did not deliver everything") && l.contains(&url)),
        "{}",
        r.stderr
    );
}

fn health_event(seq: u64) -> Arc<Event> {
    Arc::new(Event {
        schema: EVENT_SCHEMA,
        device_id: "test".into(),
        seq,
        time: "2024-01-01T00:00:00.000Z".into(),
        stream_time_s: seq as f64,
        active: None,
        test: false,
        body: EventBody::Health(Health::default()),
    })
}

/// Offers `n` events to a webhook sink with `settings` (TOML keys) and closes it, waiting up
/// to 20 s; returns the sink's final health.
fn offer_and_close(url: &str, settings: &str, n: u64) -> earshot::events::SinkHealth {
    let toml = webhook_toml(url, settings);
    let config = earshot::config::Config::from_toml(&toml).expect("valid configuration");
    let sink = WebhookSink::new(&config.sinks.webhook[0]).expect("sink builds");
    let mut handle = SinkHandle::spawn(Box::new(sink), 64).unwrap();
    for seq in 0..n {
        handle.offer(&health_event(seq));
    }
    assert!(handle.close(Instant::now() + Duration::from_secs(20)));
    handle.health()
}

#[test]
fn sink_counts_every_event_failed_after_the_retries() {
    let server = TestServer::always(500);
    let url = server.url("/broken");
    let h = offer_and_close(&url, "retries = 1\nbackoff_s = 0.1", 5);
    assert_eq!(
        (h.state, h.delivered, h.failed, h.pending),
        ("down", 0, 5, 0),
        "{h:?}"
    );
    let counts = server.count_per_seq("/broken");
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|&n| n == 2), "{counts:?}");
}

#[test]
fn sink_fails_refused_events_at_once_and_comes_back_up() {
    // 401 for the first two events, then accepted.
    let server = TestServer::start(Box::new(|q, _| match q.seq {
        Some(0 | 1) => (401, Vec::new()),
        _ => (200, Vec::new()),
    }));
    let url = server.url("/auth");
    let h = offer_and_close(&url, "retries = 5\nbackoff_s = 5", 4);
    assert_eq!(
        (h.state, h.delivered, h.failed, h.pending),
        ("up", 2, 2, 0),
        "{h:?}"
    );
    assert!(server.count_per_seq("/auth").values().all(|&n| n == 1));
}

#[test]
fn sink_counts_an_unreachable_server_as_failed() {
    // A port that was just free: connection refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/nobody");
    let started = Instant::now();
    let h = offer_and_close(&url, "retries = 2\nbackoff_s = 0.05", 3);
    assert_eq!(
        (h.state, h.delivered, h.failed, h.pending),
        ("down", 0, 3, 0),
        "{h:?}"
    );
    // Two backoffs of 0.05 and 0.1 s per event.
    assert!(started.elapsed() < Duration::from_secs(5));
}
