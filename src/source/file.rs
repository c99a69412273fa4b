//! `wav:PATH`: an audio file as a source (WAV, FLAC, Ogg Vorbis, MP3: whatever
//! [`crate::audio_file`] decodes), read as fast as the analysis takes it, or paced at real time
//! (`--realtime`) so that it behaves like a live input: then a full ring drops frames.
//!
//! Decoding happens on the capture thread and symphonia allocates its packet buffers there;
//! a file is not a real-time device, so this is the one source where that is allowed.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{CaptureWriter, Source, SourceError, SourceInfo};
use crate::audio_file::AudioFileReader;

/// A file source.
pub struct FileSource {
    info: SourceInfo,
    reader: AudioFileReader,
    realtime: bool,
    buf: Vec<f32>,
}

impl FileSource {
    /// Opens `path` (`spec` is the input as given, for messages).
    ///
    /// # Errors
    /// [`SourceError::File`] naming the file.
    pub fn open(spec: &str, path: &Path, realtime: bool) -> Result<Self, SourceError> {
        let reader = AudioFileReader::open(path)?;
        let i = reader.info();
        Ok(Self {
            info: SourceInfo {
                sample_rate_hz: i.sample_rate_hz,
                channels: i.channels,
                live: realtime,
                description: spec.to_owned(),
            },
            reader,
            realtime,
            buf: Vec::with_capacity(1 << 16),
        })
    }
}

impl Source for FileSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn run(&mut self, out: &mut CaptureWriter) -> Result<(), SourceError> {
        let start = Instant::now();
        let rate = self.info.sample_rate_hz as f64;
        let mut written = 0u64;
        // Real-time pacing writes 10 ms at a time, as a device period would.
        let period = (self.info.sample_rate_hz as usize / 100).max(1);
        loop {
            if out.stop_requested() {
                return Ok(());
            }
            self.buf.clear();
            let n = self.reader.read_mono(&mut self.buf)?;
            if n == 0 {
                return Ok(());
            }
            if !self.realtime {
                if !out.write_f32(&self.buf, 1) {
                    return Ok(());
                }
                continue;
            }
            for chunk in self.buf.chunks(period) {
                let due =
                    start + Duration::from_secs_f64((written + chunk.len() as u64) as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if !out.write_f32(chunk, 1) {
                    return Ok(());
                }
                written += chunk.len() as u64;
            }
        }
    }
}
