//! A fake Axis device for the VAPIX backend's tests: a real HTTP/1.1 server (tiny_http) on
//! 127.0.0.1, on its own thread, that checks Basic (RFC 7617) and Digest (RFC 7616: MD5 and
//! SHA-256, `qop=auth`, nonce, opaque, `nc` counting up) itself with `md-5` and `sha2`, so the
//! client's Digest code is checked independently of the `digest_auth` crate it uses.
//!
//! Answers are shaped as VAPIX documents them:
//! - `POST /axis-cgi/io/portmanagement.cgi`: `{"apiVersion":"1.0","method":"<method>","data":{}}`,
//!   or with [`Knobs::vapix_error`] `{"apiVersion":"1.0","method":"<method>","error":{"code":2200,"message":"..."}}`;
//! - `GET /axis-cgi/virtualinput/activate.cgi` / `deactivate.cgi`: the XML of the device's CGI
//!   (`<VirtualInputResponse ...><Success><ActivateSuccess><StateChanged>true</StateChanged>...`,
//!   errors `<Error><GeneralError><ErrorCode>20</ErrorCode><ErrorDescription>...` with HTTP 200),
//!   as in the device's `virtualinput` CGI script and Axis's OPC UA example client;
//! - `GET /axis-cgi/mediaclip.cgi?action=play&clip=N`: `OK playing=N`; `action=stop`: `OK`;
//! - `GET /axis-cgi/param.cgi?action=list&group=MediaClip`: `root.MediaClip.M<N>.<Field>=...` lines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Which authentication the server demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// No authentication.
    None,
    /// Basic only.
    Basic,
    /// Digest, offering SHA-256 and MD5 challenges (as AXIS OS does).
    Digest,
    /// Digest with MD5 only.
    DigestMd5,
    /// Digest with SHA-256 only.
    DigestSha256,
}

/// Fault and behaviour knobs; change them at any time through [`VapixServer::knobs`].
#[derive(Debug, Clone)]
pub struct Knobs {
    pub scheme: Scheme,
    pub user: String,
    pub password: String,
    /// Answer this many requests with 500 before answering normally.
    pub fail_500: u32,
    /// Answer portmanagement requests with this VAPIX error.
    pub vapix_error: Option<(i64, String)>,
    /// Never answer requests to these paths (held until the server is dropped).
    pub hang_paths: Vec<String>,
    /// Answer 404 to these paths.
    pub missing_paths: Vec<String>,
    /// A nonce is answered `stale=true` after this many uses.
    pub nonce_max_uses: Option<u32>,
    /// The media clips `param.cgi` lists: `(id, name)`.
    pub clips: Vec<(u32, String)>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            scheme: Scheme::None,
            user: "root".into(),
            password: "pass".into(),
            fail_500: 0,
            vapix_error: None,
            hang_paths: Vec::new(),
            missing_paths: Vec::new(),
            nonce_max_uses: None,
            clips: vec![
                (0, "Burglar_Alarm_Short".into()),
                (1, "Camera_clicks".into()),
                (2, "Dog_barking".into()),
            ],
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
    /// `"basic"`, `"digest-md5"`, `"digest-sha-256"` when the credentials were accepted.
    pub auth: Option<String>,
    /// The status answered (0: not answered).
    pub status: u16,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The query parameters in order.
    pub fn query(&self) -> Vec<(String, String)> {
        self.url
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (p.to_owned(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Issued nonces → (uses, highest nc seen).
    nonces: HashMap<String, (u32, u32)>,
    counter: u64,
    held: Vec<tiny_http::Request>,
}

struct Shared {
    knobs: Mutex<Knobs>,
    state: Mutex<State>,
    arrived: Condvar,
}

/// The fake device; stops when dropped.
pub struct VapixServer {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

const REALM: &str = "AXIS_ACCC8E012345";
const OPAQUE: &str = "94619f8a70068b2591c2eed622525b0e";

impl VapixServer {
    /// Starts a server on 127.0.0.1 with a free port.
    pub fn start(knobs: Knobs) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let shared = Arc::new(Shared {
            knobs: Mutex::new(knobs),
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        });
        let (s, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                handle(&sh, request);
            }
        });
        Self {
            server,
            shared,
            thread: Some(thread),
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Changes the knobs.
    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.shared.knobs.lock().unwrap());
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.shared.state.lock().unwrap().requests.clear();
    }

    /// Waits until at least `n` requests arrived or `timeout` passed; the requests then.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().unwrap();
        while state.requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .arrived
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
        state.requests.clone()
    }
}

