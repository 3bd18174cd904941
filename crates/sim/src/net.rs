//! The simulated backend: the demo host and unit tests.
//!
//! The simulated host is a directory `SIMROOT` whose `sys/` is laid out like sysfs (written
//! by the sysfs simulator, [`crate::host`]): `sys/class/net/IF` links to
//! `sys/devices/.../PCI/net/IF`; the PCI device directory has `sriov_numvfs`,
//! `sriov_totalvfs`, a `driver` link named after the driver, `virtfnN`; each netdev directory
//! has `address`, `mtu`, `operstate`, `carrier`, `ifindex` (and maybe `flags`).
//!
//! VF configs live in `SIMROOT/netlink/PF.json`, replaced atomically (temp file + rename)
//! under an exclusive `flock` on `SIMROOT/netlink/.lock`, so several processes can share a
//! simulated host. The sysfs simulator deletes `PF.json` ([`vfs_destroyed`]) whenever it
//! changes `sriov_numvfs`: a missing file (or a VF missing from it) means kernel defaults.
//!
//! Drivers refuse what the real ones refuse, as their `ndo_set_vf_*` functions in Linux 6.1 do
//! (each refusal in [`refusal`] names the kernel function it copies); the real-kernel tier
//! diffs the igb (82576) half against QEMU's igb (`tests/vm/fidelity/igb-82576.txt`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::libc;
use serde::{Deserialize, Serialize};
use vfpool_model::{MacAddr, VfConfig, VlanProto};

use vfpool_host::kfile;
use vfpool_netlink::{IfAddr, LinkInfo, NetOps, NetlinkError, NetnsId, OperState, Route, VfKnob};

/// The MTU range (min, max) a driver gives its netdevs, as the real drivers do (real sysfs
/// has no file for it). `None` is a virtual device (veth, lo: 68..=65535); unknown drivers
/// get 68..=9000.
pub fn mtu_range_for_driver(driver: Option<&str>) -> (u32, u32) {
    let max = match driver {
        None => 65535,
        Some("igb" | "igbvf") => 9216,
        Some("ixgbe" | "ixgbevf") => 9710,
        Some("mlx5_core") => 9978,
        Some("i40e" | "iavf") => 9706,
        Some("ice") => 9702,
        Some(_) => 9000,
    };
    (68, max)
}

/// The speed (Mb/s) a PF of `driver` links at in the simulated host (the simulated NIC
/// models' speeds: 82576 and I350 1 Gb/s, 82599 10 Gb/s, ConnectX-5 25 Gb/s).
fn nominal_speed(driver: Option<&str>) -> Option<u32> {
    match driver? {
        "igb" | "tg3" => Some(1000),
        "ixgbe" => Some(10_000),
        "mlx5_core" => Some(25_000),
        _ => None,
    }
}

/// PCI device ids of the 82576, the only igb MAC that limits VF rates (`e1000_82576` in
/// igb's `e1000_82575.c` device table).
const IGB_82576_IDS: [u16; 8] = [
    0x10c9, 0x10e6, 0x10e7, 0x10e8, 0x1526, 0x150a, 0x1518, 0x150d,
];

/// What the PF under a knob looks like to its driver.
struct PfView {
    driver: Option<String>,
    /// The PCI device id (`device`), when known.
    device: Option<u16>,
    link_up: bool,
    /// Link speed in Mb/s (`speed`); 0 when unknown or down.
    speed: u32,
}

