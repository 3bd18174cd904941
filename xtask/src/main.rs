//! vfpool's developer tasks, run as `cargo xtask <task>`.
//!
//! This is a binary edge: errors are `anyhow` chains printed once by `main`.

use std::process::ExitCode;

mod vmtest;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  vmtest    boot real Debian kernels under QEMU (emulated igb SR-IOV NICs) and
            run vfpool's real-kernel scenarios in them; `cargo xtask vmtest --help`
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("vmtest") => vmtest::main(args.collect()),
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
