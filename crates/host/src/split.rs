//! Changing a PF's VF count safely.
//!
//! The kernel answers EBUSY when `sriov_numvfs` goes from one non-zero count to another,
//! so a change writes 0 first. After the write the VFs' `virtfnN` links and, when the VF
//! driver autoprobes, their netdevs are awaited; a split that does not complete is undone
//! (the NIC goes back to 0) and reported, never left half-done.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::{HostError, Inventory, Nic, Sysfs};

/// Drivers that bind a VF without giving it a netdev.

#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Sets `sriov_drivers_autoprobe` first; `None` keeps what the PF has.
    pub autoprobe: Option<bool>,
    /// How long to wait for the VFs (real NICs take 0.3 to 0.5 s per VF).
    pub timeout: Duration,
    pub poll: Duration,
    /// After the VFs are ready, how long the PF's link must stay up before the split counts
    /// as done, when it was up before. Enabling SR-IOV resets some PFs (igb): their link
    /// drops a moment after `sriov_numvfs` is written and comes back a second or two later,
    /// and until then their VFs are unhealthy. Zero skips the wait (the simulated host
    /// keeps its carrier).
    pub settle: Duration,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            autoprobe: None,
            timeout: Duration::from_secs(180),
            poll: Duration::from_millis(20),
            settle: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitReport {
    pub nic: String,
    pub pci: vfpool_model::PciAddr,
    pub num_vfs: u32,
    pub previous: u32,
    pub changed: bool,
    pub millis: u128,
    /// Whether the PF's link was up and stable at the end (None: not waited for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_settled: Option<bool>,
}

/// Checks a requested VF count against the PF: 1..=total.
pub fn check_count(nic: &Nic, value: &str) -> Result<u32, HostError> {
    let bad = || HostError::VfCountOutOfRange {
        nic: nic.name.clone(),
        value: value.to_owned(),
        total: nic.total_vfs,
    };
    let n: u32 = value.trim().parse().map_err(|_| bad())?;
    if n == 0 || n > nic.total_vfs {
        return Err(bad());
    }
    Ok(n)
}

fn errno_hint(e: &io::Error, value: u32, nic: &Nic) -> String {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EBUSY) => "the kernel answered EBUSY (VFs are enabled already, or a VF is still in use)".into(),
        Some(Errno::EINVAL) => format!(
            "the kernel answered EINVAL (the driver refused {value}; sriov_totalvfs is {})",
            nic.total_vfs
        ),
        Some(Errno::ENOMEM) => "the kernel answered ENOMEM (not enough PCI bus numbers or MMIO space for the VFs: enable SR-IOV in the BIOS, or boot with pci=realloc)".into(),
        Some(Errno::ENOENT) => "the kernel answered ENOENT (no PF driver bound, or the driver has no SR-IOV support)".into(),
        Some(Errno::EPERM | Errno::EACCES) => "permission denied (vfpool must run as root)".into(),
        _ => format!("the kernel answered: {e}"),
    }
}

