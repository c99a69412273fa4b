//! Loudness in LUFS after ITU-R BS.1770-4 and EBU R128 (momentary, short-term, integrated), via
//! the `ebur128` crate (0.1.11, a port of libebur128); nothing of BS.1770 is reimplemented here.
//!
//! BS.1770-4: K-weighting (high-shelf pre-filter and RLB high-pass), mean square per channel,
//! L = −0.691 + 10·log10 Σ Gᵢ·zᵢ with G = 1.0 for left, right and centre (and 1.41 for the
//! surround channels in 5-channel layouts, as `ebur128`'s default channel map does).
//! Momentary: 400 ms window; short-term: 3 s window; integrated: 400 ms gating blocks with 75 %
//! overlap, absolute gate −70 LUFS, relative gate −10 LU (EBU Tech 3341 / 3342).
//!
//! # Allocation
//!
//! The meter runs `ebur128` in modes M | S | I | HISTOGRAM:
//!
//! - `EbuR128::add_frames_*` itself does not allocate: it filters into a ring buffer sized for
//!   the 3 s window at construction, and records each gating block in the history.
//! - In `ebur128`'s default (queue) history the gating-block history is a `VecDeque<f64>` that
//!   grows by one entry per 100 ms without bound (capacity 5 000 at construction, so it
//!   reallocates after 500 s and keeps growing, ≈ 7 MB per day). That is an allocation on the
//!   audio path and unbounded memory on a device that runs for months, so this meter uses the
//!   HISTOGRAM history instead: a fixed 1 000-bin histogram (0.1 LU bins from −70 LUFS)
//!   allocated in [`LoudnessMeter::new`]. With it `add_frames` never allocates; the price is
//!   that integrated loudness is computed from bin centres, i.e. quantised to the 0.1 LU grid
//!   (error at most 0.05 LU). Momentary and short-term loudness are not affected.
//!
//! [`LoudnessMeter::process_interleaved_f32`] copies the input through a scratch buffer
//! allocated at construction (to replace non-finite samples), so it is allocation-free too.

use ebur128::{EbuR128, Mode};

use crate::DspError;

/// Frames (per channel) copied per call into `ebur128`: 100 ms at 48 kHz.
const CHUNK_FRAMES: usize = 4_800;
/// Largest supported channel count.
pub const MAX_CHANNELS: u32 = 8;

/// A streaming BS.1770-4 / EBU R128 loudness meter for interleaved f32 audio.
///
/// Momentary (400 ms), short-term (3 s) and integrated (gated, since construction or the last
/// [`reset`](Self::reset)) loudness in LUFS. Samples are full-scale f32 (±1.0); non-finite
/// samples (NaN, ±∞) are replaced by 0.0, because one NaN would otherwise stay in the
/// K-weighting filter state for good and only a full reset (losing the integrated loudness)
/// could clear it. Allocation-free after [`new`](Self::new); see the [module docs](self).
pub struct LoudnessMeter {
    inner: EbuR128,
    channels: u32,
    sample_rate_hz: u32,
    scratch: Vec<f32>,
    frames_in: u64,
}

impl std::fmt::Debug for LoudnessMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoudnessMeter")
            .field("channels", &self.channels)
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("frames_in", &self.frames_in)
            .finish_non_exhaustive()
    }
}

fn loudness_error(e: ebur128::Error) -> DspError {
    DspError::Loudness(e.to_string())
}

