//! VAPIX backend: digital outputs, virtual inputs and audio clips of an Axis device over HTTP.
//!
//! # Requests
//!
//! | command | request (VAPIX API) |
//! |---|---|
//! | output pulse | `POST /axis-cgi/io/portmanagement.cgi`, `setStateSequence` (I/O port management API) |
//! | output set | `POST /axis-cgi/io/portmanagement.cgi`, `setPorts` |
//! | virtual input | `GET /axis-cgi/virtualinput/activate.cgi?schemaversion=1&port=N[&duration=S]`, `deactivate.cgi` |
//! | clip | `GET /axis-cgi/mediaclip.cgi?action=play&clip=N[&volume=V][&repeat=R]` (media clip API) |
//! | stop clip | `GET /axis-cgi/mediaclip.cgi?action=stop` |
//! | clip list ([`VapixBackend::start`]) | `GET /axis-cgi/param.cgi?action=list&group=MediaClip` (parameter API) |
//!
//! A pulse is one `setStateSequence`: the state for the duration, then the opposite state. A
//! step lasts at most 65 535 ms, so longer pulses are several steps of the same state whose
//! times add up to the duration. The device ends the pulse itself; nothing waits here.
//!
//! # What counts as success
//!
//! | API | success | failure |
//! |---|---|---|
//! | port management (JSON) | 2xx and a JSON object without `error` | an `error` object (`{"code":2200,"message":"…"}`) → [`ActionError::Vapix`]; not JSON → [`ActionError::Protocol`] |
//! | virtual input (XML) | 2xx without an `<Error>` element (the device answers `<VirtualInputResponse><Success><ActivateSuccess><StateChanged>true</StateChanged>…`; `false` means it already was in that state, which is fine) | `<Error><GeneralError><ErrorCode>20</ErrorCode><ErrorDescription>…` (sent with HTTP 200) → [`ActionError::Vapix`] |
//! | media clip (text) | 2xx and a body starting with `OK` (`OK playing=2`) | anything else → [`ActionError::Protocol`] |
//!
//! VAPIX errors are never retried: code 2200 (a sequence is already running on the port) would
//! only repeat until the running one ends. They are logged once at warn with the rule's name.
//!
//! # Authentication
//!
//! - `auth = "basic"`: `Authorization: Basic` (RFC 7617) on every request, unasked. What the
//!   device's own loopback address `http://127.0.0.12` expects from an ACAP app.
//! - `auth = "digest"` and `"auto"`: the first request goes without credentials; on `401` the
//!   `WWW-Authenticate` challenges are read (`auto` takes Digest when offered, else Basic;
//!   among Digest challenges SHA-256 before MD5), the request is sent again once with the
//!   answer (RFC 7616, `qop=auth`, a fresh `cnonce`, `nc` counting up). The challenge is kept
//!   and reused for the following requests with `nc` incremented, so they need one round trip;
//!   when the device calls the nonce `stale` (or refuses it) its new challenge replaces it.
//! - A second `401` is [`ActionError::Auth`] naming the host and user with a hint in words.
//!   The password is in no error, log line or `Debug` output (it is a [`Secret`]; the
//!   `Authorization` header is marked sensitive).
//!
//! Credentials come from `username`/`password`, or with `credentials = "dbus"` from the
//! device's service account ([`super::credentials::vapix_credentials`]), fetched in
//! [`VapixBackend::start`] and, if that failed, again before each command until it works.
//!
//! # Timeouts and retries
//!
//! `timeout_s` bounds the connection and the whole request (name lookup, connect, TLS, sending,
//! the answer). Transient failures ([`ActionError::is_transient`]: 5xx, 429, timeouts, refused
//! connections) are retried `retries` times, retry `n` (from 1) after `backoff_s · 2^(n-1)`
//! (one wait capped at 60 s, or at `backoff_s` when longer). Every failed attempt is logged at
//! warn with the rule, host and request; success at info. Logs show the host, never the
//! password; a user name or password in `url` is ignored.
//!
//! `https://` URLs trust `ca_file` (PEM) or, without it, the system's root certificates
//! (rustls with ring), falling back to the Mozilla roots built into ureq when the system has
//! none. Redirects are not followed.

use std::time::Duration;

use digest_auth::{AlgorithmType, AuthContext, HttpMethod, WwwAuthenticateHeader};
use ureq::http::{HeaderValue, Uri};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

