//! GPIO output backend: the ports of `[actions.gpio.outputs]`, each a line of a Linux GPIO
//! character device (`/dev/gpiochipN`), driven through the `gpiocdev` crate (uAPI v2).
//!
//! # Lines
//!
//! Each port names a chip (a path such as `/dev/gpiochip0`, or a name such as `gpiochip0`,
//! which means `/dev/gpiochip0`; absent: `[actions.gpio] chip`) and a line on it, by offset
//! (`17`) or by the name the chip reports for it (`"GPIO17"`, looked up on that chip only).
//! [`Backend::start`] requests every line as an output, initially **inactive**, with consumer
//! `earshot`, and keeps the requests until [`Backend::close`]. A line that could not be
//! requested at start is requested again at the first command for its port, so a chip that
//! appears later (a module loaded after Earshot) still works. Errors name the chip and the
//! line.
//!
//! # States and levels
//!
//! [`PortState::Closed`] is the *active* state, [`PortState::Open`] the inactive one. An
//! active-high line is driven high when active; an `active_low` line is driven low when
//! active ([`physical_level`]). The backend requests the lines active-high and does the
//! mapping itself, so the level written is exactly the one [`physical_level`] returns.
//!
//! # Pulses
//!
//! `output` with `duration_ms` sets `state` at once and the opposite state `duration_ms` later,
//! on a timer thread of the backend (started at the first pulse): [`Backend::execute`] never
//! waits for the pulse. Policy when a port is commanded while its pulse runs:
//! - a new **pulse restarts** it: the port takes the new pulse's state now, and the end is
//!   rescheduled to `duration_ms` after the new command (a longer or shorter pulse both count
//!   from now; the end state is the opposite of the new pulse's state). Repeated detections
//!   thus keep a siren on for as long as they keep coming, plus one pulse;
//! - a **level** (`output` without `duration_ms`) cancels the pending end: the latest command
//!   is the one that holds.
//!
//! [`Backend::close`] cancels the pending ends, drives every line inactive, joins the timer
//! thread and releases the lines. Dropping the backend does the same.
//!
//! # Testing without hardware
//!
//! The lines sit behind [`LineDriver`]; [`GpioBackend::with_driver`] takes any implementation
//! (the unit tests use a recording double). [`GpiocdevDriver`] is the real one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gpiocdev::line::Value;

use super::{ActionError, Backend, Command, CommandKind, GpioConfig, GpioLine, PortState};

/// The consumer label the lines are requested with (shown by `gpioinfo`).
pub const CONSUMER: &str = "earshot";

/// Drives output lines by port id. Implementations map the logical state to a level (see
/// [`physical_level`]) and own whatever handles the lines need.
pub trait LineDriver: Send {
    /// Requests every line as an output, initially inactive. Called by [`Backend::start`].
    ///
    /// # Errors
    /// [`ActionError::Local`] naming the chip and line of every port that could not be
    /// requested; the others are requested all the same.
    fn open(&mut self) -> Result<(), ActionError> {
        Ok(())
    }

    /// Drives port `port` active (`true`, [`PortState::Closed`]) or inactive.
    ///
    /// # Errors
    /// [`ActionError::Local`] naming the chip and line when the line cannot be requested or
    /// set. Callers only pass ports of the configuration.
    fn set(&mut self, port: &str, active: bool) -> Result<(), ActionError>;

    /// Releases every line (after the backend has driven them inactive).
    fn release(&mut self) {}
}

/// The level a line is driven to: `true` high, `false` low. Active-high lines are high when
/// `active`; `active_low` lines are low when `active`.
pub fn physical_level(active: bool, active_low: bool) -> bool {
    active != active_low
}

/// Pending pulse ends by port: when, and whether the port is then driven active.
type Pending = BTreeMap<String, (Instant, bool)>;

/// What the backend and its timer thread share, under one lock: the driver (so a pulse end
/// and a command never interleave), the pending ends, and the stop flag.
struct Shared {
    driver: Box<dyn LineDriver>,
    pending: Pending,
    shutdown: bool,
}

