//! The actions sink: matches events to `[[rules]]` and hands their commands to the backends.
//!
//! [`ActionsSink`] is a [`Sink`]: it sits behind its own bounded queue like the MQTT and webhook
//! sinks, so the analysis thread never waits for it. For every event it checks each rule in
//! configuration order ([`RuleConfig::matches`], the schedule in local time, the cooldown on the
//! audio clock) and, when one fires, queues the rule's commands to the backend that serves each
//! ([`rules::backend_for`]). Each backend runs on its own thread behind a bounded queue of
//! `actions.queue` commands: a camera that does not answer holds up only the commands for that
//! camera, and when its queue is full new commands are dropped and logged with the rule's name.
//!
//! A rule that fired ignores its trigger for `cooldown_s` seconds of audio (the events are
//! counted as `suppressed`); cooldowns are per rule.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::rules::{self, Firing, RuleConfig, Weekday};
use super::{ActionError, Backend, Command, CommandKind};
use crate::config::Config;
use crate::events::Event;
use crate::sinks::{Sink, SinkError, SinkState, SinkStats};

/// The local day of the week and minute of the day (0 to 1439) a rule's schedule is checked at.
pub type LocalClock = Box<dyn Fn() -> (Weekday, u32) + Send>;

/// The system's local time (`TZ`, else `/etc/localtime`) as a [`LocalClock`].
pub fn system_clock() -> LocalClock {
    Box::new(|| {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        (
            Weekday::from_index(now.weekday().num_days_from_monday() as usize),
            now.hour() * 60 + now.minute(),
        )
    })
}

/// A backend with the command kinds it serves.
pub type RoutedBackend = (Box<dyn Backend>, Vec<CommandKind>);

/// An action of `earshot action test` and how it went.
pub type Outcome = (Command, Result<(), ActionError>);

/// Counters of the actions, shared with the backend threads.
#[derive(Debug, Default)]
pub struct ActionStats {
    /// Times a rule fired.
    pub fired: AtomicU64,
    /// Events that matched a rule but fell in its cooldown or outside its schedule.
    pub suppressed: AtomicU64,
    /// Commands a backend carried out.
    pub done: AtomicU64,
    /// Commands that failed (after the backend's retries).
    pub failed: AtomicU64,
    /// Commands dropped because the backend's queue was full.
    pub dropped: AtomicU64,
}

/// One command queued to a backend.
struct Job {
    rule: Arc<str>,
    command: Command,
}

/// A backend on its own thread.
struct Worker {
    name: String,
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// A rule and when it last fired (audio time, seconds).
struct Armed {
    rule: RuleConfig,
    name: Arc<str>,
    last_fired_s: Option<f64>,
}

/// The actions sink (see the [module docs](self)).
pub struct ActionsSink {
    rules: Vec<Armed>,
    /// Backends not yet started (moved to `workers` by [`Sink::start`]).
    pending: Vec<RoutedBackend>,
    workers: Vec<Worker>,
    /// Which worker serves each command kind.
    route: BTreeMap<CommandKind, usize>,
    queue: usize,
    clock: LocalClock,
    stats: Arc<ActionStats>,
}

impl ActionsSink {
    /// The sink for `rules`, with `backends` (each serving the kinds given with it; a kind
    /// served by two backends goes to the first), `queue` commands per backend, and the local
    /// `clock` the schedules are checked with.
    pub fn new(
        rules: Vec<RuleConfig>,
        backends: Vec<RoutedBackend>,
        queue: usize,
        clock: LocalClock,
    ) -> Self {
        Self {
            rules: rules
                .into_iter()
                .map(|rule| Armed {
                    name: Arc::from(rule.name.as_str()),
                    rule,
                    last_fired_s: None,
                })
                .collect(),
            pending: backends,
            workers: Vec::new(),
            route: BTreeMap::new(),
            queue: queue.max(1),
            clock,
            stats: Arc::new(ActionStats::default()),
        }
    }

    /// The sink a configuration asks for: its rules and the backends they use. `None` when
    /// there are no rules.
    ///
    /// # Errors
    /// A backend refused its settings (names it).
    pub fn from_config(config: &Config) -> Result<Option<Self>, SinkError> {
        if config.rules.is_empty() {
            return Ok(None);
        }
        let backends = backends_for(config, &config.rules)
            .map_err(|e| SinkError::Other(format!("actions: {e}")))?;
        Ok(Some(Self::new(
            config.rules.clone(),
            backends,
            config.actions.queue,
            system_clock(),
        )))
    }

    /// The counters, to read while it runs.
    pub fn stats(&self) -> Arc<ActionStats> {
        Arc::clone(&self.stats)
    }

