//! The device integration on Axis cameras: Earshot's events in the device's event system
//! (axevent) and its settings from the app parameters (axparameter).
//!
//! Compiled with the `axsdk` feature. The `device` feature links the camera's SDK libraries;
//! host test builds link the C test double of `earshot-sdk` instead (its `double` feature,
//! enabled by this crate's dev-dependencies), so the same code is tested here. Facts followed:
//! `../shared/handbook/acap-platform.md` ("Events", "App parameters").
//!
//! The SDK's objects are not `Send` and deliver their callbacks on the GLib default main
//! context, so one **device thread** owns them all ([`Device::start`]):
//!
//! 1. it reads every parameter of [`crate::settings::DEVICE_SETTINGS`] and builds the
//!    configuration ([`params`]), registers a change callback per parameter, declares every
//!    [`events::Topic`] and sends each stateful topic's initial `active = false`;
//! 2. it then loops: events from [`DeviceEventSink`] (a [`Sink`] like MQTT or JSONL, fed by the
//!    pipeline through its own bounded queue) are sent as they come; every 50 ms at most it
//!    dispatches the GLib callbacks ([`earshot_sdk::main_context::dispatch_pending`]). A changed
//!    parameter yields a new validated [`Config`] on [`Device::updates`]
//!    ([`crate::run::run_with_updates`] applies it);
//! 3. on [`Device::stop`] (or drop) it sets every active stateful topic inactive, so that no
//!    device rule stays triggered, and undeclares everything.

pub mod events;
pub mod params;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use earshot_sdk::event::{Declaration, EventHandler, EventKind, KeyValueSet};
use earshot_sdk::parameter::Parameters;

use crate::config::{Config, ConfigError};
use crate::events::Event;
use crate::settings::DEVICE_SETTINGS;
use crate::sinks::{Sink, SinkError, SinkStats};
use events::{KeyType, Occurrence, Topic, Value};

/// How often the device thread dispatches GLib callbacks when no event comes.
const POLL: Duration = Duration::from_millis(50);
/// Events waiting for the device thread (the sink's own queue is in front of it).
const THREAD_QUEUE: usize = 64;
/// The queue of the [`DeviceEventSink`]'s [`crate::sinks::SinkHandle`], events.
pub const QUEUE: usize = 1024;
/// The app's name on the device: the manifest's `appName`, axparameter's app name.
pub const APP_NAME: &str = "earshot";

/// What [`Device::start`] needs.
pub struct DeviceOptions {
    /// The app's name as axparameter knows it: the manifest's `appName` (`earshot`).
    pub app_name: String,
    /// The configuration file's text, under the parameters (empty: none).
    pub base_toml: String,
    /// Applied to every configuration built from the parameters, last (the command line's
    /// flags); must keep it valid.
    pub overlay: Box<dyn Fn(&mut Config) + Send>,
}

/// Why the device integration could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An SDK call failed (names the C function and the GError).
    #[error("device SDK: {0}")]
    Sdk(#[from] earshot_sdk::Error),
    /// The configuration file under the parameters does not validate.
    #[error("configuration under the app parameters: {}", list(.0))]
    Config(Vec<ConfigError>),
    /// The device thread could not start or ended early.
    #[error("device thread: {0}")]
    Thread(String),
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Counts of what the device thread did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Device events sent.
    pub sent: u64,
    /// Device events the SDK refused (each logged).
    pub failed: u64,
    /// Parameter changes taken (a new configuration was published).
    pub changes_applied: u64,
    /// Parameter changes refused (each logged with the reason).
    pub changes_refused: u64,
}

/// The device thread's answer to a [`ParameterWriter::set`].
type SetReply = Result<Config, Vec<ConfigError>>;

enum Msg {
    Event(Arc<Event>, Arc<SinkStats>),
    Set(Vec<(String, String)>, SyncSender<SetReply>),
    /// Answered once every message queued before it has been handled (the queue is FIFO).
    Flush(SyncSender<()>),
    Stop,
}

/// Writes app parameters from another thread (the settings page): see [`ParameterWriter::set`].
#[derive(Clone)]
pub struct ParameterWriter {
    tx: SyncSender<Msg>,
}

/// How long [`ParameterWriter::set`] waits for the device thread.
const SET_TIMEOUT: Duration = Duration::from_secs(5);

