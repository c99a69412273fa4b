//! `earshot analyze --format json` over the labelled clips of `../shared/eval` (needs
//! `../shared`; skipped without it on a developer machine, fails under CI).
//!
//! Acceptance (issue 2): at least 16 of the 25 glass_break clips flagged `glass_break`, at most
//! 3 of the 126 negatives. The per-class counts for every class are printed for the record.

mod common;

use std::collections::BTreeMap;

#[test]
fn glass_break_is_found_and_negatives_stay_quiet() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let clips = common::eval_clips(&shared);
    let files: Vec<_> = clips.iter().map(|c| c.file.clone()).collect();
    let (code, reports, stderr) = common::analyze_json(&files, &[]);
    assert_eq!(code, 0, "earshot analyze failed: {stderr}");
    assert_eq!(reports.len(), clips.len(), "one report per clip");

    // counts[eval class][earshot class] = clips with at least one detection of that class.
    let mut counts: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (clip, report) in clips.iter().zip(&reports) {
        assert_eq!(
            report["file"].as_str(),
            Some(clip.file.to_str().unwrap()),
            "reports come in the order of the files"
        );
        *totals.entry(&clip.class).or_default() += 1;
        let row = counts.entry(&clip.class).or_default();
        for class in common::detected(report) {
            *row.entry(class).or_default() += 1;
        }
    }
    for (class, total) in &totals {
        eprintln!(
            "{class:18} {total:3} clips, flagged as: {:?}",
            counts[class]
        );
    }
    let flagged = |eval: &str, class: &str| counts[eval].get(class).copied().unwrap_or(0);
    assert_eq!(totals["glass_break"], 25);
    assert_eq!(totals["negative"], 126);
    assert!(
        flagged("glass_break", "glass_break") >= 16,
        "glass_break recall {}/25",
        flagged("glass_break", "glass_break")
    );
    assert!(
        flagged("negative", "glass_break") <= 3,
        "{}/126 negatives flagged as glass_break",
        flagged("negative", "glass_break")
    );
}
