//! `vfpool libvirt-hook` driven as libvirtd drives `/etc/libvirt/hooks/qemu`: argv
//! `DOMAIN OPERATION SUB-OPERATION EXTRA`, the domain XML on stdin, an empty environment;
//! exit statuses, stderr holding only the error, the install (a hook not ours refused), and
//! `lease gc` with libvirt's runtime status files, all on the demo host.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vfpool_libvirt::{Nic, VfNic, Vm, domain_xml};
use vfpool_model::PciAddr;

use common::{json, ok, run};

/// Runs `cmd` with `xml` on stdin and no environment, as libvirtd runs its hooks.
fn with_stdin(cmd: Command, xml: &str) -> Output {
    with_stdin_env(cmd, xml, &[])
}

fn with_stdin_env(mut cmd: Command, xml: &str, env: &[(&str, &str)]) -> Output {
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `vfpool --demo --state S libvirt-hook qemu ARGS...` with `xml` on stdin.
fn hook(state: &Path, args: &[&str], xml: &str) -> Output {
    hook_env(state, args, xml, &[])
}

/// [`hook`] with these environment variables.
fn hook_env(state: &Path, args: &[&str], xml: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool"));
    c.arg("--demo")
        .arg("--state")
        .arg(state)
        .args(["libvirt-hook", "qemu"])
        .args(args);
    with_stdin_env(c, xml, env)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn leases(state: &Path) -> Vec<(String, String)> {
    let mut v: Vec<_> = json(state, &["lease", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["owner"].as_str().unwrap().to_owned(),
                l["vf_pci"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A domain passing `vfs` through as managed hostdev interfaces.
fn domain(name: &str, vfs: &[&str]) -> String {
    domain_xml(&Vm {
        name: name.into(),
        uuid: None,
        memory_mib: 512,
        vcpus: 1,
        disks: vec![],
        nics: vfs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Nic::Vf(VfNic {
                    pci: v.parse::<PciAddr>().unwrap(),
                    mac: format!("52:54:00:00:00:{i:02x}").parse().unwrap(),
                    vlan: None,
                })
            })
            .collect(),
    })
    .unwrap()
}

/// eno49 split in 3; its VFs' PCI addresses.
fn demo() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_owned();
    ok(&state, &["nic", "split", "eno49", "--vfs", "3"]);
    let vfs = json(&state, &["nic", "show", "eno49"])["vfs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pci"].as_str().unwrap().to_owned())
        .collect();
    (dir, state, vfs)
}

#[test]
fn prepare_leases_release_gives_back_and_a_taken_vf_refuses_the_start() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    let web1 = domain("web1", &[&vfs[0], &vfs[1]]);
    let o = hook(s, &["web1", "prepare", "begin", "-"], &web1);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty() && o.stdout.is_empty(), "{o:?}");
    let want = vec![
        (format!("libvirt/web1/{}", vfs[0]), vfs[0].clone()),
        (format!("libvirt/web1/{}", vfs[1]), vfs[1].clone()),
    ];
    assert_eq!(leases(s), want);
    let kinds = json(s, &["lease", "list"]);
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["owner_kind"] == "vm"),
        "{kinds}"
    );
    // libvirtd restarted and prepares again: the same leases.
    let o = hook(s, &["web1", "prepare", "begin", "-"], &web1);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(leases(s), want);
    // Another domain naming vfs[1] (and a free one): refused, one line on stderr, the
    // VF and its owner named, nothing leased.
    let o = hook(
        s,
        &["db1", "prepare", "begin", "-"],
        &domain("db1", &[&vfs[2], &vfs[1]]),
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "error: domain 'db1' cannot start: VF {} is leased to 'libvirt/web1/{}'\n",
            vfs[1], vfs[1]
        )
    );
    assert_eq!(leases(s), want);
    // Every other operation does nothing: migrate prints nothing (the XML is unchanged).
    for op in [
        ["web1", "start", "begin", "-"],
        ["web1", "started", "begin", "-"],
        ["web1", "stopped", "end", "-"],
        ["web1", "reconnect", "begin", "-"],
        ["web1", "migrate", "begin", "-"],
        ["web1", "restore", "begin", "-"],
        ["web1", "release", "begin", "-"],
    ] {
        let o = hook(s, &op, &web1);
        assert_eq!(o.status.code(), Some(0), "{op:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{op:?}: {o:?}");
        assert_eq!(leases(s), want, "{op:?}");
    }
    // The domain ends: both back; a second release is nothing to do.
    for _ in 0..2 {
        let o = hook(s, &["web1", "release", "end", "-"], &web1);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(leases(s).is_empty());
    }
    // Now db1 starts.
    let o = hook(
        s,
        &["db1", "prepare", "begin", "-"],
        &domain("db1", &[&vfs[2], &vfs[1]]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(leases(s).len(), 2);
}

#[test]
fn a_vfpool_vms_own_domain_holds_its_vf_and_no_other_domain_gets_it() {
    let (_dir, s, _vfs) = demo();
    let s = &s;
    ok(s, &["l2", "create", "l2a", "--nic", "eno49", "--sriov"]);
    ok(
        s,
        &[
            "l3",
            "create",
            "n1",
            "--l2",
            "l2a",
            "--cidr",
            "10.0.0.0/24",
            "--gateway",
            "10.0.0.1",
        ],
    );
    ok(s, &["vm", "create", "vm1", "--nic", "l3=n1,sriov"]);
    ok(s, &["vm", "start", "vm1"]);
    let xml = ok(s, &["vm", "xml", "vm1"]);
    let vf = json(s, &["vm", "show", "vm1"])["nics"][0]["vf"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = hook(s, &["vm1", "prepare", "begin", "-"], &xml);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(leases(s), vec![("vm/vm1/nic0".to_owned(), vf.clone())]);
    // The same XML under another name (a copy of the domain): refused.
    let copy = xml.replace("<name>vm1</name>", "<name>vm1-copy</name>");
    let o = hook(s, &["vm1-copy", "prepare", "begin", "-"], &copy);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("VF {vf} is leased to 'vm/vm1/nic0'")),
        "{}",
        stderr(&o)
    );
    // The domain's release leaves the VM's lease to `vm stop`.
    let o = hook(s, &["vm1", "release", "end", "-"], &xml);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(leases(s).len(), 1);
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    let o = hook(
        s,
        &["web1", "prepare", "begin", "-"],
        "<domain><devices><interface",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read the XML of domain 'web1'"),
        "{err}"
    );
    let o = hook(
        s,
        &["a/b", "prepare", "begin", "-"],
        &domain("x", &[&vfs[0]]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: invalid domain 'a/b': contains '/'; allowed: a libvirt domain name (no '/', no control characters)\n"
    );
    assert!(leases(s).is_empty());
}

#[test]
fn gc_releases_a_gone_domains_vfs_and_keeps_a_running_ones() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    for (d, vf) in [("up", &vfs[0]), ("down", &vfs[1])] {
        let o = hook(s, &[d, "prepare", "begin", "-"], &domain(d, &[vf]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    // The demo host's /run/libvirt/qemu, as libvirt's QEMU driver keeps it.
    let run_dir = s.join("demo-host/root/run/libvirt/qemu");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("up.xml"), domain("up", &[&vfs[0]])).unwrap();
    let gc: Value = json(s, &["lease", "gc"]);
    let actions = gc["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{gc}");
    assert_eq!(actions[0]["owner"], format!("libvirt/down/{}", vfs[1]));
    assert_eq!(
        leases(s),
        vec![(format!("libvirt/up/{}", vfs[0]), vfs[0].clone())]
    );
    std::fs::remove_file(run_dir.join("up.xml")).unwrap();
    ok(s, &["lease", "gc"]);
    assert!(leases(s).is_empty());
}

#[test]
fn the_installed_hook_runs_as_libvirtd_runs_it_and_a_foreign_hook_is_kept() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    let out = ok(s, &["libvirt-hook", "install"]);
    let path = s.join("demo-host/root/etc/libvirt/hooks/qemu");
    assert!(
        out.contains(&format!("installed {}", path.display())),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // libvirtd: the script itself, its argv, the XML on stdin, no environment.
    let xml = domain("web1", &[&vfs[0]]);
    let mut c = Command::new(&path);
    c.args(["web1", "prepare", "begin", "-"]);
    let o = with_stdin(c, &xml);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        leases(s),
        vec![(format!("libvirt/web1/{}", vfs[0]), vfs[0].clone())]
    );
    let mut c = Command::new(&path);
    c.args(["web1", "release", "end", "-"]);
    assert!(with_stdin(c, &xml).status.success());
    assert!(leases(s).is_empty());
    // Installing again over our own hook is fine.
    ok(s, &["libvirt-hook", "install"]);
    // Another program's hook: refused, named, left as it was.
    let mine = "#!/bin/sh\n# someone else's hook\nexit 0\n";
    std::fs::write(&path, mine).unwrap();
    let o = run(s, &["libvirt-hook", "install"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{} is a libvirt hook vfpool did not install",
            path.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine);
    // --root puts it elsewhere.
    let other = tempfile::tempdir().unwrap();
    ok(
        s,
        &[
            "libvirt-hook",
            "install",
            "--root",
            other.path().to_str().unwrap(),
        ],
    );
    assert!(other.path().join("etc/libvirt/hooks/qemu").is_file());
}

#[test]
fn a_locked_ledger_makes_the_hook_fail_within_its_bound_rather_than_hang() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    // Another vfpool process in the middle of a write holds the writers' queue.
    let queue = std::fs::File::options()
        .write(true)
        .open(s.join("state.db-writers"))
        .unwrap();
    queue.lock().unwrap();
    let t = Instant::now();
    let o = hook(
        s,
        &["--timeout", "1", "web1", "prepare", "begin", "-"],
        &domain("web1", &[&vfs[0]]),
    );
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("did not finish within 1s"), "{err}");
    queue.unlock().unwrap();
    // Whatever was left half done goes at the next prepare of the domain.
    let o = hook(
        s,
        &["web1", "prepare", "begin", "-"],
        &domain("web1", &[&vfs[0]]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        leases(s),
        vec![(format!("libvirt/web1/{}", vfs[0]), vfs[0].clone())]
    );
}

#[test]
fn a_hook_killed_part_way_leaves_nothing_a_retry_cannot_finish() {
    for point in [
        "acquire:after-row",
        vfpool_engine::fault::DOMAIN_POINTS[0],
        "acquire:after-driver",
    ] {
        let (_dir, s, vfs) = demo();
        let s = &s;
        let xml = domain("web1", &[&vfs[0], &vfs[1]]);
        let o = hook_env(
            s,
            &["web1", "prepare", "begin", "-"],
            &xml,
            &[("VFPOOL_FAULT", point)],
        );
        assert_eq!(o.status.code(), None, "{point}: not killed: {}", stderr(&o));
        // libvirt retries the start (or another start comes): the domain gets both VFs.
        let o = hook(s, &["web1", "prepare", "begin", "-"], &xml);
        assert_eq!(o.status.code(), Some(0), "{point}: {}", stderr(&o));
        let l = json(s, &["lease", "list"]);
        let mut states: Vec<(&str, &str)> = l
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["owner"].as_str().unwrap(), l["state"].as_str().unwrap()))
            .collect();
        states.sort();
        assert_eq!(
            states,
            vec![
                (format!("libvirt/web1/{}", vfs[0]).as_str(), "active"),
                (format!("libvirt/web1/{}", vfs[1]).as_str(), "active"),
            ],
            "{point}"
        );
        let o = hook(s, &["web1", "release", "end", "-"], &xml);
        assert_eq!(o.status.code(), Some(0), "{point}: {}", stderr(&o));
        assert!(leases(s).is_empty(), "{point}");
    }
}

