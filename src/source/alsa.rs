//! `alsa:DEVICE`: an ALSA capture PCM. Built in its own change.

use super::{CaptureWriter, Source, SourceError, SourceInfo};

/// An ALSA capture source.
pub struct AlsaSource {
    info: SourceInfo,
}

impl AlsaSource {
    /// Opens `device` for capture.
    ///
    /// # Errors
    /// Not built yet.
    pub fn open(spec: &str, _device: &str) -> Result<Self, SourceError> {
        Err(SourceError::Unsupported {
            spec: spec.to_owned(),
            why: "ALSA capture is not built yet".into(),
        })
    }
}

impl Source for AlsaSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn run(&mut self, _out: &mut CaptureWriter) -> Result<(), SourceError> {
        Ok(())
    }
}
