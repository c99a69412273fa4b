//! The live view's data: what the pipeline publishes ([`LiveTap`]) and the hub that fans it out
//! to Server-Sent-Events clients and keeps what the JSON API reads ([`LiveHub`]).
//!
//! ```text
//! analysis thread ─► LiveTap::{level, patch, status} ─► bounded channel (try_send, never blocks)
//! sink thread     ─► HubSink::deliver (events)       ─┘        │
//!                                                        hub thread: serialise once, keep the
//!                                                        latest status and the last events,
//!                                                        try_send to every client's queue
//!                                                                 │
//!                                        one thread per client: write `event:`/`data:` frames
//! ```
//!
//! Nothing in the hub can stall the pipeline: the tap drops (and counts) what the hub has no room
//! for, and the hub drops (and counts, per client) what a client's queue has no room for. A
//! client whose queue stayed full for [`EVICT_AFTER`] is dropped from the hub; its thread ends
//! when its connection fails. Memory is bounded by the queue sizes, whatever the clients do.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::classes::EarshotClass;
use crate::events::{Event, EventBody, Health};
use crate::sinks::{Sink, SinkError, SinkStats};

/// Messages the tap can hold before the hub takes them; beyond, new ones are dropped.
pub const TAP_QUEUE: usize = 1024;
/// Frames one client's queue holds (about 20 s of a real-time stream).
pub const CLIENT_QUEUE: usize = 256;
/// A client whose queue stayed full this long is dropped from the hub.
pub const EVICT_AFTER: Duration = Duration::from_secs(10);
/// Events kept for `GET /api/events`.
pub const RECENT_EVENTS: usize = 200;
/// Seconds of audio between two `level` messages.
pub const LEVEL_EVERY_S: f64 = 0.1;

/// Level message (`event: level`), every [`LEVEL_EVERY_S`] of audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LevelPoint {
    /// Audio time of the reading, seconds since the input started.
    pub t: f64,
    /// LAF (A-weighted, Fast), dBFS (IEC 61672-1).
    pub laf_dbfs: f64,
    /// LAeq over the last second, dBFS.
    pub laeq_1s_dbfs: f64,
    /// The learned background (20th percentile of the 100 ms LAeq over 60 s), dBFS.
    pub background_dbfs: Option<f64>,
}

/// Per-patch class evidence (`event: patch`), every hop of the classifier (0.48 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchScores {
    /// Audio time the patch was classified (its end), seconds.
    pub t: f64,
    /// Start of the patch's audio, seconds.
    pub start_s: f64,
    /// End of the patch's audio, seconds.
    pub end_s: f64,
    /// Evidence per class in [0, 1], in [`EarshotClass::ALL`] order.
    pub scores: [f32; EarshotClass::ALL.len()],
}

impl Serialize for PatchScores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Scores<'a>(&'a [f32; EarshotClass::ALL.len()]);
        impl Serialize for Scores<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for c in EarshotClass::ALL {
                    m.serialize_entry(c.name(), &self.0[c.slot()])?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("t", &self.t)?;
        m.serialize_entry("start_s", &self.start_s)?;
        m.serialize_entry("end_s", &self.end_s)?;
        m.serialize_entry("scores", &Scores(&self.scores))?;
        m.end()
    }
}

/// The pipeline's state for `GET /api/status`, published once a second of wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Earshot's version.
    pub version: &'static str,
    /// The input, as described by its source (`alsa:default`, `wav:…`).
    pub input: String,
    /// The input's sample rate, Hz.
    pub sample_rate_hz: u32,
    /// A live input (capture) rather than a file read at its own pace.
    pub live: bool,
    /// Seconds of audio analysed.
    pub audio_s: f64,
    /// Seconds since the run started.
    pub uptime_s: f64,
    /// Capture overruns (the analysis fell behind by more than the ring).
    pub overruns: u64,
    /// Underruns (a live source delivered nothing within the latency budget).
    pub underruns: u64,
    /// Audio waiting in the capture ring, seconds.
    pub backlog_s: f64,
    /// Share of one CPU core the analysis thread was busy over the last second (0 to 1).
    pub pipeline_cpu_share: f64,
    /// Patches produced and classified since the run (or its last restart) began, as in the
    /// health event: `patches_classified / patches` is the share the cascade gate let through.
    pub patches: u64,
    /// See [`Status::patches`].
    pub patches_classified: u64,
    /// The classifier (`embedded YAMNet` or the model file).
    pub model: String,
    /// The learned background, dBFS.
    pub background_dbfs: Option<f64>,
    /// Each sink's state and counters, as in the health event.
    pub sinks: Vec<crate::events::SinkHealth>,
    /// Live-view messages the hub had no room for (dropped, never waited for).
    pub live_dropped: u64,
}

