//! IPAM by delegation, against Debian's real reference plugins (containernetworking-plugins
//! 1.1.1: host-local, static, dhcp) and small scripts that misbehave on purpose.
//!
//! The reference plugins must be there: the tests install them as root when missing, and
//! fail (not skip) when they cannot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use serde_json::{Value, json};
use vfpool_cni::ipam::exec_plugin;
use vfpool_cni::{CniEnv, CniError, CniResult, CniVersion, Command, PluginConf};

const DEBIAN_CNI: &str = "/usr/lib/cni";

/// Debian's reference plugins, installed when missing.
fn reference_plugins() -> PathBuf {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if Path::new(DEBIAN_CNI).join("host-local").is_file() {
            return;
        }
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        assert!(
            root,
            "the IPAM tests need Debian's containernetworking-plugins in {DEBIAN_CNI}: run as root to install them, or `apt-get install -y containernetworking-plugins`"
        );
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "apt-get install containernetworking-plugins failed");
    });
    assert!(
        Path::new(DEBIAN_CNI).join("host-local").is_file(),
        "{DEBIAN_CNI}/host-local is missing after installing containernetworking-plugins"
    );
    PathBuf::from(DEBIAN_CNI)
}

fn env_for(cmd: Command, path: &[&Path]) -> CniEnv {
    let path = std::env::join_paths(path).unwrap();
    let vars: Vec<(&str, std::ffi::OsString)> = vec![
        ("CNI_COMMAND", cmd.as_str().into()),
        ("CNI_CONTAINERID", "c0ffee".into()),
        ("CNI_NETNS", "/run/netns/vfpool-test-none".into()),
        ("CNI_IFNAME", "net1".into()),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p".into()),
        ("CNI_PATH", path),
    ];
    CniEnv::from_vars(vars).unwrap()
}

/// Runs `plugin` for `cmd` with `conf`, retrying a spawn that raced a fork in another test
/// thread holding a freshly written script open ("Text file busy").
fn exec(
    plugin: &str,
    cmd: Command,
    env: &CniEnv,
    conf: &[u8],
) -> Result<Option<CniResult>, CniError> {
    for _ in 0..20 {
        match exec_plugin(plugin, cmd, env, conf) {
            Err(e) if e.msg.contains("Text file busy") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
    exec_plugin(plugin, cmd, env, conf)
}

fn host_local_conf(version: &str, data_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": version, "name": "vf-net", "type": "vfpool-cni", "pool": "web",
        "ipam": {
            "type": "host-local", "dataDir": data_dir,
            "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]],
            "routes": [{"dst": "10.96.0.0/12"}]
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn host_local_allocates_checks_and_releases_at_1_1_through_its_1_0() {
    let bin = reference_plugins();
    let data = tempfile::tempdir().unwrap();
    let conf = host_local_conf("1.1.0", data.path());
    let add = env_for(Command::Add, &[&bin]);
    let r = exec("host-local", Command::Add, &add, &conf)
        .unwrap()
        .unwrap();
    assert_eq!(r.ips.len(), 1);
    assert_eq!(r.ips[0].address.to_string(), "10.77.0.2/24");
    assert_eq!(r.ips[0].gateway, Some("10.77.0.1".parse().unwrap()));
    assert_eq!(r.routes[0].dst.to_string(), "10.96.0.0/12");
    // host-local's own record of the lease, under our data dir.
    let lease = data.path().join("vf-net/10.77.0.2");
    let owner = std::fs::read_to_string(&lease).unwrap();
    assert!(owner.starts_with("c0ffee"), "{owner:?}");
    // The result is ours to write in any version.
    let v: Value = serde_json::from_str(&r.to_json(CniVersion::V0_3_1)).unwrap();
    assert_eq!(v["ips"][0]["version"], "4");

    let check = env_for(Command::Check, &[&bin]);
    assert_eq!(
        exec("host-local", Command::Check, &check, &conf).unwrap(),
        None
    );
    let del = env_for(Command::Del, &[&bin]);
    assert_eq!(exec("host-local", Command::Del, &del, &conf).unwrap(), None);
    assert!(!lease.exists(), "DEL released the address");
    // DEL again is fine (idempotent in host-local).
    assert_eq!(exec("host-local", Command::Del, &del, &conf).unwrap(), None);
}

#[test]
fn static_gives_its_addresses_routes_and_dns_in_an_old_version() {
    let bin = reference_plugins();
    let conf = json!({
        "cniVersion": "0.3.1", "name": "vf-net", "type": "vfpool-cni", "pool": "web",
        "ipam": {
            "type": "static",
            "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}, {"address": "fd00::5/64"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.10.0.1"}],
            "dns": {"nameservers": ["10.10.0.1"], "search": ["example.test"]}
        }
    })
    .to_string();
    let env = env_for(Command::Add, &[Path::new("/nonexistent"), &bin]);
    let r = exec("static", Command::Add, &env, conf.as_bytes())
        .unwrap()
        .unwrap();
    let addrs: Vec<String> = r.ips.iter().map(|i| i.address.to_string()).collect();
    assert_eq!(addrs, ["10.10.0.5/24", "fd00::5/64"]);
    assert_eq!(r.routes[0].gw, Some("10.10.0.1".parse().unwrap()));
    assert_eq!(r.dns.nameservers, ["10.10.0.1"]);
    assert_eq!(r.dns.search, ["example.test"]);
}

#[test]
fn the_plugins_own_error_keeps_its_code_and_is_prefixed() {
    let bin = reference_plugins();
    // host-local without ranges.
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "vfpool-cni",
                      "ipam": {"type": "host-local"}})
    .to_string();
    let e = exec(
        "host-local",
        Command::Add,
        &env_for(Command::Add, &[&bin]),
        conf.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.code, 999);
    assert_eq!(e.msg, "ipam plugin host-local: no IP ranges specified");
    // dhcp with no daemon listening.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dhcp.sock");
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "vfpool-cni",
                      "ipam": {"type": "dhcp", "daemonSocketPath": sock}})
    .to_string();
    let e = exec(
        "dhcp",
        Command::Add,
        &env_for(Command::Add, &[&bin]),
        conf.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.code, 999);
    assert!(
        e.msg
            .starts_with("ipam plugin dhcp: error dialing DHCP daemon"),
        "{}",
        e.msg
    );
}

