//! `pipewire:NODE`: a PipeWire capture stream connected to a node by name (libpipewire-0.3
//! through the `pipewire` crate), as ACAP apps capture on AXIS OS 12 (node
//! `AudioDevice0Input0`); `pipewire:default` follows the session manager's default source.
//!
//! # Stream
//!
//! What the handbook (acap-platform.md, "Audio capture") gives for devices, and the PipeWire
//! stream API (`pw_stream_new`, `pw_stream_connect`) takes:
//!
//! | property / argument | value |
//! |---|---|
//! | `media.type`, `media.category`, `media.role` | `Audio`, `Capture`, `Production` |
//! | `target.object` | the node name (not set for `pipewire:default`) |
//! | `node.dont-reconnect` | `true` with a node name: when the node goes, the stream ends instead of being moved to another source |
//! | `EnumFormat` | raw audio, `F32P` (planar 32-bit float), rate and channels unset: the node's native format |
//! | direction, flags | `Input`, `AUTOCONNECT \| MAP_BUFFERS` (linking is the session manager's job, e.g. WirePlumber) |
//!
//! The negotiated format (rate, channels) is read from the `Format` param in `param_changed`;
//! each buffer holds one plane (`spa_data`) per channel, `chunk.size / 4` frames each, which the
//! source hands to [`CaptureWriter::write_planar`] (averaged to mono in the ring).
//!
//! # Threads, and why the format is negotiated twice
//!
//! PipeWire's main loop, context, core and stream are not `Send`, while a [`Source`] is opened
//! on the main thread and run on the capture thread, and `earshot run` needs the sample rate
//! before the capture thread starts (the analyzer is built with it). So:
//!
//! 1. [`PipeWireSource::open`] (main thread) connects to the daemon, lists the nodes from the
//!    registry (an unknown node name is refused here, naming it and listing the `Audio/Source`
//!    nodes there are), then connects a probe stream as above and waits up to
//!    [`PROBE_TIMEOUT`] for the negotiated format, and disconnects. Its rate and channels are the
//!    [`SourceInfo`].
//! 2. [`Source::run`] (capture thread) connects again with the same properties and runs the
//!    loop there. A rate different from the probe's ends the run with [`SourceError::PipeWire`]
//!    (the analysis runs at the probed rate); another channel count is accepted (they are
//!    averaged).
//!
//! The stream is not `RT_PROCESS`: its `process` event is dispatched on the capture thread's
//! own loop, and the capture thread dequeues the filled buffers after every loop iteration,
//! copies each plane into scratch planes allocated when the format is known, writes them into
//! the ring and gives the buffers back. Per buffer there is no allocation, lock or log. The loop
//! wakes at least every [`POLL`] to see [`CaptureWriter::stop_requested`].
//!
//! # End of capture
//!
//! The run ends with [`SourceError::PipeWire`] naming the node when the node is removed from the
//! registry, the stream reports an error or is disconnected, or the daemon goes away.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pipewire as pw;
use pw::spa;
use pw::spa::param::format::{MediaSubtype, MediaType};
use pw::spa::param::format_utils;
use pw::stream::{StreamBox, StreamFlags, StreamState};

use super::{CaptureWriter, Source, SourceError, SourceInfo};

/// The node name of `pipewire:default`: no `target.object`, the session manager picks the
/// default source.
pub const DEFAULT_NODE: &str = "default";

/// How long [`PipeWireSource::open`] waits for the daemon's answers and the negotiated format.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the capture loop sleeps before it checks the stop flag.
pub const POLL: Duration = Duration::from_millis(50);

/// Frames converted per step into the scratch planes (a buffer of more is done in steps).
const STEP_FRAMES: usize = 4096;

/// Channels a format may have (`SPA_AUDIO_MAX_CHANNELS`).
const MAX_CHANNELS: usize = 64;

/// The stream's role; `Production` is the role of recording/analysis clients.
const MEDIA_ROLE: &str = "Production";

/// The format negotiated with the node (read from the stream's `Format` param).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Sample rate, Hz.
    pub rate_hz: u32,
    /// Channels (one plane each).
    pub channels: u16,
}

/// A node of the registry (for the "no such node" message).
#[derive(Debug, Clone)]
struct NodeEntry {
    name: String,
    media_class: String,
}

