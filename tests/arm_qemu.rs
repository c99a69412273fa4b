//! The ARM builds of `earshot analyze`, run under QEMU user-mode emulation, against this
//! host's build on the same real clips.
//!
//! The binaries under test are the ones shipped: `earshot` unpacked from the `.eap` packages
//! that `cargo run -p earshot-acap -- package --target aarch64|armv7hf` writes into
//! `target/eap/` (or `$EARSHOT_EAP_DIR`). `.ci/run` builds both packages before the tests.
//! Emulated CPUs: `qemu-aarch64-static -cpu cortex-a53` (ARTPEC-8/9, CV25) and
//! `qemu-arm-static -cpu cortex-a9` (ARTPEC-6/7, with `TRACT_CPU_ARM32_NEON=1` because tract
//! reads NEON support from `/proc/cpuinfo`, which under qemu-user is the host's).
//!
//! On every clip both builds must give the same detections (class, start and end sample) with
//! peak scores within 0.02, and every level within 0.01 dB. Per-patch class evidence is compared
//! too, and printed: it must stay within 0.1, and the patches beyond 0.02 are counted. (armv7's
//! multiply-accumulate is not fused, unlike x86-64 FMA and aarch64 `fmla`, and the int8 graph
//! re-quantizes activations at every layer, so a last-bit difference can move one activation by
//! a quantization step; seen: one patch of one clip off by 0.039 on armv7hf, aarch64 bit-equal.)
//! The kernels tract reports choosing (`RUST_LOG=tract_linalg=info`) are printed.
//!
//! Needs `../shared` and the packages; without them the test is skipped on a developer's
//! machine and fails under CI (`CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// How many clips of each labelled class are compared (first by file name).
const PER_CLASS: usize = 2;
/// Detection peak scores.
const SCORE_TOLERANCE: f64 = 0.02;
/// Per-patch class evidence (see the module documentation).
const PATCH_SCORE_BOUND: f64 = 0.1;
const LEVEL_TOLERANCE_DB: f64 = 0.01;

