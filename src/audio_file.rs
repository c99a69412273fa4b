//! Streaming audio-file reader: turns a WAV, FLAC, Ogg Vorbis or MP3 file into mono `f32`
//! samples in `[-1.0, 1.0]` at the file's own sample rate.
//!
//! [`AudioFileReader`] decodes one container packet at a time (a few thousand samples), so a
//! 60-minute file is never held in memory. Demuxing and decoding is done by `symphonia` 0.6; this
//! module adds
//!
//! * validation of WAV headers *before* symphonia sees them (sample rate, channel count, codec,
//!   truncated chunks), so that bad input yields an [`AudioFileError`] that names the file, the
//!   problem and what was expected, instead of a cryptic message or a panic inside the decoder;
//! * recovery of truncated files: every complete sample that is in the file is delivered and
//!   [`AudioFileReader::was_truncated`] reports the cut;
//! * downmixing to mono by averaging the channels, with integer PCM scaled the usual
//!   ("hound") way: a `b`-bit sample `s` becomes `s / 2^(b-1)`, 8-bit unsigned samples are centred
//!   at 128 first. 16-bit `16384` becomes exactly `0.5`.
//!
//! Supported inputs: WAV (`WAVE_FORMAT_PCM` 8-bit unsigned, 16/24/32-bit signed;
//! `WAVE_FORMAT_IEEE_FLOAT` 32/64-bit; A-law and µ-law; `WAVE_FORMAT_EXTENSIBLE` with any of
//! those), FLAC, Ogg Vorbis and MP3 (MPEG-1/2 layer III), with 1 or more channels and a
//! sample rate from [`MIN_SAMPLE_RATE_HZ`] to [`MAX_SAMPLE_RATE_HZ`].
//!
//! Defence in depth: every call into symphonia runs under [`std::panic::catch_unwind`]. Should a
//! malformed file trigger a panic inside symphonia that the validation here does not prevent (known
//! case, symphonia 0.6.1: `attempt to add with overflow` in the FLAC LPC predictor on a corrupt
//! frame, in builds with overflow checks such as `cargo test`), the caller sees it like any other
//! damage: [`AudioFileError::InvalidHeader`] while opening; while reading, the end of the stream
//! with [`AudioFileReader::was_truncated`] set, or [`AudioFileError::Decode`] if nothing had been
//! delivered yet. The panic message is still printed by the panic hook. This needs the default
//! `panic = "unwind"` strategy.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::{Hint, Probe};
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// Lowest sample rate accepted, in Hz.
pub const MIN_SAMPLE_RATE_HZ: u32 = 8_000;
/// Highest sample rate accepted, in Hz.
pub const MAX_SAMPLE_RATE_HZ: u32 = 192_000;

/// Most channels a plain WAV (`WAVE_FORMAT_PCM`/`IEEE_FLOAT`/A-law/µ-law) may declare; symphonia
/// maps each channel to a speaker position and knows 26 of them.
const MAX_WAV_CHANNELS: u16 = 26;
/// Most channels a `WAVE_FORMAT_EXTENSIBLE` file may declare (18 speaker positions in its mask).
const MAX_WAV_EXT_CHANNELS: u16 = 18;

/// What we tell users we can read.
const EXPECTED_FORMATS: &str = "WAV (PCM or float), FLAC, Ogg Vorbis or MP3";

/// Description of an opened audio file, as declared by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFileInfo {
    /// Sample rate in Hz, within [`MIN_SAMPLE_RATE_HZ`]`..=`[`MAX_SAMPLE_RATE_HZ`].
    pub sample_rate_hz: u32,
    /// Number of channels in the file (at least 1). [`AudioFileReader::read_mono`] averages them.
    pub channels: u16,
    /// Number of frames (samples per channel) the header declares, if it does.
    ///
    /// Exact for WAV and FLAC. For MP3 without a Xing/VBRI header it is an estimate from the
    /// bitrate; for Ogg it comes from the last page. For a truncated file it is what the header
    /// promised, not what the file holds.
    pub frames: Option<u64>,
    /// Short codec name from symphonia: `"pcm_u8"`, `"pcm_s16le"`, `"pcm_s24le"`, `"pcm_s32le"`,
    /// `"pcm_f32le"`, `"pcm_f64le"`, `"pcm_alaw"`, `"pcm_mulaw"`, `"flac"`, `"vorbis"`, `"mp3"`.
    pub codec: String,
    /// Bits per sample of the stored samples, when the format has such a notion (WAV: the valid
    /// bits, e.g. 16, 24 or 32 for float; FLAC: 4 to 32). `None` for Vorbis and MP3.
    pub bits_per_sample: Option<u32>,
}

/// Errors from opening or reading an audio file.
///
/// Every variant carries the file (the path given to [`AudioFileReader::open`] or the name given
/// to [`AudioFileReader::from_bytes`]) and its `Display` says what was found and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFileError {
    /// The file could not be opened or read (missing, permissions, I/O failure).
    #[error("cannot read audio file {}: {source}", .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The file has no bytes at all.
    #[error(
        "{}: file is empty (0 bytes); expected an audio file: WAV (PCM or float), FLAC, Ogg Vorbis or MP3",
        .file.display()
    )]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// No known container was found (a text file, an image, random bytes, ...).
    #[error(
        "{}: not a recognised audio file ({detail}); expected WAV (PCM or float), FLAC, Ogg Vorbis or MP3",
        .file.display()
    )]
    UnrecognizedFormat {
        /// The file.
        file: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file ends inside its header, before any audio data.
    #[error("{}: truncated header: {detail}", .file.display())]
    TruncatedHeader {
        /// The file.
        file: PathBuf,
        /// Where the file ends and what was expected there.
        detail: String,
    },
    /// The header is present but inconsistent or invalid (e.g. 0 channels, bad chunk sizes).
    #[error("{}: invalid header: {detail}", .file.display())]
    InvalidHeader {
        /// The file.
        file: PathBuf,
        /// What is wrong and what was expected.
        detail: String,
    },
    /// The sample rate is 0 or outside [`MIN_SAMPLE_RATE_HZ`]`..=`[`MAX_SAMPLE_RATE_HZ`].
    #[error(
        "{}: sample rate {rate_hz} Hz is not supported; expected 8000..=192000 Hz",
        .file.display()
    )]
    UnsupportedSampleRate {
        /// The file.
        file: PathBuf,
        /// The rate the header declares, in Hz.
        rate_hz: u32,
    },
    /// The container is understood but its codec or sample encoding is not.
    #[error(
        "{}: unsupported codec {codec}; expected integer PCM (8-bit unsigned, 16/24/32-bit), float PCM (32/64-bit), A-law, µ-law, FLAC, Vorbis or MP3",
        .file.display()
    )]
    UnsupportedCodec {
        /// The file.
        file: PathBuf,
        /// The codec or encoding found.
        codec: String,
    },
    /// The container holds no audio track.
    #[error("{}: no audio track; expected a file with at least one audio stream", .file.display())]
    NoAudioTrack {
        /// The file.
        file: PathBuf,
    },
    /// The audio data could not be decoded before any sample was delivered.
    ///
    /// Errors after samples were delivered end the stream instead (see
    /// [`AudioFileReader::read_mono`]).
    #[error(
        "{}: corrupt audio data after {frames_read} frames: {detail}; expected a decodable {codec} stream",
        .file.display()
    )]
    Decode {
        /// The file.
        file: PathBuf,
        /// Codec short name (as in [`AudioFileInfo::codec`]).
        codec: String,
        /// Frames delivered before the error.
        frames_read: u64,
        /// The decoder's description of the problem.
        detail: String,
    },
}

impl AudioFileError {
    /// The file (path or name) the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Io { file, .. }
            | Self::Empty { file }
            | Self::UnrecognizedFormat { file, .. }
            | Self::TruncatedHeader { file, .. }
            | Self::InvalidHeader { file, .. }
            | Self::UnsupportedSampleRate { file, .. }
            | Self::UnsupportedCodec { file, .. }
            | Self::NoAudioTrack { file }
            | Self::Decode { file, .. } => file,
        }
    }
}