impl LoudnessMeter {
    /// A meter for `channels` interleaved channels (1 ..= 8; `ebur128`'s default map: L, R, C,
    /// LFE (ignored), Ls, Rs, …) at `sample_rate_hz` Hz (8 000 ..= 192 000).
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] for a channel count outside 1 ..= 8,
    /// [`DspError::UnsupportedSampleRate`] for a rate outside 8 000 ..= 192 000 Hz,
    /// [`DspError::Loudness`] if `ebur128` refuses the configuration.
    pub fn new(channels: u32, sample_rate_hz: u32) -> Result<Self, DspError> {
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(DspError::InvalidParameter {
                name: "channels",
                value: channels.to_string(),
                expected: "1 to 8",
            });
        }
        if !(8_000..=192_000).contains(&sample_rate_hz) {
            return Err(DspError::UnsupportedSampleRate {
                rate_hz: sample_rate_hz,
                processor: "loudness meter",
                expected: "8000 to 192000 Hz",
            });
        }
        let inner = EbuR128::new(
            channels,
            sample_rate_hz,
            Mode::M | Mode::S | Mode::I | Mode::HISTOGRAM,
        )
        .map_err(loudness_error)?;
        Ok(Self {
            inner,
            channels,
            sample_rate_hz,
            scratch: vec![0.0; CHUNK_FRAMES * channels as usize],
            frames_in: 0,
        })
    }

    /// Number of interleaved channels.
    pub fn channels(&self) -> u32 {
        self.channels
    }

    /// The sample rate, Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    /// Frames (samples per channel) consumed since construction or the last reset.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Feeds interleaved frames: `frames.len()` must be a multiple of the channel count.
    /// Allocation-free (see the [module docs](self)); only the error path formats a message.
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] when `frames.len()` is not a multiple of the channel
    /// count (nothing is consumed then), [`DspError::Loudness`] if `ebur128` reports an error.
    pub fn process_interleaved_f32(&mut self, frames: &[f32]) -> Result<(), DspError> {
        let ch = self.channels as usize;
        if frames.len() % ch != 0 {
            return Err(DspError::InvalidParameter {
                name: "frames.len()",
                value: frames.len().to_string(),
                expected: "a multiple of the channel count",
            });
        }
        for chunk in frames.chunks(self.scratch.len()) {
            let buf = &mut self.scratch[..chunk.len()];
            for (d, &s) in buf.iter_mut().zip(chunk) {
                *d = if s.is_finite() { s } else { 0.0 };
            }
            self.inner.add_frames_f32(buf).map_err(loudness_error)?;
            self.frames_in += (chunk.len() / ch) as u64;
        }
        Ok(())
    }

    fn defined(value: Result<f64, ebur128::Error>) -> Option<f64> {
        value.ok().filter(|v| v.is_finite())
    }

    /// Momentary loudness (last 400 ms), LUFS. `None` before 400 ms of input, and for silence
    /// (−∞).
    pub fn momentary_lufs(&self) -> Option<f64> {
        if self.frames_in * 10 < u64::from(self.sample_rate_hz) * 4 {
            return None;
        }
        Self::defined(self.inner.loudness_momentary())
    }

    /// Short-term loudness (last 3 s), LUFS. `None` before 3 s of input, and for silence (−∞).
    pub fn short_term_lufs(&self) -> Option<f64> {
        if self.frames_in < u64::from(self.sample_rate_hz) * 3 {
            return None;
        }
        Self::defined(self.inner.loudness_shortterm())
    }

    /// Integrated (gated) loudness since construction or the last reset, LUFS, quantised to
    /// the 0.1 LU histogram grid (error ≤ 0.05 LU). `None` while no 400 ms gating block lies
    /// above the −70 LUFS absolute gate.
    pub fn integrated_lufs(&self) -> Option<f64> {
        Self::defined(self.inner.loudness_global())
    }

    /// Forgets all input: filters, windows and the integrated-loudness history. No allocation.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.frames_in = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            LoudnessMeter::new(0, 48_000),
            Err(DspError::InvalidParameter {
                name: "channels",
                ..
            })
        ));
        assert!(matches!(
            LoudnessMeter::new(2, 1_000),
            Err(DspError::UnsupportedSampleRate { .. })
        ));
        let mut m = LoudnessMeter::new(2, 48_000).unwrap();
        assert!(m.process_interleaved_f32(&[0.0; 3]).is_err());
        assert_eq!(m.frames_in(), 0);
    }

    #[test]
    fn silence_and_short_input_are_undefined() {
        let mut m = LoudnessMeter::new(1, 48_000).unwrap();
        assert_eq!(m.momentary_lufs(), None);
        m.process_interleaved_f32(&vec![0.0; 48_000 * 4]).unwrap();
        assert_eq!(m.momentary_lufs(), None);
        assert_eq!(m.short_term_lufs(), None);
        assert_eq!(m.integrated_lufs(), None);
    }

    #[test]
    fn non_finite_samples_do_not_poison_the_meter() {
        let mut m = LoudnessMeter::new(1, 48_000).unwrap();
        let mut x: Vec<f32> = (0..48_000)
            .map(|i| 0.1 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        x[100] = f32::NAN;
        x[200] = f32::INFINITY;
        m.process_interleaved_f32(&x).unwrap();
        assert!(m.momentary_lufs().is_some_and(f64::is_finite));
        assert!(m.integrated_lufs().is_some_and(f64::is_finite));
        m.reset();
        assert_eq!(m.integrated_lufs(), None);
    }
}
