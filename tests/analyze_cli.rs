//! `earshot analyze` on odd and broken inputs, its output formats and its exit codes.
//!
//! Inputs are made by the test: broken files from bytes, odd encodings from a real glass clip of
//! `../shared/eval` (those tests need `../shared`) or from a tone whose levels are known.

mod common;

use std::path::{Path, PathBuf};

use common::{analyze_json, detected, write_wav, WavFormat};

/// A sine with 20 ms raised-cosine fades at both ends, so no switching click adds to its
/// C-weighted peak (an abrupt start or stop overshoots by about 0.3 dB).
fn tone(rate: u32, freq: f64, amplitude: f64, secs: f64) -> Vec<f32> {
    let fade = 0.02 * rate as f64;
    let n = (rate as f64 * secs) as usize;
    (0..n)
        .map(|i| {
            let edge = (i as f64).min((n - 1 - i) as f64);
            let ramp = if edge < fade {
                0.5 - 0.5 * (std::f64::consts::PI * edge / fade).cos()
            } else {
                1.0
            };
            (ramp * amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin())
                as f32
        })
        .collect()
}

/// Writes [`tone`] as a 16-bit mono WAV at `path`.
fn write_tone(path: &Path, rate: u32, freq: f64, amplitude: f64, secs: f64) {
    write_wav(
        path,
        rate,
        1,
        WavFormat::S16,
        &tone(rate, freq, amplitude, secs),
    );
}

/// A canonical 16-bit mono header for `frames` frames, with rate and channels as given.
fn header(rate: u32, channels: u16, frames: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.wav");
    write_wav(
        &p,
        rate.max(1),
        channels.max(1),
        WavFormat::S16,
        &vec![0.0; frames as usize * channels.max(1) as usize],
    );
    let mut h = std::fs::read(&p).unwrap();
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h
}

