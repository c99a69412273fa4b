//! Checks of `.eap` packages: the real ones `earshot-acap package` produced, and a synthetic one
//! packed by the `earshot-acap` binary around a tiny ARM executable so the checks run every time.

use std::path::{Path, PathBuf};
use std::process::Command;

use earshot_acap::check::{check_eap, Report};
use earshot_acap::eap::{unpack, FILE_MODE};
use earshot_acap::{html, Arch};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("acap-manifest lives in the workspace")
        .to_owned()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The newest `earshot_*_<arch>.eap` in `dir`, if any.
fn find_eap(dir: &Path, arch: Arch) -> Option<PathBuf> {
    let suffix = format!("_{arch}.eap");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("earshot_") && n.ends_with(&suffix))
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop()
}

/// The settings page's checks ran and passed: one item per `html/` file, and `settingPage`.
fn assert_page_checked(report: &Report) {
    let mut want: Vec<String> = html::FILES
        .iter()
        .map(|(n, _)| html::entry_name(n))
        .collect();
    want.push("settingPage".to_owned());
    for what in &want {
        let item = report.items.iter().find(|i| i.what == *what);
        assert!(
            item.is_some_and(|i| i.ok),
            "{what} not checked or failed:\n{report}"
        );
    }
}

fn check_real_package(arch: Arch) {
    let dir = std::env::var_os("EARSHOT_EAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("eap"));
    let Some(path) = find_eap(&dir, arch) else {
        let msg = format!(
            "no earshot_*_{arch}.eap in {}: run `cargo run -p earshot-acap -- package --target \
             {arch}` first (or set EARSHOT_EAP_DIR)",
            dir.display()
        );
        assert!(!in_ci(), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let report = check_eap(&bytes, arch);
    eprintln!("{}:\n{report}", path.display());
    assert!(report.ok(), "{}:\n{report}", path.display());
    assert_page_checked(&report);
    // A real build must need some GLIBC symbol versions (it links dynamically against glibc).
    assert!(report.newest_glibc.is_some(), "{report}");
}

#[test]
fn real_aarch64_package_passes_the_checks() {
    check_real_package(Arch::Aarch64);
}

#[test]
fn real_armv7hf_package_passes_the_checks() {
    check_real_package(Arch::Armv7hf);
}

/// Compiles a hello-world C program with the target's cross gcc; `None` if it is not installed.
fn tiny_arm_binary(arch: Arch, dir: &Path) -> Option<PathBuf> {
    let gcc = match arch {
        Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        Arch::Armv7hf => "arm-linux-gnueabihf-gcc",
    };
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .unwrap();
    let out = dir.join(format!("hello-{arch}"));
    match Command::new(gcc)
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("{gcc} failed: {s}"),
        Err(e) => {
            eprintln!("skipped: {gcc} not available ({e})");
            None
        }
    }
}

#[test]
fn synthetic_packages_pass_the_checks_and_are_reproducible() {
    let tool = env!("CARGO_BIN_EXE_earshot-acap");
    for arch in Arch::ALL {
        let dir = tempfile::tempdir().unwrap();
        let Some(binary) = tiny_arm_binary(arch, dir.path()) else {
            continue;
        };
        let mut outputs = Vec::new();
        for run in 0..2 {
            let out = dir.path().join(format!("out{run}"));
            let res = Command::new(tool)
                .args(["package", "--target", arch.as_str(), "--binary"])
                .arg(&binary)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&res.stdout).into_owned();
            assert!(
                res.status.success(),
                "package failed: {stdout}{}",
                String::from_utf8_lossy(&res.stderr)
            );
            let path = PathBuf::from(stdout.lines().next().unwrap());
            assert_eq!(path.parent(), Some(out.as_path()));
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(
                name.starts_with("earshot_") && name.ends_with(&format!("_{arch}.eap")),
                "{name}"
            );
            assert!(stdout.contains("sha256  "), "{stdout}");
            outputs.push(std::fs::read(&path).unwrap());

            // The library checks, and the `check` command's exit status.
            let report = check_eap(outputs.last().unwrap(), arch);
            assert!(report.ok(), "{report}");
            assert_page_checked(&report);
            // The page is the repository's src/web/page/, byte for byte, as a plain file.
            let files = unpack(outputs.last().unwrap()).unwrap();
            let page_dir = workspace_root().join("src").join("web").join("page");
            for (name, _) in html::FILES {
                let entry = &files[&html::entry_name(name)];
                assert_eq!(
                    entry.data,
                    std::fs::read(page_dir.join(name)).unwrap(),
                    "{name}"
                );
                assert_eq!(
                    (entry.mode, entry.uid, entry.gid),
                    (FILE_MODE, 0, 0),
                    "{name}"
                );
            }
            let glibc = report
                .newest_glibc
                .clone()
                .expect("hello links against glibc");
            assert!(glibc.starts_with("GLIBC_2."), "{glibc}");
            let check = Command::new(tool)
                .arg("check")
                .arg(&path)
                .args(["--target", arch.as_str()])
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stdout)
            );
            let other = if arch == Arch::Aarch64 {
                Arch::Armv7hf
            } else {
                Arch::Aarch64
            };
            let wrong = Command::new(tool)
                .arg("check")
                .arg(&path)
                .args(["--target", other.as_str()])
                .output()
                .unwrap();
            assert_eq!(
                wrong.status.code(),
                Some(1),
                "checking {arch} as {other} must fail"
            );
        }
        assert_eq!(outputs[0], outputs[1], "{arch}: two packings differ");
    }
}
