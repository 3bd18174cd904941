//! The verbs: each checks its input (the spec layer), makes engine calls
//! (`vfpool_engine::pod`), and builds the result. No host change happens here but through
//! the engine; the IPAM plugin is the only other actor, by exec — except `"ipam":
//! {"type": "vfpool", "l3": "NAME"}`, handled in-process by the engine's L3 address
//! management (`Engine::l3_allocate` / `l3_release`, the table VM NICs take their
//! addresses from, so that VMs and pods on one L3 never collide). The L3's L2 NIC is not
//! compared with the VF's PF: a pod may take an address on any L3 (the operator's
//! wiring decides whether it is reachable there).
//!
//! An attachment's lease is owned by `cni/NETWORK/CONTAINERID/IFNAME` ([`owner`]): DEL
//! and CHECK find the VF by it, GC by the network's prefix, and nothing else is cached.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use vfpool_engine::{
    Engine, EngineError, ErrorKind, Host, HostConfig, L3Allocation, Mismatch, PodIp, PodRequest,
    ServicePath, VfSource as Source, chain,
};
use vfpool_netlink::{IfAddr, Route as NetRoute};

use crate::config::{PluginConf, VfSource};
use crate::devinfo::{self, PciDeviceInfo};
use crate::ipam;
use crate::result::{Cidr, CniResult, Dns, Interface, IpConfig, Route};
use crate::spec::{Attachment, CniEnv, CniError, Command};

/// No free healthy VF for this network (the pool or PF is exhausted, or the VF unhealthy).
pub const NO_FREE_VF: u32 = 101;
/// The VF or the attachment is held by another (a device plugin's VF leased to another
/// attachment).
pub const IN_USE: u32 = 102;
/// The kernel or the PF's driver refused a setting (everything was rolled back).
pub const REFUSED: u32 = 103;
/// vfpool's state directory holds something it cannot read as its own.
pub const CORRUPT_STATE: u32 = 104;
/// CHECK found the attachment not as it was set up.
pub const CHECK_FAILED: u32 = 105;
/// GC could not release every attachment it should have (it went on past them).
pub const GC_INCOMPLETE: u32 = 106;

/// The owner of an attachment's lease.
pub fn owner(network: &str, a: &Attachment) -> String {
    format!("cni/{network}/{}/{}", a.container_id, a.ifname)
}

/// The prefix of every owner of `network`'s attachments.
pub fn owner_prefix(network: &str) -> String {
    format!("cni/{network}/")
}

/// An engine error as the spec's error: the code from its kind, the whole chain as `msg`.
pub fn cni_error(e: &EngineError) -> CniError {
    let code = match e.kind() {
        ErrorKind::InvalidInput => match e {
            EngineError::Invalid(iv) if iv.field == "netns" || iv.field == "ifname" => {
                CniError::INVALID_ENV
            }
            _ => CniError::INVALID_CONFIG,
        },
        // A pool, PF or VF the config names is not there.
        ErrorKind::NotFound => CniError::INVALID_CONFIG,
        ErrorKind::Conflict => IN_USE,
        ErrorKind::Busy => CniError::TRY_AGAIN,
        ErrorKind::Exhausted => NO_FREE_VF,
        ErrorKind::Refused => REFUSED,
        ErrorKind::Io => CniError::IO,
        ErrorKind::CorruptState => CORRUPT_STATE,
    };
    CniError::new(code, chain(e)).with_details(format!("vfpool error kind: {}", e.kind().as_str()))
}

/// The WAL pages after which the plugin's commits checkpoint (SQLite's default is 1000).
/// Every plugin call is a process that opens the ledger, and a process that opens it while
/// no other has it open reads and checksums the whole WAL since its last restart: at 1000
/// pages (4 MiB) that was a third of an ADD's CPU time (BENCHMARKS.md, "CNI plugin").
pub const WAL_AUTOCHECKPOINT: u32 = 100;

fn open_engine(conf: &PluginConf) -> Result<Engine, CniError> {
    let kernel_netlink = match conf.kernel_netlink {
        Some(k) => k,
        None => vfpool_engine::backend::kernel_netlink_from_env().map_err(CniError::invalid_env)?,
    };
    let host = Host::open(&HostConfig {
        demo: false,
        sysfs_root: conf.sysfs_root.clone(),
        proc_root: conf.proc_root.clone(),
        state: conf.state_dir.clone(),
        kernel_netlink,
    })
    .map_err(|e| cni_error(&e))?;
    let mut engine = host.engine().map_err(|e| cni_error(&e))?;
    engine
        .ledger()
        .set_autocheckpoint(WAL_AUTOCHECKPOINT)
        .map_err(|e| cni_error(&e))?;
    Ok(engine)
}

