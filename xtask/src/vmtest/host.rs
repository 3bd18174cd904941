//! Host prerequisites: QEMU with the `igb` device, and the few tools the harness uses.
//!
//! Everything comes from Debian's archive through `apt-get`, using the mirror the machine is
//! already configured with. bookworm's own QEMU (7.2) has no `igb` device, so on bookworm
//! `qemu-system-x86` comes from bookworm-backports.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::sh;

/// apt-get, with `apt-get update` run at most once per harness run.
#[derive(Debug, Default)]
pub struct Apt {
    updated: bool,
    offline: bool,
}

impl Apt {
    /// An apt that refuses to install or download when `offline` is set.
    pub fn new(offline: bool) -> Self {
        Self {
            updated: false,
            offline,
        }
    }

    fn refuse_offline(&self, what: &str) -> Result<()> {
        if self.offline {
            bail!("{what} is needed, but --no-install forbids apt");
        }
        Ok(())
    }

    /// `apt-get update`, once (again when `force`, after adding a source).
    pub fn update(&mut self, force: bool) -> Result<()> {
        if self.updated && !force {
            return Ok(());
        }
        self.refuse_offline("apt-get update")?;
        eprintln!("vmtest: apt-get update");
        sh::run(Command::new("apt-get").args(["update", "-qq"]))?;
        self.updated = true;
        Ok(())
    }

    /// `apt-get install -y --no-install-recommends [-t release] packages...`.
    pub fn install(&mut self, packages: &[&str], release: Option<&str>) -> Result<()> {
        self.refuse_offline(&format!("installing {}", packages.join(" ")))?;
        self.update(false)?;
        eprintln!("vmtest: apt-get install {}", packages.join(" "));
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
        ]);
        if let Some(release) = release {
            cmd.args(["-t", release]);
        }
        sh::run(cmd.args(packages))
    }

    /// `apt-get download packages...` into `dir`.
    pub fn download(&mut self, packages: &[&str], dir: &Path) -> Result<()> {
        self.refuse_offline(&format!("downloading {}", packages.join(" ")))?;
        self.update(false)?;
        eprintln!("vmtest: apt-get download {}", packages.join(" "));
        sh::run(
            Command::new("apt-get")
                .arg("download")
                .args(packages)
                .current_dir(dir),
        )
    }
}

/// Host tools the harness shells out to, and the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("dpkg-deb", "dpkg"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("diff", "diffutils"),
    ("ldd", "libc-bin"),
    // The state disk of configs booted more than once.
    ("qemu-img", "qemu-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    // Copied into the guest for test setup and JSON checks in scenario scripts.
    ("ip", "iproute2"),
    ("jq", "jq"),
];

/// Where Debian keeps the reference CNI plugins (package containernetworking-plugins).
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// The reference CNI plugins copied into the guest (as IPAM plugins for vfpool-cni), from
/// [`CNI_PLUGIN_DIR`].
pub const CNI_PLUGINS: &[&str] = &["host-local", "static"];

/// Installs whichever of [`TOOLS`] and [`CNI_PLUGINS`] is missing.
pub fn ensure_tools(apt: &mut Apt) -> Result<()> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| find_tool(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    if CNI_PLUGINS
        .iter()
        .any(|p| !Path::new(CNI_PLUGIN_DIR).join(p).is_file())
    {
        missing.push("containernetworking-plugins");
    }
    if !missing.is_empty() {
        apt.install(&missing, None)?;
    }
    Ok(())
}

/// `tool` on `PATH`, or in an sbin directory (root's `PATH` may lack them).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    sh::which(tool).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|path| path.is_file())
    })
}

/// Makes sure `qemu-system-x86_64` exists and has the `igb` device; returns its version line.
pub fn ensure_qemu(apt: &mut Apt) -> Result<String> {
    if !qemu_has_igb() {
        if os_codename()? == "bookworm" {
            if ensure_backports_source()? {
                apt.update(true)?;
            }
            apt.install(&["qemu-system-x86"], Some("bookworm-backports"))?;
        } else {
            apt.install(&["qemu-system-x86"], None)?;
        }
        if !qemu_has_igb() {
            bail!(
                "qemu-system-x86_64 has no `igb` device even after installing (needs QEMU >= 8.0)"
            );
        }
    }
    let version = sh::stdout(Command::new("qemu-system-x86_64").arg("--version"))?;
    Ok(version.lines().next().unwrap_or_default().to_owned())
}

fn qemu_has_igb() -> bool {
    Command::new("qemu-system-x86_64")
        .args(["-device", "help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("name \"igb\""))
}

fn os_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .context("/etc/os-release has no VERSION_CODENAME")
}

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/vfpool-vmtest-bookworm-backports.sources";

/// Adds a bookworm-backports source on the machine's own Debian mirror, unless one exists.
/// Returns whether it added one.
fn ensure_backports_source() -> Result<bool> {
    let sources = apt_sources()?;
    let configured = sources.iter().any(|(_, text)| {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .any(|line| line.contains("bookworm-backports"))
    });
    if configured {
        return Ok(false);
    }
    let mirror = sources
        .iter()
        .find_map(|(path, text)| debian_mirror(path, text))
        .context("found no apt source for suite `bookworm` to take the Debian mirror from")?;
    eprintln!("vmtest: adding bookworm-backports ({mirror}) as {BACKPORTS_SOURCE}");
    let stanza = format!(
        "# Added by `cargo xtask vmtest`: QEMU >= 8.0 (igb device) for vfpool's real-kernel tier.\n\
         Types: deb\nURIs: {mirror}\nSuites: bookworm-backports\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    fs::write(BACKPORTS_SOURCE, stanza)
        .with_context(|| format!("cannot write {BACKPORTS_SOURCE}"))?;
    Ok(true)
}

/// The contents of every apt source file apt reads.
fn apt_sources() -> Result<Vec<(PathBuf, String)>> {
    let mut paths = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir {
            let path = entry.context("cannot list /etc/apt/sources.list.d")?.path();
            if path
                .extension()
                .is_some_and(|e| e == "list" || e == "sources")
            {
                paths.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    for path in paths {
        match fs::read_to_string(&path) {
            Ok(text) => sources.push((path, text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(sources)
}

/// The URI serving suite `bookworm` in one apt source file (one-line or deb822 format).
fn debian_mirror(path: &Path, text: &str) -> Option<String> {
    if path.extension().is_some_and(|e| e == "sources") {
        text.split("\n\n").find_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
                })
            };
            let enabled = field("Enabled").is_none_or(|v| v != "no");
            let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
            let bookworm =
                field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == "bookworm"));
            (enabled && deb && bookworm)
                .then(|| field("URIs")?.split_whitespace().next().map(str::to_owned))
                .flatten()
        })
    } else {
        text.lines().find_map(|line| {
            // `deb [options] URI suite components...`
            let rest = line.trim().strip_prefix("deb ")?.trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?;
            (words.next()? == "bookworm").then(|| uri.to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n";
        assert_eq!(
            debian_mirror(Path::new("debian.sources"), text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_format() {
        let text = "# comment\ndeb http://sec.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            debian_mirror(Path::new("sources.list"), text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }
}