use super::{ActionError, Backend, Command, CommandKind, CredentialSource, HttpAuth, VapixConfig};
use crate::config::Secret;
use crate::sinks::webhook::basic_auth_header;

/// The `User-Agent` of every request: `earshot/<crate version>`.
pub const USER_AGENT: &str = concat!("earshot/", env!("CARGO_PKG_VERSION"));

/// Longest step of a `setStateSequence`, milliseconds (VAPIX I/O port management API).
pub const MAX_STEP_MS: u32 = 65_535;

/// Bytes of an answer read at most.
const BODY_LIMIT: u64 = 64 * 1024;

/// Characters of an unexpected answer quoted in errors.
const BODY_IN_ERROR: usize = 200;

/// Cap of one backoff wait (unless `backoff_s` itself is longer).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// VAPIX error code of `setStateSequence` while a sequence already runs on the port.
pub const SEQUENCE_RUNNING: i64 = 2200;

/// The VAPIX client (see the [module documentation](self)).
pub struct VapixBackend {
    /// `scheme://host[:port][/prefix]` without a trailing `/` and without user info.
    base: String,
    /// The URL's path prefix (`""` for none), for the Digest `uri`.
    base_path: String,
    /// `host[:port]`, for names, logs and errors.
    host: String,
    agent: Agent,
    source: CredentialSource,
    dbus_account: String,
    credentials: Option<(String, Secret)>,
    auth: HttpAuth,
    /// The challenge answered last (Digest/Auto), reused for the next requests.
    challenge: Option<Challenge>,
    timeout_s: f64,
    retries: u32,
    backoff_s: f64,
    /// `(id, name)` of the device's media clips, once listed.
    clips: Option<Vec<(String, String)>>,
}

impl std::fmt::Debug for VapixBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapixBackend")
            .field("base", &self.base)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("auth", &self.auth)
            .field("clips", &self.clips)
            .finish_non_exhaustive()
    }
}

/// What a request is answered with on the next try.
#[derive(Clone)]
enum Challenge {
    /// The device asked for Basic.
    Basic,
    /// A Digest challenge; its `nc` counts the answers given to its nonce.
    Digest(WwwAuthenticateHeader),
}

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// One VAPIX request.
struct Request<'a> {
    method: Method,
    /// Path and query below the base URL (`/axis-cgi/...?...`).
    path_query: String,
    /// JSON body (POST).
    body: Option<&'a str>,
    /// For logs and errors: `GET /axis-cgi/mediaclip.cgi play`.
    what: String,
}

