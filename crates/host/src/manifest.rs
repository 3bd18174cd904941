//! A normalized description of every sysfs entry vfpool reads or writes for one PF and its
//! VFs. The real-kernel tier prints it in a real igb guest and on the simulated host and
//! diffs the two: the simulator's layout must be the kernel's.

use std::collections::BTreeSet;
use std::path::Path;

use crate::{HostError, Nic, Sysfs};

/// Attributes of a PF directory vfpool uses, and whether their value is part of the
/// manifest (values that differ between models, like ids or NUMA nodes, are not).
const PF_ATTRS: &[(&str, bool)] = &[
    ("class", true),
    ("vendor", false),
    ("device", false),
    ("numa_node", false),
    ("driver_override", false),
    ("sriov_totalvfs", true),
    ("sriov_numvfs", true),
    ("sriov_drivers_autoprobe", true),
    ("sriov_offset", false),
    ("sriov_stride", false),
    ("sriov_vf_device", false),
];
const VF_ATTRS: &[(&str, bool)] = &[
    ("class", true),
    ("vendor", false),
    ("device", false),
    ("numa_node", false),
    ("driver_override", true),
];
const NETDEV_ATTRS: &[&str] = &["address", "operstate", "mtu", "type", "ifindex"];
const PF_NETDEV_ATTRS: &[&str] = &["speed", "carrier"];
/// Netdev attributes whose value is part of the manifest: what vfpool reads for health and
/// inventory (`address` is described, not given: it differs from host to host).
const NETDEV_VALUES: &[&str] = &[
    "address",
    "addr_len",
    "broadcast",
    "flags",
    "mtu",
    "operstate",
    "type",
];
/// Also valued for the PF: carrier and speed (vfpool reads the PF's). A VF netdev nobody
/// brought up answers EINVAL to both on a real kernel, which a file cannot; vfpool does not
/// read them, so they are only listed.
const PF_NETDEV_VALUES: &[&str] = &["carrier", "speed"];

fn kind(p: &Path) -> &'static str {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            if p.exists() {
                "link"
            } else {
                "dangling-link"
            }
        }
        Ok(m) if m.is_dir() => "dir",
        Ok(_) => "file",
        Err(_) => "missing",
    }
}

fn value(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "<unreadable>".into())
}

/// A netdev attribute's value as the manifest shows it: the value, or the kind of error
/// reading it gave (`<InvalidInput>` for EINVAL); a MAC address by its kind only.
fn netdev_value(p: &Path, attr: &str) -> String {
    match std::fs::read_to_string(p) {
        Ok(v) if attr == "address" => mac_kind(v.trim()),
        Ok(v) => v.trim().to_owned(),
        // EINVAL (a down link's carrier and speed) is InvalidInput.
        Err(e) => format!("<{:?}>", e.kind()),
    }
}

/// `zero`, `multicast`, `unicast-local` (locally administered, like a random MAC) or
/// `unicast-universal`.
fn mac_kind(mac: &str) -> String {
    let Ok(m) = mac.parse::<vfpool_model::MacAddr>() else {
        return format!("not a MAC ({mac})");
    };
    if m.is_zero() {
        "zero".into()
    } else if m.0[0] & 1 == 1 {
        "multicast".into()
    } else if m.0[0] & 2 == 2 {
        "unicast-local".into()
    } else {
        "unicast-universal".into()
    }
}

