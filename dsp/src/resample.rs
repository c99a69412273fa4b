//! Streaming sample-rate conversion to the classifier's rate.
//!
//! A thin, allocation-free wrapper over rubato's synchronous FFT resampler ([`rubato::Fft`]),
//! which suits the fixed integer-ratio conversions a microphone needs (48 kHz → 16 kHz and the
//! like). Each chunk of about 20 ms of input is filtered as **one** FFT block (for 48 → 16 kHz:
//! 960 input and 320 output samples per block). rubato's `Fft::new` would split it into blocks
//! of about 256 input samples instead (321 → 107 for this pair), whose shorter anti-aliasing
//! filter already cuts at about 6.5 kHz: a 7 kHz tone came out 6.2 dB low and 7.5 kHz, the top
//! of YAMNet's mel range, 38 dB low. With one block per chunk the passband is flat to
//! 7 kHz (−0.15 dB at 7.5 kHz), images and aliases stay below −140 dB, and the conversion is
//! about 2.3× faster (107 is prime, which made the short blocks' FFTs slow). The wrapper adds
//! what a stream needs on top of rubato's fixed-size chunks:
//!
//! - input of any length per call, carried over between calls;
//! - **delay compensation**: rubato delays its output by [`rubato::Resampler::output_delay`]
//!   frames; those leading frames are dropped, so output sample `n` corresponds to input time
//!   `n / rate_out` as input sample `m` corresponds to `m / rate_in`, to within one output
//!   sample (rubato rounds its delay to whole frames: measured residual lag at 16 kHz output
//!   0 to 0.75 samples, at most 47 µs);
//! - [`StreamResampler::finish`], which flushes the tail so the output has exactly
//!   `ceil(input_len · rate_out / rate_in)` samples.
//!
//! When the input rate already equals the output rate, samples pass through untouched.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};

use crate::DspError;

/// Lowest input sample rate accepted, in Hz.
pub const MIN_RATE_HZ: u32 = 8_000;
/// Highest input sample rate accepted, in Hz.
pub const MAX_RATE_HZ: u32 = 192_000;

/// Mono streaming resampler from `rate_in_hz` to `rate_out_hz`.
///
/// Allocates at construction only; [`push`](Self::push) and [`finish`](Self::finish) hand the
/// converted samples to a callback in slices of at most
/// [`max_output_block`](Self::max_output_block) samples.
pub struct StreamResampler {
    rate_in_hz: u32,
    rate_out_hz: u32,
    inner: Option<Inner>,
}

struct Inner {
    fft: Fft<f32>,
    /// Input samples waiting for a full chunk; capacity = the chunk size.
    pending: Vec<f32>,
    chunk_in: usize,
    /// Output scratch, `output_frames_max` long.
    out: Vec<f32>,
    /// Leading output frames still to drop (rubato's delay).
    skip: usize,
    consumed_in: u64,
    emitted_out: u64,
}

