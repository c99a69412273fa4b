//! Audio sources of `earshot run`, behind one trait, and the capture side of the SPSC ring.
//!
//! A [`Source`] is opened on the main thread ([`open`]) and then [`Source::run`] on its own
//! capture thread, where it only copies frames into the ring through a [`CaptureWriter`]:
//! channels are averaged to mono in a buffer allocated up front, then `push_slice` into a
//! `ringbuf` SPSC ring ([`ring`]). The writer never allocates, locks or logs; everything it
//! has to say goes into lock-free counters ([`CaptureCounters`]) that the analysis thread
//! reports in the `health` event.
//!
//! What happens when the ring is full depends on the source ([`SourceInfo::live`]):
//! - **live** sources (`alsa:`, `pipewire:`, `wav:` with `--realtime`) never wait: the frames
//!   that do not fit are dropped and counted as an overrun;
//! - **paced-by-consumer** sources (`wav:` without `--realtime`, `stdin:`) wait for room, so a
//!   file or a pipe is analysed completely at whatever speed the analysis runs. For `stdin:`
//!   the pipe's writer is slowed down, as pipes do.
//!
//! | module | source |
//! |---|---|
//! | [`file`] | `wav:PATH`: any file `analyze` reads, optionally paced at real time |
//! | [`stdin`] | `stdin:FORMAT@RATE[/CHANNELS]`: raw `s16le` or `f32le` PCM on standard input |
//! | `alsa` | `alsa:DEVICE`: an ALSA capture PCM (libasound) |
//! | `pipewire` | `pipewire:NODE`: a PipeWire capture stream on a node (libpipewire-0.3) |

#[cfg(feature = "alsa")]
pub mod alsa;
pub mod file;
#[cfg(feature = "pipewire")]
pub mod pipewire;
pub mod stdin;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringbuf::traits::{Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// Raw PCM sample formats of `stdin:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    /// Signed 16-bit little-endian.
    S16Le,
    /// 32-bit float little-endian, full scale ±1.
    F32Le,
}

/// A parsed `--input` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// `wav:PATH` (also `file:PATH`): an audio file.
    File(PathBuf),
    /// `stdin:FORMAT@RATE[/CHANNELS]`.
    Stdin {
        /// Sample format.
        format: PcmFormat,
        /// Sample rate, Hz (8 000 to 192 000).
        rate_hz: u32,
        /// Interleaved channels (1 to 32).
        channels: u16,
    },
    /// `alsa:DEVICE` (e.g. `alsa:default`, `alsa:hw:1,0`).
    Alsa(String),
    /// `pipewire:NODE`: a PipeWire node by name (`node.name`, e.g. `AudioDevice0Input0` on
    /// devices); `pipewire:default` is the session manager's default source.
    PipeWire(String),
}

/// Why a source could not be opened or stopped reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The `--input` value is malformed.
    #[error("input '{spec}': {expected}")]
    BadSpec {
        /// The value as given.
        spec: String,
        /// What is expected.
        expected: String,
    },
    /// The input kind exists but is not in this build.
    #[error("input '{spec}': {why}")]
    Unsupported {
        /// The value as given.
        spec: String,
        /// Why and where it is available.
        why: String,
    },
    /// Opening or reading the file failed.
    #[error(transparent)]
    File(#[from] crate::audio_file::AudioFileError),
    /// Reading standard input failed.
    #[error("reading stdin: {0}")]
    Stdin(std::io::Error),
    /// ALSA refused or failed (names the device and the call).
    #[error("ALSA device '{device}': {what}: {message}")]
    Alsa {
        /// The device name.
        device: String,
        /// The call or step that failed.
        what: String,
        /// ALSA's message.
        message: String,
    },
    /// PipeWire refused or failed (names the node, `default` for the default source, and the
    /// step: connecting to the daemon, looking up the node, negotiating, capturing).
    #[error("PipeWire node '{node}': {what}: {message}")]
    PipeWire {
        /// The node name as given.
        node: String,
        /// The call or step that failed.
        what: String,
        /// What PipeWire (or the source) said.
        message: String,
    },
}

