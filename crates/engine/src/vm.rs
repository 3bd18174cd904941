//! The VM layer: L2 networks on a physical NIC (NoVlan, Vlan or VXLAN; the SR-IOV flag),
//! L3 networks on them (IPv4: CIDR, gateway, the range handed out), VMs and their NICs
//! (type VF or vNIC), and a VM's life cycle over leases: `vm_start` leases a VF from the
//! L2 NIC's PF pool (`pf:NIC`) for every VF NIC (the NIC's MAC, the L2's VLAN, vfio-pci)
//! and an address for every NIC, all or nothing; `vm_stop` gives them back.
//!
//! A VM's lease owner is `vm/NAME/nicN` (owner kind `vm`); [`LedgerVms`] answers `lease gc`
//! from the `vms` table: a lease of a running VM is kept, one of a stopped or deleted VM is
//! released. The VM itself (QEMU, libvirt) is not run here: this is the model and the
//! resources, which a renderer or a libvirt hook turns into a domain.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use vfpool_host::Inventory;
use vfpool_model::{InvalidValue, MacAddr, PciAddr, VfSettings};

use crate::acquire::AcquireRequest;
use crate::engine::{Engine, now};
use crate::error::{EngineError, chain};
use crate::lease::{DriverChoice, OwnerKind};
use crate::ledger::{Durability, Tx};
use crate::owner::{OwnerStatus, VmOwners};
use crate::pool::{self, VfState};
use crate::pools::{find_pool, pf_pool_name, with_pf_pool};
use crate::recover::ReleaseTarget;

/// The prefix of every lease owner of the VM layer: `vm/NAME/nicN`.
pub const VM_OWNER_PREFIX: &str = "vm/";

// ---- values ----------------------------------------------------------------------------

/// How an L2 network separates its traffic (JSON: the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum L2Type {
    NoVlan,
    Vlan,
    Vxlan,
}

impl L2Type {
    pub fn as_str(self) -> &'static str {
        match self {
            L2Type::NoVlan => "novlan",
            L2Type::Vlan => "vlan",
            L2Type::Vxlan => "vxlan",
        }
    }
}

impl FromStr for L2Type {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "novlan" => Ok(L2Type::NoVlan),
            "vlan" => Ok(L2Type::Vlan),
            "vxlan" => Ok(L2Type::Vxlan),
            _ => Err(InvalidValue::new("type", s, "novlan, vlan or vxlan")),
        }
    }
}

/// A VM NIC's type (JSON: the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NicType {
    /// A VF passed through (an SR-IOV L3 only).
    Vf,
    /// A virtual NIC (macvtap or bridge on the L2's NIC).
    Vnic,
}

impl NicType {
    pub fn as_str(self) -> &'static str {
        match self {
            NicType::Vf => "vf",
            NicType::Vnic => "vnic",
        }
    }
}

impl FromStr for NicType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vf" => Ok(NicType::Vf),
            "vnic" => Ok(NicType::Vnic),
            _ => Err(InvalidValue::new("type", s, "vf or vnic")),
        }
    }
}

/// Whether a VM runs (JSON: the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Stopped,
    Running,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Running => "running",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "running" {
            VmState::Running
        } else {
            VmState::Stopped
        }
    }
}

/// An IPv4 network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.net)
    }
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.contains(other.net) || other.contains(self.net)
    }
    fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !self.mask())
    }
    /// The first and last addresses a host may have (all of a /31 or /32).
    fn hosts(self) -> (Ipv4Addr, Ipv4Addr) {
        if self.prefix >= 31 {
            (self.net, self.broadcast())
        } else {
            (
                Ipv4Addr::from(u32::from(self.net) + 1),
                Ipv4Addr::from(u32::from(self.broadcast()) - 1),
            )
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| InvalidValue::new("cidr", s, why);
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| bad("an IPv4 network, ADDRESS/PREFIX (192.168.10.0/24)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| bad("an IPv4 network, ADDRESS/PREFIX (192.168.10.0/24)"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("a prefix length 0..=32"))?;
        let c = Ipv4Cidr { net: ip, prefix };
        if u32::from(ip) & c.mask() != u32::from(ip) {
            return Err(bad(&format!(
                "a network address (host bits zero: {}/{prefix})",
                Ipv4Addr::from(u32::from(ip) & c.mask())
            )));
        }
        Ok(c)
    }
}

fn parse_ip(field: &'static str, s: &str) -> Result<Ipv4Addr, InvalidValue> {
    s.parse()
        .map_err(|_| InvalidValue::new(field, s, "an IPv4 address (192.168.10.1)"))
}

/// A name of an L2, an L3 or a VM: 1 to 63 characters, letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            field,
            name,
            "1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

/// One NIC of `vm create` / `vm nic add`: `l3=L3[,sriov][,mac=MAC]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNicSpec {
    pub l3: String,
    /// A VF NIC (else a vNIC); only on an SR-IOV L3.
    pub sriov: bool,
    /// Generated (stable, locally administered) when not given.
    pub mac: Option<MacAddr>,
}

impl FromStr for VmNicSpec {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALLOWED: &str = "l3=L3[,sriov][,mac=MAC]";
        let mut l3 = None;
        let mut sriov = false;
        let mut mac = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("l3", v)) => {
                    validate_name("l3", v)?;
                    l3 = Some(v.to_owned());
                }
                Some(("mac", v)) => mac = Some(MacAddr::parse_unicast(v)?),
                None if part == "sriov" => sriov = true,
                _ => return Err(InvalidValue::new("nic", s, ALLOWED)),
            }
        }
        let l3 = l3.ok_or_else(|| InvalidValue::new("nic", s, ALLOWED))?;
        Ok(VmNicSpec { l3, sriov, mac })
    }
}

/// A VM's memory and vCPUs (`vm create --memory MiB --vcpus N`): what its libvirt domain
/// gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmResources {
    pub memory_mib: u64,
    pub vcpus: u32,
}

impl VmResources {
    /// Memory in MiB: 64 MiB to 4 TiB.
    pub const MEMORY_MIB: std::ops::RangeInclusive<u64> = 64..=4 * 1024 * 1024;
    /// vCPUs: KVM's per-VM limit on x86 (`KVM_MAX_VCPUS`).
    pub const VCPUS: std::ops::RangeInclusive<u32> = 1..=4096;

    /// Checked: memory in [`Self::MEMORY_MIB`], vCPUs in [`Self::VCPUS`].
    pub fn new(memory_mib: u64, vcpus: u32) -> Result<Self, InvalidValue> {
        if !Self::MEMORY_MIB.contains(&memory_mib) {
            return Err(InvalidValue::new(
                "memory",
                memory_mib.to_string(),
                "64..=4194304 (MiB)",
            ));
        }
        if !Self::VCPUS.contains(&vcpus) {
            return Err(InvalidValue::new("vcpus", vcpus.to_string(), "1..=4096"));
        }
        Ok(Self { memory_mib, vcpus })
    }

    /// From the command line's text; `None` takes the default (1024 MiB, one vCPU).
    pub fn parse(memory_mib: Option<&str>, vcpus: Option<&str>) -> Result<Self, InvalidValue> {
        let d = Self::default();
        let memory_mib = match memory_mib {
            None => d.memory_mib,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| InvalidValue::new("memory", s, "64..=4194304 (MiB)"))?,
        };
        let vcpus = match vcpus {
            None => d.vcpus,
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| InvalidValue::new("vcpus", s, "1..=4096"))?,
        };
        Self::new(memory_mib, vcpus)
    }
}

impl Default for VmResources {
    fn default() -> Self {
        Self {
            memory_mib: 1024,
            vcpus: 1,
        }
    }
}

impl VmNicSpec {
    /// A NIC from its parts (the REST API's `{"l3": .., "type": .., "mac": ..}`), checked
    /// as the text form is: `type` is `vf` (a VF NIC) or `vnic` (default).
    pub fn from_parts(
        l3: &str,
        nic_type: Option<&str>,
        mac: Option<&str>,
    ) -> Result<Self, InvalidValue> {
        validate_name("l3", l3)?;
        let sriov = match nic_type {
            Some(t) => t.parse::<NicType>()? == NicType::Vf,
            None => false,
        };
        Ok(VmNicSpec {
            l3: l3.to_owned(),
            sriov,
            mac: mac.map(MacAddr::parse_unicast).transpose()?,
        })
    }
}

