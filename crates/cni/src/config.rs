//! The network configuration on stdin, checked field by field into a [`PluginConf`].
//!
//! Codes: stdin that is not a JSON object is 6 (decode); a field with a wrong type or
//! value is 7 (invalid network config), its message naming the field as the config spells
//! it, the value and what is allowed, in the model's words (`invalid vlan '5000':
//! 0..=4094`); an unknown key inside one of this plugin's own objects (`serviceRoute`) is
//! 2 (unsupported field); a bad `cniVersion` is 1; a bad `MAC` in `CNI_ARGS` is 4. Unknown
//! top-level keys are ignored: runtimes add many (`args`, `dns`, `capabilities`,
//! `runtimeConfig.*`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use vfpool_model::{
    InvalidValue, LinkState, MAX_QOS, MAX_VLAN, MacAddr, PciAddr, PfRef, VfSettings, VlanProto,
    parse_on_off,
};

use crate::result::{Cidr, CniResult};
use crate::spec::{Attachment, CniEnv, CniError, Command};
use crate::version::{CniVersion, negotiate};

/// The `type` this plugin answers to.
pub const PLUGIN_TYPE: &str = "vfpool-cni";

/// Where `vfpool serve` listens on a real host (its `--socket` default).
pub const DEFAULT_DAEMON_SOCKET: &str = "/run/vfpool/api.sock";

/// The config as read from stdin: its bytes (IPAM delegation passes them on) and its
/// top-level object.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub raw: Vec<u8>,
    pub map: Map<String, Value>,
}

impl NetConf {
    /// Reads stdin's bytes: a JSON object, or code 6.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("invalid network config on stdin: {e}")))?;
        match v {
            Value::Object(map) => Ok(Self {
                raw: bytes.to_vec(),
                map,
            }),
            other => Err(CniError::decode(format!(
                "invalid network config on stdin: a JSON object, not {}",
                kind(&other)
            ))),
        }
    }

    /// The version to speak (see [`negotiate`]).
    pub fn version(&self) -> Result<CniVersion, CniError> {
        negotiate(&self.map)
    }
}

/// Where the VF comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VfSource {
    /// A VF a device plugin picked (`deviceID`, or `runtimeConfig.deviceID`).
    DeviceId(PciAddr),
    /// A lease from a vfpool pool.
    Pool(String),
    /// A lease from the VFs of this PF.
    Master(PfRef),
}

/// The `ipam.type` vfpool-cni handles itself: addresses of a vfpool L3 network.
pub const VFPOOL_IPAM: &str = "vfpool";

/// The `ipam` object: its plugin and the object as given.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    pub plugin: String,
    /// `"type": "vfpool"`: the L3 network (`ipam.l3`) whose addresses the plugin hands out
    /// itself, from the table VM NICs take theirs from (no plugin is run).
    pub l3: Option<String>,
    pub raw: Map<String, Value>,
}

/// The config, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// The version negotiated (results and errors are written in it).
    pub cni_version: CniVersion,
    pub name: String,
    /// `None` only for verbs other than ADD (DEL finds the VF by its lease; GC and STATUS
    /// may get a config without one).
    pub source: Option<VfSource>,
    /// The VF settings asked for, validated; `mac` is the effective one: `runtimeConfig.mac`
    /// over `MAC` in `CNI_ARGS` over `mac` (sriov-cni's order).
    pub settings: VfSettings,
    pub ipam: Option<IpamConf>,
    pub prev_result: Option<CniResult>,
    /// `serviceRoute.cidr`: networks routed through the veth service path (empty: none).
    pub service_routes: Vec<Cidr>,
    /// `vfpoolState`, else `VFPOOL_STATE`, else `None` (the engine's default).
    pub state_dir: Option<PathBuf>,
    /// `vfpoolSysfsRoot`, else `VFPOOL_SYSFS_ROOT`.
    pub sysfs_root: Option<PathBuf>,
    /// `VFPOOL_PROC_ROOT`.
    pub proc_root: Option<PathBuf>,
    /// `vfpoolNetlink`: `Some(true)` for `kernel` (the kernel's rtnetlink even on a
    /// simulated sysfs tree), `Some(false)` for `auto`; `None` leaves it to
    /// `VFPOOL_NETLINK`. A field because runtimes do not always pass their environment
    /// on (podman's cleanup process, which runs DEL, does not).
    pub kernel_netlink: Option<bool>,
    /// `vfpoolDaemonSocket`: the unix socket of `vfpool serve`, which does the verbs'
    /// work with its ledger open (default [`DEFAULT_DAEMON_SOCKET`]); `None` (the field
    /// given as `""`): never ask the daemon.
    pub daemon_socket: Option<PathBuf>,
    /// `runtimeConfig.CNIDeviceInfoFile`: where Multus will read the device info.
    pub device_info_file: Option<PathBuf>,
    /// `deviceInfoDir`: write the device info there too when Multus named no file.
    pub device_info_dir: Option<PathBuf>,
    /// `cni.dev/valid-attachments` (GC; libcni also sends it as `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// stdin as given.
    pub raw: Vec<u8>,
    /// The top-level object as given.
    pub map: Map<String, Value>,
}