/// A PipeWire capture source: what `open` probed. The PipeWire objects themselves live on
/// the capture thread only ([`Source::run`]); see the module docs.
pub struct PipeWireSource {
    info: SourceInfo,
    /// `None` for `pipewire:default`.
    node: Option<String>,
    negotiated: Negotiated,
}

/// A [`SourceError::PipeWire`].
fn pw_error(node: &str, what: &str, message: impl Into<String>) -> SourceError {
    SourceError::PipeWire {
        node: node.to_owned(),
        what: what.to_owned(),
        message: message.into(),
    }
}

/// What the stream listener saw (shared with the loop through an `Rc`; single thread).
#[derive(Default)]
struct StreamEvents {
    format: Cell<Option<Negotiated>>,
    /// A format that is not raw F32P audio, or an error state's message.
    error: RefCell<Option<String>>,
    /// The stream reached `Paused` or `Streaming` once (so a later `Unconnected` is an end).
    connected: Cell<bool>,
    disconnected: Cell<bool>,
}

/// The daemon connection of one thread.
struct Conn {
    main_loop: pw::main_loop::MainLoopRc,
    // Kept alive with the core.
    _context: pw::context::ContextRc,
    core: pw::core::CoreRc,
    /// A core `error` event (e.g. the daemon went away), as a message.
    core_error: Rc<RefCell<Option<String>>>,
    _core_listener: pw::core::Listener,
}

impl Conn {
    fn new(node: &str) -> Result<Self, SourceError> {
        pw::init();
        let main_loop = pw::main_loop::MainLoopRc::new(None)
            .map_err(|e| pw_error(node, "pw_main_loop_new", e.to_string()))?;
        let context = pw::context::ContextRc::new(&main_loop, None)
            .map_err(|e| pw_error(node, "pw_context_new", e.to_string()))?;
        let core = context.connect_rc(None).map_err(|e| {
            pw_error(
                node,
                "pw_context_connect",
                format!(
                    "cannot connect to the PipeWire daemon ({e}); is it running for this user \
                     (XDG_RUNTIME_DIR / PIPEWIRE_RUNTIME_DIR / PIPEWIRE_REMOTE)?"
                ),
            )
        })?;
        let core_error = Rc::new(RefCell::new(None));
        let _core_listener = {
            let core_error = Rc::clone(&core_error);
            core.add_listener_local()
                .error(move |id, _seq, res, message| {
                    // Errors of objects other than the core (id 0) are reported by the
                    // stream's own state; the core's mean the connection is gone.
                    if id == pw::core::PW_ID_CORE {
                        *core_error.borrow_mut() = Some(format!("{message} ({res})"));
                    }
                })
                .register()
        };
        Ok(Self {
            main_loop,
            _context: context,
            core,
            core_error,
            _core_listener,
        })
    }

