//! The PF cache: the host's SR-IOV PFs as last read, so that an acquire reads only the
//! pool's PFs again (VF count, driver, link) instead of scanning the host.

use std::time::{Duration, Instant};

use vfpool_host::Sysfs;
use vfpool_model::{PciAddr, PfRef};

use crate::error::EngineError;
use crate::hostview::HostView;
use crate::selector::PoolSelector;

/// How long [`pool_pfs`] trusts the set of PFs it read (a PF hot-plugged since is
/// seen after this, or at once when a pool would otherwise be exhausted).
const PF_SET_MAX_AGE: Duration = Duration::from_secs(30);

/// PFs read earlier, when, and which: every SR-IOV PF of the host (`named: None`), or only
/// those at these addresses (read for pools whose selectors name their PFs).
pub(crate) struct PfCache {
    view: HostView,
    at: Instant,
    named: Option<Vec<PciAddr>>,
}

/// Whether [`pool_pfs`] may answer from PFs read earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PfRead {
    /// PFs read earlier may serve (the pool's own are read again).
    MayKeep,
    /// Read the host's PFs again (a pool seemed exhausted in a kept view).
    Fresh,
}

/// The host's PFs for an acquire from a pool with `selectors`. A pool whose selectors name
/// PFs needs only those; another needs every SR-IOV PF of the host. PFs read before are kept
/// in `cache` for up to [`PF_SET_MAX_AGE`] (unless [`PfRead::Fresh`]) and the pool's are read again
/// (VF count, driver, link state: what a split, a rebind or a cable changes); otherwise the
/// PFs the pool needs are read. Returns the view and whether it was kept.
pub(crate) fn pool_pfs<'c>(
    cache: &'c mut Option<PfCache>,
    fs: &Sysfs,
    selectors: &[PoolSelector],
    read: PfRead,
) -> Result<(&'c HostView, bool), EngineError> {
    let named = crate::selector::named_pfs(selectors);
    let mut kept = read == PfRead::MayKeep && fits(cache.as_ref(), named.as_deref());
    if kept && let Some(c) = cache.as_mut() {
        for pci in selected(&c.view, selectors) {
            kept &= c.view.refresh_pf(fs, pci)?;
        }
    }
    let entry = match cache.take() {
        Some(c) if kept => c,
        _ => {
            let view = match &named {
                Some(refs) => HostView::scan_named_pfs(fs, refs)?,
                None => HostView::scan_pfs(fs)?,
            };
            let named = named.map(|_| view.pfs.iter().map(|p| p.pci).collect());
            PfCache {
                view,
                at: Instant::now(),
                named,
            }
        }
    };
    Ok((&cache.insert(entry).view, kept))
}

/// Whether `cache` may serve a pool that names `named` PFs (or all PFs: `None`): not too
/// old, and holding every PF the pool names.
fn fits(cache: Option<&PfCache>, named: Option<&[&PfRef]>) -> bool {
    cache.is_some_and(|c| {
        c.at.elapsed() < PF_SET_MAX_AGE
            && match (&c.named, named) {
                (None, _) => true,
                (Some(have), Some(refs)) => refs.iter().all(|r| {
                    c.view
                        .pfs
                        .iter()
                        .any(|p| have.contains(&p.pci) && p.facts.is(r))
                }),
                (Some(_), None) => false,
            }
    })
}

/// The PFs of `view` that `selectors` take a VF of.
fn selected(view: &HostView, selectors: &[PoolSelector]) -> Vec<PciAddr> {
    view.pfs
        .iter()
        .filter(|p| {
            let n = u16::try_from(p.total_vfs).unwrap_or(u16::MAX);
            (0..n).any(|i| crate::selector::selects(selectors, &p.facts, i))
        })
        .map(|p| p.pci)
        .collect()
}

/// The addresses of the PFs a pool with `selectors` takes VFs of, for locking them before
/// they are read: from PFs read earlier when they may serve (the acquire reads the pool's
/// PFs again under their locks), else read now.
pub(crate) fn pool_pf_addrs(
    cache: &mut Option<PfCache>,
    fs: &Sysfs,
    selectors: &[PoolSelector],
) -> Result<Vec<PciAddr>, EngineError> {
    let named = crate::selector::named_pfs(selectors);
    if let Some(c) = cache.as_ref()
        && fits(Some(c), named.as_deref())
    {
        return Ok(selected(&c.view, selectors));
    }
    let (view, _) = pool_pfs(cache, fs, selectors, PfRead::MayKeep)?;
    Ok(selected(view, selectors))
}