impl ParameterWriter {
    /// Sets app parameters (short names, e.g. `GlassBreakSensitivity`, and their text values
    /// as axparameter holds them) as one change: the device thread first builds and validates
    /// the configuration they give (the file under the parameters, the flags over them), then
    /// writes each with `ax_parameter_set`, and publishes the configuration on
    /// [`Device::updates`] like a change made in the device's own settings.
    ///
    /// # Errors
    /// Every problem, nothing written: an unknown parameter, a value that does not validate
    /// (keyed by the setting), an SDK refusal (keyed `parameter NAME`; the parameters written
    /// before it stay), or the device thread not answering within 5 s.
    pub fn set(&self, changes: Vec<(String, String)>) -> SetReply {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let gone = |what: &str| {
            vec![ConfigError {
                key: String::new(),
                value: String::new(),
                expected: format!("the device integration {what}"),
            }]
        };
        self.tx
            .send(Msg::Set(changes, reply_tx))
            .map_err(|_| gone("has stopped"))?;
        reply_rx
            .recv_timeout(SET_TIMEOUT)
            .map_err(|_| gone("did not answer within 5 s"))?
    }
}

/// The running device integration: the device thread and its channels.
pub struct Device {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<DeviceStats>>,
    updates: Receiver<Config>,
}

impl Device {
    /// Starts the device thread: reads the parameters, declares the events. Returns with the
    /// configuration from the parameters once the thread is ready.
    ///
    /// # Errors
    /// [`DeviceError`]: the SDK refused a call (`ax_parameter_new`, `ax_event_handler_new`,
    /// a declaration), the base configuration is invalid, or the thread died.
    pub fn start(options: DeviceOptions) -> Result<(Device, Config), DeviceError> {
        let (tx, rx) = mpsc::sync_channel(THREAD_QUEUE);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (updates_tx, updates) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("device".into())
            .spawn(move || device_thread(options, ready_tx, rx, updates_tx))
            .map_err(|e| DeviceError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(config)) => Ok((
                Device {
                    tx,
                    thread: Some(thread),
                    updates,
                },
                config,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(DeviceError::Thread("ended before it was ready".into()))
            }
        }
    }

    /// New configurations from parameter changes, validated, newest last.
    pub fn updates(&self) -> &Receiver<Config> {
        &self.updates
    }

    /// A writer of app parameters, for the settings page.
    pub fn parameter_writer(&self) -> ParameterWriter {
        ParameterWriter {
            tx: self.tx.clone(),
        }
    }

    /// A sink that sends Earshot's events to the device's event system (see [`events`]).
    pub fn event_sink(&self) -> DeviceEventSink {
        DeviceEventSink {
            tx: self.tx.clone(),
            stats: None,
        }
    }

    /// Stops the device thread: active stateful events are set inactive, everything is
    /// undeclared. Returns what it did.
    pub fn stop(mut self) -> DeviceStats {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> DeviceStats {
        let _ = self.tx.send(Msg::Stop);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_inner();
        }
    }
}

/// The [`Sink`] of the device's event system: forwards every event to the device thread,
/// which counts it delivered or failed in the sink's stats.
pub struct DeviceEventSink {
    tx: SyncSender<Msg>,
    stats: Option<Arc<SinkStats>>,
}

impl Sink for DeviceEventSink {
    fn name(&self) -> String {
        "device-events".into()
    }

    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError> {
        stats.set_state(crate::sinks::SinkState::Up);
        self.stats = Some(stats);
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        let Some(shared) = &self.stats else {
            SinkStats::add(&stats.failed, 1);
            return;
        };
        // Blocks only while the device thread's queue is full: this is the sink's own thread.
        if self
            .tx
            .send(Msg::Event(Arc::new(event.clone()), Arc::clone(shared)))
            .is_err()
        {
            stats.set_state(crate::sinks::SinkState::Down);
            SinkStats::add(&stats.failed, 1);
        }
    }

