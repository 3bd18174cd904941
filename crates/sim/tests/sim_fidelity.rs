//! The simulated host answers sysfs writes as the real kernel does: replays
//! `tests/vm/scenarios/fidelity-sysfs.txt` (what a real igb guest answered, checked by the
//! real-kernel tier's `fidelity` scenario on every run) against a simulated 82576 PF.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use vfpool_host::AttrWriter;
use vfpool_model::{MacAddr, PciAddr};
use vfpool_sim::{HostSpec, INTEL_82576, PortSpec, SimHost};

const GOLDEN: &str = include_str!("../../../tests/vm/scenarios/fidelity-sysfs.txt");

/// One 82576 PF (as QEMU's `igb` in the guest) behind VT-d, vfio-pci loaded.
fn igb_host() -> (tempfile::TempDir, SimHost, PathBuf, PciAddr) {
    let dir = tempfile::tempdir().unwrap();
    let pci = PciAddr::new(0, 1, 0, 0);
    let spec = HostSpec {
        ports: vec![PortSpec {
            model: INTEL_82576,
            pci,
            netdev: Some("eth0".into()),
            numa_node: 0,
            mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            offset: None,
        }],
        ..HostSpec::demo()
    };
    assert!(spec.iommu && spec.vfio_loaded);
    let sim = SimHost::open_or_create(dir.path(), &spec).unwrap();
    let sys = sim.paths().sys;
    (dir, sim, sys, pci)
}

struct Replay<'a> {
    sim: &'a SimHost,
    sys: &'a Path,
    pci: PciAddr,
}

impl Replay<'_> {
    fn pf_dir(&self) -> PathBuf {
        self.sys.join(format!("bus/pci/devices/{}", self.pci))
    }

    /// `VFn` -> VF n's PCI address, read from the PF's `virtfnN` link.
    fn vf_addr(&self, vf: &str) -> String {
        let n = vf
            .strip_prefix("VF")
            .unwrap_or_else(|| panic!("not a VF: {vf}"));
        let link = fs::read_link(self.pf_dir().join(format!("virtfn{n}")))
            .unwrap_or_else(|e| panic!("no virtfn{n}: {e}"));
        link.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn path(&self, what: &str) -> PathBuf {
        if let Some(attr) = what.strip_prefix("PF/") {
            self.pf_dir().join(attr)
        } else if what.starts_with("VF") {
            let (vf, attr) = what.split_once('/').unwrap();
            self.sys
                .join(format!("bus/pci/devices/{}", self.vf_addr(vf)))
                .join(attr)
        } else {
            self.sys.join("bus/pci").join(what)
        }
    }

    /// What the guest prints for one line of the golden file (without ` => ...`).
    fn answer(&self, what: &str, arg: &str) -> String {
        match what {
            "driver" => {
                let dir = self
                    .sys
                    .join(format!("bus/pci/devices/{}", self.vf_addr(arg)));
                fs::read_link(dir.join("driver"))
                    .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "none".into())
            }
            "vfs" => fs::read_dir(self.pf_dir())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtfn"))
                .count()
                .to_string(),
            _ => {
                let value = if arg.starts_with("VF") {
                    self.vf_addr(arg)
                } else {
                    arg.to_owned()
                };
                // As the guest's `echo VALUE > PATH`.
                match self.sim.write(&self.path(what), &format!("{value}\n")) {
                    Ok(()) => "ok".into(),
                    Err(e) => match e.raw_os_error() {
                        Some(n) => format!("{:?}", Errno::from_raw(n)),
                        None => format!("other: {e}"),
                    },
                }
            }
        }
    }
}

#[test]
fn the_simulator_answers_sysfs_writes_like_the_real_kernel() {
    let (_d, sim, sys, pci) = igb_host();
    let replay = Replay {
        sim: &sim,
        sys: &sys,
        pci,
    };
    let mut steps = 0;
    let mut wrong = Vec::new();
    for line in GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (step, want) = line.split_once(" => ").expect("a line is `STEP => ANSWER`");
        let mut words = step.split_whitespace();
        let what = words.next().unwrap();
        let arg = words.next().unwrap_or("");
        let got = replay.answer(what, arg);
        steps += 1;
        if got != want {
            wrong.push(format!(
                "{step}: the kernel answers {want}, the simulator {got}"
            ));
        }
    }
    assert!(
        steps >= 40,
        "only {steps} steps read from fidelity-sysfs.txt"
    );
    assert!(
        wrong.is_empty(),
        "the simulator differs from the real kernel:\n{}",
        wrong.join("\n")
    );
}
