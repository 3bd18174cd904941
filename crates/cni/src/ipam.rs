//! IPAM by delegation: run the plugin named in `ipam.type` from `CNI_PATH`, as libcni's
//! `invoke.DelegateAdd` does, with this plugin's `CNI_*` variables and the whole network
//! config on stdin.
//!
//! Errors: a missing `CNI_PATH` is code 4; a plugin not found in it is code 7 (the config
//! names a plugin this host does not have; libcni returns a plain error there, which a
//! `skel` plugin turns into 999, no code of the spec); a plugin that cannot be started is
//! code 5; the plugin's own error result keeps its code, its `msg` prefixed with
//! `ipam plugin NAME: `; a plugin that fails without an error result is
//! [`CniError::DELEGATE_FAILED`], with what it wrote in `details`; a result that does not
//! decode is code 6.
//!
//! Versions: the plugin is asked in the version negotiated for this config. Debian 12's
//! reference plugins (1.1.1) stop at 1.0.0: when a plugin answers code 1 (incompatible
//! version; nothing was allocated), it is asked VERSION, and the call is made again once
//! in the highest version both speak; its result is read in that version. The plugin
//! calls through [`exec_plugin_cached`] with a [`VersionCache`] in the state directory, so
//! that this costs three process starts once per plugin file, not per call.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Map, Value};

use crate::config::{validate_plugin_name, with_version};
use crate::result::CniResult;
use crate::spec::{CniEnv, CniError, Command};
use crate::version::CniVersion;

/// How much of a plugin's own output an error's `details` keeps.
const DETAILS_MAX: usize = 2048;

/// Runs the IPAM plugin `plugin_type` for `command` with `stdin` (the whole network
/// config; its `cniVersion` is the version asked for). ADD returns the plugin's result,
/// the other verbs `None`.
pub fn exec_plugin(
    plugin_type: &str,
    command: Command,
    env: &CniEnv,
    stdin: &[u8],
) -> Result<Option<CniResult>, CniError> {
    exec_plugin_cached(plugin_type, command, env, stdin, None)
}

/// [`exec_plugin`], with the versions each plugin speaks remembered in `cache` (a file
/// beside vfpool's ledger): a plugin that speaks an older version than the config asks
/// (Debian's stop at 1.0.0) is then called once, in its version, instead of refusing,
/// being asked VERSION and called again (three process starts per call).
pub fn exec_plugin_cached(
    plugin_type: &str,
    command: Command,
    env: &CniEnv,
    stdin: &[u8],
    cache: Option<&VersionCache>,
) -> Result<Option<CniResult>, CniError> {
    validate_plugin_name("ipam.type", plugin_type)?;
    let path = find_plugin(plugin_type, &env.path)?;
    let conf: Map<String, Value> = match serde_json::from_slice(stdin) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(CniError::decode(format!(
                "ipam plugin {plugin_type}: its network config is not a JSON object"
            )));
        }
    };
    let asked = crate::version::negotiate(&conf)?;
    if command != Command::Version
        && let Some(known) = cache.and_then(|c| c.lookup(&path))
        && let Some(v) = known.iter().copied().filter(|&v| v <= asked).max()
    {
        if v == asked {
            return run(plugin_type, &path, command, env, stdin, v);
        }
        let stdin = with_prev_result_version(&conf, v)?;
        return run(plugin_type, &path, command, env, &stdin, v);
    }
    let common = |path: &Path| -> Result<Option<CniVersion>, CniError> {
        let all = supported_versions(plugin_type, path, env, asked)?;
        if let Some(c) = cache {
            c.store(path, &all);
        }
        Ok(all.into_iter().filter(|&v| v <= asked).max())
    };
    if conf.contains_key("prevResult") && command != Command::Version {
        // A plugin that speaks an older version cannot read a newer prevResult (Debian's
        // 1.0.0 plugins fail on a 1.1.0 one with their own code 999, not code 1): ask it
        // first, and hand it the config and prevResult in a version it speaks.
        let v = common(&path)?.unwrap_or(asked);
        if v != asked {
            let stdin = with_prev_result_version(&conf, v)?;
            return run(plugin_type, &path, command, env, &stdin, v);
        }
    }
    match run(plugin_type, &path, command, env, stdin, asked) {
        Err(e) if e.code == CniError::INCOMPATIBLE_VERSION && command != Command::Version => {
            let Some(v) = common(&path)? else {
                return Err(e);
            };
            tracing::debug!(plugin = plugin_type, asked = %asked, using = %v, "ipam plugin speaks an older version");
            let stdin = with_version(stdin, &conf, v);
            run(plugin_type, &path, command, env, &stdin, v)
        }
        other => other,
    }
}

