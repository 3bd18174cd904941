//! The CNI protocol's fixed parts: the verbs, the `CNI_*` environment with the spec's rules
//! for which variables each verb needs, and the error result with its well-known codes.
//!
//! Spec: containernetworking/cni SPEC.md, "Parameters" and "Error" (1.1.0). Where the spec
//! and libcni's `skel` differ, the spec wins and the difference is noted.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use vfpool_model::InvalidValue;

use crate::version::CniVersion;

/// The spec versions this plugin reads and writes, oldest first. 0.1.0 and 0.2.0 (the
/// `ip4`/`ip6` result) are not supported: no runtime in use asks for them.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The verb a runtime asks for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
        Command::Version,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Parses `CNI_COMMAND` (exact, upper case, as the spec spells it).
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                CniError::invalid_env(InvalidValue::new(
                    "CNI_COMMAND",
                    s,
                    "ADD, DEL, CHECK, STATUS, GC or VERSION",
                ))
            })
    }

    /// The `CNI_*` variables the spec requires for this verb, besides `CNI_COMMAND`.
    ///
    /// ADD: container id, netns, ifname. DEL: container id, ifname (the netns may be gone).
    /// CHECK: container id, netns, ifname, path. GC: path. STATUS, VERSION: nothing.
    /// (libcni's `skel` also insists on `CNI_PATH` for ADD and DEL; the spec makes it
    /// optional there, and so do we: it is needed only to find an IPAM plugin.)
    pub fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }

    /// Whether the verb is about one attachment (container id and ifname).
    pub fn has_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attachment of a container to a network: the spec's key (with the network name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The plugin's invocation environment, validated for its verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    /// `CNI_CONTAINERID` and `CNI_IFNAME`: `Some` for ADD, DEL and CHECK (both required and
    /// validated), `None` for the other verbs (which ignore them).
    pub attachment: Option<Attachment>,
    /// `CNI_NETNS`: `Some` for ADD and CHECK; for DEL when the runtime still has one.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS`, parsed.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:` (empty entries dropped).
    pub path: Vec<PathBuf>,
    /// `VFPOOL_STATE`, `VFPOOL_SYSFS_ROOT`, `VFPOOL_PROC_ROOT` (an empty variable counts as
    /// unset, as for the `CNI_*` ones). A config field (`vfpoolState`, `vfpoolSysfsRoot`)
    /// wins over these, as a command-line option wins over its variable in the CLI.
    pub vfpool_state: Option<PathBuf>,
    pub vfpool_sysfs_root: Option<PathBuf>,
    pub vfpool_proc_root: Option<PathBuf>,
}

impl CniEnv {
    /// Reads the process environment. `Ok(None)` when `CNI_COMMAND` is unset or empty: the
    /// binary was run by a person, and prints its usage.
    pub fn from_env() -> Result<Option<Self>, CniError> {
        let cmd = std::env::var_os("CNI_COMMAND").unwrap_or_default();
        if cmd.is_empty() {
            return Ok(None);
        }
        Self::from_vars(std::env::vars_os()).map(Some)
    }

    /// Reads the variables from `vars` (name, value), ignoring the ones it does not know.
    /// Every variable the verb requires must be there and non-empty (the spec treats an
    /// empty variable as missing); all missing ones are named at once.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, CniError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut command = None;
        let mut container_id = None;
        let mut netns = None;
        let mut ifname = None;
        let mut args = None;
        let mut path = None;
        let mut state = None;
        let mut sysfs = None;
        let mut proc_root = None;
        for (k, v) in vars {
            let (k, v): (OsString, OsString) = (k.into(), v.into());
            if v.is_empty() {
                continue;
            }
            let slot = match k.to_str() {
                Some("CNI_COMMAND") => &mut command,
                Some("CNI_CONTAINERID") => &mut container_id,
                Some("CNI_NETNS") => &mut netns,
                Some("CNI_IFNAME") => &mut ifname,
                Some("CNI_ARGS") => &mut args,
                Some("CNI_PATH") => &mut path,
                Some("VFPOOL_STATE") => &mut state,
                Some("VFPOOL_SYSFS_ROOT") => &mut sysfs,
                Some("VFPOOL_PROC_ROOT") => &mut proc_root,
                _ => continue,
            };
            *slot = Some(v);
        }

