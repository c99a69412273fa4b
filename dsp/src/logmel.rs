//! The YAMNet log-mel front end: framing, STFT and `[96, 64]` log-mel patches.
//!
//! Follows the front end published with YAMNet (TensorFlow models repository,
//! `research/audioset/yamnet/params.py` and `features.py`), which is also the float32 front end
//! inside `yamnet_waveform.onnx`:
//!
//! - 16 000 Hz mono input in [-1, 1];
//! - frames of 400 samples (25 ms) every 160 samples (10 ms), periodic Hann window, zero-padded
//!   to an FFT length of 512; **magnitude** spectrum |X| (257 bins);
//! - 64 mel bands from 125 Hz to 7 500 Hz on the HTK mel scale (mel = 1127 · ln(1 + f / 700)),
//!   triangular weights computed as TensorFlow's `tf.signal.linear_to_mel_weight_matrix` does
//!   (the DC bin gets zero weight);
//! - `ln(mel + 0.001)`;
//! - windowing, FFT, magnitude and mel weighting are computed in f64 and rounded to f32 once,
//!   at the end, so the result is the exact log-mel to f32 precision on every platform. (The
//!   ONNX/TFLite graph computes its STFT as a float32 matrix product; against its output the
//!   difference is that product's rounding, up to ~2e-3 in cells whose mel energy is near the
//!   0.001 offset in frames near full scale, and ~1e-5 typically. See
//!   `tests/frontend_vs_model.rs`.)
//! - patches of 96 frames (0.96 s of frames, 15 600 samples = 0.975 s of audio), one every
//!   `patch_hop_frames` frames (48 = 0.48 s by default).
//!
//! At the end of a stream, [`LogMelFrontEnd::finish`] zero-pads the input as YAMNet's own
//! inference code does (`yamnet.py`, `_pad_waveform`): to at least one patch, and then to a whole
//! number of patch hops, so the last partial patch is not lost.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::DspError;

/// Parameters of the log-mel front end. [`Default`] gives YAMNet's.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMelConfig {
    /// Input sample rate in Hz (YAMNet: 16 000).
    pub sample_rate_hz: u32,
    /// STFT window length in samples (YAMNet: 400 = 25 ms).
    pub window_len: usize,
    /// STFT hop length in samples (YAMNet: 160 = 10 ms).
    pub hop_len: usize,
    /// FFT length in samples; frames are zero-padded to it (YAMNet: 512).
    pub fft_len: usize,
    /// Number of mel bands (YAMNet: 64).
    pub mel_bands: usize,
    /// Lower edge of the lowest mel band in Hz (YAMNet: 125).
    pub mel_min_hz: f64,
    /// Upper edge of the highest mel band in Hz (YAMNet: 7 500).
    pub mel_max_hz: f64,
    /// Offset added before the natural log (YAMNet: 0.001).
    pub log_offset: f32,
    /// Frames per patch (YAMNet: 96).
    pub patch_frames: usize,
    /// Frames between the starts of consecutive patches (YAMNet reference: 48 = 0.48 s).
    pub patch_hop_frames: usize,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            sample_rate_hz: 16_000,
            window_len: 400,
            hop_len: 160,
            fft_len: 512,
            mel_bands: 64,
            mel_min_hz: 125.0,
            mel_max_hz: 7_500.0,
            log_offset: 0.001,
            patch_frames: 96,
            patch_hop_frames: 48,
        }
    }
}

impl LogMelConfig {
    /// Samples of audio one patch covers: `(patch_frames − 1) · hop_len + window_len`
    /// (YAMNet: 15 600 = 0.975 s).
    pub fn patch_len_samples(&self) -> usize {
        (self.patch_frames - 1) * self.hop_len + self.window_len
    }

    /// Samples between the starts of consecutive patches: `patch_hop_frames · hop_len`
    /// (YAMNet: 7 680 = 0.48 s).
    pub fn patch_hop_samples(&self) -> usize {
        self.patch_hop_frames * self.hop_len
    }

