//! Earshot's audio front end: pure, deterministic computation on sample buffers.
//!
//! No I/O, no threads, no clocks. Every processor allocates at construction and never again
//! while it runs, so the same code serves the real-time path on a camera and file analysis on
//! a host.
//!
//! | module | what it holds | follows |
//! |---|---|---|
//! | [`resample`] | streaming sample-rate conversion of any rate from 8 kHz to 96 kHz to 16 kHz | rubato's FFT resampler |
//! | [`logmel`] | framing, STFT and the log-mel patches the classifier consumes | the YAMNet front end (`params.py`, `features.py`) |
//! | [`weighting`] | A-, C- and Z-frequency weighting filters for the actual sample rate | IEC 61672-1:2013 |
//! | [`level`] | Fast/Slow time weighting, LAF, LAS, LAeq, LAFmax, LAFmin, LCpeak, calibration to dB SPL | IEC 61672-1:2013 |
//! | [`background`] | the learned background level: a sliding-window percentile that ignores events | running percentile (see the module) |
//! | [`spectral`] | spectral tilt, high-frequency ratio and gain re-levelling of log-mel patches | least-squares tilt over mel bands (see the module) |
//! | [`loudness`] | momentary, short-term and integrated loudness in LUFS | ITU-R BS.1770-4, EBU R128 (via the `ebur128` crate) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod background;
pub mod error;
pub mod level;
pub mod logmel;
pub mod loudness;
pub mod resample;
pub mod spectral;
pub mod weighting;

pub use error::DspError;