    fn queue_command(&self, rule: &Arc<str>, command: Command) {
        let kind = command.kind();
        let Some(worker) = self.route.get(&kind).and_then(|&i| self.workers.get(i)) else {
            // Validation refuses rules without a backend; a backend that could not start
            // leaves its kinds unrouted.
            tracing::warn!(rule = &**rule, %command, "no backend for this action; not done");
            SinkStats::add(&self.stats.failed, 1);
            return;
        };
        let Some(tx) = &worker.tx else { return };
        match tx.try_send(Job {
            rule: Arc::clone(rule),
            command,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                SinkStats::add(&self.stats.dropped, 1);
                tracing::warn!(
                    rule = &*job.rule,
                    backend = worker.name,
                    command = %job.command,
                    "backend queue full (actions.queue); action dropped"
                );
            }
            Err(TrySendError::Disconnected(job)) => {
                SinkStats::add(&self.stats.failed, 1);
                tracing::warn!(
                    rule = &*job.rule,
                    backend = worker.name,
                    "backend thread has stopped; action not done"
                );
            }
        }
    }
}

impl Sink for ActionsSink {
    fn name(&self) -> String {
        "actions".into()
    }

    fn start(&mut self, stats: Arc<SinkStats>) -> Result<(), SinkError> {
        for (backend, kinds) in std::mem::take(&mut self.pending) {
            let name = backend.name();
            let (tx, rx) = sync_channel::<Job>(self.queue);
            let astats = Arc::clone(&self.stats);
            let thread = std::thread::Builder::new()
                .name(format!("action-{name}"))
                .spawn(move || run_backend(backend, rx, &astats))
                .map_err(|source| SinkError::Io {
                    what: format!("starting the {name} action thread"),
                    source,
                })?;
            let index = self.workers.len();
            for kind in kinds {
                self.route.entry(kind).or_insert(index);
            }
            self.workers.push(Worker {
                name,
                tx: Some(tx),
                thread: Some(thread),
            });
        }
        stats.set_state(SinkState::Up);
        Ok(())
    }

    fn deliver(&mut self, event: &Event, stats: &SinkStats) {
        SinkStats::add(&stats.delivered, 1);
        let Some(firing) = Firing::of(event) else {
            return;
        };
        let mut local = None;
        let mut fire = Vec::new();
        for armed in &mut self.rules {
            if !armed.rule.matches(&firing) {
                continue;
            }
            let (day, minute) = *local.get_or_insert_with(|| (self.clock)());
            if !armed.rule.scheduled(day, minute) {
                SinkStats::add(&self.stats.suppressed, 1);
                tracing::debug!(rule = &*armed.name, "outside the rule's schedule");
                continue;
            }
            if let Some(t) = armed.last_fired_s {
                let since = firing.stream_time_s - t;
                if since < armed.rule.cooldown_s {
                    SinkStats::add(&self.stats.suppressed, 1);
                    tracing::debug!(
                        rule = &*armed.name,
                        since_s = since,
                        "in the rule's cooldown"
                    );
                    continue;
                }
            }
            armed.last_fired_s = Some(firing.stream_time_s);
            SinkStats::add(&self.stats.fired, 1);
            tracing::info!(
                rule = &*armed.name,
                on = firing.trigger.name(),
                score = firing.score,
                lafmax_dbfs = firing.lafmax_dbfs,
                test = event.test,
                "rule fired"
            );
            fire.push((Arc::clone(&armed.name), armed.rule.commands()));
        }
        for (name, commands) in fire {
            for c in commands {
                self.queue_command(&name, c);
            }
        }
    }

    fn close(&mut self, deadline: Instant, _stats: &SinkStats) {
        for w in &mut self.workers {
            w.tx = None;
        }
        for w in &mut self.workers {
            let Some(thread) = w.thread.take() else {
                continue;
            };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    backend = w.name,
                    "action backend still busy at shutdown; left behind"
                );
            }
        }
    }
}

/// The backend thread: start, then carry out commands until the queue closes, then close.
fn run_backend(mut backend: Box<dyn Backend>, rx: Receiver<Job>, stats: &ActionStats) {
    let name = backend.name();
    if let Err(e) = backend.start() {
        tracing::error!(backend = name, error = %e, "action backend could not start; will still try each action");
    }
    for job in rx.iter() {
        match backend.execute(&job.rule, &job.command) {
            Ok(()) => {
                SinkStats::add(&stats.done, 1);
                tracing::info!(rule = &*job.rule, backend = name, command = %job.command, "action done");
            }
            Err(e) => {
                SinkStats::add(&stats.failed, 1);
                tracing::error!(rule = &*job.rule, backend = name, command = %job.command, error = %e, "action failed");
            }
        }
    }
    backend.close();
}