    /// Number of STFT bins, `fft_len / 2 + 1` (YAMNet: 257).
    pub fn fft_bins(&self) -> usize {
        self.fft_len / 2 + 1
    }

    /// Checks every field; the error names the field, its value and what is allowed.
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] for the first field out of range.
    pub fn validate(&self) -> Result<(), DspError> {
        fn bad(name: &'static str, value: impl ToString, expected: &'static str) -> DspError {
            DspError::InvalidParameter {
                name,
                value: value.to_string(),
                expected,
            }
        }
        if !(8_000..=192_000).contains(&self.sample_rate_hz) {
            return Err(bad(
                "sample_rate_hz",
                self.sample_rate_hz,
                "8000 to 192000 Hz",
            ));
        }
        if self.window_len < 2 {
            return Err(bad("window_len", self.window_len, "at least 2 samples"));
        }
        if self.hop_len == 0 || self.hop_len > self.window_len {
            return Err(bad("hop_len", self.hop_len, "1 to window_len samples"));
        }
        if self.fft_len < self.window_len || self.fft_len % 2 != 0 {
            return Err(bad(
                "fft_len",
                self.fft_len,
                "an even number of samples, at least window_len",
            ));
        }
        let nyquist = self.sample_rate_hz as f64 / 2.0;
        let ordered = self.mel_min_hz >= 0.0 && self.mel_min_hz < self.mel_max_hz;
        if !ordered {
            return Err(bad(
                "mel_min_hz",
                self.mel_min_hz,
                "at least 0 Hz and below mel_max_hz",
            ));
        }
        if self.mel_max_hz.is_nan() || self.mel_max_hz > nyquist {
            return Err(bad(
                "mel_max_hz",
                self.mel_max_hz,
                "at most half the sample rate",
            ));
        }
        if self.mel_bands == 0 || self.mel_bands > 512 {
            return Err(bad("mel_bands", self.mel_bands, "1 to 512"));
        }
        if self.log_offset.is_nan() || self.log_offset <= 0.0 || self.log_offset.is_infinite() {
            return Err(bad("log_offset", self.log_offset, "a finite value above 0"));
        }
        if self.patch_frames == 0 {
            return Err(bad("patch_frames", self.patch_frames, "at least 1"));
        }
        if self.patch_hop_frames == 0 || self.patch_hop_frames > self.patch_frames {
            return Err(bad(
                "patch_hop_frames",
                self.patch_hop_frames,
                "1 to patch_frames",
            ));
        }
        Ok(())
    }
}

/// The HTK mel scale used by YAMNet: `1127 · ln(1 + f / 700)`, f in Hz.
pub fn hertz_to_mel(freq_hz: f64) -> f64 {
    1127.0 * (1.0 + freq_hz / 700.0).ln()
}

/// A triangular mel filterbank over magnitude-spectrum bins, stored sparsely.
///
/// Weights are those of TensorFlow's `tf.signal.linear_to_mel_weight_matrix(num_mel_bins,
/// num_spectrogram_bins, sample_rate, lower_edge_hertz, upper_edge_hertz)`: bin centres at
/// `k · (fs/2) / (bins − 1)`, band edges evenly spaced on the mel scale, weight =
/// `max(0, min(rising slope, falling slope))` measured in mel, and zero weight for the DC bin.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    /// For each band: (first bin, offset into `weights`, number of bins).
    bands: Vec<(usize, usize, usize)>,
    weights: Vec<f64>,
    bins: usize,
}