impl VapixBackend {
    /// A backend for the device at `config.url`. Builds the HTTP client and reads `ca_file`;
    /// no request is made (credentials from D-Bus and the clip list come in [`Backend::start`]).
    ///
    /// # Errors
    /// [`ActionError::Local`], naming the URL without credentials: the URL is not `http://` or
    /// `https://` with a host, `timeout_s` is not a positive number of seconds, `backoff_s`
    /// is negative, only one of `username`/`password` is given with `credentials = "config"`,
    /// or `ca_file` cannot be read or holds no PEM certificate.
    pub fn new(config: &VapixConfig) -> Result<Self, ActionError> {
        let uri: Uri = config
            .url
            .trim()
            .parse()
            .map_err(|_| local_err(&config.url, "not a valid URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(local_err(
                    &config.url,
                    "expected an http:// or https:// URL",
                ))
            }
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .ok_or_else(|| local_err(&config.url, "the URL has no host"))?;
        let host = authority.rsplit('@').next().unwrap_or(authority).to_owned();
        if host.is_empty() || uri.host().is_none_or(str::is_empty) {
            return Err(local_err(&config.url, "the URL has no host"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let scheme = if https { "https" } else { "http" };
        let base = format!("{scheme}://{host}{base_path}");
        let shown = base.clone();
        let timeout = Duration::try_from_secs_f64(config.timeout_s)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| local_err(&shown, "timeout_s must be a positive number of seconds"))?;
        if !(config.backoff_s.is_finite() && config.backoff_s >= 0.0) {
            return Err(local_err(
                &shown,
                "backoff_s must be zero or a positive number of seconds",
            ));
        }
        let credentials = match config.credentials {
            CredentialSource::Dbus => None,
            CredentialSource::Config => match (&config.username, &config.password) {
                (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                (None, None) => None,
                _ => return Err(local_err(&shown, "username and password go together")),
            },
        };
        let mut builder = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .user_agent(USER_AGENT);
        if https {
            let roots = root_certs(config.ca_file.as_deref()).map_err(|e| local_err(&shown, &e))?;
            builder = builder.tls_config(TlsConfig::builder().root_certs(roots).build());
        }
        Ok(Self {
            base,
            base_path,
            host,
            agent: builder.build().into(),
            source: config.credentials,
            dbus_account: config.dbus_account.clone(),
            credentials,
            auth: config.auth,
            challenge: None,
            timeout_s: config.timeout_s,
            retries: config.retries,
            backoff_s: config.backoff_s,
            clips: None,
        })
    }

    /// The device's media clips as `(id, name)` (id `"2"` is VAPIX clip `M2`), sorted by id,
    /// once [`Backend::start`] listed them; `None` before or when listing failed.
    pub fn clips(&self) -> Option<&[(String, String)]> {
        self.clips.as_deref()
    }

    /// Fetches the D-Bus service account when that is the source and it is not known yet.
    fn ensure_credentials(&mut self) -> Result<(), ActionError> {
        if self.credentials.is_none() && self.source == CredentialSource::Dbus {
            let pair = super::credentials::vapix_credentials(&self.dbus_account)?;
            tracing::debug!(host = %self.host, user = %pair.0, "VAPIX credentials from D-Bus");
            self.credentials = Some(pair);
        }
        Ok(())
    }

    /// Lists the media clips (`param.cgi?action=list&group=MediaClip`) into [`Self::clips`].
    fn list_clips(&mut self, rule: &str) -> Result<(), ActionError> {
        let request = Request {
            method: Method::Get,
            path_query: "/axis-cgi/param.cgi?action=list&group=MediaClip".into(),
            body: None,
            what: "GET /axis-cgi/param.cgi list MediaClip".into(),
        };
        let body = self.call(rule, &request)?;
        let clips =
            parse_clip_list(&body).map_err(|detail| self.protocol(&request.what, detail))?;
        tracing::info!(host = %self.host, clips = clips.len(), "VAPIX media clips listed");
        self.clips = Some(clips);
        Ok(())
    }

    /// One request with the retries for transient failures; the answer's body.
    fn call(&mut self, rule: &str, request: &Request<'_>) -> Result<String, ActionError> {
        let mut retry = 0u32;
        loop {
            match self.attempt(request) {
                Ok(body) => {
                    tracing::debug!(rule, host = %self.host, what = %request.what, attempts = retry + 1, "VAPIX request done");
                    return Ok(body);
                }
                Err(e) if e.is_transient() && retry < self.retries => {
                    let wait = backoff_delay(self.backoff_s, retry);
                    tracing::warn!(
                        rule,
                        host = %self.host,
                        what = %request.what,
                        attempt = retry + 1,
                        wait_s = wait.as_secs_f64(),
                        error = %e,
                        "VAPIX request failed; retrying"
                    );
                    std::thread::sleep(wait);
                    retry += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        rule,
                        host = %self.host,
                        what = %request.what,
                        attempt = retry + 1,
                        error = %e,
                        "VAPIX request failed"
                    );
                    return Err(e);
                }
            }
        }
    }

    /// One attempt: the request, and once more with credentials when the device asks for them.
    fn attempt(&mut self, request: &Request<'_>) -> Result<String, ActionError> {
        self.ensure_credentials()?;
        let url = format!("{}{}", self.base, request.path_query);
        let mut answered_challenge = false;
        loop {
            let authorization = self.authorization(request)?;
            let result = match request.method {
                Method::Get => {
                    let mut r = self.agent.get(&url);
                    if let Some(a) = &authorization {
                        r = r.header("Authorization", a.clone());
                    }
                    r.call()
                }
                Method::Post => {
                    let mut r = self
                        .agent
                        .post(&url)
                        .header("Content-Type", "application/json");
                    if let Some(a) = &authorization {
                        r = r.header("Authorization", a.clone());
                    }
                    r.send(request.body.unwrap_or("").as_bytes())
                }
            };
            let mut response = result.map_err(|e| self.transport_error(&request.what, &e))?;
            let status = response.status().as_u16();
            let challenges: Vec<String> = response
                .headers()
                .get_all("WWW-Authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            let body = response
                .body_mut()
                .with_config()
                .limit(BODY_LIMIT)
                .read_to_string();
            match status {
                200..=299 => {
                    return body.map_err(|e| {
                        self.protocol(&request.what, format!("reading the answer: {e}"))
                    })
                }
                401 => {
                    let Some((user, _)) = &self.credentials else {
                        return Err(self.auth_error(401, "", "no credentials: set username and password, or credentials = \"dbus\" on the device"));
                    };
                    let user = user.clone();
                    if answered_challenge {
                        self.challenge = None;
                        return Err(self.auth_error(
                            401,
                            &user,
                            "check the user name and password",
                        ));
                    }
                    let next = match self.auth {
                        HttpAuth::Basic => None,
                        HttpAuth::Digest => pick_challenge(&challenges, false),
                        HttpAuth::Auto => pick_challenge(&challenges, true),
                    };
                    match next {
                        Some(c) => {
                            self.challenge = Some(c);
                            answered_challenge = true;
                        }
                        None => {
                            let hint = match self.auth {
                                HttpAuth::Basic => "check the user name and password (or try auth = \"auto\")",
                                HttpAuth::Digest => "the device offered no usable Digest challenge (try auth = \"auto\" or \"basic\")",
                                HttpAuth::Auto => "the device offered no Digest or Basic challenge",
                            };
                            return Err(self.auth_error(401, &user, hint));
                        }
                    }
                }
                403 => {
                    let user = self
                        .credentials
                        .as_ref()
                        .map(|(u, _)| u.clone())
                        .unwrap_or_default();
                    return Err(self.auth_error(403, &user, "the account lacks the rights for this API (operator or administrator needed)"));
                }
                _ => {
                    return Err(ActionError::Http {
                        host: self.host.clone(),
                        what: request.what.clone(),
                        status,
                    })
                }
            }
        }
    }

    /// The `Authorization` header for `request`, from the scheme and the last challenge.
    fn authorization(&mut self, request: &Request<'_>) -> Result<Option<HeaderValue>, ActionError> {
        let Some((user, password)) = &self.credentials else {
            return Ok(None);
        };
        let value = match (self.auth, &mut self.challenge) {
            (HttpAuth::Basic, _) | (HttpAuth::Auto, Some(Challenge::Basic)) => {
                basic_auth_header(user, password.expose())
            }
            (_, Some(Challenge::Digest(prompt))) => {
                let uri = format!("{}{}", self.base_path, request.path_query);
                let context = AuthContext::new_with_method(
                    user.as_str(),
                    password.expose(),
                    uri,
                    request.body.map(str::as_bytes),
                    match request.method {
                        Method::Get => HttpMethod::GET,
                        Method::Post => HttpMethod::POST,
                    },
                );
                match prompt.respond(&context) {
                    Ok(h) => h.to_header_string(),
                    Err(e) => {
                        let detail = format!("cannot answer the Digest challenge: {e}");
                        self.challenge = None;
                        return Err(self.protocol(&request.what, detail));
                    }
                }
            }
            (_, _) => return Ok(None),
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| ActionError::Local {
            what: format!("VAPIX {}: building the Authorization header", self.host),
            reason: "the user name or password holds characters a header cannot carry".into(),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    fn auth_error(&self, status: u16, user: &str, hint: &'static str) -> ActionError {
        ActionError::Auth {
            host: self.host.clone(),
            user: user.to_owned(),
            status,
            hint,
        }
    }

    fn protocol(&self, what: &str, detail: String) -> ActionError {
        ActionError::Protocol {
            host: self.host.clone(),
            what: what.to_owned(),
            detail,
        }
    }

    fn transport_error(&self, what: &str, e: &ureq::Error) -> ActionError {
        use ureq::Error as E;
        let reason = match e {
            E::Timeout(_) => format!("no answer within {} s", self.timeout_s),
            E::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                format!("no answer within {} s", self.timeout_s)
            }
            E::Io(io) => io.to_string(),
            E::ConnectionFailed => "connection failed".into(),
            E::HostNotFound => "host not found".into(),
            other => other.to_string(),
        };
        ActionError::Unreachable {
            host: self.host.clone(),
            what: what.to_owned(),
            reason,
        }
    }

    /// Checks a port management JSON answer.
    fn check_json(&self, what: &str, body: &str) -> Result<(), ActionError> {
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|_| self.protocol(what, format!("not JSON: {:?}", snippet(body))))?;
        let Some(object) = value.as_object() else {
            return Err(self.protocol(what, format!("not a JSON object: {:?}", snippet(body))));
        };
        if let Some(error) = object.get("error") {
            let code = error
                .get("code")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            let message = error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Err(ActionError::Vapix {
                host: self.host.clone(),
                what: what.to_owned(),
                code,
                message,
            });
        }
        Ok(())
    }

    /// Checks a virtual input XML answer.
    fn check_virtual_input(&self, what: &str, body: &str) -> Result<(), ActionError> {
        if body.contains("<Error") {
            let code = xml_text(body, "ErrorCode")
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or(0);
            let message = xml_text(body, "ErrorDescription").unwrap_or_default();
            return Err(ActionError::Vapix {
                host: self.host.clone(),
                what: what.to_owned(),
                code,
                message,
            });
        }
        if xml_text(body, "StateChanged").as_deref() == Some("false") {
            tracing::debug!(host = %self.host, what, "virtual input already in that state");
        }
        Ok(())
    }

    /// Checks a media clip text answer (`OK playing=2`).
    fn check_ok(&self, what: &str, body: &str) -> Result<(), ActionError> {
        if body.trim_start().starts_with("OK") {
            Ok(())
        } else {
            Err(self.protocol(what, format!("expected OK, got {:?}", snippet(body))))
        }
    }
}

impl Backend for VapixBackend {
    fn name(&self) -> String {
        format!("vapix:{}", self.host)
    }

    fn kinds(&self) -> &'static [CommandKind] {
        &[
            CommandKind::Output,
            CommandKind::VirtualInput,
            CommandKind::Clip,
        ]
    }

    /// Fetches the credentials (D-Bus when so configured) and lists the media clips.
    ///
    /// # Errors
    /// The D-Bus call or the clip listing failed ([`ActionError`]); commands still work
    /// afterwards (credentials are fetched again, clip ids are then not checked).
    fn start(&mut self) -> Result<(), ActionError> {
        self.ensure_credentials()?;
        self.list_clips("(start)")
    }

    fn execute(&mut self, rule: &str, command: &Command) -> Result<(), ActionError> {
        let result = match command {
            Command::Output {
                port,
                state,
                duration_ms,
            } => {
                let body = output_body(port, *state, *duration_ms).to_string();
                let method = if duration_ms.is_some() {
                    "setStateSequence"
                } else {
                    "setPorts"
                };
                let request = Request {
                    method: Method::Post,
                    path_query: "/axis-cgi/io/portmanagement.cgi".into(),
                    body: Some(&body),
                    what: format!("POST /axis-cgi/io/portmanagement.cgi {method}"),
                };
                self.call(rule, &request)
                    .and_then(|answer| self.check_json(&request.what, &answer))
            }
            Command::VirtualInput {
                port,
                duration_s,
                deactivate,
            } => {
                let (path_query, cgi) = if *deactivate {
                    (
                        format!(
                            "/axis-cgi/virtualinput/deactivate.cgi?schemaversion=1&port={port}"
                        ),
                        "deactivate.cgi",
                    )
                } else {
                    let mut q =
                        format!("/axis-cgi/virtualinput/activate.cgi?schemaversion=1&port={port}");
                    if let Some(s) = duration_s {
                        q.push_str(&format!("&duration={s}"));
                    }
                    (q, "activate.cgi")
                };
                let request = Request {
                    method: Method::Get,
                    path_query,
                    body: None,
                    what: format!("GET /axis-cgi/virtualinput/{cgi} port {port}"),
                };
                self.call(rule, &request)
                    .and_then(|answer| self.check_virtual_input(&request.what, &answer))
            }
            Command::Clip {
                clip,
                volume,
                repeat,
            } => {
                if let Some(clips) = &self.clips {
                    if !clips.iter().any(|(id, _)| id == clip) {
                        let known: Vec<&str> = clips.iter().map(|(id, _)| id.as_str()).collect();
                        tracing::warn!(
                            rule,
                            host = %self.host,
                            clip = %clip,
                            known = %known.join(","),
                            "the device did not list this media clip; trying anyway"
                        );
                    }
                }
                let request = Request {
                    method: Method::Get,
                    path_query: clip_query(clip, *volume, *repeat),
                    body: None,
                    what: format!("GET /axis-cgi/mediaclip.cgi play clip {clip}"),
                };
                self.call(rule, &request)
                    .and_then(|answer| self.check_ok(&request.what, &answer))
            }
            Command::StopClip => {
                let request = Request {
                    method: Method::Get,
                    path_query: "/axis-cgi/mediaclip.cgi?action=stop".into(),
                    body: None,
                    what: "GET /axis-cgi/mediaclip.cgi stop".into(),
                };
                self.call(rule, &request)
                    .and_then(|answer| self.check_ok(&request.what, &answer))
            }
        };
        match &result {
            Ok(()) => {
                tracing::info!(rule, host = %self.host, command = %command, "VAPIX action done")
            }
            Err(ActionError::Vapix { code, message, .. }) if *code == SEQUENCE_RUNNING => {
                tracing::warn!(
                    rule,
                    host = %self.host,
                    command = %command,
                    message = %message,
                    "VAPIX error 2200: a state sequence is already running on the port; not retried"
                );
            }
            Err(e @ (ActionError::Vapix { .. } | ActionError::Protocol { .. })) => {
                tracing::warn!(rule, host = %self.host, command = %command, error = %e, "VAPIX action refused");
            }
            Err(_) => {} // logged per attempt in `call`
        }
        result
    }
}

/// The JSON body of a port management request (VAPIX I/O port management API, version 1.0):
/// `setStateSequence` for a pulse of `duration_ms` (steps of at most [`MAX_STEP_MS`] in
/// `state`, then the opposite state with time 0), `setPorts` without a duration.
pub fn output_body(
    port: &str,
    state: super::PortState,
    duration_ms: Option<u32>,
) -> serde_json::Value {
    use serde_json::json;
    match duration_ms {
        Some(ms) => {
            let mut sequence = Vec::new();
            let mut left = ms;
            while left > 0 {
                let step = left.min(MAX_STEP_MS);
                sequence.push(json!({"state": state.as_str(), "time": step}));
                left -= step;
            }
            if sequence.is_empty() {
                sequence.push(json!({"state": state.as_str(), "time": 0}));
            }
            sequence.push(json!({"state": state.opposite().as_str(), "time": 0}));
            json!({
                "apiVersion": "1.0",
                "method": "setStateSequence",
                "params": {"port": port, "sequence": sequence}
            })
        }
        None => json!({
            "apiVersion": "1.0",
            "method": "setPorts",
            "params": {"ports": [{"port": port, "state": state.as_str()}]}
        }),
    }
}

/// Path and query of a media clip play request: volume percent (0 to 100) becomes VAPIX
/// volume 0 to 1000 (×10, capped); `repeat` is sent when not 0.
fn clip_query(clip: &str, volume: Option<u32>, repeat: u32) -> String {
    let mut q = format!(
        "/axis-cgi/mediaclip.cgi?action=play&clip={}",
        percent_encode(clip)
    );
    if let Some(v) = volume {
        q.push_str(&format!("&volume={}", v.min(100) * 10));
    }
    if repeat > 0 {
        q.push_str(&format!("&repeat={repeat}"));
    }
    q
}

/// Parses a `param.cgi?action=list&group=MediaClip` answer (`root.MediaClip.M0.Name=...`
/// lines) into `(id, name)` sorted by numeric id; clips without a `Name` line get `""`.
///
/// # Errors
/// The answer is an error (`# Error: ...`) or holds no `root.MediaClip` line and is not empty.
pub fn parse_clip_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut clips: std::collections::BTreeMap<u64, String> = std::collections::BTreeMap::new();
    let mut recognised = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.strip_prefix("root.MediaClip.M") else {
            if line.starts_with('#') || line.to_ascii_lowercase().contains("error") {
                return Err(format!("the device answered {:?}", snippet(line)));
            }
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let Some((id, field)) = key.split_once('.') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        recognised = true;
        let name = clips.entry(id).or_default();
        if field == "Name" {
            *name = value.to_owned();
        }
    }
    if !recognised && !text.trim().is_empty() {
        return Err(format!(
            "no root.MediaClip parameter in {:?}",
            snippet(text)
        ));
    }
    Ok(clips
        .into_iter()
        .map(|(id, name)| (id.to_string(), name))
        .collect())
}

/// The Digest or Basic challenge to answer among `WWW-Authenticate` values: Digest (SHA-256
/// before MD5) when it parses, else Basic when `allow_basic`.
fn pick_challenge(values: &[String], allow_basic: bool) -> Option<Challenge> {
    let mut digests: Vec<WwwAuthenticateHeader> = values
        .iter()
        .filter(|v| {
            v.trim_start()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("digest "))
        })
        .filter_map(|v| WwwAuthenticateHeader::parse(v.trim_start()).ok())
        .collect();
    digests.sort_by_key(|d| match d.algorithm.algo {
        AlgorithmType::SHA2_512_256 => 0,
        AlgorithmType::SHA2_256 => 1,
        AlgorithmType::MD5 => 2,
    });
    if let Some(d) = digests.into_iter().next() {
        return Some(Challenge::Digest(d));
    }
    let basic = values.iter().any(|v| {
        v.trim_start()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
    });
    (allow_basic && basic).then_some(Challenge::Basic)
}