struct Timer {
    state: Mutex<Shared>,
    wake: Condvar,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves consistent data (plain maps and a
        // flag): keep going rather than propagate the poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The timer thread: waits for the earliest pending end, drives it, until shut down.
    fn run(&self) {
        let mut shared = self.lock();
        loop {
            if shared.shutdown {
                return;
            }
            let now = Instant::now();
            let due: Vec<(String, bool)> = shared
                .pending
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(port, (_, active))| (port.clone(), *active))
                .collect();
            for (port, active) in due {
                shared.pending.remove(&port);
                if let Err(e) = shared.driver.set(&port, active) {
                    tracing::warn!(port, error = %e, "GPIO pulse end failed");
                } else {
                    tracing::debug!(port, active, "GPIO pulse ended");
                }
            }
            let next = shared.pending.values().map(|(at, _)| *at).min();
            shared = match next {
                None => self
                    .wake
                    .wait(shared)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(shared, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// The GPIO output backend ([module docs](self)): serves [`CommandKind::Output`].
pub struct GpioBackend {
    ports: Vec<String>,
    timer: Arc<Timer>,
    thread: Option<JoinHandle<()>>,
    closed: bool,
}

impl GpioBackend {
    /// A backend for the outputs of `config`, driven through the GPIO character device
    /// ([`GpiocdevDriver`]). Opens nothing: the lines are requested by [`Backend::start`].
    ///
    /// # Errors
    /// None at present (the configuration is validated with the rest); the `Result` leaves
    /// room for checks that need the system.
    pub fn new(config: &GpioConfig) -> Result<Self, ActionError> {
        Ok(Self::with_driver(
            config.outputs.keys().cloned().collect(),
            Box::new(GpiocdevDriver::new(config)),
        ))
    }

    /// A backend for output ports `ports` (their ids), driven through `driver`: for tests and
    /// for other line implementations.
    pub fn with_driver(ports: Vec<String>, driver: Box<dyn LineDriver>) -> Self {
        Self {
            ports,
            timer: Arc::new(Timer {
                state: Mutex::new(Shared {
                    driver,
                    pending: Pending::new(),
                    shutdown: false,
                }),
                wake: Condvar::new(),
            }),
            thread: None,
            closed: false,
        }
    }

    /// Starts the timer thread unless it runs.
    fn ensure_timer(&mut self) -> Result<(), ActionError> {
        if self.thread.is_some() {
            return Ok(());
        }
        let timer = Arc::clone(&self.timer);
        let thread = std::thread::Builder::new()
            .name("earshot-gpio-timer".into())
            .spawn(move || timer.run())
            .map_err(|e| ActionError::Local {
                what: "starting the GPIO pulse timer thread".into(),
                reason: e.to_string(),
            })?;
        self.thread = Some(thread);
        Ok(())
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        {
            let mut shared = self.timer.lock();
            shared.shutdown = true;
            shared.pending.clear();
            for port in &self.ports {
                if let Err(e) = shared.driver.set(port, false) {
                    tracing::warn!(port, error = %e, "GPIO line not returned to inactive");
                }
            }
            shared.driver.release();
        }
        self.timer.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the GPIO pulse timer thread panicked");
            }
        }
    }
}

impl Backend for GpioBackend {
    fn name(&self) -> String {
        "gpio".into()
    }

    fn kinds(&self) -> &'static [CommandKind] {
        &[CommandKind::Output]
    }

    fn start(&mut self) -> Result<(), ActionError> {
        self.timer.lock().driver.open()
    }

    fn execute(&mut self, rule: &str, command: &Command) -> Result<(), ActionError> {
        let Command::Output {
            port,
            state,
            duration_ms,
        } = command
        else {
            return Err(ActionError::Unsupported {
                backend: self.name(),
                command: command.to_string(),
            });
        };
        if !self.ports.iter().any(|p| p == port) {
            return Err(ActionError::Unknown {
                backend: self.name(),
                what: "output port",
                id: port.clone(),
                known: self.ports.join(", "),
            });
        }
        if self.closed {
            return Err(ActionError::Local {
                what: format!("setting GPIO output {port}"),
                reason: "the backend is closed".into(),
            });
        }
        if duration_ms.is_some() {
            self.ensure_timer()?;
        }
        let active = *state == PortState::Closed;
        let mut shared = self.timer.lock();
        // Whatever runs on this port is superseded (pulse restart, or a level that holds).
        shared.pending.remove(port);
        shared.driver.set(port, active)?;
        if let Some(ms) = duration_ms {
            let at = Instant::now() + Duration::from_millis(u64::from(*ms));
            shared.pending.insert(port.clone(), (at, !active));
            drop(shared);
            self.timer.wake.notify_all();
        }
        tracing::debug!(
            rule,
            port,
            state = state.as_str(),
            ?duration_ms,
            "GPIO output set"
        );
        Ok(())
    }

    fn close(&mut self) {
        self.shutdown();
    }
}

impl Drop for GpioBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One configured line, and its request once made.
struct Line {
    /// The chip as configured (path or name), for messages.
    chip: String,
    line: GpioLine,
    active_low: bool,
    request: Option<(gpiocdev::Request, u32)>,
}

impl Line {
    fn describe(&self) -> String {
        match &self.line {
            GpioLine::Offset(o) => format!("line {o} of {}", self.chip),
            GpioLine::Name(n) => format!("line {n:?} of {}", self.chip),
        }
    }

    /// `/dev/NAME` for a chip name, the path itself for a path.
    fn chip_path(&self) -> PathBuf {
        if self.chip.contains('/') {
            PathBuf::from(&self.chip)
        } else {
            PathBuf::from("/dev").join(&self.chip)
        }
    }

    /// Requests the line as an output, driven inactive, unless it is requested.
    fn request(&mut self) -> Result<(), ActionError> {
        if self.request.is_some() {
            return Ok(());
        }
        let err = |reason: String| ActionError::Local {
            what: format!("requesting {} as an output", self.describe()),
            reason,
        };
        let chip = gpiocdev::Chip::from_path(self.chip_path())
            .map_err(|e| err(format!("cannot open GPIO chip {}: {e}", self.chip)))?;
        let offset = match &self.line {
            GpioLine::Offset(o) => {
                let lines = chip
                    .info()
                    .map_err(|e| err(format!("cannot read the chip's information: {e}")))?
                    .num_lines;
                if *o >= lines {
                    return Err(err(format!(
                        "the chip has {lines} lines (offsets 0 to {})",
                        lines.saturating_sub(1)
                    )));
                }
                *o
            }
            GpioLine::Name(n) => {
                chip.find_line_info(n)
                    .ok_or_else(|| err("the chip has no line of that name".into()))?
                    .offset
            }
        };
        let request = gpiocdev::Request::builder()
            .on_chip(chip.path())
            .with_consumer(CONSUMER)
            .with_line(offset)
            .as_output(level_value(false, self.active_low))
            .request()
            .map_err(|e| err(e.to_string()))?;
        tracing::info!(
            line = %self.describe(),
            offset,
            active_low = self.active_low,
            "GPIO line requested as output (inactive)"
        );
        self.request = Some((request, offset));
        Ok(())
    }

    fn set(&mut self, active: bool) -> Result<(), ActionError> {
        self.request()?;
        let Some((request, offset)) = &self.request else {
            return Ok(());
        };
        request
            .set_value(*offset, level_value(active, self.active_low))
            .map_err(|e| ActionError::Local {
                what: format!(
                    "setting {} {}",
                    self.describe(),
                    if active { "active" } else { "inactive" }
                ),
                reason: e.to_string(),
            })
    }
}

/// The gpiocdev value for the level of [`physical_level`] (lines are requested active-high, so
/// gpiocdev's `Active` is high).
fn level_value(active: bool, active_low: bool) -> Value {
    if physical_level(active, active_low) {
        Value::Active
    } else {
        Value::Inactive
    }
}

/// [`LineDriver`] through the Linux GPIO character device (`gpiocdev`, uAPI v2): one line
/// request per port, kept until [`LineDriver::release`].
pub struct GpiocdevDriver {
    lines: BTreeMap<String, Line>,
}

impl GpiocdevDriver {
    /// A driver for the outputs of `config`; requests nothing yet.
    pub fn new(config: &GpioConfig) -> Self {
        let lines = config
            .outputs
            .iter()
            .map(|(port, l)| {
                (
                    port.clone(),
                    Line {
                        chip: l.chip.clone().unwrap_or_else(|| config.chip.clone()),
                        line: l.line.clone(),
                        active_low: l.active_low,
                        request: None,
                    },
                )
            })
            .collect();
        Self { lines }
    }
}

impl LineDriver for GpiocdevDriver {
    fn open(&mut self) -> Result<(), ActionError> {
        let mut failed = Vec::new();
        for (port, line) in &mut self.lines {
            if let Err(e) = line.request() {
                failed.push(format!("output {port}: {e}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ActionError::Local {
                what: "requesting GPIO output lines".into(),
                reason: failed.join("; "),
            })
        }
    }

    fn set(&mut self, port: &str, active: bool) -> Result<(), ActionError> {
        match self.lines.get_mut(port) {
            Some(line) => line.set(active),
            None => Err(ActionError::Local {
                what: format!("setting GPIO output {port}"),
                reason: "no line is configured for it".into(),
            }),
        }
    }

    fn release(&mut self) {
        for line in self.lines.values_mut() {
            line.request = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::GpioLineConfig;

    /// Every `set` as (port, active, when).
    type Log = Arc<Mutex<Vec<(String, bool, Instant)>>>;

    struct Recorder(Log);

    impl LineDriver for Recorder {
        fn set(&mut self, port: &str, active: bool) -> Result<(), ActionError> {
            self.0
                .lock()
                .unwrap()
                .push((port.to_owned(), active, Instant::now()));
            Ok(())
        }
    }

    fn backend(ports: &[&str]) -> (GpioBackend, Log) {
        let log = Log::default();
        let mut b = GpioBackend::with_driver(
            ports.iter().map(|p| p.to_string()).collect(),
            Box::new(Recorder(Arc::clone(&log))),
        );
        b.start().unwrap();
        (b, log)
    }

    fn output(port: &str, state: PortState, duration_ms: Option<u32>) -> Command {
        Command::Output {
            port: port.into(),
            state,
            duration_ms,
        }
    }

    fn sets(log: &Log) -> Vec<(String, bool)> {
        log.lock()
            .unwrap()
            .iter()
            .map(|(p, a, _)| (p.clone(), *a))
            .collect()
    }

    #[test]
    fn level_values() {
        assert!(physical_level(true, false));
        assert!(!physical_level(false, false));
        assert!(!physical_level(true, true));
        assert!(physical_level(false, true));
        assert_eq!(level_value(true, false), Value::Active);
        assert_eq!(level_value(true, true), Value::Inactive);
        assert_eq!(level_value(false, true), Value::Active);
        assert_eq!(level_value(false, false), Value::Inactive);
    }

    #[test]
    fn level_set_holds() {
        let (mut b, log) = backend(&["1", "2"]);
        b.execute("r", &output("2", PortState::Closed, None))
            .unwrap();
        b.execute("r", &output("1", PortState::Open, None)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sets(&log), [("2".into(), true), ("1".into(), false)]);
        assert!(b.thread.is_none(), "no timer thread without pulses");
    }

    #[test]
    fn pulse_ends_on_time_without_blocking() {
        let (mut b, log) = backend(&["1"]);
        let t0 = Instant::now();
        b.execute("r", &output("1", PortState::Closed, Some(150)))
            .unwrap();
        assert!(t0.elapsed() < Duration::from_millis(50), "execute waited");
        std::thread::sleep(Duration::from_millis(400));
        let l = log.lock().unwrap().clone();
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!((l[0].0.as_str(), l[0].1), ("1", true));
        assert_eq!((l[1].0.as_str(), l[1].1), ("1", false));
        let width = l[1].2 - l[0].2;
        assert!(
            width >= Duration::from_millis(150) && width < Duration::from_millis(300),
            "pulse lasted {width:?}"
        );
    }

    #[test]
    fn open_pulse_ends_active() {
        let (mut b, log) = backend(&["1"]);
        b.execute("r", &output("1", PortState::Open, Some(20)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sets(&log), [("1".into(), false), ("1".into(), true)]);
    }

    #[test]
    fn new_pulse_restarts_the_running_one() {
        let (mut b, log) = backend(&["1"]);
        b.execute("r", &output("1", PortState::Closed, Some(200)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let restart = Instant::now();
        b.execute("r", &output("1", PortState::Closed, Some(200)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let l = log.lock().unwrap().clone();
        let v: Vec<bool> = l.iter().map(|x| x.1).collect();
        assert_eq!(v, [true, true, false], "{l:?}");
        let end = l[2].2 - restart;
        assert!(
            end >= Duration::from_millis(200) && end < Duration::from_millis(350),
            "ended {end:?} after the restart"
        );
    }

    #[test]
    fn level_cancels_pulse_end() {
        let (mut b, log) = backend(&["1"]);
        b.execute("r", &output("1", PortState::Closed, Some(100)))
            .unwrap();
        b.execute("r", &output("1", PortState::Closed, None))
            .unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(sets(&log), [("1".into(), true), ("1".into(), true)]);
    }

    #[test]
    fn pulses_on_two_ports_end_independently() {
        let (mut b, log) = backend(&["a", "b"]);
        b.execute("r", &output("a", PortState::Closed, Some(150)))
            .unwrap();
        b.execute("r", &output("b", PortState::Closed, Some(30)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            sets(&log),
            [
                ("a".into(), true),
                ("b".into(), true),
                ("b".into(), false),
                ("a".into(), false)
            ]
        );
    }

    #[test]
    fn unknown_port_names_the_known_ones() {
        let (mut b, log) = backend(&["1", "siren"]);
        let e = b
            .execute("r", &output("7", PortState::Closed, None))
            .unwrap_err();
        assert!(
            matches!(&e, ActionError::Unknown { id, known, .. } if id == "7" && known == "1, siren"),
            "{e:?}"
        );
        assert!(e.to_string().contains("siren"), "{e}");
        assert!(sets(&log).is_empty());
        let e = b.execute("r", &Command::StopClip).unwrap_err();
        assert!(matches!(e, ActionError::Unsupported { .. }), "{e:?}");
    }

    #[test]
    fn close_returns_lines_to_inactive_and_cancels_pulses() {
        let (mut b, log) = backend(&["1", "2"]);
        b.execute("r", &output("1", PortState::Closed, Some(10_000)))
            .unwrap();
        b.execute("r", &output("2", PortState::Closed, None))
            .unwrap();
        let t0 = Instant::now();
        b.close();
        assert!(t0.elapsed() < Duration::from_millis(500), "close waited");
        assert_eq!(
            sets(&log),
            [
                ("1".into(), true),
                ("2".into(), true),
                ("1".into(), false),
                ("2".into(), false)
            ]
        );
        // Closed: no more commands, and dropping does not set the lines again.
        assert!(b
            .execute("r", &output("1", PortState::Closed, None))
            .is_err());
        drop(b);
        assert_eq!(log.lock().unwrap().len(), 4);
    }

    #[test]
    fn missing_chip_is_a_clear_local_error() {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "1".to_string(),
            GpioLineConfig {
                chip: None,
                line: GpioLine::Offset(17),
                active_low: false,
            },
        );
        outputs.insert(
            "2".to_string(),
            GpioLineConfig {
                chip: Some("/dev/earshot-no-such-gpiochip".into()),
                line: GpioLine::Name("GPIO5".into()),
                active_low: true,
            },
        );
        let config = GpioConfig {
            chip: "earshot-no-such-gpiochip9".into(),
            outputs,
        };
        let mut b = GpioBackend::new(&config).unwrap();
        assert_eq!(b.name(), "gpio");
        assert_eq!(b.kinds(), [CommandKind::Output]);
        let e = b.start().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ActionError::Local { .. }), "{e:?}");
        assert!(
            msg.contains("line 17 of earshot-no-such-gpiochip9")
                && msg.contains("line \"GPIO5\" of /dev/earshot-no-such-gpiochip"),
            "{msg}"
        );
        // Commands still try (and fail naming the chip).
        let e = b
            .execute("r", &output("1", PortState::Closed, Some(10)))
            .unwrap_err();
        assert!(e.to_string().contains("earshot-no-such-gpiochip9"), "{e}");
        b.close();
    }
}
