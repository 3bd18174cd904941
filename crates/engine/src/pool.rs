//! Pools: named sets of VFs chosen by selectors, and how a free VF is picked from one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vfpool_model::{InvalidValue, PciAddr, VfIndexSet};

use crate::hostview::{Health, HostView};
use crate::lease::{Lease, LeaseState};
use crate::selector::{PfFacts, PoolSelector, selects};

/// How a pool picks a free VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The lowest free VF of the lowest PF (by PCI address).
    #[default]
    FirstFit,
    /// A VF of the PF with the fewest leased VFs: spreads load across ports.
    Spread,
    /// A VF of the PF with the most leased VFs that still has a free one: keeps whole
    /// ports free.
    Pack,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::FirstFit => "first-fit",
            Policy::Spread => "spread",
            Policy::Pack => "pack",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first-fit" => Ok(Policy::FirstFit),
            "spread" => Ok(Policy::Spread),
            "pack" => Ok(Policy::Pack),
            _ => Err(InvalidValue::new("policy", s, "first-fit, spread or pack")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pool {
    pub name: String,
    pub selectors: Vec<PoolSelector>,
    pub policy: Policy,
    /// Unix seconds; older pools win a VF that several pools' selectors match.
    pub created: i64,
}

/// Checks a pool name: 1 to 63 of `A-Z a-z 0-9 . _ -`, not starting with `-`.
pub fn validate_pool_name(name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            "pool",
            name,
            "1 to 63 letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Which pool each existing VF belongs to: the oldest pool whose selectors match it.
pub fn membership<'a>(pools: &'a [Pool], host: &HostView) -> BTreeMap<PciAddr, &'a str> {
    let mut out = BTreeMap::new();
    for (pci, slot) in &host.vfs {
        if let Some(p) = owner_of(pools, &slot.pf, slot.index) {
            out.insert(*pci, p);
        }
    }
    out
}

/// The pool VF `index` of a PF with `facts` belongs to: the oldest whose selectors match.
pub fn owner_of<'a>(pools: &'a [Pool], facts: &PfFacts, index: u16) -> Option<&'a str> {
    pools
        .iter()
        .find(|p| selects(&p.selectors, facts, index))
        .map(|p| p.name.as_str())
}

/// Every (PF, VF index) slot a pool could ever hold on this host: indices up to each PF's
/// `sriov_totalvfs`, whether or not the VFs exist now. Pools overlap when these meet.
pub fn potential(selectors: &[PoolSelector], host: &HostView) -> BTreeMap<PciAddr, BTreeSet<u16>> {
    let mut out = BTreeMap::new();
    for pf in &host.pfs {
        let n = u16::try_from(pf.total_vfs).unwrap_or(u16::MAX);
        let set: BTreeSet<u16> = (0..n)
            .filter(|i| selects(selectors, &pf.facts, *i))
            .collect();
        if !set.is_empty() {
            out.insert(pf.pci, set);
        }
    }
    out
}