    /// Runs the loop for up to `timeout`, returning early once `done()` holds.
    fn iterate_until(&self, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            self.main_loop
                .loop_()
                .iterate(pw::loop_::Timeout::Finite((deadline - now).min(POLL)));
        }
    }

    /// The nodes of the registry (a core sync round trip).
    fn nodes(&self, node: &str) -> Result<Vec<NodeEntry>, SourceError> {
        let registry = self
            .core
            .get_registry()
            .map_err(|e| pw_error(node, "pw_core_get_registry", e.to_string()))?;
        let nodes = Rc::new(RefCell::new(Vec::new()));
        let _reg_listener = {
            let nodes = Rc::clone(&nodes);
            registry
                .add_listener_local()
                .global(move |g| {
                    if g.type_ != pw::types::ObjectType::Node {
                        return;
                    }
                    if let Some(props) = g.props {
                        if let Some(name) = props.get("node.name") {
                            nodes.borrow_mut().push(NodeEntry {
                                name: name.to_owned(),
                                media_class: props.get("media.class").unwrap_or("").to_owned(),
                            });
                        }
                    }
                })
                .register()
        };
        let done = Rc::new(Cell::new(false));
        let pending = self
            .core
            .sync(0)
            .map_err(|e| pw_error(node, "pw_core_sync", e.to_string()))?;
        let _done_listener = {
            let done = Rc::clone(&done);
            self.core
                .add_listener_local()
                .done(move |id, seq| {
                    if id == pw::core::PW_ID_CORE && seq == pending {
                        done.set(true);
                    }
                })
                .register()
        };
        self.iterate_until(PROBE_TIMEOUT, || {
            done.get() || self.core_error.borrow().is_some()
        });
        if let Some(e) = self.core_error.borrow().as_ref() {
            return Err(pw_error(node, "registry", e.clone()));
        }
        if !done.get() {
            return Err(pw_error(
                node,
                "registry",
                format!(
                    "the daemon did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            ));
        }
        let nodes = nodes.borrow().clone();
        Ok(nodes)
    }

    /// A capture stream for `target` (None: the default source), listened to into `events`,
    /// and connected as in the module docs.
    fn capture_stream(
        &self,
        node: &str,
        target: Option<&str>,
        events: &Rc<StreamEvents>,
    ) -> Result<(StreamBox<'_>, pw::stream::StreamListener<()>), SourceError> {
        let mut props = pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => MEDIA_ROLE,
            *pw::keys::APP_NAME => "earshot",
        };
        if let Some(t) = target {
            props.insert(*pw::keys::TARGET_OBJECT, t);
            props.insert("node.dont-reconnect", "true");
        }
        let stream = StreamBox::new(&self.core, "earshot-capture", props)
            .map_err(|e| pw_error(node, "pw_stream_new", e.to_string()))?;
        let listener = {
            let on_param = Rc::clone(events);
            let on_state = Rc::clone(events);
            stream
                .add_local_listener_with_user_data(())
                .param_changed(move |_, _, id, param| {
                    let Some(param) = param else { return };
                    if id != spa::param::ParamType::Format.as_raw() {
                        return;
                    }
                    on_param.format.set(None);
                    match parse_format(param) {
                        Ok(f) => on_param.format.set(Some(f)),
                        Err(e) => *on_param.error.borrow_mut() = Some(e),
                    }
                })
                .state_changed(move |_, _, _old, new| match new {
                    StreamState::Error(msg) => {
                        *on_state.error.borrow_mut() = Some(format!("stream error: {msg}"));
                    }
                    StreamState::Paused | StreamState::Streaming => on_state.connected.set(true),
                    StreamState::Unconnected => {
                        if on_state.connected.get() {
                            on_state.disconnected.set(true);
                        }
                    }
                    StreamState::Connecting => {}
                })
                .register()
                .map_err(|e| pw_error(node, "pw_stream_add_listener", e.to_string()))?
        };
        let mut info = spa::param::audio::AudioInfoRaw::new();
        info.set_format(spa::param::audio::AudioFormat::F32P);
        let obj = spa::pod::Object {
            type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
            id: spa::param::ParamType::EnumFormat.as_raw(),
            properties: info.into(),
        };
        let bytes = spa::pod::serialize::PodSerializer::serialize(
            std::io::Cursor::new(Vec::new()),
            &spa::pod::Value::Object(obj),
        )
        .map_err(|e| pw_error(node, "EnumFormat", format!("{e:?}")))?
        .0
        .into_inner();
        let pod = spa::pod::Pod::from_bytes(&bytes)
            .ok_or_else(|| pw_error(node, "EnumFormat", "not a pod"))?;
        stream
            .connect(
                spa::utils::Direction::Input,
                None,
                StreamFlags::AUTOCONNECT | StreamFlags::MAP_BUFFERS,
                &mut [pod],
            )
            .map_err(|e| pw_error(node, "pw_stream_connect", e.to_string()))?;
        Ok((stream, listener))
    }
}

/// Reads the negotiated raw format; only F32P is accepted (what was asked for).
fn parse_format(param: &spa::pod::Pod) -> Result<Negotiated, String> {
    let (media_type, media_subtype) =
        format_utils::parse_format(param).map_err(|e| format!("format: {e:?}"))?;
    if media_type != MediaType::Audio || media_subtype != MediaSubtype::Raw {
        return Err(format!(
            "negotiated {media_type:?}/{media_subtype:?}, not raw audio"
        ));
    }
    let mut raw = spa::param::audio::AudioInfoRaw::new();
    raw.parse(param)
        .map_err(|e| format!("audio format: {e:?}"))?;
    if raw.format() != spa::param::audio::AudioFormat::F32P {
        return Err(format!("negotiated {:?}, not F32P", raw.format()));
    }
    let channels = u16::try_from(raw.channels())
        .ok()
        .filter(|&c| c >= 1 && c as usize <= MAX_CHANNELS)
        .ok_or_else(|| format!("{} channels", raw.channels()))?;
    if raw.rate() == 0 {
        return Err("rate 0 Hz".into());
    }
    Ok(Negotiated {
        rate_hz: raw.rate(),
        channels,
    })
}

/// `name (class)` of the `Audio/Source*` nodes, for the "no such node" message.
fn list_sources(nodes: &[NodeEntry]) -> String {
    let sources: Vec<String> = nodes
        .iter()
        .filter(|n| n.media_class.starts_with("Audio/Source"))
        .map(|n| format!("{} ({})", n.name, n.media_class))
        .collect();
    if sources.is_empty() {
        "there is no Audio/Source node".into()
    } else {
        format!("Audio/Source nodes: {}", sources.join(", "))
    }
}

impl PipeWireSource {
    /// Validates `node` against the registry and probes its native format (module docs,
    /// step 1); `spec` is the input as given, for [`SourceInfo::description`]; `node` is the
    /// name after `pipewire:` ([`DEFAULT_NODE`] for the default source). Logs the format once.
    ///
    /// # Errors
    /// [`SourceError::PipeWire`] naming the node: no daemon to connect to, no node of that name
    /// (the message lists the `Audio/Source` nodes), the stream failed or negotiated no F32P
    /// format within [`PROBE_TIMEOUT`] (e.g. no session manager linked it).
    pub fn open(spec: &str, node: &str) -> Result<Self, SourceError> {
        let target = (node != DEFAULT_NODE).then_some(node);
        let conn = Conn::new(node)?;
        let nodes = conn.nodes(node)?;
        if let Some(t) = target {
            if !nodes.iter().any(|n| n.name == t) {
                return Err(pw_error(
                    node,
                    "looking up the node",
                    format!("no node named '{t}'; {}", list_sources(&nodes)),
                ));
            }
        }
        let events = Rc::new(StreamEvents::default());
        let (stream, listener) = conn.capture_stream(node, target, &events)?;
        conn.iterate_until(PROBE_TIMEOUT, || {
            events.format.get().is_some()
                || events.error.borrow().is_some()
                || conn.core_error.borrow().is_some()
        });
        let _ = stream.disconnect();
        drop(listener);
        drop(stream);
        if let Some(e) = conn.core_error.borrow().as_ref() {
            return Err(pw_error(node, "probing the format", e.clone()));
        }
        if let Some(e) = events.error.borrow().as_ref() {
            return Err(pw_error(node, "probing the format", e.clone()));
        }
        let negotiated = events.format.get().ok_or_else(|| {
            pw_error(
                node,
                "probing the format",
                format!(
                    "no format negotiated within {} s (is a session manager such as WirePlumber \
                     running to link the stream?)",
                    PROBE_TIMEOUT.as_secs()
                ),
            )
        })?;
        tracing::info!(
            node,
            format = "F32P",
            channels = negotiated.channels,
            rate_hz = negotiated.rate_hz,
            "PipeWire capture negotiated"
        );
        Ok(Self {
            info: SourceInfo {
                sample_rate_hz: negotiated.rate_hz,
                channels: negotiated.channels,
                live: true,
                description: spec.to_owned(),
            },
            node: target.map(str::to_owned),
            negotiated,
        })
    }

    /// The format probed in [`open`](Self::open).
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }
}