impl PluginConf {
    /// Reads and checks stdin's bytes for the verb in `env`.
    pub fn parse(bytes: &[u8], env: &CniEnv) -> Result<Self, CniError> {
        Self::from_netconf(NetConf::from_slice(bytes)?, env)
    }

    /// Checks a config for the verb in `env`.
    pub fn from_netconf(nc: NetConf, env: &CniEnv) -> Result<Self, CniError> {
        let m = &nc.map;
        let cni_version = negotiate(m)?;
        cni_version.check_allows(env.command)?;

        let name = match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => {
                return Err(config_err(InvalidValue::new(
                    "name",
                    "",
                    "a network name (missing)",
                )));
            }
            Some(v) => return Err(wrong_type("name", v, "a network name")),
        };
        validate_network_name(&name)?;
        match m.get("type") {
            Some(Value::String(s)) if s == PLUGIN_TYPE => {}
            Some(Value::String(s)) => {
                return Err(config_err(InvalidValue::new("type", s, PLUGIN_TYPE)));
            }
            None | Some(Value::Null) => {
                return Err(config_err(InvalidValue::new(
                    "type",
                    "",
                    format!("{PLUGIN_TYPE} (missing)"),
                )));
            }
            Some(v) => return Err(wrong_type("type", v, PLUGIN_TYPE)),
        }

        let runtime = match m.get("runtimeConfig") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o),
            Some(v) => return Err(wrong_type("runtimeConfig", v, "an object")),
        };
        let rt = |key: &str| runtime.and_then(|o| o.get(key)).filter(|v| !v.is_null());

        let source = vf_source(m, rt("deviceID"))?;
        if source.is_none() && env.command == Command::Add {
            return Err(CniError::new(
                CniError::INVALID_CONFIG,
                "missing VF source: one of deviceID (a device plugin's VF, as Multus passes it), pool or master",
            ));
        }

        let mut settings = vf_settings(m)?;
        if let Some(mac) = env.args.get("MAC") {
            let mac = parse_mac("CNI_ARGS MAC", mac).map_err(CniError::invalid_env)?;
            settings.mac = Some(mac);
        }
        if let Some(v) = rt("mac") {
            let s = string(v, "runtimeConfig.mac", MAC_ALLOWED)?;
            settings.mac = Some(parse_mac("runtimeConfig.mac", s).map_err(config_err)?);
        }
        settings.validate().map_err(|e| config_err(cni_names(e)))?;

        let ipam = ipam(m)?;
        let prev_result = match m.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::from_value("prevResult", v, cni_version)?.0),
        };
        let service_routes = service_routes(m)?;

        let state_dir =
            opt_path(m.get("vfpoolState"), "vfpoolState")?.or_else(|| env.vfpool_state.clone());
        let sysfs_root = opt_path(m.get("vfpoolSysfsRoot"), "vfpoolSysfsRoot")?
            .or_else(|| env.vfpool_sysfs_root.clone());
        let kernel_netlink = match m.get("vfpoolNetlink").filter(|v| !v.is_null()) {
            None => None,
            Some(v) => match string(v, "vfpoolNetlink", NETLINK_ALLOWED)? {
                "auto" => Some(false),
                "kernel" => Some(true),
                s => {
                    return Err(config_err(InvalidValue::new(
                        "vfpoolNetlink",
                        s,
                        NETLINK_ALLOWED,
                    )));
                }
            },
        };
        let daemon_socket = match m.get("vfpoolDaemonSocket") {
            Some(Value::String(s)) if s.is_empty() => None,
            v => Some(
                opt_path(v, "vfpoolDaemonSocket")
                    .map_err(|e| {
                        CniError::new(e.code, format!("{} (or \"\": never ask the daemon)", e.msg))
                    })?
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_SOCKET)),
            ),
        };
        let device_info_dir = opt_path(m.get("deviceInfoDir"), "deviceInfoDir")?;
        let device_info_file =
            opt_path(rt("CNIDeviceInfoFile"), "runtimeConfig.CNIDeviceInfoFile")?;

        let valid_attachments = match m
            .get("cni.dev/valid-attachments")
            .filter(|v| !v.is_null())
            .map(|v| ("cni.dev/valid-attachments", v))
            .or_else(|| {
                m.get("cni.dev/attachments")
                    .filter(|v| !v.is_null())
                    .map(|v| ("cni.dev/attachments", v))
            }) {
            Some((field, v)) => Some(attachments(field, v)?),
            None => None,
        };
        if env.command == Command::Gc && valid_attachments.is_none() {
            return Err(CniError::new(
                CniError::INVALID_CONFIG,
                "missing cni.dev/valid-attachments for GC: a list (possibly empty) of {\"containerID\", \"ifname\"}; without it GC would release every attachment",
            ));
        }

        Ok(Self {
            cni_version,
            name,
            source,
            settings,
            ipam,
            prev_result,
            service_routes,
            state_dir,
            sysfs_root,
            proc_root: env.vfpool_proc_root.clone(),
            kernel_netlink,
            daemon_socket,
            device_info_file,
            device_info_dir,
            valid_attachments,
            raw: nc.raw,
            map: nc.map,
        })
    }

    /// The config a delegated (IPAM) plugin gets on stdin: the bytes as given, with
    /// `cniVersion` set to the negotiated version (rewritten only when it differs, as when
    /// the config gave only `cniVersions`).
    pub fn delegate_stdin(&self) -> Cow<'_, [u8]> {
        with_version(&self.raw, &self.map, self.cni_version)
    }

    /// Where this attachment's device-info file goes: `runtimeConfig.CNIDeviceInfoFile`
    /// when Multus named one, else `deviceInfoDir` with Multus's own file name
    /// (`devinfo::file_name`), else nowhere (nobody would read it).
    pub fn device_info_path(&self, env: &CniEnv) -> Option<PathBuf> {
        if let Some(f) = &self.device_info_file {
            return Some(f.clone());
        }
        let dir = self.device_info_dir.as_ref()?;
        let a = env.attachment.as_ref()?;
        Some(dir.join(crate::devinfo::file_name(
            &self.name,
            &a.container_id,
            &a.ifname,
        )))
    }
}

