//! Local clip playback backend: audio clips played to an ALSA PCM on a board, one at a time,
//! on a player thread of the backend. Needs the `alsa` cargo feature (on by default); without
//! it [`PlaybackBackend::new`] fails with [`ActionError::Unsupported`].
//!
//! # Clips
//!
//! A `clip` action names a key of `[actions.playback.clips]` or a file path (a clip with a `/`
//! or ending in `.wav`, see [`rules::clip_is_path`](super::rules::clip_is_path)). Files are
//! decoded with Earshot's own reader ([`crate::audio_file`]: WAV PCM 8/16/24/32-bit or float,
//! also FLAC, Ogg Vorbis, MP3) to **mono** at the file's rate: channels are averaged, so a
//! stereo clip plays as mono. Configured clips are decoded once, at [`Backend::start`], and
//! kept in memory; path clips are decoded at each command. A clip may last at most
//! [`MAX_CLIP_S`]. Errors name the file.
//!
//! # Playback
//!
//! [`Backend::execute`] only hands the decoded clip to the player thread and returns. For each
//! clip the player opens the PCM `device` for playback and asks for:
//!
//! | parameter | asked for |
//! |---|---|
//! | access | `RW_INTERLEAVED` |
//! | format | `S16_LE`, else `FLOAT_LE` |
//! | channels | 1, else the device's minimum (the mono clip is copied to every channel) |
//! | rate | the clip's rate (nearest; a device that sets another rate plays the clip at the wrong speed, which is logged: use `plughw:` or `default`, whose plug layer converts) |
//! | period / buffer | 20 ms / 4 periods, nearest |
//!
//! The PCM is opened in non-blocking mode, so a busy device fails at once rather than blocking
//! the player (and with it `stop_clip` and `close`). The player writes the clip one period at a
//! time, waiting for room in the device buffer (`snd_pcm_wait`: the device paces the writes),
//! `1 + repeat` times back to back, then drains the PCM (waits until the device has played
//! it) and closes it. It checks for a stop between writes and while it waits, so a stop takes
//! effect within a period or two. Failures (no such device, busy device, a write error, a
//! device that takes no frames for 5 s) are logged at warn level on the player thread: the
//! command has already returned. Underruns are recovered from.
//!
//! **Volume**: `volume` percent scales the amplitude linearly: every sample is multiplied by
//! `volume / 100` (50 % is −6 dB); `None` plays at 100 %, values above 100 are taken as 100.
//! `S16` samples are `round(x · gain · 32768)`, clamped to the 16-bit range.
//!
//! # Policies
//!
//! - `replace`: a new clip stops the one playing (its PCM is dropped: frames already in the
//!   device buffer are discarded) and clears the queue, then plays;
//! - `queue`: the new clip plays after those before it; at most `queue` clips wait behind the
//!   one playing, more are dropped with a warning naming the clip and the rule.
//!
//! `stop_clip` stops the clip playing (dropping its PCM) and clears the queue.
//! [`Backend::close`] does the same and joins the player thread; so does dropping the backend.
//! [`PlaybackBackend::wait_idle`] waits until everything asked for has been played.
//!
//! # Testing without a sound card
//!
//! alsa-lib's `file` PCM writes what is played to a file, on top of the `null` PCM:
//! `device = "file:'/tmp/out.raw',raw"` writes the raw frames (S16_LE mono at the clip's rate,
//! as negotiated). The `null` slave does not pace, so a clip is "played" as fast as it is
//! written; with a FIFO as the file, the reader paces it (`tests/actions_playback.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::rules::clip_is_path;
use super::{ActionError, Backend, Command, CommandKind, PlaybackConfig};

/// The longest clip accepted, seconds: a clip is held decoded in memory (4 bytes a sample).
pub const MAX_CLIP_S: u64 = 600;

/// The player asks for periods of this many ms.
pub const PERIOD_MS: u32 = 20;

