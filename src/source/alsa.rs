//! `alsa:DEVICE`: an ALSA capture PCM, through libasound (`alsa:default`, `alsa:hw:1,0`,
//! `alsa:pipewire`, or any PCM an `asoundrc` defines).
//!
//! # Negotiation
//!
//! [`AlsaSource::open`] (main thread) opens the PCM for capture in blocking mode and asks for:
//!
//! | parameter | asked for | read back and used |
//! |---|---|---|
//! | access | `RW_INTERLEAVED` | required |
//! | format | `S16_LE`, else `S32_LE` (scaled by 2⁻³¹), else `FLOAT_LE` (native-endian) | the first the device accepts |
//! | channels | 1 if accepted, else the device's minimum | the writer averages them to mono |
//! | rate | 48 000 Hz, nearest | whatever the device sets ([`SourceInfo::sample_rate_hz`]) |
//! | period | 10 ms of frames, nearest | one `readi` per period |
//! | buffer | 8 periods, nearest (at least 8 periods when the device allows) | absorbs a late capture thread |
//!
//! Software parameters: `avail_min` = one period; the stream starts at the first read. The
//! negotiated values are logged once at info level. Every buffer is allocated here, so the
//! capture thread ([`Source::run`]) never allocates, locks or logs.
//!
//! # Capture
//!
//! [`Source::run`] reads one period at a time and writes it through the
//! [`CaptureWriter`], checking [`CaptureWriter::stop_requested`] every period:
//! - an overrun (`EPIPE`: the device buffer filled because the thread was late) is counted
//!   in [`CaptureCounters::xruns`](super::CaptureCounters::xruns), the PCM is prepared again
//!   and capture continues (the lost audio is a gap in the stream);
//! - a suspended device (`ESTRPIPE`) is resumed (retrying while it says `EAGAIN`, for up to
//!   [`RESUME_TIMEOUT`]), or prepared again if it cannot resume;
//! - `EINTR`/`EAGAIN` are retried; any other error ends the run with
//!   [`SourceError::Alsa`] naming the device and the call (a device that was unplugged
//!   gives `ENODEV`);
//! - a read that returns no frames waits for the device (up to two periods) and reads again;
//!   a device that gives no frames for [`STALL_TIMEOUT`] of consecutive empty reads is
//!   reported as stalled ([`SourceError::Alsa`]).
//!
//! The period buffer is zeroed before every read, so a plugin that reports frames without
//! writing them (the `null` PCM; the `file` plugin past the end of its `infile`) gives
//! silence, not the previous period again.
//!
//! # Capturing from a file (tests, no sound card)
//!
//! alsa-lib's `file` plugin reads capture data from `infile` (raw frames in the negotiated
//! format, rate and channels) on top of a slave PCM that provides the timing:
//!
//! ```text
//! pcm.earshot_test {
//!     type file
//!     slave.pcm "null"
//!     file "/dev/null"          # what would be written on playback
//!     infile "/tmp/clip.raw"    # e.g. sox clip.wav -t raw -e signed -b 16 -c 1 -r 48000 clip.raw
//!     format "raw"
//! }
//! ```
//!
//! Put it in `~/.asoundrc` (or point `HOME` at a directory holding one) and run
//! `earshot run --input alsa:earshot_test`. What alsa-lib 1.2.8 does with it (checked
//! with `arecord` and this source):
//! - the `null` slave does not pace: every read returns a full period at once, so a regular
//!   `infile` is read far faster than real time, and a live source drops what the ring cannot
//!   hold (counted as overruns). A FIFO as `infile`, written at real time, paces it like a
//!   microphone (what `tests/run_alsa.rs` does; write whole periods, since a short read is
//!   padded, not waited for);
//! - at the end of `infile` the plugin keeps returning full periods without writing them:
//!   the end is invisible to the application, and this source delivers silence until it is
//!   stopped.
//!
//! # PipeWire
//!
//! Until PipeWire capture is built in (`pipewire:NODE`), capture from PipeWire through its
//! ALSA plugin (package `pipewire-alsa`): `alsa:pipewire` (or `alsa:default` where the
//! plugin is the default PCM). It converts to what is asked, so it negotiates S16_LE, mono,
//! 48 kHz.

use std::ffi::CString;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, IoFormat, PCM};
use alsa::{Direction, ValueOr};

use super::{CaptureWriter, Source, SourceError, SourceInfo};

/// The sample rate asked for, Hz.
pub const PREFERRED_RATE_HZ: u32 = 48_000;

/// The period asked for, ms (the capture thread wakes once a period).
pub const PERIOD_MS: u32 = 10;

/// Periods in the device buffer asked for (at least).
pub const BUFFER_PERIODS: i64 = 8;

