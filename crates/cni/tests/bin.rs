//! The `vfpool-cni` binary's spec-level behaviour: VERSION, usage, and error results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

fn run(vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfpool-cni"));
    cmd.env_clear().stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn version_prints_the_supported_versions() {
    let out = run(&[("CNI_COMMAND", "VERSION")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn no_command_prints_usage_on_stderr_only() {
    for vars in [&[][..], &[("CNI_COMMAND", "")][..]] {
        let out = run(vars);
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "stdout is for results");
        let text = String::from_utf8(out.stderr).unwrap();
        assert!(text.starts_with("vfpool-cni: a CNI plugin"), "{text}");
        assert!(
            text.contains("CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0")
        );
    }
}

#[test]
fn bad_environments_get_error_results() {
    let out = run(&[("CNI_COMMAND", "ADDD")]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 4);
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["msg"],
        "invalid CNI_COMMAND 'ADDD': ADD, DEL, CHECK, STATUS, GC or VERSION"
    );
    let out = run(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], 4);
    assert_eq!(
        v["msg"],
        "missing CNI_NETNS, CNI_IFNAME for ADD: it needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME"
    );
}