impl Source for PipeWireSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn run(&mut self, out: &mut CaptureWriter) -> Result<(), SourceError> {
        let node = self.node.as_deref().unwrap_or(DEFAULT_NODE);
        let conn = Conn::new(node)?;

        // The target's removal from the registry ends the run.
        let registry = conn
            .core
            .get_registry()
            .map_err(|e| pw_error(node, "pw_core_get_registry", e.to_string()))?;
        let node_id: Rc<Cell<Option<u32>>> = Rc::new(Cell::new(None));
        let removed = Rc::new(Cell::new(false));
        let _reg_listener = {
            let target = self.node.clone();
            let (id_g, id_r, removed) = (
                Rc::clone(&node_id),
                Rc::clone(&node_id),
                Rc::clone(&removed),
            );
            registry
                .add_listener_local()
                .global(move |g| {
                    let named = g
                        .props
                        .and_then(|p| p.get("node.name"))
                        .is_some_and(|n| Some(n) == target.as_deref());
                    if g.type_ == pw::types::ObjectType::Node && named {
                        id_g.set(Some(g.id));
                    }
                })
                .global_remove(move |id| {
                    if id_r.get() == Some(id) {
                        removed.set(true);
                    }
                })
                .register()
        };

        let events = Rc::new(StreamEvents::default());
        let (stream, _listener) = conn.capture_stream(node, self.node.as_deref(), &events)?;
        let mut scratch: Box<[f32]> = Box::default();
        let mut channels = 0usize;
        let result = loop {
            if out.stop_requested() {
                break Ok(());
            }
            conn.main_loop
                .loop_()
                .iterate(pw::loop_::Timeout::Finite(POLL));
            if let Some(e) = conn.core_error.borrow().as_ref() {
                break Err(pw_error(node, "PipeWire connection", e.clone()));
            }
            if let Some(e) = events.error.borrow().as_ref() {
                break Err(pw_error(node, "capture stream", e.clone()));
            }
            if removed.get() {
                break Err(pw_error(node, "capture", "the node was removed"));
            }
            if events.disconnected.get() {
                break Err(pw_error(node, "capture stream", "disconnected"));
            }
            let Some(format) = events.format.get() else {
                continue;
            };
            if format.rate_hz != self.info.sample_rate_hz {
                break Err(pw_error(
                    node,
                    "capture stream",
                    format!(
                        "negotiated {} Hz, but {} Hz when opened (the analysis runs at that rate)",
                        format.rate_hz, self.info.sample_rate_hz
                    ),
                ));
            }
            if channels != format.channels as usize {
                // Once per format (not per buffer): planes for STEP_FRAMES frames.
                channels = format.channels as usize;
                scratch = vec![0.0; channels * STEP_FRAMES].into_boxed_slice();
            }
            while let Some(mut buffer) = stream.dequeue_buffer() {
                if !deliver(buffer.datas_mut(), channels, &mut scratch, out) {
                    break;
                }
            }
        };
        let _ = stream.disconnect();
        result
    }
}

