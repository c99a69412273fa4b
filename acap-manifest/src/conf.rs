//! `package.conf` and `param.conf`: the package description of firmware older than the manifest.
//!
//! The ACAP SDK's packaging (`acap-build`) writes both files next to `manifest.json`, derived
//! from it, for devices that predate manifests (`../shared/handbook/acap-platform.md`, "The .eap
//! package"). Both are shell-style files the device sources: one `KEY="value"` assignment a line.
//! `package.conf` holds the keys below in the SDK's order; `param.conf` holds one
//! `Name="default"` line per `paramConfig` entry, in declaration order.

use std::fmt;

use crate::manifest::Manifest;

/// The keys of `package.conf`, in the order the ACAP SDK writes them.
pub const PACKAGE_CONF_KEYS: [&str; 22] = [
    "PACKAGENAME",
    "APPTYPE",
    "APPNAME",
    "APPID",
    "LICENSENAME",
    "LICENSEPAGE",
    "VENDOR",
    "REQEMBDEVVERSION",
    "APPMAJORVERSION",
    "APPMINORVERSION",
    "APPMICROVERSION",
    "APPGRP",
    "APPUSR",
    "APPOPTS",
    "OTHERFILES",
    "SETTINGSPAGEFILE",
    "SETTINGSPAGETEXT",
    "VENDORHOMEPAGELINK",
    "PREUPGRADESCRIPT",
    "POSTINSTALLSCRIPT",
    "STARTMODE",
    "HTTPCGIPATHS",
];

/// The `package.conf` entries for `manifest`, as `(KEY, value)` in [`PACKAGE_CONF_KEYS`] order.
///
/// Values follow what the SDK derives from a manifest: `PACKAGENAME` is `friendlyName` (else
/// `appName`), `APPTYPE` the architecture, the three version keys split `version`
/// (`MAJOR.MINOR.PATCH`; the whole text in `APPMAJORVERSION` if it does not split),
/// `REQEMBDEVVERSION` is `embeddedSdkVersion` (default `3.0`), `APPUSR`/`APPGRP` are `sdk` (a
/// manifest's dynamic user replaces them on current firmware), `LICENSENAME="Available"` and
/// `LICENSEPAGE="none"` (no copy protection), `VENDORHOMEPAGELINK` an HTML link to `vendorUrl`,
/// `STARTMODE` the `runMode`; keys for features Earshot does not use (CGIs, scripts, extra
/// files) are empty. `SETTINGSPAGEFILE`/`SETTINGSPAGETEXT` are empty too although the manifest
/// has a `settingPage`: the handbook does not describe them (acap-rs's `acap-build` copies
/// `settingPage` into `SETTINGSPAGEFILE`, which matters only to firmware that reads
/// `package.conf` instead of the manifest).
pub fn package_conf_entries(manifest: &Manifest) -> Vec<(&'static str, String)> {
    let setup = &manifest.acap_package_conf.setup;
    let (major, minor, micro) = match manifest.version_parts() {
        Some((a, b, c)) => (a.to_string(), b.to_string(), c.to_string()),
        None => (setup.version.clone(), String::new(), String::new()),
    };
    let link = setup
        .vendor_url
        .as_ref()
        .map(|u| format!("<a href=\"{u}\" target=\"_blank\">{u}</a>"))
        .unwrap_or_default();
    let values = [
        setup
            .friendly_name
            .clone()
            .unwrap_or_else(|| setup.app_name.clone()),
        setup
            .architecture
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        setup.app_name.clone(),
        String::new(),
        "Available".to_owned(),
        "none".to_owned(),
        setup.vendor.clone(),
        setup
            .embedded_sdk_version
            .clone()
            .unwrap_or_else(|| "3.0".to_owned()),
        major,
        minor,
        micro,
        "sdk".to_owned(),
        "sdk".to_owned(),
        setup.run_options.clone().unwrap_or_default(),
        String::new(),
        String::new(),
        String::new(),
        link,
        String::new(),
        String::new(),
        setup.run_mode.as_str().to_owned(),
        String::new(),
    ];
    PACKAGE_CONF_KEYS.into_iter().zip(values).collect()
}

