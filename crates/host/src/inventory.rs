//! The host's network PCI functions, read from sysfs in one pass.
//!
//! Each device directory is listed once; that listing says which attributes exist
//! (`sriov_totalvfs`, `physfn`, `virtfnN`, `net`, `driver`), so nothing is probed twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use vfpool_model::{MacAddr, NicState, PciAddr, PfRef};

use crate::HostError;
use crate::sysfs::Sysfs;

/// A physical network function: a PF with or without SR-IOV.
#[derive(Debug, Clone, Serialize)]
pub struct Nic {
    /// The first netdev's name, or the PCI address when no driver gave it a netdev.
    pub name: String,
    pub netdevs: Vec<String>,
    pub pci: PciAddr,
    pub vendor_id: String,
    pub device_id: String,
    pub vendor: String,
    pub model: String,
    /// The device id its VFs have (`sriov_vf_device`), for SR-IOV PFs.
    pub vf_device_id: Option<String>,
    pub driver: Option<String>,
    pub state: NicState,
    pub mac: Option<MacAddr>,
    pub operstate: Option<String>,
    /// IFF_UP of the first netdev (`ip link set NAME up`), from its `flags`.
    pub admin_up: Option<bool>,
    /// Mbit/s, when the link reports one.
    pub speed: Option<u32>,
    pub mtu: Option<u32>,
    /// `ether` or `infiniband` (from the netdev's ARPHRD type).
    pub link_type: Option<String>,
    /// The bond this PF's netdev is a member of (`net/NETDEV/master` with `bonding_slave/`).
    pub bond: Option<String>,
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    pub total_vfs: u32,
    pub num_vfs: u32,
    /// VFs that are not leased. The host alone knows no leases, so this equals `num_vfs`
    /// until the ledger is consulted.
    pub free_vfs: u32,
    /// `sriov_drivers_autoprobe`: whether new VFs get their kernel driver at once.
    pub autoprobe: Option<bool>,
    #[serde(skip)]
    pub vfs: Vec<Vf>,
    /// Every VF index the PF has a `virtfnN` link for, ascending, with the address its
    /// `sriov_offset` and `sriov_stride` give it: known without reading any VF.
    #[serde(skip)]
    pub vf_slots: Vec<VfSlotAddr>,
    #[serde(skip)]
    pub dir: PathBuf,
}

/// A virtual function of a PF.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Vf {
    pub index: u16,
    pub pci: PciAddr,
    pub netdev: Option<String>,
    pub driver: Option<String>,
    pub mac: Option<MacAddr>,
    pub iommu_group: Option<u32>,
    pub numa_node: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub nics: Vec<Nic>,
}

/// What a NIC reference resolved to.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    Pf(&'a Nic),
    Vf(&'a Nic, &'a Vf),
}

impl Inventory {
    /// Reads every network-class PCI function under `sys/bus/pci/devices`.
    pub fn scan(fs: &Sysfs) -> Result<Self, HostError> {
        Self::scan_with(fs, &|_| true)
    }

