//! A sound level meter after IEC 61672-1:2013: frequency weighting (clause 5.5), exponential
//! time weighting F and S (clause 5.8 "Time-weighted sound level"), time-averaged level LAeq
//! (clause 5.9), C-weighted peak level (clause 5.13 "C-weighted peak sound level") and the
//! calibration to dB SPL (clause 5.2, reference 20 µPa).
//!
//! Levels are computed in dBFS and are **RMS-referenced**: dBFS = 10·log10(mean square), so a
//! full-scale sine reads −3.01 dBFS and a full-scale square wave 0 dBFS. The peak level LCpeak is
//! 20·log10(|x|max), so one [`Calibration`] offset converts both to dB SPL. Silence reads
//! [`LEVEL_FLOOR_DBFS`], never −∞ or NaN (these values go to JSON).
//!
//! The [`LevelMeter`] runs on every sample: an A- and a C-weighting [`WeightingFilter`], and
//! the Fast (τ = 0.125 s) and Slow (τ = 1 s) exponential detectors on the squared A-weighted
//! signal, y ← y + (x² − y)·(1 − exp(−1/(τ·fs))). It summarises each block of `block_len`
//! samples (the pipeline uses 10 ms) in a [`LevelBlock`]; [`LevelStats`] accumulates blocks over
//! a reporting interval (LAeq,T, LAFmax, LAFmin, LCpeak).

use crate::weighting::{FrequencyWeighting, WeightingFilter};
use crate::DspError;

/// The level reported for silence (and for anything lower), dBFS. Never −∞ or NaN.
pub const LEVEL_FLOOR_DBFS: f64 = -120.0;

/// Level in dBFS of a mean square (of samples in full-scale units): 10·log10(ms), floored at
/// [`LEVEL_FLOOR_DBFS`]. Zero, negative and NaN inputs give the floor; +∞ stays +∞.
pub fn db_from_mean_square(ms: f64) -> f64 {
    // f64::max returns the other operand when one is NaN, so NaN and −∞ both become the floor.
    (10.0 * ms.log10()).max(LEVEL_FLOOR_DBFS)
}

/// Level in dBFS of a peak amplitude (full-scale units): 20·log10(|peak|), floored at
/// [`LEVEL_FLOOR_DBFS`]. Zero and NaN give the floor; ±∞ gives +∞.
pub fn db_from_amplitude(peak: f64) -> f64 {
    (20.0 * peak.abs().log10()).max(LEVEL_FLOOR_DBFS)
}

/// Exponential time weighting of IEC 61672-1:2013 (clause 5.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeWeighting {
    /// F (Fast): τ = 0.125 s; a switched-off steady signal decays at 34.7 dB/s.
    Fast,
    /// S (Slow): τ = 1 s; decay 4.3 dB/s.
    Slow,
}

impl TimeWeighting {
    /// The exponential time constant τ, seconds (0.125 s for Fast, 1 s for Slow).
    pub fn time_constant_s(self) -> f64 {
        match self {
            Self::Fast => 0.125,
            Self::Slow => 1.0,
        }
    }

    /// The per-sample smoothing coefficient `1 − exp(−1/(τ·fs))` at `sample_rate_hz` Hz.
    pub fn coefficient(self, sample_rate_hz: u32) -> f64 {
        1.0 - (-1.0 / (self.time_constant_s() * f64::from(sample_rate_hz))).exp()
    }
}

/// Conversion from dBFS to dB SPL (re 20 µPa) for one microphone and gain setting:
/// dB SPL = dBFS + `offset_db`.
///
/// Calibration procedure: put a sound calibrator producing 94 dB SPL (1 Pa) at 1 kHz on the
/// microphone, read the A-weighted level (LAeq over a few seconds, or LAF once it has settled)
/// in dBFS, and store `offset_db = 94 − reading` ([`Calibration::from_reference_reading`]).
/// A-weighting is 0 dB at 1 kHz, so the reading is the calibrator's level. The same offset
/// applies to every level of this module, peak levels included.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Calibration {
    /// dB SPL minus dBFS, dB.
    pub offset_db: f64,
}

