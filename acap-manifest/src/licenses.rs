//! The package's `LICENSE` file: Earshot's licence, the YAMNet notice and the licences of every
//! crate linked into the binary.
//!
//! The crate list comes from `cargo metadata --format-version 1 --filter-platform <triple>
//! --no-default-features` (the same features as the package build, so `alsa` is left out): the
//! resolve graph is walked from the `earshot` package over normal dependencies only (no dev or
//! build dependencies, and not into proc-macro crates, which run in the compiler and are not
//! linked). For each crate the licence expression and the text of its `LICENSE*`, `LICENCE*`,
//! `COPYING*` and `NOTICE*` files are collected; identical texts are printed once, listing every
//! crate that ships them. Everything is sorted, so the file is the same on every run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Earshot's own notice (Apache-2.0; the repository carries no LICENSE file, so this is the
/// notice the Apache License's appendix asks for).
pub const EARSHOT_NOTICE: &str = "\
Earshot: on-device audio analytics
Copyright the Earshot developers

Licensed under the Apache License, Version 2.0 (the \"License\");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an \"AS IS\" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
";

/// The notice for the YAMNet model embedded in the binary.
pub const YAMNET_NOTICE: &str = "\
YAMNet audio event classifier

The earshot binary embeds the YAMNet model (weights and graph) by Google, from the
TensorFlow Model Garden, https://github.com/tensorflow/models, directory research/audioset/yamnet.
Copyright Google LLC / The TensorFlow Authors.
Licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0);
the same terms as quoted for Earshot above apply. The AudioSet class names it uses come with it.
";

/// One crate linked into the binary and its licence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrateLicense {
    /// Crate (package) name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SPDX licence expression from its `Cargo.toml` (`license`), or `None`.
    pub license: Option<String>,
    /// Its licence files: `(file name, text)`, sorted by file name.
    pub files: Vec<(String, String)>,
}

