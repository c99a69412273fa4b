//! The learned background level: a running low percentile of the level over a sliding window.
//!
//! A percentile ignores events by construction: with the default 20th percentile over 60 s, any
//! louder sound that fills less than 80 % of the window (48 s) leaves the estimate where the
//! background is, and a quieter one less than 20 % (12 s) does the same. A lasting change of the
//! scene is learned after those times. That is the behaviour adaptive loudness detection wants:
//! "louder than usual here" rather than "louder than a moment ago".
//!
//! Levels are pushed at a fixed interval (e.g. the LAeq of each 100 ms, in dBFS) and kept as
//! 0.5 dB histogram bins from −120 to 0 dBFS in a ring the size of the window, so an update is
//! O(1), a query O(bins), and nothing allocates after construction.

use crate::DspError;

/// Lowest level the histogram holds, dBFS; lower levels count as this.
pub const MIN_DBFS: f64 = -120.0;
/// Highest level the histogram holds, dBFS; higher levels count as this.
pub const MAX_DBFS: f64 = 0.0;
/// Histogram bin width, dB.
pub const BIN_DB: f64 = 0.5;
const BINS: usize = ((MAX_DBFS - MIN_DBFS) / BIN_DB) as usize + 1;

/// Parameters of the background tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackgroundConfig {
    /// Length of the sliding window, seconds (default 60).
    pub window_s: f64,
    /// Which percentile of the window is the background, in (0, 1) (default 0.2).
    pub percentile: f64,
    /// Seconds between pushed levels (default 0.1).
    pub interval_s: f64,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            window_s: 60.0,
            percentile: 0.2,
            interval_s: 0.1,
        }
    }
}

/// Sliding-window percentile of pushed levels.
#[derive(Debug, Clone)]
pub struct BackgroundTracker {
    config: BackgroundConfig,
    /// Bin of each level in the window, oldest at `head` once full.
    ring: Vec<u16>,
    head: usize,
    len: usize,
    hist: Vec<u32>,
}

