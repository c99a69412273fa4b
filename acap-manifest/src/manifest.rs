//! `manifest.json`: the ACAP package description, as typed data and as checked JSON.
//!
//! Follows the ACAP manifest schema 1.7.1 field descriptions
//! (AxisCommunications/acap-documentation, `docs/develop/manifest-schemas/
//! schema-field-descriptions-v1.7.1.md`) and `../shared/handbook/acap-platform.md`, "manifest.json".
//!
//! # Why schema 1.7.1
//!
//! 1.7.1 is the schema ACAP Native SDK 12.0 writes and AXIS OS 12.0 and later accept, so one
//! package installs on every AXIS OS 12 device. Schema 2.x drops `embeddedSdkVersion` and adds
//! `compatibleOsVersions`, which AXIS OS 13 requires; AXIS OS 13 also only installs signed apps,
//! and signing needs Axis-issued keys this project does not have. A 2.x manifest would therefore
//! buy nothing installable here, while 1.7.1 covers the AXIS OS 12 devices we can target.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The manifest schema version Earshot writes (see the module documentation for why).
pub const SCHEMA_VERSION: &str = "1.7.1";
/// `acapPackageConf.setup.appName`: the executable's name and the install directory
/// `/usr/local/packages/earshot`.
pub const APP_NAME: &str = "earshot";
/// `acapPackageConf.setup.friendlyName`: the name the device's web pages show.
pub const FRIENDLY_NAME: &str = "Earshot audio analytics";
/// `acapPackageConf.setup.vendor`.
pub const VENDOR: &str = "Earshot";
/// `acapPackageConf.setup.embeddedSdkVersion`: "3.0", the value for apps that need no
/// pre-manifest firmware (schema 1.7.1 description of the field).
pub const EMBEDDED_SDK_VERSION: &str = "3.0";
/// `runOptions`: the arguments AXIS OS starts `earshot` with: the live daemon on the device's
/// microphone node (`AudioDevice0Input0`, 48 kHz mono, through PipeWire; see
/// `acap-platform.md`, "Audio capture"), serving the settings page's API on [`HTTP_LISTEN`].
/// Settings come from the app parameters.
pub const RUN_OPTIONS: &str = "run --input pipewire:AudioDevice0Input0 --http 127.0.0.1:2001";
/// Where `earshot run` serves its HTTP API on the device (`--http` in [`RUN_OPTIONS`]).
///
/// Loopback only: the device's web server reaches it through the [`REVERSE_PROXY`] entries, with
/// the device's own login in front, and nothing else on the network can. Port 2001 is the one
/// Axis's reverse-proxy examples use; [`REVERSE_PROXY`]'s targets name the same port.
pub const HTTP_LISTEN: &str = "127.0.0.1:2001";
/// `configuration.settingPage`: the page the device's app list opens, a file under the
/// package's `html/` directory ([`crate::html::FILES`]), which the device serves at
/// `/local/earshot/`.
pub const SETTING_PAGE: &str = "index.html";
/// `configuration.reverseProxy`: `(apiPath, target, access)`. The device forwards
/// `/local/earshot/<apiPath>/...` to `<target>/...` after checking the user's access level, so
/// the page's relative URLs (`api/settings`, `view/status`) reach `earshot run`'s server.
///
/// - `api` (admin): the whole API, including changing settings and sending test events;
/// - `view` (viewer): the read-only GET endpoints (status, events, live stream) for watching.
pub const REVERSE_PROXY: [(&str, &str, Access); 2] = [
    ("api", "http://127.0.0.1:2001/api", Access::Admin),
    ("view", "http://127.0.0.1:2001/view", Access::Viewer),
];

/// The secondary group the app's dynamic user needs to capture audio through PipeWire
/// (`../shared/handbook/acap-platform.md`, "Audio capture").
pub const PIPEWIRE_GROUP: &str = "pipewire";
/// The D-Bus method that hands the app VAPIX service-account credentials
/// (`../shared/handbook/acap-platform.md`, "VAPIX calls from inside the app").
pub const GET_CREDENTIALS_METHOD: &str = "com.axis.HTTPConf1.VAPIXServiceAccounts1.GetCredentials";

/// A build target of the package: the two CPU architectures AXIS OS devices have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Arch {
    /// 64-bit ARM (ARTPEC-8/9, CV25; Cortex-A53 class).
    Aarch64,
    /// 32-bit ARM hard-float with NEON (ARTPEC-6/7; Cortex-A9).
    Armv7hf,
}

impl Arch {
    /// Both targets, in a fixed order.
    pub const ALL: [Arch; 2] = [Arch::Aarch64, Arch::Armv7hf];

    /// The ACAP name (`aarch64`, `armv7hf`), as in `architecture`, `APPTYPE` and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Armv7hf => "armv7hf",
        }
    }

    /// The Rust target triple the binary is built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Armv7hf => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// Whether the executable is a 64-bit ELF (`EI_CLASS` = `ELFCLASS64`).
    pub fn is_64_bit(self) -> bool {
        matches!(self, Arch::Aarch64)
    }

    /// The ELF `e_machine` of the executable: 183 (`EM_AARCH64`) or 40 (`EM_ARM`).
    pub fn e_machine(self) -> u16 {
        match self {
            Arch::Aarch64 => 183,
            Arch::Armv7hf => 40,
        }
    }

    /// Parses an ACAP architecture name (`aarch64`, `armv7hf`); `None` for anything else.
    pub fn parse(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `acapPackageConf.setup.architecture` (schema values `all`, `aarch64`, `armv7hf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Architecture independent (scripts only).
    All,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit ARM hard-float.
    Armv7hf,
}

impl From<Arch> for Architecture {
    fn from(a: Arch) -> Self {
        match a {
            Arch::Aarch64 => Architecture::Aarch64,
            Arch::Armv7hf => Architecture::Armv7hf,
        }
    }
}

impl Architecture {
    /// The schema string (`all`, `aarch64`, `armv7hf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::All => "all",
            Architecture::Aarch64 => "aarch64",
            Architecture::Armv7hf => "armv7hf",
        }
    }
}

