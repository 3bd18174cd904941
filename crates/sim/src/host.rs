//! The simulated host: a generated sysfs tree that acts like the kernel when written.
//!
//! The tree has the real kernel's layout (compare with the igb guest in
//! `shared/reference/qemu-sriov-lab/FINDINGS.md`; the real-kernel tier diffs the two):
//! device directories under `sys/devices/pci0000:00/<root port>/<function>`, reached through
//! `sys/bus/pci/devices/<bdf>` links, `driver` and `iommu_group` links, `virtfnN` and `physfn`
//! links, netdevs under `<function>/net/<ifname>` reached through `sys/class/net/<ifname>`.
//!
//! Writes go through [`SimHost`] (an [`AttrWriter`]) and follow the kernel's rules:
//! `sriov_numvfs` from non-zero to another non-zero is EBUSY, above `sriov_totalvfs` ERANGE;
//! VFs are created with `virtfnN`/`physfn` links and, when `sriov_drivers_autoprobe` is 1,
//! bound to their VF driver with a netdev; `driver_override` + `drivers_probe` binds a VF
//! even with autoprobe off, while a plain `bind` then answers ENODEV.
//! Several processes may share one tree: every write holds an exclusive lock on `sim.lock`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vfpool_model::{MacAddr, PciAddr};

use nix::errno::Errno;

use vfpool_host::HostError;
use vfpool_host::sysfs::{AttrWriter, HostPaths};

use nix::errno::Errno::{EBUSY, EEXIST, EINVAL, ENODEV, ENOENT, ENOMEM, ERANGE};

/// A NIC model the simulator knows: PCI ids, drivers and SR-IOV geometry.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub vendor: u16,
    pub device: u16,
    pub vf_device: u16,
    pub driver: &'static str,
    pub total_vfs: u32,
    pub offset: u32,
    pub stride: u32,
    pub speed: u32,
    /// Whether the VF driver gives new VFs a random MAC (igbvf, ixgbevf) or zeros (mlx5).
    pub vf_random_mac: bool,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
}

/// Intel 82576 (QEMU's emulated `igb`): the model of the real-kernel tier.
pub const INTEL_82576: Model = Model {
    vendor: 0x8086,
    device: 0x10c9,
    vf_device: 0x10ca,
    driver: "igb",
    total_vfs: 7,
    offset: 128,
    stride: 2,
    speed: 1000,
    vf_random_mac: true,
    subsystem_vendor: 0x8086,
    subsystem_device: 0x0000,
};

/// Intel I350 (igb), as in the libvirt seed.
pub const INTEL_I350: Model = Model {
    device: 0x1521,
    vf_device: 0x1520,
    stride: 4,
    subsystem_vendor: 0x1028,
    subsystem_device: 0x1f60,
    ..INTEL_82576
};

/// Intel 82599ES (ixgbe).
pub const INTEL_82599ES: Model = Model {
    vendor: 0x8086,
    device: 0x10fb,
    vf_device: 0x10ed,
    driver: "ixgbe",
    total_vfs: 63,
    offset: 128,
    stride: 2,
    speed: 10000,
    vf_random_mac: true,
    subsystem_vendor: 0x1028,
    subsystem_device: 0x1f72,
};

/// Mellanox ConnectX-5 (mlx5_core).
pub const MLX_CX5: Model = Model {
    vendor: 0x15b3,
    device: 0x1017,
    vf_device: 0x1018,
    driver: "mlx5_core",
    total_vfs: 127,
    offset: 2,
    stride: 1,
    speed: 25000,
    vf_random_mac: false,
    subsystem_vendor: 0x15b3,
    subsystem_device: 0x0007,
};

/// Broadcom BCM5720 (tg3): an onboard port without SR-IOV.
pub const BCM5720: Model = Model {
    vendor: 0x14e4,
    device: 0x165f,
    vf_device: 0,
    driver: "tg3",
    total_vfs: 0,
    offset: 0,
    stride: 0,
    speed: 1000,
    vf_random_mac: false,
    subsystem_vendor: 0x1028,
    subsystem_device: 0x0639,
};

const MODELS: [Model; 5] = [INTEL_82576, INTEL_I350, INTEL_82599ES, MLX_CX5, BCM5720];

impl Model {
    /// The kernel's driver for this model's VFs (none for a NIC without SR-IOV).
    pub fn vf_driver(&self) -> Option<&'static str> {
        (self.total_vfs > 0)
            .then(|| vfpool_model::vf_driver_for_pf(self.driver))
            .flatten()
    }
}

/// The VF driver for a VF device id, as the kernel's driver tables would choose it.
fn vf_driver_for(vendor: u16, device: u16) -> Option<&'static str> {
    MODELS
        .iter()
        .find(|m| m.vendor == vendor && m.vf_device == device)
        .and_then(Model::vf_driver)
}