/// Streaming reader producing mono `f32` samples from an audio file.
///
/// ```no_run
/// # use earshot::audio_file::AudioFileReader;
/// let mut reader = AudioFileReader::open(std::path::Path::new("scene.flac"))?;
/// let rate_hz = reader.info().sample_rate_hz;
/// let mut samples = Vec::new();
/// while reader.read_mono(&mut samples)? > 0 {
///     // process `samples` (mono, [-1, 1], at `rate_hz`), then clear it to bound memory
///     samples.clear();
/// }
/// if reader.was_truncated() {
///     eprintln!("file is truncated; analysed what was there");
/// }
/// # Ok::<(), earshot::audio_file::AudioFileError>(())
/// ```
pub struct AudioFileReader {
    file: PathBuf,
    info: AudioFileInfo,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// Scratch: one `f32` plane per channel of the last decoded packet.
    planes: Vec<Vec<f32>>,
    frames_read: u64,
    /// Whether `info.frames` is exact enough to detect truncation by counting frames.
    frames_exact: bool,
    truncated: bool,
    finished: bool,
}

impl std::fmt::Debug for AudioFileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFileReader")
            .field("file", &self.file)
            .field("info", &self.info)
            .field("frames_read", &self.frames_read)
            .field("truncated", &self.truncated)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Outcome of feeding one packet through symphonia.
enum Step {
    /// `n` mono samples were appended (may be 0: a packet of another track, or decoder priming).
    Frames(usize),
    /// The container has no more packets.
    End,
}

impl AudioFileReader {
    /// Opens the audio file at `path` and reads its header.
    ///
    /// The container is detected from the content (see [`from_bytes`](Self::from_bytes)). Only
    /// the header is read here; the file stays open and samples are decoded lazily, one packet at
    /// a time, by [`read_mono`](Self::read_mono), through a 64 KiB read buffer.
    ///
    /// # Errors
    ///
    /// [`AudioFileError::Io`] if the file cannot be opened; otherwise as
    /// [`from_bytes`](Self::from_bytes).
    pub fn open(path: &Path) -> Result<Self, AudioFileError> {
        let file = path.to_path_buf();
        let io_err = |source| AudioFileError::Io {
            file: file.clone(),
            source,
        };
        let handle = File::open(path).map_err(io_err)?;
        let meta = handle.metadata().map_err(io_err)?;
        if meta.is_dir() {
            return Err(io_err(io::Error::other("is a directory, expected a file")));
        }
        Self::from_source(file.clone(), handle, meta.len())
    }

    /// Reads an audio file held in memory; `name` stands for the file in errors and its extension
    /// (if any) is used as a format hint. Meant for tests and fuzzing.
    ///
    /// Containers are recognised by content: a WAV file must start with its `RIFF` header at
    /// byte 0; FLAC, Ogg and MP3 streams may follow junk or an ID3v2 tag (up to 1 MB of it).
    ///
    /// # Errors
    ///
    /// * [`AudioFileError::Empty`] for 0 bytes;
    /// * [`AudioFileError::UnrecognizedFormat`] if no supported container is found (e.g. text);
    /// * [`AudioFileError::TruncatedHeader`] if the data ends inside the header;
    /// * [`AudioFileError::InvalidHeader`] for inconsistent headers (0 channels, bad chunks, ...);
    /// * [`AudioFileError::UnsupportedSampleRate`] for a rate of 0 or outside
    ///   [`MIN_SAMPLE_RATE_HZ`]`..=`[`MAX_SAMPLE_RATE_HZ`];
    /// * [`AudioFileError::UnsupportedCodec`] for e.g. ADPCM or MP3-in-WAV, Opus, AAC;
    /// * [`AudioFileError::NoAudioTrack`] if the container holds no audio.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self, AudioFileError> {
        let len = bytes.len() as u64;
        Self::from_source(PathBuf::from(name), Cursor::new(bytes), len)
    }

    /// The header's description of the stream.
    pub fn info(&self) -> &AudioFileInfo {
        &self.info
    }

    /// Decodes the next packet and appends it to `out` as mono samples (the average of all
    /// channels), in `[-1.0, 1.0]` at [`AudioFileInfo::sample_rate_hz`]. Returns the number of
    /// samples appended; `Ok(0)` means end of stream, and every later call returns `Ok(0)` too.
    ///
    /// A block is one container packet: up to 1152 frames for WAV, one FLAC frame (typically
    /// 4096), one MP3 frame (1152) or one Vorbis packet. `out` is never cleared by this method.
    /// Float samples outside `[-1, 1]` are clamped and NaN becomes 0.
    ///
    /// Truncation and damage: if the data ends before the header says it should (a cut file), or
    /// the container or decoder fails after at least one sample was delivered, the samples before
    /// the problem are kept, [`was_truncated`](Self::was_truncated) becomes `true` and the stream
    /// ends with `Ok(0)`. A chained Ogg stream ends after its first logical stream. symphonia's
    /// MP3 demuxer treats an early end of file as the normal end, so a cut MP3 ends without
    /// `was_truncated` being set.
    ///
    /// # Errors
    ///
    /// [`AudioFileError::Decode`] if the data is damaged before the first sample could be
    /// delivered (this includes a panic inside symphonia, which is caught);
    /// [`AudioFileError::Io`] for a read failure other than an early end of file. After an error
    /// the reader returns `Ok(0)`.
    pub fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize, AudioFileError> {
        while !self.finished {
            let start_len = out.len();
            let step = {
                let format = &mut self.format;
                let decoder = &mut self.decoder;
                let planes = &mut self.planes;
                let track_id = self.track_id;
                let rate = self.info.sample_rate_hz;
                catch_unwind(AssertUnwindSafe(|| {
                    next_block(
                        format.as_mut(),
                        decoder.as_mut(),
                        track_id,
                        rate,
                        planes,
                        out,
                    )
                }))
            };
            match step {
                Ok(Ok(Step::Frames(0))) => continue,
                Ok(Ok(Step::Frames(n))) => {
                    self.frames_read += n as u64;
                    return Ok(n);
                }
                Ok(Ok(Step::End)) => {
                    self.finished = true;
                    if self.frames_exact && self.info.frames.is_some_and(|f| self.frames_read < f) {
                        self.truncated = true;
                    }
                }
                Ok(Err(err)) => {
                    out.truncate(start_len);
                    self.finished = true;
                    return self.handle_stream_error(err);
                }
                Err(panic) => {
                    // A panic inside symphonia on corrupt data (e.g. the FLAC LPC predictor
                    // overflows i32 in builds with overflow checks; release builds wrap). Treat
                    // it like any decode error; never call into this decoder again.
                    out.truncate(start_len);
                    self.finished = true;
                    if self.frames_read > 0 {
                        self.truncated = true;
                        return Ok(0);
                    }
                    return Err(AudioFileError::Decode {
                        file: self.file.clone(),
                        codec: self.info.codec.clone(),
                        frames_read: 0,
                        detail: format!(
                            "the symphonia decoder panicked ({}); the data is malformed",
                            panic_message(&panic)
                        ),
                    });
                }
            }
        }
        Ok(0)
    }

    /// `true` once a truncated or damaged stream was detected: the data ended before the length
    /// declared in the header, or decoding failed after samples had been delivered. The samples
    /// before the cut were delivered by [`read_mono`](Self::read_mono).
    ///
    /// For WAV the cut is known when the file is opened, so this is `true` right after
    /// [`open`](Self::open); for FLAC it becomes `true` when the stream ends short of the declared
    /// frame count; for other formats when the demuxer or decoder hits the cut.
    pub fn was_truncated(&self) -> bool {
        self.truncated
    }

    /// Maps an error met while streaming to the documented behaviour.
    fn handle_stream_error(&mut self, err: SymError) -> Result<usize, AudioFileError> {
        match err {
            // The data ends early: a cut file. Whatever was there has been delivered.
            SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.truncated = true;
                Ok(0)
            }
            // The track list changed (chained Ogg): end of the first stream.
            SymError::ResetRequired => Ok(0),
            SymError::IoError(source) => Err(AudioFileError::Io {
                file: self.file.clone(),
                source,
            }),
            // Damage after samples were delivered: treat as a cut.
            _ if self.frames_read > 0 => {
                self.truncated = true;
                Ok(0)
            }
            other => Err(AudioFileError::Decode {
                file: self.file.clone(),
                codec: self.info.codec.clone(),
                frames_read: 0,
                detail: other.to_string(),
            }),
        }
    }

    fn from_source<R>(file: PathBuf, mut inner: R, len: u64) -> Result<Self, AudioFileError>
    where
        R: Read + Seek + Send + Sync + 'static,
    {
        if len == 0 {
            return Err(AudioFileError::Empty { file });
        }
        let mut magic = [0u8; 4];
        let got = read_at(&mut inner, 0, &mut magic).map_err(|source| AudioFileError::Io {
            file: file.clone(),
            source,
        })?;
        let container = sniff_container(&magic[..got]);
        let wav = inspect_wav(&file, &mut inner, len)?;
        inner
            .seek(SeekFrom::Start(0))
            .map_err(|source| AudioFileError::Io {
                file: file.clone(),
                source,
            })?;

        let patches = wav.as_ref().map(|w| w.patches.clone()).unwrap_or_default();
        let source = PatchedSource {
            inner,
            len,
            pos: 0,
            patches,
        };
        let mss = MediaSourceStream::new(Box::new(source), MediaSourceStreamOptions::default());
        let mut hint = Hint::new();
        if let Some(ext) = file.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }

        // A RIFF/WAVE header at byte 0 has been validated and patched above; everything else is
        // probed without the WAV demuxer, because symphonia's probe scans up to 1 MB for a
        // "RIFF" marker and would otherwise parse an unvalidated WAV header found mid-file.
        let probe = if wav.is_some() {
            symphonia::default::get_probe()
        } else {
            probe_without_wav()
        };
        let probed = catch_unwind(AssertUnwindSafe(|| {
            probe.probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        }));
        let format = match probed {
            Ok(Ok(format)) => format,
            Ok(Err(err)) => return Err(map_probe_error(&file, container, err)),
            Err(panic) => {
                return Err(AudioFileError::InvalidHeader {
                    detail: format!(
                        "the symphonia demuxer panicked reading the header ({}); expected a well-formed {EXPECTED_FORMATS} header",
                        panic_message(&panic)
                    ),
                    file,
                })
            }
        };

        let Some(track) = format
            .default_track(TrackType::Audio)
            .or_else(|| format.first_track(TrackType::Audio))
        else {
            return Err(AudioFileError::NoAudioTrack { file });
        };
        let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()) else {
            return Err(AudioFileError::NoAudioTrack { file });
        };
        let track_id = track.id;

        let rate_hz = match params.sample_rate {
            Some(rate) => rate,
            None => {
                return Err(AudioFileError::InvalidHeader {
                    file,
                    detail: "no sample rate in the header; expected 8000..=192000 Hz".into(),
                })
            }
        };
        if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&rate_hz) {
            return Err(AudioFileError::UnsupportedSampleRate { file, rate_hz });
        }
        let channel_count = params.channels.as_ref().map_or(0, |c| c.count());
        let channels = match u16::try_from(channel_count) {
            Ok(0) => {
                return Err(AudioFileError::InvalidHeader {
                    file,
                    detail: "0 channels; expected at least 1 channel".into(),
                })
            }
            Ok(n) => n,
            Err(_) => {
                return Err(AudioFileError::InvalidHeader {
                    file,
                    detail: format!("{channel_count} channels; expected at most 65535"),
                })
            }
        };

        let made = catch_unwind(AssertUnwindSafe(|| {
            symphonia::default::get_codecs()
                .make_audio_decoder(params, &AudioDecoderOptions::default())
        }));
        let decoder = match made {
            Ok(Ok(decoder)) => decoder,
            Ok(Err(SymError::Unsupported(_))) | Ok(Err(SymError::DecodeError(_)))
                if !is_known_codec(params.codec) =>
            {
                return Err(AudioFileError::UnsupportedCodec {
                    file,
                    codec: codec_label(params.codec),
                })
            }
            Ok(Err(err)) => {
                return Err(AudioFileError::InvalidHeader {
                    file,
                    detail: format!(
                        "{} codec parameters rejected ({err}); expected a valid {} stream header",
                        codec_label(params.codec),
                        codec_label(params.codec)
                    ),
                })
            }
            Err(panic) => {
                return Err(AudioFileError::InvalidHeader {
                    detail: format!(
                        "the symphonia decoder panicked on the codec parameters ({})",
                        panic_message(&panic)
                    ),
                    file,
                })
            }
        };
        let codec = decoder.codec_info().short_name.to_string();

        let truncated = wav.as_ref().is_some_and(|w| w.truncated);
        let frames = match &wav {
            Some(w) if w.truncated => w.declared_frames,
            _ => track.num_frames,
        };
        let bits_per_sample = params
            .bits_per_sample
            .or(params.bits_per_coded_sample)
            .or_else(|| wav.as_ref().map(|w| u32::from(w.bits)))
            .filter(|&b| b > 0);
        let frames_exact = codec == "flac" || codec.starts_with("pcm_");

        Ok(Self {
            info: AudioFileInfo {
                sample_rate_hz: rate_hz,
                channels,
                frames,
                codec,
                bits_per_sample,
            },
            file,
            format,
            decoder,
            track_id,
            planes: Vec::new(),
            frames_read: 0,
            frames_exact,
            truncated,
            finished: false,
        })
    }
}