/// The first regular file named `plugin_type` in the `CNI_PATH` directories.
pub fn find_plugin(plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    if dirs.is_empty() {
        return Err(CniError::new(
            CniError::INVALID_ENV,
            format!(
                "missing CNI_PATH: the directories where ipam plugin {plugin_type} is looked up"
            ),
        ));
    }
    dirs.iter()
        .map(|d| d.join(plugin_type))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            let searched = std::env::join_paths(dirs)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            CniError::new(
                CniError::INVALID_CONFIG,
                format!(
                    "invalid ipam.type '{plugin_type}': no such plugin in CNI_PATH '{searched}'"
                ),
            )
        })
}

/// `conf` with `cniVersion` and its `prevResult` in version `v`.
fn with_prev_result_version(conf: &Map<String, Value>, v: CniVersion) -> Result<Vec<u8>, CniError> {
    let mut m = conf.clone();
    if let Some(prev) = m.get("prevResult") {
        let asked = crate::version::negotiate(conf)?;
        let (r, _) = CniResult::from_value("prevResult", prev, asked)?;
        m.insert("prevResult".into(), r.to_value(v));
    }
    m.insert("cniVersion".into(), v.as_str().into());
    Ok(Value::Object(m).to_string().into_bytes())
}

/// The versions both this plugin and `path` speak (`path`'s VERSION answer).
fn supported_versions(
    plugin_type: &str,
    path: &Path,
    env: &CniEnv,
    asked: CniVersion,
) -> Result<Vec<CniVersion>, CniError> {
    let stdin = format!("{{\"cniVersion\":\"{asked}\"}}");
    let out = spawn(plugin_type, path, Command::Version, env, stdin.as_bytes())?;
    if !out.status.success() {
        return Err(plugin_error(plugin_type, &out));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        CniError::decode(format!(
            "ipam plugin {plugin_type}: VERSION output does not decode: {e}"
        ))
    })?;
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().and_then(CniVersion::parse))
        .collect())
}

/// The versions IPAM plugins speak, remembered across calls in one JSON file: by the
/// plugin's path, with its size and modification time, so that a plugin replaced by an
/// upgrade is asked again. Written whole to a temporary file and renamed (concurrent
/// plugin calls may each write it; the last one wins, and each wrote the truth). A file
/// that cannot be read or written only costs the VERSION call it would have saved.
#[derive(Debug, Clone)]
pub struct VersionCache {
    file: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct CacheFile {
    plugins: std::collections::BTreeMap<String, CacheEntry>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
struct CacheEntry {
    size: u64,
    mtime_ns: i128,
    versions: Vec<String>,
}

impl VersionCache {
    /// The cache in `dir` (created on first store).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            file: dir.join("ipam-versions.json"),
        }
    }