/// `access` of a `reverseProxy` entry: the device user level a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Administrators only.
    Admin,
    /// Operators and administrators.
    Operator,
    /// Every logged-in user.
    Viewer,
    /// Anyone, without logging in.
    Anonymous,
}

impl Access {
    /// Every level, most privileged first.
    pub const ALL: [Access; 4] = [
        Access::Admin,
        Access::Operator,
        Access::Viewer,
        Access::Anonymous,
    ];

    /// The schema string (`admin`, `operator`, `viewer`, `anonymous`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::Operator => "operator",
            Access::Viewer => "viewer",
            Access::Anonymous => "anonymous",
        }
    }
}

/// `acapPackageConf.setup.runMode`: what AXIS OS does when the app exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Restarted whenever it exits (Earshot's mode: a panic aborts and the device restarts it).
    Respawn,
    /// Not restarted on exit, but started again after a reboot if it was running.
    Once,
    /// Never restarted.
    Never,
}

impl RunMode {
    /// The schema string (`respawn`, `once`, `never`), also `package.conf`'s `STARTMODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Respawn => "respawn",
            RunMode::Once => "once",
            RunMode::Never => "never",
        }
    }
}

/// The whole `manifest.json` (the subset of schema 1.7.1 Earshot uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `schemaVersion`, [`SCHEMA_VERSION`] for manifests this crate writes.
    pub schema_version: String,
    /// `acapPackageConf`.
    pub acap_package_conf: AcapPackageConf,
    /// `resources`: host resources the app needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// `acapPackageConf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcapPackageConf {
    /// `setup`: identification and run settings.
    pub setup: Setup,
    /// `configuration`: the settings page, parameters and reverse-proxy paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Configuration>,
}

/// `acapPackageConf.setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    /// `appName`: the executable's name; a letter, then 1 to 25 of `[A-Za-z0-9_]`.
    pub app_name: String,
    /// `friendlyName`: shown in the web pages; no line breaks, at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// `vendor`: the provider's name.
    pub vendor: String,
    /// `vendorUrl`: the provider's home page (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_url: Option<String>,
    /// `embeddedSdkVersion`: minimum SDK version of the device, `MAJOR.MINOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_sdk_version: Option<String>,
    /// `version`: `MAJOR.MINOR.PATCH`, all decimal numbers.
    pub version: String,
    /// `runMode`.
    pub run_mode: RunMode,
    /// `architecture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// `runOptions`: command-line options given to the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_options: Option<String>,
}

/// `acapPackageConf.configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    /// `settingPage`: the main web page, a file under the package's `html/` directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting_page: Option<String>,
    /// `paramConfig`: the app parameters (axparameter), in the order the device lists them.
    #[serde(default)]
    pub param_config: Vec<ParamConfig>,
    /// `reverseProxy`: paths under `/local/<appName>/` the device forwards to the app's server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverse_proxy: Vec<ReverseProxy>,
}

/// One `reverseProxy` entry (the schema's TCP form): `/local/<appName>/<apiPath>/...` is
/// forwarded to `<target>/...` for users of at least `access` level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReverseProxy {
    /// `apiPath`: the path under the app's web root, e.g. `api`.
    pub api_path: String,
    /// `target`: the URL requests are forwarded to, e.g. `http://localhost:2001/api`.
    pub target: String,
    /// `access`: who may call it.
    pub access: Access,
}

/// One `paramConfig` entry: an app parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamConfig {
    /// `name`: the parameter name (letters and digits).
    pub name: String,
    /// `default`: the value of a fresh install.
    pub default: String,
    /// `type`: the parameter type string, e.g. `int:min=0;max=100`, `bool:no,yes`, `string`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// `resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// `resources.linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<LinuxResources>,
    /// `resources.dbus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbus: Option<DbusResources>,
}

/// `resources.linux`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxResources {
    /// `resources.linux.user`: the dynamic user the app runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<DynamicUser>,
}

/// `resources.linux.user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicUser {
    /// `groups`: secondary groups of the app's user.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `resources.dbus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DbusResources {
    /// `requiredMethods`: D-Bus methods that must exist, or installation is refused.
    #[serde(default)]
    pub required_methods: Vec<String>,
}

impl Manifest {
    /// Earshot's manifest for `arch`.
    ///
    /// `version` is the `earshot` package's `CARGO_PKG_VERSION` (`MAJOR.MINOR.PATCH`); the
    /// parameters come from `earshot::settings::DEVICE_SETTINGS`, in its order, with
    /// `ParamKind::manifest_type()` as their type.
    pub fn earshot(version: &str, arch: Arch) -> Manifest {
        let param_config = earshot::settings::DEVICE_SETTINGS
            .iter()
            .map(|s| ParamConfig {
                name: s.name.to_owned(),
                default: s.default.to_owned(),
                type_: s.kind.manifest_type(),
            })
            .collect();
        Manifest {
            schema_version: SCHEMA_VERSION.to_owned(),
            acap_package_conf: AcapPackageConf {
                setup: Setup {
                    app_name: APP_NAME.to_owned(),
                    friendly_name: Some(FRIENDLY_NAME.to_owned()),
                    vendor: VENDOR.to_owned(),
                    vendor_url: None,
                    embedded_sdk_version: Some(EMBEDDED_SDK_VERSION.to_owned()),
                    version: version.to_owned(),
                    run_mode: RunMode::Respawn,
                    architecture: Some(arch.into()),
                    run_options: Some(RUN_OPTIONS.to_owned()),
                },
                configuration: Some(Configuration {
                    setting_page: Some(SETTING_PAGE.to_owned()),
                    param_config,
                    reverse_proxy: REVERSE_PROXY
                        .iter()
                        .map(|&(api_path, target, access)| ReverseProxy {
                            api_path: api_path.to_owned(),
                            target: target.to_owned(),
                            access,
                        })
                        .collect(),
                }),
            },
            resources: Some(Resources {
                linux: Some(LinuxResources {
                    user: Some(DynamicUser {
                        groups: vec![PIPEWIRE_GROUP.to_owned()],
                    }),
                }),
                dbus: Some(DbusResources {
                    required_methods: vec![GET_CREDENTIALS_METHOD.to_owned()],
                }),
            }),
        }
    }