struct Arm {
    arch: &'static str,
    qemu: &'static str,
    cpu: &'static str,
    sysroot: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const ARMS: [Arm; 2] = [
    Arm {
        arch: "aarch64",
        qemu: "qemu-aarch64-static",
        cpu: "cortex-a53",
        sysroot: "/usr/aarch64-linux-gnu",
        env: &[],
    },
    Arm {
        arch: "armv7hf",
        qemu: "qemu-arm-static",
        cpu: "cortex-a9",
        sysroot: "/usr/arm-linux-gnueabihf",
        env: &[("TRACT_CPU_ARM32_NEON", "1")],
    },
];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The `.eap` of `arch`, or `None` (skip) on a developer's machine.
fn find_eap(arch: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EARSHOT_EAP_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/eap"),
        PathBuf::from,
    );
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("earshot_") && n.ends_with(&format!("_{arch}.eap")))
        })
    });
    if found.is_none() {
        let msg = format!(
            "no earshot_*_{arch}.eap in {}: build it first with \
             `cargo run --release -p earshot-acap -- package --target {arch}` \
             (needs scripts/setup-cross.sh)",
            dir.display()
        );
        assert!(!in_ci(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    found
}

fn unpack_binary(eap: &Path, into: &Path) -> PathBuf {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(eap)
        .arg("-C")
        .arg(into)
        .arg("earshot")
        .status()
        .expect("tar runs");
    assert!(
        status.success(),
        "cannot unpack earshot from {}",
        eap.display()
    );
    into.join("earshot")
}

fn clips(shared: &Path) -> Vec<PathBuf> {
    let mut all = common::eval_clips(shared);
    all.sort_by(|a, b| a.file.cmp(&b.file));
    let mut picked = Vec::new();
    for class in ["glass_break", "gunshot_explosion", "aggression", "negative"] {
        picked.extend(
            all.iter()
                .filter(|c| c.class == class)
                .take(PER_CLASS)
                .map(|c| c.file.clone()),
        );
    }
    // One scene: longer audio, with background.
    let scenes = shared.join("eval/scenes");
    if let Ok(entries) = std::fs::read_dir(&scenes) {
        let mut wavs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wav"))
            .collect();
        wavs.sort();
        picked.extend(wavs.into_iter().take(1));
    }
    picked
}

/// Runs `analyze --format json --scores` and returns one report per file, plus stderr.
fn analyze(mut cmd: Command, files: &[PathBuf]) -> (Vec<Value>, String) {
    cmd.args(["analyze", "--format", "json", "--scores", "--top", "5"])
        .args(files);
    let out = cmd.output().expect("analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "analyze failed: {stderr}");
    let reports: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report per line"))
        .collect();
    assert_eq!(reports.len(), files.len(), "one report per file");
    (reports, stderr)
}

fn peak_scores(report: &Value) -> Vec<f64> {
    report["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| d["peak_score"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn detections(report: &Value) -> Vec<(String, u64, u64)> {
    report["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| {
            (
                d["class"].as_str().unwrap_or_default().to_owned(),
                d["start_sample"].as_u64().unwrap_or(u64::MAX),
                d["end_sample"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// Largest differences (class score, level dB) over the patches of two reports of one file, and
/// how many patches have a class score more than [`SCORE_TOLERANCE`] apart.
fn max_differences(host: &Value, arm: &Value, file: &str) -> (f64, f64, usize) {
    let hp = host["patches"].as_array().expect("patches");
    let ap = arm["patches"].as_array().expect("patches");
    assert_eq!(hp.len(), ap.len(), "{file}: patch count differs");
    let (mut score, mut level, mut beyond) = (0.0f64, 0.0f64, 0);
    for (h, a) in hp.iter().zip(ap) {
        let mut patch = 0.0f64;
        for (class, hv) in h["classes"].as_object().expect("classes") {
            let av = a["classes"][class].as_f64().expect("same classes");
            patch = patch.max((hv.as_f64().unwrap_or(f64::NAN) - av).abs());
        }
        score = score.max(patch);
        beyond += usize::from(patch > SCORE_TOLERANCE);
        for key in ["laeq_dbfs", "lafmax_dbfs", "lcpeak_dbfs"] {
            let (hv, av) = (h[key].as_f64(), a[key].as_f64());
            if let (Some(hv), Some(av)) = (hv, av) {
                level = level.max((hv - av).abs());
            } else {
                assert_eq!(h[key], a[key], "{file}: {key}");
            }
        }
    }
    (score, level, beyond)
}

#[test]
fn arm_builds_under_qemu_match_the_host_build() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let files = clips(&shared);
    assert!(
        files.len() >= 5,
        "need at least 5 clips, found {}",
        files.len()
    );
    let (host, _) = analyze(Command::new(env!("CARGO_BIN_EXE_earshot")), &files);
    let host_detections: usize = host.iter().map(|r| detections(r).len()).sum();
    assert!(
        host_detections >= 3,
        "the clips must give detections to compare"
    );

    // Both emulations run at once (each is one busy thread): half the wall time on 2 cores.
    let dirs: Vec<_> = ARMS
        .iter()
        .filter_map(|arm| find_eap(arm.arch).map(|eap| (arm, eap)))
        .map(|(arm, eap)| {
            let dir = tempfile::tempdir().expect("temp dir");
            let binary = unpack_binary(&eap, dir.path());
            (arm, dir, binary)
        })
        .collect();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|(arm, _dir, binary)| {
                let files = &files;
                scope.spawn(move || {
                    let mut cmd = Command::new(arm.qemu);
                    // LD_LIBRARY_PATH: the cross libc beside the cross loader (see
                    // .cargo/config.toml).
                    cmd.args(["-cpu", arm.cpu, "-L", arm.sysroot, "-E"])
                        .arg(format!("LD_LIBRARY_PATH={}/lib", arm.sysroot))
                        .arg(binary)
                        .env("RUST_LOG", "tract_linalg=info");
                    for (k, v) in arm.env {
                        cmd.env(k, v);
                    }
                    let started = std::time::Instant::now();
                    let (reports, stderr) = analyze(cmd, files);
                    (reports, stderr, started.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an emulation thread panicked"))
            .collect()
    });

    let mut compared = 0;
    for ((arm, _dir, _binary), (reports, stderr, took)) in dirs.iter().zip(runs) {
        eprintln!(
            "{} ({} -cpu {}): {} clips in {:.1} s under emulation (both ARM runs at once); \
             tract reported:",
            arm.arch,
            arm.qemu,
            arm.cpu,
            files.len(),
            took.as_secs_f64()
        );
        for line in stderr.lines().filter(|l| l.contains("tract_linalg")) {
            eprintln!("    {line}");
        }
        let (mut worst_score, mut worst_level) = (0.0f64, 0.0f64);
        let mut patches_beyond = 0;
        for ((h, a), f) in host.iter().zip(&reports).zip(&files) {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            assert_eq!(
                detections(h),
                detections(a),
                "{}: {name}: detections differ from the host build",
                arm.arch
            );
            for (hs, arm_score) in peak_scores(h).iter().zip(peak_scores(a)) {
                assert!(
                    (hs - arm_score).abs() <= SCORE_TOLERANCE,
                    "{}: {name}: detection peak score {arm_score} vs {hs} on the host",
                    arm.arch
                );
            }
            let (s, l, beyond) = max_differences(h, a, &name);
            eprintln!(
                "    {name}: {} detection(s), max patch score diff {s:.4} ({beyond} patch(es) \
                 beyond {SCORE_TOLERANCE}), max level diff {l:.5} dB",
                detections(a).len()
            );
            patches_beyond += beyond;
            assert!(
                s <= PATCH_SCORE_BOUND,
                "{}: {name}: a patch score differs by {s}",
                arm.arch
            );
            assert!(
                l <= LEVEL_TOLERANCE_DB,
                "{}: {name}: level differs by {l} dB",
                arm.arch
            );
            worst_score = worst_score.max(s);
            worst_level = worst_level.max(l);
        }
        eprintln!(
            "{}: same detections and peak scores on all {} clips; max patch score diff \
             {worst_score:.4} ({patches_beyond} patch(es) beyond {SCORE_TOLERANCE} of {}), max \
             level diff {worst_level:.5} dB",
            arm.arch,
            files.len(),
            host.iter()
                .map(|r| r["patches"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        );
        compared += 1;
    }
    if compared == 0 {
        eprintln!("SKIPPED: no ARM package to compare");
    }
}