    /// Reads every network PF, and the VFs of those for which `want_vfs` is true (the
    /// others come back with no `vfs`): the engine reads only the PFs of the pool it
    /// allocates from.
    ///
    /// Pass 1 walks the functions in address order. A VF sits at its PF's address plus
    /// `sriov_offset + index * sriov_stride` (the kernel's own arithmetic, so always after
    /// its PF), so once a PF is read its VFs are known and skipped: pass 1 reads the PFs
    /// only. Pass 2 reads the wanted PFs' VFs, in parallel.
    pub fn scan_with(
        fs: &Sysfs,
        want_vfs: &(dyn Fn(&Nic) -> bool + Sync),
    ) -> Result<Self, HostError> {
        let devices = fs.path("bus/pci/devices");
        if !devices.is_dir() {
            return Err(HostError::SysfsUnreadable {
                path: devices,
                reason: "no such directory; is sysfs mounted, or is --sysfs-root right?".into(),
            });
        }
        let mut names: Vec<(PciAddr, String)> = fs
            .list(&devices)?
            .into_iter()
            .filter_map(|n| n.parse().ok().map(|p| (p, n)))
            .collect();
        names.sort();
        // Addresses of the VFs the PFs read so far announce: skipped in this pass.
        let mut predicted: HashSet<PciAddr> = HashSet::new();
        // Each PF with its listing and its VFs (index, predicted address).
        let mut pfs: Vec<Nic> = Vec::new();
        // Functions with a `physfn` that no PF predicted, with their listing.
        let mut stray: HashMap<PciAddr, (PathBuf, Vec<String>)> = HashMap::new();
        for (pci, name) in &names {
            if predicted.contains(pci) {
                continue;
            }
            let dir = devices.join(name);
            match fs.read_num_opt(&dir.join("class"))? {
                Some(class) if (class >> 16) == 0x02 => {}
                _ => continue,
            }
            let entries = fs.list(&dir)?;
            if has(&entries, "physfn") {
                stray.insert(*pci, (dir, entries));
                continue;
            }
            let nic = read_pf_listed(fs, *pci, dir, &entries)?;
            predicted.extend(nic.vf_slots.iter().filter_map(|(_, a)| *a));
            pfs.push(nic);
        }
        let mut nics = par_map(&pfs, 2, |nic| -> Result<Nic, HostError> {
            let mut nic = nic.clone();
            if !want_vfs(&nic) {
                return Ok(nic);
            }
            for (index, addr) in &nic.vf_slots {
                if let Some(vf) = read_vf_at(fs, &nic, *index, *addr, &stray)? {
                    nic.vfs.push(vf);
                }
            }
            Ok(nic)
        })?;
        nics.sort_by_key(|n| n.pci);
        Ok(Self { nics })
    }

    /// Reads one PF again (its facts, health and VF slots; no VF), for a caller that keeps
    /// an inventory between operations. `None` when `pci` is no longer a network PF.
    pub fn read_pf(fs: &Sysfs, pci: PciAddr) -> Result<Option<Nic>, HostError> {
        let dir = fs.path(format!("bus/pci/devices/{pci}"));
        match fs.read_num_opt(&dir.join("class"))? {
            Some(class) if (class >> 16) == 0x02 => {}
            _ => return Ok(None),
        }
        let entries = fs.list(&dir)?;
        if has(&entries, "physfn") {
            return Ok(None);
        }
        read_pf_listed(fs, pci, dir, &entries).map(Some)
    }

    /// `pf` as it is now, reading only what changes while a PF stays the same device: its
    /// VF links, driver, netdev and link state (five reads instead of about twenty). When
    /// the driver, the netdev or the VFs changed, the PF is read whole again. `None` when
    /// `pf.pci` is no longer a network PF.
    pub fn refresh_pf(fs: &Sysfs, pf: &Nic) -> Result<Option<Nic>, HostError> {
        let entries = fs.list(&pf.dir)?;
        if entries.is_empty() || has(&entries, "physfn") {
            return Ok(None);
        }
        let same_vfs = virtfn_indices(&entries)
            .into_iter()
            .eq(pf.vf_slots.iter().map(|(i, _)| *i));
        let driver = read_link(fs, &entries, &pf.dir, "driver")?;
        let netdevs = if same_vfs && driver == pf.driver {
            netdevs(fs, &entries, &pf.dir)?
        } else {
            Vec::new()
        };
        if !same_vfs || driver != pf.driver || netdevs != pf.netdevs || netdevs.is_empty() {
            return Self::read_pf(fs, pf.pci);
        }
        let nd = pf.dir.join("net").join(&netdevs[0]);
        let mut nic = pf.clone();
        nic.operstate = fs.read_opt(&nd.join("operstate"))?;
        nic.admin_up = fs.read_num_opt(&nd.join("flags"))?.map(|f| f & 0x1 == 0x1);
        Ok(Some(nic))
    }

