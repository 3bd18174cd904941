//! A libvirtd of a test's own, with its QEMU driver (`qemu:///system`), in a private mount
//! namespace: its /etc/libvirt, /run, /var/lib, /var/cache and /var/log (and a passwd and
//! group naming Debian's `libvirt-qemu` user) are directories of the test's, so nothing on
//! the host changes. Shared by crates/libvirt/tests/libvirtd.rs and (by `#[path]`)
//! crates/vfpool/tests/libvirtd_hook.rs; each checks root and the packages first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running libvirtd; killed by its PID when dropped.
pub struct Libvirtd {
    child: Child,
    /// Its directories; `DIR/etc` is its /etc/libvirt, `DIR/libvirtd.log` its output.
    pub dir: PathBuf,
}

impl Libvirtd {
    /// Lays `dir` out and starts libvirtd there; returns once its socket accepts.
    pub fn spawn(dir: &Path) -> Libvirtd {
        for sub in ["run", "lib", "cache", "log", "etc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(
            dir.join("etc/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/libvirtd.conf"),
            "auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
        )
        .unwrap();
        // The QEMU driver looks its default user up before it reads qemu.conf.
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str("libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n");
        std::fs::write(dir.join("passwd"), passwd).unwrap();
        let mut group = std::fs::read_to_string("/etc/group").unwrap();
        group.push_str("libvirt-qemu:x:64055:\n");
        std::fs::write(dir.join("group"), group).unwrap();
        let p = |s: &str| dir.join(s).display().to_string();
        let script = format!(
            "set -e; mount --bind {} /etc/passwd; mount --bind {} /etc/group; \
             mount --bind {} /run; mount --bind {} /var/lib; mount --bind {} /var/cache; \
             mount --bind {} /var/log; mount --bind {} /etc/libvirt; exec /usr/sbin/libvirtd",
            p("passwd"),
            p("group"),
            p("run"),
            p("lib"),
            p("cache"),
            p("log"),
            p("etc")
        );
        let log = std::fs::File::create(dir.join("libvirtd.log")).unwrap();
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Libvirtd {
            child,
            dir: dir.to_owned(),
        };
        let sock = dir.join("run/libvirt/libvirt-sock");
        let start = Instant::now();
        // The socket file appears at bind(), before listen(): wait until it accepts.
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            let log = std::fs::read_to_string(dir.join("libvirtd.log")).unwrap_or_default();
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("libvirtd exited ({status}):\n{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "libvirtd not listening after 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    /// The URI that reaches it.
    pub fn uri(&self) -> String {
        format!(
            "qemu:///system?socket={}",
            self.dir.join("run/libvirt/libvirt-sock").display()
        )
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
