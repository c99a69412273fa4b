//! The VAPIX backend against a fake Axis device (`common::vapix_server`): the exact requests,
//! Basic and Digest (MD5, SHA-256, stale nonces), wrong credentials (no password anywhere),
//! retries, VAPIX error 2200, a device that never answers, clip listing; and the D-Bus
//! credentials against a private `dbus-daemon` with a fake `com.axis.HTTPConf1` service.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::vapix_server::{Knobs, Recorded, Scheme, VapixServer};
use earshot::actions::vapix::VapixBackend;
use earshot::actions::{
    ActionError, Backend, Command, CredentialSource, HttpAuth, PortState, VapixConfig,
};
use earshot::config::Secret;
use serde_json::json;

const PASSWORD: &str = "Sup3r-s3cret-pw";

fn config(server: &VapixServer, auth: HttpAuth, password: &str) -> VapixConfig {
    VapixConfig {
        url: server.url(),
        credentials: CredentialSource::Config,
        username: Some("root".into()),
        password: Some(Secret::new(password)),
        auth,
        timeout_s: 3.0,
        retries: 2,
        backoff_s: 0.05,
        ..VapixConfig::default()
    }
}

fn server(scheme: Scheme) -> VapixServer {
    VapixServer::start(Knobs {
        scheme,
        password: PASSWORD.into(),
        ..Knobs::default()
    })
}

fn pulse(port: &str, ms: u32) -> Command {
    Command::Output {
        port: port.into(),
        state: PortState::Closed,
        duration_ms: Some(ms),
    }
}

/// The requests that got past authentication (status other than 401).
fn answered(server: &VapixServer) -> Vec<Recorded> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.status != 401)
        .collect()
}

fn body_json(r: &Recorded) -> serde_json::Value {
    serde_json::from_str(&r.body).expect("JSON body")
}

/// A `tracing` subscriber writing to a buffer, for the calling thread.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn with_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, buffer.text())
}

#[test]
fn every_command_sends_the_documented_request() {
    let server = server(Scheme::None);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Auto, PASSWORD)).unwrap();
    assert_eq!(b.name(), format!("vapix:{}", server.host()));
    b.start().expect("start lists the clips");
    let commands = [
        pulse("1", 3000),
        Command::Output {
            port: "1".into(),
            state: PortState::Closed,
            duration_ms: None,
        },
        Command::VirtualInput {
            port: 3,
            duration_s: Some(10),
            deactivate: false,
        },
        Command::VirtualInput {
            port: 4,
            duration_s: None,
            deactivate: false,
        },
        Command::VirtualInput {
            port: 3,
            duration_s: None,
            deactivate: true,
        },
        Command::Clip {
            clip: "2".into(),
            volume: Some(55),
            repeat: 1,
        },
        Command::Clip {
            clip: "0".into(),
            volume: None,
            repeat: 0,
        },
        Command::StopClip,
    ];
    for c in &commands {
        b.execute("rule-a", c)
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    let r = server.requests();
    assert_eq!(r.len(), 1 + commands.len(), "{r:#?}");
    let q = |r: &Recorded| -> Vec<(String, String)> { r.query() };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    assert_eq!(
        (r[0].method.as_str(), r[0].path()),
        ("GET", "/axis-cgi/param.cgi")
    );
    assert_eq!(
        q(&r[0]),
        pairs(&[("action", "list"), ("group", "MediaClip")])
    );

    for i in [1, 2] {
        assert_eq!(r[i].method, "POST");
        assert_eq!(r[i].url, "/axis-cgi/io/portmanagement.cgi");
        assert_eq!(r[i].header("Content-Type"), Some("application/json"));
    }
    assert_eq!(
        body_json(&r[1]),
        json!({"apiVersion":"1.0","method":"setStateSequence","params":{"port":"1","sequence":[{"state":"closed","time":3000},{"state":"open","time":0}]}})
    );
    assert_eq!(
        body_json(&r[2]),
        json!({"apiVersion":"1.0","method":"setPorts","params":{"ports":[{"port":"1","state":"closed"}]}})
    );

    assert_eq!(
        (r[3].method.as_str(), r[3].path()),
        ("GET", "/axis-cgi/virtualinput/activate.cgi")
    );
    assert_eq!(
        q(&r[3]),
        pairs(&[("schemaversion", "1"), ("port", "3"), ("duration", "10")])
    );
    assert_eq!(r[4].path(), "/axis-cgi/virtualinput/activate.cgi");
    assert_eq!(q(&r[4]), pairs(&[("schemaversion", "1"), ("port", "4")]));
    assert_eq!(r[5].path(), "/axis-cgi/virtualinput/deactivate.cgi");
    assert_eq!(q(&r[5]), pairs(&[("schemaversion", "1"), ("port", "3")]));

    assert_eq!(
        (r[6].method.as_str(), r[6].path()),
        ("GET", "/axis-cgi/mediaclip.cgi")
    );
    assert_eq!(
        q(&r[6]),
        pairs(&[
            ("action", "play"),
            ("clip", "2"),
            ("volume", "550"),
            ("repeat", "1")
        ])
    );
    assert_eq!(q(&r[7]), pairs(&[("action", "play"), ("clip", "0")]));
    assert_eq!(r[8].url, "/axis-cgi/mediaclip.cgi?action=stop");
    for x in &r {
        assert_eq!(x.status, 200, "{x:?}");
        assert!(
            x.header("Authorization").is_none(),
            "no challenge, no credentials"
        );
        assert!(x
            .header("User-Agent")
            .is_some_and(|u| u.starts_with("earshot/")));
    }
}

