//! Reading and writing the kernel's pseudo files under a configurable root.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::HostError;

/// Where the host's kernel interfaces live. Real hosts use `/sys`, `/proc` and
/// `/lib/modules`; the demo host and the tests point them into a generated tree.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub sys: PathBuf,
    pub proc: PathBuf,
    pub modules: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            modules: PathBuf::from("/lib/modules"),
        }
    }
}

impl HostPaths {
    /// A tree laid out like `/`: `ROOT/sys`, `ROOT/proc`, `ROOT/lib/modules`.
    pub fn under(root: &Path) -> Self {
        Self {
            sys: root.join("sys"),
            proc: root.join("proc"),
            modules: root.join("lib/modules"),
        }
    }
}

/// Writes to kernel attributes go through this, so the simulated host can act on them
/// the way the kernel does (create VFs when `sriov_numvfs` is written, bind drivers, ...).
pub trait AttrWriter: Send + Sync + std::fmt::Debug {
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
}

/// The real kernel: a plain write of the whole value.
#[derive(Debug, Default)]
pub struct KernelWriter;

impl AttrWriter for KernelWriter {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }
}

/// A sysfs reader that counts its reads, so the benchmark can report reads per VF.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
    writer: Arc<dyn AttrWriter>,
    reads: Arc<AtomicU64>,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>, writer: Arc<dyn AttrWriter>) -> Self {
        Self {
            root: root.into(),
            writer,
            reads: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// How many files, links and directories were read since the start.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// The trimmed contents of an attribute; `None` when it does not exist.
    /// Some attributes exist but cannot be read in some states (`speed` of a link that is
    /// down answers EINVAL): those are `None` too.
    pub fn read_opt(&self, path: &Path) -> Result<Option<String>, HostError> {
        self.count();
        match crate::kfile::read_small(path) {
            Ok(s) => Ok(Some(s.trim_end_matches('\n').to_owned())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) || e.raw_os_error() == Some(libc_enodev()) =>
            {
                Ok(None)
            }
            Err(e) => Err(HostError::Read {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    pub fn read(&self, path: &Path) -> Result<String, HostError> {
        self.read_opt(path)?.ok_or_else(|| HostError::Read {
            path: path.to_owned(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }

    /// A number in decimal or `0x` hexadecimal.
    pub fn read_num_opt(&self, path: &Path) -> Result<Option<i64>, HostError> {
        match self.read_opt(path)? {
            None => Ok(None),
            Some(s) => parse_num(&s).map(Some).ok_or_else(|| HostError::Parse {
                path: path.to_owned(),
                value: s,
            }),
        }
    }

    /// The file name a symbolic link points at (`driver -> ../../bus/pci/drivers/igb` gives `igb`).
    pub fn link_name(&self, path: &Path) -> Result<Option<String>, HostError> {
        self.count();
        match std::fs::read_link(path) {
            Ok(t) => Ok(t.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::Read {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    /// The names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, path: &Path) -> Result<Vec<String>, HostError> {
        self.count();
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(HostError::Read {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| HostError::Read {
                path: path.to_owned(),
                source: e,
            })?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Which instance of a device directory `path` is (links followed): its inode. The
    /// kernel gives every sysfs directory a new one, so a device destroyed and created again
    /// at the same address (a VF after `sriov_numvfs` went to 0 and back) has another.
    /// `None` when it does not exist.
    pub fn instance(&self, path: &Path) -> Result<Option<u64>, HostError> {
        use std::os::unix::fs::MetadataExt;
        self.count();
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::Read {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.count();
        std::fs::symlink_metadata(path).is_ok()
    }

    pub fn write(&self, path: &Path, value: &str) -> Result<(), io::Error> {
        tracing::debug!(path = %path.display(), value, "sysfs write");
        self.writer.write(path, value)
    }
}

const fn libc_enodev() -> i32 {
    19
}

/// Parses `7`, `-1` and `0x8086`.
pub fn parse_num(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0x8086"), Some(0x8086));
        assert_eq!(parse_num("-1"), Some(-1));
        assert_eq!(parse_num("7"), Some(7));
        assert_eq!(parse_num("seven"), None);
    }

    #[test]
    fn missing_is_none_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Sysfs::new(dir.path(), Arc::new(KernelWriter));
        assert_eq!(fs.read_opt(&dir.path().join("nope")).unwrap(), None);
        std::fs::write(dir.path().join("numa_node"), "x\n").unwrap();
        let err = fs.read_num_opt(&dir.path().join("numa_node")).unwrap_err();
        assert!(err.to_string().contains("numa_node"), "{err}");
        assert_eq!(fs.reads(), 2);
    }
}