/// How long a suspended device is given to resume before it is prepared again.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a device may return no frames before it is reported as stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Linux errno values ALSA returns (the crate forbids `unsafe`, so no `libc` here).
const EINTR: i32 = 4;
const EAGAIN: i32 = 11;
const EPIPE: i32 = 32;
const ESTRPIPE: i32 = 86;

/// The sample format negotiated with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// Signed 16-bit, native (little) endian: `S16_LE`.
    S16,
    /// Signed 32-bit, native (little) endian: `S32_LE`, scaled to ±1 by 2⁻³¹.
    S32,
    /// 32-bit float, native (little) endian: `FLOAT_LE`, full scale ±1.
    F32,
}

impl SampleFormat {
    /// In order of preference.
    const PREFERRED: [SampleFormat; 3] = [SampleFormat::S16, SampleFormat::S32, SampleFormat::F32];

    fn alsa(self) -> Format {
        match self {
            SampleFormat::S16 => <i16 as IoFormat>::FORMAT,
            SampleFormat::S32 => <i32 as IoFormat>::FORMAT,
            SampleFormat::F32 => <f32 as IoFormat>::FORMAT,
        }
    }

    /// The ALSA name (`S16_LE`).
    pub fn name(self) -> String {
        self.alsa().to_string()
    }
}

/// What was negotiated with the device (read back after `snd_pcm_hw_params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Sample format.
    pub format: SampleFormat,
    /// Interleaved channels.
    pub channels: u16,
    /// Sample rate, Hz.
    pub rate_hz: u32,
    /// Frames per period (one read).
    pub period_frames: usize,
    /// Frames in the device buffer.
    pub buffer_frames: usize,
}

/// An ALSA capture source: the open PCM and its period buffers.
pub struct AlsaSource {
    info: SourceInfo,
    device: String,
    pcm: PCM,
    negotiated: Negotiated,
    /// One period of `S16` frames (empty for the other formats).
    buf_i16: Box<[i16]>,
    /// One period of `S32` frames (empty for the other formats).
    buf_i32: Box<[i32]>,
    /// One period of `F32` frames, or of `S32` frames converted to f32.
    buf_f32: Box<[f32]>,
}

/// A [`SourceError::Alsa`] for `device`, `what` failing with `e`.
fn alsa_error(device: &str, what: &str, e: &alsa::Error) -> SourceError {
    SourceError::Alsa {
        device: device.to_owned(),
        what: what.to_owned(),
        message: std::io::Error::from_raw_os_error(e.errno()).to_string(),
    }
}

impl AlsaSource {
    /// Opens `device` (an ALSA PCM name, e.g. `default`, `hw:1,0`, `pipewire`) for capture and
    /// negotiates the parameters of the module docs; `spec` is the input as given, for
    /// [`SourceInfo::description`]. Allocates the period buffers; logs what was negotiated.
    ///
    /// # Errors
    /// [`SourceError::Alsa`] naming the device and the call that failed: the device does not
    /// exist or is busy (`snd_pcm_open`), refuses interleaved access, all of S16_LE, S32_LE
    /// and FLOAT_LE, or the parameters (`snd_pcm_hw_params`, `snd_pcm_sw_params`).
    pub fn open(spec: &str, device: &str) -> Result<Self, SourceError> {
        let name = CString::new(device).map_err(|_| SourceError::Alsa {
            device: device.to_owned(),
            what: "device name".into(),
            message: "contains a NUL byte".into(),
        })?;
        let err = |what: &str| {
            let device = device.to_owned();
            let what = what.to_owned();
            move |e: alsa::Error| alsa_error(&device, &what, &e)
        };
        let pcm =
            PCM::open(&name, Direction::Capture, false).map_err(err("snd_pcm_open (capture)"))?;
        let negotiated = negotiate(&pcm, device)?;
        let Negotiated {
            format,
            channels,
            rate_hz,
            period_frames,
            buffer_frames,
        } = negotiated.clone();
        let samples = period_frames * channels as usize;
        let (buf_i16, buf_i32, buf_f32) = match format {
            SampleFormat::S16 => (vec![0i16; samples], Vec::new(), Vec::new()),
            SampleFormat::S32 => (Vec::new(), vec![0i32; samples], vec![0f32; samples]),
            SampleFormat::F32 => (Vec::new(), Vec::new(), vec![0f32; samples]),
        };
        tracing::info!(
            device,
            format = %format.name(),
            channels,
            rate_hz,
            period_frames,
            period_ms = format_args!("{:.2}", period_frames as f64 * 1000.0 / rate_hz as f64),
            buffer_frames,
            buffer_ms = format_args!("{:.1}", buffer_frames as f64 * 1000.0 / rate_hz as f64),
            "ALSA capture negotiated"
        );
        Ok(Self {
            info: SourceInfo {
                sample_rate_hz: rate_hz,
                channels,
                live: true,
                description: spec.to_owned(),
            },
            device: device.to_owned(),
            pcm,
            negotiated,
            buf_i16: buf_i16.into_boxed_slice(),
            buf_i32: buf_i32.into_boxed_slice(),
            buf_f32: buf_f32.into_boxed_slice(),
        })
    }