impl MelFilterbank {
    /// Builds the filterbank for `bins` spectrum bins (`fft_len / 2 + 1`) at `sample_rate_hz`.
    pub fn new(
        mel_bands: usize,
        bins: usize,
        sample_rate_hz: u32,
        min_hz: f64,
        max_hz: f64,
    ) -> Self {
        let nyquist = sample_rate_hz as f64 / 2.0;
        let lo = hertz_to_mel(min_hz);
        let hi = hertz_to_mel(max_hz);
        let edge = |i: usize| lo + (hi - lo) * i as f64 / (mel_bands + 1) as f64;
        let mut bands = Vec::with_capacity(mel_bands);
        let mut weights = Vec::new();
        for b in 0..mel_bands {
            let (lower, centre, upper) = (edge(b), edge(b + 1), edge(b + 2));
            // Bin 0 (DC) always gets zero weight, as in TensorFlow.
            let w: Vec<f64> = (0..bins)
                .map(|k| {
                    if k == 0 {
                        return 0.0;
                    }
                    let mel = hertz_to_mel(nyquist * k as f64 / (bins - 1) as f64);
                    let rising = (mel - lower) / (centre - lower);
                    let falling = (upper - mel) / (upper - centre);
                    rising.min(falling).max(0.0)
                })
                .collect();
            // A triangle covers one contiguous run of bins; store just that run.
            let first = w.iter().position(|&x| x > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&x| x > 0.0).map_or(first, |l| l + 1);
            bands.push((first, weights.len(), last - first));
            weights.extend_from_slice(&w[first..last]);
        }
        Self {
            bands,
            weights,
            bins,
        }
    }

    /// Number of mel bands.
    pub fn bands(&self) -> usize {
        self.bands.len()
    }

    /// The dense weight matrix, `[bins][bands]` row-major, as TensorFlow returns it (f64).
    pub fn dense(&self) -> Vec<f64> {
        let n = self.bands.len();
        let mut m = vec![0.0; self.bins * n];
        for (b, &(first, offset, len)) in self.bands.iter().enumerate() {
            for (j, w) in self.weights[offset..offset + len].iter().enumerate() {
                m[(first + j) * n + b] = *w;
            }
        }
        m
    }

    /// Applies the filterbank: `out[b] = Σ_k weight[k][b] · magnitude[k]`, summed in f64.
    /// `magnitude` has `bins` values, `out` one per band.
    pub fn apply(&self, magnitude: &[f64], out: &mut [f64]) {
        for (o, &(first, offset, len)) in out.iter_mut().zip(&self.bands) {
            *o = self.weights[offset..offset + len]
                .iter()
                .zip(&magnitude[first..first + len])
                .map(|(w, m)| w * m)
                .sum::<f64>();
        }
    }
}

/// One log-mel patch, the classifier's input.
#[derive(Debug, Clone, Copy)]
pub struct Patch<'a> {
    /// Patch number in the stream, from 0.
    pub index: u64,
    /// Index of the patch's first input sample in the stream (at the front end's rate).
    pub start_sample: u64,
    /// `patch_frames × mel_bands` values, frame-major (`[96, 64]` for YAMNet): `ln(mel + offset)`.
    pub log_mel: &'a [f32],
}

/// Streaming YAMNet front end: samples in, [`Patch`]es out.
///
/// Allocates at construction only. Feeding the same samples in slices of any size gives the
/// same patches.
pub struct LogMelFrontEnd {
    config: LogMelConfig,
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    mel: MelFilterbank,
    /// The samples of the frame being assembled (up to `window_len`).
    frame_buf: Vec<f32>,
    fft_in: Vec<f64>,
    fft_out: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    magnitude: Vec<f64>,
    mel_energy: Vec<f64>,
    /// Log-mel frames of the patch being assembled, frame-major.
    frames: Vec<f32>,
    samples_in: u64,
    patches_out: u64,
}