/// The errno PF driver `pf.driver` answers for `knob` on a VF that exists, as the driver's
/// own `ndo_set_vf_*` (Linux 6.1) does, or `None` when it takes it. Drivers not listed take
/// everything.
fn refusal(pf: &PfView, knob: &VfKnob) -> Option<i32> {
    let driver = pf.driver.as_deref().unwrap_or_default();
    match (driver, *knob) {
        // igb_ndo_set_vf_mac, ixgbe_ndo_set_vf_mac, mlx5e_set_vf_mac
        // (mlx5_eswitch_set_vport_mac: is_valid_ether_addr or zero), i40e_ndo_set_vf_mac:
        // a multicast (or broadcast) MAC is EINVAL.
        (_, VfKnob::Mac(mac)) if mac.is_multicast() => Some(libc::EINVAL),
        // igb_ndo_set_vf_vlan, ixgbe_ndo_set_vf_vlan, i40e_ndo_set_vf_port_vlan,
        // mlx5e_set_vf_vlan: VLAN > 4095 or QoS > 7 is EINVAL...
        (_, VfKnob::Vlan { vlan, qos, .. }) if vlan > 4095 || qos > 7 => Some(libc::EINVAL),
        // ... and all four answer EPROTONOSUPPORT to anything but 802.1Q (mlx5's 802.1ad
        // support was proposed in 2022 and not merged).
        ("igb" | "ixgbe" | "i40e" | "mlx5_core", VfKnob::Vlan { proto, .. })
            if proto != VlanProto::Dot1Q =>
        {
            Some(libc::EPROTONOSUPPORT)
        }
        // igb has no ndo_set_vf_link_state: do_setvfinfo (net/core/rtnetlink.c) answers
        // EOPNOTSUPP, whatever the state.
        ("igb", VfKnob::LinkState(_)) => Some(libc::EOPNOTSUPP),
        // igb_ndo_set_vf_bw, in its order: EOPNOTSUPP on any MAC but the 82576 (I350,
        // I210, 82580...); EINVAL for a min rate; EINVAL above the link speed, which
        // igb_down sets to 0 (so while down only 0 is taken, as QEMU's igb shows: the PHY
        // link bit it also checks stays set there).
        ("igb", VfKnob::Rate { .. }) if !pf.device.is_some_and(|d| IGB_82576_IDS.contains(&d)) => {
            Some(libc::EOPNOTSUPP)
        }
        ("igb", VfKnob::Rate { min, max }) if min != 0 || max > pf.speed => Some(libc::EINVAL),
        // ixgbe_ndo_set_vf_bw: EINVAL while the link is down, unless linked at 10 Gb/s, for
        // a min rate, and for a max rate of 1..=10 or above the link speed.
        ("ixgbe", VfKnob::Rate { min, max })
            if !pf.link_up
                || pf.speed != 10_000
                || min != 0
                || (max != 0 && (max <= 10 || max > pf.speed)) =>
        {
            Some(libc::EINVAL)
        }
        // i40e_ndo_set_vf_bw: EINVAL for a min rate and above the link speed.
        ("i40e", VfKnob::Rate { min, max }) if min != 0 || max > pf.speed => Some(libc::EINVAL),
        // mlx5e_set_vf_rate -> mlx5_eswitch_set_vport_rate: min and max are set as given
        // (no link check, no min <= max check); link state, trust and spoofchk likewise.
        _ => None,
    }
}

/// A VF as a freshly created one reports itself (`sriov_numvfs` just written).
pub(crate) fn kernel_default_vf() -> VfConfig {
    VfConfig::kernel_default()
}

/// The content of `SIMROOT/netlink/PF.json`: only VFs that were changed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PfState {
    #[serde(with = "compact_vfs")]
    vfs: BTreeMap<u16, VfConfig>,
    /// VFs whose MAC the PF set (`ip link set PF vf N mac M`, M not zero): like igb's
    /// IGB_VF_FLAG_PF_SET_MAC, an untrusted VF may then not change its own MAC, and its
    /// driver comes up with this MAC when it is (re)loaded. Setting 00:00:00:00:00:00
    /// clears it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    admin_mac: std::collections::BTreeSet<u16>,
    /// The MAC each VF's driver came up with (igbvf's `perm_addr`, read from the PF at its
    /// last reset). While the PF pins a MAC, the VF's own change is refused by the PF, and
    /// igbvf then answers success only if the MAC asked for is this one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    started_with: BTreeMap<u16, MacAddr>,
}

