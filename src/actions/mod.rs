//! Actions: what Earshot *does* when it hears something. Rules match events and fire actions on
//! backends: digital outputs, virtual inputs and audio clips of an Axis device through VAPIX, GPIO
//! lines and local clip playback on boards.
//!
//! ```text
//! analysis thread ─► actions sink queue ─► rule matching (on, min score/level, schedule, cooldown)
//!   (never blocks)     (bounded, drops      └─► per-backend bounded queues ─► backend threads
//!                       when full)                 (VAPIX, GPIO, playback)     (HTTP, ioctl, ALSA)
//! ```
//!
//! The rules run as one more sink ([`dispatch::ActionsSink`]), so detection never waits for an
//! action: a camera that does not answer stalls only its backend's thread, and a full backend
//! queue drops the action (logged with the rule's name). Each backend retries what is worth
//! retrying on its own thread.
//!
//! | module | what it holds |
//! |---|---|
//! | [`rules`] | `[[rules]]`: `on`, minimum score and level, schedule, cooldown, the actions |
//! | [`dispatch`] | the actions sink: matches events to rules and queues commands to backends |
//! | [`vapix`] | VAPIX over HTTP (Basic on the device, Digest remotely): I/O ports, virtual inputs, media clips |
//! | [`credentials`] | the VAPIX service account from D-Bus `com.axis.HTTPConf1` on the device |
//! | [`gpio`] | GPIO output lines through the Linux GPIO character device (boards) |
//! | [`playback`] | WAV clips played to an ALSA device (boards), one at a time |

pub mod credentials;
pub mod dispatch;
pub mod gpio;
pub mod playback;
pub mod rules;
pub mod vapix;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Secret;

/// State of a digital output port, as VAPIX names it: `closed` is the active (circuit closed,
/// relay energised) state, `open` the inactive one. GPIO lines map `closed` to the line's active
/// level (high, or low for `active_low` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// Active: circuit closed.
    Closed,
    /// Inactive: circuit open.
    Open,
}

impl PortState {
    /// `"closed"` or `"open"`, as in the VAPIX I/O port management API.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Closed => "closed",
            PortState::Open => "open",
        }
    }

    /// The other state.
    pub fn opposite(self) -> Self {
        match self {
            PortState::Closed => PortState::Open,
            PortState::Open => PortState::Closed,
        }
    }
}

/// One thing a backend is asked to do. Built from a rule's [`rules::ActionConfig`]; the same
/// command goes to whichever backend serves its kind ([`CommandKind`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Set a digital output. With `duration_ms`, a pulse: `state` for that long, then the
    /// opposite state (VAPIX `setStateSequence`; GPIO: the line is set back after it).
    /// Without, the port stays in `state` (VAPIX `setPorts`).
    Output {
        /// Port id as the device names it: VAPIX ports are zero-based strings (`"0"`, `"1"`);
        /// GPIO ports are the keys of `[actions.gpio.outputs]`.
        port: String,
        /// The state to set.
        state: PortState,
        /// Pulse length, milliseconds (1 to 3 600 000).
        duration_ms: Option<u32>,
    },
    /// Activate a virtual input (VAPIX `virtualinput/activate.cgi`), which raises the device
    /// event `tns1:Device/tnsaxis:IO/VirtualInput`; with `duration_s` the device deactivates it
    /// after that many seconds.
    VirtualInput {
        /// Virtual input number (1 to 64).
        port: u32,
        /// Seconds until the device deactivates it (1 to 65 535); `None`: stays active until
        /// deactivated.
        duration_s: Option<u32>,
        /// `true`: deactivate instead (`deactivate.cgi`).
        deactivate: bool,
    },
    /// Play an audio clip.
    Clip {
        /// Clip id: a VAPIX media clip number (`"2"`), or a key of `[actions.playback.clips]`
        /// on boards.
        clip: String,
        /// Volume, percent of full scale (0 to 100); `None`: the device's default.
        volume: Option<u32>,
        /// Extra plays after the first (0 to 100).
        repeat: u32,
    },
    /// Stop the clip playing, if any.
    StopClip,
}

/// Which kind of backend a [`Command`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandKind {
    /// Digital outputs.
    Output,
    /// Virtual inputs (VAPIX only).
    VirtualInput,
    /// Clip playback and stop.
    Clip,
}

impl Command {
    /// The kind of backend this command needs.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Output { .. } => CommandKind::Output,
            Command::VirtualInput { .. } => CommandKind::VirtualInput,
            Command::Clip { .. } | Command::StopClip => CommandKind::Clip,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Output {
                port,
                state,
                duration_ms: Some(ms),
            } => write!(f, "output {port} {} for {ms} ms", state.as_str()),
            Command::Output { port, state, .. } => write!(f, "output {port} {}", state.as_str()),
            Command::VirtualInput {
                port, deactivate, ..
            } => write!(
                f,
                "virtual input {port} {}",
                if *deactivate { "off" } else { "on" }
            ),
            Command::Clip { clip, .. } => write!(f, "clip {clip}"),
            Command::StopClip => f.write_str("stop clip"),
        }
    }
}