    /// The `paramConfig` entries (empty when there is no `configuration`).
    pub fn params(&self) -> &[ParamConfig] {
        self.acap_package_conf
            .configuration
            .as_ref()
            .map_or(&[], |c| c.param_config.as_slice())
    }

    /// `configuration.settingPage`, if any.
    pub fn setting_page(&self) -> Option<&str> {
        self.acap_package_conf
            .configuration
            .as_ref()
            .and_then(|c| c.setting_page.as_deref())
    }

    /// The `reverseProxy` entries (empty when there is no `configuration`).
    pub fn reverse_proxy(&self) -> &[ReverseProxy] {
        self.acap_package_conf
            .configuration
            .as_ref()
            .map_or(&[], |c| c.reverse_proxy.as_slice())
    }

    /// `manifest.json`'s text: pretty-printed JSON (two-space indent) ending in a newline.
    pub fn to_json_pretty(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("a manifest always serialises to JSON");
        text.push('\n');
        text
    }

    /// Parses and validates `manifest.json` text.
    ///
    /// # Errors
    /// Every [`Problem`] [`validate`] finds (one with path `$` if the text is not JSON).
    pub fn from_json(text: &str) -> Result<Manifest, Vec<Problem>> {
        Self::parse(text, validate)
    }

    /// Parses and validates `manifest.json` text taken from a package whose entry names are
    /// `files` (e.g. `html/index.html`): [`Manifest::from_json`] with [`validate_package`].
    ///
    /// # Errors
    /// Every [`Problem`] [`validate_package`] finds (one with path `$` if the text is not JSON).
    pub fn from_package_json<S: AsRef<str>>(
        text: &str,
        files: &[S],
    ) -> Result<Manifest, Vec<Problem>> {
        Self::parse(text, |v| validate_package(v, files))
    }

    fn parse(text: &str, check: impl Fn(&Value) -> Vec<Problem>) -> Result<Manifest, Vec<Problem>> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            vec![Problem {
                path: "$".to_owned(),
                value: format!("text that is not JSON ({e})"),
                expected: "a JSON object".to_owned(),
            }]
        })?;
        let problems = check(&value);
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_json::from_value(value).map_err(|e| {
            vec![Problem {
                path: "$".to_owned(),
                value: format!("a manifest this tool cannot read ({e})"),
                expected: "the manifest fields Earshot uses".to_owned(),
            }]
        })
    }

    /// `(major, minor, patch)` of `setup.version`, `None` unless it is `N.N.N`.
    pub fn version_parts(&self) -> Option<(u64, u64, u64)> {
        version_parts(&self.acap_package_conf.setup.version)
    }
}

/// `(major, minor, patch)` of a `MAJOR.MINOR.PATCH` version of decimal numbers without leading
/// zeros (SemVer's core); `None` for anything else.
pub fn version_parts(version: &str) -> Option<(u64, u64, u64)> {
    let mut it = version.split('.');
    let mut next = || -> Option<u64> {
        let p = it.next()?;
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        if ok {
            p.parse().ok()
        } else {
            None
        }
    };
    let parts = (next()?, next()?, next()?);
    if it.next().is_some() {
        return None;
    }
    Some(parts)
}

/// One thing wrong with a manifest: where, what was found, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the field, dotted with `[i]` indices, e.g. `acapPackageConf.setup.runMode`
    /// or `acapPackageConf.configuration.paramConfig[3].type`; `$` is the whole document.
    pub path: String,
    /// What was there: the JSON value as text, or `missing`.
    pub value: String,
    /// What the schema (or this crate, where stricter) expects.
    pub expected: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {}",
            self.path, self.value, self.expected
        )
    }
}