/// The VFs of a state file, each with only what differs from [`kernel_default_vf`]
/// (`{"mac": "..", "vlan": 10}`): every set rewrites the file and every read parses it,
/// and a PF has up to 127 VFs.
mod compact_vfs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use vfpool_model::{LinkState, MacAddr, VfConfig, VlanProto};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored {
        #[serde(default, skip_serializing_if = "MacAddr::is_zero")]
        mac: MacAddr,
        #[serde(default, skip_serializing_if = "is_zero")]
        vlan: u16,
        #[serde(default, skip_serializing_if = "is_zero")]
        qos: u8,
        #[serde(default, skip_serializing_if = "is_dot1q")]
        vlan_proto: VlanProto,
        #[serde(default = "on", skip_serializing_if = "is_on")]
        spoofchk: Option<bool>,
        #[serde(default = "off", skip_serializing_if = "is_off")]
        trust: Option<bool>,
        #[serde(default = "auto", skip_serializing_if = "is_auto")]
        link_state: Option<LinkState>,
        #[serde(default, skip_serializing_if = "is_zero")]
        min_tx_rate: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        max_tx_rate: u32,
    }

    fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
        *v == T::default()
    }
    fn is_dot1q(p: &VlanProto) -> bool {
        *p == VlanProto::Dot1Q
    }
    fn on() -> Option<bool> {
        Some(true)
    }
    fn is_on(v: &Option<bool>) -> bool {
        *v == on()
    }
    fn off() -> Option<bool> {
        Some(false)
    }
    fn is_off(v: &Option<bool>) -> bool {
        *v == off()
    }
    fn auto() -> Option<LinkState> {
        Some(LinkState::Auto)
    }
    fn is_auto(v: &Option<LinkState>) -> bool {
        *v == auto()
    }

    pub fn serialize<S: Serializer>(
        vfs: &BTreeMap<u16, VfConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let stored: BTreeMap<u16, Stored> = vfs
            .iter()
            .map(|(i, c)| {
                let c = c.clone();
                (
                    *i,
                    Stored {
                        mac: c.mac,
                        vlan: c.vlan,
                        qos: c.qos,
                        vlan_proto: c.vlan_proto,
                        spoofchk: c.spoofchk,
                        trust: c.trust,
                        link_state: c.link_state,
                        min_tx_rate: c.min_tx_rate,
                        max_tx_rate: c.max_tx_rate,
                    },
                )
            })
            .collect();
        stored.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u16, VfConfig>, D::Error> {
        let stored = BTreeMap::<u16, Stored>::deserialize(d)?;
        Ok(stored
            .into_iter()
            .map(|(i, s)| {
                (
                    i,
                    VfConfig {
                        mac: s.mac,
                        vlan: s.vlan,
                        qos: s.qos,
                        vlan_proto: s.vlan_proto,
                        spoofchk: s.spoofchk,
                        trust: s.trust,
                        link_state: s.link_state,
                        min_tx_rate: s.min_tx_rate,
                        max_tx_rate: s.max_tx_rate,
                    },
                )
            })
            .collect())
    }
}

/// The MAC the PF set on VF `index` of `pf`, if it set one: what the VF driver of the
/// simulated host comes up with.
pub fn admin_mac(simroot: &Path, pf: &str, index: u16) -> Option<MacAddr> {
    let ops = SimNetOps::new(simroot);
    let _lock = ops.lock(false).ok()?;
    let state = ops.load(pf).ok()?;
    if !state.admin_mac.contains(&index) {
        return None;
    }
    state.vfs.get(&index).map(|c| c.mac)
}