/// A domain passing `vfs` through as plain `<hostdev mode='subsystem' type='pci'>`s (no
/// `<interface>`), as libvirt's status XML shows them.
fn plain_hostdev_domain(name: &str, vfs: &[&str]) -> String {
    let devs: String = vfs
        .iter()
        .map(|v| {
            let p: PciAddr = v.parse().unwrap();
            format!(
                "<hostdev mode='subsystem' type='pci' managed='yes'><driver name='vfio'/><source><address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/></source><address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></hostdev>",
                p.domain, p.bus, p.device, p.function
            )
        })
        .collect();
    format!(
        "<domain type='kvm'><name>{name}</name><memory unit='MiB'>512</memory><os><type>hvm</type></os><devices>{devs}</devices></domain>"
    )
}

#[test]
fn plain_pci_hostdevs_are_leased_and_refused_like_hostdev_interfaces() {
    let (_dir, s, vfs) = demo();
    let s = &s;
    let web1 = plain_hostdev_domain("web1", &[&vfs[0]]);
    let o = hook(s, &["web1", "prepare", "begin", "-"], &web1);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        leases(s),
        [(format!("libvirt/web1/{}", vfs[0]), vfs[0].clone())]
    );
    // The same VF as a plain hostdev of another domain, or as its hostdev interface:
    // refused, naming the VF and its owner.
    for db1 in [
        plain_hostdev_domain("db1", &[&vfs[1], &vfs[0]]),
        domain("db1", &[&vfs[0]]),
    ] {
        let o = hook(s, &["db1", "prepare", "begin", "-"], &db1);
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "error: domain 'db1' cannot start: VF {} is leased to 'libvirt/web1/{}'\n",
                vfs[0], vfs[0]
            )
        );
        assert_eq!(leases(s).len(), 1);
    }
    // A domain with both forms: every VF leased.
    let both = domain("db2", &[&vfs[1]]).replace(
        "</devices>",
        &format!(
            "{}</devices>",
            plain_hostdev_domain("x", &[&vfs[2]])
                .split("<devices>")
                .nth(1)
                .unwrap()
                .split("</devices>")
                .next()
                .unwrap()
        ),
    );
    let o = hook(s, &["db2", "prepare", "begin", "-"], &both);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(leases(s).len(), 3);
    for (d, xml) in [("web1", &web1), ("db2", &both)] {
        let o = hook(s, &[d, "release", "end", "-"], xml);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert!(leases(s).is_empty());
    // A PCI hostdev without its source address: one line, nothing leased.
    let bad = "<domain><devices><hostdev mode='subsystem' type='pci'><driver name='vfio'/></hostdev></devices></domain>";
    let o = hook(s, &["web1", "prepare", "begin", "-"], bad);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: cannot read the XML of domain 'web1': pci hostdev 0: no source address\n"
    );
    assert!(leases(s).is_empty());
}