    /// What was negotiated with the device.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
}

/// Sets the hardware and software parameters of the module docs on `pcm` and reads them back.
fn negotiate(pcm: &PCM, device: &str) -> Result<Negotiated, SourceError> {
    let err = |what: &'static str| move |e: alsa::Error| alsa_error(device, what, &e);
    let other = |what: &str, message: String| SourceError::Alsa {
        device: device.to_owned(),
        what: what.to_owned(),
        message,
    };
    {
        let hwp = HwParams::any(pcm).map_err(err("snd_pcm_hw_params_any"))?;
        hwp.set_access(Access::RWInterleaved)
            .map_err(err("snd_pcm_hw_params_set_access (RW_INTERLEAVED)"))?;
        let format = SampleFormat::PREFERRED
            .into_iter()
            .find(|f| hwp.test_format(f.alsa()).is_ok())
            .ok_or_else(|| {
                other(
                    "snd_pcm_hw_params_set_format",
                    "the device accepts none of S16_LE, S32_LE, FLOAT_LE".into(),
                )
            })?;
        hwp.set_format(format.alsa())
            .map_err(err("snd_pcm_hw_params_set_format"))?;
        if hwp.test_channels(1).is_ok() {
            hwp.set_channels(1)
                .map_err(err("snd_pcm_hw_params_set_channels (1)"))?;
        } else {
            let min = hwp
                .get_channels_min()
                .map_err(err("snd_pcm_hw_params_get_channels_min"))?;
            hwp.set_channels(min)
                .map_err(err("snd_pcm_hw_params_set_channels (minimum)"))?;
        }
        let rate = hwp
            .set_rate_near(PREFERRED_RATE_HZ, ValueOr::Nearest)
            .map_err(err("snd_pcm_hw_params_set_rate_near"))?;
        let period = i64::from((rate * PERIOD_MS / 1000).max(1));
        let period = hwp
            .set_period_size_near(period, ValueOr::Nearest)
            .map_err(err("snd_pcm_hw_params_set_period_size_near"))?;
        let want_buffer = period.saturating_mul(BUFFER_PERIODS);
        let min_buffer = hwp
            .get_buffer_size_min()
            .map_err(err("snd_pcm_hw_params_get_buffer_size_min"))?;
        let max_buffer = hwp
            .get_buffer_size_max()
            .map_err(err("snd_pcm_hw_params_get_buffer_size_max"))?;
        hwp.set_buffer_size_near(want_buffer.clamp(min_buffer, max_buffer.max(min_buffer)))
            .map_err(err("snd_pcm_hw_params_set_buffer_size_near"))?;
        pcm.hw_params(&hwp).map_err(err("snd_pcm_hw_params"))?;
    }
    let hwp = pcm
        .hw_params_current()
        .map_err(err("snd_pcm_hw_params_current"))?;
    let alsa_format = hwp
        .get_format()
        .map_err(err("snd_pcm_hw_params_get_format"))?;
    let format = SampleFormat::PREFERRED
        .into_iter()
        .find(|f| f.alsa() == alsa_format)
        .ok_or_else(|| {
            other(
                "snd_pcm_hw_params_get_format",
                format!("the device set {alsa_format}, not one asked for"),
            )
        })?;
    let channels = hwp
        .get_channels()
        .map_err(err("snd_pcm_hw_params_get_channels"))?;
    let channels = u16::try_from(channels)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or_else(|| {
            other(
                "snd_pcm_hw_params_get_channels",
                format!("{channels} channels"),
            )
        })?;
    let rate_hz = hwp.get_rate().map_err(err("snd_pcm_hw_params_get_rate"))?;
    if rate_hz == 0 {
        return Err(other("snd_pcm_hw_params_get_rate", "rate 0 Hz".into()));
    }
    let period_frames = hwp
        .get_period_size()
        .map_err(err("snd_pcm_hw_params_get_period_size"))?;
    let buffer_frames = hwp
        .get_buffer_size()
        .map_err(err("snd_pcm_hw_params_get_buffer_size"))?;
    // More than 10 s in one read would be a broken device, not a choice.
    let max_period = i64::from(rate_hz) * 10;
    let period_frames = usize::try_from(period_frames)
        .ok()
        .filter(|&p| p >= 1 && (p as i64) <= max_period)
        .ok_or_else(|| {
            other(
                "snd_pcm_hw_params_get_period_size",
                format!("period of {period_frames} frames"),
            )
        })?;
    let buffer_frames = usize::try_from(buffer_frames).unwrap_or(0);
    drop(hwp);

    let swp = pcm
        .sw_params_current()
        .map_err(err("snd_pcm_sw_params_current"))?;
    swp.set_avail_min(period_frames as i64)
        .map_err(err("snd_pcm_sw_params_set_avail_min"))?;
    pcm.sw_params(&swp).map_err(err("snd_pcm_sw_params"))?;
    Ok(Negotiated {
        format,
        channels,
        rate_hz,
        period_frames,
        buffer_frames,
    })
}

