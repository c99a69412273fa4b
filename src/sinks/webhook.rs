//! Webhook sink: every event is POSTed as JSON to a URL, with retries and backoff.
//!
//! # What is sent
//!
//! One `POST` per event to `url`, the body being the event's JSON ([`Event::to_json`], the
//! documented `earshot.event.v1` object, the same line the JSON-lines sink writes). Headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `User-Agent` | `earshot/<version>` ([`USER_AGENT`]) |
//! | `X-Earshot-Event` | the event kind: `detection_start`, `detection_stop`, `spl_summary`, `health` … |
//! | `X-Earshot-Seq` | the event's `seq` (decimal), to deduplicate retried deliveries |
//! | `Authorization` | `Bearer <bearer_token>`, or `Basic <base64(username:password)>`, when configured |
//!
//! The `X-Earshot-*` headers let a receiver route or deduplicate without parsing the body. A
//! retried event carries the same `X-Earshot-Seq`: a receiver whose 2xx got lost sees it again.
//! Redirects are not followed (a `3xx` is a failure: POSTing an alarm to wherever a redirect
//! points is not what anyone configured). The usual `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`
//! environment variables are honoured.
//!
//! # Retry policy
//!
//! Each attempt has `timeout_s` for everything: name lookup, connect, TLS, sending, the
//! response. What happens after an attempt:
//!
//! | outcome | then |
//! |---|---|
//! | `2xx` | delivered |
//! | `408`, `429`, `5xx` | retried |
//! | timeout, connection refused/reset/closed, name lookup failed | retried |
//! | other `4xx` (`400`, `401`, `403`, `404` …), `1xx`, `3xx` | failed at once |
//! | invalid request or TLS failure (bad certificate …) | failed at once |
//!
//! Retry `n` (1, 2, …, up to `retries`) waits `backoff_s · 2^(n-1)`, so 1 s, 2 s, 4 s with the
//! defaults; a single wait is capped at 60 s (or at `backoff_s` when that is longer). On `429`
//! and `503` a `Retry-After` of whole seconds replaces the backoff, capped at 60 s. After the
//! last retry the event is failed. One event therefore holds the sink for at most
//! `(retries + 1) · timeout_s` plus the waits; events arriving meanwhile wait in the sink's
//! queue (and are dropped, counted, when it is full).
//!
//! At shutdown the framework gives every sink `sinks.flush_timeout_s` ([`super::SinkHandle::close`]);
//! a webhook still retrying then is left behind and what it held counts as `pending`. The
//! retry loop cannot see that deadline ([`Sink::deliver`] does not get it), which is why its
//! waits are bounded as above and never longer.
//!
//! # Counting and state
//!
//! Each event ends in exactly one of `delivered` (a 2xx) or `failed` (refused, or still
//! failing after the retries). The sink is `up` after a delivery and `down` after a failure;
//! the change is logged once (warn going down, info coming back up) with the URL and the
//! reason, not for every event. A refusal with a different status while down is logged at warn
//! again; the rest is at debug. Logs and the sink's name show the URL without a password in it
//! and without its query string; the token and password are never logged.
//!
//! Response bodies are not needed: at most 64 KiB is read (to keep the connection reusable, and
//! the first 200 characters go into the warning when the event is refused); bodies that are
//! larger, not UTF-8 or compressed wrongly change nothing.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::http::{HeaderValue, Uri};
use ureq::Agent;

use super::{Sink, SinkError, SinkState, SinkStats};
use crate::config::WebhookConfig;
use crate::events::Event;

/// The `User-Agent` header of every request: `earshot/<crate version>`.
pub const USER_AGENT: &str = concat!("earshot/", env!("CARGO_PKG_VERSION"));

/// Longest wait a `Retry-After` header can impose, and the cap of a single backoff wait
/// (unless `backoff_s` itself is longer).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Bytes of a response body read at most.
const BODY_LIMIT: u64 = 64 * 1024;

/// Characters of a refusing response's body quoted in the log.
const BODY_IN_LOG: usize = 200;