impl StreamResampler {
    /// A resampler from `rate_in_hz` to `rate_out_hz` (both 8 000 to 192 000 Hz).
    ///
    /// # Errors
    /// [`DspError::UnsupportedSampleRate`] for a rate outside that range, and
    /// [`DspError::Resampler`] if rubato refuses the pair.
    pub fn new(rate_in_hz: u32, rate_out_hz: u32) -> Result<Self, DspError> {
        for rate in [rate_in_hz, rate_out_hz] {
            if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate) {
                return Err(DspError::UnsupportedSampleRate {
                    rate_hz: rate,
                    processor: "resampler",
                    expected: "8000 to 192000 Hz",
                });
            }
        }
        if rate_in_hz == rate_out_hz {
            return Ok(Self {
                rate_in_hz,
                rate_out_hz,
                inner: None,
            });
        }
        // About 20 ms of input per FFT chunk, as one FFT block (one sub-chunk, see the module
        // documentation): short enough for live use (the front end needs 0.975 s per patch
        // anyway), long enough for a steep anti-aliasing filter. rubato rounds it to a valid
        // multiple for the rate pair. The window is rubato's default for `Fft::new`.
        let chunk_hint = (rate_in_hz as usize / 50).max(64);
        let fft = Fft::<f32>::new_custom(
            rate_in_hz as usize,
            rate_out_hz as usize,
            chunk_hint,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| DspError::Resampler(e.to_string()))?;
        let chunk_in = fft.input_frames_next();
        let out = vec![0.0; fft.output_frames_max()];
        let skip = fft.output_delay();
        Ok(Self {
            rate_in_hz,
            rate_out_hz,
            inner: Some(Inner {
                fft,
                pending: Vec::with_capacity(chunk_in),
                chunk_in,
                out,
                skip,
                consumed_in: 0,
                emitted_out: 0,
            }),
        })
    }

    /// Input sample rate in Hz.
    pub fn rate_in_hz(&self) -> u32 {
        self.rate_in_hz
    }

    /// Output sample rate in Hz.
    pub fn rate_out_hz(&self) -> u32 {
        self.rate_out_hz
    }

    /// The largest slice the callbacks receive from one internal chunk, in samples
    /// (pass-through hands over the caller's slice unchanged).
    pub fn max_output_block(&self) -> usize {
        self.inner.as_ref().map_or(usize::MAX, |i| i.out.len())
    }

    /// Feeds `input` (mono samples at `rate_in_hz`) and hands every converted sample, in
    /// order, to `emit`. Does not allocate.
    pub fn push(&mut self, input: &[f32], mut emit: impl FnMut(&[f32])) {
        let Some(inner) = self.inner.as_mut() else {
            if !input.is_empty() {
                emit(input);
            }
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (inner.chunk_in - inner.pending.len()).min(rest.len());
            inner.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if inner.pending.len() == inner.chunk_in {
                inner.run_chunk(None, &mut emit);
            }
        }
    }

    /// Flushes the samples still inside the resampler, zero-padding the input, so that the
    /// total output is exactly `ceil(input_len · rate_out / rate_in)` samples. The resampler is
    /// then reset and can start a new stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[f32])) {
        let (rate_in, rate_out) = (self.rate_in_hz as u64, self.rate_out_hz as u64);
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let expected = (inner.consumed_in + inner.pending.len() as u64) * rate_out;
        let expected = expected.div_ceil(rate_in);
        let mut limited = |block: &[f32], emitted: &mut u64| {
            let room = expected.saturating_sub(*emitted) as usize;
            let n = room.min(block.len());
            if n > 0 {
                emit(&block[..n]);
                *emitted += n as u64;
            }
        };
        // The last partial chunk, then whole chunks of silence until the delayed tail is out.
        let mut partial = Some(inner.pending.len());
        while inner.emitted_out < expected {
            let len = partial.take().unwrap_or(0);
            inner.pending.resize(inner.chunk_in, 0.0);
            inner.run_chunk_with(Some(len), &mut limited);
        }
        inner.fft.reset();
        inner.pending.clear();
        inner.skip = inner.fft.output_delay();
        inner.consumed_in = 0;
        inner.emitted_out = 0;
    }
}

impl Inner {
    fn run_chunk(&mut self, partial_len: Option<usize>, emit: &mut impl FnMut(&[f32])) {
        self.run_chunk_with(partial_len, &mut |block: &[f32], emitted: &mut u64| {
            emit(block);
            *emitted += block.len() as u64;
        });
    }

