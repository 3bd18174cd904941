//! What the CLI tests share: the built `vfpool` on the demo host of a state directory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `vfpool --demo --state STATE ARGS`, with none of the environment that would change
/// what it does (a fault point, another state or sysfs) and only errors logged.
pub fn vfpool(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool"));
    c.arg("--demo")
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("VFPOOL_FAULT")
        .env_remove("VFPOOL_STATE")
        .env_remove("VFPOOL_SYSFS_ROOT")
        .env_remove("VFPOOL_API")
        .env_remove("VFPOOL_TOKEN_FILE")
        .env("VFPOOL_LOG", "error");
    c
}

pub fn run(state: &Path, args: &[&str]) -> Output {
    vfpool(state, args).output().unwrap()
}

/// A command that must succeed; its stdout.
pub fn ok(state: &Path, args: &[&str]) -> String {
    let o = run(state, args);
    assert!(
        o.status.success(),
        "vfpool {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// A command that must succeed, with `-o json`; its output parsed.
pub fn json(state: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&ok(state, &a)).unwrap()
}