/// The webhook sink: POSTs every event to one URL (see the [module documentation](self)).
pub struct WebhookSink {
    url: String,
    shown_url: String,
    agent: Agent,
    authorization: Option<HeaderValue>,
    timeout_s: f64,
    retries: u32,
    backoff_s: f64,
    /// State last logged, and the reason of the last failure logged at warn.
    logged_state: SinkState,
    logged_reason: String,
    failed_while_down: u64,
}

impl WebhookSink {
    /// A sink POSTing every event to `config.url`, with the HTTP client built and the
    /// authorization header prepared. Nothing is sent until the first event.
    ///
    /// # Errors
    /// [`SinkError::Other`], naming the URL (without credentials): the URL is not an `http://`
    /// or `https://` URL with a host, `timeout_s` is not a positive number of seconds, or the
    /// token or user name and password cannot be sent in a header (control characters).
    pub fn new(config: &WebhookConfig) -> Result<Self, SinkError> {
        let shown_url = redact_url(&config.url);
        let fail = |what: &str| SinkError::Other(format!("webhook {shown_url}: {what}"));
        let uri: Uri = config.url.parse().map_err(|_| fail("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(fail("expected an http:// or https:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(fail("the URL has no host"));
        }
        let timeout = Duration::try_from_secs_f64(config.timeout_s)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| fail("timeout_s must be a positive number of seconds"))?;
        if !(config.backoff_s.is_finite() && config.backoff_s >= 0.0) {
            return Err(fail(
                "backoff_s must be zero or a positive number of seconds",
            ));
        }
        let authorization = match (&config.bearer_token, &config.username, &config.password) {
            (Some(token), _, _) => Some(
                sensitive_header(&format!("Bearer {}", token.expose()))
                    .ok_or_else(|| fail("the bearer token cannot be sent in a header"))?,
            ),
            (None, Some(user), Some(password)) => Some(
                sensitive_header(&basic_auth_header(user, password.expose()))
                    .ok_or_else(|| fail("the user name cannot be sent in a header"))?,
            ),
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(fail("basic auth needs both username and password"))
            }
            (None, None, None) => None,
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(USER_AGENT)
            .build()
            .into();
        Ok(Self {
            url: config.url.clone(),
            shown_url,
            agent,
            authorization,
            timeout_s: config.timeout_s,
            retries: config.retries,
            backoff_s: config.backoff_s,
            logged_state: SinkState::Starting,
            logged_reason: String::new(),
            failed_while_down: 0,
        })
    }

