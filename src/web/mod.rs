//! The settings page, live view and JSON API of `earshot run` (`[http]`, `--http ADDR`).
//!
//! A small HTTP/1.1 server ([`tiny_http`]) on its own thread, off unless `http.listen` is set.
//! Loopback by default; an address beyond loopback is refused by [`Config::validate`] without
//! credentials. On an Axis device the page is the app's `settingPage` and the device's web
//! server forwards `/local/earshot/api/…` here (the manifest's `reverseProxy`), with the
//! device's own login in front.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /`, `/app.js`, `/style.css` | the page, embedded in the binary (no network needed) |
//! | `GET /api/settings` | the tunable settings ([`settings::SettingsStore::view`]) |
//! | `PUT /api/settings` | an update, validated like the file; 400 with every problem by key |
//! | `GET /api/status` | input, rate, counters, CPU share of the pipeline, sinks, model ([`live::Status`]) |
//! | `GET /api/events?limit=N` | the last N events (at most 200), oldest first |
//! | `POST /api/test/<class>` | a test detection of `<class>` (`"test": true`) through every sink and rule |
//! | `GET /api/live` | Server-Sent Events: `level` (every 0.1 s of audio), `patch` (per patch), `event`, and `ping` after 10 s without anything |
//!
//!
//! `GET /view/settings`, `/view/status`, `/view/events` and `/view/live` are the same as under
//! `/api/`, and any other method there is refused: a camera's proxy gives `/view/` to viewers
//! and `/api/` to administrators, so watching and changing have the device's own access levels.
//!
//! Authentication (`http.bearer_token`, or `http.username`/`http.password`) covers every
//! `/api/` path; the static page holds no data and is always served. A token may also come as
//! `?access_token=` (browsers cannot give an `EventSource` a header).

pub mod live;
pub mod settings;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::classes::EarshotClass;
use crate::config::{Config, ConfigError, HttpConfig, Secret};
use live::{HubSink, LiveHub, LiveTap};
use settings::SettingsStore;

/// The page, embedded at build time.
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Largest request body accepted, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Test requests waiting for the pipeline; more get 503.
const TEST_QUEUE: usize = 16;
/// A quiet live stream sends `event: ping` this often, so a page can tell a stalled
/// connection from a quiet input (comments are invisible to `EventSource`).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// `http.listen` could not be bound.
    #[error("http.listen = {listen:?}: cannot listen: {reason}")]
    Bind {
        /// The address as configured.
        listen: String,
        /// Why.
        reason: String,
    },
    /// `http.listen` is not set.
    #[error("http.listen is not set")]
    NotConfigured,
    /// A thread could not be started.
    #[error("starting the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

enum Auth {
    Open,
    Bearer(Secret),
    Basic(Secret),
}

impl Auth {
    fn from_config(h: &HttpConfig) -> Self {
        if let Some(t) = &h.bearer_token {
            Auth::Bearer(t.clone())
        } else if let (Some(u), Some(p)) = (&h.username, &h.password) {
            let creds =
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.expose()));
            Auth::Basic(Secret::new(creds))
        } else {
            Auth::Open
        }
    }

    fn allows(&self, req: &Request) -> bool {
        let header = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().trim());
        match self {
            Auth::Open => true,
            Auth::Bearer(t) => {
                let given = header
                    .and_then(|v| strip_scheme(v, "Bearer"))
                    .or_else(|| query_param(req.url(), "access_token"));
                given.is_some_and(|g| same(g.as_bytes(), t.expose().as_bytes()))
            }
            Auth::Basic(c) => header
                .and_then(|v| strip_scheme(v, "Basic"))
                .is_some_and(|g| same(g.as_bytes(), c.expose().as_bytes())),
        }
    }

    fn challenge(&self) -> Option<Header> {
        match self {
            Auth::Open => None,
            Auth::Bearer(_) => header("WWW-Authenticate", "Bearer realm=\"earshot\""),
            Auth::Basic(_) => header(
                "WWW-Authenticate",
                "Basic realm=\"earshot\", charset=\"UTF-8\"",
            ),
        }
    }
}