impl Calibration {
    /// The calibration from a reference reading: `reading_dbfs` is what the meter showed (dBFS)
    /// for a calibrator of `reference_db_spl` dB SPL (usually 94.0); offset = reference − reading.
    pub fn from_reference_reading(reading_dbfs: f64, reference_db_spl: f64) -> Self {
        Self {
            offset_db: reference_db_spl - reading_dbfs,
        }
    }

    /// Converts a level in dBFS to dB SPL (re 20 µPa).
    pub fn to_db_spl(&self, dbfs: f64) -> f64 {
        dbfs + self.offset_db
    }
}

/// The levels of one block of samples (IEC 61672-1:2013 quantities, before calibration).
///
/// Energies and time-weighted values are stored linearly, as mean squares of the weighted
/// signal in full-scale units; the `*_db` methods convert them to dBFS (RMS-referenced, floored
/// at [`LEVEL_FLOOR_DBFS`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelBlock {
    /// Index of the block's first sample in the stream (at the meter's sample rate).
    pub start_sample: u64,
    /// Number of samples in the block (the meter's `block_len`).
    pub len: usize,
    /// Sum over the block of the squared A-weighted samples (full-scale units²).
    pub a_energy: f64,
    /// Largest Fast A-weighted time-weighted mean square within the block (LAFmax, linear).
    pub laf_max_ms: f64,
    /// Smallest Fast A-weighted time-weighted mean square within the block (LAFmin, linear).
    pub laf_min_ms: f64,
    /// Fast A-weighted time-weighted mean square at the block's last sample (LAF, linear).
    pub laf_end_ms: f64,
    /// Slow A-weighted time-weighted mean square at the block's last sample (LAS, linear).
    pub las_end_ms: f64,
    /// Largest absolute C-weighted sample in the block (LCpeak, linear, full-scale units).
    pub c_peak: f64,
}

impl LevelBlock {
    /// LAeq over the block (A-weighted equivalent continuous level), dBFS.
    pub fn laeq_db(&self) -> f64 {
        if self.len == 0 {
            return LEVEL_FLOOR_DBFS;
        }
        db_from_mean_square(self.a_energy / self.len as f64)
    }

    /// LAF at the end of the block (A-weighted, Fast time-weighted level), dBFS.
    pub fn laf_db(&self) -> f64 {
        db_from_mean_square(self.laf_end_ms)
    }

    /// LAS at the end of the block (A-weighted, Slow time-weighted level), dBFS.
    pub fn las_db(&self) -> f64 {
        db_from_mean_square(self.las_end_ms)
    }

    /// LAFmax within the block, dBFS.
    pub fn lafmax_db(&self) -> f64 {
        db_from_mean_square(self.laf_max_ms)
    }

    /// LAFmin within the block, dBFS.
    pub fn lafmin_db(&self) -> f64 {
        db_from_mean_square(self.laf_min_ms)
    }

    /// LCpeak within the block (C-weighted peak level, 20·log10|x|max), dBFS.
    pub fn lcpeak_db(&self) -> f64 {
        db_from_amplitude(self.c_peak)
    }
}

/// Levels accumulated over an interval of whole blocks: LAeq,T, LAFmax, LAFmin, LCpeak.
///
/// `Default` (and [`reset`](Self::reset)) give empty stats, whose levels all read
/// [`LEVEL_FLOOR_DBFS`]. Copy-only, allocation-free.
#[derive(Clone, Copy, Debug, Default)]
pub struct LevelStats {
    a_energy: f64,
    samples: u64,
    laf_max_ms: f64,
    laf_min_ms: f64,
    c_peak: f64,
}

impl LevelStats {
    /// Adds one block to the interval.
    pub fn add(&mut self, block: &LevelBlock) {
        self.merge(&LevelStats {
            a_energy: block.a_energy,
            samples: block.len as u64,
            laf_max_ms: block.laf_max_ms,
            laf_min_ms: block.laf_min_ms,
            c_peak: block.c_peak,
        });
    }

    /// Adds another interval's stats to this one (energies add, maxima and minima combine).
    pub fn merge(&mut self, other: &LevelStats) {
        if other.samples == 0 {
            return;
        }
        if self.samples == 0 {
            *self = *other;
            return;
        }
        self.a_energy += other.a_energy;
        self.samples += other.samples;
        self.laf_max_ms = self.laf_max_ms.max(other.laf_max_ms);
        self.laf_min_ms = self.laf_min_ms.min(other.laf_min_ms);
        self.c_peak = self.c_peak.max(other.c_peak);
    }