    /// One POST of `body`; what became of it.
    fn attempt(&self, body: &str, kind: &str, seq: u64) -> Outcome {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Earshot-Event", kind)
            .header("X-Earshot-Seq", seq.to_string());
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth.clone());
        }
        match request.send(body.as_bytes()) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                // Read a little of the body: lets the connection be reused, and says why a
                // refusal happened. Errors reading it change nothing.
                let mut bytes = Vec::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(BODY_LIMIT)
                    .read_to_end(&mut bytes);
                match classify_status(status, retry_after) {
                    Outcome::Fail(reason) => {
                        let text = String::from_utf8_lossy(&bytes);
                        let text: String = text.trim().chars().take(BODY_IN_LOG).collect();
                        if text.is_empty() {
                            Outcome::Fail(reason)
                        } else {
                            Outcome::Fail(format!("{reason}: {text:?}"))
                        }
                    }
                    other => other,
                }
            }
            Err(e) => classify_error(&e, self.timeout_s),
        }
    }

    fn delivered(&mut self, stats: &SinkStats, attempts: u32) {
        SinkStats::add(&stats.delivered, 1);
        stats.set_state(SinkState::Up);
        if self.logged_state != SinkState::Up {
            if self.logged_state == SinkState::Down {
                tracing::info!(
                    url = %self.shown_url,
                    failed_while_down = self.failed_while_down,
                    "webhook delivering again"
                );
            } else {
                tracing::info!(url = %self.shown_url, attempts, "webhook up");
            }
            self.logged_state = SinkState::Up;
            self.logged_reason.clear();
            self.failed_while_down = 0;
        }
    }

    fn failed(&mut self, stats: &SinkStats, event: &Event, attempts: u32, reason: String) {
        SinkStats::add(&stats.failed, 1);
        stats.set_state(SinkState::Down);
        self.failed_while_down += 1;
        if self.logged_state != SinkState::Down || !same_kind(&self.logged_reason, &reason) {
            tracing::warn!(
                url = %self.shown_url,
                event = event.kind(),
                seq = event.seq,
                attempts,
                reason = %reason,
                "webhook failed to deliver an event; it is down until a delivery succeeds"
            );
            self.logged_state = SinkState::Down;
            self.logged_reason = reason;
        } else {
            tracing::debug!(
                url = %self.shown_url,
                event = event.kind(),
                seq = event.seq,
                attempts,
                reason = %reason,
                "webhook failed to deliver an event"
            );
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> String {
        format!("webhook:{}", self.shown_url)
    }

    fn start(&mut self, _stats: Arc<SinkStats>) -> Result<(), SinkError> {
        // Nothing to open: the first event makes the first connection.
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        let body = event.to_json();
        let kind = event.kind();
        let mut retry = 0u32;
        loop {
            match self.attempt(&body, kind, event.seq) {
                Outcome::Delivered => return self.delivered(stats, retry + 1),
                Outcome::Fail(reason) => return self.failed(stats, event, retry + 1, reason),
                Outcome::Retry {
                    reason,
                    retry_after,
                } => {
                    if retry >= self.retries {
                        return self.failed(stats, event, retry + 1, reason);
                    }
                    let wait = retry_after.unwrap_or_else(|| backoff_delay(self.backoff_s, retry));
                    tracing::debug!(
                        url = %self.shown_url,
                        seq = event.seq,
                        attempt = retry + 1,
                        reason = %reason,
                        wait_s = wait.as_secs_f64(),
                        "webhook attempt failed; retrying"
                    );
                    std::thread::sleep(wait);
                    retry += 1;
                }
            }
        }
    }

    fn close(&mut self, _deadline: Instant, _stats: &SinkStats) {
        // Delivery is synchronous: by the time the queue is drained nothing is held.
        tracing::debug!(url = %self.shown_url, "webhook closed");
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A 2xx.
    Delivered,
    /// Worth trying again; after `retry_after` when the server said so.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help.
    Fail(String),
}

/// The outcome of a response with `status`; `retry_after` is its parsed `Retry-After`.
fn classify_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    let reason = || {
        let text = ureq::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason());
        match text {
            Some(t) => format!("HTTP {status} {t}"),
            None => format!("HTTP {status}"),
        }
    };
    match status {
        200..=299 => Outcome::Delivered,
        408 | 500..=599 => Outcome::Retry {
            reason: reason(),
            retry_after: if status == 503 { retry_after } else { None },
        },
        429 => Outcome::Retry {
            reason: reason(),
            retry_after,
        },
        _ => Outcome::Fail(reason()),
    }
}

/// The outcome of a request that got no response.
fn classify_error(e: &ureq::Error, timeout_s: f64) -> Outcome {
    use ureq::Error as E;
    let retry = |reason: String| Outcome::Retry {
        reason,
        retry_after: None,
    };
    match e {
        E::Timeout(_) => retry(format!("no response within {timeout_s} s")),
        E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            retry(format!("no response within {timeout_s} s"))
        }
        E::Io(io) => retry(io.to_string()),
        E::ConnectionFailed => retry("connection failed".into()),
        E::HostNotFound => retry("host not found".into()),
        E::Protocol(p) => retry(format!("bad response: {p}")),
        E::BodyStalled => retry("the connection stalled".into()),
        other => Outcome::Fail(other.to_string()),
    }
}

/// Whether two failure reasons are the same kind of failure (for logging once): the text up to
/// the first `:` (`HTTP 404 Not Found: "body"` and `HTTP 404 Not Found: "other"` are alike).
fn same_kind(a: &str, b: &str) -> bool {
    let head = |s: &str| s.split(':').next().unwrap_or("").to_owned();
    head(a) == head(b)
}