/// What a `cargo metadata` run tells the packaging: the crates and where things are.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Version of the `earshot` package (`CARGO_PKG_VERSION` of the binary).
    pub earshot_version: String,
    /// The workspace root.
    pub workspace_root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR`).
    pub target_directory: PathBuf,
    /// Third-party crates linked into the binary, sorted by name and version.
    pub crates: Vec<CrateLicense>,
}

/// Why the licence information could not be gathered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseError {
    /// `cargo metadata` could not be started or failed.
    #[error("cargo metadata: {0}")]
    Cargo(String),
    /// Its output is not what this module expects.
    #[error("cargo metadata output: {0}")]
    Metadata(String),
    /// A licence file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs `cargo metadata` for the package build of `triple` in the workspace of `manifest_path`
/// (its root `Cargo.toml`) and gathers [`BuildInfo`]. `cargo` is the cargo executable (the
/// `CARGO` environment variable inside cargo, else `cargo`).
///
/// # Errors
/// [`LicenseError`] if cargo fails, its output lacks the resolve graph or the `earshot`
/// package, or a licence file cannot be read.
pub fn gather(cargo: &Path, manifest_path: &Path, triple: &str) -> Result<BuildInfo, LicenseError> {
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            triple,
        ])
        .arg("--no-default-features")
        .arg("--manifest-path")
        .arg(manifest_path)
        .output()
        .map_err(|e| LicenseError::Cargo(format!("cannot run {}: {e}", cargo.display())))?;
    if !out.status.success() {
        return Err(LicenseError::Cargo(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| LicenseError::Metadata(format!("not JSON: {e}")))?;
    from_metadata(&metadata, "earshot")
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, LicenseError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| LicenseError::Metadata(format!("no string field {key:?}")))
}

/// [`BuildInfo`] from parsed `cargo metadata` output, walking from the package named `root`.
///
/// Workspace members (Earshot's own crates) are left out of [`BuildInfo::crates`]: they are
/// covered by [`EARSHOT_NOTICE`].
///
/// # Errors
/// [`LicenseError::Metadata`] if `resolve` or `root` is missing; [`LicenseError::Io`] if a
/// licence file cannot be read.
pub fn from_metadata(metadata: &Value, root: &str) -> Result<BuildInfo, LicenseError> {
    let packages = metadata
        .get("packages")
        .and_then(Value::as_array)
        .ok_or_else(|| LicenseError::Metadata("no packages".into()))?;
    let by_id: BTreeMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p.get("id")?.as_str()?, p)))
        .collect();
    let members: BTreeSet<&str> = metadata
        .get("workspace_members")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let root_pkg = packages
        .iter()
        .find(|p| {
            p.get("name").and_then(Value::as_str) == Some(root)
                && p.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| members.contains(id))
        })
        .ok_or_else(|| LicenseError::Metadata(format!("no workspace package {root:?}")))?;
    let root_id = str_field(root_pkg, "id")?;
    let nodes = metadata
        .get("resolve")
        .and_then(|r| r.get("nodes"))
        .and_then(Value::as_array)
        .ok_or_else(|| LicenseError::Metadata("no resolve graph".into()))?;
    let node_by_id: BTreeMap<&str, &Value> = nodes
        .iter()
        .filter_map(|n| Some((n.get("id")?.as_str()?, n)))
        .collect();

    let is_proc_macro = |pkg: &Value| {
        pkg.get("targets")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    t.get("kind")
                        .and_then(Value::as_array)
                        .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
                })
            })
    };
    // The package binary is built with no features at all, so none of the root's optional
    // dependencies is linked, even where the workspace's resolve (unified over every member,
    // earshot-acap's own default-feature dependency on earshot included) lists them.
    let root_optional: BTreeSet<String> = root_pkg
        .get("dependencies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| d.get("optional").and_then(Value::as_bool) == Some(true))
        .filter_map(|d| {
            let name = d
                .get("rename")
                .and_then(Value::as_str)
                .or(d.get("name")?.as_str())?;
            Some(name.replace('-', "_"))
        })
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = node_by_id.get(id) else {
            continue;
        };
        for dep in node
            .get("deps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let normal = dep
                .get("dep_kinds")
                .and_then(Value::as_array)
                .is_some_and(|kinds| {
                    kinds
                        .iter()
                        .any(|k| k.get("kind").is_none_or(Value::is_null))
                });
            let Some(pkg_id) = dep.get("pkg").and_then(Value::as_str) else {
                continue;
            };
            let Some(pkg) = by_id.get(pkg_id) else {
                continue;
            };
            let optional_of_root = id == root_id
                && dep
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| root_optional.contains(n));
            if normal && !is_proc_macro(pkg) && !optional_of_root {
                stack.push(pkg_id);
            }
        }
    }

    let mut crates = Vec::new();
    for id in seen {
        if members.contains(id) {
            continue;
        }
        let pkg = by_id
            .get(id)
            .ok_or_else(|| LicenseError::Metadata(format!("no package {id}")))?;
        let manifest_path = PathBuf::from(str_field(pkg, "manifest_path")?);
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let mut files = license_files(dir)?;
        if let Some(extra) = pkg.get("license_file").and_then(Value::as_str) {
            let path = dir.join(extra);
            let name = extra.to_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| LicenseError::Io { path, source })?;
                files.push((name, text));
                files.sort();
            }
        }
        crates.push(CrateLicense {
            name: str_field(pkg, "name")?.to_owned(),
            version: str_field(pkg, "version")?.to_owned(),
            license: pkg
                .get("license")
                .and_then(Value::as_str)
                .map(str::to_owned),
            files,
        });
    }
    crates.sort();
    Ok(BuildInfo {
        earshot_version: str_field(root_pkg, "version")?.to_owned(),
        workspace_root: PathBuf::from(str_field(metadata, "workspace_root")?),
        target_directory: PathBuf::from(str_field(metadata, "target_directory")?),
        crates,
    })
}

/// The licence files in a crate's source directory `dir`: regular files whose name starts
/// (case-insensitively) with `LICENSE`, `LICENCE`, `COPYING` or `NOTICE`, as `(name, text)`
/// sorted by name. Non-UTF-8 bytes are replaced.
///
/// # Errors
/// [`LicenseError::Io`] if the directory or a file cannot be read.
pub fn license_files(dir: &Path) -> Result<Vec<(String, String)>, LicenseError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LicenseError::Io { path, source }
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let upper = name.to_ascii_uppercase();
        let wanted = ["LICENSE", "LICENCE", "COPYING", "NOTICE"]
            .iter()
            .any(|p| upper.starts_with(p));
        let path = entry.path();
        if wanted && path.is_file() {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            out.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out.sort();
    Ok(out)
}

fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let mut s = lines.join("\n");
    s = s.trim_matches('\n').to_owned();
    s.push('\n');
    s
}

/// The `LICENSE` file's text: [`EARSHOT_NOTICE`], [`YAMNET_NOTICE`], a table of the crates
/// (`name version licence`), then every distinct licence text once, headed by the crates that
/// ship it. Deterministic for the same `crates` (sorted by name, version; texts compared after
/// trimming trailing blanks).
pub fn license_text(crates: &[CrateLicense]) -> String {
    let rule = "=".repeat(78);
    let mut out = String::new();
    out.push_str(EARSHOT_NOTICE);
    out.push_str(&format!("\n{rule}\n\n"));
    out.push_str(YAMNET_NOTICE);
    out.push_str(&format!(
        "\n{rule}\n\nThird-party Rust crates linked into the earshot binary ({}):\n\n",
        crates.len()
    ));
    let mut sorted: Vec<&CrateLicense> = crates.iter().collect();
    sorted.sort();
    for c in &sorted {
        out.push_str(&format!(
            "  {} {}: {}\n",
            c.name,
            c.version,
            c.license.as_deref().unwrap_or("(no licence expression)")
        ));
    }
    // Distinct texts, each with the crates (and file names) that ship it.
    let mut texts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut without: Vec<String> = Vec::new();
    for c in &sorted {
        if c.files.is_empty() {
            without.push(format!("{} {}", c.name, c.version));
        }
        for (file, text) in &c.files {
            texts
                .entry(normalise(text))
                .or_default()
                .insert(format!("{} {} ({file})", c.name, c.version));
        }
    }
    if !without.is_empty() {
        out.push_str(&format!(
            "\nCrates that ship no licence file (their licence expression above applies; the \
             standard texts of those licences are among the texts below or at \
             https://spdx.org/licenses/):\n  {}\n",
            without.join("\n  ")
        ));
    }
    // Order the texts by their first user so related crates stay together.
    let mut blocks: Vec<(String, &BTreeSet<String>, &String)> = texts
        .iter()
        .map(|(text, users)| {
            (
                users.iter().next().cloned().unwrap_or_default(),
                users,
                text,
            )
        })
        .collect();
    blocks.sort();
    for (_, users, text) in blocks {
        out.push_str(&format!("\n{rule}\n\nLicence text of:\n"));
        for u in users {
            out.push_str(&format!("  {u}\n"));
        }
        out.push('\n');
        out.push_str(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walk_follows_normal_dependencies_only() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, files: &[(&str, &str)]| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (f, t) in files {
                std::fs::write(d.join(f), t).unwrap();
            }
            d.join("Cargo.toml").to_string_lossy().into_owned()
        };
        let pkg = |id: &str, name: &str, path: String, kind: &str| {
            json!({"id": id, "name": name, "version": "1.0.0", "license": "MIT",
                   "manifest_path": path, "targets": [{"kind": [kind]}]})
        };
        let dep = |id: &str, kind: Value| json!({"pkg": id, "dep_kinds": [{"kind": kind}]});
        let metadata = json!({
            "workspace_root": "/w", "target_directory": "/w/target",
            "workspace_members": ["root"],
            "packages": [
                pkg("root", "earshot", mk("root", &[]), "lib"),
                pkg("a", "a", mk("a", &[("LICENSE-MIT", "MIT text\n"), ("README", "no")]), "lib"),
                pkg("b", "b", mk("b", &[("LICENSE", "MIT text  \n\n")]), "lib"),
                pkg("dev", "dev", mk("dev", &[]), "lib"),
                pkg("build", "build", mk("build", &[]), "lib"),
                pkg("pm", "pm", mk("pm", &[]), "proc-macro"),
                pkg("under_pm", "under_pm", mk("under_pm", &[]), "lib"),
            ],
            "resolve": {"nodes": [
                {"id": "root", "deps": [dep("a", Value::Null), dep("dev", json!("dev")),
                                        dep("build", json!("build")), dep("pm", Value::Null)]},
                {"id": "a", "deps": [dep("b", Value::Null)]},
                {"id": "b", "deps": []},
                {"id": "pm", "deps": [dep("under_pm", Value::Null)]},
            ]}
        });
        let info = from_metadata(&metadata, "earshot").unwrap();
        let names: Vec<&str> = info.crates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(info.crates[0].files.len(), 1);
        let text = license_text(&info.crates);
        assert!(text.contains("YAMNet") && text.contains("Apache"));
        // Identical texts (up to trailing blanks) appear once, listing both crates.
        assert_eq!(text.matches("MIT text").count(), 1, "{text}");
        assert!(
            text.contains("a 1.0.0 (LICENSE-MIT)\n  b 1.0.0 (LICENSE)"),
            "{text}"
        );
        assert_eq!(text, license_text(&info.crates));
    }

    #[test]
    fn real_package_build_excludes_alsa_pipewire_and_dev_deps() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let info = gather(Path::new(&cargo), &root, "aarch64-unknown-linux-gnu").unwrap();
        let has = |n: &str| info.crates.iter().any(|c| c.name == n);
        assert!(has("tract-onnx") && has("serde_json") && has("rustls"));
        // The settings page's server (`earshot run --http`) runs on the device too.
        assert!(
            has("tiny_http"),
            "tiny_http serves the page and API on the device"
        );
        for absent in [
            "alsa",
            "alsa-sys",
            // Host PipeWire capture is not in the package build (no features).
            "pipewire",
            "pipewire-sys",
            "libspa",
            "tempfile",
            // Build-time only: earshot's dev-dependency and ring's C compiler driver (sha2 is
            // linked since Digest auth, through digest_auth).
            "assert_no_alloc",
            "cc",
            "serde_derive",
            "earshot-dsp",
        ] {
            assert!(!has(absent), "{absent} must not be listed");
        }
        assert_eq!(info.earshot_version, env!("CARGO_PKG_VERSION"));
        let text = license_text(&info.crates);
        assert!(text.contains("tract-onnx"));
        assert!(info.crates.iter().filter(|c| !c.files.is_empty()).count() > info.crates.len() / 2);
    }
}
