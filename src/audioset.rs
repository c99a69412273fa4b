//! The AudioSet ontology labels of YAMNet's 521 outputs (`yamnet_class_map.csv`).

use std::sync::OnceLock;

use crate::classifier::NUM_CLASSES;

/// `yamnet_class_map.csv` as embedded at build time (SHA-256 in `models/SHA256SUMS`).
static CLASS_MAP_CSV: &str = include_str!(concat!(env!("OUT_DIR"), "/yamnet_class_map.csv"));

/// One AudioSet class: row index in the model's output, ontology id, display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSetClass {
    /// Row in `scores` (0 to 520).
    pub index: usize,
    /// AudioSet ontology id, e.g. `/m/09x0r`.
    pub mid: String,
    /// Display name, e.g. `Speech`.
    pub display_name: String,
}

/// All 521 classes in output order. Parsed once from the embedded CSV.
pub fn classes() -> &'static [AudioSetClass] {
    static CLASSES: OnceLock<Vec<AudioSetClass>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let mut rows = csv::Reader::from_reader(CLASS_MAP_CSV.as_bytes());
        let parsed: Vec<AudioSetClass> = rows
            .records()
            .filter_map(Result::ok)
            .filter_map(|r| {
                Some(AudioSetClass {
                    index: r.get(0)?.parse().ok()?,
                    mid: r.get(1)?.to_owned(),
                    display_name: r.get(2)?.to_owned(),
                })
            })
            .collect();
        // The file's SHA-256 was verified at build time; a test checks all 521 rows parse.
        debug_assert_eq!(parsed.len(), NUM_CLASSES);
        parsed
    })
}

/// Display name of output row `index`, or `"?"` outside 0 to 520.
pub fn display_name(index: usize) -> &'static str {
    classes()
        .get(index)
        .map_or("?", |c| c.display_name.as_str())
}

/// The `k` highest-scoring classes of one score vector, best first, as (row index, score).
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx.into_iter().take(k).map(|i| (i, scores[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rows_parse_in_order() {
        let c = classes();
        assert_eq!(c.len(), NUM_CLASSES);
        assert!(c.iter().enumerate().all(|(i, c)| c.index == i));
        assert_eq!(display_name(0), "Speech");
        assert_eq!(display_name(1), "Child speech, kid speaking");
        assert_eq!(display_name(435), "Glass");
        assert_eq!(display_name(421), "Gunshot, gunfire");
        assert_eq!(display_name(9999), "?");
    }

    #[test]
    fn top_k_orders_by_score() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5], 2), vec![(1, 0.9), (2, 0.5)]);
    }
}
