//! Fault points for the crash tests.
//!
//! `VFPOOL_FAULT=acquire:after-row` (or a comma-separated list) makes the process kill itself
//! with SIGKILL at that point: no destructor runs, no transaction commits, nothing is flushed.
//! Compiled in always, read only from the environment, once.
//!
//! Points, in order: `acquire:after-row`, `acquire:mid-pf` (after the first PF-side knob),
//! `acquire:after-pf`, `acquire:after-driver`, `acquire:after-netdev`; `release:after-mark`,
//! `release:mid-pf`, `release:after-pf`, `release:after-netdev`, `release:after-driver`.
//! The VM layer's: `vm-start:after-acquire` (a VF NIC's lease made, not yet recorded on
//! the VM); the libvirt hook's: `domain-prepare:after-acquire` (one of a domain's VFs
//! leased, the next not yet).

use std::sync::OnceLock;

pub const POINTS: [&str; 10] = [
    "acquire:after-row",
    "acquire:mid-pf",
    "acquire:after-pf",
    "acquire:after-driver",
    "acquire:after-netdev",
    "release:after-mark",
    "release:mid-pf",
    "release:after-pf",
    "release:after-netdev",
    "release:after-driver",
];

/// The VM layer's points ([`crate::vm`]).
pub const VM_POINTS: [&str; 1] = ["vm-start:after-acquire"];

/// The libvirt hook's points ([`crate::domain`]).
pub const DOMAIN_POINTS: [&str; 1] = ["domain-prepare:after-acquire"];

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("VFPOOL_FAULT")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    })
}

/// Kills the process with SIGKILL if `point` is armed.
pub fn point(point: &str) {
    if armed().iter().any(|a| a == point) {
        eprintln!("vfpool: fault point {point} reached; SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // Not reached: SIGKILL cannot be caught. Should raise fail, stop all the same.
        std::process::abort();
    }
}
