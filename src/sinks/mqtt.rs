//! MQTT sink: every event published with QoS 1, stateful events also retained, a last will,
//! and a bounded backlog that survives broker restarts.
//!
//! # Topics
//!
//! Under `<topic_prefix>/<device_id>/` (prefix `earshot` by default):
//!
//! | topic | QoS | retained | payload |
//! |---|---|---|---|
//! | `events/<name>` | 1 | no | every event, the JSON of [`Event::to_json`] |
//! | `state/<name>` | 1 | yes | the last stateful event (start or stop) of that name |
//! | `status` | 1 | yes | `online` after every connection, `offline` at a clean shutdown and as last will |
//!
//! `<name>` is [`Event::topic_name`]: the class for detections (`glass_break`, `aggression`,
//! `gunshot`, `speech`), `loud_noise_adaptive`, `loud_noise_absolute`, `spl_summary`,
//! `audio_input`, `health`. A subscriber arriving late reads `state/glass_break` to learn whether
//! glass break is active now (`"active": true`) and `status` to learn whether the device is up.
//!
//! ```text
//! earshot/cam-1/status                     online                      (retained)
//! earshot/cam-1/events/glass_break         {"schema":"earshot.event.v1","device_id":"cam-1",
//!                                           "seq":7,"time":"2025-01-01T12:00:03.480Z",
//!                                           "stream_time_s":3.48,"active":true,
//!                                           "event":"detection_start","class":"glass_break",
//!                                           "start_sample":7680,"start_s":0.48,…}
//! earshot/cam-1/state/glass_break          (the same JSON)             (retained)
//! earshot/cam-1/events/spl_summary         {"schema":"earshot.event.v1",…,"event":"spl_summary",…}
//! ```
//!
//! # Delivery: acknowledgements and the backlog
//!
//! An event counts as `delivered` when the broker acknowledged (PUBACK) its `events/` publish
//! and, for a stateful event, its retained `state/` publish too. The `state/` publish is part of
//! the same event and never counted on its own.
//!
//! The sink keeps its own backlog of events not yet acknowledged, at most `backlog` of them. When
//! it is full, the *oldest* event is dropped and counted in `dropped_backlog_full` (an
//! acknowledgement arriving later for a dropped event is ignored, so no event is counted twice).
//! While the broker is reachable the sink feeds the backlog to rumqttc in order, at most
//! [`WINDOW`] publishes unacknowledged at a time. After a reconnection everything still
//! unacknowledged is published again: delivery is at least once, so a subscriber may see an
//! event twice (same `seq`) around a broker restart, but never loses one while the backlog has
//! room.
//!
//! Why the sink keeps its own backlog rather than relying on rumqttc's: rumqttc 0.25 moves
//! unacknowledged publishes and the requests still in its channel to `EventLoop::pending` on a
//! connection error, but clears them when the broker answers `session_present = false`, which
//! a clean session (and any broker restarted without persistence) always does. So the sink uses
//! a clean session, treats everything rumqttc held as lost at a disconnection (it empties the
//! request channel, `pending` and the packet state itself, under the same lock its publishers
//! take, so nothing it submitted can be replayed behind its back), and publishes again from its
//! own backlog after the next CONNACK. Packet ids are matched to events through rumqttc's
//! `Outgoing::Publish(pkid)` notifications, which come in the order the requests were sent.
//!
//! # Connection
//!
//! [`MqttSink::new`] only prepares (client id, topics, TLS roots); [`Sink::start`] starts a
//! helper thread that drives the rumqttc connection and reconnects with exponential backoff,
//! `reconnect_min_s` doubling up to `reconnect_max_s`, reset after a successful connection. The
//! sink is `up` while connected and `down` otherwise; each transition is logged once, naming
//! the broker (`host:port`) and never the password. With `tls = true` the connection uses rustls
//! (ring) and trusts `ca_file` (PEM) or, without it, the system's root certificates.
//!
//! At shutdown ([`Sink::close`]) the sink waits until the backlog is empty or the deadline,
//! publishes `offline` on `status`, and disconnects. Events still unacknowledged then stay
//! `pending` in the health counters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Connection, Event as MqttEvent, Incoming, LastWill, MqttOptions, MqttState, Outgoing,
    QoS, TlsConfiguration, Transport,
};