    fn stamp(plugin: &Path) -> Option<(u64, i128)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(plugin).ok()?;
        Some((
            m.size(),
            i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ))
    }

    fn read(&self) -> CacheFile {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The versions `plugin` speaks, if remembered for the file it is now.
    pub fn lookup(&self, plugin: &Path) -> Option<Vec<CniVersion>> {
        let (size, mtime_ns) = Self::stamp(plugin)?;
        let f = self.read();
        let e = f.plugins.get(&plugin.to_string_lossy().into_owned())?;
        if e.size != size || e.mtime_ns != mtime_ns {
            return None;
        }
        let v: Vec<CniVersion> = e
            .versions
            .iter()
            .filter_map(|s| CniVersion::parse(s))
            .collect();
        (!v.is_empty()).then_some(v)
    }

    /// Remembers that `plugin` speaks `versions`.
    pub fn store(&self, plugin: &Path, versions: &[CniVersion]) {
        let Some((size, mtime_ns)) = Self::stamp(plugin) else {
            return;
        };
        let mut f = self.read();
        f.plugins.insert(
            plugin.to_string_lossy().into_owned(),
            CacheEntry {
                size,
                mtime_ns,
                versions: versions.iter().map(|v| v.as_str().to_owned()).collect(),
            },
        );
        let Some(dir) = self.file.parent() else {
            return;
        };
        let r = std::fs::create_dir_all(dir).and_then(|()| {
            let mut t = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(&mut t, &f).map_err(std::io::Error::other)?;
            t.persist(&self.file).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = r {
            tracing::debug!(file = %self.file.display(), error = %e, "cannot remember the IPAM plugin's versions");
        }
    }
}

fn run(
    plugin_type: &str,
    path: &Path,
    command: Command,
    env: &CniEnv,
    stdin: &[u8],
    version: CniVersion,
) -> Result<Option<CniResult>, CniError> {
    let out = spawn(plugin_type, path, command, env, stdin)?;
    if !out.status.success() {
        return Err(plugin_error(plugin_type, &out));
    }
    if !out.stderr.is_empty() {
        tracing::debug!(plugin = plugin_type, stderr = %String::from_utf8_lossy(&out.stderr), "ipam plugin wrote to stderr");
    }
    if command != Command::Add {
        return Ok(None);
    }
    let what = format!("ipam plugin {plugin_type} result");
    let (result, _) = CniResult::from_slice(&what, &out.stdout, version)?;
    Ok(Some(result))
}

fn spawn(
    plugin_type: &str,
    path: &Path,
    command: Command,
    env: &CniEnv,
    stdin: &[u8],
) -> Result<std::process::Output, CniError> {
    let mut cmd = Process::new(path);
    // This process's environment with the six CNI_* variables set over it, empty ones
    // included (libcni's `Args.AsEnv`).
    cmd.envs(env.delegate_vars(command))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let io_err = |e: std::io::Error| {
        CniError::io(format!(
            "ipam plugin {plugin_type}: cannot run {}: {e}",
            path.display()
        ))
    };
    let mut child = cmd.spawn().map_err(io_err)?;
    if let Some(mut w) = child.stdin.take() {
        // A plugin that exits without reading its stdin closes the pipe: its exit status
        // and output say why, so a write error is not the error to report.
        let _ = w.write_all(stdin);
    }
    child.wait_with_output().map_err(io_err)
}

/// The error a failed plugin reported, or [`CniError::DELEGATE_FAILED`] when it reported
/// none that decodes.
fn plugin_error(plugin_type: &str, out: &std::process::Output) -> CniError {
    #[derive(serde::Deserialize)]
    struct Wire {
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(w) = serde_json::from_slice::<Wire>(&out.stdout) {
        return CniError::new(w.code, format!("ipam plugin {plugin_type}: {}", w.msg))
            .with_details(w.details);
    }
    let mut details = String::new();
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        let text = text.trim();
        if !text.is_empty() {
            if !details.is_empty() {
                details.push_str("; ");
            }
            details.push_str(&format!("{name}: {text}"));
        }
    }
    if details.len() > DETAILS_MAX {
        let mut cut = DETAILS_MAX;
        while !details.is_char_boundary(cut) {
            cut -= 1;
        }
        details.truncate(cut);
        details.push('…');
    }
    CniError::new(
        CniError::DELEGATE_FAILED,
        format!(
            "ipam plugin {plugin_type}: {} without an error result",
            describe(out.status)
        ),
    )
    .with_details(details)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "failed".to_owned(),
    }
}