impl Status {
    /// A status from a health report and what only the run loop knows.
    pub fn from_health(
        h: &Health,
        live: bool,
        pipeline_cpu_share: f64,
        model: &str,
        background_dbfs: Option<f64>,
    ) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            input: h.input.clone(),
            sample_rate_hz: h.sample_rate_hz,
            live,
            audio_s: h.audio_s,
            uptime_s: h.uptime_s,
            overruns: h.overruns,
            underruns: h.underruns,
            backlog_s: h.backlog_s,
            pipeline_cpu_share,
            patches: h.patches,
            patches_classified: h.patches_classified,
            model: model.to_owned(),
            background_dbfs,
            sinks: h.sinks.clone(),
            live_dropped: 0,
        }
    }
}

enum LiveMsg {
    Level(LevelPoint),
    Patch(PatchScores),
    Status(Box<Status>),
    Event(Arc<Event>),
}

/// The pipeline's side of the live view: non-blocking, allocation-free sends of levels and
/// patch scores (status once a second allocates its sink list). Cloneable; every clone feeds
/// the same hub.
#[derive(Clone)]
pub struct LiveTap {
    tx: SyncSender<LiveMsg>,
    dropped: Arc<AtomicU64>,
}

impl LiveTap {
    fn send(&self, m: LiveMsg) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publishes a level reading.
    pub fn level(&self, p: LevelPoint) {
        self.send(LiveMsg::Level(p));
    }

    /// Publishes one patch's class evidence.
    pub fn patch(&self, p: PatchScores) {
        self.send(LiveMsg::Patch(p));
    }

    /// Publishes the pipeline's status.
    pub fn status(&self, s: Status) {
        self.send(LiveMsg::Status(Box::new(s)));
    }
}

/// One live-stream client: its queue of SSE frames.
struct Client {
    tx: SyncSender<Arc<str>>,
    full_since: Option<Instant>,
    dropped: u64,
}

/// What the JSON API reads.
#[derive(Default)]
struct Shared {
    status: Option<Status>,
    events: VecDeque<Arc<str>>,
    clients: Vec<Client>,
    /// Frames dropped for clients that did not keep up.
    client_drops: u64,
}

/// The hub: a thread that serialises what the tap and the event sink send, keeps the latest
/// status and the last [`RECENT_EVENTS`] events, and fans frames out to stream clients.
pub struct LiveHub {
    shared: Arc<Mutex<Shared>>,
    tap: LiveTap,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The hub's state stays consistent between statements; a panic elsewhere does not poison
    // what the API may read.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveHub {
    /// Starts the hub thread. It ends when every [`LiveTap`] and [`HubSink`] is dropped
    /// together with the hub.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(TAP_QUEUE);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let dropped = Arc::new(AtomicU64::new(0));
        {
            let shared = Arc::clone(&shared);
            let dropped = Arc::clone(&dropped);
            std::thread::Builder::new()
                .name("live-hub".into())
                .spawn(move || hub_loop(&rx, &shared, &dropped))?;
        }
        Ok(Self {
            shared,
            tap: LiveTap { tx, dropped },
        })
    }

    /// A tap for the pipeline.
    pub fn tap(&self) -> LiveTap {
        self.tap.clone()
    }

    /// An event sink that feeds the hub (`live-view` in health reports).
    pub fn event_sink(&self) -> HubSink {
        HubSink {
            tap: self.tap.clone(),
        }
    }

    /// The latest status, as JSON; `None` before the pipeline published one.
    pub fn status_json(&self) -> Option<String> {
        let s = lock(&self.shared);
        let mut status = s.status.clone()?;
        status.live_dropped = self.tap.dropped.load(Ordering::Relaxed) + s.client_drops;
        serde_json::to_string(&status).ok()
    }

    /// The last `limit` events (oldest first) as a JSON array.
    pub fn events_json(&self, limit: usize) -> String {
        let s = lock(&self.shared);
        let skip = s.events.len().saturating_sub(limit);
        let mut out = String::from("[");
        for (i, e) in s.events.iter().skip(skip).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(e);
        }
        out.push(']');
        out
    }

    /// Subscribes a stream client; `None` when `max` clients are already subscribed.
    pub fn subscribe(&self, max: usize) -> Option<Receiver<Arc<str>>> {
        let mut s = lock(&self.shared);
        if s.clients.len() >= max {
            return None;
        }
        let (tx, rx) = sync_channel(CLIENT_QUEUE);
        s.clients.push(Client {
            tx,
            full_since: None,
            dropped: 0,
        });
        Some(rx)
    }

    /// Stream clients subscribed now.
    pub fn clients(&self) -> usize {
        lock(&self.shared).clients.len()
    }
}