/// `raw` with `cniVersion` set to `version` (the bytes unchanged when it already is).
pub(crate) fn with_version<'a>(
    raw: &'a [u8],
    map: &Map<String, Value>,
    version: CniVersion,
) -> Cow<'a, [u8]> {
    if map.get("cniVersion").and_then(Value::as_str) == Some(version.as_str()) {
        return Cow::Borrowed(raw);
    }
    let mut m = map.clone();
    m.insert("cniVersion".into(), version.as_str().into());
    Cow::Owned(Value::Object(m).to_string().into_bytes())
}

/// A network name as libcni checks it (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`). Code 7.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut b = name.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(config_err(InvalidValue::new(
            "name",
            name,
            "a letter or digit, then letters, digits, '_', '.' or '-'",
        )))
    }
}

/// Checks a delegated plugin's name: no path, as `CNI_PATH` is where it is looked up.
pub fn validate_plugin_name(field: &'static str, name: &str) -> Result<(), CniError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(config_err(InvalidValue::new(
            field,
            name,
            "a plugin name without '/' (looked up in CNI_PATH)",
        )));
    }
    Ok(())
}

const MAC_ALLOWED: &str = "six hex octets like 02:00:00:00:00:01";

const NETLINK_ALLOWED: &str = "auto or kernel";