fn read_numvfs(fs: &Sysfs, dir: &Path) -> u32 {
    fs.read_num_opt(&dir.join("sriov_numvfs"))
        .ok()
        .flatten()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

fn write_numvfs(fs: &Sysfs, nic: &Nic, value: u32) -> Result<(), HostError> {
    fs.write(&nic.dir.join("sriov_numvfs"), &value.to_string())
        .map_err(|e| {
            let left_at = read_numvfs(fs, &nic.dir);
            HostError::NumVfs {
                nic: nic.name.clone(),
                value,
                left_at,
                hint: errno_hint(&e, value, nic),
                source: e,
            }
        })
}

/// Sets `nic` to `n` VFs (1..=total) and waits for them; `progress(ready, n)` is called as
/// VFs become ready.
pub fn split(
    fs: &Sysfs,
    nic: &Nic,
    n: u32,
    opts: &SplitOptions,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SplitReport, HostError> {
    let start = Instant::now();
    if n == 0 || n > nic.total_vfs {
        return Err(HostError::VfCountOutOfRange {
            nic: nic.name.clone(),
            value: n.to_string(),
            total: nic.total_vfs,
        });
    }
    let previous = read_numvfs(fs, &nic.dir);
    let current_probe = fs
        .read_num_opt(&nic.dir.join("sriov_drivers_autoprobe"))?
        .map(|v| v != 0);
    let probe_change = matches!((opts.autoprobe, current_probe), (Some(a), Some(b)) if a != b);
    if previous == n && !probe_change {
        progress(n, n);
        return Ok(SplitReport {
            nic: nic.name.clone(),
            pci: nic.pci,
            num_vfs: n,
            previous,
            changed: false,
            millis: start.elapsed().as_millis(),
            link_settled: None,
        });
    }
    // Read before anything is written: going through 0 resets an igb PF too, so its link
    // may already be down when the new count is written.
    let pf_was_up = pf_operstate(fs, nic).as_deref() == Some("up");
    if previous != 0 {
        write_numvfs(fs, nic, 0)?;
    }
    if let Some(a) = opts.autoprobe {
        let p = nic.dir.join("sriov_drivers_autoprobe");
        let v = if a { "1" } else { "0" };
        fs.write(&p, v).map_err(|e| HostError::Write {
            path: p.clone(),
            value: v.into(),
            source: e,
        })?;
    }
    let autoprobe = opts.autoprobe.or(current_probe).unwrap_or(true);
    write_numvfs(fs, nic, n)?;
    tracing::info!(pf = %nic.name, pci = %nic.pci, vfs = n, "sriov_numvfs written");

    // A timeout too large to add to the clock waits forever rather than panicking.
    let deadline = start.checked_add(opts.timeout);
    loop {
        let (ready, missing) = count_ready(fs, &nic.dir, n, autoprobe)?;
        progress(ready, n);
        if ready == n {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = fs.write(&nic.dir.join("sriov_numvfs"), "0");
            return Err(HostError::SplitTimeout {
                nic: nic.name.clone(),
                ready,
                total: n,
                waited: opts.timeout,
                missing,
            });
        }
        std::thread::sleep(opts.poll);
    }
    let link_settled =
        (pf_was_up && !opts.settle.is_zero()).then(|| wait_link_settled(fs, nic, opts, deadline));
    Ok(SplitReport {
        nic: nic.name.clone(),
        pci: nic.pci,
        num_vfs: n,
        previous,
        changed: true,
        millis: start.elapsed().as_millis(),
        link_settled,
    })
}

fn pf_operstate(fs: &Sysfs, nic: &Nic) -> Option<String> {
    let netdev = nic.netdevs.first()?;
    fs.read_opt(&nic.dir.join("net").join(netdev).join("operstate"))
        .ok()
        .flatten()
}

/// Waits until the PF's link has been up for `opts.settle` without a break, or the
/// deadline passes (then the split still stands, with a warning: the VFs exist).
fn wait_link_settled(
    fs: &Sysfs,
    nic: &Nic,
    opts: &SplitOptions,
    deadline: Option<Instant>,
) -> bool {
    wait_link_up(fs, nic, opts.settle, opts.poll, deadline)
}

/// Waits until the PF's link (its first netdev's `operstate`) has been up for `settle`
/// without a break; false when `deadline` passes first.
pub fn wait_link_up(
    fs: &Sysfs,
    nic: &Nic,
    settle: Duration,
    poll: Duration,
    deadline: Option<Instant>,
) -> bool {
    let mut up_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if pf_operstate(fs, nic).as_deref() == Some("up") {
            let since = *up_since.get_or_insert(now);
            if now.duration_since(since) >= settle {
                return true;
            }
        } else {
            up_since = None;
        }
        if deadline.is_some_and(|d| now >= d) {
            tracing::warn!(pf = %nic.name, "the PF's link did not come up");
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// How many of the `n` VFs are there (and, with autoprobe, bound with a netdev).
fn count_ready(
    fs: &Sysfs,
    pf_dir: &Path,
    n: u32,
    autoprobe: bool,
) -> Result<(u32, String), HostError> {
    let mut ready = 0;
    let mut missing = Vec::new();
    for i in 0..n {
        let link = pf_dir.join(format!("virtfn{i}"));
        if !fs.exists(&link) {
            missing.push(format!("virtfn{i} link"));
            continue;
        }
        if autoprobe {
            let driver = fs.link_name(&link.join("driver"))?;
            match driver {
                None => {
                    missing.push(format!("VF {i} driver"));
                    continue;
                }
                Some(d) if vfpool_model::gives_netdev(&d) => {
                    if fs.list(&link.join("net"))?.is_empty() {
                        missing.push(format!("VF {i} netdev"));
                        continue;
                    }
                }
                Some(_) => {}
            }
        }
        ready += 1;
    }
    let mut text = missing
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > 3 {
        text.push_str(&format!(" and {} more", missing.len() - 3));
    }
    if text.is_empty() {
        text = "nothing missing".into();
    }
    Ok((ready, format!("missing: {text}")))
}

/// Sets `nic` back to 0 VFs and waits until its VFs are gone.
pub fn restore(fs: &Sysfs, nic: &Nic, timeout: Duration) -> Result<SplitReport, HostError> {
    let start = Instant::now();
    let previous = read_numvfs(fs, &nic.dir);
    if previous != 0 {
        write_numvfs(fs, nic, 0)?;
        while fs.exists(&nic.dir.join("virtfn0")) {
            if start.elapsed() > timeout {
                return Err(HostError::SplitTimeout {
                    nic: nic.name.clone(),
                    ready: 0,
                    total: 0,
                    waited: timeout,
                    missing: "virtfn links are still present".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(pf = %nic.name, pci = %nic.pci, "restored to 0 VFs");
    }
    Ok(SplitReport {
        nic: nic.name.clone(),
        pci: nic.pci,
        num_vfs: 0,
        previous,
        changed: previous != 0,
        millis: start.elapsed().as_millis(),
        link_settled: None,
    })
}

/// Re-reads one NIC after a change.
pub fn rescan_nic(fs: &Sysfs, nic: &str) -> Result<Nic, HostError> {
    let inv = Inventory::scan(fs)?;
    Ok(inv.find_sriov_pf(nic)?.clone())
}

/// Splits several NICs at once, each on its own thread (a NIC's VFs take 0.3 to 0.5 s
/// each on real hardware, so a server's ports are best done in parallel). Every NIC is
/// attempted; the results come back in the order given.
pub fn split_many(
    fs: &Sysfs,
    work: &[(Nic, u32)],
    opts: &SplitOptions,
    progress: &(dyn Fn(&str, u32, u32) + Sync),
) -> Vec<Result<SplitReport, HostError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = work
            .iter()
            .map(|(nic, n)| {
                s.spawn(move || {
                    split(fs, nic, *n, opts, &|ready, total| {
                        progress(&nic.name, ready, total)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(work)
            .map(|(h, (nic, n))| {
                h.join().unwrap_or_else(|_| {
                    Err(HostError::NumVfs {
                        nic: nic.name.clone(),
                        value: *n,
                        left_at: read_numvfs(fs, &nic.dir),
                        hint: "the split thread panicked".into(),
                        source: io::Error::other("panic"),
                    })
                })
            })
            .collect()
    })
}
