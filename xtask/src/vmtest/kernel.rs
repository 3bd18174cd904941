//! The guest: Debian's kernel package and busybox-static, downloaded once into the cache and
//! never installed on the host. Only vmlinuz and the modules the scenarios need are unpacked.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::host::Apt;
use super::sh;

/// Set to a kernel package name (`linux-image-6.1.0-56-amd64`) to pin the guest kernel.
pub const KERNEL_ENV: &str = "VFPOOL_VMTEST_KERNEL";

/// Modules the guest may load. `/init` loads the first group; the rest are their dependencies
/// in Debian's 6.1 kernel (absent ones are fine as long as nothing depends on them).
pub const MODULES: &[&str] = &[
    // loaded by /init
    "igb",
    "igbvf",
    "vfio-pci",
    "vfio_iommu_type1",
    "veth",
    "8021q",
    "macvlan",
    "virtio_blk",
    "ext4",
    // their dependencies
    "dca",
    "i2c-algo-bit",
    "vfio",
    "vfio-pci-core",
    "vfio_virqfd",
    "irqbypass",
    "garp",
    "mrp",
    "stp",
    "llc",
    "virtio_pci",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_ring",
    "virtio",
    "jbd2",
    "mbcache",
    "crc16",
    "crc32c_generic",
];

/// Modules without which no scenario can run.
const REQUIRED: &[&str] = &["igb", "igbvf", "vfio-pci", "vfio_iommu_type1", "veth"];

/// An unpacked guest kernel.
#[derive(Debug)]
pub struct GuestKernel {
    /// `linux-image-6.1.0-56-amd64 6.1.192-2`
    pub package: String,
    /// `6.1.0-56-amd64`: the directory name under `/lib/modules`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<release>`, holding only [`MODULES`] and `modules.builtin`.
    pub modules: PathBuf,
}

/// The cached Debian packages, downloading the ones missing.
#[derive(Debug)]
pub struct Debs {
    pub kernel: PathBuf,
    pub busybox: PathBuf,
}

pub fn fetch(apt: &mut Apt, cache: &Path) -> Result<Debs> {
    let dir = cache.join("debs");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pinned = std::env::var(KERNEL_ENV).ok().filter(|v| !v.is_empty());
    let kernel_prefix = match &pinned {
        Some(package) => format!("{package}_"),
        None => "linux-image-".to_owned(),
    };
    let find_kernel = || cached(&dir, &kernel_prefix, "-amd64_");
    let find_busybox = || cached(&dir, "busybox-static_", "_");
    let mut wanted = Vec::new();
    if find_kernel()?.is_none() {
        let package = match pinned.clone() {
            Some(package) => package,
            None => current_kernel_package(apt)?,
        };
        wanted.push(package);
    }
    if find_busybox()?.is_none() {
        wanted.push("busybox-static".to_owned());
    }
    if !wanted.is_empty() {
        // Download beside the cache and move in only complete files.
        let partial = dir.join("partial");
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        apt.download(&names, &partial)?;
        for entry in
            fs::read_dir(&partial).with_context(|| format!("cannot list {}", partial.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", partial.display()))?
                .path();
            if let Some(name) = path.file_name() {
                fs::rename(&path, dir.join(name))
                    .with_context(|| format!("cannot move {} into the cache", path.display()))?;
            }
        }
        let _ = fs::remove_dir_all(&partial);
    }
    Ok(Debs {
        kernel: find_kernel()?.context("the kernel package is missing after download")?,
        busybox: find_busybox()?.context("busybox-static is missing after download")?,
    })
}

/// The newest cached `.deb` whose name starts with `prefix` and contains `infix` after it.
fn cached(dir: &Path, prefix: &str, infix: &str) -> Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".deb")
            && name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.contains(infix))
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found.pop())
}

/// The ABI-specific package `linux-image-amd64` currently depends on.
fn current_kernel_package(apt: &mut Apt) -> Result<String> {
    apt.update(false)?;
    let depends = sh::stdout(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|package| package.starts_with("linux-image-") && package.ends_with("-amd64"))
        .map(str::to_owned)
        .context("`apt-cache depends linux-image-amd64` names no linux-image-<abi>-amd64")
}

/// `dpkg-deb -f deb Package Version`, as `package version`.
fn package_id(deb: &Path) -> Result<String> {
    let fields = sh::stdout(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .args(["Package", "Version"]),
    )?;
    let mut package = "";
    let mut version = "";
    for line in fields.lines() {
        if let Some(v) = line.strip_prefix("Package: ") {
            package = v.trim();
        } else if let Some(v) = line.strip_prefix("Version: ") {
            version = v.trim();
        }
    }
    Ok(format!("{package} {version}"))
}