#[test]
fn a_missing_plugin_or_path_is_named() {
    let bin = reference_plugins();
    let conf = host_local_conf("1.0.0", Path::new("/nonexistent"));
    let env = env_for(Command::Add, &[Path::new("/nonexistent"), &bin]);
    let e = exec("host-locl", Command::Add, &env, &conf).unwrap_err();
    assert_eq!(e.code, 7);
    assert_eq!(
        e.msg,
        "invalid ipam.type 'host-locl': no such plugin in CNI_PATH '/nonexistent:/usr/lib/cni'"
    );
    // A directory of that name is not a plugin.
    let e = exec("..", Command::Add, &env, &conf).unwrap_err();
    assert_eq!(e.code, 7);
    for bad in ["../cni/host-local", "/usr/lib/cni/host-local", ""] {
        let e = exec(bad, Command::Add, &env, &conf).unwrap_err();
        assert_eq!(e.code, 7, "{bad}");
        assert!(
            e.msg.starts_with(&format!(
                "invalid ipam.type '{bad}': a plugin name without '/'"
            )),
            "{}",
            e.msg
        );
    }
    // No CNI_PATH at all (ADD does not require one; IPAM does).
    let env = CniEnv::from_vars([
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "e"),
    ])
    .unwrap();
    let e = exec("host-local", Command::Add, &env, &conf).unwrap_err();
    assert_eq!(e.code, 4);
    assert_eq!(
        e.msg,
        "missing CNI_PATH: the directories where ipam plugin host-local is looked up"
    );
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const CONF_1_1: &str =
    r#"{"cniVersion":"1.1.0","name":"n","type":"vfpool-cni","ipam":{"type":"x"}}"#;