/// A decoded clip: mono samples in `[-1, 1]` at `rate_hz`.
#[derive(Debug)]
#[cfg_attr(not(feature = "alsa"), allow(dead_code))]
struct Clip {
    /// The id the clip was asked for by (key or path), for logs.
    id: String,
    rate_hz: u32,
    samples: Vec<f32>,
}

/// Decodes the clip file `path` (asked for as `id`) to mono.
fn decode(id: &str, path: &Path) -> Result<Clip, ActionError> {
    let err = |reason: String| ActionError::Local {
        what: format!("loading clip {id:?}"),
        reason,
    };
    let mut reader =
        crate::audio_file::AudioFileReader::open(path).map_err(|e| err(e.to_string()))?;
    let rate_hz = reader.info().sample_rate_hz;
    let max = u64::from(rate_hz) * MAX_CLIP_S;
    let too_long = || {
        err(format!(
            "{}: longer than {MAX_CLIP_S} s, the longest clip played",
            path.display()
        ))
    };
    if reader.info().frames.is_some_and(|f| f > max) {
        return Err(too_long());
    }
    let mut samples = Vec::new();
    while reader
        .read_mono(&mut samples)
        .map_err(|e| err(e.to_string()))?
        > 0
    {
        if samples.len() as u64 > max {
            return Err(too_long());
        }
    }
    if reader.was_truncated() {
        tracing::warn!(
            clip = id,
            file = %path.display(),
            "clip file is truncated; playing what it holds"
        );
    }
    Ok(Clip {
        id: id.to_owned(),
        rate_hz,
        samples,
    })
}

/// The local playback backend ([module docs](self)): serves [`CommandKind::Clip`].
pub struct PlaybackBackend {
    name: String,
    config: PlaybackConfig,
    /// Configured clips decoded so far, by key.
    cache: BTreeMap<String, Arc<Clip>>,
    #[cfg(feature = "alsa")]
    player: Option<player::Player>,
    closed: bool,
}

impl PlaybackBackend {
    /// A backend playing to `config.device`. Decodes nothing and opens nothing yet: clips are
    /// decoded by [`Backend::start`], the device is opened for each clip.
    ///
    /// # Errors
    /// [`ActionError::Unsupported`] when Earshot was built without the `alsa` feature.
    pub fn new(config: &PlaybackConfig) -> Result<Self, ActionError> {
        let name = format!("playback:{}", config.device);
        if cfg!(not(feature = "alsa")) {
            return Err(ActionError::Unsupported {
                backend: name,
                command: "play clips: this Earshot was built without ALSA (cargo feature `alsa`)"
                    .into(),
            });
        }
        Ok(Self {
            name,
            config: config.clone(),
            cache: BTreeMap::new(),
            #[cfg(feature = "alsa")]
            player: None,
            closed: false,
        })
    }