/// Runs the IPAM plugin for `command`, with the versions IPAM plugins speak remembered in
/// the state directory (`STATE/cni/ipam-versions.json`).
fn ipam_exec(
    conf: &PluginConf,
    plugin: &str,
    command: Command,
    env: &CniEnv,
    stdin: &[u8],
) -> Result<Option<CniResult>, CniError> {
    let state = conf
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(vfpool_engine::backend::DEFAULT_STATE));
    let cache = ipam::VersionCache::in_dir(&state.join("cni"));
    ipam::exec_plugin_cached(plugin, command, env, stdin, Some(&cache))
}

/// `ipam.type` vfpool: what an IPAM plugin would return for an L3 address: the address
/// with the L3's prefix and gateway, a default route via the gateway, the DNS server.
fn l3_result(a: &L3Allocation) -> CniResult {
    CniResult {
        ips: vec![IpConfig {
            address: Cidr {
                addr: a.address.into(),
                prefix: a.prefix,
            },
            gateway: Some(a.gateway.into()),
            interface: None,
        }],
        routes: vec![Route {
            dst: Cidr {
                addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
                prefix: 0,
            },
            gw: Some(a.gateway.into()),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }],
        dns: Dns {
            nameservers: a.dns.iter().map(|d| d.to_string()).collect(),
            ..Dns::default()
        },
        ..CniResult::default()
    }
}

/// An engine error of `ipam.l3`: an unknown L3 is the config's error, naming the field.
fn l3_error(e: &EngineError) -> CniError {
    match e {
        EngineError::UnknownName { what: "l3", .. } => CniError::new(
            CniError::INVALID_CONFIG,
            format!("invalid ipam.l3: {}", chain(e)),
        ),
        _ => cni_error(e),
    }
}

/// Where the verbs get their engine: the plugin process opens the ledger once per call,
/// the daemon (`vfpool serve`, its `POST /api/v1/cni`) lends one it keeps open. Both run
/// the same verbs ([`run_with`]).
pub enum Engines<'a> {
    /// Opened on first use (the plugin process), from the config's state directory,
    /// sysfs root and `vfpoolNetlink` (else `VFPOOL_NETLINK` from the process).
    PerCall(Option<Box<Engine>>),
    /// The daemon's, for this call.
    Lent(&'a mut Engine),
}

impl Engines<'_> {
    /// The plugin process's: nothing open yet.
    pub fn per_call() -> Self {
        Engines::PerCall(None)
    }

    fn get(&mut self, conf: &PluginConf) -> Result<&mut Engine, CniError> {
        match self {
            Engines::Lent(e) => Ok(e),
            Engines::PerCall(slot) => Ok(match slot.take() {
                Some(e) => slot.insert(e),
                None => slot.insert(Box::new(open_engine(conf)?)),
            }),
        }
    }
}

/// Runs the verb of `env` on the config in `stdin`, opening the ledger in this process;
/// `Some(result)` to print.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, CniError> {
    let conf = PluginConf::parse(stdin, env)?;
    run_with(env, &conf, &mut Engines::per_call())
}

/// Runs the verb of `env` on `conf` with `engines`; `Some(result)` to print.
pub fn run_with(
    env: &CniEnv,
    conf: &PluginConf,
    engines: &mut Engines<'_>,
) -> Result<Option<String>, CniError> {
    match env.command {
        Command::Add => add(env, conf, engines).map(Some),
        Command::Del => del(env, conf, engines).map(|()| None),
        Command::Check => check(env, conf, engines).map(|()| None),
        Command::Status => status(conf, engines).map(|()| None),
        Command::Gc => gc(env, conf, engines).map(|()| None),
        Command::Version => Ok(Some(crate::version_output())),
    }
}

fn attachment(env: &CniEnv) -> Result<&Attachment, CniError> {
    env.attachment.as_ref().ok_or_else(|| {
        CniError::new(
            CniError::INVALID_ENV,
            "CNI_CONTAINERID and CNI_IFNAME are required",
        )
    })
}

fn netns(env: &CniEnv) -> Result<&Path, CniError> {
    let ns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(CniError::INVALID_ENV, "CNI_NETNS is required"))?;
    if !ns.exists() {
        return Err(CniError::unknown_container(format!(
            "invalid CNI_NETNS '{}': no such file (the container's network namespace is gone)",
            ns.display()
        )));
    }
    Ok(ns)
}