/// Quotes `value` for a shell-style `KEY=value` line.
///
/// Double quotes with `\`, `"`, `$` and `` ` `` backslash-escaped, except that a value holding
/// `"` but no `'` is single-quoted, as the SDK writes `VENDORHOMEPAGELINK='<a href="...">'`.
pub fn quote(value: &str) -> String {
    if value.contains('"') && !value.contains('\'') {
        return format!("'{value}'");
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn render(entries: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    entries
        .iter()
        .map(|(k, v)| format!("{}={}\n", k.as_ref(), quote(v.as_ref())))
        .collect()
}

/// `package.conf`'s text for `manifest`: the [`package_conf_entries`], one `KEY="value"` line
/// each, newline-terminated.
pub fn package_conf(manifest: &Manifest) -> String {
    render(&package_conf_entries(manifest))
}

/// `param.conf`'s text for `manifest`: one `Name="default"` line per `paramConfig` entry, in
/// declaration order (empty text when there are no parameters).
pub fn param_conf(manifest: &Manifest) -> String {
    let entries: Vec<(&str, &str)> = manifest
        .params()
        .iter()
        .map(|p| (p.name.as_str(), p.default.as_str()))
        .collect();
    render(&entries)
}

/// What is wrong with a line of a `KEY="value"` file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfErrorKind {
    /// The line has no `=` after a key.
    NoEquals,
    /// The key is empty or not `[A-Za-z_][A-Za-z0-9_]*`.
    BadKey(String),
    /// A quote opened on this line is not closed on it.
    UnterminatedQuote,
    /// A backslash ends the line (line continuations are not supported).
    TrailingBackslash,
    /// Unquoted whitespace followed by more text after the value.
    TextAfterValue(String),
    /// The key was already assigned on an earlier line (given).
    DuplicateKey {
        /// The key.
        key: String,
        /// 1-based line of the first assignment.
        first_line: usize,
    },
}

/// A `KEY="value"` file that cannot be read: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ConfParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub kind: ConfErrorKind,
}

impl fmt::Display for ConfErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfErrorKind::NoEquals => f.write_str("expected KEY=\"value\", found no '='"),
            ConfErrorKind::BadKey(k) => {
                write!(f, "bad key {k:?} (expected [A-Za-z_][A-Za-z0-9_]*)")
            }
            ConfErrorKind::UnterminatedQuote => f.write_str("quote not closed on the line"),
            ConfErrorKind::TrailingBackslash => f.write_str("backslash at the end of the line"),
            ConfErrorKind::TextAfterValue(t) => write!(f, "text after the value: {t:?}"),
            ConfErrorKind::DuplicateKey { key, first_line } => {
                write!(f, "{key} assigned again (first on line {first_line})")
            }
        }
    }
}

/// Parses a shell-style `KEY="value"` file (`package.conf`, `param.conf`) into its assignments,
/// in file order.
///
/// Each line is empty, a `#` comment, or `KEY=value` with optional surrounding blanks and an
/// optional trailing `# comment`. The value is a run of double-quoted parts (backslash escapes
/// `\`, `"`, `$`, `` ` ``; other backslashes are kept), single-quoted parts (literal) and bare
/// characters (a backslash escapes the next one), as `sh` reads a simple assignment; an optional
/// `export ` prefix is accepted. Never panics.
///
/// # Errors
/// [`ConfParseError`] naming the first bad line (1-based) and what is wrong with it.
pub fn parse_conf(text: &str) -> Result<Vec<(String, String)>, ConfParseError> {
    let mut out: Vec<(String, String, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |kind| ConfParseError {
            line: line_no,
            kind,
        };
        let line = raw.trim_start_matches([' ', '\t']);
        if line.trim_end().is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(err(ConfErrorKind::NoEquals));
        };
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(err(ConfErrorKind::BadKey(key.to_owned())));
        }
        let value = parse_value(rest).map_err(err)?;
        if let Some((_, _, first)) = out.iter().find(|(k, _, _)| k == key) {
            return Err(err(ConfErrorKind::DuplicateKey {
                key: key.to_owned(),
                first_line: *first,
            }));
        }
        out.push((key.to_owned(), value, line_no));
    }
    Ok(out.into_iter().map(|(k, v, _)| (k, v)).collect())
}