fn assert_rejected(path: &Path, expect_in_message: &[&str]) {
    let (code, reports, stderr) = analyze_json(&[path.to_owned()], &[]);
    assert_eq!(
        code,
        2,
        "{}: expected exit 2, stderr: {stderr}",
        path.display()
    );
    assert!(reports.is_empty(), "no report for a rejected file");
    assert!(
        stderr.contains(&path.display().to_string()),
        "message names the file: {stderr}"
    );
    for word in expect_in_message {
        assert!(
            stderr.to_lowercase().contains(&word.to_lowercase()),
            "message says '{word}': {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn broken_files_are_rejected_with_exit_2_and_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    assert_rejected(&at("empty.wav", b""), &["empty"]);
    let full = header(16_000, 1, 100);
    assert_rejected(&at("truncated_header.wav", &full[..20]), &[]);
    assert_rejected(
        &at(
            "text.wav",
            b"This is a text file, not audio.\nSecond line.\n",
        ),
        &[],
    );
    assert_rejected(&at("zero_rate.wav", &header(0, 1, 1600)), &["sample rate"]);
    assert_rejected(
        &at("zero_channels.wav", &header(16_000, 0, 1600)),
        &["channel"],
    );
    assert_rejected(&dir.path().join("missing.wav"), &[]);
}

#[test]
fn several_files_one_broken_still_reports_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_tone(&good, 16_000, 1000.0, 0.5, 2.0);
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"nope").unwrap();
    let (code, reports, stderr) = analyze_json(&[bad.clone(), good.clone()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["file"].as_str(), Some(good.to_str().unwrap()));
    assert!(stderr.contains(bad.to_str().unwrap()));
}

#[test]
fn tone_levels_at_8_khz_and_48_khz_are_measured_right() {
    // A 1 kHz sine of amplitude 0.5 reads 20·log10(0.5) − 3.01 = −9.03 dBFS LAeq (A(1 kHz) = 0),
    // and its C-weighted peak 20·log10(0.5) = −6.02 dBFS.
    let dir = tempfile::tempdir().unwrap();
    for rate in [8_000, 48_000] {
        let p = dir.path().join(format!("tone_{rate}.wav"));
        write_tone(&p, rate, 1000.0, 0.5, 3.0);
        let (code, reports, stderr) = analyze_json(&[p], &[]);
        assert_eq!(code, 0, "{stderr}");
        let r = &reports[0];
        assert_eq!(r["sample_rate_hz"], rate);
        let s = &r["summary"];
        assert!((s["duration_s"].as_f64().unwrap() - 3.0).abs() < 1e-6);
        let laeq = s["laeq_dbfs"].as_f64().unwrap();
        assert!((laeq + 9.03).abs() < 0.1, "{rate} Hz: LAeq {laeq}");
        let lcpeak = s["lcpeak_dbfs"].as_f64().unwrap();
        assert!((lcpeak + 6.02).abs() < 0.2, "{rate} Hz: LCpeak {lcpeak}");
        // 3 s at YAMNet's hop: 1 + ceil((48000 − 15600) / 7680) = 6 patches.
        assert_eq!(s["patches"], 6);
    }
}

/// The first glass clip of `../shared/eval` that `analyze` flags as glass_break, with its report.
fn detected_glass_clip(shared: &Path) -> (PathBuf, serde_json::Value) {
    let clips = common::eval_clips(shared);
    for clip in clips.iter().filter(|c| c.class == "glass_break") {
        let (code, reports, _) = analyze_json(std::slice::from_ref(&clip.file), &[]);
        if code == 0 && detected(&reports[0]).contains("glass_break") {
            return (clip.file.clone(), reports.into_iter().next().unwrap());
        }
    }
    panic!("no glass clip is detected at all");
}

fn detections(r: &serde_json::Value) -> Vec<(String, f64, f64)> {
    r["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["class"].as_str().unwrap().to_owned(),
                d["start_s"].as_f64().unwrap(),
                d["end_s"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_pcm_width_float_and_channel_count_is_analysed_like_the_original() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let (clip, original) = detected_glass_clip(&shared);
    let (rate, samples) = common::read_clip(&clip);
    let dir = tempfile::tempdir().unwrap();
    let peak = samples.iter().fold(0.0f32, |a, b| a.max(b.abs()));

    // Exact re-encodings of the same samples: identical detections.
    let six: Vec<f32> = samples.iter().flat_map(|&s| [s; 6]).collect();
    for (name, format, channels, data) in [
        ("s24.wav", WavFormat::S24, 1, &samples),
        ("s32.wav", WavFormat::S32, 1, &samples),
        ("f32.wav", WavFormat::F32, 1, &samples),
        ("six_channels.wav", WavFormat::S16, 6, &six),
    ] {
        let p = dir.path().join(name);
        write_wav(&p, rate, channels, format, data);
        let (code, reports, stderr) = analyze_json(&[p], &[]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(reports[0]["channels"], channels, "{name}");
        assert_eq!(detections(&reports[0]), detections(&original), "{name}");
        assert_eq!(
            reports[0]["summary"]["laeq_dbfs"], original["summary"]["laeq_dbfs"],
            "{name}"
        );
    }

    // 8-bit unsigned: coarser, so the same level (±0.5 dB) and still glass, scaled to full
    // range first so 8 bits keep the clip above their noise floor.
    let loud: Vec<f32> = samples.iter().map(|s| s / peak * 0.9).collect();
    let p16 = dir.path().join("loud16.wav");
    let p8 = dir.path().join("u8.wav");
    write_wav(&p16, rate, 1, WavFormat::S16, &loud);
    write_wav(&p8, rate, 1, WavFormat::U8, &loud);
    let (code, reports, stderr) = analyze_json(&[p16, p8], &[]);
    assert_eq!(code, 0, "{stderr}");
    let level = |r: &serde_json::Value| r["summary"]["laeq_dbfs"].as_f64().unwrap();
    assert!((level(&reports[0]) - level(&reports[1])).abs() < 0.5);
    assert!(
        detected(&reports[1]).contains("glass_break"),
        "u8: {:?}",
        reports[1]["detections"]
    );
}

#[test]
fn a_48_khz_copy_gives_the_same_detections_through_the_resampler() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let (clip, original) = detected_glass_clip(&shared);
    let (_, samples) = common::read_clip(&clip);
    let mut up = earshot_dsp::resample::StreamResampler::new(16_000, 48_000).unwrap();
    let mut s48 = Vec::new();
    up.push(&samples, |b| s48.extend_from_slice(b));
    up.finish(|b| s48.extend_from_slice(b));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("glass48k.wav");
    write_wav(&p, 48_000, 1, WavFormat::F32, &s48);
    let (code, reports, stderr) = analyze_json(&[p], &[]);
    assert_eq!(code, 0, "{stderr}");
    let (a, b) = (detections(&original), detections(&reports[0]));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert!(
            (x.1 - y.1).abs() < 0.01 && (x.2 - y.2).abs() < 0.01,
            "{a:?} vs {b:?}"
        );
    }
}

/// Mean and largest |difference| between the score a 16 kHz report's patches give their top
/// AudioSet class and the score the same patches of another report give that class (0 when it
/// is not among that report's top classes).
fn top_class_score_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<f64> {
    let (pa, pb) = (
        a["patches"].as_array().unwrap(),
        b["patches"].as_array().unwrap(),
    );
    assert_eq!(pa.len(), pb.len(), "{} patches", a["file"]);
    pa.iter()
        .zip(pb)
        .map(|(x, y)| {
            let top = &x["top"][0];
            let score = y["top"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["index"] == top["index"])
                .map_or(0.0, |t| t["score"].as_f64().unwrap());
            (top["score"].as_f64().unwrap() - score).abs()
        })
        .collect()
}

#[test]
fn a_48_khz_copy_scores_like_the_original() {
    // Needs ../shared (eval clips). A camera captures at 48 kHz; what the classifier hears after
    // the 48 → 16 kHz conversion must be what it hears from the 16 kHz original, up to the top
    // of YAMNet's mel range (7.5 kHz). Every 6th clip of labels.csv (all classes and negatives),
    // converted to 48 kHz by Earshot's own resampler (16 → 48 kHz, whose passband is flat), is
    // analysed beside its original. With the anti-aliasing filter that cut from about 6.5 kHz
    // (rubato's default sub-chunks), the top AudioSet class's score moved by 0.062 on average
    // over these 166 patches (largest 0.39); with the filter flat to 7.5 kHz, by 0.013 (0.17).
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<_> = common::eval_clips(&shared).into_iter().step_by(6).collect();
    let mut files = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        let (rate, samples) = common::read_clip(&clip.file);
        assert_eq!(rate, 16_000, "{}", clip.file.display());
        let mut up = earshot_dsp::resample::StreamResampler::new(16_000, 48_000).unwrap();
        let mut s48 = Vec::new();
        up.push(&samples, |b| s48.extend_from_slice(b));
        up.finish(|b| s48.extend_from_slice(b));
        let p = dir.path().join(format!("{i}.wav"));
        write_wav(&p, 48_000, 1, WavFormat::F32, &s48);
        files.push(clip.file.clone());
        files.push(p);
    }
    let (code, reports, stderr) = analyze_json(&files, &["--scores", "--top", "5", "--no-gate"]);
    assert_eq!(code, 0, "{stderr}");
    let mut all = Vec::new();
    for pair in reports.chunks(2) {
        let d = top_class_score_differences(&pair[0], &pair[1]);
        all.extend(d);
    }
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let max = all.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "{} clips, {} patches: top AudioSet class score |Δ| mean {mean:.4}, max {max:.3}",
        clips.len(),
        all.len()
    );
    assert!(
        mean < 0.025,
        "mean |Δ| {mean:.4} over {} patches",
        all.len()
    );
}