/// One PF port to generate.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub model: Model,
    pub pci: PciAddr,
    pub netdev: Option<String>,
    pub numa_node: i32,
    pub mac: MacAddr,
    /// Overrides the model's VF offset (a second port of a card has its own).
    pub offset: Option<u32>,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub ports: Vec<PortSpec>,
    pub iommu: bool,
    pub intremap: bool,
    pub cmdline: String,
    pub vfio_loaded: bool,
    pub kernel: String,
    /// `vendor_id` in `/proc/cpuinfo` (GenuineIntel, AuthenticAMD).
    pub cpu_vendor: String,
    /// Debian's GRUB under the host's `/` (`ROOT/root`, where `host persist` and `host iommu`
    /// write on the demo host): `/etc/default/grub` with this `GRUB_CMDLINE_LINUX_DEFAULT`,
    /// `/etc/default/grub.d` and `update-grub` (never run). `None`: no boot loader there.
    pub grub_cmdline_default: Option<String>,
    /// Bonds whose members are PF netdevs.
    pub bonds: Vec<BondSpec>,
}

/// A bond of PF netdevs, as the bonding driver shows it in sysfs.
#[derive(Debug, Clone)]
pub struct BondSpec {
    pub name: String,
    pub members: Vec<String>,
}

impl HostSpec {
    /// The demo server: a 4-port I350 (eno49..eno52, 7 VFs each, as in the seed), a
    /// dual-port 82599ES (em1, em2, 63 VFs each), a dual-port ConnectX-5 (127 VFs each)
    /// and an onboard BCM5720 without SR-IOV, with VT-d and interrupt remapping on.
    pub fn demo() -> Self {
        let mut ports = Vec::new();
        // One card: its ports are functions 0, 1, ... of `bus`, MACs `oui:base:i`.
        let mut card = |model: Model,
                        bus: u8,
                        names: &[&str],
                        numa_node: i32,
                        mac: [u8; 5],
                        offsets: &[u32]| {
            for (i, name) in names.iter().enumerate() {
                ports.push(PortSpec {
                    model,
                    pci: PciAddr::new(0, bus, 0, i as u8),
                    netdev: Some((*name).into()),
                    numa_node,
                    mac: MacAddr([mac[0], mac[1], mac[2], mac[3], mac[4], i as u8]),
                    offset: offsets.get(i).copied(),
                });
            }
        };
        card(
            BCM5720,
            0x02,
            &["eno1"],
            0,
            [0x24, 0x6e, 0x96, 0x10, 0x01],
            &[],
        );
        card(
            INTEL_I350,
            0x03,
            &["eno49", "eno50", "eno51", "eno52"],
            0,
            [0x24, 0x6e, 0x96, 0x10, 0x49],
            &[],
        );
        card(
            INTEL_82599ES,
            0x04,
            &["em1", "em2"],
            0,
            [0x24, 0x6e, 0x96, 0x10, 0x82],
            &[],
        );
        // A second ConnectX port has its own VF offset, after the first port's 127 VFs.
        card(
            MLX_CX5,
            0x3b,
            &["ens1f0np0", "ens1f1np1"],
            1,
            [0xb8, 0x59, 0x9f, 0x20, 0x00],
            &[2, 128],
        );
        Self {
            ports,
            iommu: true,
            intremap: true,
            cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-26-amd64 root=/dev/mapper/vg0-root ro quiet intel_iommu=on iommu=pt".into(),
            vfio_loaded: true,
            kernel: "6.1.0-26-amd64".into(),
            cpu_vendor: "GenuineIntel".into(),
            grub_cmdline_default: Some("quiet intel_iommu=on iommu=pt".into()),
            bonds: Vec::new(),
        }
    }

    /// A host with `pfs` PFs of `vfs` VFs each (ConnectX-5 geometry), for benchmarks.
    pub fn large(pfs: u8, vfs: u32) -> Self {
        let model = Model {
            total_vfs: vfs,
            offset: 1,
            stride: 1,
            ..MLX_CX5
        };
        let ports = (0..pfs)
            .map(|i| PortSpec {
                model,
                pci: PciAddr::new(0, 0x10 + i, 0, 0),
                netdev: Some(format!("ens{}f0", i + 1)),
                numa_node: i32::from(i % 2),
                mac: MacAddr([0x02, 0, 0, 0, 0, i]),
                offset: None,
            })
            .collect();
        Self {
            ports,
            ..Self::demo()
        }
    }
}

/// A simulated host rooted at a directory.
#[derive(Debug, Clone)]
pub struct SimHost {
    root: PathBuf,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct Faults {
    /// PCI address -> errno name (ENOMEM, EBUSY, EINVAL) answered by `sriov_numvfs` writes.
    #[serde(default)]
    numvfs: std::collections::BTreeMap<String, String>,
    /// PCI addresses whose VFs bind a driver but never get a netdev (a wedged VF driver).
    #[serde(default)]
    no_netdev: Vec<String>,
}

fn io_err(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

fn gen_err(path: &Path, e: io::Error) -> HostError {
    HostError::Write {
        path: path.to_owned(),
        value: String::new(),
        source: e,
    }
}

/// Written once the simulated host is generated whole.
const GENERATED: &str = "sim/generated";

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): new at every boot.
const BOOT_ID: &str = "proc/sys/kernel/random/boot_id";

/// A boot id as the kernel writes it (a random UUID, one line).
fn new_boot_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.write_usize(i);
        *w = h.finish();
    }
    let [a, b] = words;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}\n",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