/// `Retry-After` in whole seconds (`"120"`), capped at 60 s; `None` for anything else (an
/// HTTP date, a negative or fractional number, garbage), which falls back to the backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only too many of them fails to parse, and that is longer than the cap.
    let secs = v.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

/// The wait before retry `retry + 1` (`retry` from 0): `backoff_s · 2^retry`, capped at 60 s
/// or at `backoff_s` when that is longer. Never panics: a negative or non-finite `backoff_s`
/// waits 0.
fn backoff_delay(backoff_s: f64, retry: u32) -> Duration {
    if !(backoff_s.is_finite() && backoff_s > 0.0) {
        return Duration::ZERO;
    }
    let cap = MAX_WAIT.as_secs_f64().max(backoff_s);
    let s = (backoff_s * 2f64.powi(retry.min(64) as i32)).min(cap);
    Duration::try_from_secs_f64(s).unwrap_or(MAX_WAIT)
}

/// `Basic <base64(user:password)>`, the `Authorization` value of HTTP basic auth (RFC 7617);
/// also used by the VAPIX backend.
pub(crate) fn basic_auth_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header value marked sensitive (kept out of debug output); `None` when `s` cannot be a
/// header value.
fn sensitive_header(s: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(s).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// `url` fit for logs: a password in it becomes `***`, and so does its query string (tokens
/// often travel there). Works on any string, valid URL or not.
/// `url` as (`scheme://`, authority with any `user:password@`, path-query-fragment), each
/// possibly empty (RFC 3986 section 3); no validation.
pub(crate) fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    (scheme, authority, tail)
}