/// A VF driver of the simulated host chose `mac` for VF `index` of `pf` (igbvf and ixgbevf
/// pick a random one when the PF set none) and told the PF, which now reports it.
pub fn vf_chose_mac(
    simroot: &Path,
    pf: &str,
    index: u16,
    mac: MacAddr,
) -> Result<(), NetlinkError> {
    let ops = SimNetOps::new(simroot);
    let _lock = ops.lock(true)?;
    let mut state = ops.load(pf)?;
    if state.admin_mac.contains(&index) {
        return Ok(());
    }
    state.vfs.entry(index).or_insert_with(kernel_default_vf).mac = mac;
    ops.store(pf, &state)
}

/// The driver of VF `index` of `pf` started (probe, reload) with `mac` on its netdev.
pub(crate) fn vf_driver_started(
    simroot: &Path,
    pf: &str,
    index: u16,
    mac: MacAddr,
) -> Result<(), NetlinkError> {
    let ops = SimNetOps::new(simroot);
    let _lock = ops.lock(true)?;
    let mut state = ops.load(pf)?;
    state.started_with.insert(index, mac);
    ops.store(pf, &state)
}

/// The VFs of `pf` were destroyed (`sriov_numvfs` written): their configurations go with
/// them, and the next VFs report the kernel's defaults (a missing state file says so).
pub(crate) fn vfs_destroyed(simroot: &Path, pf: &str) {
    let _ = fs::remove_file(SimNetOps::new(simroot).state_path(pf));
}

/// [`NetOps`] over a simulated host directory.
#[derive(Debug, Clone)]
pub struct SimNetOps {
    root: PathBuf,
    /// The last bytes read or written of each PF's state file with what they parse to:
    /// parsed again only when the file's bytes differ (another process changed it).
    parsed: Arc<Mutex<HashMap<PathBuf, Parsed>>>,
    /// The network namespace this backend works in: `None` for the simulated host's own,
    /// else its key (see `netns`).
    ns: Option<String>,
}

/// A state file's bytes and what they parse to.
type Parsed = (Vec<u8>, PfState);

/// A netdev of the simulated host.
struct SimDev {
    dir: PathBuf,
    /// The PCI function directory, when the netdev sits under one.
    pci: Option<PathBuf>,
    driver: Option<String>,
}

impl SimNetOps {
    /// A backend over the simulated host at `simroot` (nothing is read until used).
    pub fn new(simroot: impl Into<PathBuf>) -> Self {
        SimNetOps {
            root: simroot.into(),
            parsed: Default::default(),
            ns: None,
        }
    }

    /// [`NetOps::enter_netns`] with the concrete type (for [`SimNetOps::sysctl`]).
    pub fn in_netns(&self, netns: BorrowedFd<'_>) -> Result<SimNetOps, NetlinkError> {
        let ns = Self::ns_key(netns)?;
        if let Some(k) = &ns {
            let _lock = self.lock(true)?;
            self.record_ns(k, netns)?;
        }
        Ok(SimNetOps {
            root: self.root.clone(),
            parsed: self.parsed.clone(),
            ns,
        })
    }

    /// IFF_UP of the netdev at `dir`.
    fn link_is_up(&self, dir: &Path) -> bool {
        Self::flags(dir) & crate::netns::IFF_UP != 0
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn ns(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    /// Where the VF configs of `pf` are kept.
    pub fn state_path(&self, pf: &str) -> PathBuf {
        self.root.join("netlink").join(format!("{pf}.json"))
    }

    fn dev(&self, name: &str) -> Result<SimDev, NetlinkError> {
        if self.ns.is_none() {
            self.reap_gone_netns()?;
        }
        let dir = self.resolve(self.ns(), name)?;
        // A netdev of a PCI function sits at FUNCTION/net/NAME; others may have a `device`.
        let pci = match dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "net"))
            .and_then(Path::parent)
            // devices/virtual/net/NAME: a virtual netdev, under no device.
            .filter(|p| p.file_name().is_some_and(|n| n != "virtual"))
        {
            Some(p) => Some(p.to_path_buf()),
            None => kfile::real_path(&dir.join("device")).ok(),
        };
        let driver = pci.as_ref().and_then(|p| {
            fs::read_link(p.join("driver"))
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        });
        Ok(SimDev { dir, pci, driver })
    }