impl BackgroundTracker {
    /// A tracker with `config`.
    ///
    /// # Errors
    /// [`DspError::InvalidParameter`] for a window shorter than one interval or longer than
    /// 24 hours, an interval outside 1 ms to 60 s, or a percentile outside (0, 1).
    pub fn new(config: BackgroundConfig) -> Result<Self, DspError> {
        let bad = |name, value: f64, expected| DspError::InvalidParameter {
            name,
            value: value.to_string(),
            expected,
        };
        if !(0.001..=60.0).contains(&config.interval_s) {
            return Err(bad("interval_s", config.interval_s, "0.001 to 60 s"));
        }
        if !(config.interval_s..=86_400.0).contains(&config.window_s) {
            return Err(bad("window_s", config.window_s, "interval_s to 86400 s"));
        }
        if !(config.percentile > 0.0 && config.percentile < 1.0) {
            return Err(bad("percentile", config.percentile, "above 0 and below 1"));
        }
        let capacity = (config.window_s / config.interval_s).round().max(1.0) as usize;
        Ok(Self {
            config,
            ring: vec![0; capacity],
            head: 0,
            len: 0,
            hist: vec![0; BINS],
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &BackgroundConfig {
        &self.config
    }

    /// Seconds a lasting rise of the level takes to become the background:
    /// `(1 − percentile) · window_s` (48 s by default). Shorter loud events are ignored.
    pub fn learning_time_up_s(&self) -> f64 {
        (1.0 - self.config.percentile) * self.config.window_s
    }

    /// Seconds a lasting drop of the level takes to become the background:
    /// `percentile · window_s` (12 s by default).
    pub fn learning_time_down_s(&self) -> f64 {
        self.config.percentile * self.config.window_s
    }

    /// Pushes the level of the next interval, dBFS (NaN counts as the floor).
    pub fn push(&mut self, level_dbfs: f64) {
        let clamped = if level_dbfs.is_nan() {
            MIN_DBFS
        } else {
            level_dbfs.clamp(MIN_DBFS, MAX_DBFS)
        };
        let bin = ((clamped - MIN_DBFS) / BIN_DB).round() as usize;
        let cap = self.ring.len();
        if self.len == cap {
            let old = self.ring[self.head] as usize;
            self.hist[old] -= 1;
            self.ring[self.head] = bin as u16;
            self.head = (self.head + 1) % cap;
        } else {
            self.ring[(self.head + self.len) % cap] = bin as u16;
            self.len += 1;
        }
        self.hist[bin] += 1;
    }

    /// The background estimate in dBFS (to the nearest 0.5 dB), or `None` before the first push.
    /// Until the window has filled, the percentile of what has been pushed so far.
    pub fn estimate_dbfs(&self) -> Option<f64> {
        if self.len == 0 {
            return None;
        }
        // The smallest level with at least `percentile` of the window at or below it.
        let rank = ((self.config.percentile * self.len as f64).ceil() as u32).max(1);
        let mut seen = 0;
        for (bin, &count) in self.hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(MIN_DBFS + bin as f64 * BIN_DB);
            }
        }
        Some(MAX_DBFS)
    }

    /// Forgets everything pushed.
    pub fn reset(&mut self) {
        self.hist.fill(0);
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `secs` of level `db` (±1 dB of deterministic jitter) at 10 per second.
    fn feed(t: &mut BackgroundTracker, db: f64, secs: f64, trace: &mut Vec<f64>) {
        for i in 0..(secs * 10.0).round() as usize {
            t.push(db + ((i * 7919) % 21) as f64 / 10.0 - 1.0);
            trace.push(t.estimate_dbfs().unwrap());
        }
    }

    #[test]
    fn steady_level_is_learned() {
        let mut t = BackgroundTracker::new(BackgroundConfig::default()).unwrap();
        assert_eq!(t.estimate_dbfs(), None);
        let mut trace = Vec::new();
        feed(&mut t, -50.0, 30.0, &mut trace);
        let e = t.estimate_dbfs().unwrap();
        assert!((-51.0..=-49.0).contains(&e), "{e}");
    }

    #[test]
    fn a_ten_second_loud_event_leaves_the_background_alone() {
        let mut t = BackgroundTracker::new(BackgroundConfig::default()).unwrap();
        let mut trace = Vec::new();
        feed(&mut t, -50.0, 60.0, &mut trace);
        trace.clear();
        feed(&mut t, -20.0, 10.0, &mut trace); // +30 dB for 10 s
        feed(&mut t, -50.0, 60.0, &mut trace);
        let worst = trace.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            worst <= -49.0,
            "estimate rose to {worst} dBFS during the event"
        );
    }

    #[test]
    fn a_lasting_rise_is_learned_after_the_documented_time() {
        let mut t = BackgroundTracker::new(BackgroundConfig::default()).unwrap();
        let mut trace = Vec::new();
        feed(&mut t, -50.0, 60.0, &mut trace);
        trace.clear();
        feed(&mut t, -35.0, 70.0, &mut trace);
        let learned = trace.iter().position(|&e| e >= -37.0).unwrap() as f64 / 10.0;
        let expected = t.learning_time_up_s(); // 48 s
        assert!(
            (learned - expected).abs() <= 1.5,
            "learned after {learned} s, documented {expected} s"
        );
        // And a drop back after percentile · window.
        trace.clear();
        feed(&mut t, -50.0, 30.0, &mut trace);
        let learned = trace.iter().position(|&e| e <= -48.0).unwrap() as f64 / 10.0;
        let expected = t.learning_time_down_s(); // 12 s
        assert!(
            (learned - expected).abs() <= 1.5,
            "dropped after {learned} s, documented {expected} s"
        );
    }

    #[test]
    fn out_of_range_and_invalid_input() {
        let mut t = BackgroundTracker::new(BackgroundConfig::default()).unwrap();
        t.push(f64::NAN);
        assert_eq!(t.estimate_dbfs(), Some(MIN_DBFS));
        t.reset();
        t.push(12.0);
        assert_eq!(t.estimate_dbfs(), Some(MAX_DBFS));
        let e = BackgroundTracker::new(BackgroundConfig {
            percentile: 1.0,
            ..BackgroundConfig::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("percentile"), "{e}");
    }
}
