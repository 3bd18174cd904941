//! Booting one configuration under QEMU (TCG: this machine's KVM is unusable) with a deadline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::plan::Config;
use super::sh;

/// One boot of a config.
#[derive(Debug)]
pub struct Boot<'a> {
    pub config: &'a Config,
    /// 1-based, for configs booted more than once.
    pub index: usize,
    pub scenarios: Vec<&'static str>,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Gets `console.log`, `results.log` and `qemu.log`.
    pub dir: PathBuf,
    pub timeout: Duration,
    /// Seconds each scenario may take inside the guest.
    pub scenario_timeout: u64,
    pub state_disk: Option<&'a Path>,
}

#[derive(Debug)]
pub enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

#[derive(Debug)]
pub struct Finished {
    pub ending: Ending,
    pub elapsed: Duration,
}

impl Boot<'_> {
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    pub fn results_log(&self) -> PathBuf {
        self.dir.join("results.log")
    }

    fn cmdline(&self) -> String {
        let c = self.config;
        let mut cmdline = String::from("console=ttyS0 loglevel=4 panic=-1 mitigations=off nokaslr");
        if c.iommu {
            cmdline.push_str(" intel_iommu=on iommu=pt");
        }
        cmdline.push_str(&format!(
            " vmtest.config={} vmtest.boot={} vmtest.scenarios={} vmtest.iommu={} vmtest.pfs={} \
             vmtest.state_disk={} vmtest.timeout={}",
            c.name,
            self.index,
            self.scenarios.join(","),
            u8::from(c.iommu),
            c.pfs,
            u8::from(self.state_disk.is_some()),
            self.scenario_timeout,
        ));
        cmdline
    }

    fn args(&self) -> Result<Vec<String>> {
        let path = |p: &Path| -> Result<String> {
            let s = p
                .to_str()
                .with_context(|| format!("{} is not UTF-8", p.display()))?;
            if s.contains(',') {
                bail!("QEMU cannot take a path with a comma: {s}");
            }
            Ok(s.to_owned())
        };
        let machine = if self.config.iommu {
            "q35,kernel-irqchip=split"
        } else {
            "q35"
        };
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-machine",
            machine,
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            "1024",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ]
        .map(str::to_owned)
        .into();
        args.push("-serial".into());
        args.push(format!("file:{}", path(&self.console_log())?));
        args.push("-serial".into());
        args.push(format!("file:{}", path(&self.results_log())?));
        args.extend([
            "-kernel".into(),
            path(self.kernel)?,
            "-initrd".into(),
            path(self.initrd)?,
        ]);
        args.extend(["-append".into(), self.cmdline()]);
        if self.config.iommu {
            args.extend(["-device".into(), "intel-iommu,intremap=on".into()]);
        }
        for i in 1..=self.config.pfs {
            // Nothing may leave the VM: user networking with restrict=on.
            args.extend([
                "-device".into(),
                format!("pcie-root-port,id=rp{i},chassis={i},slot={i}"),
                "-netdev".into(),
                format!("user,id=n{i},restrict=on"),
                "-device".into(),
                format!("igb,netdev=n{i},bus=rp{i},romfile="),
            ]);
        }
        if let Some(disk) = self.state_disk {
            args.extend([
                "-drive".into(),
                format!("file={},format=raw,if=none,id=state", path(disk)?),
                "-device".into(),
                "virtio-blk-pci,drive=state".into(),
            ]);
        }
        Ok(args)
    }

    /// Boots and waits for QEMU to exit (the guest powers off) or for the deadline.
    pub fn run(&self) -> Result<Finished> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        for log in [self.console_log(), self.results_log()] {
            let _ = fs::remove_file(log);
        }
        let qemu_log = self.dir.join("qemu.log");
        let log = fs::File::create(&qemu_log)
            .with_context(|| format!("cannot create {}", qemu_log.display()))?;
        let log2 = log.try_clone().context("cannot duplicate a file handle")?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(self.args()?)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        fs::write(self.dir.join("qemu.cmd"), sh::describe(&cmd) + "\n")
            .with_context(|| format!("cannot write into {}", self.dir.display()))?;
        let start = Instant::now();
        let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
        loop {
            if let Some(status) = child.try_wait().context("cannot wait for QEMU")? {
                return Ok(Finished {
                    ending: Ending::Exited(status),
                    elapsed: start.elapsed(),
                });
            }
            if start.elapsed() > self.timeout {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Finished {
                    ending: Ending::TimedOut,
                    elapsed: start.elapsed(),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}
