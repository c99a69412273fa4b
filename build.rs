//! Embeds the YAMNet classifier (`yamnet_logmel.onnx`) and its class map in the binary.
//!
//! The files are looked up, in order, in `$EARSHOT_MODEL_DIR`, in `models/` (where
//! `models/fetch.sh` puts them) and in the project's read-only mirror `../shared/models`. Each is
//! checked against `models/SHA256SUMS` before it is copied to `OUT_DIR`; a missing or altered
//! file stops the build with a message that says where it looked and what to run.

use std::path::{Path, PathBuf};
use std::{env, fs, process};

use sha2::{Digest, Sha256};

const FILES: [&str; 2] = ["yamnet_logmel.onnx", "yamnet_class_map.csv"];

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=EARSHOT_MODEL_DIR");
    println!("cargo:rerun-if-changed=models/SHA256SUMS");

    let sums_path = root.join("models/SHA256SUMS");
    let sums = fs::read_to_string(&sums_path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", sums_path.display())));

    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = env::var_os("EARSHOT_MODEL_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(root.join("models"));
    dirs.push(root.join("../shared/models"));

    for name in FILES {
        let expected = sums
            .lines()
            .filter_map(|l| l.split_once("  "))
            .find(|(_, f)| f.trim() == name)
            .map(|(sum, _)| sum.trim().to_ascii_lowercase())
            .unwrap_or_else(|| fail(&format!("{} has no line for {name}", sums_path.display())));
        let found = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        let Some(path) = found else {
            let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            fail(&format!(
                "{name} not found (looked in: {}). Run `models/fetch.sh` or set \
                 EARSHOT_MODEL_DIR to a directory holding the YAMNet files.",
                looked.join(", ")
            ));
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(&path)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            fail(&format!(
                "{} has SHA-256 {actual}, expected {expected} (models/SHA256SUMS): \
                 refusing to embed an unverified model",
                path.display()
            ));
        }
        write(&out.join(name), &bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: earshot build: {msg}");
    process::exit(1);
}