/// Why an action failed. Messages name the backend's target (host, chip, device) and never
/// contain a password.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The device refused the credentials (HTTP 401) or the account lacks the rights (403).
    #[error("{host}: HTTP {status}: the device refused user {user:?} ({hint})")]
    Auth {
        /// Host (and port) of the device.
        host: String,
        /// The user name sent.
        user: String,
        /// 401 or 403.
        status: u16,
        /// What to check, in words.
        hint: &'static str,
    },
    /// An HTTP error status other than 401/403 after the retries (404: the API is missing on
    /// this device; 5xx: the device failed).
    #[error("{host}: {what}: HTTP {status}")]
    Http {
        /// Host (and port).
        host: String,
        /// What was asked (`POST /axis-cgi/io/portmanagement.cgi setStateSequence`).
        what: String,
        /// The status.
        status: u16,
    },
    /// The device answered with a VAPIX JSON `error` object (e.g. code 2200: a state sequence
    /// is already running on the port).
    #[error("{host}: {what}: VAPIX error {code}: {message}")]
    Vapix {
        /// Host (and port).
        host: String,
        /// What was asked.
        what: String,
        /// The error code.
        code: i64,
        /// The device's message.
        message: String,
    },
    /// No answer: connection refused, timeout, DNS, TLS.
    #[error("{host}: {what}: {reason}")]
    Unreachable {
        /// Host (and port).
        host: String,
        /// What was asked.
        what: String,
        /// The transport error, in words.
        reason: String,
    },
    /// The device answered something the API does not document.
    #[error("{host}: {what}: unexpected answer: {detail}")]
    Protocol {
        /// Host (and port).
        host: String,
        /// What was asked.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A local device failed (GPIO chip, ALSA PCM, WAV file), with what was being done.
    #[error("{what}: {reason}")]
    Local {
        /// What was being done (`requesting line 17 of /dev/gpiochip0`).
        what: String,
        /// The error, in words.
        reason: String,
    },
    /// This backend cannot do that command (e.g. a virtual input on a board).
    #[error("{backend} cannot {command}")]
    Unsupported {
        /// The backend's name.
        backend: String,
        /// The command, in words.
        command: String,
    },
    /// The command names a port or clip the backend does not know.
    #[error("{backend}: unknown {what} {id:?} (known: {known})")]
    Unknown {
        /// The backend's name.
        backend: String,
        /// `output port`, `clip`.
        what: &'static str,
        /// The id asked for.
        id: String,
        /// The ids it knows, comma-separated.
        known: String,
    },
}

impl ActionError {
    /// Whether trying again later may help (5xx, timeouts, refused connections); auth errors,
    /// 404s, VAPIX errors and unknown ids are not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Http { status, .. } => *status >= 500 || *status == 429,
            ActionError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// Something that carries out [`Command`]s: the VAPIX client, GPIO lines, local playback.
///
/// Runs on its own thread (see [`dispatch`]); `execute` may block (an HTTP request, a pulse's
/// duration is *not* waited for: pulses end on the device or on a timer of the backend) and
/// does its own retries.
pub trait Backend: Send + 'static {
    /// A short name for logs and errors (`vapix:127.0.0.12`, `gpio`, `playback:default`).
    fn name(&self) -> String;

    /// The command kinds this backend serves.
    fn kinds(&self) -> &'static [CommandKind];

    /// Called once on the backend's thread before the first command: fetch credentials, list
    /// clips, open chips. An error is logged; commands are still attempted afterwards.
    ///
    /// # Errors
    /// What could not be prepared.
    fn start(&mut self) -> Result<(), ActionError> {
        Ok(())
    }

    /// Carries out one command for rule `rule` (the name is for logs), with retries where they
    /// make sense.
    ///
    /// # Errors
    /// The command failed for good; the caller logs it with the rule's name.
    fn execute(&mut self, rule: &str, command: &Command) -> Result<(), ActionError>;

    /// Called once when no more commands will come: end pulses, stop playback.
    fn close(&mut self) {}
}