    /// Runs one chunk of `pending` through rubato; `partial_len` marks how many of its
    /// samples are real (the rest is padding).
    fn run_chunk_with(
        &mut self,
        partial_len: Option<usize>,
        emit: &mut impl FnMut(&[f32], &mut u64),
    ) {
        let frames_in = self.pending.len();
        let frames_out = self.out.len();
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            partial_len,
            active_channels_mask: None,
        };
        // Both adapters view mono buffers whose sizes rubato itself reported, and the
        // resampler only fails on wrongly sized buffers, so errors here are impossible; a
        // chunk is dropped rather than panicking if that ever changes.
        let produced = match (
            InterleavedSlice::new(&self.pending[..], 1, frames_in),
            InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out),
        ) {
            (Ok(input), Ok(mut output)) => self
                .fft
                .process_into_buffer(&input, &mut output, Some(&indexing))
                .map_or(0, |(_, n)| n),
            _ => 0,
        };
        self.consumed_in += partial_len.unwrap_or(frames_in) as u64;
        self.pending.clear();
        let drop = self.skip.min(produced);
        self.skip -= drop;
        if produced > drop {
            emit(&self.out[drop..produced], &mut self.emitted_out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, secs: f64) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() as f32)
            .collect()
    }

    fn run(rate_in: u32, input: &[f32], block: usize) -> Vec<f32> {
        let mut r = StreamResampler::new(rate_in, 16_000).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(block) {
            r.push(chunk, |s| out.extend_from_slice(s));
        }
        r.finish(|s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn output_length_and_alignment_for_common_rates() {
        for rate in [8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000] {
            let input = sine(rate, 440.0, 1.3);
            let out = run(rate, &input, 777);
            let expected = (input.len() as u64 * 16_000).div_ceil(rate as u64) as usize;
            assert_eq!(out.len(), expected, "rate {rate}");
            // Delay compensated: the 440 Hz sine lines up with the ideal one to within one
            // output sample (away from the edges, where the padding shows).
            let err_at = |lag: f64| {
                out[2000..out.len() - 2000]
                    .iter()
                    .enumerate()
                    .map(|(i, y)| {
                        let t = (i + 2000) as f64 - lag;
                        (y - (2.0 * std::f64::consts::PI * 440.0 * t / 16_000.0).sin() as f32).abs()
                    })
                    .fold(0.0f32, f32::max)
            };
            let max_err = (-20..=20)
                .map(|k| err_at(k as f64 * 0.05))
                .fold(f32::MAX, f32::min);
            assert!(max_err < 0.01, "rate {rate}: max error {max_err}");
        }
    }

    #[test]
    fn block_size_does_not_change_the_result() {
        let input = sine(48_000, 1000.0, 0.7);
        let a = run(48_000, &input, 1);
        let b = run(48_000, &input, 4096);
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_rates_outside_the_range() {
        assert!(matches!(
            StreamResampler::new(0, 16_000),
            Err(DspError::UnsupportedSampleRate { rate_hz: 0, .. })
        ));
        assert!(StreamResampler::new(400_000, 16_000).is_err());
    }

    #[test]
    fn same_rate_passes_through() {
        let input = sine(16_000, 300.0, 0.1);
        assert_eq!(run(16_000, &input, 100), input);
    }

    /// Gain in dB of a full-scale `freq` tone at `rate_in` after conversion to 16 kHz, measured
    /// away from the edges.
    fn tone_gain_db(rate_in: u32, freq: f64) -> f64 {
        let out = run(rate_in, &sine(rate_in, freq, 2.0), 480);
        let mid = &out[4000..out.len() - 4000];
        let rms =
            (mid.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        20.0 * (rms * std::f64::consts::SQRT_2).log10()
    }

    #[test]
    fn passband_is_flat_up_to_the_top_of_the_mel_range() {
        // YAMNet's mel bands reach 7 500 Hz; what the classifier hears there must not be
        // attenuated by the anti-aliasing filter (rubato's default sub-chunks took 6.2 dB off
        // 7 kHz and 38 dB off 7.5 kHz at 48 kHz).
        for rate in [44_100, 48_000, 96_000] {
            for (freq, tolerance_db) in [
                (1000.0, 0.01),
                (4000.0, 0.01),
                (7000.0, 0.05),
                (7400.0, 0.25),
            ] {
                let g = tone_gain_db(rate, freq);
                assert!(
                    g.abs() < tolerance_db,
                    "{rate} Hz input, {freq} Hz tone: gain {g:.3} dB"
                );
            }
        }
    }

    #[test]
    fn removes_content_above_the_new_nyquist() {
        // A 10 kHz tone at 48 kHz cannot exist at 16 kHz: it must be filtered, not aliased.
        let input = sine(48_000, 10_000.0, 1.0);
        let out = run(48_000, &input, 480);
        let rms = (out[1000..15000].iter().map(|x| x * x).sum::<f32>() / 14000.0).sqrt();
        assert!(rms < 1e-3, "alias RMS {rms}");
    }
}
