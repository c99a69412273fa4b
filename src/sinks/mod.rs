//! Event sinks: where events go, each behind its own bounded queue and thread.
//!
//! The analysis thread offers every [`Event`] to every sink with [`SinkHandle::offer`], which
//! never blocks: when a sink's queue is full the event is dropped *for that sink* and counted
//! (`dropped_queue_full`). Each sink runs on its own thread, so a slow or dead sink (a broker
//! that is down, a webhook that hangs, a pipe nobody reads) stalls only itself.
//!
//! | module | sink |
//! |---|---|
//! | [`jsonl`] | JSON lines to stdout or a file |
//! | [`mqtt`] | MQTT 3.1.1 with QoS 1, retained state, last will, backlog across reconnects |
//! | [`webhook`] | HTTP POST of the event JSON, with retries |

pub mod jsonl;
pub mod mqtt;
pub mod webhook;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::events::{Event, SinkHealth};

/// Why a sink could not start or deliver.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error on the sink's output (file, pipe, socket), with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What the sink was doing (`opening /var/log/earshot.jsonl`).
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else the sink reports, in words.
    #[error("{0}")]
    Other(String),
}

/// An event destination. Runs on its own thread, fed by [`SinkHandle`].
pub trait Sink: Send + 'static {
    /// A short name for logs and health reports (`jsonl`, `mqtt`, `webhook:host`).
    fn name(&self) -> String;

    /// Called once on the sink's thread before the first event: open files, connect, start
    /// helper threads. `stats` is the sink's shared counters; sinks that confirm delivery
    /// later (MQTT) keep it to count then.
    ///
    /// # Errors
    /// The sink cannot start; it is then reported `down` and every event counts as failed.
    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError>;

    /// Delivers one event; may block, retry and back off (it is on its own thread). Counts the
    /// outcome in `stats` (`delivered`, `failed`, `dropped_backlog_full`), or leaves it pending
    /// when delivery is confirmed later.
    fn deliver(&mut self, event: &Event, stats: &SinkStats);

    /// Called once when no more events will come: deliver what is held, waiting at most until
    /// `deadline`.
    fn close(&mut self, deadline: Instant, stats: &SinkStats);
}

/// The state of a sink, as in [`SinkHealth::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SinkState {
    /// Not yet started or connected.
    Starting = 0,
    /// Delivering.
    Up = 1,
    /// Not delivering (broker down, file unwritable); events queue or fail.
    Down = 2,
}

/// Lock-free counters of one sink, shared between the analysis thread, the sink's thread and
/// any helper thread of the sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    state: AtomicU8,
    /// Events offered and accepted into the queue.
    pub accepted: AtomicU64,
    /// Events confirmed delivered.
    pub delivered: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Events dropped because the sink's backlog was full.
    pub dropped_backlog_full: AtomicU64,
    /// Events given up on.
    pub failed: AtomicU64,
}