/// Reads one packet, decodes it and appends its mono downmix to `out`.
fn next_block(
    format: &mut dyn FormatReader,
    decoder: &mut dyn AudioDecoder,
    track_id: u32,
    rate_hz: u32,
    planes: &mut Vec<Vec<f32>>,
    out: &mut Vec<f32>,
) -> Result<Step, SymError> {
    let Some(packet) = format.next_packet()? else {
        return Ok(Step::End);
    };
    if packet.track_id != track_id {
        return Ok(Step::Frames(0));
    }
    let buf = decoder.decode(&packet)?;
    let frames = buf.frames();
    if frames == 0 || buf.num_planes() == 0 {
        return Ok(Step::Frames(0));
    }
    if buf.spec().rate() != rate_hz {
        return Err(SymError::DecodeError(
            "sample rate changed in the middle of the stream",
        ));
    }
    buf.copy_to_vecs_planar::<f32>(planes);
    downmix_append(planes, frames, out);
    Ok(Step::Frames(frames))
}

/// Appends the average of `planes` (each `frames` long) to `out`, clamping to [-1, 1].
fn downmix_append(planes: &[Vec<f32>], frames: usize, out: &mut Vec<f32>) {
    fn clean(s: f32) -> f32 {
        if s.is_nan() {
            0.0
        } else {
            s.clamp(-1.0, 1.0)
        }
    }
    let start = out.len();
    match planes {
        [] => {}
        [mono] => out.extend(mono.iter().take(frames).map(|&s| clean(s))),
        _ => {
            out.resize(start + frames, 0.0);
            let dst = &mut out[start..];
            for plane in planes {
                for (o, &s) in dst.iter_mut().zip(plane.iter()) {
                    *o += clean(s);
                }
            }
            let n = planes.len() as f32;
            for o in dst.iter_mut() {
                *o = clean(*o / n);
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The default probe minus the WAV demuxer (see `from_source`).
fn probe_without_wav() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        use symphonia::default::formats::{FlacReader, MpaReader, OggReader};
        let mut probe = Probe::new();
        probe.register_format::<FlacReader<'_>>();
        probe.register_format::<MpaReader<'_>>();
        probe.register_format::<OggReader<'_>>();
        probe
    })
}

/// Codecs this build can decode (the decoders enabled in Cargo.toml).
fn is_known_codec(id: AudioCodecId) -> bool {
    symphonia::default::get_codecs()
        .get_audio_decoder(id)
        .is_some()
}

/// Human name for a codec id, including ones we cannot decode.
fn codec_label(id: AudioCodecId) -> String {
    use codec_ids::*;
    let name = match id {
        CODEC_ID_OPUS => "Opus",
        CODEC_ID_AAC => "AAC",
        CODEC_ID_ALAC => "ALAC",
        CODEC_ID_AC3 => "AC-3",
        CODEC_ID_EAC3 => "E-AC-3",
        CODEC_ID_SPEEX => "Speex",
        CODEC_ID_WMA => "WMA",
        CODEC_ID_WAVPACK => "WavPack",
        CODEC_ID_ADPCM_MS => "Microsoft ADPCM",
        CODEC_ID_ADPCM_IMA_WAV => "IMA ADPCM",
        CODEC_ID_MP1 => "MPEG layer I",
        CODEC_ID_MP2 => "MPEG layer II",
        CODEC_ID_MP3 => "MP3",
        CODEC_ID_FLAC => "FLAC",
        CODEC_ID_VORBIS => "Vorbis",
        _ => return format!("with symphonia codec id {id}"),
    };
    name.to_string()
}

/// Names the container from its first bytes, for error messages only.
fn sniff_container(magic: &[u8]) -> Option<&'static str> {
    match magic {
        [b'R', b'I', b'F', b'F', ..] => Some("WAV"),
        [b'f', b'L', b'a', b'C', ..] => Some("FLAC"),
        [b'O', b'g', b'g', b'S', ..] => Some("Ogg"),
        [b'I', b'D', b'3', ..] => Some("MP3"),
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some("MP3"),
        _ => None,
    }
}

