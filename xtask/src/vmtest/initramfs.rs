//! The guest's initramfs: busybox, iproute2's `ip` and jq (test setup and checks only), the
//! kernel modules, vfpool, the CNI plugin vfpool-cni beside Debian's reference IPAM plugins
//! in `/opt/cni/bin`, `/init` and the scenario scripts, as a gzip'ed newc cpio archive.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::kernel::GuestKernel;
use super::{host, sh};

/// The guest's CNI_PATH: vfpool-cni and the IPAM plugins it executes.
const GUEST_CNI_BIN: &str = "opt/cni/bin";

/// What goes into the initramfs.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub busybox: &'a Path,
    pub kernel: &'a GuestKernel,
    pub vfpool: &'a Path,
    pub vfpool_cni: &'a Path,
    /// `tests/vm/`: `init`, `lib.sh`, `scenarios/*.sh`.
    pub scripts: &'a Path,
}

/// Lays the tree out in `stage` and writes `out` (gzip'ed cpio); returns the size of `out`.
pub fn build(inputs: &Inputs<'_>, stage: &Path, out: &Path) -> Result<u64> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "var/lib/vfpool",
        "lib/modules",
        "mnt",
        "root",
    ] {
        mkdir(&stage.join(dir))?;
    }

    copy(inputs.busybox, &stage.join("bin/busybox"), 0o755)?;
    let applets = sh::stdout(Command::new(inputs.busybox).arg("--list-full"))?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        // iproute2's `ip` replaces busybox's (which knows neither `vf` nor `netns`).
        if applet.rsplit('/').next() == Some("ip") {
            continue;
        }
        let link = stage.join(applet);
        if !link.exists() {
            symlink("/bin/busybox", &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
        }
    }

    for (tool, guest_path) in [("ip", "sbin/ip"), ("jq", "usr/bin/jq")] {
        let host_path = host::find_tool(tool)
            .with_context(|| format!("`{tool}` is not installed on the host"))?;
        copy_with_libraries(&host_path, stage, guest_path)?;
    }

    let modules = stage.join("lib/modules").join(&inputs.kernel.release);
    copy_tree(&inputs.kernel.modules, &modules)?;
    sh::run(
        Command::new(inputs.busybox)
            .args(["depmod", "-b"])
            .arg(stage)
            .arg(&inputs.kernel.release),
    )?;

    copy(inputs.vfpool, &stage.join("usr/bin/vfpool"), 0o755)?;
    copy(
        inputs.vfpool_cni,
        &stage.join(GUEST_CNI_BIN).join("vfpool-cni"),
        0o755,
    )?;
    for plugin in host::CNI_PLUGINS {
        copy_with_libraries(
            &Path::new(host::CNI_PLUGIN_DIR).join(plugin),
            stage,
            &format!("{GUEST_CNI_BIN}/{plugin}"),
        )?;
    }
    copy(&inputs.scripts.join("init"), &stage.join("init"), 0o755)?;
    copy(
        &inputs.scripts.join("lib.sh"),
        &stage.join("vmtest/lib.sh"),
        0o644,
    )?;
    copy_tree(
        &inputs.scripts.join("scenarios"),
        &stage.join("vmtest/scenarios"),
    )?;

    write_gzip_cpio(stage, out)?;
    Ok(fs::metadata(out)
        .with_context(|| format!("cannot stat {}", out.display()))?
        .len())
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", to.display()))
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for file in super::kernel::walk_files(from)? {
        let rel = file.strip_prefix(from).context("walked outside the tree")?;
        copy(&file, &to.join(rel), 0o644)?;
    }
    Ok(())
}

/// Copies a dynamically linked host program and the libraries `ldd` names, at the same paths.
fn copy_with_libraries(program: &Path, stage: &Path, guest_path: &str) -> Result<()> {
    copy(program, &stage.join(guest_path), 0o755)?;
    let ldd = sh::stdout(Command::new("ldd").arg(program))?;
    for library in ldd_paths(&ldd) {
        let rel = library
            .strip_prefix("/")
            .context("ldd printed a relative path")?;
        copy(&library, &stage.join(rel), 0o755)?;
    }
    Ok(())
}

/// The absolute library paths in `ldd` output (`libx.so.1 => /lib/.../libx.so.1 (0x...)` and
/// the loader's own `/lib64/ld-linux-x86-64.so.2 (0x...)`).
fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, right)| right);
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Writes `stage` as a newc cpio archive (owned by root, mtime 0, plus `/dev/console` so that
/// `/init` has a console before it mounts devtmpfs), piped through `gzip -n`.
fn write_gzip_cpio(stage: &Path, out: &Path) -> Result<()> {
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut gzip = Command::new("gzip")
        .args(["-6", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cannot run gzip")?;
    let stdin = gzip.stdin.take().context("gzip has no stdin")?;
    let mut cpio = Cpio::new(BufWriter::new(stdin));
    let written = cpio.tree(stage, "").and_then(|()| {
        cpio.entry("dev/console", libc_mode::S_IFCHR | 0o600, (5, 1), &[])?;
        cpio.finish()
    });
    // Closes gzip's stdin, or it would wait for more.
    drop(cpio);
    let status = gzip.wait().context("cannot wait for gzip")?;
    written.with_context(|| format!("cannot write {}", out.display()))?;
    if !status.success() {
        bail!("gzip failed ({status})");
    }
    Ok(())
}

mod libc_mode {
    pub const S_IFMT: u32 = 0o170_000;
    pub const S_IFDIR: u32 = 0o040_000;
    pub const S_IFCHR: u32 = 0o020_000;
    pub const S_IFREG: u32 = 0o100_000;
    pub const S_IFLNK: u32 = 0o120_000;
}

/// A newc ("070701") cpio writer.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            ino: 0,
            written: 0,
        }
    }

    /// Appends every entry under `dir` (directories before their contents, names sorted).
    fn tree(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut entries = fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot stat {}", path.display()))?;
            let mode = meta.mode();
            match mode & libc_mode::S_IFMT {
                libc_mode::S_IFDIR => {
                    self.entry(&name, mode, (0, 0), &[])?;
                    self.tree(&path, &format!("{name}/"))?;
                }
                libc_mode::S_IFLNK => {
                    let target = fs::read_link(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    self.entry(&name, mode, (0, 0), target.as_os_str().as_encoded_bytes())?;
                }
                libc_mode::S_IFREG => {
                    let data = fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    self.entry(&name, mode, (0, 0), &data)?;
                }
                _ => bail!("{} is not a file, directory or symlink", path.display()),
            }
        }
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        self.ino += 1;
        let nlink = if mode & libc_mode::S_IFMT == libc_mode::S_IFDIR {
            2
        } else {
            1
        };
        let size = u32::try_from(data.len()).context("file too large for cpio")?;
        let namesize = u32::try_from(name.len() + 1).context("name too long for cpio")?;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn finish(&mut self) -> Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush().context("cannot flush the archive")
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .context("cannot write the archive")?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let pad = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..usize::try_from(pad).unwrap_or(0)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibjq.so.1 => /lib/x86_64-linux-gnu/libjq.so.1 (0x7f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            ldd_paths(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libjq.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.entry("init", libc_mode::S_IFREG | 0o755, (0, 0), b"#!/bin/sh\n")
            .unwrap();
        cpio.finish().unwrap();
        let out = cpio.out;
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // header (110) + "init\0" padded to 116, then 10 bytes of data padded to 12
        assert_eq!(&out[116..126], b"#!/bin/sh\n");
        assert_eq!(&out[128..134], b"070701");
    }
}
