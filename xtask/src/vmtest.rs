//! `cargo xtask vmtest`: vfpool against real Linux kernels with real (emulated) SR-IOV NICs.
//!
//! 1. host prerequisites: QEMU with the `igb` device (bookworm-backports on bookworm);
//! 2. the guest: Debian's kernel package and busybox-static, cached in `target/vmtest/debs`;
//! 3. vfpool built statically in its own target directory;
//! 4. an initramfs with busybox, `ip`, `jq`, the modules, vfpool, `tests/vm/init` and the
//!    scenario scripts;
//! 5. every configuration booted in parallel under TCG, each with a deadline; the guest reports
//!    on its second serial port, the console goes to a log file;
//! 6. one `PASS`/`FAIL <config>/<scenario>` line each, then `N passed, M failed`.

mod binary;
mod checks;
mod host;
mod initramfs;
mod kernel;
mod plan;
mod qemu;
mod report;
mod run;
mod sh;

pub use run::main;