fn parse_value(rest: &str) -> Result<String, ConfErrorKind> {
    let mut value = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err(ConfErrorKind::UnterminatedQuote),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        None => return Err(ConfErrorKind::UnterminatedQuote),
                        Some(e @ ('\\' | '"' | '$' | '`')) => value.push(e),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                    },
                    Some(other) => value.push(other),
                }
            },
            '\'' => loop {
                match chars.next() {
                    None => return Err(ConfErrorKind::UnterminatedQuote),
                    Some('\'') => break,
                    Some(other) => value.push(other),
                }
            },
            '\\' => match chars.next() {
                None => return Err(ConfErrorKind::TrailingBackslash),
                Some(e) => value.push(e),
            },
            ' ' | '\t' | '\r' => {
                let tail: String = chars.collect();
                let tail = tail.trim();
                if tail.is_empty() || tail.starts_with('#') {
                    return Ok(value);
                }
                return Err(ConfErrorKind::TextAfterValue(tail.to_owned()));
            }
            other => value.push(other),
        }
    }
    Ok(value)
}

/// One way a `package.conf`/`param.conf` pair disagrees with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// `package.conf` or `param.conf`.
    pub file: &'static str,
    /// The key (or parameter name); empty when the whole file is unreadable.
    pub key: String,
    /// What the file says (`missing`, a value, or the parse error).
    pub found: String,
    /// What the manifest implies (`absent` for keys that should not be there).
    pub expected: String,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: found {}, manifest says {}",
            self.file, self.key, self.found, self.expected
        )
    }
}