    /// Waits until no clip plays or waits, at most `timeout`. Returns whether playback is idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        #[cfg(feature = "alsa")]
        if let Some(player) = &self.player {
            return player.wait_idle(timeout);
        }
        let _ = timeout;
        true
    }

    /// The decoded clip `id`: a configured clip (decoded now unless cached) or a file path.
    fn clip(&mut self, id: &str) -> Result<Arc<Clip>, ActionError> {
        if let Some(clip) = self.cache.get(id) {
            return Ok(Arc::clone(clip));
        }
        if let Some(path) = self.config.clips.get(id) {
            let clip = Arc::new(decode(id, path)?);
            self.cache.insert(id.to_owned(), Arc::clone(&clip));
            return Ok(clip);
        }
        if clip_is_path(id) {
            return decode(id, &PathBuf::from(id)).map(Arc::new);
        }
        Err(ActionError::Unknown {
            backend: self.name.clone(),
            what: "clip",
            id: id.to_owned(),
            known: self
                .config
                .clips
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn shutdown(&mut self) {
        self.closed = true;
        #[cfg(feature = "alsa")]
        if let Some(mut player) = self.player.take() {
            player.shutdown();
        }
    }
}

impl Backend for PlaybackBackend {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn kinds(&self) -> &'static [CommandKind] {
        &[CommandKind::Clip]
    }

    fn start(&mut self) -> Result<(), ActionError> {
        let mut failed = Vec::new();
        let ids: Vec<String> = self.config.clips.keys().cloned().collect();
        for id in ids {
            match self.clip(&id) {
                Ok(clip) => tracing::debug!(
                    clip = id,
                    rate_hz = clip.rate_hz,
                    seconds = clip.samples.len() as f64 / f64::from(clip.rate_hz),
                    "clip decoded"
                ),
                Err(e) => failed.push(e.to_string()),
            }
        }
        #[cfg(feature = "alsa")]
        if self.player.is_none() {
            self.player = Some(player::Player::spawn(&self.config.device)?);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ActionError::Local {
                what: format!("{}: decoding clips", self.name),
                reason: failed.join("; "),
            })
        }
    }

    fn execute(&mut self, rule: &str, command: &Command) -> Result<(), ActionError> {
        if self.closed {
            return Err(ActionError::Local {
                what: format!("{}: {command}", self.name),
                reason: "the backend is closed".into(),
            });
        }
        #[cfg(not(feature = "alsa"))]
        let _ = rule;
        match command {
            #[cfg(feature = "alsa")]
            Command::Clip {
                clip,
                volume,
                repeat,
            } => {
                let decoded = self.clip(clip)?;
                let job = player::Job {
                    clip: decoded,
                    gain: volume.unwrap_or(100).min(100) as f32 / 100.0,
                    plays: repeat.saturating_add(1),
                };
                if self.player.is_none() {
                    self.player = Some(player::Player::spawn(&self.config.device)?);
                }
                if let Some(player) = &self.player {
                    player.play(job, self.config.policy, self.config.queue, rule);
                }
                Ok(())
            }
            #[cfg(feature = "alsa")]
            Command::StopClip => {
                if let Some(player) = &self.player {
                    player.stop();
                }
                Ok(())
            }
            _ => Err(ActionError::Unsupported {
                backend: self.name.clone(),
                command: command.to_string(),
            }),
        }
    }

    fn close(&mut self) {
        self.shutdown();
    }
}

impl Drop for PlaybackBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The player thread and what it shares with the backend.
#[cfg(feature = "alsa")]
mod player {
    use std::collections::VecDeque;
    use std::ffi::CString;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use alsa::pcm::{Access, Format, HwParams, IoFormat, State as PcmState, PCM};
    use alsa::{Direction, ValueOr};

    use super::{ActionError, Clip, PERIOD_MS};
    use crate::actions::PlaybackPolicy;

    /// Linux errno values ALSA returns (the crate forbids `unsafe`, so no `libc` here).
    const EINTR: i32 = 4;
    const EAGAIN: i32 = 11;
    const EPIPE: i32 = 32;
    const ESTRPIPE: i32 = 86;

    /// How long a device may accept no frames before playback is abandoned.
    const STALL_TIMEOUT: Duration = Duration::from_secs(5);

    /// A clip to play.
    pub(super) struct Job {
        pub(super) clip: Arc<Clip>,
        /// Amplitude factor, 0 to 1.
        pub(super) gain: f32,
        /// Times to play it back to back (1 + repeat).
        pub(super) plays: u32,
    }

    struct State {
        queue: VecDeque<Job>,
        playing: bool,
        shutdown: bool,
    }

    struct Shared {
        state: Mutex<State>,
        /// Signalled when a job is queued, playback ends, or on shutdown.
        wake: Condvar,
        /// Bumped to stop the clip playing (replace, stop, shutdown); the player compares it
        /// with the value it started the clip with between periods.
        generation: AtomicU64,
    }