fn redact_url(url: &str) -> String {
    let (scheme, authority, tail) = split_url(url);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{user}:***@{}", &authority[at + 1..])
            } else {
                format!("{user}@{}", &authority[at + 1..])
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let fragment = tail[q..].find('#').map_or("", |h| &tail[q + h..]);
            format!("{}?***{fragment}", &tail[..q])
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn retry(reason: &str) -> Outcome {
        Outcome::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }

    #[test]
    fn status_classification() {
        assert_eq!(classify_status(200, None), Outcome::Delivered);
        assert_eq!(classify_status(204, None), Outcome::Delivered);
        assert_eq!(classify_status(299, None), Outcome::Delivered);
        for s in [500, 502, 503, 504, 599] {
            assert!(
                matches!(classify_status(s, None), Outcome::Retry { .. }),
                "{s}"
            );
        }
        assert_eq!(
            classify_status(408, None),
            retry("HTTP 408 Request Timeout")
        );
        assert_eq!(
            classify_status(500, None),
            retry("HTTP 500 Internal Server Error")
        );
        for s in [
            400, 401, 403, 404, 405, 409, 410, 413, 422, 301, 302, 304, 100, 600, 0,
        ] {
            assert!(matches!(classify_status(s, None), Outcome::Fail(_)), "{s}");
        }
        assert_eq!(
            classify_status(404, None),
            Outcome::Fail("HTTP 404 Not Found".into())
        );
        assert_eq!(classify_status(799, None), Outcome::Fail("HTTP 799".into()));
    }

    #[test]
    fn retry_after_only_on_429_and_503() {
        let ra = Some(Duration::from_secs(7));
        for (status, expect) in [(429, ra), (503, ra), (500, None), (502, None), (408, None)] {
            match classify_status(status, ra) {
                Outcome::Retry { retry_after, .. } => assert_eq!(retry_after, expect, "{status}"),
                o => panic!("{status}: {o:?}"),
            }
        }
        assert_eq!(classify_status(200, ra), Outcome::Delivered);
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("60"), Some(MAX_WAIT));
        assert_eq!(parse_retry_after("3600"), Some(MAX_WAIT));
        assert_eq!(
            parse_retry_after("99999999999999999999999999999"),
            Some(MAX_WAIT)
        );
        for bad in [
            "",
            " ",
            "-1",
            "1.5",
            "+3",
            "abc",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "٣",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs = |b: f64, r: u32| backoff_delay(b, r).as_secs_f64();
        assert_eq!(secs(1.0, 0), 1.0);
        assert_eq!(secs(1.0, 1), 2.0);
        assert_eq!(secs(1.0, 2), 4.0);
        assert_eq!(secs(1.0, 3), 8.0);
        assert_eq!(secs(1.0, 5), 32.0);
        assert_eq!(secs(1.0, 6), 60.0);
        assert_eq!(secs(1.0, 100), 60.0);
        assert_eq!(secs(1.0, u32::MAX), 60.0);
        assert!((secs(0.1, 0) - 0.1).abs() < 1e-9);
        assert!((secs(0.1, 2) - 0.4).abs() < 1e-9);
        assert_eq!(secs(0.0, 10), 0.0);
        assert_eq!(secs(600.0, 0), 600.0);
        assert_eq!(secs(600.0, 100), 600.0);
        assert_eq!(secs(-1.0, 1), 0.0);
        assert_eq!(secs(f64::NAN, 1), 0.0);
        assert_eq!(secs(f64::INFINITY, 1), 0.0);
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic_auth_header("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(
            basic_auth_header("martin", "secret"),
            "Basic bWFydGluOnNlY3JldA=="
        );
        assert_eq!(basic_auth_header("ü", "p:w"), "Basic w7w6cDp3");
    }

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            ("http://host:8080/hook", "http://host:8080/hook"),
            ("https://u:pw@host/hook", "https://u:***@host/hook"),
            ("https://u@host/hook", "https://u@host/hook"),
            ("https://u:p@w@host", "https://u:***@host"),
            ("https://host/hook?token=abc", "https://host/hook?***"),
            ("https://host?token=abc#frag", "https://host?***#frag"),
            ("https://host/a#b?c", "https://host/a#b?***"),
            ("not a url", "not a url"),
            ("", ""),
            ("://@", "://@"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn new_checks_the_settings_and_names_the_url() {
        assert!(WebhookSink::new(&config("http://127.0.0.1:9/x")).is_ok());
        let name = WebhookSink::new(&config("https://u:pw@example.com/h?k=secret"))
            .map(|s| s.name())
            .unwrap_or_default();
        assert_eq!(name, "webhook:https://u:***@example.com/h?***");
        for (c, needle) in [
            (config("ftp://host/x"), "ftp://host/x"),
            (config("http://"), "http://"),
            (config("not a url"), "not a url"),
            (
                WebhookConfig {
                    timeout_s: 0.0,
                    ..config("http://h/")
                },
                "timeout_s",
            ),
            (
                WebhookConfig {
                    timeout_s: f64::NAN,
                    ..config("http://h/")
                },
                "timeout_s",
            ),
            (
                WebhookConfig {
                    bearer_token: Some(Secret::new("to\nken")),
                    ..config("http://h/")
                },
                "bearer token",
            ),
            (
                WebhookConfig {
                    username: Some("u".into()),
                    ..config("http://h/")
                },
                "both",
            ),
        ] {
            match WebhookSink::new(&c) {
                Ok(_) => panic!("{c:?} accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(needle), "{e}");
                    assert!(!e.contains("to\nken"), "{e}");
                }
            }
        }
    }

    #[test]
    fn errors_without_a_response() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            classify_error(&refused, 1.0),
            Outcome::Retry { .. }
        ));
        let timeout = ureq::Error::Timeout(ureq::Timeout::Global);
        assert_eq!(
            classify_error(&timeout, 0.5),
            retry("no response within 0.5 s")
        );
        assert!(matches!(
            classify_error(&ureq::Error::HostNotFound, 1.0),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify_error(&ureq::Error::BadUri("x".into()), 1.0),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn failure_kinds() {
        assert!(same_kind(
            "HTTP 404 Not Found: \"a\"",
            "HTTP 404 Not Found: \"b\""
        ));
        assert!(!same_kind("HTTP 404 Not Found", "HTTP 401 Unauthorized"));
    }
}