/// Root certificates for `https://`: `ca_file` (PEM), else the system's, else ureq's
/// built-in Mozilla roots.
fn root_certs(ca_file: Option<&std::path::Path>) -> Result<RootCerts, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
            let certs: Vec<Certificate<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                ));
            }
            Ok(RootCerts::from(certs))
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<Certificate<'static>> = found
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                tracing::debug!(
                    "no system root certificate; VAPIX uses the built-in Mozilla roots"
                );
                Ok(RootCerts::WebPki)
            } else {
                Ok(RootCerts::from(certs))
            }
        }
    }
}

/// The text of the first `<tag>` element of `xml`, trimmed (no XML library: the answers are
/// small and flat).
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].trim().to_owned())
}

/// `ActionError::Local` for a bad configuration of the device at `url` (shown without
/// credentials).
fn local_err(url: &str, reason: &str) -> ActionError {
    ActionError::Local {
        what: format!("VAPIX {}", redact(url)),
        reason: reason.to_owned(),
    }
}

/// `url` without user info (`http://u:pw@host` → `http://host`).
fn redact(url: &str) -> String {
    let (scheme, authority, tail) = crate::sinks::webhook::split_url(url);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}{authority}{tail}")
}

/// The first characters of `s`, for errors.
fn snippet(s: &str) -> String {
    s.trim().chars().take(BODY_IN_ERROR).collect()
}