        let text = |name: &'static str, v: Option<OsString>| -> Result<Option<String>, CniError> {
            v.map(|v| {
                v.into_string().map_err(|v| {
                    CniError::invalid_env(InvalidValue::new(
                        name,
                        v.to_string_lossy(),
                        "UTF-8 text",
                    ))
                })
            })
            .transpose()
        };
        let Some(command) = text("CNI_COMMAND", command)? else {
            return Err(CniError::new(
                CniError::INVALID_ENV,
                "missing CNI_COMMAND: ADD, DEL, CHECK, STATUS, GC or VERSION",
            ));
        };
        let command = Command::parse(&command)?;

        let present = |name: &str| match name {
            "CNI_CONTAINERID" => container_id.is_some(),
            "CNI_NETNS" => netns.is_some(),
            "CNI_IFNAME" => ifname.is_some(),
            "CNI_PATH" => path.is_some(),
            _ => true,
        };
        let required = command.required_vars();
        let missing: Vec<&str> = required.iter().copied().filter(|n| !present(n)).collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                CniError::INVALID_ENV,
                format!(
                    "missing {} for {command}: it needs {}",
                    missing.join(", "),
                    required.join(", ")
                ),
            ));
        }

        let attachment = if command.has_attachment() {
            let container_id = text("CNI_CONTAINERID", container_id)?.unwrap_or_default();
            let ifname = text("CNI_IFNAME", ifname)?.unwrap_or_default();
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
            Some(Attachment {
                container_id,
                ifname,
            })
        } else {
            None
        };
        let netns = match command {
            Command::Add | Command::Del | Command::Check => netns.map(PathBuf::from),
            _ => None,
        };
        let args = CniArgs::parse(&text("CNI_ARGS", args)?.unwrap_or_default())?;
        let path = path
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            command,
            attachment,
            netns,
            args,
            path,
            vfpool_state: state.map(PathBuf::from),
            vfpool_sysfs_root: sysfs.map(PathBuf::from),
            vfpool_proc_root: proc_root.map(PathBuf::from),
        })
    }

    /// The variables a delegated plugin gets: the same `CNI_*` values, with `command`.
    pub fn delegate_vars(&self, command: Command) -> Vec<(&'static str, OsString)> {
        let (cid, ifname) = self
            .attachment
            .as_ref()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .unwrap_or_default();
        let path = std::env::join_paths(&self.path).unwrap_or_default();
        vec![
            ("CNI_COMMAND", command.as_str().into()),
            ("CNI_CONTAINERID", cid.into()),
            (
                "CNI_NETNS",
                self.netns.clone().map(Into::into).unwrap_or_default(),
            ),
            ("CNI_IFNAME", ifname.into()),
            ("CNI_ARGS", self.args.to_string().into()),
            ("CNI_PATH", path),
        ]
    }
}

/// `CNI_ARGS`: `K=V;K=V`, in order. Keys this plugin does not know are kept (runtimes pass
/// `IgnoreUnknown=1`, `K8S_POD_NAME=...`) and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    /// Parses `K=V;K=V`. An empty string is no arguments; a pair without `=` or with an
    /// empty key is refused (libcni refuses it too), naming it.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        let mut out = Vec::new();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), v.to_owned())),
                _ => {
                    return Err(CniError::invalid_env(InvalidValue::new(
                        "CNI_ARGS",
                        pair,
                        "KEY=VALUE pairs separated by ';'",
                    )));
                }
            }
        }
        Ok(Self(out))
    }

    /// The last value given for `key` (exact match, as libcni's `LoadArgs`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for CniArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Checks a container id: non-empty, an ASCII letter or digit, then letters, digits, `_`,
/// `.` or `-` (the spec's rule and libcni's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`). Code 4.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut bytes = id.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_env(InvalidValue::new(
            "CNI_CONTAINERID",
            id,
            "a letter or digit, then letters, digits, '_', '.' or '-'",
        )))
    }
}

/// Checks an interface name as the spec and the kernel's `dev_valid_name` do: 1 to 15
/// bytes, not `.` or `..`, no `/`, `:` or white space. Code 4.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_env(InvalidValue::new(
            "CNI_IFNAME",
            name,
            "1 to 15 bytes, not '.' or '..', no '/', ':' or white space",
        )))
    }
}