fn map_probe_error(file: &Path, container: Option<&str>, err: SymError) -> AudioFileError {
    let file = file.to_path_buf();
    match err {
        SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            let detail = match container {
                Some(name) => format!(
                    "the file ends inside the {name} header; expected a complete {name} header followed by audio data"
                ),
                None => format!(
                    "the file ends inside the container header; expected a complete {EXPECTED_FORMATS} header followed by audio data"
                ),
            };
            AudioFileError::TruncatedHeader { file, detail }
        }
        SymError::IoError(source) => AudioFileError::Io { file, source },
        SymError::Unsupported(what) if what.contains("no suitable format reader") => {
            AudioFileError::UnrecognizedFormat {
                file,
                detail: "no audio container signature found in the first 1 MB".into(),
            }
        }
        SymError::Unsupported(what) => AudioFileError::UnsupportedCodec {
            file,
            codec: format!("or feature ({what})"),
        },
        other => AudioFileError::InvalidHeader {
            file,
            detail: format!("{other}; expected a well-formed {EXPECTED_FORMATS} header"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Media source with header patches
// ---------------------------------------------------------------------------------------------

/// A seekable byte source that overrides a few header bytes as they are read.
///
/// Used to hand symphonia a WAV header whose lengths match the bytes actually present (so a cut
/// file yields all its complete frames instead of failing on the last partial packet) and whose
/// `WAVE_FORMAT_EXTENSIBLE` fields are consistent (symphonia 0.6.1 panics on some channel masks).
struct PatchedSource<R> {
    inner: R,
    len: u64,
    pos: u64,
    /// (absolute offset, replacement byte)
    patches: Vec<(u64, u8)>,
}

impl<R: Read> Read for PatchedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let end = self.pos + n as u64;
        for &(off, byte) in &self.patches {
            if off >= self.pos && off < end {
                buf[(off - self.pos) as usize] = byte;
            }
        }
        self.pos = end;
        Ok(n)
    }
}

impl<R: Seek> Seek for PatchedSource<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for PatchedSource<R> {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

// ---------------------------------------------------------------------------------------------
// WAV header inspection
// ---------------------------------------------------------------------------------------------

/// What [`inspect_wav`] learned about a RIFF/WAVE file.
#[derive(Debug)]
struct WavPlan {
    /// Byte overrides for [`PatchedSource`].
    patches: Vec<(u64, u8)>,
    /// The data chunk declares more bytes than the file holds.
    truncated: bool,
    /// Frames the data chunk declares (None if the length is the "unknown" marker 0xFFFFFFFF).
    declared_frames: Option<u64>,
    /// Valid bits per sample.
    bits: u16,
}

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn wave_format_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "Microsoft ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG layer I/II",
        0x0055 => "MPEG layer III (MP3)",
        0x00FF | 0x1600 | 0x1601 | 0x1602 | 0x1610 => "AAC",
        0x0160..=0x0163 => "WMA",
        0x2000 => "AC-3",
        _ => "unknown",
    }
}

/// Reads at most `buf.len()` bytes at `offset`; returns how many were available.
fn read_at<R: Read + Seek>(r: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    r.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn patch_u32(patches: &mut Vec<(u64, u8)>, offset: u64, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        patches.push((offset + i as u64, byte));
    }
}

