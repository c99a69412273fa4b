//! Earshot: on-device audio analytics.
//!
//! Data flows one way (see `../shared/handbook/architecture.md`):
//!
//! ```text
//! audio_file ─► pipeline (dsp: resample, log-mel, level meters, loudness; classifier) ─► detection ─► analyze ─► output
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`audio_file`] | decoding WAV, FLAC, Ogg Vorbis, MP3 to mono f32 at the file's rate |
//! | [`classifier`] | YAMNet (`yamnet_logmel.onnx`) run with tract: `[96, 64]` log-mel → scores, logits, embedding |
//! | [`audioset`] | the 521 AudioSet class names of YAMNet's outputs |
//! | [`classes`] | Earshot's classes, their AudioSet rows and thresholds |
//! | [`pipeline`] | native-rate samples → classified patches with their levels |
//! | [`onnx_fold`] | folding constant per-channel dequantization so tract runs int8 graphs right |
//! | [`detection`] | patches above threshold → detections with start, end, peak score and level |
//! | [`detector`] | the per-class state machine: hysteresis, minimum duration, hold time, cooldown, level gate |
//! | [`analyze`] | files → reports (the `earshot analyze` command's core) |
//! | [`output`] | table, JSON lines and CSV writers |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analyze;
pub mod audio_file;
pub mod audioset;
pub mod classes;
pub mod classifier;
pub mod detection;
pub mod detector;
pub mod level_events;
pub mod onnx_fold;
pub mod output;
pub mod pipeline;
pub mod plot;