fn strip_scheme<'a>(v: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = v.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Kernel send buffer of every connection, bytes (Linux doubles it for its bookkeeping). Set on
/// the listening socket, so accepted connections inherit it and autotuning (up to 4 MB per
/// connection) is off: what a live-view client does not read stays in Earshot's bounded
/// queue, where it is counted and dropped, not in the kernel.
pub const SEND_BUFFER: usize = 64 * 1024;

/// A listening socket on `addr` with [`SEND_BUFFER`].
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The running server: its address, the hub the pipeline publishes to, and the channels the
/// pipeline reads settings and test requests from.
pub struct WebServer {
    addr: SocketAddr,
    hub: Arc<LiveHub>,
    store: Arc<Mutex<SettingsStore>>,
    updates: Receiver<Config>,
    tests: Receiver<EarshotClass>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<SettingsStore>) -> MutexGuard<'_, SettingsStore> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WebServer {
    /// Binds `http.listen` and starts serving.
    ///
    /// # Errors
    /// [`WebError`]: the address is not set or cannot be bound (in use, not local), or a thread
    /// could not start.
    pub fn start(http: &HttpConfig, store: SettingsStore) -> Result<Self, WebError> {
        let listen = http.listen.clone().ok_or(WebError::NotConfigured)?;
        let bind_error = |reason: String| WebError::Bind {
            listen: listen.clone(),
            reason,
        };
        let addr: SocketAddr = listen
            .parse()
            .map_err(|_| bind_error("expected ADDRESS:PORT".into()))?;
        let listener = bind(addr).map_err(|e| bind_error(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| bind_error(e.to_string()))?;
        let server =
            Server::from_listener(listener, None).map_err(|e| bind_error(e.to_string()))?;
        let hub = Arc::new(LiveHub::start().map_err(|e| WebError::Thread("live-hub", e))?);
        let store = Arc::new(Mutex::new(store));
        let (updates_tx, updates) = sync_channel(16);
        let (tests_tx, tests) = sync_channel(TEST_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Context {
            auth: Auth::from_config(http),
            hub: Arc::clone(&hub),
            store: Arc::clone(&store),
            updates: updates_tx,
            tests: tests_tx,
            max_clients: http.stream_clients,
            stream_threads: Arc::new(AtomicUsize::new(0)),
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(req)) => ctx.handle(req),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "http: accepting a request failed")
                            }
                        }
                    }
                })
                .map_err(|e| WebError::Thread("http", e))?
        };
        tracing::info!(%addr, auth = http.has_auth(), "settings page and API listening");
        Ok(Self {
            addr,
            hub,
            store,
            updates,
            tests,
            stop,
            thread: Some(thread),
        })
    }

    /// The address bound (with the actual port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pipeline's publisher of levels, patch scores and status.
    pub fn tap(&self) -> LiveTap {
        self.hub.tap()
    }

    /// A sink for the live view's events (one per run of the pipeline).
    pub fn event_sink(&self) -> HubSink {
        self.hub.event_sink()
    }

    /// Configurations accepted by `PUT /api/settings`, for [`crate::run::run_with`].
    pub fn updates(&self) -> &Receiver<Config> {
        &self.updates
    }

    /// Classes of `POST /api/test/<class>`, for [`crate::run::run_with`].
    pub fn tests(&self) -> &Receiver<EarshotClass> {
        &self.tests
    }

    /// Records the configuration a restarted pipeline runs with.
    pub fn set_current(&self, config: Config) {
        lock(&self.store).set_current(config);
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Context {
    auth: Auth,
    hub: Arc<LiveHub>,
    store: Arc<Mutex<SettingsStore>>,
    updates: SyncSender<Config>,
    tests: SyncSender<EarshotClass>,
    max_clients: usize,
    stream_threads: Arc<AtomicUsize>,
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn with_headers(mut r: Reply, content_type: &str) -> Reply {
    for (k, v) in [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ] {
        if let Some(h) = header(k, v) {
            r.add_header(h);
        }
    }
    r
}

fn json_reply(status: u16, body: &Value) -> Reply {
    with_headers(
        Response::from_string(body.to_string()).with_status_code(status),
        "application/json",
    )
}

fn errors_reply(status: u16, errors: &[ConfigError]) -> Reply {
    let list: Vec<Value> = errors
        .iter()
        .map(|e| json!({"key": e.key, "value": e.value, "expected": e.expected}))
        .collect();
    json_reply(status, &json!({ "errors": list }))
}

fn message(status: u16, text: &str) -> Reply {
    json_reply(status, &json!({ "error": text }))
}

impl Context {
    fn handle(&self, mut req: Request) {
        let url = req.url().to_owned();
        let mut path = url.split('?').next().unwrap_or("").to_owned();
        let method = req.method().clone();
        // `/view/…`: the reading half of the API, for viewers (a camera proxies it with viewer
        // access, `/api/` with admin access).
        if let Some(rest) = path.strip_prefix("/view/") {
            if !matches!(method, Method::Get | Method::Head) {
                let _ = req.respond(message(
                    405,
                    "/view/ is read-only; changes and tests go through /api/",
                ));
                return;
            }
            if !matches!(rest, "settings" | "status" | "events" | "live") {
                let _ = req.respond(message(404, &format!("no view path {path:?}")));
                return;
            }
            path = format!("/api/{rest}");
        }
        if !path.starts_with("/api/") {
            let page = match path.as_str() {
                "/" | "/index.html" => Some((INDEX_HTML, "text/html; charset=utf-8")),
                "/app.js" => Some((APP_JS, "text/javascript; charset=utf-8")),
                "/style.css" => Some((STYLE_CSS, "text/css; charset=utf-8")),
                _ => None,
            };
            let reply = match (page, &method) {
                (Some((body, ct)), Method::Get | Method::Head) => {
                    let mut r = with_headers(Response::from_string(body), ct);
                    if let Some(h) = header(
                        "Content-Security-Policy",
                        "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'",
                    ) {
                        r.add_header(h);
                    }
                    r
                }
                (Some(_), _) => message(405, "only GET"),
                (None, _) => message(404, &format!("no page {path:?}")),
            };
            let _ = req.respond(reply);
            return;
        }
        if !self.auth.allows(&req) {
            let mut r = message(401, "authentication required");
            if let Some(h) = self.auth.challenge() {
                r.add_header(h);
            }
            let _ = req.respond(r);
            return;
        }
        let reply = match (&method, path.as_str()) {
            (Method::Get, "/api/settings") => json_reply(200, &lock(&self.store).view()),
            (Method::Put, "/api/settings") => self.put_settings(&mut req),
            (Method::Get, "/api/status") => match self.hub.status_json() {
                Some(s) => with_headers(Response::from_string(s), "application/json"),
                None => message(503, "the pipeline has not started yet"),
            },
            (Method::Get, "/api/events") => {
                let limit = query_param(&url, "limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(50)
                    .min(live::RECENT_EVENTS);
                with_headers(
                    Response::from_string(format!(
                        "{{\"events\":{}}}",
                        self.hub.events_json(limit)
                    )),
                    "application/json",
                )
            }
            (Method::Get, "/api/live") => {
                self.stream(req);
                return;
            }
            (Method::Post, p) if p.starts_with("/api/test/") => {
                let name = &p["/api/test/".len()..];
                match EarshotClass::from_name(name) {
                    Some(class) => match self.tests.try_send(class) {
                        Ok(()) => {
                            tracing::info!(class = class.name(), "test event requested");
                            json_reply(202, &json!({"class": class.name(), "test": true}))
                        }
                        Err(TrySendError::Full(_)) => {
                            message(503, "too many test requests waiting")
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            message(503, "the pipeline is not running")
                        }
                    },
                    None => message(
                        404,
                        &format!(
                            "no class {name:?} (classes: {})",
                            EarshotClass::ALL.map(EarshotClass::name).join(", ")
                        ),
                    ),
                }
            }
            (_, "/api/settings") => message(405, "GET or PUT"),
            (_, "/api/status" | "/api/events" | "/api/live") => message(405, "only GET"),
            (_, p) if p.starts_with("/api/test/") => message(405, "only POST"),
            _ => message(404, &format!("no API path {path:?}")),
        };
        let _ = req.respond(reply);
    }

    fn put_settings(&self, req: &mut Request) -> Reply {
        let mut body = Vec::new();
        let read = req
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body);
        if read.is_err() {
            return message(400, "could not read the request body");
        }
        if body.len() > MAX_BODY {
            return message(413, &format!("the body is larger than {MAX_BODY} bytes"));
        }
        let update: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return errors_reply(
                    400,
                    &[ConfigError {
                        key: String::new(),
                        value: String::new(),
                        expected: format!("not valid JSON: {e}"),
                    }],
                )
            }
        };
        let mut store = lock(&self.store);
        match store.apply(&update) {
            Ok(config) => {
                tracing::info!(update = %update, "settings changed through the API");
                if store.publishes_updates() && self.updates.try_send(config).is_err() {
                    tracing::warn!("the pipeline did not take the new settings yet; they apply at its next start");
                }
                json_reply(200, &store.view())
            }
            Err(errors) => {
                tracing::warn!(update = %update, problems = errors.len(), "settings update refused");
                errors_reply(400, &errors)
            }
        }
    }

    fn stream(&self, req: Request) {
        // Threads of clients evicted from the hub but still connected count too.
        if self.stream_threads.load(Ordering::Relaxed) >= 2 * self.max_clients {
            let _ = req.respond(message(503, "too many live-view clients"));
            return;
        }
        let Some(rx) = self.hub.subscribe(self.max_clients) else {
            let _ = req.respond(message(503, "too many live-view clients"));
            return;
        };
        let threads = Arc::clone(&self.stream_threads);
        threads.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("http-live".into())
            .spawn(move || {
                let mut w = req.into_writer();
                let _ = write_stream(&mut *w, &rx);
                threads.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            self.stream_threads.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot start a live-view thread");
        }
    }
}

fn write_stream(w: &mut dyn Write, rx: &Receiver<Arc<str>>) -> std::io::Result<()> {
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 2000\n\n",
    )?;
    w.flush()?;
    loop {
        match rx.recv_timeout(KEEP_ALIVE) {
            Ok(frame) => {
                w.write_all(frame.as_bytes())?;
                // Send what is queued in one write when the client fell behind.
                for more in rx.try_iter().take(64) {
                    w.write_all(more.as_bytes())?;
                }
            }
            Err(RecvTimeoutError::Timeout) => w.write_all(b"event: ping\ndata: {}\n\n")?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        w.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_and_schemes_parse() {
        assert_eq!(
            query_param("/api/live?access_token=abc&x=1", "access_token"),
            Some("abc")
        );
        assert_eq!(query_param("/api/live", "access_token"), None);
        assert_eq!(strip_scheme("bearer  tok", "Bearer"), Some("tok"));
        assert_eq!(strip_scheme("Basic dXNlcjpwdw==", "Bearer"), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn the_page_is_small_and_needs_no_network() {
        let total = INDEX_HTML.len() + APP_JS.len() + STYLE_CSS.len();
        assert!(total < 200 * 1024, "{total} bytes");
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for remote in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!text.contains(remote), "{name} refers to {remote}");
            }
        }
    }
}
