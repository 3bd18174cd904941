//! vfpool's CNI plugin, the spec layer: what the runtime gives (`CNI_*` variables, the
//! network config on stdin), what the plugin answers (results and error results in every
//! supported spec version), IPAM by delegation to another plugin, and the device-info file
//! Multus reads; the verbs (ADD, DEL, CHECK, GC, STATUS against the engine, [`plugin`]),
//! run by the binary itself or by `vfpool serve` for it ([`daemon`]).
//!
//! Synchronous, no async runtime: a CNI plugin is a short-lived process.

#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
pub mod devinfo;
pub mod ipam;
pub mod plugin;
pub mod result;
pub mod spec;
pub mod version;

pub use config::{DEFAULT_DAEMON_SOCKET, IpamConf, NetConf, PLUGIN_TYPE, PluginConf, VfSource};
pub use result::{Cidr, CniResult, Dns, Interface, IpConfig, Route};
pub use spec::{Attachment, CniArgs, CniEnv, CniError, Command, SUPPORTED_VERSIONS};
pub use version::{CniVersion, version_output};