/// Builds the backends `rules` need under `config.actions`, each with the command kinds it
/// serves for them.
///
/// # Errors
/// A backend refused its settings.
pub fn backends_for(
    config: &Config,
    rules: &[RuleConfig],
) -> Result<Vec<RoutedBackend>, ActionError> {
    let mut by_backend: BTreeMap<&'static str, Vec<CommandKind>> = BTreeMap::new();
    for r in rules {
        for c in r.commands() {
            let kind = c.kind();
            if let Some(b) = rules::backend_for(kind, &config.actions) {
                let kinds = by_backend.entry(b).or_default();
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
    }
    let a = &config.actions;
    let mut out: Vec<RoutedBackend> = Vec::new();
    for (name, kinds) in by_backend {
        let backend: Box<dyn Backend> = match (name, &a.vapix, &a.gpio, &a.playback) {
            ("vapix", Some(v), _, _) => Box::new(super::vapix::VapixBackend::new(v)?),
            ("gpio", _, Some(g), _) => Box::new(super::gpio::GpioBackend::new(g)?),
            ("playback", _, _, Some(p)) => Box::new(super::playback::PlaybackBackend::new(p)?),
            _ => continue,
        };
        out.push((backend, kinds));
    }
    Ok(out)
}

/// `earshot action test RULE`: carries out the rule's actions once, now, in order, waiting for
/// each; returns each command with its outcome. Ignores the rule's trigger, minimums, schedule
/// and cooldown.
///
/// # Errors
/// No rule has that name (the message lists the rules), or a backend refused its settings.
pub fn test_rule(config: &Config, name: &str) -> Result<Vec<Outcome>, String> {
    let rule = config
        .rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
            format!(
                "no rule named {name:?} (rules: {})",
                if names.is_empty() {
                    "none configured".into()
                } else {
                    names.join(", ")
                }
            )
        })?;
    let mut backends =
        backends_for(config, std::slice::from_ref(rule)).map_err(|e| e.to_string())?;
    for (b, _) in &mut backends {
        if let Err(e) = b.start() {
            tracing::warn!(backend = b.name(), error = %e, "backend start-up failed");
        }
    }
    let mut out = Vec::new();
    for command in rule.commands() {
        let result = match backends
            .iter_mut()
            .find(|(_, kinds)| kinds.contains(&command.kind()))
        {
            Some((b, _)) => b.execute(&rule.name, &command),
            None => Err(ActionError::Unsupported {
                backend: "none".into(),
                command: command.to_string(),
            }),
        };
        out.push((command, result));
    }
    for (b, _) in &mut backends {
        b.close();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::EarshotClass;
    use crate::events::{DetectionEvent, DetectionOnset, EventBody, EVENT_SCHEMA};
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<(String, Command)>>>;

    /// Records commands; serves outputs and clips.
    struct Recorder(Log);

    impl Backend for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn kinds(&self) -> &'static [CommandKind] {
            &[CommandKind::Output, CommandKind::Clip]
        }
        fn execute(&mut self, rule: &str, command: &Command) -> Result<(), ActionError> {
            self.0
                .lock()
                .unwrap()
                .push((rule.to_owned(), command.clone()));
            Ok(())
        }
    }

    fn start(class: EarshotClass, t: f64, score: f32, lafmax: f64) -> Event {
        Event {
            schema: EVENT_SCHEMA,
            device_id: "t".into(),
            seq: 0,
            time: String::new(),
            stream_time_s: t,
            active: Some(true),
            test: false,
            body: EventBody::Detection(DetectionEvent::DetectionStart(DetectionOnset {
                class,
                start_sample: 0,
                start_s: t,
                emitted_s: t,
                score,
                lafmax_dbfs: lafmax,
                lafmax_db_spl: None,
            })),
        }
    }

    fn rules(toml_rules: &str) -> Vec<RuleConfig> {
        let text = format!(
            "[actions.vapix]\ncredentials = \"config\"\nusername = \"u\"\npassword = \"p\"\n{toml_rules}"
        );
        Config::from_toml(&text).expect("valid").rules
    }

    fn sink(rules: Vec<RuleConfig>, clock: (Weekday, u32)) -> (ActionsSink, Log) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = ActionsSink::new(
            rules,
            vec![(
                Box::new(Recorder(Arc::clone(&log))) as Box<dyn Backend>,
                vec![CommandKind::Output, CommandKind::Clip],
            )],
            8,
            Box::new(move || clock),
        );
        s.start(Arc::new(SinkStats::default())).unwrap();
        (s, log)
    }

    fn finish(mut s: ActionsSink) {
        s.close(
            Instant::now() + Duration::from_secs(5),
            &SinkStats::default(),
        );
    }

    const GLASS: &str = r#"
