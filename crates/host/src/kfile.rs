//! Reading the kernel's pseudo files (sysfs attributes and links) with as few system calls
//! as they take: an acquire reads a few dozen, and on a virtual machine each system call
//! is dear.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Reads a small file in as few system calls as it takes: open, one read, close. A sysfs
/// attribute comes whole in its first read (at most a page), and a read of a regular file
/// that returns less than asked has reached its end; only a full buffer reads on.
/// (`fs::read_to_string` also asks the file's size and reads again to see the end: five
/// system calls per attribute instead of three.)
pub fn read_small(path: &Path) -> io::Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The bytes of a small file, read as [`read_small`] reads.
pub fn read_bytes(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = match f.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    Ok(buf)
}

/// The canonical path of `p`, symbolic links resolved, as the kernel resolves it: one
/// `open(O_PATH)` and a read of its `/proc/self/fd` link, where `fs::canonicalize` reads
/// every component's link (a sysfs path has a dozen). Falls back to `fs::canonicalize`
/// when `/proc` is not there.
pub fn real_path(p: &Path) -> io::Result<PathBuf> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let fd = open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(io::Error::from)?;
    match fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(t) if t.is_absolute() => Ok(t),
        _ => fs::canonicalize(p),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn small_reads_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, 20_000] {
            let p = dir.path().join(format!("f{len}"));
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            std::fs::write(&p, &text).unwrap();
            assert_eq!(read_small(&p).unwrap(), text, "{len} bytes");
        }
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        let e = read_small(&dir.path().join("bin")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn real_path_resolves_relative_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("devices/pci0000:00/0000:04:00.0/net/em1")).unwrap();
        fs::create_dir_all(root.join("class/net")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:04:00.0/net/em1",
            root.join("class/net/em1"),
        )
        .unwrap();
        let want = root.join("devices/pci0000:00/0000:04:00.0/net/em1");
        assert_eq!(real_path(&root.join("class/net/em1")).unwrap(), want);
        assert_eq!(fs::canonicalize(root.join("class/net/em1")).unwrap(), want);
        let e = real_path(&root.join("class/net/nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