fn engine_source(s: &VfSource) -> Source {
    match s {
        VfSource::DeviceId(pci) => Source::Device(*pci),
        VfSource::Pool(p) => Source::Pool(p.clone()),
        VfSource::Master(pf) => Source::Pf(pf.to_string()),
    }
}

/// The addresses and routes a result gives interface `index`. Routes have no interface
/// in a result: a route is this interface's when its gateway is in one of its networks,
/// or, without a gateway, when the first address of its family in the result is this
/// interface's (it then takes that address's gateway, as the reference plugins'
/// `ConfigureIface` does). An earlier plugin's routes stay with its interface.
fn pod_ip(r: &CniResult, index: Option<usize>) -> PodIp {
    let mine = |ip: &&crate::result::IpConfig| {
        index.is_none() || ip.interface.is_none() || ip.interface == index
    };
    let ips: Vec<_> = r.ips.iter().filter(mine).collect();
    let addresses = ips
        .iter()
        .map(|ip| IfAddr {
            addr: ip.address.addr,
            prefix_len: ip.address.prefix,
        })
        .collect();
    let routes = r
        .routes
        .iter()
        .filter_map(|rt| {
            let v4 = rt.dst.addr.is_ipv4();
            let gateway = match rt.gw {
                Some(gw) => {
                    if !ips
                        .iter()
                        .any(|ip| in_network(gw, ip.address.addr, ip.address.prefix))
                    {
                        return None;
                    }
                    Some(gw)
                }
                None => {
                    let first = r.ips.iter().find(|ip| ip.address.addr.is_ipv4() == v4)?;
                    if !mine(&first) {
                        return None;
                    }
                    first.gateway
                }
            };
            Some(NetRoute {
                dst: IfAddr {
                    addr: rt.dst.addr,
                    prefix_len: rt.dst.prefix,
                },
                gateway,
                dev: String::new(),
                src: None,
                onlink: false,
            })
        })
        .collect();
    PodIp { addresses, routes }
}