    /// Empties the stats.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Number of samples accumulated (divide by the sample rate for seconds).
    pub fn duration_samples(&self) -> u64 {
        self.samples
    }

    /// LAeq,T over the accumulated interval (energy mean, no time constant), dBFS.
    pub fn laeq_db(&self) -> f64 {
        if self.samples == 0 {
            return LEVEL_FLOOR_DBFS;
        }
        db_from_mean_square(self.a_energy / self.samples as f64)
    }

    /// LAFmax over the interval, dBFS.
    pub fn lafmax_db(&self) -> f64 {
        if self.samples == 0 {
            return LEVEL_FLOOR_DBFS;
        }
        db_from_mean_square(self.laf_max_ms)
    }

    /// LAFmin over the interval, dBFS.
    pub fn lafmin_db(&self) -> f64 {
        if self.samples == 0 {
            return LEVEL_FLOOR_DBFS;
        }
        db_from_mean_square(self.laf_min_ms)
    }

    /// LCpeak over the interval, dBFS (20·log10 of the largest |C-weighted sample|).
    pub fn lcpeak_db(&self) -> f64 {
        if self.samples == 0 {
            return LEVEL_FLOOR_DBFS;
        }
        db_from_amplitude(self.c_peak)
    }
}

/// A streaming IEC 61672-1:2013 sound level meter: samples in, one [`LevelBlock`] per
/// `block_len` samples out.
///
/// Every sample goes through an A- and a C-weighting filter ([`WeightingFilter`], designed for
/// the actual rate) and the Fast and Slow exponential detectors on the squared A-weighted
/// signal. Input slices may have any length; a partial block is carried to the next call, so the
/// blocks do not depend on how the stream is sliced. Allocation-free after [`new`](Self::new).
///
/// Samples are full-scale f32 (±1.0). Non-finite samples (NaN, ±∞) are treated as 0.0 so one bad
/// sample cannot poison the filters' state for the rest of the run.
#[derive(Clone, Debug)]
pub struct LevelMeter {
    sample_rate_hz: u32,
    block_len: usize,
    a_filter: WeightingFilter,
    c_filter: WeightingFilter,
    fast_coeff: f64,
    slow_coeff: f64,
    laf_ms: f64,
    las_ms: f64,
    // The block being assembled.
    block_start: u64,
    in_block: usize,
    a_energy: f64,
    laf_max_ms: f64,
    laf_min_ms: f64,
    c_peak: f64,
}

impl LevelMeter {
    /// A meter for `sample_rate_hz` Hz (8 000 ..= 192 000) emitting one block per `block_len`
    /// samples (e.g. 480 = 10 ms at 48 kHz).
    ///
    /// # Errors
    /// [`DspError::UnsupportedSampleRate`] for a rate outside 8 000 ..= 192 000 Hz,
    /// [`DspError::InvalidParameter`] for `block_len == 0`.
    pub fn new(sample_rate_hz: u32, block_len: usize) -> Result<Self, DspError> {
        let a_filter = WeightingFilter::new(FrequencyWeighting::A, sample_rate_hz)?;
        let c_filter = WeightingFilter::new(FrequencyWeighting::C, sample_rate_hz)?;
        if block_len == 0 {
            return Err(DspError::InvalidParameter {
                name: "block_len",
                value: block_len.to_string(),
                expected: "at least 1 sample",
            });
        }
        Ok(Self {
            sample_rate_hz,
            block_len,
            a_filter,
            c_filter,
            fast_coeff: TimeWeighting::Fast.coefficient(sample_rate_hz),
            slow_coeff: TimeWeighting::Slow.coefficient(sample_rate_hz),
            laf_ms: 0.0,
            las_ms: 0.0,
            block_start: 0,
            in_block: 0,
            a_energy: 0.0,
            laf_max_ms: f64::NEG_INFINITY,
            laf_min_ms: f64::INFINITY,
            c_peak: 0.0,
        })
    }

    /// The sample rate, Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    /// Samples per emitted block.
    pub fn block_len(&self) -> usize {
        self.block_len
    }

    /// Samples consumed so far (including those of the partial block).
    pub fn samples_in(&self) -> u64 {
        self.block_start + self.in_block as u64
    }