use super::{Sink, SinkError, SinkState, SinkStats};
use crate::config::MqttConfig;
use crate::events::Event;

/// Payload of the retained `status` topic while connected.
pub const STATUS_ONLINE: &str = "online";
/// Payload of the retained `status` topic after a clean shutdown, and the last will.
pub const STATUS_OFFLINE: &str = "offline";
/// Publishes handed to rumqttc and not yet acknowledged, at most.
pub const WINDOW: usize = 64;
/// Largest MQTT packet sent or accepted, bytes; a bigger event fails (counted `failed`).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

/// The topics of one device: `<prefix>/<device_id>/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    /// Topics under `<prefix>/<device_id>`.
    pub fn new(prefix: &str, device_id: &str) -> Self {
        Self {
            base: format!("{prefix}/{device_id}"),
        }
    }

    /// `<prefix>/<device_id>/events/<name>`: every event, not retained.
    pub fn event(&self, name: &str) -> String {
        format!("{}/events/{name}", self.base)
    }

    /// `<prefix>/<device_id>/state/<name>`: the last stateful event, retained.
    pub fn state(&self, name: &str) -> String {
        format!("{}/state/{name}", self.base)
    }

    /// `<prefix>/<device_id>/status`: `online` / `offline`, retained; the last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
}

/// Exponential reconnect delays: `min`, doubling up to `max`; [`Backoff::reset`] after a
/// successful connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `min_s` doubling to `max_s`, seconds. Values that are not finite or out of
    /// range are clamped (0.01 s to one day; `max_s` at least `min_s`).
    pub fn new(min_s: f64, max_s: f64) -> Self {
        let secs = |s: f64| {
            let s = if s.is_finite() { s } else { 0.5 };
            Duration::from_secs_f64(s.clamp(0.01, 86_400.0))
        };
        let min = secs(min_s);
        let max = secs(max_s).max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; the one after it is twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to `min` (after a successful connection).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What a publish handed to rumqttc was for, to account its PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// The `events/` publish of backlog entry `id`.
    Event(u64),
    /// The retained `state/` publish of backlog entry `id`.
    State(u64),
    /// `online` on `status`.
    Birth,
    /// `offline` on `status` at shutdown.
    Offline,
}

/// One event not yet acknowledged.
#[derive(Debug)]
struct Entry {
    id: u64,
    event_topic: String,
    state_topic: Option<String>,
    payload: Vec<u8>,
    event_sent: bool,
    event_acked: bool,
    state_sent: bool,
    state_acked: bool,
}

impl Entry {
    fn done(&self) -> bool {
        self.event_acked && (self.state_topic.is_none() || self.state_acked)
    }
}

/// Events not yet acknowledged, oldest first, at most `cap`.
#[derive(Debug)]
struct Backlog {
    cap: usize,
    entries: VecDeque<Entry>,
    next_id: u64,
}