/// `[actions]`: the backends rules use, and their queues.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// Commands each backend's queue holds (1 to 10 000); beyond it new commands are dropped
    /// and logged.
    pub queue: usize,
    /// `[actions.vapix]`: an Axis device's VAPIX API (outputs, virtual inputs, clips).
    pub vapix: Option<VapixConfig>,
    /// `[actions.gpio]`: GPIO output lines (boards). Takes outputs from VAPIX when both exist.
    pub gpio: Option<GpioConfig>,
    /// `[actions.playback]`: local clip playback (boards). Takes clips from VAPIX when both
    /// exist.
    pub playback: Option<PlaybackConfig>,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            queue: 64,
            vapix: None,
            gpio: None,
            playback: None,
        }
    }
}

/// How the VAPIX backend gets its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// `username` and `password` from the configuration.
    Config,
    /// On the device: D-Bus `com.axis.HTTPConf1.VAPIXServiceAccounts1.GetCredentials`, called
    /// at start-up; kept in memory only.
    Dbus,
}

/// HTTP authentication scheme for VAPIX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAuth {
    /// Whatever the device asks for in its `WWW-Authenticate` challenge (Digest preferred).
    Auto,
    /// Basic (RFC 7617): what the device's loopback API (`http://127.0.0.12`) expects.
    Basic,
    /// Digest (RFC 7616, MD5 or SHA-256): what remote clients use.
    Digest,
}

/// `[actions.vapix]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VapixConfig {
    /// Base URL of the device: `http://127.0.0.12` from inside the device, `https://camera`
    /// from a board or PC.
    pub url: String,
    /// Where credentials come from (`dbus` on the device, `config` elsewhere).
    pub credentials: CredentialSource,
    /// Service account name passed to `GetCredentials` (`credentials = "dbus"`).
    pub dbus_account: String,
    /// User name (`credentials = "config"`).
    pub username: Option<String>,
    /// Password (`credentials = "config"`).
    pub password: Option<Secret>,
    /// Authentication scheme.
    pub auth: HttpAuth,
    /// Per-request timeout, seconds (0.1 to 60).
    pub timeout_s: f64,
    /// Retries after a transient failure (5xx, timeout, refused connection), 0 to 10.
    pub retries: u32,
    /// First retry delay, seconds (0 to 60); doubles each retry.
    pub backoff_s: f64,
    /// PEM file of CA certificates to trust for `https://` (absent: the system's roots).
    pub ca_file: Option<PathBuf>,
}

impl Default for VapixConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.12".into(),
            credentials: CredentialSource::Dbus,
            dbus_account: "earshot".into(),
            username: None,
            password: None,
            auth: HttpAuth::Auto,
            timeout_s: 5.0,
            retries: 2,
            backoff_s: 0.5,
            ca_file: None,
        }
    }
}

/// `[actions.gpio]`: output ports of a board, each a GPIO line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpioConfig {
    /// Default chip for outputs that name none: a path (`/dev/gpiochip0`) or name (`gpiochip0`).
    pub chip: String,
    /// Output ports by id (the `port` of `output` actions): `[actions.gpio.outputs.1]`.
    pub outputs: BTreeMap<String, GpioLineConfig>,
}

impl Default for GpioConfig {
    fn default() -> Self {
        Self {
            chip: "gpiochip0".into(),
            outputs: BTreeMap::new(),
        }
    }
}

/// A GPIO line of `[actions.gpio.outputs.<port>]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioLineConfig {
    /// The chip (path or name); absent: `[actions.gpio] chip`.
    #[serde(default)]
    pub chip: Option<String>,
    /// The line: its offset on the chip (`17`) or its name (`"GPIO17"`).
    pub line: GpioLine,
    /// `true`: the `closed` (active) state drives the line low.
    #[serde(default)]
    pub active_low: bool,
}

/// A GPIO line by offset or by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GpioLine {
    /// Offset on the chip.
    Offset(u32),
    /// Line name as the chip reports it.
    Name(String),
}

/// What local playback does with a clip asked for while another plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaybackPolicy {
    /// Stop the clip playing and start the new one (a newer warning matters more).
    Replace,
    /// Play the new clip after the current one; at most `queue` clips wait, more are dropped.
    Queue,
}

/// `[actions.playback]`: WAV clips played to an ALSA device on a board.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackConfig {
    /// ALSA PCM name (`default`, `hw:0,0`, `plughw:1`).
    pub device: String,
    /// What happens when a clip is asked for while one plays.
    pub policy: PlaybackPolicy,
    /// Clips waiting behind the playing one with `policy = "queue"` (1 to 100).
    pub queue: usize,
    /// Clips by id (the `clip` of `clip` actions) → WAV file (PCM 16/24/32-bit or float, any
    /// rate and channel count the device accepts through ALSA's plug layer).
    pub clips: BTreeMap<String, PathBuf>,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            device: "default".into(),
            policy: PlaybackPolicy::Replace,
            queue: 4,
            clips: BTreeMap::new(),
        }
    }
}