    /// Reads VF `index` of `pf` (one of its [`Nic::vf_slots`]) alone: `None` when the PF
    /// has no such VF now.
    pub fn read_vf(fs: &Sysfs, pf: &Nic, index: u16) -> Result<Option<Vf>, HostError> {
        let addr = pf
            .vf_slots
            .iter()
            .find(|(i, _)| *i == index)
            .and_then(|(_, a)| *a);
        read_vf_at(fs, pf, index, addr, &HashMap::new())
    }

    /// Finds a NIC by netdev name or PCI address, among PFs and their VFs.
    pub fn find(&self, nic: &str) -> Result<Found<'_>, HostError> {
        let r = PfRef::parse(nic).map_err(HostError::Invalid)?;
        for pf in &self.nics {
            if r.names(Some(pf.pci), pf.netdevs.iter().map(String::as_str)) {
                return Ok(Found::Pf(pf));
            }
            for vf in &pf.vfs {
                if r.names(Some(vf.pci), vf.netdev.as_deref()) {
                    return Ok(Found::Vf(pf, vf));
                }
            }
        }
        Err(HostError::UnknownNic {
            nic: nic.to_owned(),
            known: self
                .nics
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Finds a PF that can have VFs: the errors say why another function cannot.
    pub fn find_sriov_pf(&self, nic: &str) -> Result<&Nic, HostError> {
        match self.find(nic)? {
            Found::Vf(pf, vf) => Err(HostError::IsVf {
                nic: nic.to_owned(),
                vf_pci: vf.pci,
                pf: pf.name.clone(),
            }),
            Found::Pf(pf) if pf.total_vfs == 0 => Err(HostError::NotSriov {
                nic: nic.to_owned(),
                pci: pf.pci,
            }),
            Found::Pf(pf) => Ok(pf),
        }
    }
}

/// A VF index and the address its PF's offset and stride give it.
pub type VfSlotAddr = (u16, Option<PciAddr>);

/// A listed PF's facts and VF slots (see [`Nic::vf_slots`]).
fn read_pf_listed(
    fs: &Sysfs,
    pci: PciAddr,
    dir: PathBuf,
    entries: &[String],
) -> Result<Nic, HostError> {
    let geometry = (
        read_u32(fs, entries, &dir, "sriov_offset")?,
        read_u32(fs, entries, &dir, "sriov_stride")?,
    );
    let mut nic = read_pf(fs, pci, dir, entries)?;
    nic.vf_slots = virtfn_indices(entries)
        .into_iter()
        .map(|i| {
            let a = match geometry {
                (Some(o), Some(st)) => pci.offset_by(o + u32::from(i) * st),
                _ => None,
            };
            (i, a)
        })
        .collect();
    Ok(nic)
}

/// Reads VF `index` of `nic`: at the predicted address `addr` if a VF is there, else where
/// the PF's `virtfnN` link points (`stray` holds listings pass 1 already made).
fn read_vf_at(
    fs: &Sysfs,
    nic: &Nic,
    index: u16,
    addr: Option<PciAddr>,
    stray: &HashMap<PciAddr, (PathBuf, Vec<String>)>,
) -> Result<Option<Vf>, HostError> {
    let devices = fs.path("bus/pci/devices");
    let listed = match addr {
        Some(a) => {
            let d = devices.join(a.to_string());
            let e = fs.list(&d)?;
            has(&e, "physfn").then_some((a, d, e))
        }
        None => None,
    };
    let (vf_pci, vf_dir, entries) = match listed {
        Some(l) => l,
        None => {
            let link = nic.dir.join(format!("virtfn{index}"));
            let Some(a) = fs.link_name(&link)?.and_then(|t| t.parse::<PciAddr>().ok()) else {
                return Ok(None);
            };
            match stray.get(&a) {
                Some((d, e)) => (a, d.clone(), e.clone()),
                None => {
                    let d = devices.join(a.to_string());
                    let e = fs.list(&d)?;
                    (a, d, e)
                }
            }
        }
    };
    read_vf(fs, index, vf_pci, nic.numa_node, &vf_dir, &entries).map(Some)
}

/// The VF indices a PF's listing has `virtfnN` links for, ascending.
fn virtfn_indices(entries: &[String]) -> Vec<u16> {
    let mut v: Vec<u16> = entries
        .iter()
        .filter_map(|e| e.strip_prefix("virtfn").and_then(|i| i.parse().ok()))
        .collect();
    v.sort_unstable();
    v
}

/// Maps `f` over `items` on up to four threads (sysfs reads are system calls: a host with
/// a thousand VFs is read faster on several cores), keeping the order.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    min_items: usize,
    f: impl Fn(&T) -> Result<R, HostError> + Sync,
) -> Result<Vec<R>, HostError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4);
    if threads < 2 || items.len() < min_items {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Result<Vec<R>, HostError>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part?),
                Err(_) => {
                    return Err(HostError::SysfsUnreadable {
                        path: PathBuf::from("bus/pci/devices"),
                        reason: "an inventory thread panicked".into(),
                    });
                }
            }
        }
        Ok(out)
    })
}

