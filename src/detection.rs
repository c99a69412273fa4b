//! First detections: consecutive patches whose class score reaches the class threshold merge
//! into one [`Detection`] with its start, end, peak score and peak level.
//!
//! This is the plain per-class thresholding open-source NVRs do on YAMNet; the detectors with
//! hysteresis, hold time and cooldown build on it.

use serde::Serialize;

use crate::classes::{EarshotClass, Thresholds};
use crate::pipeline::PatchReport;

/// A span of audio in which one class was heard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The Earshot class.
    pub class: EarshotClass,
    /// Start of the first patch above threshold, seconds from the start of the input.
    pub start_s: f64,
    /// End of the last patch above threshold, seconds (clamped to the input's duration).
    pub end_s: f64,
    /// Highest class score over the detection, in [0, 1].
    pub peak_score: f32,
    /// Start of the patch with the highest score, seconds.
    pub peak_time_s: f64,
    /// Highest A-weighted Fast level (LAFmax) over the detection's patches, dBFS.
    pub lafmax_dbfs: f64,
    /// Highest C-weighted peak level (LCpeak) over the detection's patches, dBFS.
    pub lcpeak_dbfs: f64,
    /// Number of patches merged.
    pub patches: u32,
}

/// Merges patch reports into detections, per class.
#[derive(Debug, Clone)]
pub struct DetectionMerger {
    thresholds: Thresholds,
    open: [Option<Detection>; EarshotClass::ALL.len()],
}

impl DetectionMerger {
    /// A merger with the given per-class thresholds.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            open: Default::default(),
        }
    }

    /// Takes the next patch (in order) and appends every detection it closes to `done`.
    pub fn push(&mut self, patch: &PatchReport, done: &mut Vec<Detection>) {
        for class in EarshotClass::ALL {
            let score = patch.class_scores[class.slot()];
            let slot = &mut self.open[class.slot()];
            if score >= self.thresholds.get(class) {
                match slot {
                    Some(d) => {
                        d.end_s = patch.end_s;
                        d.patches += 1;
                        d.lafmax_dbfs = d.lafmax_dbfs.max(patch.level.lafmax_dbfs);
                        d.lcpeak_dbfs = d.lcpeak_dbfs.max(patch.level.lcpeak_dbfs);
                        if score > d.peak_score {
                            d.peak_score = score;
                            d.peak_time_s = patch.start_s;
                        }
                    }
                    None => {
                        *slot = Some(Detection {
                            class,
                            start_s: patch.start_s,
                            end_s: patch.end_s,
                            peak_score: score,
                            peak_time_s: patch.start_s,
                            lafmax_dbfs: patch.level.lafmax_dbfs,
                            lcpeak_dbfs: patch.level.lcpeak_dbfs,
                            patches: 1,
                        })
                    }
                }
            } else if let Some(d) = slot.take() {
                done.push(d);
            }
        }
    }

    /// Closes the detections still open at the end of an input of `duration_s` seconds.
    /// Detections are then sorted by start time.
    pub fn finish(&mut self, duration_s: f64, done: &mut Vec<Detection>) {
        done.extend(self.open.iter_mut().filter_map(Option::take));
        for d in done.iter_mut() {
            d.end_s = d.end_s.min(duration_s).max(d.start_s);
        }
        done.sort_by(|a, b| a.start_s.total_cmp(&b.start_s).then(a.class.cmp(&b.class)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ClassifierOutput;
    use crate::pipeline::LevelSummary;

    fn patch(i: u64, glass: f32, level: f64) -> PatchReport {
        PatchReport {
            index: i,
            start_s: i as f64 * 0.48,
            end_s: i as f64 * 0.48 + 0.975,
            class_scores: [glass, 0.0, 0.0, 0.0],
            output: ClassifierOutput {
                scores: vec![],
                logits: vec![],
                embedding: vec![],
            },
            level: LevelSummary {
                laeq_dbfs: level,
                lafmax_dbfs: level,
                lafmin_dbfs: level,
                lcpeak_dbfs: level + 3.0,
            },
        }
    }

    #[test]
    fn consecutive_patches_merge_and_gaps_split() {
        let mut m = DetectionMerger::new(Thresholds::default());
        let mut done = Vec::new();
        let seq = [
            (0.1, -40.0),
            (0.6, -30.0),
            (0.9, -20.0),
            (0.7, -25.0),
            (0.2, -40.0),
            (0.55, -35.0),
        ];
        for (i, (s, l)) in seq.iter().enumerate() {
            m.push(&patch(i as u64, *s, *l), &mut done);
        }
        m.finish(3.0, &mut done);
        assert_eq!(done.len(), 2);
        let d = &done[0];
        assert_eq!(d.class, EarshotClass::GlassBreak);
        assert!((d.start_s - 0.48).abs() < 1e-9);
        assert!((d.end_s - (3.0 * 0.48 + 0.975)).abs() < 1e-9);
        assert_eq!(d.peak_score, 0.9);
        assert!((d.peak_time_s - 0.96).abs() < 1e-9);
        assert_eq!(d.lafmax_dbfs, -20.0);
        assert_eq!(d.patches, 3);
        // The last one is still open at the end and is clamped to the duration.
        assert!((done[1].start_s - 2.4).abs() < 1e-9);
        assert_eq!(done[1].end_s, 3.0);
    }

    #[test]
    fn nothing_below_threshold() {
        let mut m = DetectionMerger::new(Thresholds::default());
        let mut done = Vec::new();
        for i in 0..10 {
            m.push(&patch(i, 0.49, -20.0), &mut done);
        }
        m.finish(10.0, &mut done);
        assert!(done.is_empty());
    }
}
