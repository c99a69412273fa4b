//! The cascade gate (`pipeline::Gate`, README "Performance") on real audio: it skips the
//! classifier where no detector could start, and the detections are the same with it off.
//!
//! Needs `../shared/eval` beside the repository (skipped without it on a developer machine,
//! fails under CI).

mod common;

use std::path::{Path, PathBuf};

use common::{analyze_json, read_clip, write_wav, WavFormat};
use serde_json::Value;

const GLASS_CLIP: &str =
    "eval/glass_break/gh-glassbreakDetector__model_release_asp_ias_gb_sim_v0.0.1_data_events_GBTD-01-01-LP-gb11_000.wav";

/// (class, start_s, end_s) of every detection, rounded to the millisecond.
fn detections(report: &Value) -> Vec<(String, i64, i64)> {
    report["detections"]
        .as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let ms = |k: &str| (d[k].as_f64().expect(k) * 1000.0).round() as i64;
            (
                d["class"].as_str().unwrap().to_owned(),
                ms("start_s"),
                ms("end_s"),
            )
        })
        .collect()
}

fn patches(report: &Value) -> (u64, u64) {
    let s = &report["summary"];
    (
        s["patches"].as_u64().expect("summary.patches"),
        s["classified"].as_u64().expect("summary.classified"),
    )
}

/// 20 s of room noise at about −65 dBFS, the glass clip, then 5 s of the same noise.
fn glass_after_room_tone(shared: &Path, dir: &Path) -> PathBuf {
    let (rate, clip) = read_clip(&shared.join(GLASS_CLIP));
    let mut seed = 0x9e37_79b9_u32;
    let mut noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed as f32 / u32::MAX as f32 - 0.5) * 0.002
            })
            .collect()
    };
    let mut audio = noise(20 * rate as usize);
    audio.extend(clip.iter().zip(noise(clip.len())).map(|(a, b)| a + b));
    audio.extend(noise(5 * rate as usize));
    let path = dir.join("glass_after_room_tone.wav");
    write_wav(&path, rate, 1, WavFormat::S16, &audio);
    path
}

#[test]
fn the_gate_skips_room_tone_and_keeps_the_glass_break() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = glass_after_room_tone(&shared, dir.path());
    let files = [wav];
    let (code, gated, err) = analyze_json(&files, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, full, err) = analyze_json(&files, &["--no-gate"]);
    assert_eq!(code, 0, "{err}");
    let (g, f) = (&gated[0], &full[0]);
    eprintln!(
        "gated {:?} {:?}\nungated {:?} {:?}",
        patches(g),
        detections(g),
        patches(f),
        detections(f)
    );
    let (total, classified) = patches(g);
    assert_eq!(
        patches(f),
        (total, total),
        "--no-gate classifies every patch"
    );
    // The first 5 s (background warm-up, about 10 patches) and the patches around the clip are
    // classified; the room tone after the warm-up is not.
    assert!(
        classified >= 12 && classified <= total / 2,
        "{classified} of {total} patches classified"
    );
    let found = detections(g);
    assert!(
        found
            .iter()
            .any(|(class, start, _)| class == "glass_break" && *start >= 19_000),
        "the glass break is detected with the gate: {found:?}"
    );
    assert_eq!(
        found,
        detections(f),
        "the same detections with and without the gate"
    );
}

/// Scenes from `eval/scenes/scenes.csv` (every 17th row: all three classes, all SNRs, music,
/// speech and ambience beds): the same detections, start and end, with and without the gate.
#[test]
fn scene_detections_are_the_same_with_and_without_the_gate() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let scenes = shared.join("eval/scenes");
    let mut r = csv::Reader::from_path(scenes.join("scenes.csv")).expect("scenes.csv");
    let files: Vec<PathBuf> = r
        .records()
        .step_by(17)
        .map(|rec| scenes.join(&rec.expect("scenes.csv row")[0]))
        .collect();
    assert_eq!(files.len(), 20);
    let (code, gated, err) = analyze_json(&files, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, full, err) = analyze_json(&files, &["--no-gate"]);
    assert_eq!(code, 0, "{err}");
    let (mut total, mut classified, mut found) = (0, 0, 0);
    for ((g, f), file) in gated.iter().zip(&full).zip(&files) {
        assert_eq!(
            detections(g),
            detections(f),
            "{}: detections differ with the gate",
            file.display()
        );
        total += patches(g).0;
        classified += patches(g).1;
        found += detections(g).len();
    }
    eprintln!("{found} detections; {classified} of {total} patches classified with the gate");
    assert!(found >= 5, "the scenes hold detections to compare: {found}");
    assert!(classified < total, "the gate skipped no patch of 20 scenes");
}
