//! Earshot: on-device audio analytics.
//!
//! Data flows one way (see `../shared/handbook/architecture.md`):
//!
//! ```text
//! audio_file ─► pipeline (dsp: resample, log-mel, level meters, loudness, background; classifier)
//!            ─► evidence ─► detectors ─► analyze / eval ─► output
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`audio_file`] | decoding WAV, FLAC, Ogg Vorbis, MP3 to mono f32 at the file's rate |
//! | [`classifier`] | YAMNet (`yamnet_logmel.onnx`) run with tract: `[96, 64]` log-mel → scores, logits, embedding |
//! | [`audioset`] | the 521 AudioSet class names of YAMNet's outputs |
//! | [`classes`] | Earshot's classes |
//! | [`pipeline`] | native-rate samples → classified patches with their levels |
//! | [`onnx_fold`] | folding constant per-channel dequantization so tract runs int8 graphs right |
//! | [`depthwise`] | depthwise convolution with channels as the vectorized inner loop, replacing tract's |
//! | [`fake_quant`] | activation Quantize→Dequantize pairs fused into one vectorizable f32 op |
//! | [`evidence`] | per-patch evidence for each class from AudioSet scores and spectral shape |
//! | [`detector`] | the per-class state machine: hysteresis, minimum duration, hold time, cooldown, level gate |
//! | [`level_events`] | loud noise (absolute, adaptive), periodic SPL summaries, audio input lost/restored |
//! | [`detectors`] | one detector per class, sensitivity 0–100, detections with sample offsets |
//! | [`analyze`] | files → reports (the `earshot analyze` command's core) |
//! | [`eval`] | labelled clips, scenes and background recordings → recall, false alarms, latency |
//! | [`output`] | table, JSON lines and CSV writers |
//! | [`plot`] | one picture per file: level, class evidence and detections over time (SVG, PNG) |
//! | [`config`] | the TOML configuration of `earshot run`: one typed struct, validated once |
//! | [`settings`] | the device settings (ACAP app parameters), declared once, laid over the TOML configuration |
//! | [`source`] | audio sources (file, stdin, ALSA) and the capture end of the SPSC ring |
//! | [`events`] | the event envelope every sink receives, and its JSON schema |
//! | [`sinks`] | JSON lines, MQTT, webhook, each behind a bounded queue on its own thread |
//! | [`actions`] | rules that fire outputs, virtual inputs and clips (VAPIX, GPIO, local playback) |
//! | [`run`] | the live pipeline: capture thread → ring → analysis → sinks |
//! | [`web`] | the settings page, live view (Server-Sent Events) and JSON API of `earshot run` |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod actions;
pub mod analyze;
pub mod audio_file;
pub mod audioset;
pub mod classes;
pub mod classifier;
pub mod config;
pub mod depthwise;
pub mod detector;
pub mod detectors;
#[cfg(feature = "axsdk")]
pub mod device;
pub mod eval;
pub mod events;
pub mod evidence;
pub mod fake_quant;
pub mod level_events;
pub mod onnx_fold;
pub mod output;
pub mod pipeline;
pub mod plot;
pub mod run;
pub mod settings;
pub mod sinks;
pub mod source;
pub mod web;
