//! Reproducible `.eap` packing and unpacking.
//!
//! Follows the recipe acap-rs uses (`../shared/handbook/acap-platform.md`, "The .eap package"):
//! `tar --format gnu --owner 0 --group 0 --sort name --mtime @$SOURCE_DATE_EPOCH` then
//! `gzip --no-name -9`, done here with the `tar` and `flate2` crates so the bytes depend only on
//! the contents: GNU headers, uid/gid 0 with user and group name `root`, one fixed mtime, mode
//! 0755 for the executable and 0644 for the rest, entries sorted by name, gzip level 9 without a
//! file name and with mtime 0. Only regular files are written: `html/` has no entry of its own
//! (unpacking creates it for `html/index.html`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::manifest::{Arch, APP_NAME};

/// Mode of the executable entry.
pub const EXECUTABLE_MODE: u32 = 0o755;
/// Mode of every other entry.
pub const FILE_MODE: u32 = 0o644;

/// One file of the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive (no leading `/` or `./`).
    pub name: String,
    /// Unix permission bits (`0o755`, `0o644`).
    pub mode: u32,
    /// Contents.
    pub data: Vec<u8>,
}

/// The inputs of Earshot's package; [`PackageInputs::entries`] turns them into archive entries.
#[derive(Debug, Clone)]
pub struct PackageInputs {
    /// The ARM executable (read from disk; its on-disk mtime and mode do not matter).
    pub binary: Vec<u8>,
    /// `manifest.json` text.
    pub manifest_json: String,
    /// `package.conf` text.
    pub package_conf: String,
    /// `param.conf` text.
    pub param_conf: String,
    /// `LICENSE` text.
    pub license: String,
    /// The files under `html/`: `(name, contents)`, normally [`crate::html::files`].
    pub html: Vec<(String, String)>,
}

impl PackageInputs {
    /// The entries: `earshot` (0755), `manifest.json`, `package.conf`, `param.conf`,
    /// `LICENSE` and `html/<name>` for each [`PackageInputs::html`] file (0644).
    pub fn entries(&self) -> Vec<Entry> {
        let file = |name: &str, text: &str| Entry {
            name: name.to_owned(),
            mode: FILE_MODE,
            data: text.as_bytes().to_vec(),
        };
        let mut entries = vec![
            Entry {
                name: APP_NAME.to_owned(),
                mode: EXECUTABLE_MODE,
                data: self.binary.clone(),
            },
            file("manifest.json", &self.manifest_json),
            file("package.conf", &self.package_conf),
            file("param.conf", &self.param_conf),
            file("LICENSE", &self.license),
        ];
        entries.extend(
            self.html
                .iter()
                .map(|(name, text)| file(&crate::html::entry_name(name), text)),
        );
        entries
    }
}

/// The package file name: `earshot_<major>_<minor>_<patch>_<arch>.eap`, from a
/// `MAJOR.MINOR.PATCH` version (dots become underscores).
pub fn file_name(version: &str, arch: Arch) -> String {
    format!("{APP_NAME}_{}_{arch}.eap", version.replace('.', "_"))
}