#[test]
fn a_plugin_that_fails_without_an_error_result() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "crash",
        "cat >/dev/null; echo 'panic: boom' >&2; exit 3",
    );
    script(dir.path(), "killed", "kill -9 $$");
    script(dir.path(), "garbage-error", "echo 'not json'; exit 1");
    script(
        dir.path(),
        "garbage-result",
        "cat >/dev/null; echo '{\"ips\": [{\"address\": \"nope\"}]}'",
    );
    std::fs::write(dir.path().join("noexec"), "#!/bin/sh\n").unwrap();
    let env = env_for(Command::Add, &[dir.path()]);

    let e = exec("crash", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, CniError::DELEGATE_FAILED);
    assert_eq!(
        e.msg,
        "ipam plugin crash: exited with status 3 without an error result"
    );
    assert_eq!(e.details, "stderr: panic: boom");

    let e = exec("killed", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, 100);
    assert_eq!(
        e.msg,
        "ipam plugin killed: was killed by signal 9 without an error result"
    );

    let e = exec("garbage-error", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, 100);
    assert_eq!(e.details, "stdout: not json");

    let e = exec("garbage-result", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, 6);
    assert!(
        e.msg
            .starts_with("invalid ipam plugin garbage-result result: invalid cidr 'nope'"),
        "{}",
        e.msg
    );
    // DEL does not read a result.
    let del = env_for(Command::Del, &[dir.path()]);
    assert_eq!(
        exec("garbage-result", Command::Del, &del, CONF_1_1.as_bytes()).unwrap(),
        None
    );

    let e = exec("noexec", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, 5);
    assert!(
        e.msg.starts_with("ipam plugin noexec: cannot run "),
        "{}",
        e.msg
    );
}

#[test]
fn the_plugin_gets_our_variables_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    script(
        dir.path(),
        "spy",
        &format!(
            "cat > {0}.stdin; env | grep '^CNI_' | sort > {0}.env; echo '{{\"cniVersion\":\"1.1.0\",\"ips\":[{{\"address\":\"10.0.0.9/8\"}}]}}'",
            seen.display()
        ),
    );
    let env = env_for(Command::Add, &[dir.path()]);
    let r = exec("spy", Command::Add, &env, CONF_1_1.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.0.0.9/8");
    assert_eq!(
        std::fs::read_to_string(seen.with_extension("stdin")).unwrap(),
        CONF_1_1
    );
    let vars = std::fs::read_to_string(seen.with_extension("env")).unwrap();
    assert_eq!(
        vars,
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c0ffee\nCNI_IFNAME=net1\nCNI_NETNS=/run/netns/vfpool-test-none\nCNI_PATH={}\n",
            dir.path().display()
        )
    );
    // DEL without a netns passes an empty CNI_NETNS, as libcni does.
    let del = CniEnv::from_vars([
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", dir.path().to_str().unwrap()),
    ])
    .unwrap();
    assert_eq!(
        exec("spy", Command::Del, &del, CONF_1_1.as_bytes()).unwrap(),
        None
    );
    let vars = std::fs::read_to_string(seen.with_extension("env")).unwrap();
    assert!(
        vars.contains("CNI_COMMAND=DEL\n") && vars.contains("CNI_NETNS=\n"),
        "{vars}"
    );
}

#[test]
fn a_version_no_common_ground_keeps_the_plugins_refusal() {
    let dir = tempfile::tempdir().unwrap();
    // Speaks only 0.2.0: refuses 1.1.0 with code 1, and VERSION offers nothing we speak.
    script(
        dir.path(),
        "ancient",
        r#"if [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"0.2.0","supportedVersions":["0.1.0","0.2.0"]}'; exit 0; fi
echo '{"code":1,"msg":"incompatible CNI versions","details":"plugin supports 0.2.0"}'; exit 1"#,
    );
    let env = env_for(Command::Add, &[dir.path()]);
    let e = exec("ancient", Command::Add, &env, CONF_1_1.as_bytes()).unwrap_err();
    assert_eq!(e.code, 1);
    assert_eq!(e.msg, "ipam plugin ancient: incompatible CNI versions");
    assert_eq!(e.details, "plugin supports 0.2.0");
}

#[test]
fn a_config_from_plugin_conf_delegates_whole() {
    let bin = reference_plugins();
    let data = tempfile::tempdir().unwrap();
    // cniVersions only: negotiated 1.1.0, host-local gets it and falls back to 1.0.0.
    let mut v: Value = serde_json::from_slice(&host_local_conf("1.1.0", data.path())).unwrap();
    v.as_object_mut().unwrap().remove("cniVersion");
    v["cniVersions"] = json!(["0.4.0", "1.1.0"]);
    let env = env_for(Command::Add, &[&bin]);
    let conf = PluginConf::parse(v.to_string().as_bytes(), &env).unwrap();
    let ipam = conf.ipam.as_ref().unwrap();
    let r = exec(&ipam.plugin, Command::Add, &env, &conf.delegate_stdin())
        .unwrap()
        .unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.77.0.2/24");
    let del = env_for(Command::Del, &[&bin]);
    exec(&ipam.plugin, Command::Del, &del, &conf.delegate_stdin()).unwrap();
}