fn config_err(e: InvalidValue) -> CniError {
    CniError::invalid_config(e)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A field of the wrong JSON type: the value shown as JSON.
fn wrong_type(field: &'static str, v: &Value, allowed: &str) -> CniError {
    config_err(InvalidValue::new(field, v, allowed))
}

fn string<'a>(v: &'a Value, field: &'static str, allowed: &str) -> Result<&'a str, CniError> {
    v.as_str().ok_or_else(|| wrong_type(field, v, allowed))
}

/// Renames a model error's field to `field` (`pci address` becomes `deviceID`).
fn renamed(e: InvalidValue, field: &'static str) -> InvalidValue {
    InvalidValue { field, ..e }
}

/// The model's CLI field names as the CNI config spells them.
fn cni_names(e: InvalidValue) -> InvalidValue {
    let field = match e.field {
        "qos" => "vlanQoS",
        "vlan-proto" => "vlanProto",
        "min-rate" => "min_tx_rate",
        "max-rate" => "max_tx_rate",
        "link-state" => "link_state",
        f => f,
    };
    InvalidValue {
        field,
        allowed: e.allowed.replace("max-rate", "max_tx_rate"),
        ..e
    }
}

fn parse_mac(field: &'static str, s: &str) -> Result<MacAddr, InvalidValue> {
    s.parse::<MacAddr>().map_err(|e| renamed(e, field))
}

fn vf_source(
    m: &Map<String, Value>,
    rt_device: Option<&Value>,
) -> Result<Option<VfSource>, CniError> {
    let pci = |field: &'static str, v: &Value| -> Result<PciAddr, CniError> {
        let s = string(v, field, "a VF's PCI address like 0000:03:10.0")?;
        s.parse::<PciAddr>()
            .map_err(|e| config_err(renamed(e, field)))
    };
    let top = match m.get("deviceID").filter(|v| !v.is_null()) {
        Some(v) => Some(pci("deviceID", v)?),
        None => None,
    };
    let rt = match rt_device {
        Some(v) => Some(pci("runtimeConfig.deviceID", v)?),
        None => None,
    };
    let device = match (top, rt) {
        (Some(a), Some(b)) if a != b => {
            return Err(CniError::new(
                CniError::INVALID_CONFIG,
                format!(
                    "conflicting deviceID '{a}' and runtimeConfig.deviceID '{b}': the same VF, or only one of them"
                ),
            ));
        }
        (a, b) => a.or(b),
    };
    let pool = match m.get("pool").filter(|v| !v.is_null()) {
        Some(v) => {
            let s = string(v, "pool", "a vfpool pool name")?;
            if s.is_empty() {
                return Err(config_err(InvalidValue::new(
                    "pool",
                    s,
                    "a vfpool pool name",
                )));
            }
            Some(s.to_owned())
        }
        None => None,
    };
    let master = match m.get("master").filter(|v| !v.is_null()) {
        Some(v) => {
            let s = string(v, "master", "a PF's netdev name or PCI address")?;
            Some(PfRef::parse(s).map_err(|e| config_err(renamed(e, "master")))?)
        }
        None => None,
    };
    let given: Vec<&str> = [
        device.is_some().then_some("deviceID"),
        pool.is_some().then_some("pool"),
        master.is_some().then_some("master"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(CniError::new(
            CniError::INVALID_CONFIG,
            format!(
                "conflicting VF sources {}: exactly one of deviceID (or runtimeConfig.deviceID), pool, master",
                given.join(", ")
            ),
        ));
    }
    Ok(device
        .map(VfSource::DeviceId)
        .or(pool.map(VfSource::Pool))
        .or(master.map(VfSource::Master)))
}

/// An unsigned integer field in `0..=max`, or `None` when absent or null.
fn uint(
    m: &Map<String, Value>,
    field: &'static str,
    max: u64,
    allowed: &str,
) -> Result<Option<u64>, CniError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(wrong_type(field, v, allowed)),
        },
    }
}

/// An on/off field: sriov-cni's "on"/"off" strings (and "true"/"false", as the CLI takes),
/// or a JSON boolean.
fn on_off(m: &Map<String, Value>, field: &'static str) -> Result<Option<bool>, CniError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => parse_on_off(field, s).map(Some).map_err(config_err),
        Some(v) => Err(wrong_type(field, v, "on or off")),
    }
}

fn vf_settings(m: &Map<String, Value>) -> Result<VfSettings, CniError> {
    let mut s = VfSettings::default();
    if let Some(v) = m.get("mac").filter(|v| !v.is_null()) {
        s.mac = Some(parse_mac("mac", string(v, "mac", MAC_ALLOWED)?).map_err(config_err)?);
    }
    let vlan_allowed = format!("0..={MAX_VLAN}");
    s.vlan = uint(m, "vlan", MAX_VLAN.into(), &vlan_allowed)?.map(|n| n as u16);
    let qos_allowed = format!("0..={MAX_QOS}");
    s.qos = uint(m, "vlanQoS", MAX_QOS.into(), &qos_allowed)?.map(|n| n as u8);
    if let Some(v) = m.get("vlanProto").filter(|v| !v.is_null()) {
        let p = string(v, "vlanProto", "802.1q or 802.1ad")?;
        s.vlan_proto = Some(
            p.parse::<VlanProto>()
                .map_err(|e| config_err(renamed(e, "vlanProto")))?,
        );
    }
    s.spoofchk = on_off(m, "spoofchk")?;
    s.trust = on_off(m, "trust")?;
    if let Some(v) = m.get("link_state").filter(|v| !v.is_null()) {
        let l = string(v, "link_state", "auto, enable or disable")?;
        s.link_state = Some(
            l.parse::<LinkState>()
                .map_err(|e| config_err(renamed(e, "link_state")))?,
        );
    }
    let rate_allowed = format!("0..={} (Mbit/s; 0 is no limit)", u32::MAX);
    s.min_tx_rate = uint(m, "min_tx_rate", u32::MAX.into(), &rate_allowed)?.map(|n| n as u32);
    s.max_tx_rate = uint(m, "max_tx_rate", u32::MAX.into(), &rate_allowed)?.map(|n| n as u32);
    s.mtu = uint(m, "mtu", u32::MAX.into(), "68 or more (bytes)")?.map(|n| n as u32);
    Ok(s)
}

