//! `earshot-acap`: builds, writes and checks Earshot's ACAP package (`.eap`).
//!
//! - `package --target aarch64|armv7hf [--out DIR] [--binary PATH]`: cross-builds the `earshot`
//!   binary (profile `acap`, no default features), writes `manifest.json`, `package.conf`,
//!   `param.conf`, `LICENSE` and the settings page (`html/`), packs them reproducibly and prints
//!   the path, SHA-256 and sizes;
//! - `manifest --target ...`: prints `manifest.json`;
//! - `check FILE.eap --target ...`: runs every package check and exits 1 on any failure.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

use earshot_acap::conf::{package_conf, param_conf};
use earshot_acap::eap::{self, PackageInputs};
use earshot_acap::licenses::{self, license_text};
use earshot_acap::manifest::validate_package;
use earshot_acap::{check, html, Arch, Manifest};

#[derive(Parser)]
#[command(version, about = "Builds and checks Earshot's ACAP package (.eap)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cross-build the earshot binary and pack earshot_<version>_<arch>.eap.
    Package {
        /// Device architecture.
        #[arg(long, value_enum)]
        target: Arch,
        /// Output directory (default: <workspace>/target/eap).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use this executable instead of building one (for tests).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Print manifest.json for a target.
    Manifest {
        /// Device architecture.
        #[arg(long, value_enum)]
        target: Arch,
    },
    /// Check a .eap file; exit status 1 if any check fails.
    Check {
        /// The package.
        file: PathBuf,
        /// Device architecture it was built for.
        #[arg(long, value_enum)]
        target: Arch,
    },
}

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_owned()
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn cargo_home() -> PathBuf {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cargo")
}

/// The `-C`/`--remap-path-prefix` flags of the package build, as CARGO_ENCODED_RUSTFLAGS wants
/// them (separated by 0x1f).
fn encoded_rustflags(root: &Path, arch: Arch) -> String {
    let mut flags = vec![
        format!("--remap-path-prefix={}=/earshot", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home().display()),
    ];
    if arch == Arch::Armv7hf {
        // An explicit RUSTFLAGS replaces .cargo/config.toml's target rustflags: keep NEON.
        flags.extend(["-C".to_owned(), "target-feature=+neon".to_owned()]);
    }
    flags.join("\x1f")
}

fn build_binary(root: &Path, target_dir: &Path, arch: Arch) -> Result<PathBuf> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(["build", "--profile", "acap", "--target", arch.triple()])
        .args(["--no-default-features", "-p", "earshot", "--bin", "earshot"])
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(root, arch))
        .env_remove("RUSTFLAGS");
    if std::env::var_os("RUSTC").is_none() {
        // Debian's rustc 1.85 has the ARM standard libraries; rustup's does not.
        cmd.env("RUSTC", "/usr/bin/rustc");
    }
    eprintln!("running {cmd:?}");
    let status = cmd.status().context("starting cargo build")?;
    if !status.success() {
        bail!("cargo build for {} failed ({status})", arch.triple());
    }
    Ok(target_dir.join(arch.triple()).join("acap").join("earshot"))
}

fn package(arch: Arch, out: Option<PathBuf>, binary: Option<PathBuf>) -> Result<()> {
    let root = workspace_root();
    let info = licenses::gather(Path::new(&cargo()), &root.join("Cargo.toml"), arch.triple())
        .context("collecting the crates linked into the binary")?;
    let binary_path = match binary {
        Some(p) => p,
        None => build_binary(&root, &info.target_directory, arch)?,
    };
    let binary = std::fs::read(&binary_path)
        .with_context(|| format!("reading {}", binary_path.display()))?;

    let manifest = Manifest::earshot(&info.earshot_version, arch);
    let inputs = PackageInputs {
        binary,
        manifest_json: manifest.to_json_pretty(),
        package_conf: package_conf(&manifest),
        param_conf: param_conf(&manifest),
        license: license_text(&info.crates),
        html: html::files(),
    };
    let entries = inputs.entries();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let problems = validate_package(&serde_json::from_str(&inputs.manifest_json)?, &names);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!("manifest.json is invalid:\n  {}", list.join("\n  "));
    }
    let bytes = eap::pack(&entries, eap::source_date_epoch(&root))?;

    let out = out.unwrap_or_else(|| root.join("target").join("eap"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(eap::file_name(&info.earshot_version, arch));
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let sha = Sha256::digest(&bytes);
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    println!("{}", path.display());
    println!("sha256  {hex}");
    println!("binary  {} bytes", inputs.binary.len());
    println!("eap     {} bytes", bytes.len());
    println!(
        "crates  {} third-party crates in LICENSE",
        info.crates.len()
    );
    Ok(())
}

fn run() -> Result<bool> {
    match Cli::parse().command {
        Cmd::Package {
            target,
            out,
            binary,
        } => package(target, out, binary).map(|()| true),
        Cmd::Manifest { target } => {
            // earshot-acap and earshot share the workspace version (`version.workspace`), so
            // this is earshot's CARGO_PKG_VERSION without running cargo metadata.
            let version = env!("CARGO_PKG_VERSION");
            print!("{}", Manifest::earshot(version, target).to_json_pretty());
            Ok(true)
        }
        Cmd::Check { file, target } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let report = check::check_eap(&bytes, target);
            print!("{report}");
            let ok = report.ok();
            println!(
                "{}: {}",
                file.display(),
                if ok { "all checks passed" } else { "FAILED" }
            );
            Ok(ok)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("earshot-acap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