#[test]
fn clip_list_is_parsed_and_unknown_clips_are_still_tried() {
    let server = server(Scheme::Basic);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Basic, PASSWORD)).unwrap();
    assert!(b.clips().is_none());
    b.start().unwrap();
    assert_eq!(
        b.clips().unwrap(),
        &[
            ("0".to_string(), "Burglar_Alarm_Short".to_string()),
            ("1".to_string(), "Camera_clicks".to_string()),
            ("2".to_string(), "Dog_barking".to_string()),
        ][..]
    );
    let clip = Command::Clip {
        clip: "7".into(),
        volume: Some(100),
        repeat: 0,
    };
    let (result, log) = with_log(|| b.execute("siren-rule", &clip));
    result.unwrap();
    assert!(
        log.contains("did not list") && log.contains("siren-rule"),
        "{log}"
    );
    let last = server.requests().pop().unwrap();
    assert_eq!(
        last.url,
        "/axis-cgi/mediaclip.cgi?action=play&clip=7&volume=1000"
    );
}

#[test]
fn basic_auth_is_sent_unasked() {
    let server = server(Scheme::Basic);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Basic, PASSWORD)).unwrap();
    b.start().unwrap();
    b.execute("r", &pulse("0", 500)).unwrap();
    b.execute("r", &Command::StopClip).unwrap();
    let r = server.requests();
    assert_eq!(r.len(), 3, "no 401 round trip: {r:#?}");
    for x in &r {
        assert_eq!(x.auth.as_deref(), Some("basic"));
        assert!(x.header("Authorization").unwrap().starts_with("Basic "));
    }
}

#[test]
fn auto_falls_back_to_basic_when_only_basic_is_offered() {
    let server = server(Scheme::Basic);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Auto, PASSWORD)).unwrap();
    b.execute("r", &pulse("0", 500)).unwrap();
    b.execute("r", &pulse("0", 500)).unwrap();
    let r = server.requests();
    let statuses: Vec<u16> = r.iter().map(|x| x.status).collect();
    assert_eq!(
        statuses,
        [401, 200, 200],
        "challenge answered once, then kept"
    );
    assert_eq!(r[2].auth.as_deref(), Some("basic"));
}