/// A VM NIC as named on the command line: `nic0` or `0`.
pub fn parse_nic_ref(s: &str) -> Result<u32, InvalidValue> {
    s.strip_prefix("nic")
        .unwrap_or(s)
        .parse()
        .map_err(|_| InvalidValue::new("nic", s, "a VM NIC, nicN or N (nic0)"))
}

// ---- requests and views ----------------------------------------------------------------

/// `l2 create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Request {
    pub name: String,
    /// A PF's netdev name or PCI address.
    pub nic: String,
    /// Default: `vlan` with a VLAN id, else `novlan`.
    pub l2_type: Option<L2Type>,
    /// The VLAN id (1..=4094) of a `vlan` L2, the VNI (1..=16777215) of a `vxlan` one.
    pub vlan: Option<u32>,
    pub sriov: bool,
}

/// `l3 create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L3Request {
    pub name: String,
    pub l2: String,
    pub cidr: String,
    pub gateway: String,
    /// `FIRST-LAST`; default every host address of the CIDR.
    pub range: Option<String>,
    pub dns: Option<String>,
}

/// An L2 network (`l2 list`, `l2 show`; JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct L2View {
    pub name: String,
    pub nic: String,
    #[serde(rename = "type")]
    pub l2_type: L2Type,
    /// The VLAN id, or the VNI of a VXLAN L2; `null` for novlan.
    pub vlan: Option<u32>,
    pub sriov: bool,
    /// Its L3 networks, by name.
    pub l3: Vec<String>,
}

/// An L3 network (`l3 list`, `l3 show`; JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct L3View {
    pub name: String,
    pub l2: String,
    /// The L2's NIC.
    pub nic: String,
    /// The L2's flag.
    pub sriov: bool,
    pub cidr: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub gateway: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub range_first: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub range_last: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub dns: Option<Ipv4Addr>,
    /// Addresses handed out now.
    pub allocated: usize,
    /// Who holds them (VM NICs `vm/NAME/nicN`, pod attachments
    /// `cni/NETWORK/CONTAINERID/IFNAME`), by address.
    pub addresses: Vec<L3AddressView>,
}

/// One address handed out on an L3 (`l3 show`; JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct L3AddressView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub address: Ipv4Addr,
    pub owner: String,
}

/// An address `lease gc` gave back: a pod's (`cni/...`) whose lease is gone (JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreedAddress {
    pub l3: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub address: Ipv4Addr,
    pub owner: String,
}

/// An address an owner holds on an L3, with what a pod needs to use it (`l3_allocate`,
/// the CNI plugin's `vfpool` IPAM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct L3Allocation {
    pub l3: String,
    pub owner: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub address: Ipv4Addr,
    /// The L3's prefix length.
    pub prefix: u8,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub gateway: Ipv4Addr,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub dns: Option<Ipv4Addr>,
}

/// `l3 check-vf`: the VFs a VF NIC on this L3 can get now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VfCheckView {
    pub l3: String,
    pub l2: String,
    pub nic: String,
    /// The PF pool the VFs come from (`pf:NIC`).
    pub pool: String,
    pub total: usize,
    pub free: usize,
    pub leased: usize,
    pub unhealthy: usize,
    /// The free VFs, by PCI address.
    pub free_vfs: Vec<PciAddr>,
}

/// A VM NIC (`vm show`; JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmNicView {
    pub index: u32,
    /// `nicN`.
    pub name: String,
    #[serde(rename = "type")]
    pub nic_type: NicType,
    pub l3: String,
    pub l2: String,
    /// The L2's physical NIC (a VF NIC's VFs come from it; a vNIC sits on it).
    pub nic: String,
    /// The L2's VLAN id (a `vlan` L2 only): what a VF NIC's VF tags.
    pub vlan: Option<u32>,
    pub mac: MacAddr,
    /// Its L3 address while the VM runs.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Ipv4))]
    pub address: Option<Ipv4Addr>,
    /// The VF leased to it while the VM runs (VF NICs).
    pub vf: Option<PciAddr>,
    /// The lease's owner (`vm/NAME/nicN`) while it holds one.
    pub lease_owner: Option<String>,
    /// Its VF was taken away while the VM ran (`nic restore --force`); cleared by the next
    /// start.
    pub detached: bool,
}

/// A VM (`vm list`, `vm show`; JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmView {
    pub name: String,
    pub uuid: String,
    pub state: VmState,
    /// Memory in MiB.
    pub memory_mib: u64,
    pub vcpus: u32,
    /// The libvirt (URI) vfpool defined the VM's domain at (`vm start --libvirt`), until
    /// `vm stop` undefines it.
    pub libvirt: Option<String>,
    pub nics: Vec<VmNicView>,
}

/// `vm migrate`: what was decided (the migration itself is the platform's job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrateView {
    pub vm: String,
    pub to: String,
    /// Always `true` when returned: nothing blocks the migration here.
    pub allowed: bool,
    pub note: String,
}

// ---- rows ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct L2Row {
    name: String,
    nic: String,
    l2_type: L2Type,
    vlan: Option<u32>,
    sriov: bool,
}

#[derive(Debug, Clone)]
struct L3Row {
    name: String,
    l2: String,
    cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
    first: Ipv4Addr,
    last: Ipv4Addr,
    dns: Option<Ipv4Addr>,
}

#[derive(Debug, Clone)]
struct NicRow {
    index: u32,
    l3: String,
    l2: String,
    nic_type: NicType,
    mac: MacAddr,
    lease_owner: Option<String>,
    detached: bool,
}

#[derive(Debug, Clone)]
struct VmRow {
    name: String,
    uuid: String,
    state: VmState,
    memory_mib: u64,
    vcpus: u32,
    libvirt_uri: Option<String>,
}

fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> EngineError {
    EngineError::db(op)
}

fn corrupt(what: String) -> EngineError {
    EngineError::CorruptVmRow { what }
}

fn l2_from(r: (String, String, String, Option<i64>, bool)) -> Result<L2Row, EngineError> {
    let l2_type =
        r.2.parse()
            .map_err(|_| corrupt(format!("type of l2 {}", r.0)))?;
    Ok(L2Row {
        name: r.0,
        nic: r.1,
        l2_type,
        vlan: r.3.map(|v| v as u32),
        sriov: r.4,
    })
}

type L3Cols = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

fn l3_from(r: L3Cols) -> Result<L3Row, EngineError> {
    let bad = |f: &str| corrupt(format!("{f} of l3 {}", r.0));
    Ok(L3Row {
        cidr: r.2.parse().map_err(|_| bad("cidr"))?,
        gateway: r.3.parse().map_err(|_| bad("gateway"))?,
        first: r.4.parse().map_err(|_| bad("range"))?,
        last: r.5.parse().map_err(|_| bad("range"))?,
        dns: match &r.6 {
            Some(d) => Some(d.parse().map_err(|_| bad("dns"))?),
            None => None,
        },
        name: r.0,
        l2: r.1,
    })
}

/// The row named `name` among `all` (keyed by `key`), or the unknown-name error listing the
/// names there are.
fn named<R>(
    all: Vec<R>,
    what: &'static str,
    name: &str,
    key: impl Fn(&R) -> &str,
) -> Result<R, EngineError> {
    let known = names(all.iter().map(&key));
    all.into_iter()
        .find(|r| key(r) == name)
        .ok_or_else(|| unknown(what, name, known))
}

