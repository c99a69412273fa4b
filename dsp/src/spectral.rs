//! Spectral shape of a log-mel patch: tilt, high-frequency ratio and level normalisation.
//!
//! Raised vocal effort (shouting, screaming, angry speech) shifts a voice's energy upwards: the
//! spectrum gets flatter (less negative tilt) and a larger share of it lies above 2 kHz. Both
//! measures are ratios, so they do not depend on the microphone's gain. They are computed from
//! the patch the classifier already has (no second STFT): the log-mel values are turned back into
//! mel magnitudes `M = exp(v) − offset` (the front end computes `v = ln(M + offset)`).
//!
//! Per frame `t` with band magnitudes `M[t][b]` and band centre frequencies `f[b]` (Hz):
//! - frame energy `E[t] = Σ_b M[t][b]²`;
//! - **tilt** = least-squares slope of `20·log10 M[t][b]` against `log2 f[b]` over the bands
//!   centred from 125 Hz to 5 kHz, in dB per octave;
//! - **high-frequency ratio** = `10·log10(Σ_{f[b] ≥ 2 kHz} M² / E[t])`, dB (≤ 0).
//!
//! Both are averaged over the *active* frames: those within [`ACTIVE_RANGE_DB`] of the patch's
//! loudest frame, so pauses and the tail of a sound do not dilute them.
//!
//! [`normalise_gain`] re-levels a patch as if the input had been amplified by a gain, exactly in
//! the log-mel domain (`ln(g·M + offset)`); the pipeline uses it to present quiet sounds to the
//! classifier at a standard level (see the root crate's pipeline).

use crate::logmel::{hertz_to_mel, LogMelConfig};
use crate::DspError;

/// Frames within this many dB of the patch's loudest frame count as active, dB.
pub const ACTIVE_RANGE_DB: f64 = 30.0;
/// Bands centred at or above this frequency count as high frequency, Hz.
pub const HIGH_FREQUENCY_HZ: f64 = 2_000.0;
/// Bands centred at or below this frequency take part in the tilt fit, Hz.
pub const TILT_MAX_HZ: f64 = 5_000.0;

/// The spectral shape of one patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchShape {
    /// Mean spectral tilt over the active frames, dB per octave (speech at normal effort is
    /// around −6 to −9, shouting around −3 to 0).
    pub tilt_db_per_octave: f32,
    /// Mean share of the energy in bands centred at or above 2 kHz over the active frames, dB.
    pub hf_ratio_db: f32,
    /// Number of active frames (of 96 for YAMNet).
    pub active_frames: u32,
}

/// Computes [`PatchShape`]s for patches of one front-end configuration.
#[derive(Debug, Clone)]
pub struct SpectralShape {
    bands: usize,
    frames: usize,
    offset: f64,
    /// `log2` of each band's centre frequency, and whether it takes part in the tilt fit.
    x: Vec<f64>,
    in_fit: Vec<bool>,
    high: Vec<bool>,
    x_mean: f64,
    x_var: f64,
    frame_energy: Vec<f64>,
}