    /// Back to the state after [`new`](Self::new): filters and detectors at rest, sample count
    /// zero, partial block dropped.
    pub fn reset(&mut self) {
        self.a_filter.reset();
        self.c_filter.reset();
        self.laf_ms = 0.0;
        self.las_ms = 0.0;
        self.block_start = 0;
        self.start_block();
    }

    fn start_block(&mut self) {
        self.in_block = 0;
        self.a_energy = 0.0;
        self.laf_max_ms = f64::NEG_INFINITY;
        self.laf_min_ms = f64::INFINITY;
        self.c_peak = 0.0;
    }

    /// Feeds mono samples (full scale ±1.0) and calls `emit` for every block of `block_len`
    /// samples completed by them. Allocation-free.
    pub fn process(&mut self, samples: &[f32], mut emit: impl FnMut(&LevelBlock)) {
        for &x in samples {
            let x = if x.is_finite() { f64::from(x) } else { 0.0 };
            let a = self.a_filter.process_f64(x);
            let c = self.c_filter.process_f64(x);
            let a2 = a * a;
            self.laf_ms += (a2 - self.laf_ms) * self.fast_coeff;
            self.las_ms += (a2 - self.las_ms) * self.slow_coeff;
            self.a_energy += a2;
            self.laf_max_ms = self.laf_max_ms.max(self.laf_ms);
            self.laf_min_ms = self.laf_min_ms.min(self.laf_ms);
            self.c_peak = self.c_peak.max(c.abs());
            self.in_block += 1;
            if self.in_block == self.block_len {
                let block = LevelBlock {
                    start_sample: self.block_start,
                    len: self.block_len,
                    a_energy: self.a_energy,
                    laf_max_ms: self.laf_max_ms,
                    laf_min_ms: self.laf_min_ms,
                    laf_end_ms: self.laf_ms,
                    las_end_ms: self.las_ms,
                    c_peak: self.c_peak,
                };
                self.block_start += self.block_len as u64;
                self.start_block();
                self.a_filter.flush_subnormals();
                self.c_filter.flush_subnormals();
                emit(&block);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_and_helpers() {
        assert_eq!(db_from_mean_square(0.0), LEVEL_FLOOR_DBFS);
        assert_eq!(db_from_mean_square(-1.0), LEVEL_FLOOR_DBFS);
        assert_eq!(db_from_mean_square(f64::NAN), LEVEL_FLOOR_DBFS);
        assert_eq!(db_from_amplitude(0.0), LEVEL_FLOOR_DBFS);
        assert!((db_from_mean_square(0.5) + 3.0103).abs() < 1e-4);
        assert!((db_from_amplitude(-0.1) + 20.0).abs() < 1e-12);
        let empty = LevelStats::default();
        assert_eq!(empty.laeq_db(), LEVEL_FLOOR_DBFS);
        assert_eq!(empty.lafmax_db(), LEVEL_FLOOR_DBFS);
        assert_eq!(empty.lafmin_db(), LEVEL_FLOOR_DBFS);
        assert_eq!(empty.lcpeak_db(), LEVEL_FLOOR_DBFS);
    }

    #[test]
    fn silence_reads_the_floor_and_bad_samples_do_not_poison() {
        let mut m = LevelMeter::new(48_000, 480).unwrap();
        let mut blocks = Vec::new();
        m.process(&[0.0; 960], |b| blocks.push(*b));
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].laeq_db(), LEVEL_FLOOR_DBFS);
        assert_eq!(blocks[1].lcpeak_db(), LEVEL_FLOOR_DBFS);
        let mut bad = [0.0f32; 480];
        bad[7] = f32::NAN;
        bad[8] = f32::INFINITY;
        bad[9] = f32::NEG_INFINITY;
        m.process(&bad, |b| blocks.push(*b));
        assert_eq!(blocks[2].laeq_db(), LEVEL_FLOOR_DBFS);
        assert!(blocks
            .iter()
            .all(|b| b.laf_db().is_finite() && b.lcpeak_db().is_finite()));
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            LevelMeter::new(48_000, 0),
            Err(DspError::InvalidParameter {
                name: "block_len",
                ..
            })
        ));
        assert!(matches!(
            LevelMeter::new(4_000, 40),
            Err(DspError::UnsupportedSampleRate { .. })
        ));
    }
}
