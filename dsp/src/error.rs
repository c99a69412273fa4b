//! The one error type of the `dsp` crate.

/// What can go wrong when a DSP processor is constructed or fed.
///
/// Processors validate their parameters once, at construction; after that they do not fail on
/// any sample values (NaN and infinities included), so the audio path has no error branch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DspError {
    /// A sample rate outside what the processor supports.
    #[error("sample rate {rate_hz} Hz is not supported by the {processor}: expected {expected}")]
    UnsupportedSampleRate {
        /// The rate that was asked for, in Hz.
        rate_hz: u32,
        /// Which processor refused it (e.g. "A-weighting filter").
        processor: &'static str,
        /// The supported range, in words (e.g. "8000 to 192000 Hz").
        expected: &'static str,
    },
    /// A parameter outside its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidParameter {
        /// The parameter's name as documented (e.g. "patch_hop_frames").
        name: &'static str,
        /// The offending value, formatted.
        value: String,
        /// What is allowed, in words.
        expected: &'static str,
    },
    /// An error reported by the resampler crate.
    #[error("resampler: {0}")]
    Resampler(String),
    /// An error reported by the loudness (`ebur128`) crate.
    #[error("loudness meter: {0}")]
    Loudness(String),
}