fn has(entries: &[String], name: &str) -> bool {
    entries.binary_search_by(|e| e.as_str().cmp(name)).is_ok()
}

fn read_u32(
    fs: &Sysfs,
    entries: &[String],
    dir: &Path,
    name: &str,
) -> Result<Option<u32>, HostError> {
    if !has(entries, name) {
        return Ok(None);
    }
    Ok(fs
        .read_num_opt(&dir.join(name))?
        .and_then(|v| u32::try_from(v).ok()))
}

fn read_link_u32(
    fs: &Sysfs,
    entries: &[String],
    dir: &Path,
    name: &str,
) -> Result<Option<u32>, HostError> {
    if !has(entries, name) {
        return Ok(None);
    }
    Ok(fs.link_name(&dir.join(name))?.and_then(|g| g.parse().ok()))
}

fn read_link(
    fs: &Sysfs,
    entries: &[String],
    dir: &Path,
    name: &str,
) -> Result<Option<String>, HostError> {
    if !has(entries, name) {
        return Ok(None);
    }
    fs.link_name(&dir.join(name))
}

fn netdevs(fs: &Sysfs, entries: &[String], dir: &Path) -> Result<Vec<String>, HostError> {
    if !has(entries, "net") {
        return Ok(Vec::new());
    }
    fs.list(&dir.join("net"))
}

fn read_mac(fs: &Sysfs, netdev_dir: &Path) -> Result<Option<MacAddr>, HostError> {
    Ok(fs
        .read_opt(&netdev_dir.join("address"))?
        .and_then(|a| a.parse().ok()))
}

fn hex_id(fs: &Sysfs, entries: &[String], dir: &Path, name: &str) -> Result<u16, HostError> {
    if !has(entries, name) {
        return Ok(0);
    }
    Ok(fs
        .read_num_opt(&dir.join(name))?
        .and_then(|v| u16::try_from(v).ok())
        .unwrap_or(0))
}

