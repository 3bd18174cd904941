//! The libvirt hook called by a real libvirtd (`qemu:///system`, started by the test in a
//! private mount namespace as in crates/libvirt/tests/libvirtd.rs): `virsh start` of a
//! domain whose hostdev VF is a container's is refused with our error shown by libvirt; a
//! start of a free VF leases it at `prepare begin` (seen by a second hook in `qemu.d`, which
//! libvirt runs after ours) and, since this host cannot pass a PCI device through (no
//! IOMMU here, and the VF is the demo host's), libvirt aborts the start and the hook gives
//! the VF back at `release end`. Needs root, Debian's libvirt-daemon-system and virsh;
//! fails without them unless `VFPOOL_ALLOW_SKIP=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "../../libvirt/tests/support/libvirtd.rs"]
mod libvirtd;

use std::path::Path;
use std::process::{Command, Output};

use common::{json, ok};
use libvirtd::Libvirtd;

/// A libvirtd of the test's own (crates/libvirt/tests/support/libvirtd.rs), whose
/// /etc/libvirt is `DIR/etc`.
struct Daemon(Libvirtd);

impl Daemon {
    fn start(dir: &Path) -> Option<Daemon> {
        let is_root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let have = Path::new("/usr/sbin/libvirtd").exists() && Path::new("/usr/bin/virsh").exists();
        if !is_root || !have {
            assert!(
                std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
                "the libvirtd hook test needs root, /usr/sbin/libvirtd and virsh (Debian's libvirt-daemon-system, libvirt-clients); set VFPOOL_ALLOW_SKIP=1 to skip it on purpose"
            );
            eprintln!("SKIPPED libvirtd hook test: root {is_root}, libvirtd and virsh {have}");
            return None;
        }
        std::fs::create_dir_all(dir.join("etc/hooks")).unwrap();
        Some(Daemon(Libvirtd::spawn(dir)))
    }

    fn virsh(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["120", "virsh", "-c", &self.0.uri()])
            .args(args)
            .output()
            .unwrap()
    }
}

fn owners(state: &Path) -> Vec<String> {
    json(state, &["lease", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["owner"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn libvirtd_runs_the_installed_hook_at_start_and_shows_its_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let lv = tmp.path().join("libvirt");
    std::fs::create_dir_all(&state).unwrap();
    let s = &state;
    ok(s, &["nic", "split", "eno49", "--vfs", "2"]);
    let vf = json(s, &["nic", "show", "eno49"])["vfs"][0]["pci"]
        .as_str()
        .unwrap()
        .to_owned();
    // Our hook, installed as vfpool installs it, where this libvirtd's /etc/libvirt is; and
    // a recorder in qemu.d (run after it) that keeps the calls and the leases at prepare.
    let root = tmp.path().join("root");
    ok(
        s,
        &["libvirt-hook", "install", "--root", root.to_str().unwrap()],
    );
    std::fs::create_dir_all(lv.join("etc/hooks/qemu.d")).unwrap();
    std::fs::copy(
        root.join("etc/libvirt/hooks/qemu"),
        lv.join("etc/hooks/qemu"),
    )
    .unwrap();
    let calls = tmp.path().join("calls");
    let at_prepare = tmp.path().join("at-prepare.json");
    let recorder = lv.join("etc/hooks/qemu.d/record");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$2\" = prepare ] && '{}' --demo --state '{}' lease list -o json > '{}'\nexit 0\n",
            calls.display(),
            env!("CARGO_BIN_EXE_vfpool"),
            s.display(),
            at_prepare.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(daemon) = Daemon::start(&lv) else {
        return;
    };
    let (bus, slot, func) = (&vf[5..7], &vf[8..10], &vf[11..12]);
    let xml = format!(
        "<domain type='qemu'><name>web1</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\
         <interface type='hostdev' managed='yes'><source>\
         <address type='pci' domain='0x0000' bus='0x{bus}' slot='0x{slot}' function='0x{func}'/>\
         </source></interface></devices></domain>"
    );
    let xml_path = tmp.path().join("web1.xml");
    std::fs::write(&xml_path, xml).unwrap();
    let o = daemon.virsh(&["define", xml_path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");

    // The VF is a container's: libvirt refuses the start and shows our one line.
    ok(
        s,
        &[
            "lease",
            "acquire",
            "--pool",
            "pf:eno49",
            "--owner",
            "container-a",
            "--vf",
            &vf,
        ],
    );
    let o = daemon.virsh(&["start", "web1"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "unexpected exit status 4: error: domain 'web1' cannot start: VF {vf} is leased to 'container-a'"
        )),
        "{err}"
    );
    assert_eq!(owners(s), vec!["container-a"]);

    // Free: leased at prepare, then libvirt cannot pass it through here and gives up; the
    // hook's release end gives it back.
    ok(s, &["lease", "release", "container-a"]);
    let _ = std::fs::remove_file(&calls);
    let o = daemon.virsh(&["start", "web1"]);
    assert!(!o.status.success(), "started? {o:?}");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    assert!(
        recorded.starts_with("web1 prepare begin -\n") && recorded.contains("web1 release end -\n"),
        "{recorded}"
    );
    let leased: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&at_prepare).unwrap()).unwrap();
    assert_eq!(leased[0]["owner"], format!("libvirt/web1/{vf}"), "{leased}");
    assert_eq!(leased[0]["owner_kind"], "vm");
    assert!(owners(s).is_empty(), "{:?}", owners(s));
    let o = daemon.virsh(&["undefine", "web1"]);
    assert!(o.status.success(), "{o:?}");
}