#[test]
fn the_fallback_never_asks_a_newer_version_than_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("asked");
    // Refuses 0.4.0 but claims 0.3.1 and 1.1.0: the retry must be 0.3.1, never 1.1.0.
    script(
        dir.path(),
        "picky",
        &format!(
            r#"if [ "$CNI_COMMAND" = VERSION ]; then echo '{{"cniVersion":"1.1.0","supportedVersions":["0.3.1","1.1.0"]}}'; exit 0; fi
conf=$(cat)
case "$conf" in *'"0.4.0"'*) echo '{{"code":1,"msg":"incompatible CNI versions"}}'; exit 1;; esac
echo "$conf" > {0}
echo '{{"cniVersion":"0.3.1","ips":[{{"version":"4","address":"10.0.0.3/8"}}]}}'"#,
            seen.display()
        ),
    );
    let conf = r#"{"cniVersion":"0.4.0","name":"n","type":"vfpool-cni","ipam":{"type":"picky"}}"#;
    let env = env_for(Command::Add, &[dir.path()]);
    let r = exec("picky", Command::Add, &env, conf.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.0.0.3/8");
    let asked: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(asked["cniVersion"], "0.3.1");
    assert_eq!(
        asked["ipam"]["type"], "picky",
        "the rest of the config goes along"
    );
}

#[test]
fn remembered_versions_make_one_exec_of_an_older_plugin_until_it_changes() {
    use vfpool_cni::ipam::{VersionCache, exec_plugin_cached};
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    // Speaks 1.0.0 only, as Debian's plugins do; logs every call.
    let body = format!(
        r#"echo "$CNI_COMMAND" >> {0}
if [ "$CNI_COMMAND" = VERSION ]; then echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}'; exit 0; fi
conf=$(cat)
case "$conf" in *'"1.1.0"'*) echo '{{"code":1,"msg":"incompatible CNI versions"}}'; exit 1;; esac
echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.0.0.4/8"}}]}}'"#,
        calls.display()
    );
    script(dir.path(), "old", &body);
    let cache = VersionCache::in_dir(&dir.path().join("state/cni"));
    let conf = r#"{"cniVersion":"1.1.0","name":"n","type":"vfpool-cni","ipam":{"type":"old"}}"#;
    let env = env_for(Command::Add, &[dir.path()]);
    let run = || {
        for _ in 0..20 {
            match exec_plugin_cached("old", Command::Add, &env, conf.as_bytes(), Some(&cache)) {
                Err(e) if e.msg.contains("Text file busy") => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap().unwrap(),
            }
        }
        panic!("text file busy");
    };
    let calls_made = || {
        let n = std::fs::read_to_string(&calls).unwrap_or_default();
        std::fs::remove_file(&calls).ok();
        n.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(run().ips[0].address.to_string(), "10.0.0.4/8");
    assert_eq!(
        calls_made(),
        ["ADD", "VERSION", "ADD"],
        "first call: refused, asked, again"
    );
    assert_eq!(run().ips[0].address.to_string(), "10.0.0.4/8");
    assert_eq!(calls_made(), ["ADD"], "then once, in its version");
    // An upgrade (another file): asked again.
    script(dir.path(), "old", &format!("{body}\n# upgraded"));
    run();
    assert_eq!(calls_made(), ["ADD", "VERSION", "ADD"]);
    // The same size, a new modification time (a package reinstalled): asked again.
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("old"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
    drop(f);
    run();
    assert_eq!(calls_made(), ["ADD", "VERSION", "ADD"]);
    // A cache file that is garbage costs the saving, nothing else.
    std::fs::write(dir.path().join("state/cni/ipam-versions.json"), "{garbage").unwrap();
    run();
    assert_eq!(calls_made(), ["ADD", "VERSION", "ADD"]);
    run();
    assert_eq!(calls_made(), ["ADD"]);
}