/// Percent-encodes all but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The wait before retry `retry + 1`: `backoff_s · 2^retry`, capped at 60 s or `backoff_s`.
fn backoff_delay(backoff_s: f64, retry: u32) -> Duration {
    if !(backoff_s.is_finite() && backoff_s > 0.0) {
        return Duration::ZERO;
    }
    let cap = MAX_WAIT.as_secs_f64().max(backoff_s);
    let s = (backoff_s * 2f64.powi(retry.min(64) as i32)).min(cap);
    Duration::try_from_secs_f64(s).unwrap_or(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::PortState;

    #[test]
    fn pulse_steps() {
        let body = output_body("1", PortState::Closed, Some(3000));
        assert_eq!(
            body,
            serde_json::json!({"apiVersion":"1.0","method":"setStateSequence","params":{"port":"1","sequence":[{"state":"closed","time":3000},{"state":"open","time":0}]}})
        );
        let body = output_body("0", PortState::Open, Some(150_000));
        let seq = &body["params"]["sequence"];
        assert_eq!(seq.as_array().map(Vec::len), Some(4));
        assert_eq!(seq[0]["time"], 65_535);
        assert_eq!(seq[1]["time"], 65_535);
        assert_eq!(seq[2]["time"], 150_000 - 2 * 65_535);
        assert_eq!(seq[2]["state"], "open");
        assert_eq!(seq[3], serde_json::json!({"state":"closed","time":0}));
        let body = output_body("0", PortState::Closed, Some(0));
        assert_eq!(body["params"]["sequence"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            output_body("1", PortState::Closed, None),
            serde_json::json!({"apiVersion":"1.0","method":"setPorts","params":{"ports":[{"port":"1","state":"closed"}]}})
        );
    }

    #[test]
    fn clip_queries() {
        assert_eq!(
            clip_query("2", None, 0),
            "/axis-cgi/mediaclip.cgi?action=play&clip=2"
        );
        assert_eq!(
            clip_query("2", Some(55), 3),
            "/axis-cgi/mediaclip.cgi?action=play&clip=2&volume=550&repeat=3"
        );
        assert_eq!(
            clip_query("a b", Some(400), 0),
            "/axis-cgi/mediaclip.cgi?action=play&clip=a%20b&volume=1000"
        );
    }

    #[test]
    fn clip_lists() {
        let text = "root.MediaClip.M0.Location=/etc/audioclips/a.mp3\nroot.MediaClip.M0.Name=Burglar_Alarm_Short\nroot.MediaClip.M0.Type=audio\nroot.MediaClip.M10.Name=Dog\nroot.MediaClip.M2.Type=audio\n";
        assert_eq!(
            parse_clip_list(text).unwrap(),
            vec![
                ("0".into(), "Burglar_Alarm_Short".into()),
                ("2".into(), String::new()),
                ("10".into(), "Dog".into())
            ]
        );
        assert_eq!(parse_clip_list("").unwrap(), vec![]);
        assert!(parse_clip_list("# Error: Error -1 getting param in group 'MediaClip'").is_err());
        assert!(parse_clip_list("<html>hello</html>").is_err());
        for junk in [
            "root.MediaClip.M",
            "root.MediaClip.Mx.Name=a",
            "root.MediaClip.M1=",
            "=",
            "\u{0}",
        ] {
            let _ = parse_clip_list(junk);
        }
    }

    #[test]
    fn xml_and_helpers() {
        let ok = "<?xml version=\"1.0\"?><VirtualInputResponse><Success><ActivateSuccess><StateChanged>\n true\n</StateChanged></ActivateSuccess></Success></VirtualInputResponse>";
        assert_eq!(xml_text(ok, "StateChanged").as_deref(), Some("true"));
        assert_eq!(xml_text("<a>", "a"), None);
        assert_eq!(redact("https://u:pw@cam:8443/x?y"), "https://cam:8443/x?y");
        assert_eq!(backoff_delay(0.5, 1), Duration::from_secs(1));
        assert_eq!(backoff_delay(f64::NAN, 1), Duration::ZERO);
    }

    #[test]
    fn challenges() {
        let md5 = "Digest realm=\"AXIS_ACCC8E000000\", nonce=\"abc\", algorithm=MD5, qop=\"auth\""
            .to_owned();
        let sha =
            "Digest realm=\"AXIS_ACCC8E000000\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\""
                .to_owned();
        let basic = "Basic realm=\"AXIS_ACCC8E000000\"".to_owned();
        match pick_challenge(&[md5.clone(), sha, basic.clone()], true) {
            Some(Challenge::Digest(d)) => assert_eq!(d.algorithm.algo, AlgorithmType::SHA2_256),
            _ => panic!("expected Digest"),
        }
        assert!(matches!(
            pick_challenge(&[md5], false),
            Some(Challenge::Digest(_))
        ));
        assert!(matches!(
            pick_challenge(std::slice::from_ref(&basic), true),
            Some(Challenge::Basic)
        ));
        assert!(pick_challenge(&[basic], false).is_none());
        assert!(pick_challenge(&["Digest garbage".into()], false).is_none());
    }

    #[test]
    fn bad_configs() {
        let ok = VapixConfig {
            credentials: CredentialSource::Config,
            username: Some("root".into()),
            password: Some(Secret::new("pw")),
            ..VapixConfig::default()
        };
        let b = VapixBackend::new(&ok).unwrap();
        assert_eq!(b.name(), "vapix:127.0.0.12");
        assert!(!format!("{b:?}").contains("pw\""));
        let with_user = VapixConfig {
            url: "http://root:pw@cam:8080/".into(),
            ..ok.clone()
        };
        assert_eq!(
            VapixBackend::new(&with_user).unwrap().name(),
            "vapix:cam:8080"
        );
        for url in ["ftp://cam", "not a url", "", "http://"] {
            let c = VapixConfig {
                url: url.into(),
                ..ok.clone()
            };
            assert!(VapixBackend::new(&c).is_err(), "{url}");
        }
        let c = VapixConfig {
            url: "https://cam".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ok.clone()
        };
        assert!(matches!(
            VapixBackend::new(&c),
            Err(ActionError::Local { .. })
        ));
        let c = VapixConfig {
            timeout_s: 0.0,
            ..ok.clone()
        };
        assert!(VapixBackend::new(&c).is_err());
        let c = VapixConfig {
            password: None,
            ..ok
        };
        assert!(VapixBackend::new(&c).is_err());
    }
}