fn read_pf(fs: &Sysfs, pci: PciAddr, dir: PathBuf, entries: &[String]) -> Result<Nic, HostError> {
    let vendor_id = hex_id(fs, entries, &dir, "vendor")?;
    let device_id = hex_id(fs, entries, &dir, "device")?;
    let vendor = crate::pciname::vendor(vendor_id)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("vendor {vendor_id:04x}"));
    let model = crate::pciname::device(vendor_id, device_id)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("device {device_id:04x}"));

    let driver = read_link(fs, entries, &dir, "driver")?;
    let numa_node = read_u32(fs, entries, &dir, "numa_node")?;
    let iommu_group = read_link_u32(fs, entries, &dir, "iommu_group")?;
    let total_vfs = read_u32(fs, entries, &dir, "sriov_totalvfs")?.unwrap_or(0);
    let num_vfs = read_u32(fs, entries, &dir, "sriov_numvfs")?.unwrap_or(0);
    let autoprobe = read_u32(fs, entries, &dir, "sriov_drivers_autoprobe")?.map(|v| v != 0);
    let vf_device_id = if has(entries, "sriov_vf_device") {
        fs.read_opt(&dir.join("sriov_vf_device"))?
            .map(|s| format!("{:0>4}", s.trim().trim_start_matches("0x")))
    } else {
        None
    };
    let netdevs = netdevs(fs, entries, &dir)?;
    let (mut mac, mut operstate, mut speed, mut mtu, mut link_type) =
        (None, None, None, None, None);
    let mut admin_up = None;
    let mut bond = None;
    if let Some(first) = netdevs.first() {
        let nd = dir.join("net").join(first);
        if fs.exists(&nd.join("bonding_slave")) {
            bond = fs.link_name(&nd.join("master"))?;
        }
        mac = read_mac(fs, &nd)?;
        operstate = fs.read_opt(&nd.join("operstate"))?;
        admin_up = fs.read_num_opt(&nd.join("flags"))?.map(|f| f & 0x1 == 0x1);
        speed = fs
            .read_num_opt(&nd.join("speed"))
            .ok()
            .flatten()
            .and_then(|v| u32::try_from(v).ok());
        mtu = fs
            .read_num_opt(&nd.join("mtu"))?
            .and_then(|v| u32::try_from(v).ok());
        link_type = fs.read_num_opt(&nd.join("type"))?.map(|t| match t {
            1 => "ether".to_owned(),
            32 => "infiniband".to_owned(),
            other => format!("arphrd-{other}"),
        });
    }
    let state = if total_vfs == 0 {
        NicState::Unvirtualizable
    } else if num_vfs > 0 {
        NicState::Virtualized
    } else {
        NicState::Virtualizable
    };
    Ok(Nic {
        name: netdevs.first().cloned().unwrap_or_else(|| pci.to_string()),
        netdevs,
        pci,
        vendor_id: format!("{vendor_id:04x}"),
        device_id: format!("{device_id:04x}"),
        vendor,
        model,
        vf_device_id,
        driver,
        state,
        mac,
        operstate,
        admin_up,
        speed,
        mtu,
        link_type,
        bond,
        numa_node,
        iommu_group,
        total_vfs,
        num_vfs,
        free_vfs: num_vfs,
        autoprobe,
        vfs: Vec::new(),
        vf_slots: Vec::new(),
        dir,
    })
}

/// A VF's NUMA node is its PF's: it is not read again.
fn read_vf(
    fs: &Sysfs,
    index: u16,
    pci: PciAddr,
    numa_node: Option<u32>,
    dir: &Path,
    entries: &[String],
) -> Result<Vf, HostError> {
    let driver = read_link(fs, entries, dir, "driver")?;
    let iommu_group = read_link_u32(fs, entries, dir, "iommu_group")?;
    let netdev = netdevs(fs, entries, dir)?.into_iter().next();
    let mac = match &netdev {
        Some(n) => read_mac(fs, &dir.join("net").join(n))?,
        None => None,
    };
    Ok(Vf {
        index,
        pci,
        netdev,
        driver,
        mac,
        iommu_group,
        numa_node,
    })
}

/// The members of bond `bond` (`class/net/BOND/bonding/slaves`); empty when it is gone.
pub fn bond_members(fs: &Sysfs, bond: &str) -> Result<Vec<String>, HostError> {
    Ok(fs
        .read_opt(&fs.path(format!("class/net/{bond}/bonding/slaves")))?
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}
