//! The checks a finished `.eap` must pass before it goes near a device.
//!
//! Unpacks the archive and checks: the five entries are there with their modes and owner 0, and
//! so are the settings page's files under `html/` ([`crate::html::FILES`]), none of them empty;
//! the executable is an ELF of the target's class (64-bit for aarch64, 32-bit for armv7hf) and
//! machine (`EM_AARCH64` 183 / `EM_ARM` 40, from the ELF specification); the newest `GLIBC_x.y`
//! symbol version it needs (from `.gnu.version_r`, read with the `object` crate) is reported;
//! `manifest.json` parses and validates ([`crate::manifest::validate_package`], so its
//! `settingPage` names a file of the package) and names this target; `settingPage` is set and
//! points at one of the `html/` files;
//! `package.conf`/`param.conf` agree with it ([`crate::conf::check_confs`]); `LICENSE` mentions
//! YAMNet and Apache.

use std::fmt;

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::FileHeader;
use object::Endianness;

use crate::conf::check_confs;
use crate::eap::{unpack, EXECUTABLE_MODE, FILE_MODE};
use crate::html;
use crate::manifest::{Arch, Architecture, Manifest, APP_NAME};

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    /// What was checked (`elf class`, `manifest.json`, ...).
    pub what: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found (or what is wrong).
    pub detail: String,
}

/// The outcome of [`check_eap`]: every check in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub items: Vec<CheckItem>,
    /// The newest `GLIBC_x.y` version the executable needs, e.g. `GLIBC_2.17`, if found.
    pub newest_glibc: Option<String>,
}

impl Report {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }

    fn add(&mut self, what: &str, ok: bool, detail: impl Into<String>) {
        self.items.push(CheckItem {
            what: what.to_owned(),
            ok,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.items {
            writeln!(
                f,
                "{} {:<16} {}",
                if i.ok { "ok  " } else { "FAIL" },
                i.what,
                i.detail
            )?;
        }
        Ok(())
    }
}

/// ELF facts of an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// 64-bit (`ELFCLASS64`) rather than 32-bit.
    pub is_64: bool,
    /// Little-endian (`ELFDATA2LSB`).
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
    /// Every `GLIBC_*` version needed (from `.gnu.version_r`), sorted oldest first.
    pub glibc_versions: Vec<String>,
}

impl ElfInfo {
    /// The newest of [`ElfInfo::glibc_versions`].
    pub fn newest_glibc(&self) -> Option<&str> {
        self.glibc_versions.last().map(String::as_str)
    }
}