impl Drop for VapixServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Held requests are dropped here, closing their connections.
        self.shared.state.lock().unwrap().held.clear();
    }
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let knobs = shared.knobs.lock().unwrap().clone();
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_owned(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let path = url.split('?').next().unwrap_or("").to_owned();
    let mut record = Recorded {
        method: method.clone(),
        url: url.clone(),
        headers: headers.clone(),
        body: body.clone(),
        at: Instant::now(),
        auth: None,
        status: 0,
    };

    let mut state = shared.state.lock().unwrap();
    if knobs.hang_paths.contains(&path) {
        state.requests.push(record);
        state.held.push(request);
        shared.arrived.notify_all();
        return;
    }
    let authorization = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone());
    let verdict = check_auth(&knobs, &mut state, &method, &url, authorization.as_deref());
    let (status, content_type, text, extra): (u16, &str, String, Vec<String>) = match verdict {
        Err(stale) => {
            let challenges = challenges(&knobs, &mut state, stale);
            (
                401,
                "text/html",
                "<HTML><BODY>401 Unauthorized</BODY></HTML>".into(),
                challenges,
            )
        }
        Ok(auth) => {
            record.auth = auth;
            let mut knobs_now = shared.knobs.lock().unwrap();
            if knobs_now.fail_500 > 0 {
                knobs_now.fail_500 -= 1;
                (500, "text/plain", "Internal Server Error".into(), vec![])
            } else if knobs.missing_paths.contains(&path) {
                (404, "text/html", "Not Found".into(), vec![])
            } else {
                drop(knobs_now);
                let (s, ct, t) = answer(&knobs, &method, &url, &body);
                (s, ct, t, vec![])
            }
        }
    };
    record.status = status;
    state.requests.push(record);
    shared.arrived.notify_all();
    drop(state);
    let mut response = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header(tiny_http::Header::from_bytes("Content-Type", content_type).unwrap());
    for c in extra {
        response
            .add_header(tiny_http::Header::from_bytes("WWW-Authenticate", c.as_bytes()).unwrap());
    }
    let _ = request.respond(response);
}

/// The VAPIX answer to an authorised request.
fn answer(knobs: &Knobs, method: &str, url: &str, body: &str) -> (u16, &'static str, String) {
    let path = url.split('?').next().unwrap_or("");
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
    };
    match (method, path) {
        ("POST", "/axis-cgi/io/portmanagement.cgi") => {
            let request: serde_json::Value = match serde_json::from_str(body) {
                Ok(v) => v,
                Err(_) => {
                    return (
                        200,
                        "application/json",
                        r#"{"apiVersion":"1.0","error":{"code":1100,"message":"Internal error: invalid JSON"}}"#.into(),
                    )
                }
            };
            let m = request["method"].as_str().unwrap_or("").to_owned();
            let v = match &knobs.vapix_error {
                Some((code, message)) => {
                    serde_json::json!({"apiVersion":"1.0","method":m,"error":{"code":code,"message":message}})
                }
                None => serde_json::json!({"apiVersion":"1.0","method":m,"data":{}}),
            };
            (200, "application/json", v.to_string())
        }
        (
            "GET",
            "/axis-cgi/virtualinput/activate.cgi" | "/axis-cgi/virtualinput/deactivate.cgi",
        ) => {
            let head = r#"<?xml version="1.0" encoding="utf-8"?>
<VirtualInputResponse SchemaVersion="1.0" xmlns="http://www.axis.com/vapix/http_cgi/virtualinput1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.axis.com/vapix/http_cgi/virtualinput1 http://www.axis.com/vapix/http_cgi/virtualinput1">"#;
            let port_ok = param("port")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| (1..=32).contains(&p));
            let inner = if param("schemaversion").as_deref() != Some("1") {
                "<Error><GeneralError><ErrorCode>30</ErrorCode><ErrorDescription>Bad Request</ErrorDescription></GeneralError></Error>".to_owned()
            } else if !port_ok {
                "<Error><GeneralError><ErrorCode>20</ErrorCode><ErrorDescription>Port must be an integer in the range [1..32]</ErrorDescription></GeneralError></Error>".to_owned()
            } else {
                let what = if path.ends_with("deactivate.cgi") {
                    "Deactivate"
                } else {
                    "Activate"
                };
                format!("<Success><{what}Success><StateChanged>true</StateChanged></{what}Success></Success>")
            };
            (
                200,
                "text/xml",
                format!("{head}\n\t{inner}\n</VirtualInputResponse>"),
            )
        }
        ("GET", "/axis-cgi/mediaclip.cgi") => match param("action").as_deref() {
            Some("play") => match param("clip") {
                Some(c) => (200, "text/plain", format!("OK playing={c}\r\n")),
                None => (200, "text/plain", "Error: no clip given\r\n".into()),
            },
            Some("stop") => (200, "text/plain", "OK\r\n".into()),
            _ => (200, "text/plain", "Error: invalid action\r\n".into()),
        },
        ("GET", "/axis-cgi/param.cgi") if param("action").as_deref() == Some("list") => {
            let mut text = String::new();
            for (id, name) in &knobs.clips {
                text.push_str(&format!(
                    "root.MediaClip.M{id}.Location=/etc/audioclips/{name}.mp3\nroot.MediaClip.M{id}.Name={name}\nroot.MediaClip.M{id}.Type=audio\n"
                ));
            }
            (200, "text/plain", text)
        }
        _ => (404, "text/html", "Not Found".into()),
    }
}