    /// Events are counted delivered by the device thread, after this sink has queued them: waits
    /// until that thread has handled every event queued so far, or until `deadline` (what it
    /// has not handled by then stays `pending` in the sink's health).
    fn close(&mut self, deadline: Instant, _stats: &SinkStats) {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(reply_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = reply_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn device_thread(
    options: DeviceOptions,
    ready: SyncSender<Result<Config, DeviceError>>,
    rx: Receiver<Msg>,
    updates: mpsc::Sender<Config>,
) -> DeviceStats {
    let mut stats = DeviceStats::default();
    let fail = |e: DeviceError| {
        let _ = ready.send(Err(e));
    };
    // Parameters first: the configuration depends on them.
    let mut parameters = match Parameters::new(&options.app_name) {
        Ok(p) => p,
        Err(e) => {
            fail(e.into());
            return stats;
        }
    };
    let (mut values, missing) = params::read_values(&parameters);
    for m in missing {
        tracing::warn!("{m}");
    }
    let overlay = &*options.overlay;
    let base = options.base_toml.as_str();
    let config = match params::initial_config(base, &mut values, overlay) {
        Ok((config, rejected)) => {
            for e in rejected {
                tracing::warn!(error = %e, "app parameter not taken; its default applies");
            }
            config
        }
        Err(errors) => {
            fail(DeviceError::Config(errors));
            return stats;
        }
    };
    let changes: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
    for s in DEVICE_SETTINGS {
        let seen = Rc::clone(&changes);
        let r = parameters.register_callback(s.name, move |name, value| {
            seen.borrow_mut().push((name.to_owned(), value.to_owned()));
        });
        if let Err(e) = r {
            tracing::warn!(parameter = s.name, error = %e, "changes of this parameter will not apply until restart");
        }
    }

    let handler = match EventHandler::new() {
        Ok(h) => h,
        Err(e) => {
            fail(e.into());
            return stats;
        }
    };
    let mut declarations = HashMap::new();
    for topic in Topic::all() {
        match declare(&handler, topic) {
            Ok(d) => {
                declarations.insert(topic, d);
            }
            Err(e) => {
                fail(e.into());
                return stats;
            }
        }
    }
    // Stateful events start inactive, so that rules "while active" have a state to read.
    let mut active: HashMap<Topic, bool> = HashMap::new();
    for topic in Topic::all().into_iter().filter(|t| t.stateful()) {
        let initial = Occurrence {
            topic,
            active: Some(false),
            data: initial_data(topic),
        };
        count(&mut stats, send(&declarations, &initial));
        active.insert(topic, false);
    }
    if ready.send(Ok(config)).is_err() {
        return stats;
    }
    tracing::info!(
        app = %options.app_name,
        events = declarations.len(),
        "device events declared, app parameters read"
    );

    let mut last_dispatch = Instant::now();
    loop {
        match rx.recv_timeout(POLL) {
            Ok(Msg::Event(event, sink_stats)) => {
                let mut ok = true;
                for o in events::occurrences(&event) {
                    let r = send(&declarations, &o);
                    if let Err(e) = &r {
                        ok = false;
                        tracing::warn!(topic = o.topic.name(), error = %e, "device event not sent");
                    } else if let Some(a) = o.active {
                        active.insert(o.topic, a);
                    }
                    count(&mut stats, r);
                }
                SinkStats::add(
                    if ok {
                        &sink_stats.delivered
                    } else {
                        &sink_stats.failed
                    },
                    1,
                );
            }
            Ok(Msg::Set(changes, reply)) => {
                let r = set_parameters(&parameters, base, &mut values, &changes, overlay);
                match &r {
                    Ok(config) => {
                        stats.changes_applied += 1;
                        for (name, value) in &changes {
                            let shown = params::loggable(name, value);
                            tracing::info!(parameter = %name, value = %shown, "app parameter set from the settings page");
                        }
                        let _ = updates.send(config.clone());
                    }
                    Err(_) => stats.changes_refused += 1,
                }
                let _ = reply.send(r);
            }
            Ok(Msg::Flush(reply)) => {
                let _ = reply.send(());
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if last_dispatch.elapsed() >= POLL {
            last_dispatch = Instant::now();
            earshot_sdk::main_context::dispatch_pending(64);
            let pending: Vec<(String, String)> = changes.borrow_mut().drain(..).collect();
            for (name, value) in pending {
                apply_change(
                    base,
                    &mut values,
                    &name,
                    &value,
                    overlay,
                    &updates,
                    &mut stats,
                );
            }
        }
    }

    // No device rule may stay triggered by an Earshot that is gone.
    for (topic, is_active) in &active {
        if *is_active {
            let o = Occurrence {
                topic: *topic,
                active: Some(false),
                data: initial_data(*topic),
            };
            count(&mut stats, send(&declarations, &o));
        }
    }
    for (topic, d) in declarations {
        if let Err(e) = d.undeclare() {
            tracing::warn!(topic = topic.name(), error = %e, "undeclare failed");
        }
    }
    drop(handler);
    for s in DEVICE_SETTINGS {
        parameters.unregister_callback(s.name);
    }
    stats
}

/// Validates `changes` over `values`, then writes them; `values` follows what was written.
fn set_parameters(
    parameters: &Parameters,
    base: &str,
    values: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
    overlay: &dyn Fn(&mut Config),
) -> Result<Config, Vec<ConfigError>> {
    let mut next = values.clone();
    let mut errors = Vec::new();
    for (name, value) in changes {
        if crate::settings::find(name).is_none() {
            errors.push(ConfigError {
                key: format!("parameter {name}"),
                value: String::new(),
                expected: "a parameter Earshot declares".to_owned(),
            });
        }
        next.insert(name.clone(), value.clone());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut config = crate::settings::apply_device_params(base, &next)?;
    overlay(&mut config);
    let invalid = config.validate();
    if !invalid.is_empty() {
        return Err(invalid);
    }
    for (name, value) in changes {
        if let Err(e) = parameters.set(name, value, true) {
            errors.push(ConfigError {
                key: format!("parameter {name}"),
                value: params::loggable(name, value),
                expected: format!("the device refused it: {e}"),
            });
        } else {
            values.insert(name.clone(), value.clone());
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn apply_change(
    base: &str,
    values: &mut BTreeMap<String, String>,
    name: &str,
    value: &str,
    overlay: &dyn Fn(&mut Config),
    updates: &mpsc::Sender<Config>,
    stats: &mut DeviceStats,
) {
    let shown = params::loggable(name, value);
    match params::changed_config(base, values, name, value, overlay) {
        Ok(config) => {
            stats.changes_applied += 1;
            tracing::info!(parameter = name, value = %shown, "app parameter changed");
            let _ = updates.send(config);
        }
        Err(errors) => {
            stats.changes_refused += 1;
            for e in errors {
                tracing::warn!(parameter = name, value = %shown, error = %e, "app parameter change refused; the previous value stays in force");
            }
        }
    }
}

fn count(stats: &mut DeviceStats, r: Result<(), earshot_sdk::Error>) {
    match r {
        Ok(()) => stats.sent += 1,
        Err(_) => stats.failed += 1,
    }
}

/// Data of an occurrence that only changes the state (initial and final `active = false`).
fn initial_data(topic: Topic) -> Vec<(&'static str, Value)> {
    topic
        .data_keys()
        .iter()
        .map(|(key, ty, _)| {
            let v = match ty {
                KeyType::Double => Value::Double(0.0),
                KeyType::Text => Value::Text(""),
            };
            (*key, v)
        })
        .collect()
}

const NS: Option<&str> = Some(events::NAMESPACE);

fn topics(set: &mut KeyValueSet, topic: Topic) -> earshot_sdk::Result<()> {
    set.add_string("topic0", NS, Some(events::TOPIC0))?
        .add_string("topic1", NS, Some(events::TOPIC1))?
        .add_nice_names("topic1", NS, None, Some(events::TOPIC1_NICE))?
        .add_string("topic2", NS, Some(topic.name()))?
        .add_nice_names("topic2", NS, None, Some(topic.nice_name()))?;
    Ok(())
}

fn declare(handler: &EventHandler, topic: Topic) -> earshot_sdk::Result<Declaration<'_>> {
    let mut set = KeyValueSet::new()?;
    topics(&mut set, topic)?;
    for (key, ty, nice) in topic.data_keys() {
        match ty {
            KeyType::Double => set.add_double(key, None, None)?,
            KeyType::Text => set.add_string(key, None, None)?,
        };
        set.mark_as_data(key, None)?
            .add_nice_names(key, None, Some(nice), None)?;
    }
    let kind = if topic.stateful() {
        set.add_bool(earshot_sdk::event::ACTIVE_KEY, None, None)?
            .mark_as_data(earshot_sdk::event::ACTIVE_KEY, None)?
            .add_nice_names(earshot_sdk::event::ACTIVE_KEY, None, Some("Active"), None)?;
        EventKind::Stateful
    } else {
        EventKind::Stateless
    };
    let name = topic.name();
    handler.declare(
        &set,
        kind,
        Some(Box::new(move |id| {
            tracing::debug!(topic = name, declaration = id, "device event declared")
        })),
    )
}

fn fill(set: &mut KeyValueSet, o: &Occurrence) -> earshot_sdk::Result<()> {
    topics(set, o.topic)?;
    for (key, value) in &o.data {
        match value {
            Value::Double(x) => set.add_double(key, None, Some(*x))?,
            Value::Text(t) => set.add_string(key, None, Some(t))?,
        };
    }
    Ok(())
}

fn send(declarations: &HashMap<Topic, Declaration<'_>>, o: &Occurrence) -> earshot_sdk::Result<()> {
    let Some(d) = declarations.get(&o.topic) else {
        return Ok(());
    };
    match o.active {
        Some(active) => d.send_state(active, |set| fill(set, o)),
        None => {
            let mut set = KeyValueSet::new()?;
            fill(&mut set, o)?;
            d.send(&set)
        }
    }
}