fn link_last(p: &Path) -> String {
    std::fs::read_link(p)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn attrs(out: &mut BTreeSet<String>, prefix: &str, dir: &Path, list: &[(&str, bool)]) {
    for (a, with_value) in list {
        let p = dir.join(a);
        let k = kind(&p);
        if *with_value && k == "file" {
            out.insert(format!("{prefix}/{a} file = {}", value(&p)));
        } else {
            out.insert(format!("{prefix}/{a} {k}"));
        }
    }
}

fn netdev(out: &mut BTreeSet<String>, prefix: &str, fs: &Sysfs, dir: &Path, extra: &[&str]) {
    let names: Vec<String> = std::fs::read_dir(dir.join("net"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.insert(format!(
        "{prefix}/net {} ({} netdevs)",
        kind(&dir.join("net")),
        names.len()
    ));
    for n in names {
        let nd = dir.join("net").join(&n);
        for a in NETDEV_ATTRS.iter().chain(extra) {
            out.insert(format!("{prefix}/net/IF/{a} {}", kind(&nd.join(a))));
        }
        let pf_values = if prefix == "pf" {
            PF_NETDEV_VALUES
        } else {
            &[]
        };
        for a in NETDEV_VALUES.iter().chain(pf_values) {
            let v = netdev_value(&nd.join(a), a);
            // The PF's own MAC is the machine's; only whether it is a unicast one matters.
            let v = if prefix == "pf" && *a == "address" && v.starts_with("unicast") {
                "unicast".to_owned()
            } else {
                v
            };
            out.insert(format!("{prefix}/net/IF/{a} = {v}"));
        }
        out.insert(format!(
            "{prefix}/net/IF/device {}",
            kind(&nd.join("device"))
        ));
        out.insert(format!(
            "class/net/IF(of {prefix}) {}",
            kind(&fs.path(format!("class/net/{n}")))
        ));
    }
}

/// The manifest lines of `nic`, sorted, one per distinct fact.
pub fn manifest(fs: &Sysfs, nic: &Nic) -> Result<Vec<String>, HostError> {
    let mut out = BTreeSet::new();
    let dir = &nic.dir;
    attrs(&mut out, "pf", dir, PF_ATTRS);
    for l in ["driver", "iommu_group"] {
        out.insert(format!(
            "pf/{l} {} -> {}",
            kind(&dir.join(l)),
            if l == "driver" {
                link_last(&dir.join(l))
            } else {
                "N".into()
            }
        ));
    }
    out.insert(format!(
        "bus/pci/devices/PF {}",
        kind(&fs.path(format!("bus/pci/devices/{}", nic.pci)))
    ));
    out.insert(format!(
        "bus/pci/drivers_probe {}",
        kind(&fs.path("bus/pci/drivers_probe"))
    ));
    if let Some(d) = &nic.driver {
        for f in ["bind", "unbind"] {
            out.insert(format!(
                "bus/pci/drivers/PFDRIVER/{f} {}",
                kind(&fs.path(format!("bus/pci/drivers/{d}/{f}")))
            ));
        }
    }
    netdev(&mut out, "pf", fs, dir, PF_NETDEV_ATTRS);
    let geometry =
        ["sriov_offset", "sriov_stride"].map(|a| value(&dir.join(a)).parse::<u32>().ok());
    for vf in &nic.vfs {
        // The PCI address the SR-IOV capability gives VF N (routing ID of the PF + offset +
        // N * stride), against the one its virtfnN link names.
        let by_geometry = match geometry {
            [Some(offset), Some(stride)] => u32::from(vf.index)
                .checked_mul(stride)
                .and_then(|s| offset.checked_add(s))
                .and_then(|n| nic.pci.offset_by(n)),
            _ => None,
        };
        out.insert(format!(
            "vf address {} PF + sriov_offset + N * sriov_stride",
            if by_geometry == Some(vf.pci) {
                "="
            } else {
                "!="
            }
        ));
        let link = dir.join(format!("virtfn{}", vf.index));
        out.insert(format!(
            "pf/virtfnN {} -> {}",
            kind(&link),
            if link_last(&link) == vf.pci.to_string() {
                "VF"
            } else {
                "?"
            }
        ));
        let vdir = fs.path(format!("bus/pci/devices/{}", vf.pci));
        out.insert(format!("bus/pci/devices/VF {}", kind(&vdir)));
        attrs(&mut out, "vf", &vdir, VF_ATTRS);
        let phys = vdir.join("physfn");
        out.insert(format!(
            "vf/physfn {} -> {}",
            kind(&phys),
            if link_last(&phys) == nic.pci.to_string() {
                "PF"
            } else {
                "?"
            }
        ));
        for l in ["driver", "iommu_group"] {
            out.insert(format!(
                "vf/{l} {} -> {}",
                kind(&vdir.join(l)),
                if l == "driver" {
                    link_last(&vdir.join(l))
                } else {
                    "N".into()
                }
            ));
        }
        netdev(&mut out, "vf", fs, &vdir, &[]);
        if let Some(d) = &vf.driver {
            for f in ["bind", "unbind"] {
                out.insert(format!(
                    "bus/pci/drivers/VFDRIVER/{f} {}",
                    kind(&fs.path(format!("bus/pci/drivers/{d}/{f}")))
                ));
            }
        }
        if let Some(g) = vf.iommu_group {
            out.insert(format!(
                "kernel/iommu_groups/N/devices/VF {}",
                kind(&fs.path(format!("kernel/iommu_groups/{g}/devices/{}", vf.pci)))
            ));
        }
    }
    Ok(out.into_iter().collect())
}