    impl Shared {
        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    pub(super) struct Player {
        shared: Arc<Shared>,
        thread: Option<JoinHandle<()>>,
    }

    impl Player {
        pub(super) fn spawn(device: &str) -> Result<Self, ActionError> {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    playing: false,
                    shutdown: false,
                }),
                wake: Condvar::new(),
                generation: AtomicU64::new(0),
            });
            let thread = {
                let shared = Arc::clone(&shared);
                let dev = device.to_owned();
                std::thread::Builder::new()
                    .name("earshot-playback".into())
                    .spawn(move || run(&shared, &dev))
                    .map_err(|e| ActionError::Local {
                        what: format!("starting the player thread for {device}"),
                        reason: e.to_string(),
                    })?
            };
            Ok(Self {
                shared,
                thread: Some(thread),
            })
        }

        pub(super) fn play(
            &self,
            job: Job,
            policy: PlaybackPolicy,
            max_waiting: usize,
            rule: &str,
        ) {
            let mut state = self.shared.lock();
            match policy {
                PlaybackPolicy::Replace => {
                    state.queue.clear();
                    state.queue.push_back(job);
                    self.shared.generation.fetch_add(1, Ordering::SeqCst);
                }
                PlaybackPolicy::Queue => {
                    // When nothing plays, the first queued clip is the next to play, not one
                    // that waits.
                    let room = max_waiting + usize::from(!state.playing);
                    if state.queue.len() >= room {
                        tracing::warn!(
                            rule,
                            clip = job.clip.id,
                            waiting = max_waiting,
                            "clip dropped: the playback queue is full"
                        );
                        return;
                    }
                    state.queue.push_back(job);
                }
            }
            drop(state);
            self.shared.wake.notify_all();
        }

        pub(super) fn stop(&self) {
            let mut state = self.shared.lock();
            state.queue.clear();
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }

        pub(super) fn wait_idle(&self, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            let mut state = self.shared.lock();
            while state.playing || !state.queue.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                state = self
                    .shared
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            true
        }

        pub(super) fn shutdown(&mut self) {
            {
                let mut state = self.shared.lock();
                state.shutdown = true;
                state.queue.clear();
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
            }
            self.shared.wake.notify_all();
            if let Some(thread) = self.thread.take() {
                if thread.join().is_err() {
                    tracing::error!("the playback thread panicked");
                }
            }
        }
    }

    impl Drop for Player {
        fn drop(&mut self) {
            self.shutdown();
        }
    }

    /// The player thread: plays queued jobs until shut down.
    fn run(shared: &Shared, device: &str) {
        loop {
            let (job, generation) = {
                let mut state = shared.lock();
                loop {
                    if state.shutdown {
                        return;
                    }
                    if let Some(job) = state.queue.pop_front() {
                        state.playing = true;
                        break (job, shared.generation.load(Ordering::SeqCst));
                    }
                    state = shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let stopped = || shared.generation.load(Ordering::SeqCst) != generation;
            match play(device, &job, &stopped) {
                Ok(true) => tracing::debug!(clip = job.clip.id, device, "clip played"),
                Ok(false) => tracing::debug!(clip = job.clip.id, device, "clip stopped"),
                Err(e) => tracing::warn!(clip = job.clip.id, error = %e, "clip playback failed"),
            }
            shared.lock().playing = false;
            shared.wake.notify_all();
        }
    }

    /// Sample formats the player writes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum SampleFormat {
        S16,
        F32,
    }

    impl SampleFormat {
        fn alsa(self) -> Format {
            match self {
                SampleFormat::S16 => <i16 as IoFormat>::FORMAT,
                SampleFormat::F32 => <f32 as IoFormat>::FORMAT,
            }
        }
    }

    /// A sample of the clip, scaled by the gain, in the device's format.
    trait Sample: IoFormat + Copy + Default {
        fn from_scaled(x: f32, gain: f32) -> Self;
    }

    impl Sample for i16 {
        fn from_scaled(x: f32, gain: f32) -> Self {
            (x * gain * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        }
    }

    impl Sample for f32 {
        fn from_scaled(x: f32, gain: f32) -> Self {
            (x * gain).clamp(-1.0, 1.0)
        }
    }

    struct Negotiated {
        format: SampleFormat,
        channels: usize,
        period_frames: usize,
    }

    fn alsa_error(device: &str, what: &str, e: &alsa::Error) -> ActionError {
        ActionError::Local {
            what: format!("{what} on ALSA PCM {device:?}"),
            reason: std::io::Error::from_raw_os_error(e.errno()).to_string(),
        }
    }

    /// Plays `job` to `device`. `Ok(true)`: played to the end; `Ok(false)`: stopped.
    fn play(device: &str, job: &Job, stopped: &dyn Fn() -> bool) -> Result<bool, ActionError> {
        if stopped() {
            return Ok(false);
        }
        let name = CString::new(device).map_err(|_| ActionError::Local {
            what: format!("opening ALSA PCM {device:?}"),
            reason: "the name contains a NUL byte".into(),
        })?;
        // Non-blocking: a busy device fails at once instead of blocking the player (and so
        // stop and close) until it is free; the writes wait with `snd_pcm_wait`.
        let pcm = PCM::open(&name, Direction::Playback, true)
            .map_err(|e| alsa_error(device, "snd_pcm_open (playback)", &e))?;
        let n = negotiate(&pcm, device, job.clip.rate_hz)?;
        tracing::debug!(
            clip = job.clip.id,
            device,
            format = ?n.format,
            channels = n.channels,
            rate_hz = job.clip.rate_hz,
            period_frames = n.period_frames,
            "playing clip"
        );
        match n.format {
            SampleFormat::S16 => write_clip::<i16>(&pcm, device, job, &n, stopped),
            SampleFormat::F32 => write_clip::<f32>(&pcm, device, job, &n, stopped),
        }
    }

    /// Sets the hardware and software parameters of the module docs.
    fn negotiate(pcm: &PCM, device: &str, rate_hz: u32) -> Result<Negotiated, ActionError> {
        let err = |what: &'static str| move |e: alsa::Error| alsa_error(device, what, &e);
        let hwp = HwParams::any(pcm).map_err(err("snd_pcm_hw_params_any"))?;
        hwp.set_access(Access::RWInterleaved)
            .map_err(err("snd_pcm_hw_params_set_access (RW_INTERLEAVED)"))?;
        let format = [SampleFormat::S16, SampleFormat::F32]
            .into_iter()
            .find(|f| hwp.test_format(f.alsa()).is_ok())
            .ok_or_else(|| ActionError::Local {
                what: format!("snd_pcm_hw_params_set_format on ALSA PCM {device:?}"),
                reason: "the device accepts neither S16_LE nor FLOAT_LE (use a plug PCM such as plughw: or default)".into(),
            })?;
        hwp.set_format(format.alsa())
            .map_err(err("snd_pcm_hw_params_set_format"))?;
        let channels = if hwp.test_channels(1).is_ok() {
            1
        } else {
            hwp.get_channels_min()
                .map_err(err("snd_pcm_hw_params_get_channels_min"))?
        };
        hwp.set_channels(channels)
            .map_err(err("snd_pcm_hw_params_set_channels"))?;
        let rate = hwp
            .set_rate_near(rate_hz, ValueOr::Nearest)
            .map_err(err("snd_pcm_hw_params_set_rate_near"))?;
        if rate != rate_hz {
            tracing::warn!(
                device,
                clip_rate_hz = rate_hz,
                device_rate_hz = rate,
                "the device does not take the clip's rate: it plays at the wrong speed (use plughw: or default)"
            );
        }
        let period = i64::from((rate.saturating_mul(PERIOD_MS) / 1000).max(1));
        let period = hwp
            .set_period_size_near(period, ValueOr::Nearest)
            .map_err(err("snd_pcm_hw_params_set_period_size_near"))?;
        let min_buffer = hwp
            .get_buffer_size_min()
            .map_err(err("snd_pcm_hw_params_get_buffer_size_min"))?;
        let max_buffer = hwp
            .get_buffer_size_max()
            .map_err(err("snd_pcm_hw_params_get_buffer_size_max"))?;
        hwp.set_buffer_size_near(
            period
                .saturating_mul(4)
                .clamp(min_buffer, max_buffer.max(min_buffer)),
        )
        .map_err(err("snd_pcm_hw_params_set_buffer_size_near"))?;
        pcm.hw_params(&hwp).map_err(err("snd_pcm_hw_params"))?;
        drop(hwp);

        let hwp = pcm
            .hw_params_current()
            .map_err(err("snd_pcm_hw_params_current"))?;
        let channels = hwp
            .get_channels()
            .map_err(err("snd_pcm_hw_params_get_channels"))?;
        let channels = usize::try_from(channels)
            .ok()
            .filter(|c| (1..=64).contains(c))
            .ok_or_else(|| ActionError::Local {
                what: format!("snd_pcm_hw_params_get_channels on ALSA PCM {device:?}"),
                reason: format!("{channels} channels"),
            })?;
        let period_frames = hwp
            .get_period_size()
            .map_err(err("snd_pcm_hw_params_get_period_size"))?;
        let period_frames = usize::try_from(period_frames)
            .unwrap_or(0)
            .clamp(1, rate as usize);
        let buffer_frames = hwp
            .get_buffer_size()
            .map_err(err("snd_pcm_hw_params_get_buffer_size"))?;
        drop(hwp);
        // Start when the buffer is full (or at drain for a shorter clip), not at the first
        // period: no underrun while the writes get going.
        let swp = pcm
            .sw_params_current()
            .map_err(err("snd_pcm_sw_params_current"))?;
        swp.set_start_threshold(buffer_frames.max(1))
            .map_err(err("snd_pcm_sw_params_set_start_threshold"))?;
        pcm.sw_params(&swp).map_err(err("snd_pcm_sw_params"))?;
        Ok(Negotiated {
            format,
            channels,
            period_frames,
        })
    }

    /// Writes the clip `job.plays` times one period at a time, then drains. `Ok(false)`: stopped
    /// (the PCM is dropped: what the device still holds is discarded).
    fn write_clip<S: Sample>(
        pcm: &PCM,
        device: &str,
        job: &Job,
        n: &Negotiated,
        stopped: &dyn Fn() -> bool,
    ) -> Result<bool, ActionError> {
        let io = pcm
            .io_checked::<S>()
            .map_err(|e| alsa_error(device, "snd_pcm_io (sample format)", &e))?;
        let stop = || {
            let _ = pcm.drop();
            Ok(false)
        };
        let mut buf = vec![S::default(); n.period_frames * n.channels];
        for _ in 0..job.plays {
            for chunk in job.clip.samples.chunks(n.period_frames) {
                if stopped() {
                    return stop();
                }
                let len = chunk.len() * n.channels;
                for (frame, &x) in buf[..len].chunks_exact_mut(n.channels).zip(chunk) {
                    frame.fill(S::from_scaled(x, job.gain));
                }
                let mut done = 0;
                let mut waiting_since: Option<Instant> = None;
                while done < len {
                    match io.writei(&buf[done..len]) {
                        Ok(frames) if frames > 0 => {
                            waiting_since = None;
                            done += frames.saturating_mul(n.channels);
                        }
                        // The device buffer is full: wait for room (a period plays).
                        Ok(_) => wait_for_room(pcm, device, &mut waiting_since)?,
                        Err(e) if e.errno() == EAGAIN => {
                            wait_for_room(pcm, device, &mut waiting_since)?
                        }
                        Err(e) if e.errno() == EPIPE => {
                            tracing::debug!(device, "playback underrun");
                            pcm.prepare().map_err(|e| {
                                alsa_error(device, "snd_pcm_prepare (after an underrun)", &e)
                            })?;
                        }
                        Err(e) if e.errno() == ESTRPIPE => {
                            // Suspended: resume if it can, else start the stream again.
                            if pcm.resume().is_err() {
                                pcm.prepare().map_err(|e| {
                                    alsa_error(device, "snd_pcm_prepare (after a suspend)", &e)
                                })?;
                            }
                        }
                        Err(e) if e.errno() == EINTR => {}
                        Err(e) => return Err(alsa_error(device, "snd_pcm_writei", &e)),
                    }
                    if stopped() {
                        return stop();
                    }
                }
            }
        }
        if stopped() {
            return stop();
        }
        // Non-blocking drain: starts draining and returns EAGAIN while the device plays the
        // rest; poll until it is done (or stopped).
        let since = Instant::now();
        loop {
            match pcm.drain() {
                Ok(()) => return Ok(true),
                Err(e) if e.errno() == EAGAIN || e.errno() == EINTR => {}
                Err(e) => return Err(alsa_error(device, "snd_pcm_drain", &e)),
            }
            if !matches!(pcm.state(), PcmState::Draining | PcmState::Running) {
                return Ok(true);
            }
            if stopped() {
                return stop();
            }
            if since.elapsed() > STALL_TIMEOUT + Duration::from_secs(10) {
                return Err(ActionError::Local {
                    what: format!("snd_pcm_drain on ALSA PCM {device:?}"),
                    reason: "the device does not finish playing (stalled)".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(u64::from(PERIOD_MS / 2)));
        }
    }

    /// Waits (up to two periods) until the device has room; fails once it has had none for
    /// [`STALL_TIMEOUT`].
    fn wait_for_room(
        pcm: &PCM,
        device: &str,
        waiting_since: &mut Option<Instant>,
    ) -> Result<(), ActionError> {
        let since = *waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL_TIMEOUT {
            return Err(ActionError::Local {
                what: format!("snd_pcm_writei on ALSA PCM {device:?}"),
                reason: format!(
                    "the device took no frames for {} s (stalled)",
                    STALL_TIMEOUT.as_secs()
                ),
            });
        }
        match pcm.wait(Some(PERIOD_MS * 2)) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == EINTR => Ok(()),
            // An xrun or suspend shows at the next write, which recovers from it.
            Err(e) if e.errno() == EPIPE || e.errno() == ESTRPIPE => Ok(()),
            Err(e) => Err(alsa_error(device, "snd_pcm_wait", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_the_device_or_says_alsa_is_missing() {
        let config = PlaybackConfig {
            device: "plughw:1".into(),
            ..PlaybackConfig::default()
        };
        match (cfg!(feature = "alsa"), PlaybackBackend::new(&config)) {
            (true, Ok(b)) => {
                assert_eq!(b.name(), "playback:plughw:1");
                assert_eq!(b.kinds(), [CommandKind::Clip]);
            }
            (false, Err(e)) => {
                assert!(matches!(e, ActionError::Unsupported { .. }), "{e:?}");
                assert!(e.to_string().contains("built without ALSA"), "{e}");
            }
            (alsa, r) => panic!("alsa feature {alsa}: {:?}", r.map(|b| b.name())),
        }
    }

    #[test]
    fn unsupported_commands_and_unknown_clips() {
        let Ok(mut b) = PlaybackBackend::new(&PlaybackConfig::default()) else {
            return;
        };
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
        assert!(matches!(e, ActionError::Unsupported { .. }), "{e:?}");
        let e = b
            .execute(
                "r",
                &Command::Clip {
                    clip: "nope".into(),
                    volume: None,
                    repeat: 0,
                },
            )
            .unwrap_err();
        assert!(matches!(e, ActionError::Unknown { .. }), "{e:?}");
        b.close();
    }
}
