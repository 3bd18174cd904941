//! Locks per PF, shared by every vfpool process on the host.
//!
//! A change of a PF's VF count (split, restore, boot apply) destroys every VF of the PF, so
//! it must not run beside anything that reads a VF and then acts on it: the check (no VF
//! leased) and the act (`sriov_numvfs`) hold the PF's lock exclusively, and an acquire or a
//! release holds it shared from the moment it reads a VF until its lease is settled. Two
//! acquires on one PF do not wait for each other; a split of one PF never stalls acquires
//! on another.
//!
//! The locks are `flock`s of `STATE/locks/pf-<PCI>.lock`: the kernel wakes the next waiter
//! when one is freed and frees the lock of a killed process, so a crash never leaves a PF
//! locked.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use vfpool_model::PciAddr;

use crate::error::EngineError;

/// How a PF is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Acquire, release: the PF's VFs must stay as they are.
    Shared,
    /// Split, restore: the PF's VFs are destroyed and made again.
    Exclusive,
}

/// The directory of the PF locks in a state directory.
pub fn dir_in(state: &Path) -> PathBuf {
    state.join("locks")
}

/// Held PF locks; each is released when this is dropped (or by the kernel when the
/// process dies).
#[derive(Debug, Default)]
pub struct PfLocks {
    held: Vec<(PciAddr, File)>,
}

impl PfLocks {
    /// Takes the locks of `pfs` (in address order, so that two processes taking several
    /// never wait for each other in a circle), waiting for each.
    pub fn take(state: &Path, pfs: &BTreeSet<PciAddr>, hold: Hold) -> Result<Self, EngineError> {
        let mut locks = Self::default();
        for pci in pfs {
            locks.add(state, *pci, hold)?;
        }
        Ok(locks)
    }

    /// Takes one more PF's lock, waiting for it; a PF held already is kept as it is.
    pub fn add(&mut self, state: &Path, pci: PciAddr, hold: Hold) -> Result<(), EngineError> {
        if self.holds(pci) {
            return Ok(());
        }
        let f = lock_file(state, &format!("pf-{pci}.lock"), hold)?;
        tracing::trace!(pf = %pci, ?hold, "pf lock taken");
        self.held.push((pci, f));
        Ok(())
    }

    pub fn holds(&self, pci: PciAddr) -> bool {
        self.held.iter().any(|(p, _)| *p == pci)
    }

    /// Whether the lock of `pci` is free right now (nobody holds it in any mode), without
    /// waiting. For tests and diagnostics.
    pub fn is_free(state: &Path, pci: PciAddr) -> bool {
        let path = dir_in(state).join(format!("pf-{pci}.lock"));
        match File::options().write(true).open(path) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => true,
        }
    }
}

/// Opens `STATE/locks/NAME` (made with its directory on first use) and `flock`s it in
/// `hold` mode, waiting for it.
fn lock_file(state: &Path, name: &str, hold: Hold) -> Result<File, EngineError> {
    let dir = dir_in(state);
    let path = dir.join(name);
    let err = |source| EngineError::Lock {
        path: path.clone(),
        source,
    };
    let open = || {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    };
    let f = match open() {
        Ok(f) => f,
        // The first lock of this state directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(err)?;
            open().map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    match hold {
        Hold::Shared => f.lock_shared(),
        Hold::Exclusive => f.lock(),
    }
    .map_err(err)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_and_shared_shares() {
        let d = tempfile::tempdir().unwrap();
        let a = PciAddr::new(0, 3, 0, 0);
        let b = PciAddr::new(0, 4, 0, 0);
        let s1 = PfLocks::take(d.path(), &[a].into(), Hold::Shared).unwrap();
        // A second shared holder does not wait.
        let s2 = PfLocks::take(d.path(), &[a].into(), Hold::Shared).unwrap();
        assert!(!PfLocks::is_free(d.path(), a));
        // Another PF is not held by them.
        let ex_b = PfLocks::take(d.path(), &[b].into(), Hold::Exclusive).unwrap();
        drop(ex_b);
        drop((s1, s2));
        // (Another test of this binary forking a child shares our descriptors until the
        // child's exec: the lock can stay held for that moment.)
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !PfLocks::is_free(d.path(), a) {
            assert!(
                std::time::Instant::now() < until,
                "still held after the drops"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ex = PfLocks::take(d.path(), &[a].into(), Hold::Exclusive).unwrap();
        assert!(ex.holds(a) && !ex.holds(b));
        // While held exclusively, a shared taker waits until it is dropped.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = d.path().to_owned();
        let t = std::thread::spawn(move || {
            let l = PfLocks::take(&p, &[a].into(), Hold::Shared).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(ex);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
    }
}

/// A VM's start or stop, held from its first read to its last write: a stop waits for a
/// start of the same VM under way (in this process or another) instead of finding its
/// leases half-acquired, and the other way round. An exclusive `flock` of
/// `STATE/locks/vm-<NAME>.lock`, freed on drop or by the kernel when the process dies.
#[derive(Debug)]
pub struct VmLock {
    _file: File,
}

impl VmLock {
    /// Takes VM `name`'s lock, waiting for it. `name` must be a valid VM name (it is a
    /// file name here).
    pub fn take(state: &Path, name: &str) -> Result<Self, EngineError> {
        let f = lock_file(state, &format!("vm-{name}.lock"), Hold::Exclusive)?;
        Ok(Self { _file: f })
    }
}