/// `GLIBC_2.17` → `[2, 17]`, for ordering versions numerically.
fn glibc_key(v: &str) -> Vec<u64> {
    v.trim_start_matches("GLIBC_")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

fn needed_versions<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
) -> object::read::Result<Vec<String>> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let mut out = Vec::new();
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_need, mut aux)) = needs.next()? {
            while let Some(a) = aux.next()? {
                let name = String::from_utf8_lossy(a.name(endian, strings)?).into_owned();
                if name.starts_with("GLIBC_") && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort_by_key(|v| glibc_key(v));
    Ok(out)
}

/// Reads the ELF header and needed symbol versions of `data`.
///
/// # Errors
/// A message if `data` is not an ELF file or its version sections are malformed.
pub fn elf_info(data: &[u8]) -> Result<ElfInfo, String> {
    if data.len() < 20 || &data[..4] != b"\x7fELF" {
        return Err("not an ELF file (no \\x7fELF magic)".into());
    }
    let is_64 = match data[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let little_endian = match data[5] {
        1 => true,
        2 => false,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let m = [data[18], data[19]];
    let machine = if little_endian {
        u16::from_le_bytes(m)
    } else {
        u16::from_be_bytes(m)
    };
    let versions = if is_64 {
        needed_versions::<FileHeader64<Endianness>>(data)
    } else {
        needed_versions::<FileHeader32<Endianness>>(data)
    }
    .map_err(|e| format!("reading symbol versions: {e}"))?;
    Ok(ElfInfo {
        is_64,
        little_endian,
        machine,
        glibc_versions: versions,
    })
}

/// Checks `.eap` bytes built for `arch`; every check runs even after a failure.
pub fn check_eap(eap: &[u8], arch: Arch) -> Report {
    let mut r = Report::default();
    let files = match unpack(eap) {
        Ok(f) => {
            let names: Vec<&str> = f.keys().map(String::as_str).collect();
            r.add("unpack", true, names.join(", "));
            f
        }
        Err(e) => {
            r.add("unpack", false, e.to_string());
            return r;
        }
    };
    for (name, mode) in [
        (APP_NAME, EXECUTABLE_MODE),
        ("manifest.json", FILE_MODE),
        ("package.conf", FILE_MODE),
        ("param.conf", FILE_MODE),
        ("LICENSE", FILE_MODE),
    ] {
        match files.get(name) {
            None => r.add(name, false, "missing from the package"),
            Some(e) => r.add(
                name,
                e.mode == mode && e.uid == 0 && e.gid == 0,
                format!(
                    "mode {:o} (want {mode:o}), owner {}:{}, {} bytes",
                    e.mode,
                    e.uid,
                    e.gid,
                    e.data.len()
                ),
            ),
        }
    }
    let html_names: Vec<String> = html::FILES
        .iter()
        .map(|(n, _)| html::entry_name(n))
        .collect();
    for name in &html_names {
        match files.get(name) {
            None => r.add(name, false, "missing from the package"),
            Some(e) => r.add(
                name,
                e.mode == FILE_MODE && e.uid == 0 && e.gid == 0 && !e.data.is_empty(),
                format!(
                    "mode {:o} (want {FILE_MODE:o}), owner {}:{}, {} bytes{}",
                    e.mode,
                    e.uid,
                    e.gid,
                    e.data.len(),
                    if e.data.is_empty() { " (empty)" } else { "" }
                ),
            ),
        }
    }
    let text = |name: &str| {
        files
            .get(name)
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
    };

    if let Some(bin) = files.get(APP_NAME) {
        match elf_info(&bin.data) {
            Err(e) => r.add("elf", false, e),
            Ok(info) => {
                r.add(
                    "elf class",
                    info.is_64 == arch.is_64_bit() && info.little_endian,
                    format!(
                        "{}-bit {} endian (want {}-bit little endian)",
                        if info.is_64 { 64 } else { 32 },
                        if info.little_endian { "little" } else { "big" },
                        if arch.is_64_bit() { 64 } else { 32 }
                    ),
                );
                r.add(
                    "elf machine",
                    info.machine == arch.e_machine(),
                    format!("e_machine {} (want {})", info.machine, arch.e_machine()),
                );
                let newest = info.newest_glibc().map(str::to_owned);
                r.add(
                    "glibc",
                    true,
                    match &newest {
                        Some(v) => format!("newest symbol version needed: {v}"),
                        None => "needs no GLIBC symbol versions (static?)".to_owned(),
                    },
                );
                r.newest_glibc = newest;
            }
        }
    }

    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let manifest = match text("manifest.json").map(|t| Manifest::from_package_json(&t, &names)) {
        None => None,
        Some(Err(problems)) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            r.add("manifest.json", false, list.join("; "));
            None
        }
        Some(Ok(m)) => {
            let want = Architecture::from(arch);
            let got = m.acap_package_conf.setup.architecture;
            r.add(
                "manifest.json",
                got == Some(want),
                format!(
                    "valid schema {}, architecture {} (want {})",
                    m.schema_version,
                    got.map_or("(none)", Architecture::as_str),
                    want.as_str()
                ),
            );
            Some(m)
        }
    };
    if let Some(m) = &manifest {
        let (ok, detail) = match m.setting_page() {
            None => (false, "not set (want one of the html/ files)".to_owned()),
            Some(page) => {
                let entry = html::entry_name(page);
                let size = files.get(&entry).map(|e| e.data.len());
                let ok = html_names.contains(&entry) && size.is_some_and(|n| n > 0);
                let detail = match size {
                    None => format!("{entry} is not in the package"),
                    Some(n) if ok => format!("{entry} ({n} bytes)"),
                    Some(n) => format!(
                        "{entry} ({n} bytes), want one of the page's files ({})",
                        html_names.join(", ")
                    ),
                };
                (ok, detail)
            }
        };
        r.add("settingPage", ok, detail);
    }
    if let (Some(m), Some(pkg), Some(param)) = (manifest, text("package.conf"), text("param.conf"))
    {
        let found = check_confs(&m, &pkg, &param);
        let list: Vec<String> = found.iter().map(ToString::to_string).collect();
        r.add(
            "confs",
            found.is_empty(),
            if found.is_empty() {
                format!(
                    "package.conf and param.conf ({} parameters) agree",
                    m.params().len()
                )
            } else {
                list.join("; ")
            },
        );
    }
    if let Some(lic) = text("LICENSE") {
        let has = |w: &str| lic.contains(w);
        r.add(
            "LICENSE text",
            has("YAMNet") && has("Apache"),
            format!(
                "{} lines; YAMNet {}, Apache {}",
                lic.lines().count(),
                if has("YAMNet") { "present" } else { "MISSING" },
                if has("Apache") { "present" } else { "MISSING" }
            ),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{package_conf, param_conf};
    use crate::eap::{pack, PackageInputs};

    /// A minimal ELF header: class, data, e_machine; no sections.
    fn fake_elf(is_64: bool, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; if is_64 { 64 } else { 52 }];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if is_64 { 2 } else { 1 };
        h[5] = 1;
        h[6] = 1;
        h[16] = 2; // ET_EXEC
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[20] = 1; // e_version
        let ehsize = h.len() as u16;
        let at = if is_64 { 52 } else { 40 };
        h[at..at + 2].copy_from_slice(&ehsize.to_le_bytes());
        h
    }

    fn package(arch: Arch, binary: Vec<u8>, tweak: impl Fn(&mut PackageInputs)) -> Vec<u8> {
        let m = Manifest::earshot("0.1.0", arch);
        let mut inputs = PackageInputs {
            binary,
            manifest_json: m.to_json_pretty(),
            package_conf: package_conf(&m),
            param_conf: param_conf(&m),
            license: crate::licenses::license_text(&[]),
            html: html::files(),
        };
        tweak(&mut inputs);
        pack(&inputs.entries(), 0).unwrap()
    }

    #[test]
    fn good_synthetic_packages_pass() {
        for arch in Arch::ALL {
            let eap = package(arch, fake_elf(arch.is_64_bit(), arch.e_machine()), |_| {});
            let r = check_eap(&eap, arch);
            assert!(r.ok(), "{arch}:\n{r}");
            assert_eq!(r.newest_glibc, None);
        }
    }

    #[test]
    fn wrong_arch_and_broken_files_fail_with_reasons() {
        // An aarch64 package checked as armv7hf: class, machine and manifest architecture differ
        // (the confs still agree with the manifest inside the package).
        let eap = package(Arch::Aarch64, fake_elf(true, 183), |_| {});
        let r = check_eap(&eap, Arch::Armv7hf);
        let failed: Vec<&str> = r
            .items
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.what.as_str())
            .collect();
        assert_eq!(failed, ["elf class", "elf machine", "manifest.json"], "{r}");

        let eap = package(Arch::Armv7hf, b"#!/bin/sh\n".to_vec(), |i| {
            i.manifest_json = i.manifest_json.replace("\"respawn\"", "\"sometimes\"");
            i.license = "MIT".into();
        });
        let r = check_eap(&eap, Arch::Armv7hf);
        let failed: Vec<&str> = r
            .items
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.what.as_str())
            .collect();
        assert_eq!(failed, ["elf", "manifest.json", "LICENSE text"], "{r}");
        assert!(
            r.to_string().contains("acapPackageConf.setup.runMode"),
            "{r}"
        );

        let r = check_eap(b"garbage", Arch::Aarch64);
        assert!(!r.ok());
        assert_eq!(r.items.len(), 1);
    }

    fn failed(r: &Report) -> Vec<&str> {
        r.items
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.what.as_str())
            .collect()
    }

    #[test]
    fn settings_page_files_and_setting_page_are_checked() {
        let arch = Arch::Aarch64;
        let elf = || fake_elf(true, arch.e_machine());
        let with_page = |page: Option<&str>| {
            let mut m = Manifest::earshot("0.1.0", arch);
            m.acap_package_conf
                .configuration
                .as_mut()
                .unwrap()
                .setting_page = page.map(Into::into);
            m.to_json_pretty()
        };

        let r = check_eap(&package(arch, elf(), |_| {}), arch);
        let page = r.items.iter().find(|i| i.what == "settingPage").unwrap();
        assert!(
            page.ok && page.detail.starts_with("html/index.html ("),
            "{r}"
        );
        for name in ["html/app.js", "html/index.html", "html/style.css"] {
            assert!(
                r.items.iter().any(|i| i.what == name && i.ok),
                "{name}: {r}"
            );
        }

        // The page named by settingPage is missing: the entry fails, and so does the manifest,
        // naming the JSON path (so no settingPage item: there is no valid manifest to read).
        let eap = package(arch, elf(), |i| i.html.retain(|(n, _)| n != "index.html"));
        let r = check_eap(&eap, arch);
        assert_eq!(failed(&r), ["html/index.html", "manifest.json"], "{r}");
        assert!(
            r.to_string()
                .contains("acapPackageConf.configuration.settingPage: found \"index.html\""),
            "{r}"
        );

        // An empty file.
        let eap = package(arch, elf(), |i| {
            i.html
                .iter_mut()
                .find(|(n, _)| n == "style.css")
                .unwrap()
                .1
                .clear();
        });
        let r = check_eap(&eap, arch);
        assert_eq!(failed(&r), ["html/style.css"], "{r}");
        assert!(r.to_string().contains("0 bytes (empty)"), "{r}");

        // No settingPage: valid for the schema, but the device would offer no page.
        let eap = package(arch, elf(), |i| i.manifest_json = with_page(None));
        let r = check_eap(&eap, arch);
        assert_eq!(failed(&r), ["settingPage"], "{r}");

        // settingPage names a file the package has, but not one of the page's.
        let eap = package(arch, elf(), |i| {
            i.html.push(("other.html".into(), "<p>".into()));
            i.manifest_json = with_page(Some("other.html"));
        });
        let r = check_eap(&eap, arch);
        assert_eq!(failed(&r), ["settingPage"], "{r}");
        assert!(
            r.to_string().contains("want one of the page's files"),
            "{r}"
        );
    }

    #[test]
    fn glibc_versions_sort_numerically() {
        let mut v = vec!["GLIBC_2.9", "GLIBC_2.17", "GLIBC_2.4"];
        v.sort_by_key(|x| glibc_key(x));
        assert_eq!(v, ["GLIBC_2.4", "GLIBC_2.9", "GLIBC_2.17"]);
        assert!(elf_info(b"\x7fELF").is_err());
    }
}
