//! What runs where: the scenarios (a guest script plus an optional host-side check) and the
//! machine configurations that choose among them.
//!
//! Adding a scenario: write `tests/vm/scenarios/<name>.sh` (see `tests/vm/lib.sh` for the
//! helpers and the result protocol), add it to [`SCENARIOS`], and list it in the boots of the
//! configs it should run in (or in their `on_demand`: run only when named by `--scenario`). A
//! host-side check receives the scenario's `vm_data` blocks.

use super::checks;
use super::report::ScenarioReport;
use std::path::Path;

/// A host-side check of what a scenario reported; an error fails the scenario.
pub type HostCheck = fn(&HostContext<'_>, &ScenarioReport) -> anyhow::Result<()>;

/// What a host-side check may use.
#[derive(Debug)]
pub struct HostContext<'a> {
    /// The same static vfpool binary the guest runs.
    pub vfpool: &'a Path,
    /// A scratch directory of this config's run.
    pub work: &'a Path,
}

#[derive(Debug)]
pub struct Scenario {
    /// Also the script's name: `tests/vm/scenarios/<name>.sh`.
    pub name: &'static str,
    pub about: &'static str,
    pub host_check: Option<HostCheck>,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "sriov-sanity",
        about: "the lab itself: each igb PF offers 7 VFs, sriov_numvfs creates and removes them (shell only)",
        host_check: None,
    },
    Scenario {
        name: "inventory",
        about: "`nic list` agrees with sysfs; `host check` sees the IOMMU and interrupt remapping or their absence",
        host_check: None,
    },
    Scenario {
        name: "split",
        about: "split 7 / restore / split again; --autoprobe off leaves VFs unbound; 7 -> 3 through vfpool",
        host_check: None,
    },
    Scenario {
        name: "bad-input",
        about: "split --vfs 8 fails naming the range and leaves sriov_numvfs alone",
        host_check: None,
    },
    Scenario {
        name: "fidelity",
        about: "the real kernel's sysfs manifest of a 7-VF igb PF equals the simulator's (`--demo`)",
        host_check: Some(checks::fidelity),
    },
    Scenario {
        name: "lease",
        about: "a lease sets MAC/VLAN/trust/spoofchk/max rate through the igb PF driver, release restores; link-state, min rate, 802.1ad refused in one line and rolled back; vfio-pci leases",
        host_check: None,
    },
    Scenario {
        name: "traffic",
        about: "two container leases, VF netdevs in two netns ping each other through the NIC; a port VLAN isolates",
        host_check: None,
    },
    Scenario {
        name: "cni",
        about: "vfpool-cni ADD (MAC, VLAN, host-local) into two pods that ping each other through the NIC; service path; CHECK; STATUS 50; DEL after the netns is gone; GC",
        host_check: None,
    },
    Scenario {
        name: "cni-bench",
        about: "benchmark: vfpool-cni ADD and DEL of one VF against `ip -batch` doing the same netlink work (medians printed as BENCH lines; fails only on errors)",
        host_check: None,
    },
    Scenario {
        name: "crash-gc",
        about: "vfpool aborted at every acquire/release fault point, then `lease gc` leaves no lease, no dirty VF",
        host_check: None,
    },
    Scenario {
        name: "split-race",
        about: "`nic split` (7 <-> 6) started beside `lease acquire --mac`, 6 rounds: the split is refused for the lease or runs first; a leased VF always carries its MAC",
        host_check: None,
    },
    Scenario {
        name: "pf-down",
        about: "a PF left down (`split --keep-link`): acquire fails with exit 6 naming \"administratively down\"; `nic split` brings the PF up and acquire works",
        host_check: None,
    },
    Scenario {
        name: "vm",
        about: "`vm start` binds a VF NIC's VF to vfio-pci with its MAC and the L2's VLAN, `vm xml` names it, `vm stop` gives it back to igbvf; no free VF: exit 6; the libvirt hook refuses a held VF (exit 4); a VF and a macvlan on PF.VLAN ping each other",
        host_check: None,
    },
    Scenario {
        name: "persist-before-reboot",
        about: "split 3 VFs with autoprobe off, `host persist` records it on the state disk; a VM and a container lease, one acquired and released; then a power cut",
        host_check: None,
    },
    Scenario {
        name: "apply-after-reboot",
        about: "after the power cut every answered acquire and release is on disk; (0 VFs) `host apply` re-creates the split and re-applies the leases; gc drops the container lease",
        host_check: None,
    },
];