/// An error as the spec's error result carries it.
///
/// `msg` is one line naming the field, the value and what is allowed; `details` may say
/// more (another plugin's own text, a path). Codes below 100 are the spec's; 100 and up are
/// this plugin's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content (stdin is not a JSON object).
    pub const DECODE: u32 = 6;
    /// Invalid network config (a field with a wrong type or value).
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// The first code this plugin may use for its own errors.
    pub const PLUGIN_BASE: u32 = 100;
    /// A delegated (IPAM) plugin failed without a spec error result: it crashed, was
    /// killed, or printed something that is not one.
    pub const DELEGATE_FAILED: u32 = 100;

    /// An error with `code` and a one-line `msg` (line breaks are escaped).
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: one_line(msg.into()),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(Self::INCOMPATIBLE_VERSION, msg)
    }

    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(Self::UNSUPPORTED_FIELD, msg)
    }

    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(Self::UNKNOWN_CONTAINER, msg)
    }

    /// Code 4 from a value that does not parse (`invalid CNI_IFNAME 'a/b': ...`).
    pub fn invalid_env(e: InvalidValue) -> Self {
        Self::new(Self::INVALID_ENV, e.to_string())
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(Self::IO, msg)
    }

    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(Self::DECODE, msg)
    }

    /// Code 7 from a config field that does not parse (`invalid vlan '5000': 0..=4094`).
    pub fn invalid_config(e: InvalidValue) -> Self {
        Self::new(Self::INVALID_CONFIG, e.to_string())
    }

    pub fn try_again(msg: impl Into<String>) -> Self {
        Self::new(Self::TRY_AGAIN, msg)
    }

    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(Self::NOT_AVAILABLE, msg)
    }

    pub fn limited_connectivity(msg: impl Into<String>) -> Self {
        Self::new(Self::LIMITED_CONNECTIVITY, msg)
    }

    /// One of this plugin's own errors; `code` is raised to [`Self::PLUGIN_BASE`] if lower.
    pub fn plugin(code: u32, msg: impl Into<String>) -> Self {
        Self::new(code.max(Self::PLUGIN_BASE), msg)
    }

    /// The spec's error result: `{"cniVersion", "code", "msg", "details"}`; `details` is left
    /// out when empty, as libcni does.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v.to_string()
    }

    /// The error result at the newest version (when the config's version is not known).
    pub fn to_json_latest(&self) -> String {
        self.to_json(CniVersion::LATEST.as_str())
    }
}