fn digest_round(scheme: Scheme, auth: HttpAuth, expect: &str) {
    let server = server(scheme);
    let mut b = VapixBackend::new(&config(&server, auth, PASSWORD)).unwrap();
    b.start().unwrap();
    b.execute("r", &pulse("1", 1000)).unwrap();
    b.execute(
        "r",
        &Command::VirtualInput {
            port: 1,
            duration_s: None,
            deactivate: false,
        },
    )
    .unwrap();
    b.execute("r", &Command::StopClip).unwrap();
    let r = server.requests();
    let statuses: Vec<u16> = r.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [401, 200, 200, 200, 200], "{scheme:?}: {r:#?}");
    let ncs: Vec<String> = r[1..]
        .iter()
        .map(|x| {
            let h = x.header("Authorization").unwrap();
            assert!(h.starts_with("Digest "), "{h}");
            assert!(h.contains("qop=auth"), "{h}");
            h.split("nc=").nth(1).unwrap()[..8].to_owned()
        })
        .collect();
    assert_eq!(ncs, ["00000001", "00000002", "00000003", "00000004"]);
    for x in &r[1..] {
        assert_eq!(x.auth.as_deref(), Some(expect));
    }
}

#[test]
fn digest_md5() {
    digest_round(Scheme::DigestMd5, HttpAuth::Digest, "digest-md5");
}

#[test]
fn digest_sha256() {
    digest_round(Scheme::DigestSha256, HttpAuth::Digest, "digest-sha-256");
}

#[test]
fn digest_prefers_sha256_and_auto_prefers_digest() {
    digest_round(Scheme::Digest, HttpAuth::Digest, "digest-sha-256");
    digest_round(Scheme::Digest, HttpAuth::Auto, "digest-sha-256");
}

#[test]
fn stale_nonce_gets_a_fresh_challenge() {
    let server = server(Scheme::DigestMd5);
    server.knobs(|k| k.nonce_max_uses = Some(2));
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Digest, PASSWORD)).unwrap();
    for _ in 0..5 {
        b.execute("r", &Command::StopClip).unwrap();
    }
    let statuses: Vec<u16> = server.requests().iter().map(|x| x.status).collect();
    assert_eq!(statuses, [401, 200, 200, 401, 200, 200, 401, 200]);
}

fn wrong_password(scheme: Scheme, auth: HttpAuth) {
    let server = server(scheme);
    let wrong = "Wr0ng-pa55word";
    let mut b = VapixBackend::new(&config(&server, auth, wrong)).unwrap();
    let (result, log) = with_log(|| b.execute("door-rule", &pulse("1", 1000)));
    let e = result.expect_err("wrong password must fail");
    match &e {
        ActionError::Auth {
            host, user, status, ..
        } => {
            assert_eq!(host, &server.host());
            assert_eq!(user, "root");
            assert_eq!(*status, 401);
        }
        other => panic!("{scheme:?}: expected Auth, got {other:?}"),
    }
    let shown = e.to_string();
    assert!(
        shown.contains(&server.host()) && shown.contains("root"),
        "{shown}"
    );
    let debug = format!("{e:?} {b:?}");
    for text in [&shown, &debug, &log] {
        assert!(!text.contains(wrong), "password leaked: {text}");
        assert!(!text.contains(PASSWORD));
    }
    assert!(log.contains("door-rule") && log.contains("WARN"), "{log}");
    // Not retried: at most the challenge round trip and one answer.
    assert!(server.requests().len() <= 2, "{:#?}", server.requests());
}

#[test]
fn wrong_credentials_basic() {
    wrong_password(Scheme::Basic, HttpAuth::Basic);
}