impl SimHost {
    /// Opens the simulated host at `root`, generating `spec` there first if no host exists.
    pub fn open_or_create(root: &Path, spec: &HostSpec) -> Result<Self, HostError> {
        let host = Self {
            root: root.to_owned(),
        };
        if !root.join(GENERATED).exists() {
            // Several processes may start on a new demo host at once: one generates it
            // under the lock while the others wait, then find it whole. (A tree with no
            // mark but with devices is one from before the mark, or whole.)
            fs::create_dir_all(root).map_err(|e| gen_err(root, e))?;
            let _lock = host.lock()?;
            if !root.join("sys/bus/pci/devices").is_dir() {
                host.generate(spec)?;
            }
            let mark = root.join(GENERATED);
            fs::write(&mark, "").map_err(|e| gen_err(&mark, e))?;
        }
        // A tree generated before the simulator kept a boot id gets one.
        let boot_id = root.join(BOOT_ID);
        if !boot_id.exists() {
            if let Some(d) = boot_id.parent() {
                fs::create_dir_all(d).map_err(|e| gen_err(d, e))?;
            }
            fs::write(&boot_id, new_boot_id()).map_err(|e| gen_err(&boot_id, e))?;
        }
        Ok(host)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn paths(&self) -> HostPaths {
        HostPaths::under(&self.root)
    }

    fn sys(&self) -> PathBuf {
        self.root.join("sys")
    }

    /// Makes the next `sriov_numvfs` write on `pci` fail with `errno` (EBUSY, EINVAL, ENOMEM).
    pub fn inject_numvfs_error(&self, pci: PciAddr, errno: &str) -> Result<(), HostError> {
        let mut f = self.faults();
        f.numvfs.insert(pci.to_string(), errno.to_owned());
        self.save_faults(&f)
    }

    /// Makes VFs of `pci` bind a driver that never registers a netdev.
    pub fn inject_no_netdev(&self, pci: PciAddr) -> Result<(), HostError> {
        let mut f = self.faults();
        f.no_netdev.push(pci.to_string());
        self.save_faults(&f)
    }

    /// What a reboot does to SR-IOV: every PF comes back with 0 VFs, autoprobe on, and no
    /// VF configuration; and the kernel has a new boot id.
    pub fn reboot(&self) -> Result<(), HostError> {
        let boot_id = self.root.join(BOOT_ID);
        fs::write(&boot_id, new_boot_id()).map_err(|e| gen_err(&boot_id, e))?;
        let devices = self.sys().join("bus/pci/devices");
        let rd = fs::read_dir(&devices).map_err(|e| gen_err(&devices, e))?;
        for e in rd.flatten() {
            let num = e.path().join("sriov_numvfs");
            if num.exists() {
                self.write(&num, "0").map_err(|e| gen_err(&num, e))?;
                let probe = e.path().join("sriov_drivers_autoprobe");
                self.write(&probe, "1").map_err(|e| gen_err(&probe, e))?;
            }
        }
        let nl = self.root.join("netlink");
        if let Ok(rd) = fs::read_dir(&nl) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    fn faults(&self) -> Faults {
        fs::read(self.root.join("sim/faults.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_faults(&self, f: &Faults) -> Result<(), HostError> {
        let p = self.root.join("sim/faults.json");
        let body = serde_json::to_vec(f).unwrap_or_default();
        fs::write(&p, body).map_err(|e| gen_err(&p, e))
    }

    fn generate(&self, spec: &HostSpec) -> Result<(), HostError> {
        let r = &self.root;
        let w = |rel: &str, body: &str| -> Result<(), HostError> {
            let p = r.join(rel);
            if let Some(d) = p.parent() {
                fs::create_dir_all(d).map_err(|e| gen_err(d, e))?;
            }
            fs::write(&p, body).map_err(|e| gen_err(&p, e))
        };
        for d in [
            "sim",
            "netlink",
            "sys/bus/pci/devices",
            "sys/class/net",
            "sys/kernel/iommu_groups",
            "sys/devices/virtual/net/lo",
        ] {
            let p = r.join(d);
            fs::create_dir_all(&p).map_err(|e| gen_err(&p, e))?;
        }
        w("sim/next_ifindex", "2")?;
        w(
            "sim/host.txt",
            "vfpool simulated host: a generated sysfs tree, not a kernel\n",
        )?;
        w("sys/bus/pci/drivers_probe", "")?;
        w("sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n")?;
        w("sys/devices/virtual/net/lo/ifindex", "1\n")?;
        w("sys/devices/virtual/net/lo/mtu", "65536\n")?;
        w("sys/devices/virtual/net/lo/operstate", "unknown\n")?;
        w("sys/devices/virtual/net/lo/type", "772\n")?;
        link(&r.join("sys/class/net/lo"), "../../devices/virtual/net/lo")?;
        w("proc/cmdline", &format!("{}\n", spec.cmdline))?;
        w("proc/sys/kernel/osrelease", &format!("{}\n", spec.kernel))?;
        w(BOOT_ID, &new_boot_id())?;
        w(
            "proc/cpuinfo",
            &format!(
                "processor\t: 0\nvendor_id\t: {}\ncpu family\t: 6\nmodel name\t: simulated CPU\n\nprocessor\t: 1\nvendor_id\t: {}\n",
                spec.cpu_vendor, spec.cpu_vendor
            ),
        )?;
        if let Some(c) = &spec.grub_cmdline_default {
            w(
                "root/etc/default/grub",
                &format!(
                    "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"{c}\"\nGRUB_CMDLINE_LINUX=\"\"\n"
                ),
            )?;
            w("root/etc/default/grub.d/init-select.cfg", "# (Debian's)\n")?;
            w(
                "root/usr/sbin/update-grub",
                "#!/bin/sh\n# The simulated host's update-grub: vfpool never runs it (only on root /).\nexit 0\n",
            )?;
        }
        let ir = if spec.iommu && spec.intremap {
            "IR-"
        } else {
            ""
        };
        w(
            "proc/interrupts",
            &format!(
                "           CPU0       CPU1\n  0:         41          0  {ir}IO-APIC    2-edge      timer\n  9:          0          0  {ir}IO-APIC    9-fasteoi   acpi\n"
            ),
        )?;
        w(
            &format!("lib/modules/{}/modules.dep", spec.kernel),
            "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/pci/vfio-pci-core.ko kernel/drivers/vfio/vfio.ko\nkernel/drivers/net/ethernet/intel/igbvf/igbvf.ko:\n",
        )?;
        w(
            "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            "N\n",
        )?;
        if spec.iommu {
            for (i, ecap) in [(0, "f0205e"), (1, "f0205e")] {
                let ecap = if spec.intremap {
                    ecap.to_owned()
                } else {
                    "f02056".to_owned()
                };
                w(
                    &format!("sys/devices/virtual/iommu/dmar{i}/intel-iommu/ecap"),
                    &format!("{ecap}\n"),
                )?;
                w(
                    &format!("sys/devices/virtual/iommu/dmar{i}/intel-iommu/version"),
                    "1:0\n",
                )?;
                fs::create_dir_all(r.join("sys/class/iommu")).map_err(|e| gen_err(r, e))?;
                link(
                    &r.join(format!("sys/class/iommu/dmar{i}")),
                    &format!("../../devices/virtual/iommu/dmar{i}"),
                )?;
            }
        } else {
            fs::create_dir_all(r.join("sys/class/iommu")).map_err(|e| gen_err(r, e))?;
        }
        let mut drivers: Vec<&str> = vec!["pcieport"];
        for m in MODELS {
            drivers.push(m.driver);
            if let Some(d) = m.vf_driver() {
                drivers.push(d);
            }
        }
        if spec.vfio_loaded {
            drivers.push("vfio-pci");
        }
        for d in drivers {
            let dir = r.join("sys/bus/pci/drivers").join(d);
            fs::create_dir_all(&dir).map_err(|e| gen_err(&dir, e))?;
            for f in ["bind", "unbind", "new_id", "remove_id"] {
                fs::write(dir.join(f), "").map_err(|e| gen_err(&dir, e))?;
            }
        }
        // (The caller holds the simulator's lock.)
        // One root port per card (a PCI bus), like a real server's slots.
        let mut buses: Vec<u8> = spec.ports.iter().map(|p| p.pci.bus).collect();
        buses.sort();
        buses.dedup();
        for (i, bus) in buses.iter().enumerate() {
            let rp = PciAddr::new(0, 0, (i + 1) as u8, 0);
            let dir = self.sys().join(format!("devices/pci0000:00/{rp}"));
            self.pci_function(
                &dir,
                rp,
                0x8086,
                0x2030,
                0x060400,
                None,
                Some("pcieport"),
                -1,
            )?;
            let _ = bus;
        }
        for port in &spec.ports {
            let rp_index = buses.iter().position(|b| *b == port.pci.bus).unwrap_or(0);
            let rp = PciAddr::new(0, 0, (rp_index + 1) as u8, 0);
            let dir = self
                .sys()
                .join(format!("devices/pci0000:00/{rp}/{}", port.pci));
            let group = spec.iommu.then(|| self.next_group()).transpose()?;
            self.pci_function(
                &dir,
                port.pci,
                port.model.vendor,
                port.model.device,
                0x020000,
                group,
                Some(port.model.driver),
                port.numa_node,
            )?;
            let sw = |n: &str, v: String| -> Result<(), HostError> {
                let p = dir.join(n);
                fs::write(&p, v).map_err(|e| gen_err(&p, e))
            };
            sw(
                "subsystem_vendor",
                format!("0x{:04x}\n", port.model.subsystem_vendor),
            )?;
            sw(
                "subsystem_device",
                format!("0x{:04x}\n", port.model.subsystem_device),
            )?;
            if port.model.total_vfs > 0 {
                sw("sriov_totalvfs", format!("{}\n", port.model.total_vfs))?;
                sw("sriov_numvfs", "0\n".into())?;
                sw(
                    "sriov_offset",
                    format!("{}\n", port.offset.unwrap_or(port.model.offset)),
                )?;
                sw("sriov_stride", format!("{}\n", port.model.stride))?;
                sw("sriov_vf_device", format!("{:x}\n", port.model.vf_device))?;
                sw("sriov_drivers_autoprobe", "1\n".into())?;
                sw("sriov_vf_total_msix", "0\n".into())?;
            }
            if let Some(name) = &port.netdev {
                self.add_netdev(&dir, name, port.mac, port.model.speed, 1500, true)?;
            }
        }
        for b in &spec.bonds {
            self.add_bond(b)?;
        }
        Ok(())
    }

    /// A bond as the bonding driver makes it: `virtual/net/BOND` with `bonding/slaves` and
    /// `lower_IF` links; each member gets `master` and `upper_BOND` links and `bonding_slave/`.
    fn add_bond(&self, b: &BondSpec) -> Result<(), HostError> {
        let sys = self.sys();
        let bd = sys.join("devices/virtual/net").join(&b.name);
        fs::create_dir_all(bd.join("bonding")).map_err(|e| gen_err(&bd, e))?;
        let mut mac = None;
        for m in &b.members {
            let class = sys.join("class/net").join(m);
            // `class/net/IF -> ../../devices/...`: the netdev's directory under sys.
            let t = fs::read_link(&class).map_err(|e| gen_err(&class, e))?;
            let from_sys = t
                .strip_prefix("../..")
                .map_err(|_| gen_err(&class, io_err(EINVAL)))?
                .to_owned();
            let nd = sys.join(&from_sys);
            // From the netdev's directory up to `devices/`.
            let up = "../".repeat(from_sys.components().count() - 1);
            let target = format!("{up}virtual/net/{}", b.name);
            link(&nd.join("master"), &target)?;
            link(&nd.join(format!("upper_{}", b.name)), &target)?;
            let bs = nd.join("bonding_slave");
            fs::create_dir_all(&bs).map_err(|e| gen_err(&bs, e))?;
            let addr = fs::read_to_string(nd.join("address")).map_err(|e| gen_err(&nd, e))?;
            mac.get_or_insert(addr.clone());
            for (f, v) in [
                ("state", "active\n".to_owned()),
                ("mii_status", "up\n".to_owned()),
                ("perm_hwaddr", addr),
            ] {
                fs::write(bs.join(f), v).map_err(|e| gen_err(&bs, e))?;
            }
            link(
                &bd.join(format!("lower_{m}")),
                &format!("../../../../{}", from_sys.display()),
            )?;
        }
        let ifindex = self.next_ifindex()?;
        for (f, v) in [
            (
                "address",
                mac.unwrap_or_else(|| "00:00:00:00:00:00\n".into()),
            ),
            ("ifindex", format!("{ifindex}\n")),
            ("mtu", "1500\n".into()),
            ("operstate", "up\n".into()),
            ("flags", "0x1403\n".into()),
            ("type", "1\n".into()),
            ("bonding/slaves", format!("{}\n", b.members.join(" "))),
            ("bonding/mode", "802.3ad 4\n".into()),
        ] {
            let p = bd.join(f);
            fs::write(&p, v).map_err(|e| gen_err(&p, e))?;
        }
        link(
            &sys.join("class/net").join(&b.name),
            &format!("../../devices/virtual/net/{}", b.name),
        )
    }

    fn lock(&self) -> Result<fs::File, HostError> {
        let p = self.root.join("sim.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| gen_err(&p, e))?;
        f.lock().map_err(|e| gen_err(&p, e))?;
        Ok(f)
    }

    fn next_group(&self) -> Result<u32, HostError> {
        let dir = self.sys().join("kernel/iommu_groups");
        let mut n = 0;
        while dir.join(n.to_string()).exists() {
            n += 1;
        }
        let p = dir.join(n.to_string()).join("devices");
        fs::create_dir_all(&p).map_err(|e| gen_err(&p, e))?;
        Ok(n)
    }

    fn next_ifindex(&self) -> Result<u32, HostError> {
        let p = self.root.join("sim/next_ifindex");
        let n: u32 = fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(2);
        fs::write(&p, format!("{}", n + 1)).map_err(|e| gen_err(&p, e))?;
        Ok(n)
    }

    /// Writes one PCI function's directory and its bus, driver and group links.
    #[allow(clippy::too_many_arguments)]
    fn pci_function(
        &self,
        dir: &Path,
        pci: PciAddr,
        vendor: u16,
        device: u16,
        class: u32,
        group: Option<u32>,
        driver: Option<&str>,
        numa: i32,
    ) -> Result<(), HostError> {
        fs::create_dir_all(dir).map_err(|e| gen_err(dir, e))?;
        let (up, rel_from_sys) = self.rel(dir);
        let files = [
            ("vendor", format!("0x{vendor:04x}\n")),
            ("device", format!("0x{device:04x}\n")),
            ("class", format!("0x{class:06x}\n")),
            ("numa_node", format!("{numa}\n")),
            ("driver_override", "(null)\n".to_owned()),
            ("enable", "1\n".to_owned()),
        ];
        for (n, v) in files {
            let p = dir.join(n);
            fs::write(&p, v).map_err(|e| gen_err(&p, e))?;
        }
        link(
            &self.sys().join(format!("bus/pci/devices/{pci}")),
            &format!("../../../{rel_from_sys}"),
        )?;
        if let Some(g) = group {
            link(
                &dir.join("iommu_group"),
                &format!("{up}kernel/iommu_groups/{g}"),
            )?;
            link(
                &self
                    .sys()
                    .join(format!("kernel/iommu_groups/{g}/devices/{pci}")),
                &format!("../../../../{rel_from_sys}"),
            )?;
        }
        if let Some(d) = driver {
            self.bind_links(dir, pci, d)?;
        }
        Ok(())
    }

    /// For a directory under `sys`: the `../` that climbs from it back to `sys`, and its
    /// path relative to `sys` (what the kernel's relative links are made of).
    fn rel(&self, dir: &Path) -> (String, String) {
        match dir.strip_prefix(self.sys()) {
            Ok(rel) => (
                "../".repeat(rel.components().count()),
                rel.display().to_string(),
            ),
            Err(_) => (String::new(), dir.display().to_string()),
        }
    }

    fn bind_links(&self, dir: &Path, pci: PciAddr, driver: &str) -> Result<(), HostError> {
        let (up, rel_from_sys) = self.rel(dir);
        link(
            &dir.join("driver"),
            &format!("{up}bus/pci/drivers/{driver}"),
        )?;
        link(
            &self.sys().join(format!("bus/pci/drivers/{driver}/{pci}")),
            &format!("../../../../{rel_from_sys}"),
        )
    }

    fn add_netdev(
        &self,
        dev_dir: &Path,
        name: &str,
        mac: MacAddr,
        speed: u32,
        mtu: u32,
        up: bool,
    ) -> Result<(), HostError> {
        let nd = dev_dir.join("net").join(name);
        fs::create_dir_all(&nd).map_err(|e| gen_err(&nd, e))?;
        let ifindex = self.next_ifindex()?;
        let (oper, carrier, speed) = if up {
            ("up", "1", speed.to_string())
        } else {
            ("down", "0", "-1".to_owned())
        };
        let files = [
            ("address", format!("{mac}\n")),
            ("broadcast", "ff:ff:ff:ff:ff:ff\n".to_owned()),
            ("addr_len", "6\n".to_owned()),
            ("ifindex", format!("{ifindex}\n")),
            ("mtu", format!("{mtu}\n")),
            ("operstate", format!("{oper}\n")),
            ("flags", if up { "0x1003\n" } else { "0x1002\n" }.to_owned()),
            ("carrier", format!("{carrier}\n")),
            ("speed", format!("{speed}\n")),
            ("type", "1\n".to_owned()),
        ];
        for (n, v) in files {
            let p = nd.join(n);
            fs::write(&p, v).map_err(|e| gen_err(&p, e))?;
        }
        // Like the kernel's: `net/IF/device -> ../../../BDF`, the PCI function itself.
        let fn_name = dev_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        link(&nd.join("device"), &format!("../../../{fn_name}"))?;
        let (_, rel_from_sys) = self.rel(&nd);
        link(
            &self.sys().join(format!("class/net/{name}")),
            &format!("../../{rel_from_sys}"),
        )
    }

    fn remove_netdevs(&self, dev_dir: &Path) -> io::Result<()> {
        let net = dev_dir.join("net");
        if let Ok(rd) = fs::read_dir(&net) {
            for e in rd.flatten() {
                let _ = fs::remove_file(self.sys().join("class/net").join(e.file_name()));
            }
        }
        match fs::remove_dir_all(&net) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn read_num(p: &Path) -> io::Result<i64> {
        let s = fs::read_to_string(p)?;
        vfpool_host::sysfs::parse_num(&s).ok_or_else(|| io_err(EINVAL))
    }

    fn pf_netdev(pf_dir: &Path) -> Option<String> {
        fs::read_dir(pf_dir.join("net"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .min()
    }

    fn write_numvfs(&self, pf_dir: &Path, value: &str) -> io::Result<()> {
        let n: u32 = value.trim().parse().map_err(|_| io_err(EINVAL))?;
        let pci: PciAddr = file_name(pf_dir)?.parse().map_err(|_| io_err(ENODEV))?;
        let total = Self::read_num(&pf_dir.join("sriov_totalvfs"))? as u32;
        let cur = Self::read_num(&pf_dir.join("sriov_numvfs"))? as u32;
        if let Some(errno) = self.faults().numvfs.get(&pci.to_string()) {
            return Err(io_err(match errno.as_str() {
                "ENOMEM" => ENOMEM,
                "EBUSY" => EBUSY,
                _ => EINVAL,
            }));
        }
        if !pf_dir.join("driver").exists() {
            // sriov_numvfs_store: no driver, or one without sriov_configure.
            return Err(io_err(ENOENT));
        }
        if n == cur {
            return Ok(());
        }
        if n > total {
            // sriov_numvfs_store (drivers/pci/iov.c): ERANGE, as the real igb guest answers.
            return Err(io_err(ERANGE));
        }
        if n != 0 && cur != 0 {
            return Err(io_err(EBUSY));
        }
        if let Some(pf) = Self::pf_netdev(pf_dir) {
            crate::net::vfs_destroyed(&self.root, &pf);
        }
        if n == 0 {
            for i in (0..cur).rev() {
                self.remove_vf(pf_dir, i)?;
            }
        } else {
            for i in 0..n {
                self.create_vf(pf_dir, pci, i).map_err(|e| match e {
                    HostError::Write { source, .. } => source,
                    other => io::Error::other(other.to_string()),
                })?;
            }
        }
        replace_attr(&pf_dir.join("sriov_numvfs"), &format!("{n}\n"))
    }

    fn create_vf(&self, pf_dir: &Path, pf: PciAddr, i: u32) -> Result<(), HostError> {
        let rd = |n: &str| Self::read_num(&pf_dir.join(n)).map_err(|e| gen_err(&pf_dir.join(n), e));
        let offset = rd("sriov_offset")? as u32;
        let stride = rd("sriov_stride")? as u32;
        let vendor = rd("vendor")? as u16;
        let vf_device = fs::read_to_string(pf_dir.join("sriov_vf_device"))
            .ok()
            .and_then(|s| u16::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        let numa = rd("numa_node")? as i32;
        let autoprobe = rd("sriov_drivers_autoprobe")? != 0;
        let vf = pf
            .offset_by(offset + i * stride)
            .ok_or_else(|| gen_err(pf_dir, io_err(ENOMEM)))?;
        let parent = pf_dir.parent().unwrap_or(pf_dir);
        let dir = parent.join(vf.to_string());
        let has_iommu = pf_dir.join("iommu_group").exists();
        let group = has_iommu.then(|| self.next_group()).transpose()?;
        self.pci_function(&dir, vf, vendor, vf_device, 0x020000, group, None, numa)?;
        link(&dir.join("physfn"), &format!("../{pf}"))?;
        link(&pf_dir.join(format!("virtfn{i}")), &format!("../{vf}"))?;
        if autoprobe && let Some(drv) = vf_driver_for(vendor, vf_device) {
            self.bind(&dir, vf, drv).map_err(|e| gen_err(&dir, e))?;
        }
        Ok(())
    }

    fn bind(&self, dir: &Path, pci: PciAddr, driver: &str) -> io::Result<()> {
        if dir.join("driver").exists() {
            return Err(io_err(EBUSY));
        }
        self.bind_links(dir, pci, driver).map_err(to_io)?;
        if !vfpool_model::gives_netdev(driver) {
            if driver == "vfio-pci" && !dir.join("iommu_group").exists() {
                // vfio-pci: probe fails with -EINVAL without an IOMMU (no VFIO_NOIOMMU).
                let _ = self.unbind(dir, pci);
                return Ok(());
            }
            return Ok(());
        }
        let physfn = fs::read_link(dir.join("physfn")).ok();
        let Some(physfn) = physfn else { return Ok(()) };
        let pf_dir = dir
            .parent()
            .unwrap_or(dir)
            .join(physfn.file_name().unwrap_or_default());
        if self.faults().no_netdev.contains(&file_name(&pf_dir)?) {
            return Ok(());
        }
        let pf_name = Self::pf_netdev(&pf_dir);
        let index = fs::read_dir(&pf_dir)?
            .flatten()
            .find(|e| {
                e.file_name().to_string_lossy().starts_with("virtfn")
                    && fs::read_link(e.path())
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_owned()))
                        == Some(pci.to_string().into())
            })
            .and_then(|e| {
                e.file_name()
                    .to_string_lossy()
                    .trim_start_matches("virtfn")
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(0);
        let name = match &pf_name {
            Some(pf) => format!("{pf}v{index}"),
            None => format!("vf{}", pci.to_string().replace([':', '.'], "")),
        };
        let vendor = Self::read_num(&pf_dir.join("vendor"))? as u16;
        let random = MODELS
            .iter()
            .any(|m| m.vendor == vendor && m.vf_driver() == Some(driver) && m.vf_random_mac);
        let admin = pf_name
            .as_deref()
            .and_then(|pf| crate::net::admin_mac(&self.root, pf, index as u16));
        let mac = match admin {
            Some(m) => m,
            // igbvf and ixgbevf pick a random MAC when the PF set none, and tell the PF.
            None if random => {
                let h = self.next_ifindex().map_err(to_io)?;
                let m = MacAddr([0x0a, 0x5f, 0x1e, (h >> 16) as u8, (h >> 8) as u8, h as u8]);
                if let Some(pf) = &pf_name {
                    crate::net::vf_chose_mac(&self.root, pf, index as u16, m)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                }
                m
            }
            None => MacAddr::ZERO,
        };
        if let Some(pf) = &pf_name {
            crate::net::vf_driver_started(&self.root, pf, index as u16, mac)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let speed = Self::read_num(
            &pf_dir
                .join("net")
                .join(pf_name.unwrap_or_default())
                .join("speed"),
        )
        .unwrap_or(-1);
        // Administratively down, as igbvf, ixgbevf and mlx5 register a VF netdev (the real
        // igb guest's manifest: operstate down, flags 0x1002) until someone brings it up.
        self.add_netdev(
            dir,
            &name,
            mac,
            u32::try_from(speed).unwrap_or(0),
            1500,
            false,
        )
        .map_err(to_io)
    }

    fn unbind(&self, dir: &Path, pci: PciAddr) -> io::Result<()> {
        let Some(driver) = fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            return Err(io_err(ENODEV));
        };
        self.remove_netdevs(dir)?;
        let _ = fs::remove_file(self.sys().join(format!("bus/pci/drivers/{driver}/{pci}")));
        fs::remove_file(dir.join("driver"))
    }

    fn remove_vf(&self, pf_dir: &Path, i: u32) -> io::Result<()> {
        let link_path = pf_dir.join(format!("virtfn{i}"));
        let target = fs::read_link(&link_path)?;
        let pci: PciAddr = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .parse()
            .map_err(|_| io_err(EINVAL))?;
        let dir = pf_dir.parent().unwrap_or(pf_dir).join(pci.to_string());
        if dir.join("driver").exists() {
            self.unbind(&dir, pci)?;
        }
        if let Ok(g) = fs::read_link(dir.join("iommu_group"))
            && let Some(g) = g.file_name()
        {
            let _ = fs::remove_dir_all(self.sys().join("kernel/iommu_groups").join(g));
        }
        let _ = fs::remove_file(self.sys().join(format!("bus/pci/devices/{pci}")));
        self.retire_dir(&dir, pci)?;
        fs::remove_file(&link_path)
    }

    /// Removes a device directory as the kernel does, as far as a reader of sysfs can tell,
    /// but keeps the directory itself, emptied, under `SIMROOT/sim/retired`: sysfs never
    /// gives a new device the inode number of one it removed, while the filesystem under
    /// the simulator (ext4 in /tmp) would at once, and vfpool tells a VF made again at the
    /// same address from the one it leased by that number (`Sysfs::instance`). One empty
    /// directory per VF ever destroyed stays behind.
    fn retire_dir(&self, dir: &Path, pci: PciAddr) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        let retired = self.root.join("sim/retired");
        fs::create_dir_all(&retired)?;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!(
            "{pci}-{now}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        fs::rename(dir, retired.join(name))
    }

    fn device_dir(&self, bdf: &str) -> io::Result<(PathBuf, PciAddr)> {
        let pci: PciAddr = bdf.trim().parse().map_err(|_| io_err(ENODEV))?;
        let dir = fs::canonicalize(self.sys().join(format!("bus/pci/devices/{pci}")))
            .map_err(|_| io_err(ENODEV))?;
        Ok((dir, pci))
    }
}

fn to_io(e: HostError) -> io::Error {
    match e {
        HostError::Write { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

fn file_name(p: &Path) -> io::Result<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io_err(EINVAL))
}

fn link(at: &Path, target: &str) -> Result<(), HostError> {
    if let Some(d) = at.parent() {
        fs::create_dir_all(d).map_err(|e| gen_err(d, e))?;
    }
    match symlink(target, at) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(gen_err(at, io_err(EEXIST))),
        other => other.map_err(|e| gen_err(at, e)),
    }
}

/// Writes an attribute's new value as the kernel does: a reader sees the old value or the
/// new one, never an empty or half-written file (a plain `fs::write` truncates first, and
/// readers do not take the simulator's lock). Written beside it, then renamed over it.
fn replace_attr(path: &Path, value: &str) -> io::Result<()> {
    let name = file_name(path)?;
    let dir = fs::canonicalize(path.parent().ok_or_else(|| io_err(EINVAL))?)?;
    let tmp = dir.join(format!(".{name}.sim-new"));
    fs::write(&tmp, value)?;
    fs::rename(&tmp, dir.join(name))
}

impl AttrWriter for SimHost {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let _lock = self.lock().map_err(to_io)?;
        let name = file_name(path)?;
        let parent = path.parent().ok_or_else(|| io_err(EINVAL))?;
        let parent = fs::canonicalize(parent).map_err(|_| io_err(ENOENT))?;
        match name.as_str() {
            "sriov_numvfs" => self.write_numvfs(&parent, value),
            "sriov_drivers_autoprobe" => match value.trim() {
                "0" | "1" => replace_attr(path, &format!("{}\n", value.trim())),
                _ => Err(io_err(EINVAL)),
            },
            "driver_override" => {
                let v = value.trim();
                replace_attr(
                    path,
                    &if v.is_empty() {
                        "(null)\n".to_owned()
                    } else {
                        format!("{v}\n")
                    },
                )
            }
            "drivers_probe" => {
                let (dir, pci) = self.device_dir(value)?;
                if dir.join("driver").exists() {
                    return Ok(());
                }
                let over = fs::read_to_string(dir.join("driver_override")).unwrap_or_default();
                let over = over.trim();
                let driver = if over != "(null)" && !over.is_empty() {
                    Some(over.to_owned())
                } else if dir.join("physfn").exists() {
                    let pf_dir = fs::canonicalize(dir.join("physfn"))?;
                    let autoprobe = Self::read_num(&pf_dir.join("sriov_drivers_autoprobe"))? != 0;
                    let vendor = Self::read_num(&dir.join("vendor"))? as u16;
                    let device = Self::read_num(&dir.join("device"))? as u16;
                    if autoprobe {
                        vf_driver_for(vendor, device).map(str::to_owned)
                    } else {
                        None
                    }
                } else {
                    None
                };
                match driver {
                    Some(d) if self.sys().join("bus/pci/drivers").join(&d).is_dir() => {
                        self.bind(&dir, pci, &d)
                    }
                    _ => Ok(()),
                }
            }
            "unbind" => {
                let (dir, pci) = self.device_dir(value)?;
                let bound = fs::read_link(dir.join("driver"))
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_owned()));
                if bound.as_deref() != parent.file_name() {
                    return Err(io_err(ENODEV));
                }
                self.unbind(&dir, pci)
            }
            "bind" => {
                let (dir, pci) = self.device_dir(value)?;
                let driver = file_name(&parent)?;
                let over = fs::read_to_string(dir.join("driver_override")).unwrap_or_default();
                let over = over.trim();
                let over = (over != "(null)" && !over.is_empty()).then_some(over);
                // pci_match_device: a driver_override names the one driver that may bind;
                // pci_device_can_probe: a VF with autoprobe off binds only by override.
                if over.is_some_and(|o| o != driver) {
                    return Err(io_err(ENODEV));
                }
                if over.is_none() && dir.join("physfn").exists() {
                    let pf_dir = fs::canonicalize(dir.join("physfn"))?;
                    if Self::read_num(&pf_dir.join("sriov_drivers_autoprobe"))? == 0 {
                        return Err(io_err(ENODEV));
                    }
                }
                self.bind(&dir, pci, &driver)
            }
            _ => {
                if !path.exists() {
                    return Err(io_err(ENOENT));
                }
                replace_attr(path, value)
            }
        }
    }
}