impl SinkStats {
    /// Sets the sink's state.
    pub fn set_state(&self, s: SinkState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// The sink's state.
    pub fn state(&self) -> SinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => SinkState::Up,
            2 => SinkState::Down,
            _ => SinkState::Starting,
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as a health entry for the sink called `name`.
    pub fn health(&self, name: &str) -> SinkHealth {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let accepted = get(&self.accepted);
        let delivered = get(&self.delivered);
        let backlog = get(&self.dropped_backlog_full);
        let failed = get(&self.failed);
        SinkHealth {
            name: name.to_owned(),
            state: match self.state() {
                SinkState::Starting => "starting",
                SinkState::Up => "up",
                SinkState::Down => "down",
            },
            delivered,
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_backlog_full: backlog,
            failed,
            pending: accepted.saturating_sub(delivered + backlog + failed),
        }
    }
}

/// A running sink: its queue, thread and counters.
pub struct SinkHandle {
    name: String,
    tx: Option<SyncSender<Arc<Event>>>,
    stats: Arc<SinkStats>,
    thread: Option<JoinHandle<()>>,
    close_deadline: Arc<std::sync::OnceLock<Instant>>,
}

impl SinkHandle {
    /// Starts `sink` on its own thread behind a queue of `queue_len` events (at least 1).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(mut sink: Box<dyn Sink>, queue_len: usize) -> std::io::Result<Self> {
        let name = sink.name();
        let (tx, rx) = sync_channel::<Arc<Event>>(queue_len.max(1));
        let stats = Arc::new(SinkStats::default());
        let close_deadline = Arc::new(std::sync::OnceLock::new());
        let thread = {
            let stats = Arc::clone(&stats);
            let deadline = Arc::clone(&close_deadline);
            let name = name.clone();
            std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || run_sink(&mut *sink, &name, rx, &stats, &deadline))?
        };
        Ok(Self {
            name,
            tx: Some(tx),
            stats,
            thread: Some(thread),
            close_deadline,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offers an event without blocking; a full queue drops it and counts the drop.
    pub fn offer(&self, event: &Arc<Event>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Arc::clone(event)) {
            Ok(()) => SinkStats::add(&self.stats.accepted, 1),
            Err(TrySendError::Full(_)) => SinkStats::add(&self.stats.dropped_queue_full, 1),
            Err(TrySendError::Disconnected(_)) => {
                SinkStats::add(&self.stats.accepted, 1);
                SinkStats::add(&self.stats.failed, 1);
            }
        }
    }

    /// The sink's counters now.
    pub fn health(&self) -> SinkHealth {
        self.stats.health(&self.name)
    }

    /// Closes the queue and lets the sink deliver what it holds until `deadline`; returns
    /// whether its thread finished in time. A sink that is stuck (blocked on a write) is left
    /// behind; what it still held is counted as pending in its last health entry.
    pub fn close(&mut self, deadline: Instant) -> bool {
        let _ = self.close_deadline.set(deadline);
        self.tx = None;
        let Some(thread) = self.thread.take() else {
            return true;
        };
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                self.thread = Some(thread);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
        true
    }
}

fn run_sink(
    sink: &mut dyn Sink,
    name: &str,
    rx: Receiver<Arc<Event>>,
    stats: &Arc<SinkStats>,
    deadline: &std::sync::OnceLock<Instant>,
) {
    if let Err(e) = sink.start(Arc::clone(stats)) {
        tracing::error!(sink = name, error = %e, "sink could not start; its events fail");
        stats.set_state(SinkState::Down);
        for _ in rx.iter() {
            SinkStats::add(&stats.failed, 1);
        }
        return;
    }
    for event in rx.iter() {
        sink.deliver(&event, stats);
    }
    let deadline = deadline
        .get()
        .copied()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
    sink.close(deadline, stats);
}

/// Builds and starts every sink the configuration names, in order: JSON lines, MQTT, webhooks,
/// and the actions of `[[rules]]` ([`crate::actions::dispatch::ActionsSink`]).
///
/// # Errors
/// A sink refused its settings (names the sink), or a thread could not start.
pub fn spawn_from_config(config: &crate::config::Config) -> Result<Vec<SinkHandle>, SinkError> {
    let mut out = Vec::new();
    let spawn = |sink: Box<dyn Sink>, queue: usize| {
        SinkHandle::spawn(sink, queue).map_err(|source| SinkError::Io {
            what: "starting a sink thread".into(),
            source,
        })
    };
    let s = &config.sinks;
    for j in &s.jsonl {
        let target = if j.path == "-" {
            jsonl::JsonlTarget::Stdout
        } else {
            jsonl::JsonlTarget::File(j.path.clone().into())
        };
        out.push(spawn(Box::new(jsonl::JsonlSink::new(target)), j.queue)?);
    }
    if let Some(m) = &s.mqtt {
        let sink = mqtt::MqttSink::new(m, &config.device_id)?;
        out.push(spawn(Box::new(sink), m.queue)?);
    }
    for w in &s.webhook {
        let sink = webhook::WebhookSink::new(w)?;
        out.push(spawn(Box::new(sink), w.queue)?);
    }
    if let Some(actions) = crate::actions::dispatch::ActionsSink::from_config(config)? {
        out.push(spawn(Box::new(actions), config.actions.queue)?);
    }
    Ok(out)
}