#[test]
fn wrong_credentials_digest() {
    wrong_password(Scheme::Digest, HttpAuth::Digest);
    wrong_password(Scheme::DigestMd5, HttpAuth::Auto);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let server = server(Scheme::None);
    server.knobs(|k| k.fail_500 = 2);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Basic, PASSWORD)).unwrap();
    let (result, log) = with_log(|| b.execute("retry-rule", &pulse("1", 1000)));
    result.unwrap();
    let r = server.requests();
    let statuses: Vec<u16> = r.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    // Backoff 0.05 s then 0.1 s.
    assert!(r[1].at - r[0].at >= Duration::from_millis(45));
    assert!(r[2].at - r[1].at >= Duration::from_millis(95));
    assert_eq!(log.matches("retrying").count(), 2, "{log}");

    server.clear();
    server.knobs(|k| k.fail_500 = 10);
    let e = b.execute("retry-rule", &pulse("1", 1000)).unwrap_err();
    assert!(matches!(e, ActionError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(server.requests().len(), 3, "retries = 2");
}

#[test]
fn not_found_is_not_retried() {
    let server = server(Scheme::None);
    server.knobs(|k| k.missing_paths = vec!["/axis-cgi/virtualinput/activate.cgi".into()]);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Basic, PASSWORD)).unwrap();
    let e = b
        .execute(
            "r",
            &Command::VirtualInput {
                port: 1,
                duration_s: None,
                deactivate: false,
            },
        )
        .unwrap_err();
    assert!(matches!(e, ActionError::Http { status: 404, .. }), "{e:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn sequence_running_is_an_error_without_retry() {
    let server = server(Scheme::Basic);
    server.knobs(|k| k.vapix_error = Some((2200, "A state sequence is already running".into())));
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Basic, PASSWORD)).unwrap();
    let (result, log) = with_log(|| b.execute("pulse-rule", &pulse("1", 2000)));
    match result {
        Err(ActionError::Vapix { code, message, .. }) => {
            assert_eq!(code, 2200);
            assert!(message.contains("already running"));
        }
        other => panic!("expected a VAPIX error, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.requests().len(), 1, "no retry loop");
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 1, "{log}");
    assert!(
        warns[0].contains("pulse-rule") && warns[0].contains("2200"),
        "{log}"
    );
}

#[test]
fn a_device_that_never_answers_times_out() {
    let server = server(Scheme::None);
    server.knobs(|k| k.hang_paths = vec!["/axis-cgi/io/portmanagement.cgi".into()]);
    let mut c = config(&server, HttpAuth::Basic, PASSWORD);
    c.timeout_s = 0.5;
    c.retries = 0;
    let mut b = VapixBackend::new(&c).unwrap();
    let t0 = Instant::now();
    let e = b.execute("r", &pulse("1", 1000)).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, ActionError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(server.wait_for(1, Duration::from_secs(1)).len(), 1);

    // With retries: timeout_s per attempt plus the backoff.
    c.retries = 1;
    c.backoff_s = 0.1;
    let mut b = VapixBackend::new(&c).unwrap();
    let t0 = Instant::now();
    assert!(b.execute("r", &pulse("1", 1000)).is_err());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert_eq!(server.wait_for(3, Duration::from_secs(1)).len(), 3);
}

#[test]
fn refused_connection_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = VapixConfig {
        url: format!("http://127.0.0.1:{port}"),
        credentials: CredentialSource::Config,
        username: Some("root".into()),
        password: Some(Secret::new(PASSWORD)),
        retries: 1,
        backoff_s: 0.01,
        ..VapixConfig::default()
    };
    let mut b = VapixBackend::new(&c).unwrap();
    let (result, log) = with_log(|| b.execute("r", &Command::StopClip));
    assert!(
        matches!(result, Err(ActionError::Unreachable { .. })),
        "{result:?}"
    );
    assert_eq!(log.matches("WARN").count(), 2, "each attempt logged: {log}");
    assert!(!log.contains(PASSWORD));
}