/// Whether `addr` is in the network of `net`/`prefix`.
fn in_network(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn service_path(conf: &PluginConf, ip: &PodIp) -> Option<ServicePath> {
    if conf.service_routes.is_empty() {
        return None;
    }
    Some(ServicePath {
        cidrs: conf
            .service_routes
            .iter()
            .map(|c| IfAddr {
                addr: c.addr,
                prefix_len: c.prefix,
            })
            .collect(),
        pod_addrs: ip
            .addresses
            .iter()
            .filter_map(|a| match a.addr {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
    })
}

/// ADD: lease and attach, IPAM, addresses and routes, service path, device info. A
/// failure at any step undoes the steps before it (IPAM DEL, the lease released).
fn add(env: &CniEnv, conf: &PluginConf, engines: &mut Engines<'_>) -> Result<String, CniError> {
    let a = attachment(env)?;
    let ns = netns(env)?;
    let source = conf.source.as_ref().ok_or_else(|| {
        CniError::new(
            CniError::INVALID_CONFIG,
            "no VF source in config: give one of deviceID, pool or master",
        )
    })?;
    let engine = engines.get(conf)?;
    let owner = owner(&conf.name, a);
    let att = engine
        .pod_add(&PodRequest {
            owner: owner.clone(),
            source: engine_source(source),
            settings: conf.settings.clone(),
            netns: ns.to_owned(),
            ifname: a.ifname.clone(),
        })
        .map_err(|e| cni_error(&e))?;
    let mut ipam_done = false;
    let r = (|| -> Result<CniResult, CniError> {
        let mut result = conf.prev_result.clone().unwrap_or_default();
        let mut ours = CniResult::default();
        let index = result.interfaces.len();
        result.interfaces.push(Interface {
            name: a.ifname.clone(),
            mac: att.mac.map(|m| m.to_string()),
            mtu: att.mtu,
            sandbox: Some(ns.display().to_string()),
            socket_path: None,
            pci_id: Some(att.lease.vf_pci.to_string()),
        });
        if let Some(ipam) = &conf.ipam {
            let got = match &ipam.l3 {
                Some(l3) => {
                    let a = engine.l3_allocate(l3, &owner).map_err(|e| l3_error(&e))?;
                    Some(l3_result(&a))
                }
                None => ipam_exec(
                    conf,
                    &ipam.plugin,
                    Command::Add,
                    env,
                    &conf.delegate_stdin(),
                )?,
            };
            ipam_done = true;
            let got = got.ok_or_else(|| {
                CniError::plugin(
                    crate::spec::CniError::DELEGATE_FAILED,
                    format!("ipam plugin {}: no result", ipam.plugin),
                )
            })?;
            for mut ip in got.ips {
                ip.interface = Some(index);
                result.ips.push(ip.clone());
                ours.ips.push(ip);
            }
            result.routes.extend(got.routes.iter().cloned());
            ours.routes = got.routes;
            if result.dns.is_empty() {
                result.dns = got.dns;
            }
        }
        // IPAM's addresses and routes only: an earlier plugin's are its interface's.
        let ip = pod_ip(&ours, Some(index));
        if att.moved() {
            if !ip.addresses.is_empty() || !ip.routes.is_empty() {
                engine.pod_ip(&owner, &ip).map_err(|e| cni_error(&e))?;
            }
            if let Some(sp) = service_path(conf, &ip) {
                let ends = engine
                    .pod_service_path(&owner, &sp)
                    .map_err(|e| cni_error(&e))?;
                result.interfaces.push(Interface {
                    name: ends.host,
                    ..Interface::default()
                });
                result.interfaces.push(Interface {
                    name: ends.pod,
                    sandbox: Some(ns.display().to_string()),
                    ..Interface::default()
                });
            }
        } else if !conf.service_routes.is_empty() {
            return Err(CniError::new(
                CniError::INVALID_CONFIG,
                format!(
                    "invalid serviceRoute: VF {} has no netdev (driver {}) to route beside",
                    att.lease.vf_pci,
                    att.driver.as_deref().unwrap_or("none")
                ),
            ));
        }
        if let Some(path) = conf.device_info_path(env) {
            devinfo::write(
                &path,
                &PciDeviceInfo {
                    pci_address: att.lease.vf_pci,
                    pf_pci_address: Some(att.lease.pf_pci),
                    rdma_device: None,
                },
            )?;
        }
        Ok(result)
    })();
    match r {
        Ok(result) => {
            tracing::info!(owner, vf = %att.lease.vf_pci, "ADD done");
            Ok(result.to_json(conf.cni_version))
        }
        Err(e) => {
            tracing::warn!(owner, error = %e, "ADD failed; undoing it");
            if ipam_done
                && let Some(ipam) = &conf.ipam
                && ipam.l3.is_some()
                && let Err(u) = engine.l3_release(&owner)
            {
                tracing::warn!(owner, error = %chain(&u), "undo: releasing the L3 address failed");
            }
            if ipam_done
                && let Some(ipam) = &conf.ipam
                && ipam.l3.is_none()
                && let Err(u) = ipam_exec(
                    conf,
                    &ipam.plugin,
                    Command::Del,
                    env,
                    &conf.delegate_stdin(),
                )
            {
                tracing::warn!(owner, error = %u, "undo: IPAM DEL failed");
            }
            if let Err(u) = engine.pod_del(&owner) {
                tracing::warn!(owner, error = %chain(&u), "undo: releasing the VF failed");
            }
            Err(e)
        }
    }
}

/// DEL: the lease released (VF back in the host, restored) whatever is left, IPAM DEL,
/// the device-info file removed. Every step is tried; the first error is returned.
fn del(env: &CniEnv, conf: &PluginConf, engines: &mut Engines<'_>) -> Result<(), CniError> {
    let a = attachment(env)?;
    let owner = owner(&conf.name, a);
    let mut first: Option<CniError> = None;
    match engines
        .get(conf)
        .and_then(|e| e.pod_del(&owner).map_err(|e| cni_error(&e)))
    {
        Ok(r) => {
            tracing::info!(
                owner,
                released = r.lease.is_some(),
                service_path = r.service_path,
                "DEL done"
            )
        }
        Err(e) => first = Some(e),
    }
    if let Some(ipam) = &conf.ipam {
        let r = match &ipam.l3 {
            Some(_) => engines.get(conf).and_then(|e| {
                e.l3_release(&owner)
                    .map(|freed| {
                        tracing::info!(owner, released = freed.is_some(), "DEL: l3 address")
                    })
                    .map_err(|e| cni_error(&e))
            }),
            None => ipam_exec(
                conf,
                &ipam.plugin,
                Command::Del,
                env,
                &conf.delegate_stdin(),
            )
            .map(drop),
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    if let Some(path) = conf.device_info_path(env)
        && let Err(e) = devinfo::remove(&path)
    {
        first.get_or_insert(e);
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// CHECK: the attachment is as `prevResult` says and the lease applied: the VF netdev in
/// the namespace under the ifname, up, with its MAC, MTU, addresses and routes, its
/// PF-side settings, the service path; IPAM's own CHECK.
fn check(env: &CniEnv, conf: &PluginConf, engines: &mut Engines<'_>) -> Result<(), CniError> {
    let a = attachment(env)?;
    let ns = netns(env)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            CniError::INVALID_CONFIG,
            "missing prevResult: CHECK compares the attachment with the result of its ADD",
        )
    })?;
    let ns_text = ns.display().to_string();
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == a.ifname && i.sandbox.as_deref() == Some(ns_text.as_str()))
        .ok_or_else(|| {
            CniError::new(
                CHECK_FAILED,
                format!(
                    "check failed: prevResult has no interface {} in {ns_text}",
                    a.ifname
                ),
            )
        })?;
    let engine = engines.get(conf)?;
    let owner = owner(&conf.name, a);
    let ip = pod_ip(prev, Some(index));
    let sp = service_path(conf, &ip);
    let mut problems: Vec<String> = match engine.pod_check(&owner, &ip, sp.as_ref()) {
        Ok(m) => m.iter().map(Mismatch::to_string).collect(),
        Err(EngineError::UnknownOwner { .. }) => {
            vec![format!("no lease for {owner}: the VF was released")]
        }
        Err(e) => return Err(cni_error(&e)),
    };
    if let Some(want) = &prev.interfaces[index].mac
        && problems.is_empty()
    {
        let have = engine
            .leases()
            .map_err(|e| cni_error(&e))?
            .into_iter()
            .find(|l| l.owner == owner)
            .and_then(|l| l.applied.settings.mac.map(|m| m.to_string()));
        if let Some(have) = have
            && !have.eq_ignore_ascii_case(want)
        {
            problems.push(format!("the lease's mac is {have}, prevResult says {want}"));
        }
    }
    if problems.is_empty()
        && let Some(ipam) = &conf.ipam
        && let Some(l3) = &ipam.l3
    {
        let held = engine.l3_address(&owner).map_err(|e| cni_error(&e))?;
        let theirs: Vec<IpAddr> = prev
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == Some(index))
            .map(|ip| ip.address.addr)
            .collect();
        match held {
            None => problems.push(format!(
                "{owner} holds no address on l3 {l3}: it was released"
            )),
            Some(a) if a.l3 != *l3 => problems.push(format!(
                "{owner} holds {} on l3 {}, the config says l3 {l3}",
                a.address, a.l3
            )),
            Some(a) if !theirs.contains(&IpAddr::V4(a.address)) => problems.push(format!(
                "{owner} holds {} on l3 {l3}, prevResult does not have it",
                a.address
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        // Ours first (a released VF is named as such), then IPAM's own CHECK.
        if let Some(ipam) = &conf.ipam
            && ipam.l3.is_none()
        {
            ipam_exec(
                conf,
                &ipam.plugin,
                Command::Check,
                env,
                &conf.delegate_stdin(),
            )?;
        }
        return Ok(());
    }
    Err(CniError::new(
        CHECK_FAILED,
        format!(
            "check failed for {} in {ns_text}: {}",
            a.ifname,
            problems.join("; ")
        ),
    )
    .with_details(problems.join("\n")))
}

/// STATUS: the ledger opens and, for a pool or a master PF, a free healthy VF is there.
fn status(conf: &PluginConf, engines: &mut Engines<'_>) -> Result<(), CniError> {
    let engine = engines
        .get(conf)
        .map_err(|e| CniError::not_available(e.msg))?;
    let Some(source) = &conf.source else {
        return Ok(());
    };
    engine
        .pod_status(&engine_source(source))
        .map_err(|e| CniError::not_available(chain(&e)))
}

/// GC: releases every attachment of this network that is not valid (and its IPAM
/// allocation, by an IPAM DEL for it), going on past failures.
fn gc(env: &CniEnv, conf: &PluginConf, engines: &mut Engines<'_>) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let keep: HashSet<String> = valid.iter().map(|a| owner(&conf.name, a)).collect();
    let engine = engines.get(conf)?;
    let report = engine
        .pod_gc(&owner_prefix(&conf.name), &keep)
        .map_err(|e| cni_error(&e))?;
    let mut errors = report.errors.clone();
    if let Some(ipam) = &conf.ipam
        && ipam.l3.is_some()
    {
        // Every address of this network's attachments not kept, leased or not (an ADD
        // killed between the allocation and its undo leaves one without a lease).
        match engine.l3_gc(&owner_prefix(&conf.name), &keep) {
            Ok(freed) => tracing::info!(freed = freed.len(), "GC: l3 addresses"),
            Err(e) => errors.push(format!("l3 addresses: {}", chain(&e))),
        }
    } else if let Some(ipam) = &conf.ipam {
        for o in &report.released {
            let Some(a) = attachment_of_owner(&conf.name, o) else {
                continue;
            };
            let mut one = env.clone();
            one.command = Command::Del;
            one.attachment = Some(a);
            one.netns = None::<PathBuf>;
            let mut stdin: serde_json::Map<String, serde_json::Value> = conf.map.clone();
            stdin.remove("cni.dev/valid-attachments");
            stdin.remove("cni.dev/attachments");
            stdin.insert("cniVersion".into(), conf.cni_version.as_str().into());
            let bytes = serde_json::Value::Object(stdin).to_string();
            if let Err(e) = ipam_exec(conf, &ipam.plugin, Command::Del, &one, bytes.as_bytes()) {
                errors.push(format!("{o}: ipam DEL: {}", e.msg));
            }
        }
    }
    tracing::info!(
        released = report.released.len(),
        errors = errors.len(),
        "GC done"
    );
    if errors.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        GC_INCOMPLETE,
        format!(
            "gc released {} attachment(s) but not all: {}",
            report.released.len(),
            errors.join("; ")
        ),
    ))
}

/// The attachment of an owner made by [`owner`].
fn attachment_of_owner(network: &str, o: &str) -> Option<Attachment> {
    let rest = o.strip_prefix(&owner_prefix(network))?;
    let (cid, ifname) = rest.rsplit_once('/')?;
    Some(Attachment {
        container_id: cid.to_owned(),
        ifname: ifname.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn owners_round_trip_and_never_mix_networks() {
        let a = Attachment {
            container_id: "abc.1-x".into(),
            ifname: "net1".into(),
        };
        let o = owner("sriov-net", &a);
        assert_eq!(o, "cni/sriov-net/abc.1-x/net1");
        assert_eq!(attachment_of_owner("sriov-net", &o), Some(a));
        assert_eq!(attachment_of_owner("sriov", &o), None);
        assert!(!o.starts_with(&owner_prefix("sriov")));
    }

    #[test]
    fn routes_without_a_gateway_take_the_gateway_of_their_family() {
        let r = CniResult::from_slice(
            "test",
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
                "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.1.0.9"}]}"#,
            crate::CniVersion::V1_0_0,
        )
        .unwrap()
        .0;
        let ip = pod_ip(&r, Some(0));
        assert_eq!(ip.addresses, ["10.1.0.5/24".parse().unwrap()]);
        let gws: Vec<_> = ip
            .routes
            .iter()
            .map(|r| r.gateway.unwrap().to_string())
            .collect();
        assert_eq!(gws, ["10.1.0.1", "10.1.0.9"]);
    }

    #[test]
    fn an_earlier_plugins_routes_stay_with_its_interface() {
        let r = CniResult::from_slice(
            "test",
            br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"},{"name":"net1"}],
                "ips":[{"address":"10.9.0.2/24","gateway":"10.9.0.1","interface":0},
                       {"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":1}],
                "routes":[{"dst":"10.9.0.0/16"},{"dst":"10.8.0.0/16","gw":"10.9.0.7"},
                          {"dst":"10.7.0.0/16","gw":"10.1.0.9"}]}"#,
            crate::CniVersion::V1_0_0,
        )
        .unwrap()
        .0;
        let dsts = |i| {
            pod_ip(&r, Some(i))
                .routes
                .iter()
                .map(|r| format!("{} via {}", r.dst, r.gateway.unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(dsts(1), ["10.7.0.0/16 via 10.1.0.9"]);
        assert_eq!(
            dsts(0),
            ["10.9.0.0/16 via 10.9.0.1", "10.8.0.0/16 via 10.9.0.7"]
        );
        assert!(in_network(
            "fd00::1".parse().unwrap(),
            "fd00::".parse().unwrap(),
            64
        ));
        assert!(!in_network(
            "10.1.1.1".parse().unwrap(),
            "10.1.0.0".parse().unwrap(),
            24
        ));
        assert!(in_network(
            "10.1.1.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}