impl LogMelFrontEnd {
    /// Builds the front end.
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] when `config` does not [validate](LogMelConfig::validate).
    pub fn new(config: LogMelConfig) -> Result<Self, DspError> {
        config.validate()?;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(config.fft_len);
        // Periodic Hann window, as tf.signal.hann_window(periodic=True).
        let n = config.window_len;
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let mel = MelFilterbank::new(
            config.mel_bands,
            config.fft_bins(),
            config.sample_rate_hz,
            config.mel_min_hz,
            config.mel_max_hz,
        );
        Ok(Self {
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            fft,
            window,
            mel,
            frame_buf: Vec::with_capacity(config.window_len),
            magnitude: vec![0.0; config.fft_bins()],
            mel_energy: vec![0.0; config.mel_bands],
            frames: Vec::with_capacity(config.patch_frames * config.mel_bands),
            samples_in: 0,
            patches_out: 0,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// The mel filterbank in use.
    pub fn filterbank(&self) -> &MelFilterbank {
        &self.mel
    }

    /// Input samples consumed so far.
    pub fn samples_in(&self) -> u64 {
        self.samples_in
    }

    /// Feeds mono samples at `sample_rate_hz` and hands every completed patch to `emit`.
    /// Does not allocate.
    pub fn push(&mut self, samples: &[f32], mut emit: impl FnMut(&Patch<'_>)) {
        let (win, hop) = (self.config.window_len, self.config.hop_len);
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (win - self.frame_buf.len()).min(rest.len());
            self.frame_buf.extend_from_slice(&rest[..take]);
            self.samples_in += take as u64;
            rest = &rest[take..];
            if self.frame_buf.len() == win {
                self.compute_frame();
                self.frame_buf.copy_within(hop.., 0);
                self.frame_buf.truncate(win - hop);
                self.emit_if_complete(&mut emit);
            }
        }
    }

    /// Ends the stream: zero-pads as YAMNet does (to at least one whole patch, then to a whole
    /// number of patch hops), emits the remaining patches and resets for a new stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&Patch<'_>)) {
        let n = self.samples_in;
        let patch = self.config.patch_len_samples() as u64;
        let hop = self.config.patch_hop_samples() as u64;
        let padded = n.max(patch);
        let after_first = padded - patch;
        let padded = patch + after_first.div_ceil(hop) * hop;
        let mut missing = padded - n;
        const ZEROS: [f32; 256] = [0.0; 256];
        while missing > 0 {
            let k = missing.min(ZEROS.len() as u64) as usize;
            self.push(&ZEROS[..k], &mut emit);
            missing -= k as u64;
        }
        self.frame_buf.clear();
        self.frames.clear();
        self.samples_in = 0;
        self.patches_out = 0;
    }

    /// Appends the log-mel of the frame in `frame_buf` (`window_len` samples) to `frames`.
    fn compute_frame(&mut self) {
        let win = self.config.window_len;
        for ((d, s), w) in self.fft_in[..win]
            .iter_mut()
            .zip(&self.frame_buf)
            .zip(&self.window)
        {
            *d = *s as f64 * w;
        }
        self.fft_in[win..].fill(0.0);
        // Lengths come from the planner itself, so the FFT cannot fail.
        let _ = self.fft.process_with_scratch(
            &mut self.fft_in,
            &mut self.fft_out,
            &mut self.fft_scratch,
        );
        // |X| as sqrt(re² + im²): `Complex::norm` calls libm's hypot, which guards against
        // overflow no audio frame can reach and cost more than the FFT itself (criterion,
        // `frontend/hop_16k`).
        for (m, c) in self.magnitude.iter_mut().zip(&self.fft_out) {
            *m = (c.re * c.re + c.im * c.im).sqrt();
        }
        self.mel.apply(&self.magnitude, &mut self.mel_energy);
        let offset = self.config.log_offset as f64;
        self.frames
            .extend(self.mel_energy.iter().map(|m| (m + offset).ln() as f32));
    }

    fn emit_if_complete(&mut self, emit: &mut impl FnMut(&Patch<'_>)) {
        let bands = self.config.mel_bands;
        if self.frames.len() < self.config.patch_frames * bands {
            return;
        }
        emit(&Patch {
            index: self.patches_out,
            start_sample: self.patches_out * self.config.patch_hop_samples() as u64,
            log_mel: &self.frames,
        });
        self.patches_out += 1;
        let drop = self.config.patch_hop_frames * bands;
        self.frames.copy_within(drop.., 0);
        self.frames.truncate(self.frames.len() - drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(fe: &mut LogMelFrontEnd, input: &[f32], block: usize) -> Vec<(u64, Vec<f32>)> {
        let mut out = Vec::new();
        for chunk in input.chunks(block.max(1)) {
            fe.push(chunk, |p| out.push((p.start_sample, p.log_mel.to_vec())));
        }
        fe.finish(|p| out.push((p.start_sample, p.log_mel.to_vec())));
        out
    }

    fn noise(n: usize) -> Vec<f32> {
        // Deterministic white-ish noise (LCG).
        let mut s = 12345u32;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn patch_count_follows_yamnet_padding() {
        let cfg = LogMelConfig::default();
        let mut fe = LogMelFrontEnd::new(cfg).unwrap();
        // YAMNet: n samples → 1 + ceil(max(0, n − 15600) / 7680) patches.
        for n in [1usize, 8000, 15_600, 15_601, 23_280, 23_281, 160_000] {
            let patches = collect(&mut fe, &noise(n), 1000);
            let expected = 1 + (n.saturating_sub(15_600)).div_ceil(7_680);
            assert_eq!(patches.len(), expected, "n = {n}");
            for (i, (start, data)) in patches.iter().enumerate() {
                assert_eq!(*start, i as u64 * 7680);
                assert_eq!(data.len(), 96 * 64);
            }
        }
    }

    #[test]
    fn slicing_does_not_change_patches() {
        let input = noise(40_000);
        let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
        let a = collect(&mut fe, &input, 1);
        let b = collect(&mut fe, &input, 40_000);
        let c = collect(&mut fe, &input, 333);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn silence_gives_the_log_offset() {
        let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
        let patches = collect(&mut fe, &[0.0; 16_000], 512);
        let expected = 0.001f32.ln();
        assert!(patches[0].1.iter().all(|v| (v - expected).abs() < 1e-6));
    }

    #[test]
    fn a_tone_lands_in_the_right_mel_band() {
        // 1 kHz: the band whose centre is nearest 1 kHz on the mel scale must be the largest.
        let cfg = LogMelConfig::default();
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let mut fe = LogMelFrontEnd::new(cfg.clone()).unwrap();
        let patches = collect(&mut fe, &tone, 1600);
        let frame = &patches[0].1[10 * 64..11 * 64];
        let argmax = (0..64)
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        let lo = hertz_to_mel(125.0);
        let hi = hertz_to_mel(7500.0);
        let centre = |b: usize| lo + (hi - lo) * (b + 1) as f64 / 65.0;
        let target = hertz_to_mel(1000.0);
        let nearest = (0..64)
            .min_by(|&a, &b| {
                (centre(a) - target)
                    .abs()
                    .total_cmp(&(centre(b) - target).abs())
            })
            .unwrap();
        assert_eq!(argmax, nearest);
    }

    #[test]
    fn filterbank_matches_tensorflow_properties() {
        let fb = MelFilterbank::new(64, 257, 16_000, 125.0, 7500.0);
        let dense = fb.dense();
        // DC row is zero; weights are within [0, 1]; every band has at least one bin.
        assert!(dense[..64].iter().all(|&w| w == 0.0));
        assert!(dense.iter().all(|&w| (0.0..=1.0).contains(&w)));
        for b in 0..64 {
            assert!((0..257).any(|k| dense[k * 64 + b] > 0.0), "band {b} empty");
        }
        // Bins above 7500 Hz (k > 240) carry no weight.
        assert!(dense[241 * 64..].iter().all(|&w| w == 0.0));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let cfg = LogMelConfig {
            patch_hop_frames: 0,
            ..LogMelConfig::default()
        };
        let err = LogMelFrontEnd::new(cfg).err().unwrap();
        assert!(err.to_string().contains("patch_hop_frames"), "{err}");
        let cfg = LogMelConfig {
            mel_max_hz: 9000.0,
            ..LogMelConfig::default()
        };
        assert!(LogMelFrontEnd::new(cfg)
            .err()
            .unwrap()
            .to_string()
            .contains("mel_max_hz"));
    }
}