impl Tx<'_> {
    /// Every row `sql` selects with `params`, each read by `f`; `what` names the read in
    /// errors.
    fn query_all<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        what: &'static str,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, EngineError> {
        let mut st = self.tx.prepare_cached(sql).map_err(db(what))?;
        st.query_map(params, f)
            .map_err(db(what))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db(what))
    }

    fn l2_rows(&self) -> Result<Vec<L2Row>, EngineError> {
        self.query_all(
            "SELECT name, nic, type, vlan, sriov FROM l2_networks ORDER BY name",
            [],
            "read l2 networks",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?
        .into_iter()
        .map(l2_from)
        .collect()
    }

    fn l2_row(&self, name: &str) -> Result<L2Row, EngineError> {
        named(self.l2_rows()?, "l2", name, |r| r.name.as_str())
    }

    fn l3_rows(&self) -> Result<Vec<L3Row>, EngineError> {
        self.query_all(
            "SELECT name, l2, cidr, gateway, range_first, range_last, dns FROM l3_networks ORDER BY name",
            [],
            "read l3 networks",
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )?
        .into_iter()
        .map(l3_from)
        .collect()
    }

    fn l3_row(&self, name: &str) -> Result<L3Row, EngineError> {
        named(self.l3_rows()?, "l3", name, |r| r.name.as_str())
    }

    fn vm_rows(&self) -> Result<Vec<VmRow>, EngineError> {
        self.query_all(
            "SELECT name, uuid, state, memory_mib, vcpus, libvirt_uri FROM vms ORDER BY name",
            [],
            "read vms",
            |r| {
                Ok(VmRow {
                    name: r.get(0)?,
                    uuid: r.get(1)?,
                    state: VmState::parse(&r.get::<_, String>(2)?),
                    // Written checked (`VmResources::new`); a negative one reads as 0.
                    memory_mib: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    vcpus: r.get(4)?,
                    libvirt_uri: r.get(5)?,
                })
            },
        )
    }

    fn vm_row(&self, name: &str) -> Result<VmRow, EngineError> {
        named(self.vm_rows()?, "vm", name, |r| r.name.as_str())
    }

    fn nic_rows(&self, vm: &str) -> Result<Vec<NicRow>, EngineError> {
        let rows = self.query_all(
            "SELECT idx, l3, l2, type, mac, lease_owner, detached FROM vm_nics WHERE vm = ?1 ORDER BY idx",
            [vm],
            "read vm nics",
            |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(index, l3, l2, t, mac, lease_owner, detached)| {
                Ok(NicRow {
                    index,
                    l3,
                    l2,
                    nic_type: t
                        .parse()
                        .map_err(|_| corrupt(format!("type of {vm} nic{index}")))?,
                    mac: mac
                        .parse()
                        .map_err(|_| corrupt(format!("mac of {vm} nic{index}")))?,
                    lease_owner,
                    detached,
                })
            })
            .collect()
    }

    fn nic_row(&self, vm: &str, index: u32) -> Result<NicRow, EngineError> {
        let all = self.nic_rows(vm)?;
        let known = names(all.iter().map(|r| format!("nic{}", r.index)));
        all.into_iter()
            .find(|r| r.index == index)
            .ok_or_else(|| unknown("vm nic", &format!("{vm}/nic{index}"), known))
    }

    /// The NIC (`VM/nicN`) that has `mac` on `l2`, if any.
    fn mac_user(&self, l2: &str, mac: MacAddr) -> Result<Option<String>, EngineError> {
        self.tx
            .query_row(
                "SELECT vm, idx FROM vm_nics WHERE l2 = ?1 AND mac = ?2",
                params![l2, mac.to_string()],
                |r| {
                    Ok(format!(
                        "{}/nic{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?
                    ))
                },
            )
            .optional()
            .map_err(db("read vm nics"))
    }

    fn insert_nic(&self, vm: &str, n: &NicRow) -> Result<(), EngineError> {
        self.exec(
            "INSERT INTO vm_nics (vm, idx, l3, l2, type, mac, lease_owner, detached) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0)",
            params![vm, n.index, n.l3, n.l2, n.nic_type.as_str(), n.mac.to_string()],
            "insert a vm nic",
        )
        .map(drop)
    }

    fn address_of(&self, owner: &str) -> Result<Option<Ipv4Addr>, EngineError> {
        let a: Option<String> = self
            .tx
            .query_row(
                "SELECT address FROM l3_addresses WHERE owner = ?1",
                [owner],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read l3 addresses"))?;
        a.map(|a| {
            a.parse()
                .map_err(|_| corrupt(format!("address of {owner}")))
        })
        .transpose()
    }

    /// Every address handed out on `l3` and its owner, by address.
    fn holders(&self, l3: &str) -> Result<Vec<L3AddressView>, EngineError> {
        let rows = self.query_all(
            "SELECT address, owner FROM l3_addresses WHERE l3 = ?1",
            [l3],
            "read l3 addresses",
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut out = rows
            .into_iter()
            .map(|(a, owner)| {
                let address = a
                    .parse()
                    .map_err(|_| corrupt(format!("address {a} of {l3}")))?;
                Ok(L3AddressView { address, owner })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        out.sort_by_key(|h| h.address);
        Ok(out)
    }

    /// The L3 and address `owner` holds.
    fn held_by(&self, owner: &str) -> Result<Option<(String, Ipv4Addr)>, EngineError> {
        let row: Option<(String, String)> = self
            .tx
            .query_row(
                "SELECT l3, address FROM l3_addresses WHERE owner = ?1",
                [owner],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db("read l3 addresses"))?;
        row.map(|(l3, a)| {
            a.parse()
                .map(|ip| (l3, ip))
                .map_err(|_| corrupt(format!("address of {owner}")))
        })
        .transpose()
    }

    fn allocated(&self, l3: &str) -> Result<Vec<Ipv4Addr>, EngineError> {
        let rows = self.query_all(
            "SELECT address FROM l3_addresses WHERE l3 = ?1",
            [l3],
            "read l3 addresses",
            |r| r.get::<_, String>(0),
        )?;
        rows.iter()
            .map(|a| {
                a.parse()
                    .map_err(|_| corrupt(format!("address {a} of {l3}")))
            })
            .collect()
    }

    /// The lowest free address of `l3`'s range (never its gateway) for `owner`.
    fn allocate(&self, l3: &L3Row, owner: &str) -> Result<Ipv4Addr, EngineError> {
        let taken = self.allocated(&l3.name)?;
        let ip = (u32::from(l3.first)..=u32::from(l3.last))
            .map(Ipv4Addr::from)
            .find(|ip| *ip != l3.gateway && !taken.contains(ip))
            .ok_or_else(|| EngineError::NoFreeAddress {
                l3: l3.name.clone(),
                range: format!("{}-{}", l3.first, l3.last),
            })?;
        self.exec(
            "INSERT INTO l3_addresses (l3, address, owner) VALUES (?1, ?2, ?3)",
            params![l3.name, ip.to_string(), owner],
            "allocate an l3 address",
        )?;
        Ok(ip)
    }
}

fn names<S: AsRef<str>>(it: impl Iterator<Item = S>) -> String {
    let v: Vec<String> = it.map(|s| s.as_ref().to_owned()).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

fn unknown(what: &'static str, name: &str, known: String) -> EngineError {
    EngineError::UnknownName {
        what,
        name: name.to_owned(),
        known,
    }
}

/// An owner `l3_allocate` and `l3_release` take: not empty, not the VM layer's.
fn validate_address_owner(owner: &str) -> Result<(), EngineError> {
    if owner.is_empty() || owner.starts_with(VM_OWNER_PREFIX) {
        return Err(EngineError::Invalid(InvalidValue::new(
            "owner",
            owner,
            "a non-empty owner outside vm/ (vm/NAME/nicN is the VM layer's), like cni/NET/ID/IF",
        )));
    }
    Ok(())
}

/// The lease owner of NIC `index` of `vm`.
pub fn nic_owner(vm: &str, index: u32) -> String {
    format!("{VM_OWNER_PREFIX}{vm}/nic{index}")
}

/// The VM a lease owner of the VM layer names (`vm/NAME/...`).
pub fn vm_of_owner(owner: &str) -> Option<&str> {
    owner
        .strip_prefix(VM_OWNER_PREFIX)
        .map(|rest| rest.split('/').next().unwrap_or(rest))
}

/// A stable locally administered unicast MAC for NIC `index` of `vm` on `l2` (FNV-1a of
/// the three, then `salt` for a collision): the same VM and NIC get the same MAC again.
fn generated_mac(vm: &str, index: u32, l2: &str, salt: u32) -> MacAddr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in vm
        .bytes()
        .chain([0])
        .chain(index.to_le_bytes())
        .chain(l2.bytes())
        .chain(salt.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    // 0x02: locally administered, unicast.
    MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
}

/// A random version-4 UUID (from the kernel's random source).
fn new_uuid() -> Result<String, EngineError> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|source| EngineError::Random { source })?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

// ---- the engine's calls ----------------------------------------------------------------

impl Engine {
    /// Checks that `nic` is an SR-IOV PF of this host (for an L2 with the SR-IOV flag).
    fn check_sriov_nic(&self, nic: &str) -> Result<(), EngineError> {
        Inventory::scan(&self.fs)?.find_sriov_pf(nic)?;
        Ok(())
    }

    pub fn l2_create(&mut self, req: &L2Request) -> Result<L2View, EngineError> {
        validate_name("l2", &req.name)?;
        vfpool_model::PfRef::parse(&req.nic)?;
        let l2_type = req.l2_type.unwrap_or(if req.vlan.is_some() {
            L2Type::Vlan
        } else {
            L2Type::NoVlan
        });
        match (l2_type, req.vlan) {
            (L2Type::Vlan, None) => {
                return Err(InvalidValue::new(
                    "vlan",
                    "(none)",
                    "a VLAN id 1..=4094 for a vlan L2",
                )
                .into());
            }
            (L2Type::Vlan, Some(v)) if !(1..=4094).contains(&v) => {
                return Err(InvalidValue::new("vlan", v, "a VLAN id 1..=4094").into());
            }
            (L2Type::Vxlan, Some(v)) if !(1..=16_777_215).contains(&v) => {
                return Err(InvalidValue::new("vlan", v, "a VXLAN VNI 1..=16777215").into());
            }
            (L2Type::NoVlan, Some(v)) => {
                return Err(
                    InvalidValue::new("vlan", v, "none for a novlan L2 (use --type vlan)").into(),
                );
            }
            _ => {}
        }
        if req.sriov {
            if l2_type == L2Type::Vxlan {
                return Err(InvalidValue::new(
                    "sriov",
                    "on",
                    "off for a vxlan L2 (SR-IOV needs a novlan or vlan L2)",
                )
                .into());
            }
            self.check_sriov_nic(&req.nic)?;
        } else if let vfpool_host::Found::Vf(pf, _) = Inventory::scan(&self.fs)?.find(&req.nic)? {
            return Err(InvalidValue::new(
                "nic",
                &req.nic,
                format!("a physical NIC, not a VF (this is a VF of {})", pf.name),
            )
            .into());
        }
        self.ledger.write(Durability::Synced, |tx| {
            if tx.l2_rows()?.iter().any(|r| r.name == req.name) {
                return Err(EngineError::NameExists {
                    what: "l2",
                    name: req.name.clone(),
                });
            }
            tx.exec(
                "INSERT INTO l2_networks (name, nic, type, vlan, sriov, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![req.name, req.nic, l2_type.as_str(), req.vlan, req.sriov, now()],
                "insert an l2 network",
            )
            .map(drop)
        })?;
        tracing::info!(l2 = %req.name, nic = %req.nic, sriov = req.sriov, "l2 created");
        self.l2_show(&req.name)
    }

    /// `l2 set NAME --sriov on|off`. Off is refused while a VM NIC on it is of type VF.
    pub fn l2_set_sriov(&mut self, name: &str, sriov: bool) -> Result<L2View, EngineError> {
        let row = self.ledger.read(|tx| tx.l2_row(name))?;
        if sriov {
            if row.l2_type == L2Type::Vxlan {
                return Err(InvalidValue::new(
                    "sriov",
                    "on",
                    format!("off for l2 '{name}', a vxlan L2"),
                )
                .into());
            }
            self.check_sriov_nic(&row.nic)?;
        }
        self.ledger.write(Durability::Synced, |tx| {
            tx.l2_row(name)?;
            if !sriov {
                let vf_nics: Vec<String> = tx
                    .vm_rows()?
                    .iter()
                    .map(|vm| {
                        Ok(tx
                            .nic_rows(&vm.name)?
                            .into_iter()
                            .filter(|n| n.l2 == name && n.nic_type == NicType::Vf)
                            .map(|n| format!("{}/nic{}", vm.name, n.index))
                            .collect::<Vec<_>>())
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?
                    .concat();
                if !vf_nics.is_empty() {
                    return Err(EngineError::InUse {
                        what: "l2",
                        name: name.to_owned(),
                        by: format!("VF NICs {}", vf_nics.join(", ")),
                        hint: "set them to vnic first",
                    });
                }
            }
            tx.exec(
                "UPDATE l2_networks SET sriov = ?2 WHERE name = ?1",
                params![name, sriov],
                "update an l2 network",
            )
            .map(drop)
        })?;
        self.l2_show(name)
    }

    pub fn l2_list(&mut self) -> Result<Vec<L2View>, EngineError> {
        self.ledger.read(|tx| {
            let l3 = tx.l3_rows()?;
            Ok(tx.l2_rows()?.into_iter().map(|r| l2_view(r, &l3)).collect())
        })
    }

    pub fn l2_show(&mut self, name: &str) -> Result<L2View, EngineError> {
        self.ledger
            .read(|tx| Ok(l2_view(tx.l2_row(name)?, &tx.l3_rows()?)))
    }

    /// Refused while an L3 network is on it.
    pub fn l2_delete(&mut self, name: &str) -> Result<(), EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            tx.l2_row(name)?;
            let l3: Vec<String> = tx
                .l3_rows()?
                .into_iter()
                .filter(|r| r.l2 == name)
                .map(|r| r.name)
                .collect();
            if !l3.is_empty() {
                return Err(EngineError::InUse {
                    what: "l2",
                    name: name.to_owned(),
                    by: format!("l3 {}", l3.join(", ")),
                    hint: "delete them first",
                });
            }
            tx.exec(
                "DELETE FROM l2_networks WHERE name = ?1",
                [name],
                "delete an l2 network",
            )
            .map(drop)
        })
    }

    pub fn l3_create(&mut self, req: &L3Request) -> Result<L3View, EngineError> {
        validate_name("l3", &req.name)?;
        validate_name("l2", &req.l2)?;
        let cidr: Ipv4Cidr = req.cidr.parse()?;
        let gateway = parse_ip("gateway", &req.gateway)?;
        let inside = format!("an address inside {cidr}");
        if !cidr.contains(gateway) {
            return Err(InvalidValue::new("gateway", gateway, inside).into());
        }
        let (first, last) = match &req.range {
            None => cidr.hosts(),
            Some(r) => {
                let (a, b) = r.split_once('-').ok_or_else(|| {
                    InvalidValue::new(
                        "range",
                        r,
                        format!("FIRST-LAST, two addresses inside {cidr}"),
                    )
                })?;
                (parse_ip("range", a)?, parse_ip("range", b)?)
            }
        };
        for ip in [first, last] {
            if !cidr.contains(ip) {
                return Err(InvalidValue::new(
                    "range",
                    format!("{first}-{last}"),
                    format!("FIRST-LAST, two addresses inside {cidr}"),
                )
                .into());
            }
        }
        if u32::from(first) > u32::from(last) {
            return Err(InvalidValue::new(
                "range",
                format!("{first}-{last}"),
                "FIRST-LAST with FIRST not after LAST",
            )
            .into());
        }
        let dns = req.dns.as_deref().map(|d| parse_ip("dns", d)).transpose()?;
        self.ledger.write(Durability::Synced, |tx| {
            let l2 = tx.l2_row(&req.l2)?;
            let all = tx.l3_rows()?;
            if all.iter().any(|r| r.name == req.name) {
                return Err(EngineError::NameExists {
                    what: "l3",
                    name: req.name.clone(),
                });
            }
            if let Some(o) = all
                .iter()
                .find(|o| o.l2 == l2.name && o.cidr.overlaps(cidr))
            {
                return Err(EngineError::CidrOverlap {
                    cidr: cidr.to_string(),
                    l3: req.name.clone(),
                    other: o.name.clone(),
                    other_cidr: o.cidr.to_string(),
                    l2: l2.name.clone(),
                });
            }
            tx.exec(
                "INSERT INTO l3_networks (name, l2, cidr, gateway, range_first, range_last, dns, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    req.name,
                    req.l2,
                    cidr.to_string(),
                    gateway.to_string(),
                    first.to_string(),
                    last.to_string(),
                    dns.map(|d| d.to_string()),
                    now()
                ],
                "insert an l3 network",
            )
            .map(drop)
        })?;
        tracing::info!(l3 = %req.name, l2 = %req.l2, cidr = %cidr, "l3 created");
        self.l3_show(&req.name)
    }

    pub fn l3_list(&mut self) -> Result<Vec<L3View>, EngineError> {
        self.ledger.read(|tx| {
            let l2 = tx.l2_rows()?;
            tx.l3_rows()?
                .into_iter()
                .map(|r| l3_view(tx, r, &l2))
                .collect()
        })
    }

    pub fn l3_show(&mut self, name: &str) -> Result<L3View, EngineError> {
        self.ledger
            .read(|tx| l3_view(tx, tx.l3_row(name)?, &tx.l2_rows()?))
    }

    /// Gives `owner` the lowest free address of `l3`'s range (the allocation VM starts
    /// use, in one write transaction, so that a VM and a pod never get one address). An
    /// owner that already holds an address on `l3` gets it again; one that holds one on
    /// another L3 is refused. Owners under `vm/` are the VM layer's: refused.
    pub fn l3_allocate(&mut self, l3: &str, owner: &str) -> Result<L3Allocation, EngineError> {
        validate_address_owner(owner)?;
        let (row, address) = self.ledger.write(Durability::Synced, |tx| {
            let row = tx.l3_row(l3)?;
            let address = match tx.held_by(owner)? {
                Some((held, address)) if held == row.name => address,
                Some((held, address)) => {
                    return Err(EngineError::AddressHeld {
                        owner: owner.to_owned(),
                        l3: held,
                        address,
                    });
                }
                None => tx.allocate(&row, owner)?,
            };
            Ok((row, address))
        })?;
        tracing::info!(l3 = %row.name, owner, %address, "l3 address allocated");
        Ok(L3Allocation {
            l3: row.name,
            owner: owner.to_owned(),
            address,
            prefix: row.cidr.prefix,
            gateway: row.gateway,
            dns: row.dns,
        })
    }

    /// The address `owner` holds, if any (with its L3's prefix, gateway and DNS).
    pub fn l3_address(&mut self, owner: &str) -> Result<Option<L3Allocation>, EngineError> {
        self.ledger.read(|tx| {
            let Some((l3, address)) = tx.held_by(owner)? else {
                return Ok(None);
            };
            let row = tx.l3_row(&l3)?;
            Ok(Some(L3Allocation {
                l3,
                owner: owner.to_owned(),
                address,
                prefix: row.cidr.prefix,
                gateway: row.gateway,
                dns: row.dns,
            }))
        })
    }

    /// Gives back the address `owner` holds; `None` when it held none (idempotent).
    pub fn l3_release(&mut self, owner: &str) -> Result<Option<(String, Ipv4Addr)>, EngineError> {
        validate_address_owner(owner)?;
        let freed = self.ledger.write(Durability::Synced, |tx| {
            let held = tx.held_by(owner)?;
            if held.is_some() {
                tx.exec(
                    "DELETE FROM l3_addresses WHERE owner = ?1",
                    [owner],
                    "free an l3 address",
                )?;
            }
            Ok(held)
        })?;
        if let Some((l3, address)) = &freed {
            tracing::info!(l3, owner, %address, "l3 address released");
        }
        Ok(freed)
    }

    /// Gives back every address whose owner starts with `prefix` and is not in `keep`
    /// (the CNI plugin's GC); the owners freed.
    pub fn l3_gc(
        &mut self,
        prefix: &str,
        keep: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, EngineError> {
        validate_address_owner(prefix)?;
        self.ledger.write(Durability::Synced, |tx| {
            let owners: Vec<String> = {
                let mut st = tx
                    .tx
                    .prepare_cached("SELECT owner FROM l3_addresses ORDER BY owner")
                    .map_err(db("read l3 addresses"))?;
                st.query_map([], |r| r.get::<_, String>(0))
                    .map_err(db("read l3 addresses"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db("read l3 addresses"))?
            };
            let mut freed = Vec::new();
            for o in owners {
                if o.starts_with(prefix) && !keep.contains(&o) {
                    tx.exec(
                        "DELETE FROM l3_addresses WHERE owner = ?1",
                        [&o],
                        "free an l3 address",
                    )?;
                    freed.push(o);
                }
            }
            Ok(freed)
        })
    }

    /// For `lease gc`: gives back the L3 addresses of pods (the CNI plugin's `vfpool` IPAM,
    /// owner `cni/NETWORK/CONTAINERID/IFNAME`) that hold no lease. A pod's lease comes
    /// before its address at ADD and goes after it at DEL (and its undo), so an address
    /// without a lease is one a DEL or an undo died before giving back. One transaction:
    /// an ADD cannot slip in between the look and the delete.
    pub(crate) fn l3_gc_pods(&mut self) -> Result<Vec<FreedAddress>, EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            let orphans = tx.query_all(
                "SELECT l3, address, owner FROM l3_addresses \
                 WHERE owner LIKE 'cni/%' AND owner NOT IN (SELECT owner FROM leases) \
                 ORDER BY owner",
                [],
                "read l3 addresses",
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
            )?;
            let mut freed = Vec::new();
            for (l3, address, owner) in orphans {
                tx.exec(
                    "DELETE FROM l3_addresses WHERE owner = ?1",
                    [&owner],
                    "free an l3 address",
                )?;
                let address = address
                    .parse()
                    .map_err(|_| corrupt(format!("l3 address '{address}' of {owner}")))?;
                freed.push(FreedAddress { l3, address, owner });
            }
            Ok(freed)
        })
    }

    /// Refused while a VM NIC is on it or an address is handed out on it.
    pub fn l3_delete(&mut self, name: &str) -> Result<(), EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            tx.l3_row(name)?;
            let vms = l3_users(tx, name)?;
            let pods: Vec<String> = tx
                .holders(name)?
                .into_iter()
                .filter(|h| !h.owner.starts_with(VM_OWNER_PREFIX))
                .map(|h| h.owner)
                .collect();
            let mut by = Vec::new();
            if !vms.is_empty() {
                by.push(format!("VM NICs {}", vms.join(", ")));
            }
            if !pods.is_empty() {
                by.push(format!("the addresses of {}", pods.join(", ")));
            }
            if !by.is_empty() {
                return Err(EngineError::InUse {
                    what: "l3",
                    name: name.to_owned(),
                    by: by.join(" and "),
                    hint: "remove them first",
                });
            }
            tx.exec(
                "DELETE FROM l3_networks WHERE name = ?1",
                [name],
                "delete an l3 network",
            )
            .map(drop)
        })
    }

    /// `l3 check-vf`: the free VFs of the L3's L2 NIC (its PF pool), and how many.
    pub fn l3_check_vf(&mut self, name: &str) -> Result<VfCheckView, EngineError> {
        let (l3, l2) = self.ledger.read(|tx| {
            let l3 = tx.l3_row(name)?;
            let l2 = tx.l2_row(&l3.l2)?;
            Ok((l3, l2))
        })?;
        if !l2.sriov {
            return Err(EngineError::NotSriov {
                l3: l3.name,
                l2: l2.name,
            });
        }
        let pool_name = pf_pool_name(&l2.nic);
        // Only the L2 NIC's VFs are read (every PF is listed, with its facts): `vm start`
        // asks this for each VF NIC, and a full scan of a large host cost more than the
        // leases themselves.
        let pf = vfpool_model::PfRef::parse(&l2.nic)?;
        let host = crate::hostview::HostView::scan_where(&self.fs, &|facts, _| facts.is(&pf))?;
        let (pools, leases) = self.ledger.read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
        let pools = with_pf_pool(pools, &pool_name)?;
        let p = find_pool(&pools, &pool_name)?;
        let st = pool::status(p, &pools, &host, &leases);
        let free_vfs = pool::pool_vfs(p, &pools, &host, &leases)
            .into_iter()
            .filter(|v| v.state == VfState::Free)
            .map(|v| v.vf_pci)
            .collect();
        Ok(VfCheckView {
            l3: l3.name,
            l2: l2.name,
            nic: l2.nic,
            pool: pool_name,
            total: st.total,
            free: st.free,
            leased: st.leased,
            unhealthy: st.unhealthy,
            free_vfs,
        })
    }

    /// How many VFs of `nic`'s PF pool no lease holds, from the PF's VF slots alone (no VF
    /// is read): `vm start`'s pre-check. Their health is the acquires' to check, which then
    /// fail as exhausted and name the counts from a full [`Self::l3_check_vf`].
    fn vfs_not_leased(&mut self, nic: &str) -> Result<usize, EngineError> {
        let pool_name = pf_pool_name(nic);
        let pf = vfpool_model::PfRef::parse(nic)?;
        let host = crate::hostview::HostView::scan_named_pfs(&self.fs, &[&pf])?;
        let (pools, leases) = self.ledger.read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
        let pools = with_pf_pool(pools, &pool_name)?;
        let leased: std::collections::HashSet<(PciAddr, u16)> =
            leases.iter().map(|l| (l.pf_pci, l.vf_index)).collect();
        Ok(host
            .pfs
            .iter()
            .flat_map(|p| p.nic.vf_slots.iter().map(move |(i, _)| (p, *i)))
            .filter(|(p, i)| {
                crate::pool::owner_of(&pools, &p.facts, *i) == Some(pool_name.as_str())
                    && !leased.contains(&(p.pci, *i))
            })
            .count())
    }

    /// `vm create NAME --nic ...`: a stopped VM with these NICs (indexes from 0), 1024 MiB
    /// and one vCPU.
    pub fn vm_create(&mut self, name: &str, nics: &[VmNicSpec]) -> Result<VmView, EngineError> {
        self.vm_create_with(name, nics, VmResources::default())
    }

    /// `vm create NAME --nic ... --memory MiB --vcpus N`.
    pub fn vm_create_with(
        &mut self,
        name: &str,
        nics: &[VmNicSpec],
        res: VmResources,
    ) -> Result<VmView, EngineError> {
        validate_name("vm", name)?;
        VmResources::new(res.memory_mib, res.vcpus)?;
        let uuid = new_uuid()?;
        self.ledger.write(Durability::Synced, |tx| {
            if tx.vm_rows()?.iter().any(|v| v.name == name) {
                return Err(EngineError::NameExists {
                    what: "vm",
                    name: name.to_owned(),
                });
            }
            tx.exec(
                "INSERT INTO vms (name, uuid, state, created, memory_mib, vcpus) \
                 VALUES (?1, ?2, 'stopped', ?3, ?4, ?5)",
                params![
                    name,
                    uuid,
                    now(),
                    i64::try_from(res.memory_mib).unwrap_or(i64::MAX),
                    res.vcpus
                ],
                "insert a vm",
            )?;
            for (i, spec) in nics.iter().enumerate() {
                add_nic(tx, name, i as u32, spec)?;
            }
            Ok(())
        })?;
        tracing::info!(vm = name, nics = nics.len(), "vm created");
        self.vm_show(name)
    }

    pub fn vm_show(&mut self, name: &str) -> Result<VmView, EngineError> {
        self.ledger.read(|tx| vm_view(tx, tx.vm_row(name)?))
    }

    pub fn vm_list(&mut self) -> Result<Vec<VmView>, EngineError> {
        self.ledger
            .read(|tx| tx.vm_rows()?.into_iter().map(|v| vm_view(tx, v)).collect())
    }

    /// Records that vfpool defined VM `name`'s domain at libvirt `uri` (`vm start
    /// --libvirt`), or (`None`) that it undefined it.
    pub fn vm_set_libvirt(&mut self, name: &str, uri: Option<&str>) -> Result<(), EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            tx.vm_row(name)?;
            tx.exec(
                "UPDATE vms SET libvirt_uri = ?2 WHERE name = ?1",
                params![name, uri],
                "record a vm's libvirt domain",
            )
            .map(drop)
        })
    }

    /// Only a stopped VM.
    pub fn vm_delete(&mut self, name: &str) -> Result<(), EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            let vm = tx.vm_row(name)?;
            refuse_running(&vm, "stop it before deleting it")?;
            tx.exec(
                "DELETE FROM vm_nics WHERE vm = ?1",
                [name],
                "delete vm nics",
            )?;
            tx.exec("DELETE FROM vms WHERE name = ?1", [name], "delete a vm")
                .map(drop)
        })?;
        tracing::info!(vm = name, "vm deleted");
        Ok(())
    }

    /// Adds a NIC (the next index) to a stopped VM.
    pub fn vm_nic_add(&mut self, name: &str, spec: &VmNicSpec) -> Result<VmView, EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            let vm = tx.vm_row(name)?;
            refuse_running(&vm, "stop it before adding a NIC")?;
            let next = tx.nic_rows(name)?.last().map_or(0, |n| n.index + 1);
            add_nic(tx, name, next, spec)
        })?;
        self.vm_show(name)
    }

    /// Removes NIC `index` of a stopped VM (the others keep their indexes).
    pub fn vm_nic_remove(&mut self, name: &str, index: u32) -> Result<VmView, EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            let vm = tx.vm_row(name)?;
            tx.nic_row(name, index)?;
            refuse_running(&vm, "stop it before removing a NIC")?;
            tx.exec(
                "DELETE FROM vm_nics WHERE vm = ?1 AND idx = ?2",
                params![name, index],
                "delete a vm nic",
            )
            .map(drop)
        })?;
        self.vm_show(name)
    }

    /// Switches NIC `index` of a stopped VM between VF and vNIC (VF: an SR-IOV L3 only).
    pub fn vm_nic_set_type(
        &mut self,
        name: &str,
        index: u32,
        nic_type: NicType,
    ) -> Result<VmView, EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            let vm = tx.vm_row(name)?;
            let nic = tx.nic_row(name, index)?;
            refuse_running(&vm, "stop it before changing a NIC's type")?;
            if nic_type == NicType::Vf {
                let l2 = tx.l2_row(&nic.l2)?;
                if !l2.sriov {
                    return Err(EngineError::NotSriov {
                        l3: nic.l3,
                        l2: l2.name,
                    });
                }
            }
            tx.exec(
                "UPDATE vm_nics SET type = ?3 WHERE vm = ?1 AND idx = ?2",
                params![name, index, nic_type.as_str()],
                "update a vm nic",
            )
            .map(drop)
        })?;
        self.vm_show(name)
    }

    /// Refused while a VF is attached (naming the NIC); otherwise allowed, and nothing is
    /// recorded: moving the VM is the platform's job.
    pub fn vm_migrate(&mut self, name: &str, to: &str) -> Result<MigrateView, EngineError> {
        if to.trim().is_empty() || to.chars().any(char::is_control) {
            return Err(InvalidValue::new("to", to, "a host name").into());
        }
        let view = self.vm_show(name)?;
        if view.state == VmState::Running
            && let Some(n) = view.nics.iter().find(|n| n.vf.is_some())
        {
            return Err(EngineError::VfAttached {
                vm: name.to_owned(),
                nic: n.name.clone(),
                vf: n.vf.unwrap_or(PciAddr::new(0, 0, 0, 0)),
            });
        }
        Ok(MigrateView {
            vm: name.to_owned(),
            to: to.to_owned(),
            allowed: true,
            note: "no VF is attached; moving the VM is the platform's job (vfpool records nothing)"
                .to_owned(),
        })
    }

    /// Starts a VM: marks it running, then leases a VF for every VF NIC (from its L2 NIC's
    /// PF pool, with its MAC and the L2's VLAN, bound to vfio-pci) and hands out an address
    /// for every NIC. All or nothing: when a VF or an address is missing, what was taken
    /// is given back and the VM stays stopped.
    pub fn vm_start(&mut self, name: &str) -> Result<VmView, EngineError> {
        let _lock = self.vm_lock(name)?;
        // Marked running first: `lease gc` keeps the leases of a running VM, and a second
        // start is refused here rather than racing this one.
        let (nics, l3s, l2s) = self.ledger.write(Durability::Unsynced, |tx| {
            let vm = tx.vm_row(name)?;
            if vm.state == VmState::Running {
                return Err(EngineError::VmState {
                    vm: name.to_owned(),
                    state: "running",
                    what: "it is started already".to_owned(),
                });
            }
            let nics = tx.nic_rows(name)?;
            let l3s: HashMap<String, L3Row> = tx
                .l3_rows()?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect();
            let l2s: HashMap<String, L2Row> = tx
                .l2_rows()?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect();
            tx.exec(
                "UPDATE vms SET state = 'running' WHERE name = ?1",
                [name],
                "start a vm",
            )?;
            Ok((nics, l3s, l2s))
        })?;
        match self.start_nics(name, &nics, &l3s, &l2s) {
            Ok(()) => {
                tracing::info!(vm = name, "vm started");
                self.vm_show(name)
            }
            Err(e) => {
                self.ledger.write(Durability::Synced, |tx| {
                    tx.exec(
                        "UPDATE vms SET state = 'stopped' WHERE name = ?1",
                        [name],
                        "stop a vm",
                    )
                    .map(drop)
                })?;
                Err(e)
            }
        }
    }

    fn start_nics(
        &mut self,
        vm: &str,
        nics: &[NicRow],
        l3s: &HashMap<String, L3Row>,
        l2s: &HashMap<String, L2Row>,
    ) -> Result<(), EngineError> {
        let get_l2 = |n: &NicRow| {
            l2s.get(&n.l2)
                .ok_or_else(|| unknown("l2", &n.l2, names(l2s.keys())))
        };
        // Enough free VFs on every NIC? Checked first so that the error names the L3 and
        // the counts; the acquires below are still the last word (another VM may take one
        // meanwhile: then the same error, and everything rolled back).
        let mut needed: BTreeMap<String, (usize, &str)> = BTreeMap::new();
        for n in nics.iter().filter(|n| n.nic_type == NicType::Vf) {
            let l2 = get_l2(n)?;
            needed.entry(l2.nic.clone()).or_insert((0, &n.l3)).0 += 1;
        }
        for (nic, (count, l3)) in &needed {
            let free = self.vfs_not_leased(nic)?;
            if free < *count {
                return Err(EngineError::NoFreeVf {
                    vm: vm.to_owned(),
                    l3: (*l3).to_owned(),
                    nic: nic.clone(),
                    free,
                    needed: *count,
                });
            }
        }
        let mut taken: Vec<String> = Vec::new();
        let result = (|| {
            for n in nics.iter().filter(|n| n.nic_type == NicType::Vf) {
                let l2 = get_l2(n)?;
                let owner = nic_owner(vm, n.index);
                let mut req = AcquireRequest::new(&pf_pool_name(&l2.nic), &owner);
                req.owner_kind = OwnerKind::Vm;
                req.driver = Some(DriverChoice::VfioPci);
                req.settings = VfSettings {
                    mac: Some(n.mac),
                    vlan: (l2.l2_type == L2Type::Vlan)
                        .then_some(l2.vlan)
                        .flatten()
                        .map(|v| v as u16),
                    ..VfSettings::default()
                };
                match self.acquire(&req) {
                    Ok(_) => {
                        taken.push(owner);
                        crate::fault::point("vm-start:after-acquire");
                    }
                    Err(EngineError::Exhausted { .. }) => {
                        let free = self.l3_check_vf(&n.l3).map(|c| c.free).unwrap_or(0);
                        let count = needed.get(&l2.nic).map_or(1, |c| c.0);
                        return Err(EngineError::NoFreeVf {
                            vm: vm.to_owned(),
                            l3: n.l3.clone(),
                            nic: l2.nic.clone(),
                            free: free + taken.len(),
                            needed: count,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            self.ledger.write(Durability::Synced, |tx| {
                for n in nics {
                    let owner = nic_owner(vm, n.index);
                    let l3 = l3s
                        .get(&n.l3)
                        .ok_or_else(|| unknown("l3", &n.l3, names(l3s.keys())))?;
                    tx.exec(
                        "DELETE FROM l3_addresses WHERE owner = ?1",
                        [&owner],
                        "free an l3 address",
                    )?;
                    tx.allocate(l3, &owner)?;
                    let lease = (n.nic_type == NicType::Vf).then_some(owner);
                    tx.exec(
                        "UPDATE vm_nics SET lease_owner = ?3, detached = 0 WHERE vm = ?1 AND idx = ?2",
                        params![vm, n.index, lease],
                        "update a vm nic",
                    )?;
                }
                Ok(())
            })
        })();
        if let Err(e) = result {
            for owner in taken {
                if let Err(r) = self.release(&ReleaseTarget::Owner(owner.clone())) {
                    tracing::warn!(vm, owner = %owner, error = %chain(&r), "rolling back a VM start: release failed; `lease gc` releases it");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// VM `name`'s start/stop lock; none for a name no VM can have (the lookup that
    /// follows answers for it).
    fn vm_lock(&self, name: &str) -> Result<Option<crate::lock::VmLock>, EngineError> {
        if validate_name("vm", name).is_err() {
            return Ok(None);
        }
        crate::lock::VmLock::take(&self.state, name).map(Some)
    }

    /// Stops a VM: releases its VFs and addresses, marks it stopped. Best effort: every
    /// lease is tried; a release that fails is left for `lease gc` (which releases the
    /// leases of a stopped VM) and reported.
    pub fn vm_stop(&mut self, name: &str) -> Result<VmView, EngineError> {
        let _lock = self.vm_lock(name)?;
        let (vm, nics) = self
            .ledger
            .read(|tx| Ok((tx.vm_row(name)?, tx.nic_rows(name)?)))?;
        if vm.state != VmState::Running {
            return Err(EngineError::VmState {
                vm: name.to_owned(),
                state: "stopped",
                what: "it is not running".to_owned(),
            });
        }
        let mut errors = Vec::new();
        // By the owner each NIC would have, not only those recorded: a start killed after
        // an acquire and before its final commit left leases not recorded yet.
        for n in &nics {
            let owner = nic_owner(name, n.index);
            match self.release(&ReleaseTarget::Owner(owner)) {
                Ok(_) | Err(EngineError::UnknownOwner { .. }) => {}
                Err(e) => errors.push(chain(&e)),
            }
        }
        self.ledger.write(Durability::Synced, |tx| {
            for n in &nics {
                tx.exec(
                    "DELETE FROM l3_addresses WHERE owner = ?1",
                    [nic_owner(name, n.index)],
                    "free an l3 address",
                )?;
            }
            tx.exec(
                "UPDATE vm_nics SET lease_owner = NULL WHERE vm = ?1",
                [name],
                "update vm nics",
            )?;
            tx.exec(
                "UPDATE vms SET state = 'stopped' WHERE name = ?1",
                [name],
                "stop a vm",
            )
            .map(drop)
        })?;
        if !errors.is_empty() {
            return Err(EngineError::VmStop {
                vm: name.to_owned(),
                errors: errors.join("; "),
            });
        }
        tracing::info!(vm = name, "vm stopped");
        self.vm_show(name)
    }

    /// For `nic restore` and a `nic split` that changes a count: the VM leases on `pfs`. Without `force`, refused naming the VMs;
    /// with it, their rows are removed (the VFs are about to be destroyed) and the VM NICs
    /// marked detached. Called with the PFs' locks held exclusively.
    pub(crate) fn detach_vm_vfs(
        &mut self,
        pfs: &[(String, PciAddr)],
        force: bool,
    ) -> Result<(), EngineError> {
        self.ledger.write(Durability::Synced, |tx| {
            for (nic, pci) in pfs {
                let leases: Vec<_> = tx
                    .leases()?
                    .into_iter()
                    .filter(|l| l.pf_pci == *pci && vm_of_owner(&l.owner).is_some())
                    .collect();
                if leases.is_empty() {
                    continue;
                }
                let mut vms: Vec<&str> = leases.iter().filter_map(|l| vm_of_owner(&l.owner)).collect();
                vms.dedup();
                if !force {
                    return Err(EngineError::VfsInVms {
                        nic: nic.clone(),
                        vms: vms.join(", "),
                    });
                }
                for l in &leases {
                    tracing::warn!(nic = %nic, vf = %l.vf_pci, owner = %l.owner, "restore --force: VF detached from its VM");
                    tx.delete_lease(l.id)?;
                    tx.exec(
                        "UPDATE vm_nics SET lease_owner = NULL, detached = 1 WHERE lease_owner = ?1",
                        [&l.owner],
                        "detach a vm nic",
                    )?;
                }
            }
            Ok(())
        })
    }

    /// What `lease gc` asks about VMs: the `vms` table now, for owners `vm/NAME/...`; any
    /// other VM owner goes to the seam given with [`Engine::with_vm_owners`].
    pub(crate) fn vm_table(&mut self) -> Result<LedgerVms, EngineError> {
        let states = self.ledger.read(|tx| {
            Ok(tx
                .vm_rows()?
                .into_iter()
                .map(|v| (v.name, v.state))
                .collect())
        })?;
        Ok(LedgerVms { states })
    }
}

/// The VMs of the ledger, as `lease gc` sees them: a running VM's leases are kept, a
/// stopped or unknown VM's are released.
#[derive(Debug, Clone, Default)]
pub struct LedgerVms {
    states: HashMap<String, VmState>,
}

impl LedgerVms {
    /// Whether this is an owner of the VM layer (`vm/NAME/...`).
    pub fn owns(owner: &str) -> bool {
        vm_of_owner(owner).is_some()
    }
}

impl VmOwners for LedgerVms {
    fn vm_status(&self, owner: &str) -> OwnerStatus {
        match vm_of_owner(owner).map(|vm| self.states.get(vm)) {
            Some(Some(VmState::Running)) => OwnerStatus::Present,
            Some(Some(VmState::Stopped) | None) => OwnerStatus::Gone,
            None => OwnerStatus::Unknown,
        }
    }
}

fn refuse_running(vm: &VmRow, what: &str) -> Result<(), EngineError> {
    if vm.state == VmState::Running {
        return Err(EngineError::VmState {
            vm: vm.name.clone(),
            state: "running",
            what: what.to_owned(),
        });
    }
    Ok(())
}

/// Adds NIC `index` to `vm` in `tx`: the L3 must exist, `sriov` needs an SR-IOV L3, the
/// MAC (given or generated) must be free on the L3's L2.
fn add_nic(tx: &Tx<'_>, vm: &str, index: u32, spec: &VmNicSpec) -> Result<(), EngineError> {
    let l3 = tx.l3_row(&spec.l3)?;
    let l2 = tx.l2_row(&l3.l2)?;
    if spec.sriov && !l2.sriov {
        return Err(EngineError::NotSriov {
            l3: l3.name,
            l2: l2.name,
        });
    }
    let mac = match spec.mac {
        Some(mac) => {
            if let Some(by) = tx.mac_user(&l2.name, mac)? {
                return Err(EngineError::MacTaken {
                    mac,
                    l2: l2.name,
                    by,
                });
            }
            mac
        }
        None => {
            let mut salt = 0;
            loop {
                let mac = generated_mac(vm, index, &l2.name, salt);
                if tx.mac_user(&l2.name, mac)?.is_none() {
                    break mac;
                }
                salt += 1;
            }
        }
    };
    tx.insert_nic(
        vm,
        &NicRow {
            index,
            l3: l3.name,
            l2: l2.name,
            nic_type: if spec.sriov {
                NicType::Vf
            } else {
                NicType::Vnic
            },
            mac,
            lease_owner: None,
            detached: false,
        },
    )
}

fn l2_view(r: L2Row, l3: &[L3Row]) -> L2View {
    L2View {
        l3: l3
            .iter()
            .filter(|x| x.l2 == r.name)
            .map(|x| x.name.clone())
            .collect(),
        name: r.name,
        nic: r.nic,
        l2_type: r.l2_type,
        vlan: r.vlan,
        sriov: r.sriov,
    }
}

fn l3_view(tx: &Tx<'_>, r: L3Row, l2: &[L2Row]) -> Result<L3View, EngineError> {
    let parent = l2.iter().find(|x| x.name == r.l2);
    Ok(L3View {
        allocated: tx.allocated(&r.name)?.len(),
        addresses: tx.holders(&r.name)?,
        nic: parent.map(|p| p.nic.clone()).unwrap_or_default(),
        sriov: parent.is_some_and(|p| p.sriov),
        cidr: r.cidr.to_string(),
        gateway: r.gateway,
        range_first: r.first,
        range_last: r.last,
        dns: r.dns,
        name: r.name,
        l2: r.l2,
    })
}

/// The VM NICs (`VM/nicN`) on `l3`.
fn l3_users(tx: &Tx<'_>, l3: &str) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for vm in tx.vm_rows()? {
        for n in tx.nic_rows(&vm.name)? {
            if n.l3 == l3 {
                out.push(format!("{}/nic{}", vm.name, n.index));
            }
        }
    }
    Ok(out)
}

fn vm_view(tx: &Tx<'_>, vm: VmRow) -> Result<VmView, EngineError> {
    let l2s = tx.l2_rows()?;
    let nics = tx
        .nic_rows(&vm.name)?
        .into_iter()
        .map(|n| {
            let owner = nic_owner(&vm.name, n.index);
            let vf = match &n.lease_owner {
                Some(o) => tx.lease_by_owner(o)?.map(|l| l.vf_pci),
                None => None,
            };
            let l2 = l2s.iter().find(|x| x.name == n.l2);
            Ok(VmNicView {
                nic: l2.map(|x| x.nic.clone()).unwrap_or_default(),
                vlan: l2
                    .filter(|x| x.l2_type == L2Type::Vlan)
                    .and_then(|x| x.vlan),
                index: n.index,
                name: format!("nic{}", n.index),
                nic_type: n.nic_type,
                address: tx.address_of(&owner)?,
                vf,
                lease_owner: n.lease_owner,
                detached: n.detached,
                l3: n.l3,
                l2: n.l2,
                mac: n.mac,
            })
        })
        .collect::<Result<_, EngineError>>()?;
    Ok(VmView {
        name: vm.name,
        uuid: vm.uuid,
        state: vm.state,
        memory_mib: vm.memory_mib,
        vcpus: vm.vcpus,
        libvirt: vm.libvirt_uri,
        nics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_contains_and_overlaps() {
        let a: Ipv4Cidr = "192.168.10.0/24".parse().unwrap();
        assert!(a.contains("192.168.10.254".parse().unwrap()));
        assert!(!a.contains("192.168.11.1".parse().unwrap()));
        let b: Ipv4Cidr = "192.168.10.128/25".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a));
        let c: Ipv4Cidr = "192.168.11.0/24".parse().unwrap();
        assert!(!a.overlaps(c));
        assert_eq!(a.hosts().0, Ipv4Addr::new(192, 168, 10, 1));
        assert_eq!(a.hosts().1, Ipv4Addr::new(192, 168, 10, 254));
        let e = "192.168.10.1/24".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.to_string().contains("192.168.10.0/24"), "{e}");
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn nic_spec_parses_and_refuses() {
        let s: VmNicSpec = "l3=net1,sriov,mac=02:00:00:00:00:01".parse().unwrap();
        assert_eq!(s.l3, "net1");
        assert!(s.sriov);
        assert_eq!(s.mac.unwrap().to_string(), "02:00:00:00:00:01");
        let s: VmNicSpec = "l3=net1".parse().unwrap();
        assert!(!s.sriov && s.mac.is_none());
        for bad in ["sriov", "l3=net1,vf", "l3=", "l3=a,mac=01:00:00:00:00:01"] {
            assert!(bad.parse::<VmNicSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_macs_are_stable_local_unicast_and_differ() {
        let a = generated_mac("vm1", 0, "l2", 0);
        assert_eq!(a, generated_mac("vm1", 0, "l2", 0));
        assert_eq!(a.0[0], 0x02);
        assert_ne!(a, generated_mac("vm1", 1, "l2", 0));
        assert_ne!(a, generated_mac("vm1", 0, "l2", 1));
    }

    #[test]
    fn ledger_vms_answer_gc() {
        let mut states = HashMap::new();
        states.insert("a".to_owned(), VmState::Running);
        states.insert("b".to_owned(), VmState::Stopped);
        let v = LedgerVms { states };
        assert_eq!(v.vm_status("vm/a/nic0"), OwnerStatus::Present);
        assert_eq!(v.vm_status("vm/b/nic0"), OwnerStatus::Gone);
        assert_eq!(v.vm_status("vm/c/nic0"), OwnerStatus::Gone);
        assert_eq!(v.vm_status("other"), OwnerStatus::Unknown);
    }
}