impl InputSpec {
    /// Parses `wav:PATH`, `file:PATH`, `stdin:s16le@48000[/2]`, `alsa:DEVICE`,
    /// `pipewire:NODE` (`pipewire:default` for the default source).
    ///
    /// # Errors
    /// [`SourceError::BadSpec`] naming the value and the accepted forms.
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        let bad = |expected: &str| SourceError::BadSpec {
            spec: spec.to_owned(),
            expected: expected.to_owned(),
        };
        let (kind, rest) = spec.split_once(':').ok_or_else(|| {
            bad("expected wav:PATH, stdin:FORMAT@RATE[/CHANNELS], alsa:DEVICE or pipewire:NODE")
        })?;
        match kind {
            "wav" | "file" if !rest.is_empty() => Ok(InputSpec::File(PathBuf::from(rest))),
            "wav" | "file" => Err(bad("expected a file path after 'wav:'")),
            "alsa" if !rest.is_empty() => Ok(InputSpec::Alsa(rest.to_owned())),
            "alsa" => Err(bad(
                "expected an ALSA device after 'alsa:' (e.g. alsa:default)",
            )),
            "pipewire" if !rest.is_empty() => Ok(InputSpec::PipeWire(rest.to_owned())),
            "pipewire" => Err(bad(
                "expected a node name after 'pipewire:' (e.g. pipewire:AudioDevice0Input0, or \
                 pipewire:default for the default source)",
            )),
            "stdin" => {
                let form = "expected stdin:FORMAT@RATE[/CHANNELS] with FORMAT s16le or f32le, \
                            RATE 8000 to 192000 Hz, CHANNELS 1 to 32 (e.g. stdin:s16le@48000/2)";
                let (format, rest) = rest.split_once('@').ok_or_else(|| bad(form))?;
                let format = match format {
                    "s16le" => PcmFormat::S16Le,
                    "f32le" => PcmFormat::F32Le,
                    _ => return Err(bad(form)),
                };
                let (rate, channels) = match rest.split_once('/') {
                    Some((r, c)) => (r, c),
                    None => (rest, "1"),
                };
                let rate_hz: u32 = rate
                    .parse()
                    .ok()
                    .filter(|r| (8_000..=192_000).contains(r))
                    .ok_or_else(|| bad(form))?;
                let channels: u16 = channels
                    .parse()
                    .ok()
                    .filter(|c| (1..=32).contains(c))
                    .ok_or_else(|| bad(form))?;
                Ok(InputSpec::Stdin {
                    format,
                    rate_hz,
                    channels,
                })
            }
            _ => Err(bad(
                "expected wav:PATH, stdin:FORMAT@RATE[/CHANNELS], alsa:DEVICE or pipewire:NODE",
            )),
        }
    }
}

/// What a source delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Sample rate, Hz.
    pub sample_rate_hz: u32,
    /// Interleaved channels the source reads (the ring carries their average).
    pub channels: u16,
    /// Live (drop on overrun) or paced by the consumer (wait for room); see the module docs.
    pub live: bool,
    /// The input as given (`alsa:default`).
    pub description: String,
}

/// An audio source. Opened on the main thread, then run on the capture thread.
pub trait Source: Send {
    /// What it delivers.
    fn info(&self) -> &SourceInfo;

    /// Reads until the input ends (`Ok`), fails (`Err`), or [`CaptureWriter::stop_requested`]
    /// is true, writing every frame through `out`. Must not allocate, lock or log per frame.
    ///
    /// # Errors
    /// A read failure the source cannot recover from (a device that disappeared, a broken
    /// file); recoverable ones (ALSA xruns) are counted in [`CaptureCounters::xruns`].
    fn run(&mut self, out: &mut CaptureWriter) -> Result<(), SourceError>;
}