/// The archive mtime (seconds since 1970): `SOURCE_DATE_EPOCH` if set to a number, else the
/// commit time of `HEAD` in `repo` (`git log -1 --format=%ct`), else 0.
pub fn source_date_epoch(repo: &Path) -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return t;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// Packs `entries` into `.eap` bytes (gzip-compressed GNU tar), reproducibly: sorted by name,
/// uid/gid 0, user/group `root`, every mtime `mtime` (seconds since 1970), gzip level 9 with no
/// file name and mtime 0.
///
/// # Errors
/// An I/O error from the tar or gzip writer (in memory, so only for entries tar cannot encode,
/// e.g. names too long for a GNU header without extensions).
pub fn pack(entries: &[Entry], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let gz: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    for e in sorted {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(&e.name)?;
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        h.set_mtime(mtime);
        h.set_cksum();
        tar.append(&h, e.data.as_slice())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// An entry read back from an archive, with the header fields the checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Unix permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time (seconds since 1970).
    pub mtime: u64,
    /// Contents.
    pub data: Vec<u8>,
}

/// Unpacks `.eap` bytes into memory: entry name (leading `./` removed) to [`Unpacked`], for
/// regular files; directories are skipped.
///
/// # Errors
/// An I/O error if the bytes are not a gzip-compressed tar, an entry is neither a regular file
/// nor a directory (links could point outside the install directory), or a name repeats.
pub fn unpack(eap: &[u8]) -> std::io::Result<BTreeMap<String, Unpacked>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(eap));
    let mut out = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        let h = entry.header();
        match h.entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => return Err(bad(format!("{name}: entry type {other:?} is not a file"))),
        }
        let (mode, uid, gid, mtime) = (h.mode()?, h.uid()?, h.gid()?, h.mtime()?);
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let item = Unpacked {
            mode,
            uid,
            gid,
            mtime,
            data,
        };
        if out.insert(name.clone(), item).is_some() {
            return Err(bad(format!("{name} appears twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn inputs_from(dir: &Path) -> PackageInputs {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        PackageInputs {
            binary: std::fs::read(dir.join("earshot")).unwrap(),
            manifest_json: read("manifest.json"),
            package_conf: read("package.conf"),
            param_conf: read("param.conf"),
            license: read("LICENSE"),
            html: vec![
                ("index.html".into(), read("index.html")),
                ("app.js".into(), read("app.js")),
            ],
        }
    }

    #[test]
    fn same_inputs_give_identical_bytes_whatever_the_disk_says() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("earshot", "\x7fELF fake binary"),
            ("manifest.json", "{}\n"),
            ("package.conf", "APPNAME=\"earshot\"\n"),
            ("param.conf", "A=\"1\"\n"),
            ("LICENSE", "YAMNet Apache\n"),
            ("index.html", "<!doctype html>\n"),
            ("app.js", "'use strict';\n"),
        ];
        let write_all = |when: SystemTime| {
            for (n, t) in files {
                let path = dir.path().join(n);
                std::fs::write(&path, t).unwrap();
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(when).unwrap();
            }
        };
        write_all(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        let first = pack(&inputs_from(dir.path()).entries(), 1_700_000_000).unwrap();
        write_all(SystemTime::now());
        let mut entries = inputs_from(dir.path()).entries();
        entries.reverse(); // input order must not matter either
        let second = pack(&entries, 1_700_000_000).unwrap();
        assert_eq!(first, second);
        // gzip header: no FNAME flag, mtime 0, maximum compression (XFL 2).
        assert_eq!(&first[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&first[4..8], &[0, 0, 0, 0]);
        assert_eq!(first[8], 2);

        let unpacked = unpack(&first).unwrap();
        let names: Vec<&str> = unpacked.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "LICENSE",
                "earshot",
                "html/app.js",
                "html/index.html",
                "manifest.json",
                "package.conf",
                "param.conf"
            ]
        );
        for (name, e) in &unpacked {
            let want = if name == "earshot" { 0o755 } else { 0o644 };
            assert_eq!(
                (e.mode, e.uid, e.gid, e.mtime),
                (want, 0, 0, 1_700_000_000),
                "{name}"
            );
        }
        assert_eq!(unpacked["param.conf"].data, b"A=\"1\"\n");
        assert_eq!(unpacked["html/index.html"].data, b"<!doctype html>\n");
        // A different mtime changes the bytes (so the mtime really is in the headers).
        assert_ne!(first, pack(&entries, 1).unwrap());
    }

    #[test]
    fn tar_is_gnu_with_root_owner_and_sorted_names() {
        let entries = vec![
            Entry {
                name: "b".into(),
                mode: 0o644,
                data: b"2".to_vec(),
            },
            Entry {
                name: "a".into(),
                mode: 0o755,
                data: b"1".to_vec(),
            },
        ];
        let eap = pack(&entries, 5).unwrap();
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(eap.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let header = &tar_bytes[..512];
        assert_eq!(&header[257..265], b"ustar  \0", "GNU magic");
        assert_eq!(&header[..2], b"a\0");
        assert_eq!(&header[265..270], b"root\0");
        assert_eq!(&header[297..302], b"root\0");
    }

    #[test]
    fn file_name_and_epoch() {
        assert_eq!(
            file_name("0.1.0", Arch::Aarch64),
            "earshot_0_1_0_aarch64.eap"
        );
        assert_eq!(
            file_name("12.3.45", Arch::Armv7hf),
            "earshot_12_3_45_armv7hf.eap"
        );
        // Outside a git repository with no SOURCE_DATE_EPOCH the epoch is 0 or the env value.
        let dir = tempfile::tempdir().unwrap();
        let t = source_date_epoch(dir.path());
        match std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(v) => assert_eq!(t, v),
            None => assert_eq!(t, 0),
        }
    }

    #[test]
    fn unpack_rejects_garbage() {
        assert!(unpack(b"not gzip").is_err());
    }
}