/// `s` with line breaks escaped, so that a message stays one line.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.replace('\r', "\\r").replace('\n', "\\n")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        CniEnv::from_vars(vars.iter().map(|(k, v)| (*k, *v)))
    }

    const ADD: [(&str, &str); 6] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c0ffee-1.a_b"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "net1"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=p=q;MAC=02:00:00:00:00:01",
        ),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn add_reads_every_variable() {
        let e = env(&ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        let a = e.attachment.clone().unwrap();
        assert_eq!(
            (a.container_id.as_str(), a.ifname.as_str()),
            ("c0ffee-1.a_b", "net1")
        );
        assert_eq!(e.netns, Some("/run/netns/x".into()));
        assert_eq!(e.args.get("K8S_POD_NAME"), Some("p=q"));
        assert_eq!(e.args.get("MAC"), Some("02:00:00:00:00:01"));
        assert_eq!(e.args.get("mac"), None);
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        let vars = e.delegate_vars(Command::Del);
        assert_eq!(vars[0], ("CNI_COMMAND", "DEL".into()));
        assert_eq!(vars[4].1, OsString::from(ADD[4].1));
        assert_eq!(vars[5].1, OsString::from("/opt/cni/bin:/usr/lib/cni"));
    }

    #[test]
    fn each_verb_requires_what_the_spec_says() {
        let without = |cmd: &str, drop: &str| {
            let vars: Vec<(&str, &str)> = ADD
                .iter()
                .map(|&(k, v)| if k == "CNI_COMMAND" { (k, cmd) } else { (k, v) })
                .filter(|(k, _)| *k != drop)
                .collect();
            env(&vars)
        };
        // ADD needs the netns; DEL does not.
        let e = without("ADD", "CNI_NETNS").unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "missing CNI_NETNS for ADD: it needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
        );
        let del = without("DEL", "CNI_NETNS").unwrap();
        assert_eq!(del.netns, None);
        assert!(del.attachment.is_some());
        // DEL needs the container id and the ifname.
        assert_eq!(without("DEL", "CNI_IFNAME").unwrap_err().code, 4);
        assert!(
            without("DEL", "CNI_CONTAINERID")
                .unwrap_err()
                .msg
                .starts_with("missing CNI_CONTAINERID for DEL")
        );
        // CHECK needs CNI_PATH; ADD does not.
        assert_eq!(
            without("CHECK", "CNI_PATH").unwrap_err().msg,
            "missing CNI_PATH for CHECK: it needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH"
        );
        assert!(without("ADD", "CNI_PATH").unwrap().path.is_empty());
        // GC needs only CNI_PATH; STATUS and VERSION nothing.
        assert_eq!(
            env(&[("CNI_COMMAND", "GC")]).unwrap_err().msg,
            "missing CNI_PATH for GC: it needs CNI_PATH"
        );
        let gc = env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]).unwrap();
        assert_eq!(gc.attachment, None);
        for cmd in ["STATUS", "VERSION"] {
            let e = env(&[("CNI_COMMAND", cmd), ("CNI_IFNAME", "bad/name")]).unwrap();
            assert_eq!(e.attachment, None, "{cmd} ignores the container variables");
        }
        // Several missing ones are named together; an empty one counts as missing.
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_NETNS", "")]).unwrap_err();
        assert_eq!(
            e.msg,
            "missing CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME for ADD: it needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
        );
    }

    #[test]
    fn a_bad_command_is_named() {
        let e = env(&[("CNI_COMMAND", "add")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "invalid CNI_COMMAND 'add': ADD, DEL, CHECK, STATUS, GC or VERSION"
        );
        let e = env(&[("CNI_PATH", "/x")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.starts_with("missing CNI_COMMAND"));
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str()).unwrap(), c);
        }
    }

    #[test]
    fn container_ids_follow_the_spec() {
        for ok in ["a", "0", "abc-DEF_1.2", "3f6940ab5ab43bc522569d15b23f8c1b"] {
            validate_container_id(ok).unwrap();
        }
        for bad in ["", "-a", "_a", ".a", "a b", "a/b", "a:b", "é", "a\nb"] {
            let e = validate_container_id(bad).unwrap_err();
            assert_eq!(e.code, 4, "{bad:?}");
        }
        let e = validate_container_id("a/b").unwrap_err();
        assert_eq!(
            e.msg,
            "invalid CNI_CONTAINERID 'a/b': a letter or digit, then letters, digits, '_', '.' or '-'"
        );
        // Through the environment, too.
        let mut vars = ADD;
        vars[1].1 = "../etc";
        assert!(
            env(&vars)
                .unwrap_err()
                .msg
                .starts_with("invalid CNI_CONTAINERID '../etc'")
        );
    }

    #[test]
    fn ifnames_follow_the_kernel() {
        for ok in ["eth0", "net1", "a", "x#1", "123456789012345", "vé"] {
            validate_ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\u{a0}b",
            "1234567890123456",
            "éééééééé",
        ] {
            assert_eq!(validate_ifname(bad).unwrap_err().code, 4, "{bad:?}");
        }
        let mut vars = ADD;
        vars[3].1 = "eth 0";
        assert_eq!(
            env(&vars).unwrap_err().msg,
            "invalid CNI_IFNAME 'eth 0': 1 to 15 bytes, not '.' or '..', no '/', ':' or white space"
        );
    }

    #[test]
    fn cni_args_parse_and_refuse() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        let a = CniArgs::parse("A=1;;B=;A=2").unwrap();
        assert_eq!(a.get("A"), Some("2"));
        assert_eq!(a.get("B"), Some(""));
        assert_eq!(a.to_string(), "A=1;B=;A=2");
        for bad in ["A", "A=1;B", "=x"] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.msg.starts_with("invalid CNI_ARGS"), "{}", e.msg);
        }
        let mut vars = ADD;
        vars[4].1 = "IgnoreUnknown";
        assert_eq!(
            env(&vars).unwrap_err().msg,
            "invalid CNI_ARGS 'IgnoreUnknown': KEY=VALUE pairs separated by ';'"
        );
    }

    #[test]
    fn vfpool_variables_are_read_and_empty_is_unset() {
        let e = env(&[
            ("CNI_COMMAND", "STATUS"),
            ("VFPOOL_STATE", "/s"),
            ("VFPOOL_SYSFS_ROOT", ""),
            ("VFPOOL_PROC_ROOT", "/p"),
        ])
        .unwrap();
        assert_eq!(e.vfpool_state, Some("/s".into()));
        assert_eq!(e.vfpool_sysfs_root, None);
        assert_eq!(e.vfpool_proc_root, Some("/p".into()));
    }

    #[test]
    fn error_json_is_the_specs() {
        let e = CniError::new(7, "invalid vlan '5000': 0..=4094");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion": "1.1.0", "code": 7, "msg": "invalid vlan '5000': 0..=4094"})
        );
        let e = CniError::io("x").with_details("more");
        let v: serde_json::Value = serde_json::from_str(&e.to_json_latest()).unwrap();
        assert_eq!(v["details"], "more");
        assert_eq!(v["code"], 5);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(CniError::new(4, "a\nb").msg, "a\\nb");
        assert_eq!(CniError::plugin(3, "x").code, 100);
        assert_eq!(CniError::plugin(120, "x").code, 120);
        let codes = [
            CniError::incompatible_version("").code,
            CniError::unsupported_field("").code,
            CniError::unknown_container("").code,
            CniError::io("").code,
            CniError::decode("").code,
            CniError::invalid_config(InvalidValue::new("x", "", "")).code,
            CniError::try_again("").code,
            CniError::not_available("").code,
            CniError::limited_connectivity("").code,
        ];
        assert_eq!(codes, [1, 2, 3, 5, 6, 7, 11, 50, 51]);
    }
}