/// One emulated machine.
#[derive(Debug)]
pub struct Config {
    pub name: &'static str,
    pub about: &'static str,
    /// q35 with `kernel-irqchip=split` and `intel-iommu,intremap=on`, booted with
    /// `intel_iommu=on iommu=pt`; otherwise plain q35 without an IOMMU.
    pub iommu: bool,
    /// igb PFs (82576, 7 VFs each), each behind its own pcie-root-port: on the root bus the
    /// VF<->PF mailbox does not work under QEMU.
    pub pfs: u8,
    /// A small ext4 disk (virtio-blk) that survives from one boot to the next, mounted in the
    /// guest as vfpool's state directory.
    pub state_disk: bool,
    /// Every boot but the last ends in a power cut (needs `state_disk`): the harness requires
    /// the guest to report the cut (`VMTEST POWERCUT`, see `power_cut_after` in lib.sh) and
    /// the next boot to find the control file written without a sync gone (`VMTEST UNSYNCED
    /// absent`).
    pub power_cut_between_boots: bool,
    /// The machine is booted once per entry, in order, running that entry's scenarios.
    pub boots: &'static [&'static [&'static str]],
    /// Scenarios in no boot of a plain run (benchmarks too slow for it): run only when named
    /// by `--scenario`, at the end of the last boot.
    pub on_demand: &'static [&'static str],
}

pub const CONFIGS: &[Config] = &[
    Config {
        name: "iommu",
        about: "two igb PFs behind an emulated VT-d with interrupt remapping",
        iommu: true,
        pfs: 2,
        state_disk: false,
        power_cut_between_boots: false,
        boots: &[&[
            "sriov-sanity",
            "inventory",
            "split",
            "bad-input",
            "fidelity",
            "lease",
            "crash-gc",
            "vm",
        ]],
        on_demand: &[],
    },
    Config {
        name: "noiommu",
        about: "one igb PF, no IOMMU",
        iommu: false,
        pfs: 1,
        state_disk: false,
        power_cut_between_boots: false,
        boots: &[&[
            "sriov-sanity",
            "inventory",
            "split",
            "bad-input",
            "lease",
            "traffic",
            "pf-down",
            "split-race",
            "cni",
        ]],
        on_demand: &["cni-bench"],
    },
    Config {
        name: "reboot",
        about: "one igb PF, no IOMMU, booted twice with the same state disk, the first boot ending in a power cut",
        iommu: false,
        pfs: 1,
        state_disk: true,
        power_cut_between_boots: true,
        boots: &[&["persist-before-reboot"], &["apply-after-reboot"]],
        on_demand: &[],
    },
];

pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn configs_name_known_scenarios_once() {
        for config in CONFIGS {
            let mut seen = BTreeSet::new();
            for name in config
                .boots
                .iter()
                .flat_map(|b| b.iter())
                .chain(config.on_demand)
            {
                assert!(
                    scenario(name).is_some(),
                    "{}: unknown scenario {name}",
                    config.name
                );
                assert!(seen.insert(name), "{}: {name} listed twice", config.name);
            }
        }
    }

    #[test]
    fn power_cuts_only_on_a_state_disk() {
        for config in CONFIGS {
            assert!(
                !config.power_cut_between_boots || (config.state_disk && config.boots.len() > 1),
                "{}: a power cut between boots needs a state disk and two boots",
                config.name
            );
        }
    }

    #[test]
    fn every_scenario_has_a_script() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/scenarios");
        for s in SCENARIOS {
            assert!(
                dir.join(format!("{}.sh", s.name)).is_file(),
                "no script for {}",
                s.name
            );
        }
    }
}