fn render(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Checker {
    problems: Vec<Problem>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Checker {
    fn problem(&mut self, path: String, value: String, expected: impl Into<String>) {
        self.problems.push(Problem {
            path,
            value,
            expected: expected.into(),
        });
    }

    /// The field `key` of `obj`; reports it missing when `required`.
    fn get<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        parent: &str,
        key: &str,
        required: bool,
        what: &str,
    ) -> Option<&'a Value> {
        let v = obj.get(key);
        if v.is_none() && required {
            self.problem(join(parent, key), "missing".to_owned(), what);
        }
        v
    }

    fn object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        parent: &str,
        key: &str,
        required: bool,
    ) -> Option<&'a Map<String, Value>> {
        let v = self.get(obj, parent, key, required, "an object")?;
        match v.as_object() {
            Some(o) => Some(o),
            None => {
                self.problem(
                    join(parent, key),
                    format!("{} {}", type_name(v), render(v)),
                    "an object",
                );
                None
            }
        }
    }

    /// A string field checked by `rule` (which returns what is expected when the text fails).
    fn string<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        parent: &str,
        key: &str,
        required: bool,
        expected: &str,
        rule: impl Fn(&str) -> bool,
    ) -> Option<&'a str> {
        let v = self.get(obj, parent, key, required, &format!("a string: {expected}"))?;
        match v.as_str() {
            Some(s) if rule(s) => Some(s),
            Some(_) => {
                self.problem(join(parent, key), render(v), expected);
                None
            }
            None => {
                self.problem(
                    join(parent, key),
                    format!("{} {}", type_name(v), render(v)),
                    format!("a string: {expected}"),
                );
                None
            }
        }
    }

    fn string_array(
        &mut self,
        obj: &Map<String, Value>,
        parent: &str,
        key: &str,
        expected: &str,
        rule: impl Fn(&str) -> bool,
    ) {
        let Some(v) = self.get(obj, parent, key, false, "") else {
            return;
        };
        let path = join(parent, key);
        let Some(items) = v.as_array() else {
            self.problem(
                path,
                format!("{} {}", type_name(v), render(v)),
                format!("an array of strings ({expected})"),
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if rule(s) => {}
                _ => self.problem(format!("{path}[{i}]"), render(item), expected.to_owned()),
            }
        }
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, parent: &str, known: &[&str]) {
        for (k, v) in obj {
            if !known.contains(&k.as_str()) {
                self.problem(
                    join(parent, k),
                    render(v),
                    format!(
                        "no such field in schema 1.7.1 here (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

/// `appName` rule: a letter, then 1 to 25 of `[A-Za-z0-9_]` (2 to 26 characters).
pub fn is_valid_app_name(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=26).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `vendor` rule: 1 to 256 characters of letters, digits, space and `-_.,()&@+'!`.
///
/// The official schema's exact pattern was not available here; this is a conservative set that
/// excludes quotes, `$`, backslash and control characters, which would break `package.conf`'s
/// shell quoting on old firmware.
pub fn is_valid_vendor(s: &str) -> bool {
    (1..=256).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || " -_.,()&@+'!".contains(c))
}

/// A relative URL path of `/`-separated segments of URL-safe characters (RFC 3986
/// "unreserved": `A-Z a-z 0-9 - . _ ~`), without empty, `.` or `..` segments; used for
/// `settingPage` (a file under `html/`) and `reverseProxy[].apiPath`.
pub fn is_url_safe_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

/// `reverseProxy[].target` rule (this crate's, stricter than the schema, which also allows
/// web-socket and FastCGI targets): `http://HOST[:PORT][/PATH]` with a non-empty host (a name,
/// an IPv4 address or a bracketed IPv6 address), a decimal port, and no spaces, quotes, `<>`,
/// `?`, `#` or control characters.
pub fn is_http_target(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("http://") else {
        return false;
    };
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'<>?#\\".contains(c))
    {
        return false;
    }
    let (authority, _path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, after)) if !h.is_empty() => match after {
                "" => (h, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return false,
                },
            },
            _ => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

fn is_plain_text(s: &str, max: usize) -> bool {
    s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Checks a `manifest.json` value against the schema 1.7.1 rules for the fields Earshot uses.
///
/// Works on a [`Value`] rather than a [`Manifest`] so that a hand-edited manifest with
/// wrong-typed or unknown fields is checked too. Required: `schemaVersion` (`N.N.N`),
/// `acapPackageConf.setup.{appName, vendor, version, runMode}`; optional fields are checked when
/// present (`settingPage` as a relative path, each `reverseProxy` entry's `apiPath`, `target`
/// and `access`); unknown fields of the objects checked are reported (the schema does not allow
/// them). Returns every problem found (empty: valid), in document order. Whether `settingPage`
/// names a file the package has is [`validate_package`]'s check.
pub fn validate(manifest: &Value) -> Vec<Problem> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let Some(root) = manifest.as_object() else {
        c.problem(
            "$".to_owned(),
            format!("{} {}", type_name(manifest), render(manifest)),
            "a JSON object",
        );
        return c.problems;
    };
    c.unknown_keys(
        root,
        "",
        &["$schema", "schemaVersion", "acapPackageConf", "resources"],
    );
    c.string(
        root,
        "",
        "schemaVersion",
        true,
        "three dot-separated numbers, e.g. \"1.7.1\"",
        |s| version_parts(s).is_some(),
    );
    if let Some(conf) = c.object(root, "", "acapPackageConf", true) {
        let p = "acapPackageConf";
        c.unknown_keys(
            conf,
            p,
            &[
                "setup",
                "installation",
                "uninstallation",
                "configuration",
                "copyProtection",
            ],
        );
        if let Some(setup) = c.object(conf, p, "setup", true) {
            check_setup(&mut c, setup);
        }
        if let Some(cfg) = c.object(conf, p, "configuration", false) {
            check_configuration(&mut c, cfg);
        }
    }
    if let Some(res) = c.object(root, "", "resources", false) {
        let p = "resources";
        c.unknown_keys(res, p, &["linux", "dbus"]);
        if let Some(linux) = c.object(res, p, "linux", false) {
            let p = "resources.linux";
            c.unknown_keys(linux, p, &["user"]);
            if let Some(user) = c.object(linux, p, "user", false) {
                c.string_array(
                    user,
                    "resources.linux.user",
                    "groups",
                    "a group name of [a-z0-9_-]",
                    |s| {
                        !s.is_empty()
                            && s.bytes().all(|b| {
                                b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)
                            })
                    },
                );
            }
        }
        if let Some(dbus) = c.object(res, p, "dbus", false) {
            let p = "resources.dbus";
            c.unknown_keys(dbus, p, &["requiredMethods", "conditionalMethods"]);
            let method_rule = |s: &str| {
                !s.is_empty()
                    && s.contains('.')
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._*".contains(&b))
            };
            for key in ["requiredMethods", "conditionalMethods"] {
                c.string_array(
                    dbus,
                    p,
                    key,
                    "a D-Bus interface.method name (optionally ending in .*)",
                    method_rule,
                );
            }
        }
    }
    c.problems
}

/// JSON path of `settingPage`, as [`Problem::path`] gives it.
pub const SETTING_PAGE_PATH: &str = "acapPackageConf.configuration.settingPage";

/// [`validate`], plus what needs the package's entry names `files` (such as `html/index.html`):
/// a `settingPage` must name one of the package's files under `html/`. That problem, if any,
/// comes after [`validate`]'s.
pub fn validate_package<S: AsRef<str>>(manifest: &Value, files: &[S]) -> Vec<Problem> {
    let mut problems = validate(manifest);
    let page = manifest
        .pointer("/acapPackageConf/configuration/settingPage")
        .and_then(Value::as_str);
    if let Some(page) = page {
        let want = format!("html/{page}");
        let already = problems.iter().any(|p| p.path == SETTING_PAGE_PATH);
        if !already && !files.iter().any(|f| f.as_ref() == want) {
            let html: Vec<&str> = files
                .iter()
                .map(AsRef::as_ref)
                .filter(|f| f.starts_with("html/"))
                .collect();
            problems.push(Problem {
                path: SETTING_PAGE_PATH.to_owned(),
                value: render(&Value::String(page.to_owned())),
                expected: format!(
                    "a file the package has under html/ (it has {})",
                    if html.is_empty() {
                        "none".to_owned()
                    } else {
                        html.join(", ")
                    }
                ),
            });
        }
    }
    problems
}

fn check_setup(c: &mut Checker, setup: &Map<String, Value>) {
    let p = "acapPackageConf.setup";
    c.unknown_keys(
        setup,
        p,
        &[
            "appName",
            "appId",
            "architecture",
            "embeddedSdkVersion",
            "friendlyName",
            "user",
            "runMode",
            "runOptions",
            "vendor",
            "vendorUrl",
            "version",
        ],
    );
    c.string(
        setup,
        p,
        "appName",
        true,
        "a letter, then 1 to 25 of A-Z a-z 0-9 _",
        is_valid_app_name,
    );
    c.string(
        setup,
        p,
        "vendor",
        true,
        "1 to 256 characters of letters, digits, space and -_.,()&@+'!",
        is_valid_vendor,
    );
    c.string(
        setup,
        p,
        "version",
        true,
        "MAJOR.MINOR.PATCH of decimal numbers, e.g. \"1.0.0\"",
        |s| version_parts(s).is_some(),
    );
    c.string(
        setup,
        p,
        "runMode",
        true,
        "one of \"respawn\", \"once\", \"never\"",
        |s| ["respawn", "once", "never"].contains(&s),
    );
    c.string(
        setup,
        p,
        "architecture",
        false,
        "one of \"all\", \"aarch64\", \"armv7hf\"",
        |s| ["all", "aarch64", "armv7hf"].contains(&s),
    );
    c.string(
        setup,
        p,
        "friendlyName",
        false,
        "at most 256 characters without line breaks or control characters",
        |s| is_plain_text(s, 256),
    );
    c.string(
        setup,
        p,
        "vendorUrl",
        false,
        "an http:// or https:// URL without spaces or quotes",
        |s| {
            (s.starts_with("http://") || s.starts_with("https://"))
                && !s
                    .chars()
                    .any(|ch| ch.is_whitespace() || "\"'<>".contains(ch))
        },
    );
    c.string(
        setup,
        p,
        "embeddedSdkVersion",
        false,
        "MAJOR.MINOR, e.g. \"3.0\"",
        |s| {
            let mut it = s.split('.');
            let num = |x: Option<&str>| {
                x.is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            };
            num(it.next()) && num(it.next()) && it.next().is_none()
        },
    );
    c.string(
        setup,
        p,
        "runOptions",
        false,
        "one line of command-line options",
        |s| is_plain_text(s, 1024),
    );
    c.string(setup, p, "appId", false, "decimal digits", |s| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    });
    if let Some(user) = c.object(setup, p, "user", false) {
        let p = "acapPackageConf.setup.user";
        c.string(user, p, "username", true, "a user name", |s| !s.is_empty());
        c.string(user, p, "group", true, "a group name", |s| !s.is_empty());
    }
}

fn check_configuration(c: &mut Checker, cfg: &Map<String, Value>) {
    let p = "acapPackageConf.configuration";
    c.unknown_keys(
        cfg,
        p,
        &[
            "settingPage",
            "httpConfig",
            "paramConfig",
            "reverseProxy",
            "containers",
        ],
    );
    c.string(
        cfg,
        p,
        "settingPage",
        false,
        "a file under html/: a relative path of A-Z a-z 0-9 - . _ ~ and /",
        is_url_safe_path,
    );
    check_param_config(c, cfg);
    check_reverse_proxy(c, cfg);
}

/// Calls `f` with each object of the array `v` at `path` and its path (`path[i]`), in order;
/// a `v` that is no array, and items that are no objects, are reported as problems expecting
/// `shape`.
fn each_object<'a>(
    c: &mut Checker,
    v: &'a Value,
    path: &str,
    shape: &str,
    mut f: impl FnMut(&mut Checker, String, &'a Map<String, Value>),
) {
    let Some(items) = v.as_array() else {
        c.problem(
            path.to_owned(),
            format!("{} {}", type_name(v), render(v)),
            format!("an array of {shape} objects"),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        match item.as_object() {
            Some(obj) => f(c, ip, obj),
            None => c.problem(
                ip,
                format!("{} {}", type_name(item), render(item)),
                format!("an object {shape}"),
            ),
        }
    }
}

fn check_reverse_proxy(c: &mut Checker, cfg: &Map<String, Value>) {
    let Some(v) = cfg.get("reverseProxy") else {
        return;
    };
    let path = "acapPackageConf.configuration.reverseProxy";
    let mut seen: Vec<&str> = Vec::new();
    each_object(c, v, path, "{apiPath, target, access}", |c, ip, obj| {
        c.unknown_keys(obj, &ip, &["apiPath", "apiType", "target", "access"]);
        let api_path = c.string(
            obj,
            &ip,
            "apiPath",
            true,
            "a path under the app's web root of A-Z a-z 0-9 - . _ ~ and /, e.g. \"api\"",
            is_url_safe_path,
        );
        if let Some(api_path) = api_path {
            if seen.contains(&api_path) {
                c.problem(
                    format!("{ip}.apiPath"),
                    render(&Value::String(api_path.to_owned())),
                    "an apiPath no earlier reverseProxy entry has",
                );
            }
            seen.push(api_path);
        }
        if let Some(t) = obj.get("apiType") {
            c.problem(
                format!("{ip}.apiType"),
                render(t),
                "no apiType: the unix-socket form of an entry is not supported here; use \
                 {apiPath, target: \"http://...\", access}",
            );
        }
        c.string(
            obj,
            &ip,
            "target",
            true,
            "an http:// URL, e.g. \"http://localhost:2001/api\"",
            is_http_target,
        );
        c.string(
            obj,
            &ip,
            "access",
            true,
            "one of \"admin\", \"operator\", \"viewer\", \"anonymous\"",
            |s| Access::ALL.iter().any(|a| a.as_str() == s),
        );
    });
}

fn check_param_config(c: &mut Checker, cfg: &Map<String, Value>) {
    let p = "acapPackageConf.configuration";
    let Some(v) = cfg.get("paramConfig") else {
        return;
    };
    let path = format!("{p}.paramConfig");
    let mut seen: Vec<&str> = Vec::new();
    each_object(c, v, &path, "{name, default, type}", |c, ip, obj| {
        c.unknown_keys(obj, &ip, &["name", "default", "type"]);
        let name = c.string(
            obj,
            &ip,
            "name",
            true,
            "a letter, then letters and digits",
            |s| {
                s.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
                    && s.chars().all(|ch| ch.is_ascii_alphanumeric())
            },
        );
        if let Some(name) = name {
            if seen.contains(&name) {
                c.problem(
                    format!("{ip}.name"),
                    render(&Value::String(name.to_owned())),
                    "a name no earlier paramConfig entry has",
                );
            }
            seen.push(name);
        }
        c.string(obj, &ip, "default", true, "one line of text", |s| {
            is_plain_text(s, 4096)
        });
        c.string(
            obj,
            &ip,
            "type",
            true,
            "a parameter type: string, password, hidden:string, int[:min=..;max=..], \
             bool:no,yes, enum:...",
            |s| {
                ["string", "password", "hidden:string", "hidden:password"].contains(&s)
                    || s == "int"
                    || s.starts_with("int:")
                    || s.starts_with("bool:")
                    || s.starts_with("enum:")
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn generated() -> Value {
        serde_json::to_value(Manifest::earshot("0.1.0", Arch::Aarch64)).unwrap()
    }

    fn remove(v: &mut Value, path: &str) {
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        let mut t = v;
        for p in parent.split('.').filter(|p| !p.is_empty()) {
            t = t.get_mut(p).unwrap();
        }
        t.as_object_mut().unwrap().remove(leaf).unwrap();
    }

    fn set(v: &mut Value, path: &str, new: Value) {
        let mut t = v;
        for p in path.split('.') {
            t = t.get_mut(p).unwrap();
        }
        *t = new;
    }

    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn generated_manifest_validates_and_round_trips() {
        for arch in Arch::ALL {
            let m = Manifest::earshot("1.2.3", arch);
            let text = m.to_json_pretty();
            assert!(text.ends_with("}\n"));
            assert_eq!(Manifest::from_json(&text), Ok(m.clone()));
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["schemaVersion"], "1.7.1");
            assert_eq!(v["acapPackageConf"]["setup"]["architecture"], arch.as_str());
            assert_eq!(v["acapPackageConf"]["setup"]["runMode"], "respawn");
            assert_eq!(v["acapPackageConf"]["setup"]["appName"], "earshot");
            assert_eq!(
                v["resources"]["linux"]["user"]["groups"],
                json!(["pipewire"])
            );
            assert_eq!(
                v["resources"]["dbus"]["requiredMethods"],
                json!([GET_CREDENTIALS_METHOD])
            );
        }
    }

    #[test]
    fn params_follow_device_settings() {
        let m = Manifest::earshot("0.1.0", Arch::Armv7hf);
        let settings = earshot::settings::DEVICE_SETTINGS;
        assert_eq!(m.params().len(), settings.len());
        for (p, s) in m.params().iter().zip(settings) {
            assert_eq!(p.name, s.name);
            assert_eq!(p.default, s.default);
            assert_eq!(p.type_, s.kind.manifest_type());
        }
        let v = serde_json::to_value(&m).unwrap();
        let first = &v["acapPackageConf"]["configuration"]["paramConfig"][0];
        assert_eq!(first["name"], settings[0].name);
        assert!(first["type"].is_string());
    }

    #[test]
    fn each_required_field_missing_is_reported_by_path() {
        for path in [
            "schemaVersion",
            "acapPackageConf",
            "acapPackageConf.setup",
            "acapPackageConf.setup.appName",
            "acapPackageConf.setup.vendor",
            "acapPackageConf.setup.version",
            "acapPackageConf.setup.runMode",
        ] {
            let mut v = generated();
            remove(&mut v, path);
            let problems = validate(&v);
            assert_eq!(paths(&problems), vec![path], "{problems:?}");
            assert_eq!(problems[0].value, "missing");
        }
        let mut v = generated();
        let entry = &mut v["acapPackageConf"]["configuration"]["paramConfig"][2];
        for key in ["name", "default", "type"] {
            entry.as_object_mut().unwrap().remove(key);
        }
        let problems = validate(&v);
        let p = "acapPackageConf.configuration.paramConfig[2]";
        assert_eq!(
            paths(&problems),
            vec![
                format!("{p}.name"),
                format!("{p}.default"),
                format!("{p}.type")
            ]
        );
    }

    #[test]
    fn each_field_mistyped_is_reported_by_path() {
        for (path, bad) in [
            ("schemaVersion", json!(1.7)),
            ("acapPackageConf", json!([])),
            ("acapPackageConf.setup", json!("earshot")),
            ("acapPackageConf.setup.appName", json!(7)),
            ("acapPackageConf.setup.vendor", json!(null)),
            ("acapPackageConf.setup.version", json!([0, 1, 0])),
            ("acapPackageConf.setup.runMode", json!(true)),
            ("acapPackageConf.setup.architecture", json!({"a": 1})),
            ("acapPackageConf.setup.friendlyName", json!(12)),
            ("acapPackageConf.setup.embeddedSdkVersion", json!(3.0)),
            ("acapPackageConf.configuration.paramConfig", json!({})),
            ("resources.linux.user.groups", json!("pipewire")),
            ("resources.dbus.requiredMethods", json!(5)),
        ] {
            let mut v = generated();
            set(&mut v, path, bad.clone());
            let problems = validate(&v);
            assert_eq!(paths(&problems), vec![path], "{bad}: {problems:?}");
            assert!(problems[0].value.contains(&bad.to_string()), "{problems:?}");
        }
        let mut v = generated();
        v["acapPackageConf"]["configuration"]["paramConfig"][0]["default"] = json!(50);
        v["resources"]["dbus"]["requiredMethods"][0] = json!(1);
        let problems = validate(&v);
        assert_eq!(
            paths(&problems),
            vec![
                "acapPackageConf.configuration.paramConfig[0].default",
                "resources.dbus.requiredMethods[0]"
            ]
        );
    }

    #[test]
    fn bad_values_are_reported_all_at_once() {
        let mut v = generated();
        let s = "acapPackageConf.setup";
        set(&mut v, &format!("{s}.appName"), json!("1earshot"));
        set(&mut v, &format!("{s}.version"), json!("1.0"));
        set(&mut v, &format!("{s}.runMode"), json!("always"));
        set(&mut v, &format!("{s}.architecture"), json!("x86_64"));
        set(&mut v, &format!("{s}.friendlyName"), json!("two\nlines"));
        set(&mut v, &format!("{s}.vendor"), json!("Bad \"vendor\""));
        v["acapPackageConf"]["setup"]["runmode"] = json!("respawn");
        let problems = validate(&v);
        assert_eq!(
            paths(&problems),
            vec![
                "acapPackageConf.setup.runmode",
                "acapPackageConf.setup.appName",
                "acapPackageConf.setup.vendor",
                "acapPackageConf.setup.version",
                "acapPackageConf.setup.runMode",
                "acapPackageConf.setup.architecture",
                "acapPackageConf.setup.friendlyName",
            ],
            "{problems:#?}"
        );
        let run_mode = &problems[4];
        assert_eq!(run_mode.value, "\"always\"");
        assert!(run_mode.expected.contains("respawn"));
        assert!(problems[0].to_string().contains("no such field"));
    }

    #[test]
    fn app_name_and_version_rules() {
        for ok in ["earshot", "ab", "A_1", "a2345678901234567890123456"] {
            assert!(is_valid_app_name(ok), "{ok}");
        }
        for bad in [
            "",
            "e",
            "_earshot",
            "1abc",
            "ear-shot",
            "ear shot",
            "a234567890123456789012345678",
        ] {
            assert!(!is_valid_app_name(bad), "{bad}");
        }
        assert_eq!(version_parts("0.1.0"), Some((0, 1, 0)));
        assert_eq!(version_parts("10.20.30"), Some((10, 20, 30)));
        for bad in [
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.0.0-rc1",
            "a.b.c",
            "1..0",
            "",
        ] {
            assert_eq!(version_parts(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_manifest_serves_the_page_through_the_proxy() {
        let v = generated();
        let cfg = &v["acapPackageConf"]["configuration"];
        assert_eq!(cfg["settingPage"], "index.html");
        assert_eq!(
            cfg["reverseProxy"],
            json!([
                {"apiPath": "api", "target": "http://127.0.0.1:2001/api", "access": "admin"},
                {"apiPath": "view", "target": "http://127.0.0.1:2001/view", "access": "viewer"},
            ])
        );
        // earshot listens where the proxy sends requests, on loopback only.
        assert!(RUN_OPTIONS.ends_with(&format!(" --http {HTTP_LISTEN}")));
        let listen: std::net::SocketAddr = HTTP_LISTEN.parse().unwrap();
        assert!(listen.ip().is_loopback());
        let m = Manifest::earshot("0.1.0", Arch::Aarch64);
        assert_eq!(m.setting_page(), Some(SETTING_PAGE));
        assert_eq!(m.reverse_proxy().len(), 2);
        for e in m.reverse_proxy() {
            // The server's routes are /api/... and /view/...: the target keeps the path.
            let want = format!("http://{listen}/{}", e.api_path);
            assert_eq!(e.target, want);
            assert!(is_http_target(&e.target) && is_url_safe_path(&e.api_path));
        }
        let files = ["earshot", "html/index.html", "html/app.js"];
        assert_eq!(validate_package(&v, &files), vec![]);
        assert_eq!(
            Manifest::from_package_json(&m.to_json_pretty(), &files),
            Ok(m)
        );
    }

    fn with_proxy(entries: Value) -> Value {
        let mut v = generated();
        v["acapPackageConf"]["configuration"]["reverseProxy"] = entries;
        v
    }

    #[test]
    fn good_reverse_proxy_entries_pass() {
        for access in ["admin", "operator", "viewer", "anonymous"] {
            for (api_path, target) in [
                ("api", "http://localhost:2001/api"),
                ("v1/live_view", "http://127.0.0.1:8080"),
                ("a.b~c-d", "http://[::1]:2001/x/y"),
                ("x", "http://app.local/"),
            ] {
                let v =
                    with_proxy(json!([{"apiPath": api_path, "target": target, "access": access}]));
                assert_eq!(validate(&v), vec![], "{api_path} {target} {access}");
            }
        }
        assert_eq!(validate(&with_proxy(json!([]))), vec![]);
    }

    #[test]
    fn bad_reverse_proxy_entries_are_reported_by_path() {
        let p = "acapPackageConf.configuration.reverseProxy";
        let good =
            json!({"apiPath": "api", "target": "http://localhost:2001/api", "access": "admin"});
        for (key, bad) in [
            ("apiPath", json!("")),
            ("apiPath", json!("/api")),
            ("apiPath", json!("api/")),
            ("apiPath", json!("a//b")),
            ("apiPath", json!("../up")),
            ("apiPath", json!("my api")),
            ("apiPath", json!("api?x=1")),
            ("apiPath", json!(7)),
            ("target", json!("https://localhost:2001/api")),
            ("target", json!("localhost:2001/api")),
            ("target", json!("http://")),
            ("target", json!("http://:2001/api")),
            ("target", json!("http://localhost:port/api")),
            ("target", json!("http://localhost:99999")),
            ("target", json!("http://local host/api")),
            ("target", json!("http://[::1/api")),
            ("target", json!("unix:/run/earshot.sock")),
            ("target", json!(["http://localhost"])),
            ("access", json!("root")),
            ("access", json!("Admin")),
            ("access", json!("")),
            ("access", json!(null)),
        ] {
            let mut entry = good.clone();
            entry["apiPath"] = json!("view");
            entry[key] = bad.clone();
            let problems = validate(&with_proxy(json!([good.clone(), entry])));
            assert_eq!(paths(&problems), vec![format!("{p}[1].{key}")], "{bad}");
            assert!(problems[0].value.contains(&bad.to_string()), "{problems:?}");
        }

        // Every required field missing, an unknown field, the unix-socket form, a repeated
        // apiPath and non-objects: all reported at once, in document order.
        let v = with_proxy(json!([
            {},
            {"apiPath": "api", "target": "http://localhost:1/api", "access": "admin", "timeout": 5},
            {"apiPath": "sock", "apiType": "http", "target": "http://localhost:1/s", "access": "viewer"},
            {"apiPath": "api", "target": "http://localhost:2/api", "access": "viewer"},
            "api",
        ]));
        let problems = validate(&v);
        assert_eq!(
            paths(&problems),
            vec![
                format!("{p}[0].apiPath"),
                format!("{p}[0].target"),
                format!("{p}[0].access"),
                format!("{p}[1].timeout"),
                format!("{p}[2].apiType"),
                format!("{p}[3].apiPath"),
                format!("{p}[4]"),
            ],
            "{problems:#?}"
        );
        assert!(problems[..3].iter().all(|p| p.value == "missing"));
        assert!(problems[3].expected.contains("no such field"));
        assert!(problems[4].expected.contains("unix-socket form"));
        assert!(problems[5]
            .expected
            .contains("no earlier reverseProxy entry"));

        let problems = validate(&with_proxy(json!({"api": "http://localhost:2001"})));
        assert_eq!(paths(&problems), vec![p]);
        assert!(problems[0].expected.contains("an array"));
    }

    #[test]
    fn setting_page_must_be_a_relative_path_and_a_file_of_the_package() {
        let path = SETTING_PAGE_PATH;
        let with_page = |page: Value| {
            let mut v = generated();
            v["acapPackageConf"]["configuration"]["settingPage"] = page;
            v
        };
        for ok in ["index.html", "pages/settings.html", "a-b_c~d.htm"] {
            assert_eq!(validate(&with_page(json!(ok))), vec![], "{ok}");
        }
        for bad in [
            json!(""),
            json!("/index.html"),
            json!("../index.html"),
            json!("html/../../etc/passwd"),
            json!("my page.html"),
            json!("index.html#top"),
            json!(["index.html"]),
            json!(1),
        ] {
            let problems = validate(&with_page(bad.clone()));
            assert_eq!(paths(&problems), vec![path], "{bad}");
            // Malformed: reported once, also when validating a package.
            let problems = validate_package(&with_page(bad.clone()), &["html/index.html"]);
            assert_eq!(paths(&problems), vec![path], "{bad}");
        }

        let v = generated();
        assert_eq!(validate_package(&v, &["html/index.html"]), vec![]);
        // Not under html/, or not there at all: the problem lists what html/ has.
        for files in [
            vec!["index.html", "earshot"],
            vec!["html/app.js", "html/style.css", "manifest.json"],
        ] {
            let problems = validate_package(&v, &files);
            assert_eq!(paths(&problems), vec![path], "{files:?}");
            assert_eq!(problems[0].value, "\"index.html\"");
            let has: Vec<&str> = files
                .iter()
                .copied()
                .filter(|f| f.starts_with("html/"))
                .collect();
            let listed = if has.is_empty() {
                "none".to_owned()
            } else {
                has.join(", ")
            };
            assert!(
                problems[0]
                    .expected
                    .ends_with(&format!("(it has {listed})")),
                "{problems:?}"
            );
        }
        // The package check comes after the rest, and from_package_json reports it too.
        let mut bad = generated();
        bad["acapPackageConf"]["setup"]["runMode"] = json!("always");
        assert_eq!(
            paths(&validate_package(&bad, &["earshot"])),
            vec!["acapPackageConf.setup.runMode", path]
        );
        let text = Manifest::earshot("0.1.0", Arch::Armv7hf).to_json_pretty();
        let errors = Manifest::from_package_json(&text, &["earshot"]).unwrap_err();
        assert_eq!(paths(&errors), vec![path]);
        assert!(Manifest::from_json(&text).is_ok());
    }

    #[test]
    fn non_object_and_non_json_are_reported() {
        assert_eq!(paths(&validate(&json!([1]))), vec!["$"]);
        let errors = Manifest::from_json("{ nope").unwrap_err();
        assert_eq!(errors[0].path, "$");
        let errors = Manifest::from_json("{}").unwrap_err();
        assert_eq!(paths(&errors), vec!["schemaVersion", "acapPackageConf"]);
    }
}
