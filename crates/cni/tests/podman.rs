//! Tier 2, as root: a real runtime drives the plugin. Debian's podman 4.3 with
//! `--network-backend cni` runs a busybox rootfs (`--rootfs`) on a conflist of the test's
//! own; the container sees its VF stand-in with its address, and the container's exit
//! (`--rm`) gives the VF back.
//!
//! podman runs inside the test host namespace (setns before exec) and in a private mount
//! namespace where the cgroup v2 mount is hidden: this sandbox mounts cgroup v1
//! controllers beside a v2 hierarchy, and crun refuses that "hybrid" layout. Its
//! `containers.conf` disables cgroups and default ulimits (RLIMIT_NOFILE cannot be raised
//! here). podman's cleanup process (which runs DEL) does not get podman's environment,
//! so the conflist names the state, the sysfs root and the netlink backend itself
//! (`vfpoolState`, `vfpoolSysfsRoot`, `vfpoolNetlink`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Lab, need_cni_plugins, need_package, run_in, skip_unless_root};
use serde_json::json;

#[test]
fn podman_runs_a_container_on_a_vf_and_gives_it_back() {
    if skip_unless_root("podman_runs_a_container_on_a_vf_and_gives_it_back") {
        return;
    }
    need_cni_plugins();
    need_package("podman", "/usr/bin/podman");
    need_package("busybox-static", "/usr/bin/busybox");
    let lab = Lab::new("eno49", 1);
    let p = lab.state().join("podman");
    let rootfs = p.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "run"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "ip"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    let (cni_dir, plugins) = (p.join("cni"), p.join("plugins"));
    std::fs::create_dir_all(&cni_dir).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vfpool-cni"), plugins.join("vfpool-cni"))
        .unwrap();
    let conflist = json!({"cniVersion": "0.4.0", "name": "vfnet", "plugins": [{
        "type": "vfpool-cni", "pool": "p",
        "vfpoolState": lab.state(), "vfpoolSysfsRoot": lab.sysfs(), "vfpoolNetlink": "kernel",
        "ipam": {"type": "host-local", "dataDir": lab.ipam_dir(),
                 "ranges": [[{"subnet": "10.2.0.0/24"}]]}}]});
    std::fs::write(cni_dir.join("vfnet.conflist"), conflist.to_string()).unwrap();
    let conf = p.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = []\ncgroups = \"disabled\"\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\n\
             cni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\n",
            cni_dir.display(),
            plugins.display()
        ),
    )
    .unwrap();
    let podman = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; exec podman --root {p}/root --runroot {p}/runroot \
         --storage-driver vfs --network-backend cni run --rm --network vfnet --rootfs {p}/rootfs \
         /bin/ip addr show",
        p = p.display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &podman])
        .env("CONTAINERS_CONF", &conf);
    let out = run_in(&lab.host, c, b"");
    assert_eq!(out.code, Some(0), "podman: {out:#?}");
    let s = &lab.standins[0];
    // The container saw its VF (the stand-in's MAC) under eth0 with host-local's address.
    assert!(out.stdout.contains(&s.mac), "{}", out.stdout);
    assert!(out.stdout.contains("inet 10.2.0.2/24"), "{}", out.stdout);
    assert!(out.stdout.contains("eth0"), "{}", out.stdout);
    // The container is gone: the lease too, the stand-in back in the host.
    lab.assert_all_back("after podman run --rm");
    assert!(lab.ipam_allocations("vfnet").is_empty());
}