#[test]
fn long_pulses_are_split_into_steps() {
    let server = server(Scheme::None);
    let mut b = VapixBackend::new(&config(&server, HttpAuth::Auto, PASSWORD)).unwrap();
    b.execute(
        "r",
        &Command::Output {
            port: "0".into(),
            state: PortState::Open,
            duration_ms: Some(200_000),
        },
    )
    .unwrap();
    let r = answered(&server);
    assert_eq!(
        body_json(&r[0]),
        json!({"apiVersion":"1.0","method":"setStateSequence","params":{"port":"0","sequence":[
            {"state":"open","time":65535},
            {"state":"open","time":65535},
            {"state":"open","time":65535},
            {"state":"open","time":3395},
            {"state":"closed","time":0}
        ]}})
    );
}

// ---- D-Bus -------------------------------------------------------------------------------

const CHILD_ENV: &str = "EARSHOT_TEST_DBUS_CHILD";

/// A private bus from `dbus-daemon`; killed on drop.
struct Bus {
    child: std::process::Child,
    address: String,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bus() -> Option<Bus> {
    use std::io::BufRead;
    let spawned = std::process::Command::new("dbus-daemon")
        .args(["--session", "--print-address", "--nofork"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!(
                    "dbus-daemon cannot be started ({e}): CI needs Debian's dbus-daemon package"
                );
            }
            eprintln!("SKIPPED: dbus-daemon cannot be started ({e}); install Debian's dbus-daemon");
            return None;
        }
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("dbus-daemon prints its address");
    let address = line.trim().to_owned();
    assert!(
        address.starts_with("unix:"),
        "dbus-daemon printed {address:?}"
    );
    Some(Bus { child, address })
}

struct FakeHttpConf;

#[zbus::interface(name = "com.axis.HTTPConf1.VAPIXServiceAccounts1")]
impl FakeHttpConf {
    #[zbus(name = "GetCredentials")]
    fn get_credentials(&self, account: String) -> zbus::fdo::Result<String> {
        if account == "earshot" {
            Ok("acap-earshot:pa:ss-w0rd".into())
        } else {
            Err(zbus::fdo::Error::InvalidArgs(format!(
                "no account {account}"
            )))
        }
    }
}

/// Runs `dbus_child` of this test binary with `DBUS_SYSTEM_BUS_ADDRESS` set (a subprocess:
/// setting the variable in this multi-threaded process would race the other tests).
fn run_child(bus: &Bus, mode: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "dbus_child", "--nocapture", "--test-threads=1"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env(CHILD_ENV, mode)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {mode} failed:\n{text}");
    assert!(text.contains(&format!("CHILD {mode} OK")), "{text}");
}

/// Only does something when started by [`credentials_from_dbus`].
#[test]
fn dbus_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    use earshot::actions::credentials::vapix_credentials;
    match mode.as_str() {
        "ok" => {
            let (user, password) = vapix_credentials("earshot").expect("credentials");
            assert_eq!(user, "acap-earshot");
            assert_eq!(password.expose(), "pa:ss-w0rd");
            let e = vapix_credentials("nobody").unwrap_err().to_string();
            assert!(
                e.contains("GetCredentials") && e.contains("InvalidArgs"),
                "{e}"
            );
        }
        "missing" => {
            let e = vapix_credentials("earshot").unwrap_err().to_string();
            assert!(
                e.contains("com.axis.HTTPConf1") && e.contains("GetCredentials"),
                "{e}"
            );
            assert!(
                e.contains("ServiceUnknown") || e.contains("not provided"),
                "{e}"
            );
        }
        other => panic!("unknown mode {other}"),
    }
    println!("CHILD {mode} OK");
}

#[test]
fn credentials_from_dbus() {
    let Some(bus) = start_bus() else { return };
    // No service yet: a clear error naming it.
    run_child(&bus, "missing");
    let _service = zbus::blocking::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("com.axis.HTTPConf1")
        .unwrap()
        .serve_at("/com/axis/HTTPConf1/VAPIXServiceAccounts1", FakeHttpConf)
        .unwrap()
        .build()
        .expect("fake com.axis.HTTPConf1 on the private bus");
    run_child(&bus, "ok");
}