impl SpectralShape {
    /// Prepares the band geometry of `config` (band centres on the HTK mel scale, as the
    /// front end places them).
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] when the configuration is invalid or has fewer than
    /// 3 bands inside the tilt range.
    pub fn new(config: &LogMelConfig) -> Result<Self, DspError> {
        config.validate()?;
        let lo = hertz_to_mel(config.mel_min_hz);
        let hi = hertz_to_mel(config.mel_max_hz);
        let bands = config.mel_bands;
        let centres: Vec<f64> = (0..bands)
            .map(|b| {
                let mel = lo + (hi - lo) * (b + 1) as f64 / (bands + 1) as f64;
                700.0 * ((mel / 1127.0).exp() - 1.0)
            })
            .collect();
        let x: Vec<f64> = centres.iter().map(|f| f.log2()).collect();
        let in_fit: Vec<bool> = centres.iter().map(|&f| f <= TILT_MAX_HZ).collect();
        let n = in_fit.iter().filter(|&&b| b).count();
        if n < 3 {
            return Err(DspError::InvalidParameter {
                name: "mel_bands",
                value: bands.to_string(),
                expected: "at least 3 bands centred below 5 kHz",
            });
        }
        let x_mean = x
            .iter()
            .zip(&in_fit)
            .filter(|p| *p.1)
            .map(|p| p.0)
            .sum::<f64>()
            / n as f64;
        let x_var = x
            .iter()
            .zip(&in_fit)
            .filter(|p| *p.1)
            .map(|p| (p.0 - x_mean).powi(2))
            .sum::<f64>();
        Ok(Self {
            bands,
            frames: config.patch_frames,
            offset: config.log_offset as f64,
            high: centres.iter().map(|&f| f >= HIGH_FREQUENCY_HZ).collect(),
            x,
            in_fit,
            x_mean,
            x_var,
            frame_energy: vec![0.0; config.patch_frames],
        })
    }

    /// The shape of one patch of `frames × bands` log-mel values (frame-major, as the front end
    /// emits them). A patch of another length, or one without energy, gives tilt 0, ratio
    /// −120 dB and no active frames. Non-finite values count as silence.
    pub fn analyse(&mut self, log_mel: &[f32]) -> PatchShape {
        let silent = PatchShape {
            tilt_db_per_octave: 0.0,
            hf_ratio_db: -120.0,
            active_frames: 0,
        };
        if log_mel.len() != self.frames * self.bands {
            return silent;
        }
        let magnitude = |v: f32| {
            let m = (v as f64).exp() - self.offset;
            if m.is_finite() && m > 0.0 {
                m
            } else {
                0.0
            }
        };
        let mut loudest = 0.0f64;
        for (e, frame) in self.frame_energy.iter_mut().zip(log_mel.chunks(self.bands)) {
            *e = frame.iter().map(|&v| magnitude(v).powi(2)).sum();
            loudest = loudest.max(*e);
        }
        if loudest <= 0.0 {
            return silent;
        }
        let floor = loudest * 10f64.powf(-ACTIVE_RANGE_DB / 10.0);
        let (mut tilt_sum, mut hf_sum, mut active) = (0.0, 0.0, 0u32);
        for (&e, frame) in self.frame_energy.iter().zip(log_mel.chunks(self.bands)) {
            if e < floor || e <= 0.0 {
                continue;
            }
            let mut high = 0.0;
            let mut cov = 0.0;
            for (b, &v) in frame.iter().enumerate() {
                let m = magnitude(v);
                if self.high[b] {
                    high += m * m;
                }
                if self.in_fit[b] {
                    // −240 dB for an empty band keeps the fit finite.
                    let db = 20.0 * m.max(1e-12).log10();
                    cov += (self.x[b] - self.x_mean) * db;
                }
            }
            tilt_sum += cov / self.x_var;
            hf_sum += 10.0 * (high / e).max(1e-12).log10();
            active += 1;
        }
        PatchShape {
            tilt_db_per_octave: (tilt_sum / active as f64) as f32,
            hf_ratio_db: (hf_sum / active as f64) as f32,
            active_frames: active,
        }
    }
}

/// Re-levels a log-mel patch in place as if its input had been amplified by `gain_db`:
/// `v ← ln(g · (exp(v) − offset) + offset)` with `g = 10^(gain_db/20)` (the front end's mel
/// values are magnitudes, so a gain scales them linearly). Exact up to f32 rounding; a gain of
/// 0 dB leaves the patch as it is. Non-finite gains are ignored.
pub fn normalise_gain(log_mel: &mut [f32], gain_db: f64, log_offset: f32) {
    if gain_db == 0.0 || !gain_db.is_finite() {
        return;
    }
    let g = 10f64.powf(gain_db / 20.0);
    let offset = log_offset as f64;
    for v in log_mel {
        let m = ((*v as f64).exp() - offset).max(0.0);
        *v = (g * m + offset).ln() as f32;
    }
}

/// A running estimate of the background's mel spectrum by minimum statistics: per band, the
/// minimum over the last `window_frames` frames of the magnitude smoothed over `smooth_frames`
/// frames (after Martin, "Noise power spectral density estimation based on optimal smoothing
/// and minimum statistics", IEEE TSAP 2001, without the bias correction). Transient sounds
/// (a break, a shot, a shout) barely move it; a music bed, traffic or ventilation sets it.
///
/// [`suppress`](Self::suppress) removes it from a patch by magnitude subtraction in the mel
/// domain, `M' = max(M − α·B, floor·M)`, so the classifier hears the event with less of the
/// scene around it. All buffers are allocated in [`new`](Self::new).
#[derive(Debug, Clone)]
pub struct BackgroundSpectrum {
    bands: usize,
    smooth: usize,
    offset: f64,
    /// The last `smooth` frames' magnitudes, ring.
    recent: Vec<f64>,
    recent_len: usize,
    recent_head: usize,
    /// Smoothed magnitudes of the last `window` frames, ring.
    ring: Vec<f64>,
    ring_len: usize,
    ring_head: usize,
    window: usize,
    minimum: Vec<f64>,
    since_update: usize,
}