/// `Ok(which scheme)` when the request may pass; `Err(stale)` for a 401 (stale: the Digest
/// was right but its nonce is used up).
fn check_auth(
    knobs: &Knobs,
    state: &mut State,
    method: &str,
    url: &str,
    authorization: Option<&str>,
) -> Result<Option<String>, bool> {
    let Some(authorization) = authorization else {
        return if knobs.scheme == Scheme::None {
            Ok(None)
        } else {
            Err(false)
        };
    };
    match knobs.scheme {
        Scheme::None => Ok(None),
        Scheme::Basic => {
            let expected = format!(
                "Basic {}",
                base64(format!("{}:{}", knobs.user, knobs.password).as_bytes())
            );
            if authorization == expected {
                Ok(Some("basic".into()))
            } else {
                Err(false)
            }
        }
        Scheme::Digest | Scheme::DigestMd5 | Scheme::DigestSha256 => {
            let Some(rest) = authorization.strip_prefix("Digest ") else {
                return Err(false);
            };
            let p = parse_params(rest);
            let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
            let algorithm = match get("algorithm") {
                "" | "MD5" => "MD5",
                "SHA-256" => "SHA-256",
                _ => return Err(false),
            };
            let allowed = match knobs.scheme {
                Scheme::DigestMd5 => algorithm == "MD5",
                Scheme::DigestSha256 => algorithm == "SHA-256",
                _ => true,
            };
            let h = |s: &str| {
                if algorithm == "MD5" {
                    md5_hex(s)
                } else {
                    sha256_hex(s)
                }
            };
            if !allowed
                || get("username") != knobs.user
                || get("realm") != REALM
                || get("uri") != url
                || get("qop") != "auth"
                || get("opaque") != OPAQUE
                || get("cnonce").is_empty()
            {
                return Err(false);
            }
            let nonce = get("nonce").to_owned();
            let Some(&(uses, last_nc)) = state.nonces.get(&nonce) else {
                return Err(false);
            };
            let Ok(nc) = u32::from_str_radix(get("nc"), 16) else {
                return Err(false);
            };
            if get("nc").len() != 8 || nc <= last_nc {
                return Err(false);
            }
            let ha1 = h(&format!("{}:{REALM}:{}", knobs.user, knobs.password));
            let ha2 = h(&format!("{method}:{url}"));
            let expected = h(&format!(
                "{ha1}:{nonce}:{}:{}:auth:{ha2}",
                get("nc"),
                get("cnonce")
            ));
            if get("response") != expected {
                return Err(false);
            }
            if knobs.nonce_max_uses.is_some_and(|max| uses >= max) {
                state.nonces.remove(&nonce);
                return Err(true);
            }
            state.nonces.insert(nonce, (uses + 1, nc));
            Ok(Some(if algorithm == "MD5" {
                "digest-md5".into()
            } else {
                "digest-sha-256".into()
            }))
        }
    }
}

/// `WWW-Authenticate` values for a 401.
fn challenges(knobs: &Knobs, state: &mut State, stale: bool) -> Vec<String> {
    let mut nonce = || {
        state.counter += 1;
        let n =
            sha256_hex(&format!("nonce {} {:?}", state.counter, Instant::now()))[..32].to_owned();
        state.nonces.insert(n.clone(), (0, 0));
        n
    };
    let stale = if stale { ", stale=true" } else { "" };
    let digest = |algorithm: &str, nonce: String| {
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm={algorithm}, qop=\"auth\", opaque=\"{OPAQUE}\"{stale}")
    };
    match knobs.scheme {
        Scheme::None => vec![],
        Scheme::Basic => vec![format!("Basic realm=\"{REALM}\"")],
        Scheme::DigestMd5 => vec![digest("MD5", nonce())],
        Scheme::DigestSha256 => vec![digest("SHA-256", nonce())],
        Scheme::Digest => {
            let (a, b) = (nonce(), nonce());
            vec![digest("SHA-256", a), digest("MD5", b)]
        }
    }
}

/// `key=value` and `key="value"` pairs of a Digest header (quoted values may hold commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_owned();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.insert(key, value);
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                A[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}