    /// The PF netdev and VF index of a VF's netdev.
    fn vf_of(&self, dev: &SimDev) -> Option<(String, u16)> {
        let pci = dev.pci.as_ref()?;
        let pf_dir = kfile::real_path(&pci.join("physfn")).ok()?;
        let pf = fs::read_dir(pf_dir.join("net"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .min()?;
        let me = pci.file_name()?.to_owned();
        let index = fs::read_dir(&pf_dir).ok()?.flatten().find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let i = n.strip_prefix("virtfn")?.parse::<u16>().ok()?;
            (fs::read_link(e.path()).ok()?.file_name()? == me).then_some(i)
        })?;
        Some((pf, index))
    }

    pub(crate) fn lock(&self, exclusive: bool) -> Result<File, NetlinkError> {
        let dir = self.root.join("netlink");
        let path = dir.join(".lock");
        let io_err = |source| NetlinkError::SimIo {
            path: path.clone(),
            source,
        };
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let f = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(io_err)?;
                open()
            }
            other => other,
        }
        .map_err(io_err)?;
        if exclusive { f.lock() } else { f.lock_shared() }.map_err(io_err)?;
        Ok(f)
    }

    fn load(&self, pf: &str) -> Result<PfState, NetlinkError> {
        let path = self.state_path(pf);
        let bytes = match kfile::read_bytes(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PfState::default()),
            Err(source) => return Err(NetlinkError::SimIo { path, source }),
        };
        let mut parsed = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((b, state)) = parsed.get(&path)
            && *b == bytes
        {
            return Ok(state.clone());
        }
        let state: PfState =
            serde_json::from_slice(&bytes).map_err(|source| NetlinkError::SimState {
                path: path.clone(),
                source,
            })?;
        parsed.insert(path, (bytes, state.clone()));
        Ok(state)
    }

    fn store(&self, pf: &str, state: &PfState) -> Result<(), NetlinkError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.state_path(pf);
        let tmp = path.with_file_name(format!(
            ".{pf}.json.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let json = serde_json::to_vec(state).map_err(|source| NetlinkError::SimState {
            path: path.clone(),
            source,
        })?;
        fs::write(&tmp, &json)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| {
                let _ = fs::remove_file(&tmp);
                NetlinkError::SimIo {
                    path: path.clone(),
                    source,
                }
            })?;
        self.parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path, (json, state.clone()));
        Ok(())
    }

    fn read_attr(&self, dev: &SimDev, attr: &str) -> Result<String, NetlinkError> {
        let path = dev.dir.join(attr);
        kfile::read_small(&path)
            .map(|s| s.trim().to_string())
            .map_err(|source| NetlinkError::SimIo { path, source })
    }

    fn write_attr(&self, dir: &Path, attr: &str, value: &str) -> Result<(), NetlinkError> {
        let path = dir.join(attr);
        fs::write(&path, format!("{value}\n"))
            .map_err(|source| NetlinkError::SimIo { path, source })
    }

    /// `sriov_numvfs` of the PF's PCI function, or `None` if it has no SR-IOV.
    fn num_vfs(&self, dev: &SimDev) -> Result<Option<u16>, NetlinkError> {
        let Some(pci) = &dev.pci else { return Ok(None) };
        let path = pci.join("sriov_numvfs");
        let s = match kfile::read_small(&path) {
            Ok(s) => s,
            // A function with SR-IOV always has both; without `sriov_totalvfs` it has none.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(pci.join("sriov_totalvfs").exists().then_some(0));
            }
            Err(source) => return Err(NetlinkError::SimIo { path, source }),
        };
        s.trim().parse().map(Some).map_err(|_| NetlinkError::SimIo {
            path,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a number: '{}'", s.trim()),
            ),
        })
    }

    /// The errno the real driver would return for `knob` on VF `vf`, if any.
    fn check_knob(
        &self,
        dev: &SimDev,
        vf: u16,
        knob: &VfKnob,
    ) -> Result<Option<i32>, NetlinkError> {
        let Some(num_vfs) = self.num_vfs(dev)? else {
            // No ndo_set_vf_* at all (veth, lo, a NIC without SR-IOV): do_setvfinfo's
            // EOPNOTSUPP.
            return Ok(Some(libc::EOPNOTSUPP));
        };
        // A missing ndo comes before the VF index (do_setvfinfo checks the ndo first).
        if let VfKnob::LinkState(_) = knob
            && dev.driver.as_deref() == Some("igb")
        {
            return Ok(Some(libc::EOPNOTSUPP));
        }
        let view = PfView {
            driver: dev.driver.clone(),
            device: dev.pci.as_ref().and_then(|p| {
                let s = kfile::read_small(&p.join("device")).ok()?;
                u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
            }),
            link_up: OperState::from_sysfs(&self.read_attr(dev, "operstate").unwrap_or_default())
                == OperState::Up,
            speed: self
                .read_attr(dev, "speed")
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| u32::try_from(s).ok())
                .unwrap_or(0),
        };
        // igb's rate check reads the MAC type before the VF index (igb_ndo_set_vf_bw).
        if matches!(knob, VfKnob::Rate { .. })
            && let Some(e @ libc::EOPNOTSUPP) = refusal(&view, knob)
        {
            return Ok(Some(e));
        }
        // Every driver's ndo_set_vf_*: a VF index >= the VFs it has is EINVAL.
        if vf >= num_vfs {
            return Ok(Some(libc::EINVAL));
        }
        Ok(refusal(&view, knob))
    }
}