[[rules]]
name = "glass"
on = "glass_break"
min_score = 0.5
min_lafmax_dbfs = -40
cooldown_s = 10
actions = [{ type = "output", port = 1, duration_ms = 3000 }, { type = "clip", clip = "2" }]
"#;

    #[test]
    fn a_rule_fires_its_actions_in_order_once_per_cooldown() {
        let (mut s, log) = sink(rules(GLASS), (Weekday::Mon, 600));
        let st = SinkStats::default();
        s.deliver(&start(EarshotClass::GlassBreak, 1.0, 0.9, -20.0), &st);
        s.deliver(&start(EarshotClass::GlassBreak, 5.0, 0.9, -20.0), &st); // in cooldown
        s.deliver(&start(EarshotClass::Gunshot, 6.0, 0.9, -20.0), &st); // other class
        s.deliver(&start(EarshotClass::GlassBreak, 11.5, 0.9, -20.0), &st); // after it
        let stats = s.stats();
        finish(s);
        let log = log.lock().unwrap();
        let expect = [
            Command::Output {
                port: "1".into(),
                state: super::super::PortState::Closed,
                duration_ms: Some(3000),
            },
            Command::Clip {
                clip: "2".into(),
                volume: None,
                repeat: 0,
            },
        ];
        let got: Vec<&Command> = log.iter().map(|(_, c)| c).collect();
        assert_eq!(got, [&expect[0], &expect[1], &expect[0], &expect[1]]);
        assert!(log.iter().all(|(r, _)| r == "glass"));
        assert_eq!(stats.fired.load(Ordering::Relaxed), 2);
        assert_eq!(stats.suppressed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.done.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn minimum_score_and_level_gate_the_rule() {
        let (mut s, log) = sink(rules(GLASS), (Weekday::Mon, 600));
        let st = SinkStats::default();
        s.deliver(&start(EarshotClass::GlassBreak, 1.0, 0.4, -20.0), &st);
        s.deliver(&start(EarshotClass::GlassBreak, 2.0, 0.9, -45.0), &st);
        finish(s);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn the_schedule_is_checked_in_local_time() {
        let night = format!(
            "{GLASS}schedule = [{{ days = [\"fri\"], from = \"22:00\", to = \"06:00\" }}]\n"
        );
        // Saturday 05:00 is inside Friday night's window; Saturday 07:00 is not.
        let (mut s, log) = sink(rules(&night), (Weekday::Sat, 300));
        s.deliver(
            &start(EarshotClass::GlassBreak, 1.0, 0.9, -20.0),
            &SinkStats::default(),
        );
        finish(s);
        assert_eq!(log.lock().unwrap().len(), 2);
        let (mut s, log) = sink(rules(&night), (Weekday::Sat, 420));
        s.deliver(
            &start(EarshotClass::GlassBreak, 1.0, 0.9, -20.0),
            &SinkStats::default(),
        );
        let stats = s.stats();
        finish(s);
        assert!(log.lock().unwrap().is_empty());
        assert_eq!(stats.suppressed.load(Ordering::Relaxed), 1);
    }

    /// A backend that never returns must not hold up the sink: its queue fills, the rest drop.
    #[test]
    fn a_stuck_backend_drops_actions_instead_of_blocking() {
        struct Stuck;
        impl Backend for Stuck {
            fn name(&self) -> String {
                "stuck".into()
            }
            fn kinds(&self) -> &'static [CommandKind] {
                &[CommandKind::Output]
            }
            fn execute(&mut self, _: &str, _: &Command) -> Result<(), ActionError> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(())
            }
        }
        let rules = rules(
            "[[rules]]\nname = \"g\"\non = \"gunshot\"\ncooldown_s = 0\nactions = [{ type = \"output\", port = 0 }]\n",
        );
        let mut s = ActionsSink::new(
            rules,
            vec![(Box::new(Stuck), vec![CommandKind::Output])],
            2,
            Box::new(|| (Weekday::Mon, 0)),
        );
        s.start(Arc::new(SinkStats::default())).unwrap();
        let t0 = Instant::now();
        for i in 0..10 {
            s.deliver(
                &start(EarshotClass::Gunshot, i as f64, 0.9, -20.0),
                &SinkStats::default(),
            );
        }
        assert!(t0.elapsed() < Duration::from_millis(500));
        let stats = s.stats();
        // One in execution, two queued, seven dropped (the first may not have been taken yet).
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert!((7..=8).contains(&dropped), "dropped {dropped}");
        let t0 = Instant::now();
        s.close(
            Instant::now() + Duration::from_millis(200),
            &SinkStats::default(),
        );
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