/// Checks that `package_conf` and `param_conf` (file texts) say what `manifest` says.
///
/// `package.conf` must hold every key of [`package_conf_entries`] with that value (other keys
/// are allowed: some SDK versions write more); `param.conf` must hold exactly the `paramConfig`
/// entries with their defaults, in declaration order. Returns every disagreement (empty: they
/// agree).
pub fn check_confs(manifest: &Manifest, package_conf: &str, param_conf: &str) -> Vec<Disagreement> {
    let mut out = Vec::new();
    let mut d = |file, key: &str, found: String, expected: String| {
        out.push(Disagreement {
            file,
            key: key.to_owned(),
            found,
            expected,
        });
    };
    match parse_conf(package_conf) {
        Err(e) => d(
            "package.conf",
            "",
            format!("unreadable ({e})"),
            "KEY=\"value\" lines".into(),
        ),
        Ok(parsed) => {
            for (key, want) in package_conf_entries(manifest) {
                match parsed.iter().find(|(k, _)| k == key) {
                    None => d("package.conf", key, "missing".into(), format!("{want:?}")),
                    Some((_, got)) if *got != want => {
                        d("package.conf", key, format!("{got:?}"), format!("{want:?}"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    match parse_conf(param_conf) {
        Err(e) => d(
            "param.conf",
            "",
            format!("unreadable ({e})"),
            "Name=\"default\" lines".into(),
        ),
        Ok(parsed) => {
            let params = manifest.params();
            for p in params {
                match parsed.iter().find(|(k, _)| *k == p.name) {
                    None => d(
                        "param.conf",
                        &p.name,
                        "missing".into(),
                        format!("{:?}", p.default),
                    ),
                    Some((_, got)) if *got != p.default => d(
                        "param.conf",
                        &p.name,
                        format!("{got:?}"),
                        format!("{:?}", p.default),
                    ),
                    Some(_) => {}
                }
            }
            for (k, v) in &parsed {
                if !params.iter().any(|p| p.name == *k) {
                    d(
                        "param.conf",
                        k,
                        format!("{v:?}"),
                        "absent (not in paramConfig)".into(),
                    );
                }
            }
            let order: Vec<&str> = parsed
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| params.iter().any(|p| p.name == *k))
                .collect();
            let declared: Vec<&str> = params
                .iter()
                .map(|p| p.name.as_str())
                .filter(|n| order.contains(n))
                .collect();
            if order != declared {
                d("param.conf", "(order)", order.join(","), declared.join(","));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Arch, Manifest};

    fn manifest() -> Manifest {
        Manifest::earshot("0.12.3", Arch::Aarch64)
    }

    #[test]
    fn package_conf_has_every_key_in_order() {
        let m = manifest();
        let text = package_conf(&m);
        let keys: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(keys, PACKAGE_CONF_KEYS);
        for line in [
            "PACKAGENAME=\"Earshot audio analytics\"",
            "APPTYPE=\"aarch64\"",
            "APPNAME=\"earshot\"",
            "VENDOR=\"Earshot\"",
            "REQEMBDEVVERSION=\"3.0\"",
            "APPMAJORVERSION=\"0\"",
            "APPMINORVERSION=\"12\"",
            "APPMICROVERSION=\"3\"",
            "STARTMODE=\"respawn\"",
            "VENDORHOMEPAGELINK=\"\"",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(check_confs(&m, &text, &param_conf(&m)), vec![]);
    }

    #[test]
    fn param_conf_follows_param_config() {
        let m = manifest();
        let text = param_conf(&m);
        let parsed = parse_conf(&text).unwrap();
        let want: Vec<(String, String)> = m
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.default.clone()))
            .collect();
        assert_eq!(parsed, want);
        assert!(text.starts_with("DeviceId=\"\"\n"), "{text}");
    }

    #[test]
    fn vendor_link_is_single_quoted_and_parses_back() {
        let mut m = manifest();
        m.acap_package_conf.setup.vendor_url = Some("https://example.invalid/x".into());
        let text = package_conf(&m);
        assert!(text.contains(
            "VENDORHOMEPAGELINK='<a href=\"https://example.invalid/x\" target=\"_blank\">\
             https://example.invalid/x</a>'"
        ));
        assert_eq!(check_confs(&m, &text, &param_conf(&m)), vec![]);
    }

    #[test]
    fn parser_reads_shell_quoting() {
        let text = "# comment\n\nA=\"x \\\"y\\\" \\$z \\\\ \\n\"\n  B='a \"b\" \\c'  # note\n\
                    C=plain\\ text\nexport D=\"one\"'two'three\nE=\nF=\"\"\r\n";
        let parsed = parse_conf(text).unwrap();
        let get = |k: &str| parsed.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("A"), "x \"y\" $z \\ \\n");
        assert_eq!(get("B"), "a \"b\" \\c");
        assert_eq!(get("C"), "plain text");
        assert_eq!(get("D"), "onetwothree");
        assert_eq!(get("E"), "");
        assert_eq!(get("F"), "");
    }

    #[test]
    fn parser_names_the_bad_line() {
        let cases: [(&str, usize, ConfErrorKind); 6] = [
            ("A=\"1\"\nB\n", 2, ConfErrorKind::NoEquals),
            ("A=1\n\n1A=2\n", 3, ConfErrorKind::BadKey("1A".into())),
            ("A=\"open\n", 1, ConfErrorKind::UnterminatedQuote),
            ("A=1\nB='x\n", 2, ConfErrorKind::UnterminatedQuote),
            ("A=x\\", 1, ConfErrorKind::TrailingBackslash),
            (
                "A=\"1\" B=2\n",
                1,
                ConfErrorKind::TextAfterValue("B=2".into()),
            ),
        ];
        for (text, line, kind) in cases {
            assert_eq!(
                parse_conf(text),
                Err(ConfParseError { line, kind }),
                "{text:?}"
            );
        }
        let e = parse_conf("A=1\nB=2\nA=3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().contains("first on line 1"), "{e}");
    }

    #[test]
    fn quote_round_trips_any_text() {
        for v in [
            "",
            "plain",
            "a \"b\"",
            "it's \"x\"",
            "$HOME `x` \\",
            "ünï €",
            "'",
            "\"'",
        ] {
            let line = format!("K={}\n", quote(v));
            assert_eq!(
                parse_conf(&line).unwrap(),
                vec![("K".into(), v.into())],
                "{line}"
            );
        }
    }

    /// xorshift64*: a small deterministic generator for the fuzz test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn parser_never_panics_on_random_and_mutated_input() {
        let m = manifest();
        let seeds = [
            package_conf(&m),
            param_conf(&m),
            "A='x'\nB=\"y\\\"\"\n".to_owned(),
        ];
        let alphabet: Vec<char> = "AZaz_09=\"'\\$` \t\r\n#é€\u{0}x".chars().collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ok = 0;
        for round in 0..4000 {
            let text: String = if round % 2 == 0 {
                // Mutate a real file: replace, insert or delete a few characters.
                let mut chars: Vec<char> = seeds[round % seeds.len()].chars().collect();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(chars.len() + 1);
                    let c = alphabet[rng.below(alphabet.len())];
                    match rng.below(3) {
                        0 if at < chars.len() => chars[at] = c,
                        1 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, c),
                    }
                }
                chars.into_iter().collect()
            } else {
                (0..rng.below(200))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            };
            match parse_conf(&text) {
                Ok(entries) => {
                    ok += 1;
                    // Whatever parsed must survive re-rendering.
                    let again = render(&entries);
                    assert_eq!(parse_conf(&again).unwrap(), entries, "{text:?}");
                }
                Err(e) => {
                    assert!(
                        e.line >= 1 && e.line <= text.lines().count().max(1),
                        "{e} {text:?}"
                    );
                }
            }
        }
        assert!(
            ok > 100,
            "only {ok} inputs parsed: the fuzzer is not exercising values"
        );
    }

    #[test]
    fn disagreements_are_listed() {
        let m = manifest();
        let pkg = package_conf(&m)
            .replace("STARTMODE=\"respawn\"", "STARTMODE=\"never\"")
            .replace("APPNAME=\"earshot\"\n", "");
        let param = param_conf(&m)
            .replace("GunshotSensitivity=\"50\"", "GunshotSensitivity=\"70\"")
            + "Extra=\"1\"\n";
        let found = check_confs(&m, &pkg, &param);
        let keys: Vec<(&str, &str)> = found.iter().map(|d| (d.file, d.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                ("package.conf", "APPNAME"),
                ("package.conf", "STARTMODE"),
                ("param.conf", "GunshotSensitivity"),
                ("param.conf", "Extra"),
            ],
            "{found:#?}"
        );
        let other = Manifest::earshot("0.12.3", Arch::Armv7hf);
        let found = check_confs(&other, &package_conf(&m), &param_conf(&m));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "APPTYPE");
        let found = check_confs(&m, "A=\"", "");
        assert!(found[0].found.contains("line 1"), "{found:?}");
        assert_eq!(found.len(), 1 + m.params().len());
        let params = param_conf(&m);
        let mut lines: Vec<&str> = params.lines().collect();
        lines.swap(0, 1);
        let found = check_confs(&m, &package_conf(&m), &(lines.join("\n") + "\n"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "(order)");
    }
}