impl NetOps for SimNetOps {
    /// A network namespace, as the kernel backend checks it, or a simulated one: a regular
    /// file in the `netns` directory beside the simulated host (`STATE/netns/NAME` on the
    /// demo host), whose identity is the file's. Nothing else is: not `/etc/passwd`, not a
    /// directory, not the host's own namespace.
    fn check_netns(&self, path: &std::path::Path) -> Result<NetnsId, vfpool_model::InvalidValue> {
        let sim_dir = self.root().parent().map(|p| p.join("netns"));
        let simulated = path.is_absolute()
            && sim_dir.is_some_and(|d| path.parent() == Some(d.as_path()))
            && std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if !simulated {
            return vfpool_netlink::check_netns(path);
        }
        vfpool_netlink::netns_identity(path)
            .ok_or_else(|| vfpool_model::InvalidValue::new("netns", path.display(), "no such file"))
    }

    fn vf_configs(&self, pf: &str) -> Result<Vec<(u16, VfConfig)>, NetlinkError> {
        let dev = self.dev(pf)?;
        let Some(n) = self.num_vfs(&dev)? else {
            return Ok(Vec::new());
        };
        let _lock = self.lock(false)?;
        let mut state = self.load(pf)?;
        Ok((0..n)
            .map(|i| (i, state.vfs.remove(&i).unwrap_or_else(kernel_default_vf)))
            .collect())
    }

    fn set_vf_knob(&self, pf: &str, vf: u16, knob: &VfKnob) -> Result<(), NetlinkError> {
        let dev = self.dev(pf)?;
        let fail = |errno: i32| NetlinkError::SetVf {
            pf: pf.to_string(),
            vf,
            setting: knob.setting(),
            value: knob.value(),
            source: io::Error::from_raw_os_error(errno),
        };
        let _lock = self.lock(true)?;
        // Checked under the lock: sriov_numvfs may change meanwhile.
        if let Some(errno) = self.check_knob(&dev, vf, knob)? {
            return Err(fail(errno));
        }
        let mut state = self.load(pf)?;
        knob.apply_to(state.vfs.entry(vf).or_insert_with(kernel_default_vf));
        if let VfKnob::Mac(m) = knob {
            if m.is_zero() {
                state.admin_mac.remove(&vf);
            } else {
                state.admin_mac.insert(vf);
            }
        }
        self.store(pf, &state)?;
        tracing::debug!(pf, vf, knob = %knob, "simulated vf knob set");
        Ok(())
    }

    fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        let dev = self.dev(name)?;
        let num = |attr: &str| -> Result<u32, NetlinkError> {
            let s = self.read_attr(&dev, attr)?;
            s.parse().map_err(|_| NetlinkError::SimIo {
                path: dev.dir.join(attr),
                source: io::Error::new(io::ErrorKind::InvalidData, format!("not a number: '{s}'")),
            })
        };
        let (min, max) = mtu_range_for_driver(dev.driver.as_deref());
        let oper_state = OperState::from_sysfs(&self.read_attr(&dev, "operstate")?);
        let admin_up = match self.read_attr(&dev, "flags") {
            Ok(f) => u32::from_str_radix(f.trim_start_matches("0x"), 16)
                .map(|f| f & 1 == 1)
                .unwrap_or(oper_state != OperState::Down),
            Err(_) => oper_state != OperState::Down,
        };
        let flags = self
            .read_attr(&dev, "flags")
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        Ok(LinkInfo {
            ifindex: num("ifindex")?,
            name: dev
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| name.to_string()),
            mtu: num("mtu")?,
            min_mtu: Some(min),
            max_mtu: Some(max),
            mac: self.read_attr(&dev, "address")?.parse().ok(),
            admin_up,
            oper_state,
            carrier: self
                .read_attr(&dev, "carrier")
                .ok()
                .and_then(|c| c.parse::<u8>().ok())
                .map(|c| c != 0),
            promisc: flags.is_some_and(|f| f & 0x100 != 0),
            alt_names: self.alt_names_of(&dev.dir)?,
            parent_dev: dev
                .pci
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        })
    }

    fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let dev = self.dev(name)?;
        let (min, max) = mtu_range_for_driver(dev.driver.as_deref());
        if !(min..=max).contains(&mtu) {
            return Err(NetlinkError::SetMtu {
                name: name.to_string(),
                mtu,
                min: Some(min),
                max: Some(max),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let _lock = self.lock(true)?;
        self.write_attr(&dev.dir, "mtu", &mtu.to_string())
    }

    fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), NetlinkError> {
        let dev = self.dev(name)?;
        if mac.is_multicast() || mac.is_zero() {
            return Err(NetlinkError::SetMac {
                name: name.to_string(),
                mac,
                source: io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
            });
        }
        let _lock = self.lock(true)?;
        // A VF asks its PF, even for the MAC it has (no check for "unchanged" on the way):
        // refused while the PF set its MAC and does not trust it (igb_set_vf_mac_addr: "VF
        // N attempted to override administratively set MAC address"). igbvf then reads
        // back the MAC it started with (e1000_read_mac_addr_vf) and answers success only
        // if that is the MAC asked for (igbvf_set_mac).
        if let Some((pf, index)) = self.vf_of(&dev) {
            let mut state = self.load(&pf)?;
            let started = state.started_with.get(&index).copied();
            let cfg = state.vfs.entry(index).or_insert_with(kernel_default_vf);
            if state.admin_mac.contains(&index) && cfg.trust != Some(true) && started != Some(mac) {
                return Err(NetlinkError::SetMac {
                    name: name.to_string(),
                    mac,
                    source: io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
                });
            }
            cfg.mac = mac;
            self.store(&pf, &state)?;
        }
        self.write_attr(&dev.dir, "address", &mac.to_string())
    }

    fn set_up(&self, name: &str, up: bool) -> Result<(), NetlinkError> {
        let dev = self.dev(name)?;
        let _lock = self.lock(true)?;
        let was_up = self.link_is_up(&dev.dir);
        self.write_attr(&dev.dir, "operstate", if up { "up" } else { "down" })?;
        self.write_attr(&dev.dir, "carrier", if up { "1" } else { "0" })?;
        // As the kernel: `speed` reads -1 without link, the speed it linked at with it.
        if dev.dir.join("speed").exists() {
            let speed = match (up, nominal_speed(dev.driver.as_deref())) {
                (true, Some(mbps)) => mbps.to_string(),
                _ => "-1".to_owned(),
            };
            self.write_attr(&dev.dir, "speed", &speed)?;
        }
        if let Ok(flags) = self.read_attr(&dev, "flags")
            && let Ok(f) = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
        {
            let f = if up { f | 1 } else { f & !1 };
            self.write_attr(&dev.dir, "flags", &format!("{f:#x}"))?;
        }
        // What the kernel does on NETDEV_UP / NETDEV_DOWN (routes, IPv6 addresses, the
        // veth peer's carrier): see route.rs.
        let mut extra = self.load_extra()?;
        if was_up != up
            && let Some(i) = Self::ifindex_of(&dev.dir)
        {
            Self::link_went(&mut extra, self.ns(), i, up);
            self.store_extra(&extra)?;
        }
        self.veth_carrier(&extra, &dev.dir)
    }

    fn move_to_netns(
        &self,
        name: &str,
        netns: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let to = Self::ns_key(netns)?;
        self.sim_move(self.ns(), name, to.as_deref(), netns, new_name)
    }

    fn move_from_netns(
        &self,
        netns: BorrowedFd<'_>,
        name: &str,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let from = Self::ns_key(netns)?;
        let here = vfpool_netlink::current_netns()?;
        self.sim_move(from.as_deref(), name, self.ns(), here.as_fd(), new_name)
    }

    fn enter_netns(&self, netns: BorrowedFd<'_>) -> Result<Box<dyn NetOps>, NetlinkError> {
        Ok(Box::new(self.in_netns(netns)?))
    }

    fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.sim_link_names()?
            .iter()
            .map(|n| self.link(n))
            .collect()
    }

    fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        self.sim_rename(name, new_name)
    }

    fn add_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        self.sim_alt_name(name, alt, true)
    }

    fn del_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        self.sim_alt_name(name, alt, false)
    }

    fn set_promisc(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        self.sim_set_promisc(name, on)
    }

    fn addresses(&self, name: &str) -> Result<Vec<IfAddr>, NetlinkError> {
        self.sim_addresses(name)
    }

    fn add_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        self.sim_address(name, addr, true)
    }

    fn del_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        self.sim_address(name, addr, false)
    }

    fn routes(&self, dev: &str) -> Result<Vec<Route>, NetlinkError> {
        self.sim_routes(dev)
    }

    fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.sim_route(route, true)
    }

    fn del_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.sim_route(route, false)
    }

    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        self.sim_add_veth(name, peer, peer_netns)
    }

    fn del_link(&self, name: &str) -> Result<(), NetlinkError> {
        self.sim_del_link(name)
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        self.sim_set_sysctl(key, value)
    }

    /// Nothing goes on a wire here; what the kernel refuses is refused: no such netdev, or
    /// one that is down (`packet_snd`: ENETDOWN unless IFF_UP).
    fn announce(&self, name: &str, addrs: &[IfAddr]) -> Result<(), NetlinkError> {
        let link = self.link(name)?;
        if !link.admin_up && addrs.iter().any(|a| a.addr.is_ipv4()) {
            return Err(NetlinkError::Announce {
                name: name.to_owned(),
                addr: String::new(),
                source: std::io::Error::from_raw_os_error(nix::libc::ENETDOWN),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