/// Checks a RIFF/WAVE header. Returns `Ok(None)` if the data is not RIFF/WAVE (another format
/// for symphonia to probe), an error naming the problem for a bad WAV header, or the patches that
/// make the header consistent with the bytes present.
fn inspect_wav<R: Read + Seek>(
    file: &Path,
    r: &mut R,
    len: u64,
) -> Result<Option<WavPlan>, AudioFileError> {
    let io_err = |source| AudioFileError::Io {
        file: file.to_path_buf(),
        source,
    };
    let truncated = |detail: String| AudioFileError::TruncatedHeader {
        file: file.to_path_buf(),
        detail,
    };
    let invalid = |detail: String| AudioFileError::InvalidHeader {
        file: file.to_path_buf(),
        detail,
    };

    let mut head = [0u8; 12];
    let got = read_at(r, 0, &mut head).map_err(io_err)?;
    if got < 4 || &head[0..4] != b"RIFF" {
        return Ok(None);
    }
    if got < 12 {
        return Err(truncated(format!(
            "the file is {len} bytes long; expected at least the 12-byte RIFF/WAVE header followed by fmt and data chunks"
        )));
    }
    if &head[8..12] != b"WAVE" {
        return Ok(None); // RIFF but not WAVE (AVI, ...): let the probe reject it.
    }
    let riff_len = le_u32(&head, 4);

    // (format tag or ext sub-format, channels, rate, bits, frame length in bytes)
    let mut fmt: Option<(u16, u16, u32, u16, u64)> = None;
    let mut patches = Vec::new();
    let mut pos: u64 = 12;
    loop {
        if pos + 8 > len {
            let what = if fmt.is_none() {
                "the fmt chunk"
            } else {
                "the data chunk"
            };
            return Err(truncated(format!(
                "the WAV file ends at byte {len} before {what}; expected a fmt chunk and a data chunk"
            )));
        }
        let mut ch = [0u8; 8];
        read_at(r, pos, &mut ch).map_err(io_err)?;
        let id = [ch[0], ch[1], ch[2], ch[3]];
        let chunk_len = le_u32(&ch, 4);
        let body = pos + 8;

        match &id {
            b"fmt " => {
                if chunk_len < 16 {
                    return Err(invalid(format!(
                        "fmt chunk is {chunk_len} bytes; expected at least 16"
                    )));
                }
                let mut b = [0u8; 40];
                let want = (chunk_len as usize).min(40);
                let got = read_at(r, body, &mut b[..want]).map_err(io_err)?;
                if got < want {
                    return Err(truncated(format!(
                        "the WAV file ends at byte {len} inside the {chunk_len}-byte fmt chunk; expected the complete fmt chunk"
                    )));
                }
                let tag = le_u16(&b, 0);
                let channels = le_u16(&b, 2);
                let rate = le_u32(&b, 4);
                let container_bits = le_u16(&b, 14);

                // symphonia 0.6.1 reads a fixed number of bytes per format tag and does not skip
                // the rest of the fmt chunk, so any other length would make it read the next
                // chunk header from the wrong place (and miss our patches). Accept exactly the
                // lengths it handles.
                let (tag_name, allowed_lens): (&str, &[u32]) = match tag {
                    WAVE_FORMAT_PCM => ("WAVE_FORMAT_PCM", &[16, 18, 40]),
                    WAVE_FORMAT_IEEE_FLOAT => ("WAVE_FORMAT_IEEE_FLOAT", &[16, 18, 40]),
                    WAVE_FORMAT_ALAW => ("WAVE_FORMAT_ALAW", &[18]),
                    WAVE_FORMAT_MULAW => ("WAVE_FORMAT_MULAW", &[18]),
                    WAVE_FORMAT_EXTENSIBLE => ("WAVE_FORMAT_EXTENSIBLE", &[40]),
                    other => {
                        return Err(AudioFileError::UnsupportedCodec {
                            file: file.to_path_buf(),
                            codec: format!(
                                "WAV format tag 0x{other:04X} ({})",
                                wave_format_name(other)
                            ),
                        })
                    }
                };
                if !allowed_lens.contains(&chunk_len) {
                    let lens: Vec<String> = allowed_lens.iter().map(u32::to_string).collect();
                    return Err(invalid(format!(
                        "{tag_name} fmt chunk is {chunk_len} bytes; expected {} bytes",
                        lens.join(" or ")
                    )));
                }
                if matches!(tag, WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW) && le_u16(&b, 16) != 0 {
                    // cbSize must be 0 in an 18-byte chunk; symphonia would skip that many bytes.
                    patches.push((body + 16, 0));
                    patches.push((body + 17, 0));
                }

                let (kind, bits, max_channels) = if tag == WAVE_FORMAT_EXTENSIBLE {
                    let sub = le_u16(&b, 24);
                    let mut valid = le_u16(&b, 18);
                    // Some writers leave wValidBitsPerSample at 0: it means "all bits".
                    if valid == 0 || valid > container_bits {
                        valid = container_bits;
                        for (i, byte) in valid.to_le_bytes().into_iter().enumerate() {
                            patches.push((body + 18 + i as u64, byte));
                        }
                    }
                    // symphonia 0.6.1 panics (shift overflow in fix_wave_channel_mask) on masks
                    // with too few bits set near bit 31; it also ignores masks beyond 18
                    // positions. A mask that does not match the channel count carries no
                    // information we use (we average all channels), so replace it.
                    let mask = le_u32(&b, 20);
                    if (1..=MAX_WAV_EXT_CHANNELS).contains(&channels)
                        && (mask.count_ones() != u32::from(channels) || mask >> 18 != 0)
                    {
                        patch_u32(&mut patches, body + 20, (1u32 << channels) - 1);
                    }
                    (sub, valid, MAX_WAV_EXT_CHANNELS)
                } else {
                    (tag, container_bits, MAX_WAV_CHANNELS)
                };

                if channels == 0 || channels > max_channels {
                    return Err(invalid(format!(
                        "{channels} channels; expected 1 to {max_channels} channels"
                    )));
                }
                if !(MIN_SAMPLE_RATE_HZ..=MAX_SAMPLE_RATE_HZ).contains(&rate) {
                    return Err(AudioFileError::UnsupportedSampleRate {
                        file: file.to_path_buf(),
                        rate_hz: rate,
                    });
                }
                let unsupported = |codec: String| AudioFileError::UnsupportedCodec {
                    file: file.to_path_buf(),
                    codec,
                };
                let frame_bytes = match kind {
                    WAVE_FORMAT_PCM => {
                        if !matches!(container_bits, 8 | 16 | 24 | 32) {
                            return Err(unsupported(format!(
                                "{container_bits}-bit integer PCM in WAV (expected 8, 16, 24 or 32 bits)"
                            )));
                        }
                        u64::from(container_bits / 8) * u64::from(channels)
                    }
                    WAVE_FORMAT_IEEE_FLOAT => {
                        if !matches!(container_bits, 32 | 64) {
                            return Err(unsupported(format!(
                                "{container_bits}-bit float PCM in WAV (expected 32 or 64 bits)"
                            )));
                        }
                        u64::from(container_bits / 8) * u64::from(channels)
                    }
                    WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW => {
                        if tag == WAVE_FORMAT_EXTENSIBLE && container_bits != 8 {
                            return Err(unsupported(format!(
                                "{container_bits}-bit A-law/µ-law in WAV (expected 8 bits)"
                            )));
                        }
                        u64::from(channels)
                    }
                    other => {
                        return Err(unsupported(format!(
                            "WAVE_FORMAT_EXTENSIBLE sub-format 0x{other:04X} ({})",
                            wave_format_name(other)
                        )))
                    }
                };
                fmt = Some((kind, channels, rate, bits, frame_bytes));
            }
            b"data" => {
                let Some((_, _, _, bits, frame_bytes)) = fmt else {
                    return Err(invalid(
                        "data chunk comes before the fmt chunk; expected fmt first".into(),
                    ));
                };
                let available = len - body;
                let (data_len, is_truncated, declared_frames) = if chunk_len == u32::MAX {
                    // Streaming writers (ffmpeg to a pipe) leave the length unknown.
                    (available, false, None)
                } else {
                    let declared = u64::from(chunk_len);
                    (
                        declared.min(available),
                        declared > available,
                        Some(declared / frame_bytes),
                    )
                };
                // Tell symphonia the length that is really there (it would otherwise lose the
                // last partial 1152-frame packet, or error on a RIFF size that is too small).
                if let Ok(data_len32) = u32::try_from(data_len) {
                    if data_len32 != chunk_len {
                        patch_u32(&mut patches, pos + 4, data_len32);
                    }
                    let needed = body + data_len + (data_len & 1) - 8;
                    if riff_len != u32::MAX && u64::from(riff_len) < needed {
                        if let Ok(needed32) = u32::try_from(needed) {
                            patch_u32(&mut patches, 4, needed32);
                        }
                    }
                }
                return Ok(Some(WavPlan {
                    patches,
                    truncated: is_truncated,
                    declared_frames,
                    bits,
                }));
            }
            _ => {}
        }

        let next = body + u64::from(chunk_len) + u64::from(chunk_len & 1);
        if next > len {
            let name = String::from_utf8_lossy(&id).into_owned();
            let what = if fmt.is_none() { "fmt" } else { "data" };
            return Err(truncated(format!(
                "the WAV file ends at byte {len} inside the {chunk_len}-byte '{name}' chunk, before the {what} chunk"
            )));
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a WAV file: `fmt_tag` 1 (PCM), 3 (float) or 0xFFFE (extensible, with `sub` tag).
    struct Wav {
        tag: u16,
        sub: u16,
        channels: u16,
        rate: u32,
        bits: u16,
        valid_bits: u16,
        data: Vec<u8>,
        /// Overrides the data chunk length.
        declared_data_len: Option<u32>,
    }

    impl Wav {
        fn pcm(channels: u16, rate: u32, bits: u16, data: Vec<u8>) -> Self {
            Wav {
                tag: 1,
                sub: 0,
                channels,
                rate,
                bits,
                valid_bits: bits,
                data,
                declared_data_len: None,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let bytes_per_sample = u32::from(self.bits / 8);
            let block_align = bytes_per_sample * u32::from(self.channels);
            let mut fmt = Vec::new();
            fmt.extend_from_slice(&self.tag.to_le_bytes());
            fmt.extend_from_slice(&self.channels.to_le_bytes());
            fmt.extend_from_slice(&self.rate.to_le_bytes());
            fmt.extend_from_slice(&(self.rate.wrapping_mul(block_align)).to_le_bytes());
            fmt.extend_from_slice(&(block_align as u16).to_le_bytes());
            fmt.extend_from_slice(&self.bits.to_le_bytes());
            if self.tag == 0xFFFE {
                fmt.extend_from_slice(&22u16.to_le_bytes());
                fmt.extend_from_slice(&self.valid_bits.to_le_bytes());
                let mask: u32 = if self.channels >= 32 {
                    0
                } else {
                    (1 << self.channels) - 1
                };
                fmt.extend_from_slice(&mask.to_le_bytes());
                fmt.extend_from_slice(&self.sub.to_le_bytes());
                fmt.extend_from_slice(&[
                    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B,
                    0x71,
                ]);
            }
            let data_len = self.declared_data_len.unwrap_or(self.data.len() as u32);
            let mut out = Vec::new();
            out.extend_from_slice(b"RIFF");
            let riff_len = (4 + 8 + fmt.len() as u32 + 8).wrapping_add(data_len);
            out.extend_from_slice(&riff_len.to_le_bytes());
            out.extend_from_slice(b"WAVE");
            out.extend_from_slice(b"fmt ");
            out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
            out.extend_from_slice(&fmt);
            out.extend_from_slice(b"data");
            out.extend_from_slice(&data_len.to_le_bytes());
            out.extend_from_slice(&self.data);
            out
        }
    }

    fn i16_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn read_all(reader: &mut AudioFileReader) -> Vec<f32> {
        let mut out = Vec::new();
        loop {
            let before = out.len();
            let n = reader.read_mono(&mut out).unwrap();
            assert_eq!(
                out.len() - before,
                n,
                "return value must equal samples appended"
            );
            if n == 0 {
                break;
            }
        }
        // End of stream is sticky.
        assert_eq!(reader.read_mono(&mut out).unwrap(), 0);
        out
    }

    fn open_err(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (PathBuf, String) {
        let path = write_temp(dir, name, bytes);
        let err = AudioFileReader::open(&path).expect_err("expected an error");
        assert_eq!(err.file(), path.as_path());
        let msg = err.to_string();
        assert!(msg.contains(name), "message must name the file: {msg}");
        (path, msg)
    }

    #[test]
    fn pcm16_mono_16k_exact_values() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<i16> = vec![0, 16384, -16384, i16::MAX, i16::MIN, 1, -1, 8192];
        // More than one 1152-frame packet, to cross packet boundaries.
        let long: Vec<i16> = (0..5000)
            .map(|i| ((i * 37) % 65536 - 32768) as i16)
            .collect();
        let all: Vec<i16> = samples.iter().chain(long.iter()).copied().collect();
        let path = write_temp(
            &dir,
            "mono16.wav",
            &Wav::pcm(1, 16000, 16, i16_bytes(&all)).bytes(),
        );

        let mut r = AudioFileReader::open(&path).unwrap();
        assert_eq!(
            r.info(),
            &AudioFileInfo {
                sample_rate_hz: 16000,
                channels: 1,
                frames: Some(all.len() as u64),
                codec: "pcm_s16le".into(),
                bits_per_sample: Some(16),
            }
        );
        let got = read_all(&mut r);
        assert!(!r.was_truncated());
        assert_eq!(got.len(), all.len());
        assert_eq!(&got[..5], &[0.0, 0.5, -0.5, 32767.0 / 32768.0, -1.0]);
        for (g, s) in got.iter().zip(&all) {
            assert_eq!(*g, f32::from(*s) / 32768.0);
        }
    }

    #[test]
    fn pcm8_unsigned() {
        let wav = Wav::pcm(1, 16000, 8, vec![128, 255, 0, 192, 64]);
        let mut r = AudioFileReader::from_bytes("u8.wav", wav.bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_u8");
        assert_eq!(r.info().bits_per_sample, Some(8));
        assert_eq!(read_all(&mut r), vec![0.0, 127.0 / 128.0, -1.0, 0.5, -0.5]);
    }

    #[test]
    fn pcm24() {
        let vals: [i32; 4] = [0, 1 << 22, -(1 << 22), (1 << 23) - 1];
        let data: Vec<u8> = vals
            .iter()
            .flat_map(|v| v.to_le_bytes()[..3].to_vec())
            .collect();
        let mut r =
            AudioFileReader::from_bytes("s24.wav", Wav::pcm(1, 44100, 24, data).bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_s24le");
        assert_eq!(r.info().bits_per_sample, Some(24));
        assert_eq!(r.info().sample_rate_hz, 44100);
        let got = read_all(&mut r);
        assert_eq!(
            got,
            vals.iter()
                .map(|&v| v as f32 / 8_388_608.0)
                .collect::<Vec<_>>()
        );
        assert_eq!(&got[..3], &[0.0, 0.5, -0.5]);
    }

    #[test]
    fn pcm32_int() {
        let vals: [i32; 4] = [0, 1 << 30, i32::MIN, -(1 << 29)];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut r =
            AudioFileReader::from_bytes("s32.wav", Wav::pcm(1, 96000, 32, data).bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_s32le");
        assert_eq!(r.info().bits_per_sample, Some(32));
        assert_eq!(read_all(&mut r), vec![0.0, 0.5, -1.0, -0.25]);
    }

    #[test]
    fn float32_and_float64() {
        let vals = [0.0f32, 0.25, -0.75, 1.5, -3.0, f32::NAN];
        let expected = vec![0.0, 0.25, -0.75, 1.0, -1.0, 0.0];
        let mut w = Wav::pcm(
            1,
            22050,
            32,
            vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        w.tag = 3;
        let mut r = AudioFileReader::from_bytes("f32.wav", w.bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_f32le");
        assert_eq!(r.info().bits_per_sample, Some(32));
        assert_eq!(read_all(&mut r), expected);

        let mut w = Wav::pcm(
            1,
            22050,
            64,
            vals.iter()
                .flat_map(|&v| f64::from(v).to_le_bytes())
                .collect(),
        );
        w.tag = 3;
        let mut r = AudioFileReader::from_bytes("f64.wav", w.bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_f64le");
        assert_eq!(r.info().bits_per_sample, Some(64));
        assert_eq!(read_all(&mut r), expected);
    }

    #[test]
    fn six_channels_48k_downmix_average() {
        // Frame 0: sum 1.5 -> 0.25; frame 1: all -0.5 -> -0.5; frame 2: one channel full scale.
        let frames: [[i16; 6]; 3] = [
            [16384, 16384, 16384, 0, 0, 0],
            [-16384; 6],
            [0, 0, 0, 0, 0, i16::MIN],
        ];
        let data: Vec<u8> = frames.iter().flat_map(|f| i16_bytes(f)).collect();
        let mut r =
            AudioFileReader::from_bytes("six.wav", Wav::pcm(6, 48000, 16, data).bytes()).unwrap();
        assert_eq!(r.info().channels, 6);
        assert_eq!(r.info().sample_rate_hz, 48000);
        assert_eq!(r.info().frames, Some(3));
        let got = read_all(&mut r);
        assert_eq!(got.len(), 3);
        for (g, e) in got.iter().zip([0.25f32, -0.5, -1.0 / 6.0]) {
            assert!((g - e).abs() < 1e-6, "{g} vs {e}");
        }
    }

    #[test]
    fn extensible_6ch_24bit_and_float() {
        let frame: [i32; 6] = [1 << 22, 1 << 22, 0, 0, -(1 << 22), 1 << 21];
        let data: Vec<u8> = frame
            .iter()
            .flat_map(|v| v.to_le_bytes()[..3].to_vec())
            .collect();
        let mut w = Wav::pcm(6, 48000, 24, data);
        w.tag = 0xFFFE;
        w.sub = 1;
        let mut r = AudioFileReader::from_bytes("ext24.wav", w.bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_s24le");
        assert_eq!(r.info().channels, 6);
        let got = read_all(&mut r);
        assert!(
            (got[0] - (0.5 + 0.5 - 0.5 + 0.25) / 6.0).abs() < 1e-6,
            "{got:?}"
        );

        let mut w = Wav::pcm(
            2,
            8000,
            32,
            [0.5f32, -0.25]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        w.tag = 0xFFFE;
        w.sub = 3;
        let mut r = AudioFileReader::from_bytes("extf.wav", w.bytes()).unwrap();
        assert_eq!(r.info().codec, "pcm_f32le");
        assert_eq!(read_all(&mut r), vec![0.125]);

        // Valid bits 0 (some writers) and a bogus mask are tolerated.
        let mut w = Wav::pcm(2, 16000, 16, i16_bytes(&[16384, 0]));
        w.tag = 0xFFFE;
        w.sub = 1;
        w.valid_bits = 0;
        let mut bytes = w.bytes();
        bytes[40..44].copy_from_slice(&0x8000_0000u32.to_le_bytes()); // channel mask
        let mut r = AudioFileReader::from_bytes("extmask.wav", bytes).unwrap();
        assert_eq!(read_all(&mut r), vec![0.25]);
    }

    #[test]
    fn mono_8k_and_192k() {
        let mut r = AudioFileReader::from_bytes(
            "8k.wav",
            Wav::pcm(1, 8000, 16, i16_bytes(&[8192, -8192])).bytes(),
        )
        .unwrap();
        assert_eq!(r.info().sample_rate_hz, 8000);
        assert_eq!(r.info().frames, Some(2));
        assert_eq!(read_all(&mut r), vec![0.25, -0.25]);

        let r = AudioFileReader::from_bytes(
            "192k.wav",
            Wav::pcm(2, 192_000, 16, i16_bytes(&[1, 2])).bytes(),
        )
        .unwrap();
        assert_eq!(r.info().sample_rate_hz, 192_000);
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, msg) = open_err(&dir, "empty.wav", &[]);
        assert!(msg.contains("empty"), "{msg}");
        assert!(msg.contains("expected"), "{msg}");
    }

    #[test]
    fn missing_file() {
        let err = AudioFileReader::open(Path::new("/nonexistent/dir/nothing.flac")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AudioFileError::Io { .. }));
        assert!(msg.contains("nothing.flac"), "{msg}");
    }

    #[test]
    fn text_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "This is not audio.\nJust some text that someone renamed.\n".repeat(20);
        let (_, msg) = open_err(&dir, "notes.wav", text.as_bytes());
        assert!(msg.contains("not a recognised audio file"), "{msg}");
        assert!(msg.contains("expected WAV"), "{msg}");
    }

    #[test]
    fn truncated_headers() {
        let dir = tempfile::tempdir().unwrap();
        let full = Wav::pcm(1, 16000, 16, i16_bytes(&[1, 2, 3])).bytes();
        for cut in [6usize, 20, 40] {
            let (_, msg) = open_err(&dir, &format!("cut{cut}.wav"), &full[..cut]);
            assert!(msg.contains("truncated header"), "cut {cut}: {msg}");
            assert!(msg.contains("expected"), "cut {cut}: {msg}");
        }
        // A FLAC stream marker followed by half a STREAMINFO block.
        let mut flac = b"fLaC".to_vec();
        flac.extend_from_slice(&[0x80, 0, 0, 34, 0x10, 0x00, 0x10]);
        let (_, msg) = open_err(&dir, "cut.flac", &flac);
        assert!(
            msg.contains("truncated header: the file ends inside the FLAC header"),
            "{msg}"
        );
        assert!(msg.contains("expected a complete FLAC header"), "{msg}");
    }

    #[test]
    fn sample_rate_zero_and_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let (_, msg) = open_err(
            &dir,
            "rate0.wav",
            &Wav::pcm(1, 0, 16, i16_bytes(&[1])).bytes(),
        );
        assert!(msg.contains("sample rate 0 Hz"), "{msg}");
        assert!(msg.contains("8000..=192000 Hz"), "{msg}");
        let (_, msg) = open_err(
            &dir,
            "rate4k.wav",
            &Wav::pcm(1, 4000, 16, i16_bytes(&[1])).bytes(),
        );
        assert!(
            msg.contains("4000 Hz") && msg.contains("8000..=192000"),
            "{msg}"
        );
        let (_, msg) = open_err(
            &dir,
            "rate384k.wav",
            &Wav::pcm(1, 384_000, 16, i16_bytes(&[1])).bytes(),
        );
        assert!(
            msg.contains("384000 Hz") && msg.contains("8000..=192000"),
            "{msg}"
        );
    }

    #[test]
    fn zero_channels() {
        let dir = tempfile::tempdir().unwrap();
        let (_, msg) = open_err(
            &dir,
            "nochan.wav",
            &Wav::pcm(0, 16000, 16, vec![0; 4]).bytes(),
        );
        assert!(msg.contains("0 channels"), "{msg}");
        assert!(msg.contains("expected 1 to"), "{msg}");
    }

    #[test]
    fn unsupported_codecs() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wav::pcm(1, 16000, 4, vec![0; 64]);
        w.tag = 0x0011; // IMA ADPCM
        let (_, msg) = open_err(&dir, "adpcm.wav", &w.bytes());
        assert!(msg.contains("unsupported codec"), "{msg}");
        assert!(msg.contains("IMA ADPCM"), "{msg}");
        assert!(msg.contains("expected integer PCM"), "{msg}");

        let (_, msg) = open_err(
            &dir,
            "pcm12.wav",
            &Wav::pcm(1, 16000, 12, vec![0; 8]).bytes(),
        );
        assert!(msg.contains("12-bit integer PCM"), "{msg}");
    }

    #[test]
    fn truncated_data_delivers_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<i16> = (0..3000).map(|i| (i * 7) as i16).collect();
        let full = Wav::pcm(1, 16000, 16, i16_bytes(&samples)).bytes();
        // Cut in the middle of sample 2000 (44-byte header).
        let cut = 44 + 2000 * 2 + 1;
        let path = write_temp(&dir, "cut_data.wav", &full[..cut]);
        let mut r = AudioFileReader::open(&path).unwrap();
        assert_eq!(
            r.info().frames,
            Some(3000),
            "frames is what the header declares"
        );
        let got = read_all(&mut r);
        assert!(r.was_truncated());
        assert_eq!(got.len(), 2000);
        for (g, s) in got.iter().zip(&samples) {
            assert_eq!(*g, f32::from(*s) / 32768.0);
        }

        // Short file: fewer frames than one packet.
        let mut r = AudioFileReader::from_bytes("short.wav", full[..44 + 10].to_vec()).unwrap();
        assert_eq!(read_all(&mut r).len(), 5);
        assert!(r.was_truncated());

        // Stereo cut between the channels of a frame: only complete frames.
        let st = Wav::pcm(2, 16000, 16, i16_bytes(&[100, 200, 300, 400, 500])).bytes();
        let mut r = AudioFileReader::from_bytes("st.wav", st).unwrap();
        assert!(r.was_truncated() || r.info().frames == Some(2));
        assert_eq!(read_all(&mut r).len(), 2);
    }

    #[test]
    fn unknown_data_length_streams_to_end() {
        // ffmpeg writing to a pipe leaves the data length at 0xFFFFFFFF.
        let samples: Vec<i16> = (0..1500).map(|i| i as i16).collect();
        let mut w = Wav::pcm(1, 16000, 16, i16_bytes(&samples));
        w.declared_data_len = Some(u32::MAX);
        let mut bytes = w.bytes();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = AudioFileReader::from_bytes("pipe.wav", bytes).unwrap();
        assert_eq!(read_all(&mut r).len(), 1500);
        assert!(!r.was_truncated());
    }

    /// Inputs found by the fuzzer (fuzz/fuzz_targets/audio_file.rs) that made symphonia 0.6.1
    /// panic or desynchronise, rebuilt by hand.
    #[test]
    fn fuzz_regressions_wav_headers() {
        let ext = |mask: u32, fmt_len_extra: usize| {
            let mut w = Wav::pcm(3, 16000, 16, i16_bytes(&[1, 2, 3, 4, 5, 6]));
            w.tag = 0xFFFE;
            w.sub = 1;
            let mut b = w.bytes();
            b[40..44].copy_from_slice(&mask.to_le_bytes());
            if fmt_len_extra > 0 {
                let fmt_len = 40 + fmt_len_extra as u32;
                b[16..20].copy_from_slice(&fmt_len.to_le_bytes());
                for _ in 0..fmt_len_extra {
                    b.insert(60, 0);
                }
            }
            b
        };
        // A channel mask with its top bit set and too few bits: shift overflow in symphonia's
        // fix_wave_channel_mask. We replace the mask, so the file decodes.
        let mut r = AudioFileReader::from_bytes("mask.wav", ext(0x8000_0000, 0)).unwrap();
        assert_eq!(read_all(&mut r).len(), 2);
        // The same WAV after junk bytes: symphonia's probe would find "RIFF" mid-file and parse
        // the unvalidated header. WAV must start at byte 0.
        let mut junk = b"fLa\xaa junk before the header".to_vec();
        junk.extend(ext(0x8000_0000, 0));
        let err = AudioFileReader::from_bytes("junk.wav", junk).unwrap_err();
        assert!(
            matches!(err, AudioFileError::UnrecognizedFormat { .. }),
            "{err}"
        );
        // An extensible fmt chunk longer than 40 bytes: symphonia would read the next chunk
        // header from inside it.
        let err = AudioFileReader::from_bytes("fmt44.wav", ext(0b111, 4)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("fmt44.wav: invalid header"), "{msg}");
        assert!(
            msg.contains("WAVE_FORMAT_EXTENSIBLE fmt chunk is 44 bytes; expected 40"),
            "{msg}"
        );
    }

    /// MSB-first bit writer for hand-made FLAC.
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        nbits: usize,
    }

    impl Bits {
        fn put(&mut self, value: u64, width: usize) {
            for i in (0..width).rev() {
                if self.nbits % 8 == 0 {
                    self.bytes.push(0);
                }
                let bit = ((value >> i) & 1) as u8;
                *self.bytes.last_mut().unwrap() |= bit << (7 - self.nbits % 8);
                self.nbits += 1;
            }
        }
    }

    fn crc(bytes: &[u8], width: u32, poly: u32) -> u32 {
        let top = 1u32 << (width - 1);
        let mask = (1u64 << width) as u32 - 1;
        let mut c = 0u32;
        for &b in bytes {
            c ^= u32::from(b) << (width - 8);
            for _ in 0..8 {
                c = if c & top != 0 {
                    (c << 1) ^ poly
                } else {
                    c << 1
                } & mask;
            }
        }
        c
    }

    /// A valid 16 kHz mono 16-bit FLAC whose single LPC frame predicts values beyond i32 (the
    /// coefficients and the escaped residuals are legal but absurd).
    fn flac_with_overflowing_lpc() -> Vec<u8> {
        let block = 16u64;
        let mut out = b"fLaC".to_vec();
        out.extend_from_slice(&[0x80, 0, 0, 34]); // last block, STREAMINFO, 34 bytes
        let mut si = Bits::default();
        si.put(block, 16); // min block size
        si.put(block, 16); // max block size
        si.put(0, 24); // min frame size (unknown)
        si.put(0, 24); // max frame size (unknown)
        si.put(16_000, 20); // sample rate
        si.put(0, 3); // channels - 1
        si.put(15, 5); // bits per sample - 1
        si.put(block, 36); // total samples
        si.put(0, 64);
        si.put(0, 64); // MD5 (unset)
        out.extend_from_slice(&si.bytes);

        let mut f = Bits::default();
        f.put(0b11_1111_1111_1110, 14); // sync
        f.put(0, 2); // reserved, fixed block size
        f.put(0b0110, 4); // block size: 8 bits (n - 1) at end of header
        f.put(0, 4); // sample rate from STREAMINFO
        f.put(0, 4); // mono
        f.put(0b100, 3); // 16 bits per sample
        f.put(0, 1);
        f.put(0, 8); // frame number 0
        f.put(block - 1, 8);
        let crc8 = crc(&f.bytes, 8, 0x07);
        f.put(u64::from(crc8), 8);
        // LPC subframe of order 4.
        f.put(0, 1);
        f.put(0b10_0011, 6);
        f.put(0, 1); // no wasted bits
        for _ in 0..4 {
            f.put(0x7FFF, 16); // warm-up samples: full scale
        }
        f.put(14, 4); // coefficient precision - 1 -> 15 bits
        f.put(0, 5); // shift 0
        for _ in 0..4 {
            f.put(0x3FFF, 15); // coefficients: +16383
        }
        f.put(0, 2); // residual: Rice, 4-bit parameters
        f.put(0, 4); // partition order 0
        f.put(0b1111, 4); // escape: raw residuals
        f.put(31, 5); // 31 bits each
        for _ in 4..block {
            f.put(0x4000_0000, 31);
        }
        let pad = (8 - f.nbits % 8) % 8;
        f.put(0, pad);
        let crc16 = crc(&f.bytes, 16, 0x8005);
        f.put(u64::from(crc16), 16);
        out.extend_from_slice(&f.bytes);
        out
    }

    #[test]
    fn flac_decoder_overflow_is_contained() {
        // symphonia 0.6.1's FLAC LPC predictor adds in i32 without wrapping: with overflow checks
        // (test builds) it panics, in release builds it wraps. Either way no panic escapes.
        let mut r = AudioFileReader::from_bytes("lpc.flac", flac_with_overflowing_lpc()).unwrap();
        assert_eq!(r.info().codec, "flac");
        assert_eq!(r.info().frames, Some(16));
        let mut out = Vec::new();
        match r.read_mono(&mut out) {
            Ok(n) => assert_eq!(n, out.len()), // wrapped (release) or decoded
            Err(err) => {
                let msg = err.to_string();
                assert!(
                    msg.contains("lpc.flac: corrupt audio data after 0 frames"),
                    "{msg}"
                );
                assert!(msg.contains("panicked"), "{msg}");
                assert!(out.is_empty());
            }
        }
        assert!(out.iter().all(|s| (-1.0..=1.0).contains(s)));
        while r.read_mono(&mut out).unwrap() > 0 {}
        assert_eq!(r.read_mono(&mut out).unwrap(), 0);
    }

    #[test]
    fn garbage_never_panics() {
        // Cheap deterministic smoke test of the fuzz target's property.
        let base = Wav::pcm(2, 16000, 16, i16_bytes(&[1, 2, 3, 4, 5, 6, 7, 8])).bytes();
        let mut seed = 0x1234_5678u32;
        for i in 0..2000 {
            let mut b = base.clone();
            for _ in 0..(1 + i % 4) {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let at = (seed >> 8) as usize % b.len();
                b[at] = (seed >> 24) as u8;
            }
            if let Ok(mut r) = AudioFileReader::from_bytes("fuzz.wav", b) {
                let mut out = Vec::new();
                while matches!(r.read_mono(&mut out), Ok(n) if n > 0) && out.len() < 1_000_000 {}
                assert!(out.iter().all(|s| (-1.0..=1.0).contains(s)));
            }
        }
    }

    /// `../shared/eval` (real clips, never in git): `None` means skip, but under `CI=true` its
    /// absence fails the test.
    fn shared_eval_root(test: &str) -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval");
        if root.is_dir() {
            return Some(root);
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "../shared is required under CI=true: {} is missing",
                root.display()
            );
        }
        eprintln!("skipping {test}: {} not found", root.display());
        None
    }

    /// Real evaluation clips from `../shared/eval` (not in git).
    #[test]
    fn shared_eval_clips() {
        let Some(root) = shared_eval_root("shared_eval_clips") else {
            return;
        };
        let first_with_ext = |dir: PathBuf, ext: &str| -> PathBuf {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect();
            files.sort();
            files
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
        };
        for (path, codec) in [
            (
                first_with_ext(root.join("scenes/glass_break"), "flac"),
                "flac",
            ),
            (first_with_ext(root.join("glass_break"), "wav"), "pcm_s16le"),
        ] {
            let mut r = AudioFileReader::open(&path).unwrap();
            let info = r.info().clone();
            assert_eq!(info.sample_rate_hz, 16000, "{}", path.display());
            assert_eq!(info.channels, 1);
            assert_eq!(info.codec, codec);
            let got = read_all(&mut r);
            assert!(!r.was_truncated());
            assert_eq!(Some(got.len() as u64), info.frames, "{}", path.display());
            assert!(got.iter().any(|&s| s != 0.0));
            assert!(got.iter().all(|s| (-1.0..=1.0).contains(s)));
        }
    }

    /// The 60-minute background file streams block by block (about 1.5 s in a debug build).
    #[test]
    fn shared_eval_background_60min() {
        let Some(root) = shared_eval_root("shared_eval_background_60min") else {
            return;
        };
        let path = root.join("background/background_60min.flac");
        let mut r = AudioFileReader::open(&path).unwrap();
        let mut block = Vec::new();
        let mut total = 0u64;
        let mut max_block = 0;
        loop {
            block.clear();
            let n = r.read_mono(&mut block).unwrap();
            if n == 0 {
                break;
            }
            max_block = max_block.max(n);
            total += n as u64;
        }
        assert_eq!(Some(total), r.info().frames);
        assert_eq!(total, 60 * 60 * 16_000);
        assert!(max_block <= 65536, "blocks are packets, not the whole file");
        assert!(!r.was_truncated());
    }
}
