//! vfpool and its CNI plugin built as static executables, so the guest needs no libraries for
//! them (and the host can run the very same files for host-side checks).
//!
//! The build uses its own target directory under `target/vmtest/` so that its flags never
//! invalidate the normal build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::host::Apt;
use super::sh;

/// How the static binary is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static`: needs nothing beyond
    /// the toolchain and libc6-dev, so it is the default.
    GnuStatic,
    /// `x86_64-unknown-linux-musl`: needs the rust-std for it (rustup) and `musl-gcc`
    /// (musl-tools) for crates that compile C, such as rusqlite's bundled SQLite.
    Musl,
}

impl Flavor {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gnu" => Ok(Self::GnuStatic),
            "musl" => Ok(Self::Musl),
            _ => bail!("unknown static flavor `{s}` (expected gnu or musl)"),
        }
    }

    fn triple(self) -> &'static str {
        match self {
            Self::GnuStatic => "x86_64-unknown-linux-gnu",
            Self::Musl => "x86_64-unknown-linux-musl",
        }
    }
}

/// The static executables the guest runs.
#[derive(Debug)]
pub struct Binaries {
    /// `vfpool`, the CLI.
    pub vfpool: PathBuf,
    /// `vfpool-cni`, the CNI plugin.
    pub cni: PathBuf,
}

/// The (package, binary) pairs built, in one cargo run.
const BINARIES: [(&str, &str); 2] = [("vfpool", "vfpool"), ("vfpool-cni", "vfpool-cni")];

/// Builds [`BINARIES`] with `--release` statically and returns the executables.
pub fn build(root: &Path, cache: &Path, flavor: Flavor, apt: &mut Apt) -> Result<Binaries> {
    if flavor == Flavor::Musl {
        prepare_musl(apt)?;
    }
    let target_dir = cache.join("cargo-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--release"]);
    for (package, bin) in BINARIES {
        cmd.args(["-p", package, "--bin", bin]);
    }
    cmd.arg("--target")
        .arg(flavor.triple())
        .arg("--target-dir")
        .arg(&target_dir);
    // With an explicit --target these flags apply to the target only, not to build scripts.
    let rustflags = match flavor {
        Flavor::GnuStatic => "-C target-feature=+crt-static",
        Flavor::Musl => "",
    };
    cmd.env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    eprintln!("vmtest: {}", sh::describe(&cmd));
    // Let cargo's own progress through: a cold build takes a while.
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", sh::describe(&cmd)))?;
    if !status.success() {
        bail!(
            "building {} statically ({}) failed ({status})",
            BINARIES.map(|(_, bin)| bin).join(" and "),
            flavor.triple()
        );
    }
    let release = target_dir.join(flavor.triple()).join("release");
    let [vfpool, cni] = BINARIES.map(|(_, bin)| release.join(bin));
    for binary in [&vfpool, &cni] {
        if !is_static(binary)? {
            bail!(
                "{} is dynamically linked; the guest has no libraries for it",
                binary.display()
            );
        }
    }
    Ok(Binaries { vfpool, cni })
}

fn prepare_musl(apt: &mut Apt) -> Result<()> {
    let installed = sh::stdout(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|t| t.trim() == Flavor::Musl.triple()) {
        sh::run(Command::new("rustup").args(["target", "add", Flavor::Musl.triple()]))?;
    }
    if sh::which("musl-gcc").is_none() {
        apt.install(&["musl-tools"], None)?;
    }
    Ok(())
}

/// Whether the ELF file at `path` has no program interpreter (`PT_INTERP`), i.e. is static or
/// static-pie.
fn is_static(path: &Path) -> Result<bool> {
    let elf = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    elf_is_static(&elf)
        .with_context(|| format!("{} is not a 64-bit little-endian ELF file", path.display()))
}

fn elf_is_static(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // ELF magic, ELFCLASS64, ELFDATA2LSB
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tools_are_dynamic() {
        // /bin/sh on any glibc host has an interpreter.
        let sh = fs::read("/bin/sh").unwrap();
        assert_eq!(elf_is_static(&sh), Some(false));
        assert_eq!(elf_is_static(b"#!/bin/sh\n"), None);
    }
}