/// Frames between recomputations of the per-band minimum.
const MINIMUM_UPDATE_FRAMES: usize = 10;

impl BackgroundSpectrum {
    /// An estimator for `bands` mel bands over `window_frames` frames, smoothing over
    /// `smooth_frames` frames; `log_offset` is the front end's (YAMNet: 0.001).
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] for zero bands, a window shorter than the smoothing or a
    /// smoothing of zero frames.
    pub fn new(
        bands: usize,
        window_frames: usize,
        smooth_frames: usize,
        log_offset: f32,
    ) -> Result<Self, DspError> {
        if bands == 0 || smooth_frames == 0 || window_frames < smooth_frames {
            return Err(DspError::InvalidParameter {
                name: "background spectrum",
                value: format!("{bands} bands, {window_frames} frames, smoothing {smooth_frames}"),
                expected: "at least 1 band and 1 ≤ smoothing ≤ window frames",
            });
        }
        Ok(Self {
            bands,
            smooth: smooth_frames,
            offset: log_offset as f64,
            recent: vec![0.0; smooth_frames * bands],
            recent_len: 0,
            recent_head: 0,
            ring: vec![0.0; window_frames * bands],
            ring_len: 0,
            ring_head: 0,
            window: window_frames,
            minimum: vec![0.0; bands],
            since_update: 0,
        })
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.recent_len = 0;
        self.recent_head = 0;
        self.ring_len = 0;
        self.ring_head = 0;
        self.minimum.fill(0.0);
        self.since_update = 0;
    }

    /// True once a full smoothing span has been seen (before that, `suppress` does nothing).
    pub fn is_ready(&self) -> bool {
        self.ring_len > 0
    }

    /// Feeds one log-mel frame (`bands` values, `ln(M + offset)`); other lengths are ignored.
    pub fn push_frame(&mut self, log_mel_frame: &[f32]) {
        if log_mel_frame.len() != self.bands {
            return;
        }
        let b = self.bands;
        let slot = self.recent_head * b;
        for (r, &v) in self.recent[slot..slot + b].iter_mut().zip(log_mel_frame) {
            let m = (v as f64).exp() - self.offset;
            *r = if m.is_finite() { m.max(0.0) } else { 0.0 };
        }
        self.recent_head = (self.recent_head + 1) % self.smooth;
        self.recent_len = (self.recent_len + 1).min(self.smooth);
        if self.recent_len < self.smooth {
            return;
        }
        let slot = ((self.ring_head + self.ring_len) % self.window) * b;
        if self.ring_len == self.window {
            self.ring_head = (self.ring_head + 1) % self.window;
        } else {
            self.ring_len += 1;
        }
        for band in 0..b {
            let mean = (0..self.smooth)
                .map(|f| self.recent[f * b + band])
                .sum::<f64>()
                / self.smooth as f64;
            self.ring[slot + band] = mean;
        }
        self.since_update += 1;
        if self.since_update >= MINIMUM_UPDATE_FRAMES || self.ring_len == 1 {
            self.since_update = 0;
            for band in 0..b {
                self.minimum[band] = (0..self.ring_len)
                    .map(|f| self.ring[f * b + band])
                    .fold(f64::INFINITY, f64::min);
            }
        }
    }

    /// The current estimate, one magnitude per band (0 before [`is_ready`](Self::is_ready)).
    pub fn estimate(&self) -> &[f64] {
        &self.minimum
    }

    /// Subtracts `alpha` times the estimate from every frame of a log-mel patch in place,
    /// keeping at least `floor` (0 to 1) of each cell's magnitude. Does nothing before the
    /// estimator is ready or for a patch whose length is not a multiple of the band count.
    pub fn suppress(&self, log_mel: &mut [f32], alpha: f64, floor: f64) {
        if !self.is_ready() || log_mel.len() % self.bands != 0 {
            return;
        }
        for frame in log_mel.chunks_mut(self.bands) {
            for (v, &bg) in frame.iter_mut().zip(&self.minimum) {
                let m = ((*v as f64).exp() - self.offset).max(0.0);
                let kept = (m - alpha * bg).max(floor * m);
                *v = (kept + self.offset).ln() as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logmel::LogMelFrontEnd;

    fn patch_of(signal: &[f32]) -> Vec<f32> {
        let mut fe = LogMelFrontEnd::new(LogMelConfig::default()).unwrap();
        let mut out = Vec::new();
        fe.push(signal, |p| {
            if out.is_empty() {
                out = p.log_mel.to_vec();
            }
        });
        out
    }

    /// White noise has a flat power spectral density; mel bands widen with frequency, so the
    /// band magnitudes rise: the tilt is positive and most energy is above 2 kHz.
    /// A harmonic tone complex with 1/n² amplitudes (−12 dB per octave per harmonic) has a negative
    /// tilt (band magnitudes sum the harmonics a band holds, so the band tilt is gentler).
    #[test]
    fn tilt_orders_bright_and_dark_sounds() {
        let mut state = 0x1234_5678u32;
        let noise: Vec<f32> = (0..16_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 0.2
            })
            .collect();
        let dark: Vec<f32> = (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (1..40)
                    .map(|n| {
                        (2.0 * std::f32::consts::PI * 150.0 * n as f32 * t).sin() / (n * n) as f32
                    })
                    .sum::<f32>()
                    * 0.05
            })
            .collect();
        let mut shape = SpectralShape::new(&LogMelConfig::default()).unwrap();
        let bright = shape.analyse(&patch_of(&noise));
        let dark = shape.analyse(&patch_of(&dark));
        assert!(bright.tilt_db_per_octave > 0.0, "{bright:?}");
        assert!(dark.tilt_db_per_octave < -3.0, "{dark:?}");
        assert!(bright.hf_ratio_db > -3.0, "{bright:?}");
        assert!(dark.hf_ratio_db < bright.hf_ratio_db - 10.0, "{dark:?}");
        assert_eq!(bright.active_frames, 96);
    }

    /// The shape does not depend on the input gain (away from the log offset).
    #[test]
    fn shape_is_gain_invariant() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        let loud: Vec<f32> = tone.iter().map(|x| x * 0.5).collect();
        let quiet: Vec<f32> = tone.iter().map(|x| x * 0.05).collect();
        let mut shape = SpectralShape::new(&LogMelConfig::default()).unwrap();
        let a = shape.analyse(&patch_of(&loud));
        let b = shape.analyse(&patch_of(&quiet));
        assert!(
            (a.tilt_db_per_octave - b.tilt_db_per_octave).abs() < 0.5,
            "{a:?} {b:?}"
        );
        assert!((a.hf_ratio_db - b.hf_ratio_db).abs() < 0.5, "{a:?} {b:?}");
    }

    /// Normalising a quiet patch by +20 dB gives the patch of the 20 dB louder input.
    #[test]
    fn normalise_gain_matches_an_amplified_input() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.01)
            .collect();
        let louder: Vec<f32> = tone.iter().map(|x| x * 10.0).collect();
        let mut quiet = patch_of(&tone);
        normalise_gain(&mut quiet, 20.0, 0.001);
        let expected = patch_of(&louder);
        let worst = quiet
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "max difference {worst}");
    }

    /// Minimum statistics learn a steady bed and ignore a burst shorter than the window;
    /// suppression then removes the bed and keeps the burst.
    #[test]
    fn background_spectrum_learns_the_bed_not_the_burst() {
        let bands = 4;
        let frame = |m: f64| vec![(m + 0.001f64).ln() as f32; bands];
        let mut bg = BackgroundSpectrum::new(bands, 100, 5, 0.001).unwrap();
        assert!(!bg.is_ready());
        for i in 0..200 {
            // A bed at 0.1 with a 0.5 s burst at 2.0 in the middle.
            bg.push_frame(&frame(if (120..170).contains(&i) { 2.0 } else { 0.1 }));
        }
        for &b in bg.estimate() {
            assert!((b - 0.1).abs() < 1e-6, "{b}");
        }
        let mut patch: Vec<f32> = [frame(0.1), frame(2.0)].concat();
        bg.suppress(&mut patch, 1.0, 0.05);
        let back = |v: f32| (v as f64).exp() - 0.001;
        assert!(
            (back(patch[0]) - 0.005).abs() < 1e-4,
            "bed kept at the floor"
        );
        assert!(
            (back(patch[bands]) - 1.9).abs() < 1e-4,
            "burst minus the bed"
        );
        assert!(BackgroundSpectrum::new(0, 10, 5, 0.001).is_err());
        assert!(BackgroundSpectrum::new(4, 3, 5, 0.001).is_err());
    }

    #[test]
    fn silence_and_bad_lengths_do_not_panic() {
        let mut shape = SpectralShape::new(&LogMelConfig::default()).unwrap();
        let silent = vec![0.001f32.ln(); 96 * 64];
        assert_eq!(shape.analyse(&silent).active_frames, 0);
        assert_eq!(shape.analyse(&[1.0; 10]).active_frames, 0);
        let nan = vec![f32::NAN; 96 * 64];
        assert_eq!(shape.analyse(&nan).active_frames, 0);
    }
}