impl Backlog {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            entries: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Adds an event; returns how many of the oldest were dropped to make room.
    fn push(&mut self, event_topic: String, state_topic: Option<String>, payload: Vec<u8>) -> u64 {
        let mut dropped = 0;
        while self.entries.len() >= self.cap {
            self.entries.pop_front();
            dropped += 1;
        }
        self.entries.push_back(Entry {
            id: self.next_id,
            event_topic,
            state_topic,
            payload,
            event_sent: false,
            event_acked: false,
            state_sent: false,
            state_acked: false,
        });
        self.next_id += 1;
        dropped
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn index(&self, id: u64) -> Option<usize> {
        // Ids increase along the deque.
        self.entries.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// Records the PUBACK of `tag`; true when its event is now fully acknowledged (and removed).
    /// Acknowledgements of events no longer held (dropped) are ignored.
    fn ack(&mut self, tag: Tag) -> bool {
        let (id, is_state) = match tag {
            Tag::Event(id) => (id, false),
            Tag::State(id) => (id, true),
            Tag::Birth | Tag::Offline => return false,
        };
        let Some(i) = self.index(id) else {
            return false;
        };
        let e = &mut self.entries[i];
        if is_state {
            e.state_acked = true;
        } else {
            e.event_acked = true;
        }
        if e.done() {
            self.entries.remove(i);
            true
        } else {
            false
        }
    }

    /// After a disconnection: whatever was sent and not acknowledged must be sent again.
    fn mark_unsent(&mut self) {
        for e in &mut self.entries {
            e.event_sent = false;
            e.state_sent = false;
        }
    }
}

/// State shared by the sink's thread and the network thread, under one lock.
#[derive(Debug)]
struct Inner {
    backlog: Backlog,
    /// Connected (CONNACK seen, no error since): publishes may be handed to rumqttc.
    connected: bool,
    /// The network thread should end.
    stop: bool,
    /// Publishes handed to rumqttc, waiting for their packet id, in request order.
    submitted: VecDeque<Tag>,
    /// Publishes with a packet id, waiting for their PUBACK.
    inflight: HashMap<u16, Tag>,
    /// `offline` was acknowledged.
    offline_acked: bool,
    /// A backlog overflow was logged since the last connection.
    overflow_logged: bool,
}

impl Inner {
    fn unacked(&self) -> usize {
        self.submitted.len() + self.inflight.len()
    }

    /// Hands unsent backlog publishes to rumqttc, in order, while connected and the window has
    /// room.
    fn pump(&mut self, client: &Client) {
        if !self.connected {
            return;
        }
        let mut room = WINDOW.saturating_sub(self.unacked());
        let mut submitted = Vec::new();
        for e in self.backlog.entries.iter_mut() {
            if room == 0 {
                break;
            }
            if !e.event_acked && !e.event_sent {
                if client
                    .try_publish(
                        e.event_topic.as_str(),
                        QoS::AtLeastOnce,
                        false,
                        e.payload.clone(),
                    )
                    .is_err()
                {
                    break;
                }
                e.event_sent = true;
                submitted.push(Tag::Event(e.id));
                room -= 1;
            }
            if room == 0 {
                break;
            }
            if let Some(state_topic) = &e.state_topic {
                if !e.state_acked && !e.state_sent {
                    if client
                        .try_publish(
                            state_topic.as_str(),
                            QoS::AtLeastOnce,
                            true,
                            e.payload.clone(),
                        )
                        .is_err()
                    {
                        break;
                    }
                    e.state_sent = true;
                    submitted.push(Tag::State(e.id));
                    room -= 1;
                }
            }
        }
        self.submitted.extend(submitted);
    }

    /// Accounts one rumqttc notification (packet ids and PUBACKs).
    fn on_event(&mut self, event: &MqttEvent, stats: &SinkStats) {
        match event {
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(tag) = self.submitted.pop_front() {
                    self.inflight.insert(*pkid, tag);
                }
            }
            MqttEvent::Incoming(Incoming::PubAck(ack)) => match self.inflight.remove(&ack.pkid) {
                Some(Tag::Offline) => self.offline_acked = true,
                Some(tag) => {
                    let completed = self.backlog.ack(tag);
                    SinkStats::add(&stats.delivered, u64::from(completed));
                }
                None => {}
            },
            _ => {}
        }
    }

    /// After a connection error: rumqttc dropped what it held; send it all again later.
    fn on_disconnect(&mut self) {
        self.connected = false;
        self.submitted.clear();
        self.inflight.clear();
        self.backlog.mark_unsent();
    }
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Signalled on every acknowledgement and state change.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The MQTT sink. See the module documentation for topics, QoS and delivery.
pub struct MqttSink {
    broker: String,
    client_id: String,
    topics: Topics,
    options: Option<MqttOptions>,
    backoff: Backoff,
    shared: Arc<Shared>,
    client: Option<Client>,
    net: Option<JoinHandle<()>>,
}

impl MqttSink {
    /// A sink for `config`, publishing under `<topic_prefix>/<device_id>/`. Prepares only (client
    /// id, topics, last will, TLS roots); [`Sink::start`] connects.
    ///
    /// # Errors
    /// [`SinkError::Other`] naming the broker when the client id is empty or starts with a space,
    /// or (TLS) `ca_file` cannot be read or holds no certificate, or no system root certificate
    /// can be loaded.
    pub fn new(config: &MqttConfig, device_id: &str) -> Result<Self, SinkError> {
        let broker = format!("{}:{}", config.host, config.port);
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("earshot-{device_id}"));
        if client_id.is_empty() || client_id.starts_with(char::is_whitespace) {
            return Err(SinkError::Other(format!(
                "MQTT broker {broker}: client id {client_id:?} is empty or starts with a space"
            )));
        }
        let topics = Topics::new(&config.topic_prefix, device_id);
        let mut options = MqttOptions::new(client_id.clone(), config.host.clone(), config.port);
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(u64::from(config.keep_alive_s.max(5))))
            .set_inflight((WINDOW + 8) as u16)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_last_will(LastWill::new(
                topics.status(),
                STATUS_OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        if config.tls {
            let tls = tls_config(config.ca_file.as_deref())
                .map_err(|e| SinkError::Other(format!("MQTT broker {broker}: {e}")))?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
        }
        Ok(Self {
            broker,
            client_id,
            topics,
            options: Some(options),
            backoff: Backoff::new(config.reconnect_min_s, config.reconnect_max_s),
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    backlog: Backlog::new(config.backlog),
                    connected: false,
                    stop: false,
                    submitted: VecDeque::new(),
                    inflight: HashMap::new(),
                    offline_acked: false,
                    overflow_logged: false,
                }),
                changed: Condvar::new(),
            }),
            client: None,
            net: None,
        })
    }

    /// The topics this sink publishes on.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Waits until the network thread ends or `deadline`; leaves it behind after that.
    fn join_net(&mut self, deadline: Instant) {
        let Some(net) = self.net.take() else { return };
        while !net.is_finished() {
            if Instant::now() >= deadline {
                tracing::debug!(broker = %self.broker, "MQTT network thread still busy at the close deadline; leaving it");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = net.join();
    }
}

/// A rustls client configuration (ring) trusting `ca_file` (PEM) or the system's roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading the CA file {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "the CA file {} holds no usable PEM certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no system root certificate could be loaded ({} errors); set sinks.mqtt.ca_file",
                    found.errors.len()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// What the network thread needs.
struct Net {
    broker: String,
    client_id: String,
    status_topic: String,
    backoff: Backoff,
    client: Client,
    shared: Arc<Shared>,
    stats: Arc<SinkStats>,
}

impl Net {
    /// Drives the connection until told to stop: accounts acknowledgements, publishes `online`
    /// after each connection, reconnects with backoff.
    fn run(mut self, mut conn: Connection) {
        let mut down_logged = false;
        loop {
            let next = conn.recv();
            let shared = Arc::clone(&self.shared);
            let mut g = shared.lock();
            match next {
                Err(_) => break, // every client is gone
                Ok(Ok(MqttEvent::Incoming(Incoming::ConnAck(_)))) => {
                    if g.stop {
                        break;
                    }
                    g.connected = true;
                    g.overflow_logged = false;
                    self.backoff.reset();
                    self.stats.set_state(SinkState::Up);
                    tracing::info!(
                        broker = %self.broker,
                        client_id = %self.client_id,
                        backlog = g.backlog.len(),
                        "MQTT connected"
                    );
                    down_logged = false;
                    if self
                        .client
                        .try_publish(
                            self.status_topic.as_str(),
                            QoS::AtLeastOnce,
                            true,
                            STATUS_ONLINE,
                        )
                        .is_ok()
                    {
                        g.submitted.push_back(Tag::Birth);
                    }
                    g.pump(&self.client);
                    self.shared.changed.notify_all();
                }
                Ok(Ok(event)) => {
                    if matches!(event, MqttEvent::Outgoing(Outgoing::Disconnect)) && g.stop {
                        break;
                    }
                    g.on_event(&event, &self.stats);
                    g.pump(&self.client);
                    self.shared.changed.notify_all();
                }
                Ok(Err(e)) => {
                    // Acknowledgements read before the error are real: account them first.
                    let leftover: Vec<MqttEvent> = conn.eventloop.state.events.drain(..).collect();
                    for ev in &leftover {
                        g.on_event(ev, &self.stats);
                    }
                    // Forget whatever rumqttc still holds (requests in its channel, even those
                    // submitted after its own clean-up, its pending list and packet state): the
                    // backlog sends it all again after the next CONNACK.
                    conn.eventloop.clean();
                    conn.eventloop.pending.clear();
                    conn.eventloop.state = MqttState::new((WINDOW + 8) as u16, false);
                    let was_connected = g.connected;
                    g.on_disconnect();
                    self.shared.changed.notify_all();
                    if g.stop {
                        break;
                    }
                    self.stats.set_state(SinkState::Down);
                    if was_connected {
                        tracing::warn!(
                            broker = %self.broker,
                            error = %e,
                            backlog = g.backlog.len(),
                            "MQTT connection lost; reconnecting"
                        );
                    } else if !down_logged {
                        tracing::warn!(
                            broker = %self.broker,
                            error = %e,
                            "cannot connect to the MQTT broker; retrying"
                        );
                    } else {
                        tracing::debug!(broker = %self.broker, error = %e, "MQTT connect failed");
                    }
                    down_logged = true;
                    let delay = self.backoff.next_delay();
                    let (g, _) = self
                        .shared
                        .changed
                        .wait_timeout_while(g, delay, |s| !s.stop)
                        .unwrap_or_else(|e| e.into_inner());
                    if g.stop {
                        break;
                    }
                }
            }
        }
        tracing::debug!(broker = %self.broker, "MQTT network thread ends");
    }
}

impl Sink for MqttSink {
    fn name(&self) -> String {
        format!("mqtt:{}", self.broker)
    }

    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError> {
        let Some(options) = self.options.take() else {
            return Err(SinkError::Other(format!(
                "MQTT broker {}: the sink was started twice",
                self.broker
            )));
        };
        // Room for the window, the status publishes and the disconnect.
        let (client, conn) = Client::new(options, WINDOW * 2 + 16);
        let net = Net {
            broker: self.broker.clone(),
            client_id: self.client_id.clone(),
            status_topic: self.topics.status(),
            backoff: self.backoff.clone(),
            client: client.clone(),
            shared: Arc::clone(&self.shared),
            stats,
        };
        let handle = std::thread::Builder::new()
            .name("mqtt-net".into())
            .spawn(move || net.run(conn))
            .map_err(|source| SinkError::Io {
                what: format!("starting the MQTT network thread for {}", self.broker),
                source,
            })?;
        self.client = Some(client);
        self.net = Some(handle);
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        let Some(client) = &self.client else {
            SinkStats::add(&stats.failed, 1);
            return;
        };
        let name = event.topic_name();
        let event_topic = self.topics.event(name);
        let payload = event.to_json().into_bytes();
        if payload.len() + event_topic.len() + 16 > MAX_PACKET_BYTES {
            tracing::warn!(
                broker = %self.broker,
                topic = %event_topic,
                bytes = payload.len(),
                "event too large for MQTT; not sent"
            );
            SinkStats::add(&stats.failed, 1);
            return;
        }
        let state_topic = event.is_stateful().then(|| self.topics.state(name));
        let mut g = self.shared.lock();
        let dropped = g.backlog.push(event_topic, state_topic, payload);
        if dropped > 0 {
            SinkStats::add(&stats.dropped_backlog_full, dropped);
            if !g.overflow_logged {
                g.overflow_logged = true;
                tracing::warn!(
                    broker = %self.broker,
                    backlog = g.backlog.cap,
                    "MQTT backlog full; dropping the oldest events"
                );
            }
        }
        g.pump(client);
    }

    fn close(&mut self, deadline: Instant, _stats: &SinkStats) {
        let Some(client) = self.client.take() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let mut g = shared.lock();
        // Deliver what is held, keeping a moment before the deadline to say goodbye and log.
        let flush_until = deadline
            .checked_sub(Duration::from_millis(50))
            .unwrap_or(deadline);
        while g.backlog.len() > 0 {
            let now = Instant::now();
            if now >= flush_until {
                break;
            }
            g = shared
                .changed
                .wait_timeout(g, flush_until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if g.backlog.len() > 0 {
            tracing::warn!(
                broker = %self.broker,
                unacknowledged = g.backlog.len(),
                "MQTT: closing with events not acknowledged by the broker"
            );
        }
        // Say goodbye while connected: `offline`, retained, then DISCONNECT (which suppresses
        // the last will, hence the explicit publish).
        if g.connected {
            if client
                .try_publish(self.topics.status(), QoS::AtLeastOnce, true, STATUS_OFFLINE)
                .is_ok()
            {
                g.submitted.push_back(Tag::Offline);
                while g.connected && !g.offline_acked {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    g = shared
                        .changed
                        .wait_timeout(g, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            g.stop = true;
            if client.try_disconnect().is_err() {
                tracing::debug!(broker = %self.broker, "MQTT disconnect could not be queued");
            }
        } else {
            g.stop = true;
        }
        shared.changed.notify_all();
        drop(g);
        self.join_net(deadline);
        tracing::info!(broker = %self.broker, "MQTT closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_layout() {
        let t = Topics::new("earshot", "cam-1");
        assert_eq!(t.event("glass_break"), "earshot/cam-1/events/glass_break");
        assert_eq!(t.state("glass_break"), "earshot/cam-1/state/glass_break");
        assert_eq!(t.status(), "earshot/cam-1/status");
        assert_eq!(
            Topics::new("site/a", "d").event("health"),
            "site/a/d/events/health"
        );
    }

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(0.5, 30.0);
        let got: Vec<f64> = (0..9).map(|_| b.next_delay().as_secs_f64()).collect();
        assert_eq!(got, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        // Nonsense is clamped, never a panic.
        let mut b = Backoff::new(f64::NAN, -1.0);
        assert!(b.next_delay() > Duration::ZERO);
        let mut b = Backoff::new(2.0, 1.0);
        assert_eq!(b.next_delay(), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }

    fn push(b: &mut Backlog, stateful: bool) -> u64 {
        b.push(
            "t/events/x".into(),
            stateful.then(|| "t/state/x".into()),
            b"{}".to_vec(),
        )
    }

    #[test]
    fn backlog_drops_oldest_and_ignores_their_acks() {
        let mut b = Backlog::new(3);
        let dropped: u64 = (0..5).map(|_| push(&mut b, false)).sum();
        assert_eq!(dropped, 2);
        assert_eq!(b.len(), 3);
        let ids: Vec<u64> = b.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3, 4]);
        // An ack for a dropped event counts nothing; for a held one it completes it.
        assert!(!b.ack(Tag::Event(0)));
        assert!(b.ack(Tag::Event(3)));
        assert!(!b.ack(Tag::Event(3)), "a duplicate ack counts once");
        assert_eq!(b.len(), 2);
        assert!(!b.ack(Tag::Birth));
    }

    #[test]
    fn stateful_event_needs_both_acks() {
        let mut b = Backlog::new(10);
        push(&mut b, true);
        assert!(!b.ack(Tag::Event(0)));
        assert_eq!(b.len(), 1);
        assert!(b.ack(Tag::State(0)));
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn pkids_map_in_request_order_and_disconnect_resends() {
        let stats = SinkStats::default();
        let mut inner = Inner {
            backlog: Backlog::new(10),
            connected: true,
            stop: false,
            submitted: VecDeque::new(),
            inflight: HashMap::new(),
            offline_acked: false,
            overflow_logged: false,
        };
        push(&mut inner.backlog, false);
        push(&mut inner.backlog, true);
        for e in inner.backlog.entries.iter_mut() {
            e.event_sent = true;
        }
        inner.backlog.entries[1].state_sent = true;
        inner
            .submitted
            .extend([Tag::Event(0), Tag::Event(1), Tag::State(1)]);
        for pkid in [7u16, 8, 9] {
            inner.on_event(&MqttEvent::Outgoing(Outgoing::Publish(pkid)), &stats);
        }
        let ack = |p| MqttEvent::Incoming(Incoming::PubAck(rumqttc::PubAck::new(p)));
        inner.on_event(&ack(7), &stats);
        inner.on_event(&ack(8), &stats);
        assert_eq!(
            stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The connection drops before the state publish of event 1 is acknowledged.
        inner.on_disconnect();
        assert!(inner.inflight.is_empty() && inner.submitted.is_empty());
        let e = &inner.backlog.entries[0];
        assert!(e.event_acked && !e.state_sent && !e.state_acked);
        // A stale ack with an old packet id after the reconnection counts nothing.
        inner.on_event(&ack(9), &stats);
        assert_eq!(
            stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(inner.backlog.len(), 1);
    }
}