fn frame(name: &str, data: &str) -> Arc<str> {
    Arc::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn hub_loop(rx: &Receiver<LiveMsg>, shared: &Mutex<Shared>, _dropped: &AtomicU64) {
    loop {
        let msg = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let out = match msg {
            None => None,
            Some(LiveMsg::Level(p)) => serde_json::to_string(&p).ok().map(|d| frame("level", &d)),
            Some(LiveMsg::Patch(p)) => serde_json::to_string(&p).ok().map(|d| frame("patch", &d)),
            Some(LiveMsg::Status(st)) => {
                lock(shared).status = Some(*st);
                None
            }
            Some(LiveMsg::Event(e)) => {
                if matches!(e.body, EventBody::Health(_)) {
                    None
                } else {
                    match serde_json::to_string(&*e) {
                        Ok(json) => {
                            let f = frame("event", &json);
                            let mut s = lock(shared);
                            if s.events.len() == RECENT_EVENTS {
                                s.events.pop_front();
                            }
                            s.events.push_back(Arc::from(json));
                            Some(f)
                        }
                        Err(_) => None,
                    }
                }
            }
        };
        let mut s = lock(shared);
        let now = Instant::now();
        let mut drops = 0;
        s.clients.retain_mut(|c| {
            let Some(f) = &out else {
                // A quiet second: still evict a client that has been stuck.
                return c.full_since.is_none_or(|t| now - t < EVICT_AFTER);
            };
            match c.tx.try_send(Arc::clone(f)) {
                Ok(()) => {
                    c.full_since = None;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    c.dropped += 1;
                    drops += 1;
                    let since = *c.full_since.get_or_insert(now);
                    let keep = now - since < EVICT_AFTER;
                    if !keep {
                        tracing::warn!(
                            dropped = c.dropped,
                            "live-view client not reading for {} s: dropped",
                            EVICT_AFTER.as_secs()
                        );
                    }
                    keep
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
        s.client_drops += drops;
    }
}

/// The event sink that feeds the live view and `GET /api/events`.
pub struct HubSink {
    tap: LiveTap,
}

impl Sink for HubSink {
    fn name(&self) -> String {
        "live-view".into()
    }

    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError> {
        stats.set_state(crate::sinks::SinkState::Up);
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        // Events are few; still, never wait for the hub.
        match self
            .tap
            .tx
            .try_send(LiveMsg::Event(Arc::new(event.clone())))
        {
            Ok(()) => SinkStats::add(&stats.delivered, 1),
            Err(_) => SinkStats::add(&stats.failed, 1),
        }
    }

    fn close(&mut self, _deadline: Instant, _stats: &SinkStats) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(t: f64) -> LevelPoint {
        LevelPoint {
            t,
            laf_dbfs: -40.0,
            laeq_1s_dbfs: -41.0,
            background_dbfs: None,
        }
    }

    #[test]
    fn a_client_that_never_reads_holds_at_most_its_queue_and_others_still_get_every_frame() {
        let hub = LiveHub::start().unwrap();
        let stuck = hub.subscribe(8).unwrap();
        let reader = hub.subscribe(8).unwrap();
        let tap = hub.tap();
        let n = CLIENT_QUEUE * 3;
        let mut got = 0;
        for i in 0..n {
            tap.level(level(i as f64 * 0.1));
            // The reader keeps up, one frame per message.
            if reader.recv_timeout(Duration::from_secs(5)).is_ok() {
                got += 1;
            }
        }
        assert_eq!(got, n, "the reading client lost frames");
        // The stuck client's queue is full and bounded; the rest was dropped for it alone.
        assert_eq!(stuck.try_iter().count(), CLIENT_QUEUE);
        assert!(lock(&hub.shared).client_drops >= (n - CLIENT_QUEUE) as u64);
    }

    #[test]
    fn subscriptions_are_limited_and_a_closed_client_frees_its_slot() {
        let hub = LiveHub::start().unwrap();
        let a = hub.subscribe(2).unwrap();
        let _b = hub.subscribe(2).unwrap();
        assert!(hub.subscribe(2).is_none());
        drop(a);
        hub.tap().level(level(0.0));
        let until = Instant::now() + Duration::from_secs(5);
        while hub.clients() > 1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(hub.clients(), 1);
        assert!(hub.subscribe(2).is_some());
    }

    #[test]
    fn patch_frames_name_every_class() {
        let p = PatchScores {
            t: 1.0,
            start_s: 0.025,
            end_s: 1.0,
            scores: [0.5, 0.25, 0.0, 1.0],
        };
        let v: serde_json::Value = serde_json::to_value(p).unwrap();
        assert_eq!(v["scores"]["glass_break"], 0.5);
        assert_eq!(v["scores"]["aggression"], 0.25);
        assert_eq!(v["scores"]["speech"], 1.0);
    }
}