fn ipam(m: &Map<String, Value>) -> Result<Option<IpamConf>, CniError> {
    let o = match m.get("ipam") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(v) => return Err(wrong_type("ipam", v, "an object with a \"type\"")),
    };
    let plugin = match o.get("type") {
        // `"ipam": {}` is no IPAM, as for libcni's plugins (Multus writes it).
        None | Some(Value::Null) if o.is_empty() => return Ok(None),
        None | Some(Value::Null) => {
            return Err(config_err(InvalidValue::new(
                "ipam.type",
                "",
                "an IPAM plugin's name, like host-local (missing)",
            )));
        }
        Some(v) => string(v, "ipam.type", "an IPAM plugin's name, like host-local")?,
    };
    validate_plugin_name("ipam.type", plugin)?;
    let l3 = if plugin == VFPOOL_IPAM {
        const ALLOWED: &str = "the name of a vfpool L3 network (vfpool l3 list)";
        match o.get("l3") {
            None | Some(Value::Null) => {
                return Err(config_err(InvalidValue::new(
                    "ipam.l3",
                    "",
                    format!("{ALLOWED} (missing; ipam type vfpool needs it)"),
                )));
            }
            Some(v) => {
                let name = string(v, "ipam.l3", ALLOWED)?;
                if name.is_empty() {
                    return Err(config_err(InvalidValue::new("ipam.l3", name, ALLOWED)));
                }
                Some(name.to_owned())
            }
        }
    } else {
        None
    };
    Ok(Some(IpamConf {
        plugin: plugin.to_owned(),
        l3,
        raw: o.clone(),
    }))
}

fn service_routes(m: &Map<String, Value>) -> Result<Vec<Cidr>, CniError> {
    let o = match m.get("serviceRoute") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(v) => {
            return Err(wrong_type(
                "serviceRoute",
                v,
                "an object like {\"cidr\": \"10.96.0.0/12\"}",
            ));
        }
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "cidr") {
        return Err(CniError::unsupported_field(
            InvalidValue::new("serviceRoute field", k, "cidr").to_string(),
        ));
    }
    const ALLOWED: &str = "a network like 10.96.0.0/12, or a list of them";
    let list: Vec<&Value> = match o.get("cidr") {
        Some(Value::String(_)) => o.get("cidr").into_iter().collect(),
        Some(Value::Array(a)) if !a.is_empty() => a.iter().collect(),
        Some(v) => return Err(wrong_type("serviceRoute.cidr", v, ALLOWED)),
        None => {
            return Err(config_err(InvalidValue::new(
                "serviceRoute.cidr",
                "",
                format!("{ALLOWED} (missing)"),
            )));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let s = string(v, "serviceRoute.cidr", ALLOWED)?;
        let c = Cidr::parse_field("serviceRoute.cidr", s).map_err(config_err)?;
        if !c.is_network() {
            return Err(config_err(InvalidValue::new(
                "serviceRoute.cidr",
                s,
                format!("a network with its host bits zero, like {}", c.network()),
            )));
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// An absolute path field, or `None` when absent or null.
fn opt_path(v: Option<&Value>, field: &'static str) -> Result<Option<PathBuf>, CniError> {
    const ALLOWED: &str = "an absolute path";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let s = string(v, field, ALLOWED)?;
    if !Path::new(s).is_absolute() || s.contains('\0') {
        return Err(config_err(InvalidValue::new(field, s, ALLOWED)));
    }
    Ok(Some(PathBuf::from(s)))
}

fn attachments(field: &'static str, v: &Value) -> Result<Vec<Attachment>, CniError> {
    const ALLOWED: &str = "a list of {\"containerID\": ..., \"ifname\": ...}";
    let Value::Array(list) = v else {
        return Err(wrong_type(field, v, ALLOWED));
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let (Some(cid), Some(ifname)) = (
            item.get("containerID").and_then(Value::as_str),
            item.get("ifname").and_then(Value::as_str),
        ) else {
            return Err(wrong_type(field, item, ALLOWED));
        };
        out.push(Attachment {
            container_id: cid.to_owned(),
            ifname: ifname.to_owned(),
        });
    }
    Ok(out)
}