/// Describes an overlap like `eno49 VFs 2-3, em1 VFs 0-62`.
pub fn describe_overlap(
    a: &BTreeMap<PciAddr, BTreeSet<u16>>,
    b: &BTreeMap<PciAddr, BTreeSet<u16>>,
    host: &HostView,
) -> Option<String> {
    let mut parts = Vec::new();
    for (pf, set) in a {
        if let Some(other) = b.get(pf) {
            let both: VfIndexSet = set.intersection(other).copied().collect();
            if !both.is_empty() {
                let name = host
                    .pfs
                    .iter()
                    .find(|p| p.pci == *pf)
                    .map(|p| p.facts.name.clone())
                    .unwrap_or_else(|| pf.to_string());
                parts.push(format!("{name} VFs {both}"));
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A pool's VFs now, sorted into free, leased and unhealthy.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub policy: Policy,
    pub selectors: Vec<PoolSelector>,
    pub total: usize,
    pub free: usize,
    pub leased: usize,
    /// Not leased and not fit to hand out.
    pub unhealthy: usize,
    /// Why, with how many VFs for each reason (absent when none is unhealthy).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy_reasons: BTreeMap<String, usize>,
}

impl PoolStatus {
    /// The unhealthy count with its reasons, for messages: `7 unhealthy: 7 × PF eno1 lost
    /// carrier (operstate down)`.
    pub fn unhealthy_text(&self) -> String {
        if self.unhealthy_reasons.is_empty() {
            return format!("{} unhealthy", self.unhealthy);
        }
        let why = self
            .unhealthy_reasons
            .iter()
            .map(|(r, n)| format!("{n} × {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        format!("{} unhealthy: {why}", self.unhealthy)
    }
}

/// One VF of a pool, for `pool show`.
#[derive(Debug, Clone, Serialize)]
pub struct PoolVf {
    pub vf_pci: PciAddr,
    pub pf: String,
    pub vf_index: u16,
    pub netdev: Option<String>,
    pub driver: Option<String>,
    pub numa_node: Option<u32>,
    pub state: VfState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a VF of a pool stands (JSON: the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VfState {
    Free,
    Leased,
    /// `reason` says why.
    Unhealthy,
}

impl VfState {
    pub fn as_str(self) -> &'static str {
        match self {
            VfState::Free => "free",
            VfState::Leased => "leased",
            VfState::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for VfState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn pool_vfs(pool: &Pool, pools: &[Pool], host: &HostView, leases: &[Lease]) -> Vec<PoolVf> {
    let members = membership(pools, host);
    let by_vf: HashMap<PciAddr, &Lease> = leases.iter().map(|l| (l.vf_pci, l)).collect();
    let mut out = Vec::new();
    for (pci, name) in members {
        if name != pool.name {
            continue;
        }
        let Some(slot) = host.vfs.get(&pci) else {
            continue;
        };
        let lease = by_vf.get(&pci);
        let (state, reason) = match (lease, &slot.health) {
            // The VF was destroyed and re-created under its lease: not free until gc.
            (Some(l), _) if l.state == LeaseState::Stale => (
                VfState::Unhealthy,
                Some(format!(
                    "stale lease of '{}' (its VF was re-created); `vfpool lease gc` frees it",
                    l.owner
                )),
            ),
            (Some(_), _) => (VfState::Leased, None),
            (None, Health::Unhealthy { reason }) => (VfState::Unhealthy, Some(reason.clone())),
            (None, Health::Healthy) => (VfState::Free, None),
        };
        out.push(PoolVf {
            vf_pci: pci,
            pf: slot.pf.name.clone(),
            vf_index: slot.index,
            netdev: slot.netdev.clone(),
            driver: slot.driver.clone(),
            numa_node: slot.numa,
            state,
            owner: lease.map(|l| l.owner.clone()),
            reason,
        });
    }
    out
}

pub fn status(pool: &Pool, pools: &[Pool], host: &HostView, leases: &[Lease]) -> PoolStatus {
    let vfs = pool_vfs(pool, pools, host, leases);
    let count = |s: VfState| vfs.iter().filter(|v| v.state == s).count();
    let mut unhealthy_reasons = BTreeMap::new();
    for v in vfs.iter().filter(|v| v.state == VfState::Unhealthy) {
        let r = v.reason.clone().unwrap_or_else(|| "unknown".into());
        *unhealthy_reasons.entry(r).or_insert(0) += 1;
    }
    PoolStatus {
        unhealthy_reasons,
        name: pool.name.clone(),
        policy: pool.policy,
        selectors: pool.selectors.clone(),
        total: vfs.len(),
        free: count(VfState::Free),
        leased: count(VfState::Leased),
        unhealthy: count(VfState::Unhealthy),
    }
}

/// A VF slot an acquire may take, known from its PF alone (the VF is read once picked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub pf_pci: PciAddr,
    pub index: u16,
    pub numa: Option<u32>,
}

/// Orders `free` the way `policy` picks: the first is taken, or the next when it proves
/// unhealthy. VFs on NUMA node `numa` come first when any is there. `leased_per_pf`
/// counts every live lease on each PF (whatever its pool): `spread` takes the least
/// loaded PF, `pack` the most loaded; ties go to the lowest PF address and VF index.
pub fn rank(
    policy: Policy,
    free: &mut [Candidate],
    leased_per_pf: &HashMap<PciAddr, usize>,
    numa: Option<u32>,
) {
    let numa = numa.filter(|n| free.iter().any(|c| c.numa == Some(*n)));
    let load = |c: &Candidate| leased_per_pf.get(&c.pf_pci).copied().unwrap_or(0);
    free.sort_by_key(|c| {
        let away = numa.is_some() && c.numa != numa;
        let load = match policy {
            Policy::FirstFit => 0,
            Policy::Spread => load(c),
            Policy::Pack => usize::MAX - load(c),
        };
        (away, load, c.pf_pci, c.index)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(pf: u8, index: u16, numa: u32) -> Candidate {
        Candidate {
            pf_pci: PciAddr::new(0, pf, 0, 0),
            index,
            numa: Some(numa),
        }
    }

    #[test]
    fn policies() {
        let all = [cand(1, 1, 0), cand(2, 1, 1), cand(1, 0, 0), cand(2, 0, 1)];
        let mut load = HashMap::new();
        load.insert(PciAddr::new(0, 1, 0, 0), 3);
        load.insert(PciAddr::new(0, 2, 0, 0), 1);
        let order = |pol, numa| {
            let mut v = all.to_vec();
            rank(pol, &mut v, &load, numa);
            v.iter()
                .map(|c| (c.pf_pci.bus, c.index))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(Policy::FirstFit, None),
            [(1, 0), (1, 1), (2, 0), (2, 1)]
        );
        assert_eq!(
            order(Policy::Spread, None),
            [(2, 0), (2, 1), (1, 0), (1, 1)]
        );
        assert_eq!(order(Policy::Pack, None), [(1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(
            order(Policy::FirstFit, Some(1)),
            [(2, 0), (2, 1), (1, 0), (1, 1)]
        );
        assert_eq!(order(Policy::Pack, Some(1))[0], (2, 0));
        assert_eq!(
            order(Policy::Spread, Some(7))[0],
            (2, 0),
            "no VF on node 7: any"
        );
        let mut none: Vec<Candidate> = Vec::new();
        rank(Policy::FirstFit, &mut none, &load, None);
        assert!(none.is_empty());
    }

    /// `pool show -o json` prints these names.
    #[test]
    fn vf_states_are_the_json_contract() {
        for (st, name) in [
            (VfState::Free, "free"),
            (VfState::Leased, "leased"),
            (VfState::Unhealthy, "unhealthy"),
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), name);
            assert_eq!(st.to_string(), name);
        }
    }

    #[test]
    fn names_and_policies_parse() {
        assert!(validate_pool_name("gold-1.a_b").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert_eq!(validate_pool_name(bad).unwrap_err().field, "pool");
        }
        assert_eq!("pack".parse::<Policy>().unwrap(), Policy::Pack);
        assert_eq!(
            "best".parse::<Policy>().unwrap_err().to_string(),
            "invalid policy 'best': first-fit, spread or pack"
        );
    }
}