/// Opens the source for `spec`. `realtime` paces file sources at real time (they become live).
///
/// # Errors
/// [`SourceError`] naming the input.
pub fn open(spec: &str, realtime: bool) -> Result<Box<dyn Source>, SourceError> {
    match InputSpec::parse(spec)? {
        InputSpec::File(path) => Ok(Box::new(file::FileSource::open(spec, &path, realtime)?)),
        InputSpec::Stdin {
            format,
            rate_hz,
            channels,
        } => Ok(Box::new(stdin::StdinSource::new(
            spec, format, rate_hz, channels,
        ))),
        #[cfg(feature = "alsa")]
        InputSpec::Alsa(device) => Ok(Box::new(alsa::AlsaSource::open(spec, &device)?)),
        #[cfg(not(feature = "alsa"))]
        InputSpec::Alsa(_) => Err(SourceError::Unsupported {
            spec: spec.to_owned(),
            why: "this build has no ALSA support (built without the `alsa` feature, as the ACAP \
                  package is); use pipewire:NODE on a device, or a build with `--features alsa`"
                .to_owned(),
        }),
        #[cfg(feature = "pipewire")]
        InputSpec::PipeWire(node) => Ok(Box::new(pipewire::PipeWireSource::open(spec, &node)?)),
        #[cfg(not(feature = "pipewire"))]
        InputSpec::PipeWire(_) => Err(SourceError::Unsupported {
            spec: spec.to_owned(),
            why: "this build has no PipeWire support (built without the `pipewire` feature, as \
                  the ACAP package is for now); use a build with `--features pipewire`, or \
                  alsa:pipewire through PipeWire's ALSA plugin"
                .to_owned(),
        }),
    }
}

/// Lock-free counters of the capture side.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Frames written into the ring.
    pub frames_in: AtomicU64,
    /// Times the ring was full on a live source.
    pub overruns: AtomicU64,
    /// Frames dropped by those overruns.
    pub overrun_frames: AtomicU64,
    /// Device-buffer overruns the source recovered from.
    pub xruns: AtomicU64,
    /// Wall-clock time of the first frame written, ns since the Unix epoch (0 until then).
    pub first_frame_unix_ns: AtomicU64,
    /// Set when the source has finished (end of input, error or stop).
    pub ended: AtomicBool,
}

impl CaptureCounters {
    /// Wall-clock time of the first frame, if one was written.
    pub fn first_frame_time(&self) -> Option<SystemTime> {
        match self.first_frame_unix_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(UNIX_EPOCH + Duration::from_nanos(ns)),
        }
    }
}

/// Frames averaged per step of [`CaptureWriter`] (the mono buffer's size).
const MIX_FRAMES: usize = 4096;

/// The capture thread's end of the ring: downmixes interleaved frames to mono into a buffer
/// allocated at construction and pushes them, waiting or dropping by the source's kind.
pub struct CaptureWriter {
    prod: HeapProd<f32>,
    mono: Box<[f32]>,
    counters: Arc<CaptureCounters>,
    stop: Arc<AtomicBool>,
    live: bool,
}

/// Creates the ring of `frames` mono samples (allocated once, here) and its two ends.
pub fn ring(
    frames: usize,
    live: bool,
    counters: Arc<CaptureCounters>,
    stop: Arc<AtomicBool>,
) -> (CaptureWriter, HeapCons<f32>) {
    let (prod, cons) = HeapRb::<f32>::new(frames.max(MIX_FRAMES)).split();
    (
        CaptureWriter {
            prod,
            mono: vec![0.0; MIX_FRAMES].into_boxed_slice(),
            counters,
            stop,
            live,
        },
        cons,
    )
}

impl CaptureWriter {
    /// True once the run is stopping: the source should return.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The counters (for sources to count xruns).
    pub fn counters(&self) -> &CaptureCounters {
        &self.counters
    }

    /// Writes interleaved f32 frames of `channels` channels. Returns false when the run is
    /// stopping (the rest was not written).
    pub fn write_f32(&mut self, interleaved: &[f32], channels: usize) -> bool {
        self.write_with(interleaved.len(), channels, |i| interleaved[i])
    }

    /// Writes interleaved i16 frames, scaled to ±1 full scale (÷ 32 768).
    pub fn write_i16(&mut self, interleaved: &[i16], channels: usize) -> bool {
        self.write_with(interleaved.len(), channels, |i| {
            interleaved[i] as f32 / 32_768.0
        })
    }

    /// Writes planar f32 frames: `planes[c][f]` is channel `c` of frame `f`, full scale ±1
    /// (PipeWire's `F32P` buffers: one plane per channel). The frames written are the
    /// shortest plane's; no planes write nothing. Returns false when the run is stopping.
    /// Allocates nothing (like [`write_f32`](Self::write_f32)).
    pub fn write_planar(&mut self, planes: &[&[f32]]) -> bool {
        let channels = planes.len();
        let Some(frames) = planes.iter().map(|p| p.len()).min() else {
            return true;
        };
        self.write_with(frames * channels, channels, |i| {
            planes[i % channels][i / channels]
        })
    }