/// Unpacks vmlinuz and [`MODULES`] from the kernel package into `cache/kernel/<release>`, unless
/// an earlier run already did.
pub fn unpack_kernel(deb: &Path, cache: &Path) -> Result<GuestKernel> {
    let package = package_id(deb)?;
    let release = package
        .split_whitespace()
        .next()
        .and_then(|p| p.strip_prefix("linux-image-"))
        .with_context(|| format!("{} is not a linux-image package", deb.display()))?
        .to_owned();
    let dir = cache.join("kernel").join(&release);
    let stamp = dir.join(".unpacked");
    let want_stamp = format!("{package}\n{}\n", MODULES.join(" "));
    if fs::read_to_string(&stamp).ok().as_deref() != Some(want_stamp.as_str()) {
        eprintln!(
            "vmtest: unpacking vmlinuz and {} modules from {package}",
            MODULES.len()
        );
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut patterns = vec![
            format!("./boot/vmlinuz-{release}"),
            format!("./boot/config-{release}"),
            "*/modules.builtin".to_owned(),
        ];
        patterns.extend(MODULES.iter().map(|m| format!("*/{m}.ko")));
        untar(deb, &dir, &patterns)?;
        fs::write(&stamp, &want_stamp)
            .with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    let modules = find_dir(&dir, &["lib/modules", "usr/lib/modules"], &release)
        .with_context(|| format!("{package} has no modules directory for {release}"))?;
    check_modules(&modules)?;
    Ok(GuestKernel {
        package,
        vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
        release,
        modules,
    })
}

fn find_dir(root: &Path, parents: &[&str], name: &str) -> Option<PathBuf> {
    parents
        .iter()
        .map(|p| root.join(p).join(name))
        .find(|p| p.is_dir())
}

/// Unpacks `busybox` from busybox-static into `cache/busybox/`, unless already there.
pub fn unpack_busybox(deb: &Path, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("busybox");
    let busybox = dir.join("bin/busybox");
    let stamp = dir.join(".unpacked");
    let package = package_id(deb)?;
    if fs::read_to_string(&stamp).ok().as_deref() != Some(package.as_str()) || !busybox.is_file() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        untar(deb, &dir, &["./bin/busybox".to_owned()])?;
        fs::write(&stamp, &package).with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    Ok(busybox)
}

/// `dpkg-deb --fsys-tarfile deb | tar -x -C dir patterns...`; patterns that match nothing are
/// not an error (the caller checks what it needs).
fn untar(deb: &Path, dir: &Path, patterns: &[String]) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let tar_input = dpkg.stdout.take().context("dpkg-deb has no stdout")?;
    let tar = Command::new("tar")
        .args(["-x", "--wildcards", "--wildcards-match-slash", "-C"])
        .arg(dir)
        .arg("-f")
        .arg("-")
        .args(patterns)
        .stdin(tar_input)
        .output()
        .context("cannot run tar")?;
    let dpkg = dpkg
        .wait_with_output()
        .context("cannot wait for dpkg-deb")?;
    if !dpkg.status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed: {}",
            deb.display(),
            sh::tail(&dpkg.stderr, 5)
        );
    }
    let stderr = String::from_utf8_lossy(&tar.stderr);
    let real_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.ends_with("Not found in archive") && !l.contains("Exiting with failure status")
        })
        .collect();
    if !real_errors.is_empty() || (!tar.status.success() && tar.status.code() != Some(2)) {
        bail!(
            "unpacking {} failed: {}",
            deb.display(),
            real_errors.join("\n")
        );
    }
    Ok(())
}

/// Checks that [`REQUIRED`] modules are there and that every unpacked module's dependencies are
/// unpacked too or built in, so `modprobe` in the guest cannot fail on a missing file.
fn check_modules(modules: &Path) -> Result<()> {
    let mut present = BTreeSet::new();
    let mut depends = Vec::new();
    for path in walk_files(&modules.join("kernel"))? {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        else {
            continue;
        };
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        present.insert(module_key(name));
        for dep in modinfo_depends(&bytes) {
            depends.push((name.to_owned(), dep));
        }
    }
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
        .map(module_key)
        .collect();
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|m| !present.contains(&module_key(m)))
        .map(|m| (*m).to_owned())
        .chain(
            depends
                .iter()
                .filter(|(_, dep)| {
                    !present.contains(&module_key(dep)) && !builtin.contains(&module_key(dep))
                })
                .map(|(module, dep)| format!("{dep} (needed by {module})")),
        )
        .collect();
    if !missing.is_empty() {
        bail!(
            "kernel modules missing from the unpacked set: {}; add them to MODULES in {}",
            missing.join(", "),
            file!()
        );
    }
    Ok(())
}

/// Module names compare with `-` and `_` as equal, as the kernel does.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// The `depends=` field of a module's `.modinfo` section.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &ko[at + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every regular file under `dir`, recursively, sorted.
pub fn walk_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", entry.path().display()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=dca,i2c-algo-bit\0vermagic=6.1\0";
        assert_eq!(modinfo_depends(ko), ["dca", "i2c-algo-bit"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
        assert!(modinfo_depends(b"no modinfo").is_empty());
    }
}