/// Writes one buffer's planes (`datas`, one per channel, f32 native-endian in `chunk`'s
/// offset/size) through `out` in steps of [`STEP_FRAMES`], via `scratch` (`channels` planes of
/// `STEP_FRAMES`). Planes beyond `channels`, or missing, are ignored/treated as absent; the
/// frames of a buffer are the shortest plane's. Returns false when the run is stopping.
fn deliver(
    datas: &mut [spa::buffer::Data],
    channels: usize,
    scratch: &mut [f32],
    out: &mut CaptureWriter,
) -> bool {
    let n_planes = datas.len().min(channels).min(MAX_CHANNELS);
    if n_planes == 0 {
        return true;
    }
    let mut planes: [&[u8]; MAX_CHANNELS] = [&[]; MAX_CHANNELS];
    let mut frames = usize::MAX;
    for (plane, data) in planes.iter_mut().zip(datas.iter_mut()).take(n_planes) {
        let (offset, size) = {
            let c = data.chunk();
            (c.offset() as usize, c.size() as usize)
        };
        let bytes: &[u8] = match data.data() {
            Some(b) => {
                let start = offset.min(b.len());
                let end = start.saturating_add(size).min(b.len());
                &b[start..end]
            }
            None => &[],
        };
        frames = frames.min(bytes.len() / 4);
        *plane = bytes;
    }
    let mut done = 0;
    while done < frames {
        let n = (frames - done).min(STEP_FRAMES);
        for (dst, src) in scratch
            .chunks_exact_mut(STEP_FRAMES)
            .zip(&planes[..n_planes])
        {
            let src = &src[done * 4..(done + n) * 4];
            for (y, x) in dst[..n].iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_ne_bytes([x[0], x[1], x[2], x[3]]);
            }
        }
        let mut views: [&[f32]; MAX_CHANNELS] = [&[]; MAX_CHANNELS];
        for (view, plane) in views.iter_mut().zip(scratch.chunks_exact(STEP_FRAMES)) {
            *view = &plane[..n];
        }
        if !out.write_planar(&views[..n_planes]) {
            return false;
        }
        done += n;
    }
    true
}