    fn write_with(&mut self, len: usize, channels: usize, sample: impl Fn(usize) -> f32) -> bool {
        let channels = channels.max(1);
        let frames = len / channels;
        if frames > 0 && self.counters.first_frame_unix_ns.load(Ordering::Relaxed) == 0 {
            let ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos().max(1) as u64);
            self.counters
                .first_frame_unix_ns
                .store(ns, Ordering::Release);
        }
        let scale = 1.0 / channels as f32;
        let mut done = 0;
        while done < frames {
            let n = (frames - done).min(self.mono.len());
            for (f, m) in self.mono[..n].iter_mut().enumerate() {
                let base = (done + f) * channels;
                let mut acc = 0.0;
                for c in 0..channels {
                    acc += sample(base + c);
                }
                *m = acc * scale;
            }
            if !self.push(n) {
                return false;
            }
            done += n;
        }
        true
    }

    /// Pushes `self.mono[..n]`.
    fn push(&mut self, n: usize) -> bool {
        let mut off = 0;
        loop {
            off += self.prod.push_slice(&self.mono[off..n]);
            if off == n {
                self.counters
                    .frames_in
                    .fetch_add(n as u64, Ordering::Relaxed);
                return true;
            }
            if self.live {
                self.counters.overruns.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .overrun_frames
                    .fetch_add((n - off) as u64, Ordering::Relaxed);
                self.counters
                    .frames_in
                    .fetch_add(off as u64, Ordering::Relaxed);
                return true;
            }
            if self.stop_requested() {
                return false;
            }
            // Paced by the consumer: wait for room (a file or a pipe, not a device).
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Frames the ring can take now.
    pub fn vacant(&self) -> usize {
        self.prod.vacant_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::traits::Consumer;

    fn writer(frames: usize) -> (CaptureWriter, HeapCons<f32>, Arc<CaptureCounters>) {
        let counters = Arc::new(CaptureCounters::default());
        let (w, c) = ring(
            frames,
            true,
            Arc::clone(&counters),
            Arc::new(AtomicBool::new(false)),
        );
        (w, c, counters)
    }

    #[test]
    fn write_planar_averages_the_planes_like_interleaved_frames() {
        let left: Vec<f32> = (0..10_000).map(|i| (i % 17) as f32 / 17.0).collect();
        let right: Vec<f32> = (0..10_000).map(|i| -((i % 5) as f32) / 5.0).collect();
        let interleaved: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();

        let (mut w, mut planar, counters) = writer(1 << 15);
        assert!(w.write_planar(&[&left, &right]));
        let (mut w2, mut inter, _) = writer(1 << 15);
        assert!(w2.write_f32(&interleaved, 2));

        // More than one mixing step (MIX_FRAMES), same samples as the interleaved path.
        assert!(left.len() > MIX_FRAMES);
        let a: Vec<f32> = planar.pop_iter().collect();
        let b: Vec<f32> = inter.pop_iter().collect();
        assert_eq!(a.len(), left.len());
        assert_eq!(a, b);
        assert_eq!(a[3], (left[3] + right[3]) / 2.0);
        assert_eq!(
            counters.frames_in.load(Ordering::Relaxed),
            left.len() as u64
        );
        assert!(counters.first_frame_time().is_some());
    }

    #[test]
    fn write_planar_takes_the_shortest_plane_and_accepts_none() {
        let (mut w, mut c, counters) = writer(1024);
        assert!(w.write_planar(&[]));
        assert!(w.write_planar(&[&[1.0, 1.0, 1.0], &[0.0, 0.5]]));
        let got: Vec<f32> = c.pop_iter().collect();
        assert_eq!(got, vec![0.5, 0.75]);
        assert_eq!(counters.frames_in.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn pipewire_default_and_named_nodes_parse() {
        assert_eq!(
            InputSpec::parse("pipewire:AudioDevice0Input0").unwrap(),
            InputSpec::PipeWire("AudioDevice0Input0".into())
        );
        assert_eq!(
            InputSpec::parse("pipewire:default").unwrap(),
            InputSpec::PipeWire("default".into())
        );
        let e = InputSpec::parse("pipewire:").unwrap_err().to_string();
        assert!(
            e.contains("node name") && e.contains("pipewire:default"),
            "{e}"
        );
    }
}