impl Source for AlsaSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn run(&mut self, out: &mut CaptureWriter) -> Result<(), SourceError> {
        let channels = self.info.channels as usize;
        let period = Duration::from_micros(
            self.negotiated.period_frames as u64 * 1_000_000 / self.info.sample_rate_hz as u64,
        );
        let Self {
            device,
            pcm,
            negotiated,
            buf_i16,
            buf_i32,
            buf_f32,
            ..
        } = self;
        let pcm = &*pcm;
        match negotiated.format {
            SampleFormat::S16 => capture(pcm, device, period, channels, buf_i16, out, |b, out| {
                out.write_i16(b, channels)
            }),
            SampleFormat::F32 => capture(pcm, device, period, channels, buf_f32, out, |b, out| {
                out.write_f32(b, channels)
            }),
            SampleFormat::S32 => capture(pcm, device, period, channels, buf_i32, out, |b, out| {
                let f = &mut buf_f32[..b.len()];
                for (y, &x) in f.iter_mut().zip(b) {
                    *y = x as f32 * (1.0 / 2_147_483_648.0);
                }
                out.write_f32(f, channels)
            }),
        }
    }
}

/// The capture loop of [`Source::run`] for one sample type: reads a period into `buf`, hands
/// the frames read to `deliver` (false: stop), recovers from xruns and suspends. `buf` holds
/// one period of `channels` interleaved channels.
fn capture<S: IoFormat + Default>(
    pcm: &PCM,
    device: &str,
    period: Duration,
    channels: usize,
    buf: &mut [S],
    out: &mut CaptureWriter,
    mut deliver: impl FnMut(&[S], &mut CaptureWriter) -> bool,
) -> Result<(), SourceError> {
    let io = pcm
        .io_checked::<S>()
        .map_err(|e| alsa_error(device, "snd_pcm_io (sample format)", &e))?;
    let wait_ms = (period.as_millis() as u32).saturating_mul(2).max(1);
    let mut empty_since: Option<Instant> = None;
    loop {
        if out.stop_requested() {
            return Ok(());
        }
        buf.fill(S::default());
        match io.readi(buf) {
            Ok(0) => {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STALL_TIMEOUT {
                    return Err(SourceError::Alsa {
                        device: device.to_owned(),
                        what: "snd_pcm_readi".into(),
                        message: format!(
                            "no frames for {:.1} s (device stalled)",
                            since.elapsed().as_secs_f64()
                        ),
                    });
                }
                match pcm.wait(Some(wait_ms)) {
                    Ok(_) => {}
                    Err(e) if e.errno() == EINTR => {}
                    Err(e) => return Err(alsa_error(device, "snd_pcm_wait", &e)),
                }
            }
            Ok(frames) => {
                empty_since = None;
                let n = frames.saturating_mul(channels).min(buf.len());
                if !deliver(&buf[..n], out) {
                    return Ok(());
                }
            }
            Err(e) if e.errno() == EPIPE => {
                out.counters()
                    .xruns
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pcm.prepare()
                    .map_err(|e| alsa_error(device, "snd_pcm_prepare (after an overrun)", &e))?;
            }
            Err(e) if e.errno() == ESTRPIPE => resume(pcm, device, out)?,
            Err(e) if e.errno() == EINTR || e.errno() == EAGAIN => {}
            Err(e) => return Err(alsa_error(device, "snd_pcm_readi", &e)),
        }
    }
}

/// Resumes a suspended PCM (retrying while it is not ready, up to [`RESUME_TIMEOUT`]), or
/// prepares it again when it cannot resume.
fn resume(pcm: &PCM, device: &str, out: &CaptureWriter) -> Result<(), SourceError> {
    let start = Instant::now();
    loop {
        match pcm.resume() {
            Ok(()) => return Ok(()),
            Err(e) if e.errno() == EAGAIN && start.elapsed() < RESUME_TIMEOUT => {
                if out.stop_requested() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Not resumable (or not in time): start the stream again.
            Err(_) => {
                return pcm
                    .prepare()
                    .map_err(|e| alsa_error(device, "snd_pcm_prepare (after a suspend)", &e))
            }
        }
    }
}
