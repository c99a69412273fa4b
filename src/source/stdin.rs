//! `stdin:FORMAT@RATE[/CHANNELS]`: raw interleaved PCM on standard input (`s16le` or
//! `f32le`), e.g. `sox in.flac -t raw -e signed -b 16 -c 1 -r 48000 - | earshot run --input
//! stdin:s16le@48000`. The input ends at end of file. Reads go into buffers allocated once.

use std::io::{self, Read};

use super::{CaptureWriter, PcmFormat, Source, SourceError, SourceInfo};

/// Bytes per read.
const READ_BYTES: usize = 16_384;

/// Raw PCM from standard input.
pub struct StdinSource {
    info: SourceInfo,
    format: PcmFormat,
    bytes: Box<[u8]>,
    samples_i16: Box<[i16]>,
    samples_f32: Box<[f32]>,
}

impl StdinSource {
    /// A source reading `format` at `rate_hz` with `channels` interleaved channels.
    pub fn new(spec: &str, format: PcmFormat, rate_hz: u32, channels: u16) -> Self {
        Self {
            info: SourceInfo {
                sample_rate_hz: rate_hz,
                channels,
                live: false,
                description: spec.to_owned(),
            },
            format,
            bytes: vec![0u8; READ_BYTES].into_boxed_slice(),
            samples_i16: vec![0i16; READ_BYTES / 2].into_boxed_slice(),
            samples_f32: vec![0f32; READ_BYTES / 4].into_boxed_slice(),
        }
    }
}

impl Source for StdinSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn run(&mut self, out: &mut CaptureWriter) -> Result<(), SourceError> {
        let mut stdin = io::stdin().lock();
        let channels = self.info.channels as usize;
        let sample_bytes = match self.format {
            PcmFormat::S16Le => 2,
            PcmFormat::F32Le => 4,
        };
        let frame_bytes = sample_bytes * channels;
        // Keep reads whole frames: carry a partial frame over to the next read.
        let usable = READ_BYTES - READ_BYTES % frame_bytes;
        let mut filled = 0usize;
        loop {
            if out.stop_requested() {
                return Ok(());
            }
            let n = match stdin.read(&mut self.bytes[filled..usable]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::Stdin(e)),
            };
            filled += n;
            let whole = filled - filled % frame_bytes;
            let samples = whole / sample_bytes;
            let ok = match self.format {
                PcmFormat::S16Le => {
                    for (s, b) in self.samples_i16[..samples]
                        .iter_mut()
                        .zip(self.bytes[..whole].chunks_exact(2))
                    {
                        *s = i16::from_le_bytes([b[0], b[1]]);
                    }
                    out.write_i16(&self.samples_i16[..samples], channels)
                }
                PcmFormat::F32Le => {
                    for (s, b) in self.samples_f32[..samples]
                        .iter_mut()
                        .zip(self.bytes[..whole].chunks_exact(4))
                    {
                        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        *s = v;
                    }
                    out.write_f32(&self.samples_f32[..samples], channels)
                }
            };
            if !ok {
                return Ok(());
            }
            self.bytes.copy_within(whole..filled, 0);
            filled -= whole;
        }
    }
}