#[test]
fn truncated_data_is_analysed_as_far_as_it_goes_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.wav");
    write_tone(&full, 16_000, 440.0, 0.3, 4.0);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..44 + 2 * 16_000]).unwrap(); // header + 1.0 s of 4 s
    let (code, reports, stderr) = analyze_json(&[cut], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reports[0]["truncated"], true);
    assert!((reports[0]["summary"]["duration_s"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!(stderr.contains("ends before its header says"), "{stderr}");
}

#[test]
fn formats_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tone.wav");
    write_tone(&p, 16_000, 1000.0, 0.5, 2.0);
    // `earshot ARGS… FILE…`
    let run = |args: &[&str], files: &[&Path]| {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.extend(files.iter().map(|f| f.as_os_str()));
        common::earshot(&all)
    };

    // --scores: a timeline with Earshot class scores and top AudioSet classes.
    let (code, reports, _) = analyze_json(std::slice::from_ref(&p), &["--scores", "--top", "2"]);
    assert_eq!(code, 0);
    let patches = reports[0]["patches"].as_array().unwrap();
    // 2 s: 1 + ceil((32000 − 15600) / 7680) = 4 patches.
    assert_eq!(patches.len(), 4);
    assert_eq!(patches[1]["start_s"], 0.48);
    assert_eq!(patches[0]["top"].as_array().unwrap().len(), 2);
    assert!(patches[0]["classes"]["glass_break"].is_number());
    assert_eq!(reports[0]["schema"], "earshot.analyze.v2");
    assert!(patches[0].get("embedding").is_none());

    // --embeddings: YAMNet's 1024-d embedding per patch (and the timeline without --scores).
    let (code, reports, _) = analyze_json(std::slice::from_ref(&p), &["--embeddings"]);
    assert_eq!(code, 0);
    let patches = reports[0]["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 4);
    for patch in patches {
        let e = patch["embedding"].as_array().unwrap();
        assert_eq!(e.len(), 1024);
        assert!(e
            .iter()
            .all(|v| v.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0)));
    }

    // CSV: one header, then per-patch rows with --scores.
    let (code, out, _) = run(&["analyze", "--format", "csv", "--scores"], &[&p, &p]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("file,patch,start_s,end_s,laeq_dbfs"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 2 * 4, "{out}");

    // Table, calibrated: dB SPL beside dBFS (LAFmax −9.03 dBFS + 100 dB = 90.97 dB SPL).
    let (code, out, _) = run(&["analyze", "--calibration-offset", "100"], &[&p]);
    assert_eq!(code, 0);
    assert!(out.contains("LAFmax -9.0 dBFS (91.0 dB SPL)"), "{out}");

    // Bad options: exit 2 with a message naming what is wrong.
    let none_onnx = dir.path().join("none.onnx");
    let none_onnx = none_onnx.to_str().unwrap();
    let (code, _, err) = run(&["analyze", "--threshold", "glass=0.3"], &[&p]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown class 'glass'"), "{err}");
    let (code, _, err) = run(&["analyze", "--model", none_onnx], &[&p]);
    assert_eq!(code, 2);
    assert!(err.contains("none.onnx"), "{err}");
}

#[test]
fn a_model_with_the_wrong_interface_is_refused_at_load() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tone.wav");
    write_tone(&p, 16_000, 1000.0, 0.5, 1.0);
    let wrong = shared.join("models/yamnet_waveform.onnx");
    let (code, _, err) = common::earshot(&[
        "analyze".as_ref(),
        "--model".as_ref(),
        wrong.as_os_str(),
        p.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("yamnet_waveform.onnx"), "{err}");
    assert!(
        err.contains("expected [96, 64]") || err.contains("output 'logits'"),
        "{err}"
    );
}

#[test]
fn plot_sensitivity_and_loudness_options() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tone.wav");
    write_tone(&p, 16_000, 1000.0, 0.5, 2.0);
    let run = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.push(p.as_os_str());
        common::earshot(&all)
    };

    // --plot: an SVG naming the file and the classes; the timeline stays out of the report.
    let svg = dir.path().join("out.svg");
    let (code, out, err) = run(&[
        "analyze",
        "--format",
        "json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("</svg>"));
    assert!(
        text.contains("tone.wav") && text.contains("glass_break"),
        "{text}"
    );
    let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(report.get("patches").is_none());
    // An unsupported picture format is bad input naming the path; the report is still written.
    let bmp = dir.path().join("out.bmp");
    let (code, out, err) = run(&["analyze", "--plot", bmp.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("out.bmp") && err.contains(".svg"), "{err}");
    assert!(out.contains("tone.wav"), "{out}");

    // Loudness events: a 2 s tone gives one SPL summary per second with --spl-summary-s 1,
    // and an absolute loud_noise at -20 dBFS (the tone reads -9 dBFS).
    let (code, out, err) = run(&[
        "analyze",
        "--format",
        "json",
        "--spl-summary-s",
        "1",
        "--loud-noise-dbfs",
        "-20",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = report["level_events"].as_array().unwrap();
    let count = |tag: &str| events.iter().filter(|e| e["event"] == tag).count();
    assert_eq!(count("spl_summary"), 2, "{events:?}");
    assert_eq!(count("loud_noise_start"), 1, "{events:?}");
    assert_eq!(count("loud_noise_stop"), 1, "{events:?}");

    // Bad settings: exit 2 naming the option and what is expected.
    let (code, _, err) = run(&["analyze", "--sensitivity", "gunshot=101"]);
    assert_eq!(code, 2);
    assert!(err.contains("0 to 100"), "{err}");
    let (code, _, err) = run(&["analyze", "--sensitivity", "shots=50"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown class 'shots'"), "{err}");
    let (code, _, err) = run(&["analyze", "--spl-summary-s", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("spl_summary_interval_s"), "{err}");
}

#[test]
fn eval_refuses_bad_lists_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("labels.csv");
    std::fs::write(&list, "file,class\nmissing.wav,glass_break\n").unwrap();
    let (code, _, err) = common::earshot(&["eval".as_ref(), "-q".as_ref(), list.as_os_str()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.wav"), "{err}");
    std::fs::write(&list, "file,class\nx.wav,dog\n").unwrap();
    let (code, _, err) = common::earshot(&["eval".as_ref(), list.as_os_str()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2") && err.contains("class 'dog'"),
        "{err}"
    );
}
