//! `vfpool serve` on Kubernetes: the kubelet plugins and the ResourceSlice publisher of
//! `vfpool-k8s`, started beside the API when asked ([`KubernetesConfig`]), each following the
//! daemon's change counter ([`AppState::subscribe`]: this process's changes and other
//! processes').

use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinSet;
use vfpool_k8s::{Config, KubeClaims, SliceConfig};
use vfpool_model::InvalidValue;

use crate::error::DaemonError;
use crate::state::AppState;

/// The kubelet's directory on a real host.
pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";
/// Where CDI spec files go on a real host.
pub const DEFAULT_CDI_DIR: &str = "/var/run/cdi";

/// What runs on Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The kubelet's directory; `None`: [`DEFAULT_KUBELET_ROOT`], or `STATE/kubelet` on the
    /// demo host.
    pub kubelet_root: Option<PathBuf>,
    /// The DRA driver: the kubelet plugin and the ResourceSlices.
    pub dra: bool,
    /// The device plugins (v1beta1), one per pool.
    pub device_plugin: bool,
    /// The DRA driver's name.
    pub driver: String,
    /// This node's name (needed by the DRA driver: its ResourceSlices' node and pool).
    pub node_name: Option<String>,
    /// The device plugins' resources are `PREFIX/POOL`.
    pub resource_prefix: String,
    /// Where CDI specs are written; `None`: [`DEFAULT_CDI_DIR`], or `STATE/cdi` on the demo
    /// host.
    pub cdi_dir: Option<PathBuf>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            kubelet_root: None,
            dra: true,
            device_plugin: false,
            driver: vfpool_k8s::DEFAULT_DRIVER.to_owned(),
            node_name: None,
            resource_prefix: "vfpool.io".to_owned(),
            cdi_dir: None,
        }
    }
}

/// `s` is a DNS subdomain (what a resource name's prefix must be).
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// What was checked and resolved before anything starts.
struct Plan {
    cfg: Config,
    slices: Option<SliceConfig>,
    device_plugin: bool,
}

fn plan(
    k: &KubernetesConfig,
    simulated: bool,
    state_dir: &std::path::Path,
) -> Result<Plan, InvalidValue> {
    if !k.dra && !k.device_plugin {
        return Err(InvalidValue::new(
            "no-dra",
            "true",
            "something to serve: the DRA driver (without --no-dra) or --device-plugin",
        ));
    }
    if !dns_subdomain(&k.resource_prefix) {
        return Err(InvalidValue::new(
            "resource-prefix",
            &k.resource_prefix,
            "a DNS subdomain (lower-case letters, digits, '-' and '.'), e.g. vfpool.io",
        ));
    }
    let slices = if k.dra {
        let node = k.node_name.as_deref().unwrap_or("");
        if node.is_empty() {
            return Err(InvalidValue::new(
                "node-name",
                node,
                "this node's Kubernetes name (--node-name or NODE_NAME), needed by the DRA driver",
            ));
        }
        let mut s = SliceConfig::new(&k.driver, node)?;
        s.claim_owner_prefix = vfpool_k8s::dra::DRA_OWNER_PREFIX.to_owned();
        Some(s)
    } else {
        None
    };
    let (root, cdi) = if simulated {
        (state_dir.join("kubelet"), state_dir.join("cdi"))
    } else {
        (
            PathBuf::from(DEFAULT_KUBELET_ROOT),
            PathBuf::from(DEFAULT_CDI_DIR),
        )
    };
    Ok(Plan {
        cfg: Config {
            kubelet_root: k.kubelet_root.clone().unwrap_or(root),
            resource_prefix: k.resource_prefix.clone(),
            driver_name: k.driver.clone(),
            cdi_dir: k.cdi_dir.clone().unwrap_or(cdi),
            ..Config::default()
        },
        slices,
        device_plugin: k.device_plugin,
    })
}

/// Checks `k` and starts what it asks for into `tasks`: the device plugins, the DRA kubelet
/// plugin (claims read from the API server) and the ResourceSlice publisher. The API server
/// is reached as `kubectl` would (in the cluster: the pod's service account; outside:
/// `KUBECONFIG` or `~/.kube/config`). Each task ends when the daemon stops; one that fails
/// stops the daemon.
pub async fn start(
    state: &AppState,
    k: &KubernetesConfig,
    tasks: &mut JoinSet<std::io::Result<()>>,
) -> Result<(), DaemonError> {
    let host = state.host().clone();
    let p = plan(k, host.is_simulated(), host.state_dir())?;
    let client = match &p.slices {
        Some(_) => Some(
            vfpool_k8s::kube::Client::try_default()
                .await
                .map_err(|e| DaemonError::Kubernetes(vfpool_k8s::chain(&e)))?,
        ),
        None => None,
    };
    tracing::info!(
        kubelet_root = %p.cfg.kubelet_root.display(),
        dra = p.slices.is_some(),
        device_plugin = p.device_plugin,
        driver = %p.cfg.driver_name,
        "serving on Kubernetes"
    );
    let io = |what: &'static str| {
        move |e: &dyn std::error::Error| {
            std::io::Error::other(format!("the {what} stopped: {}", vfpool_k8s::chain(e)))
        }
    };
    if p.device_plugin {
        let (cfg, host, changes) = (p.cfg.clone(), host.clone(), state.subscribe());
        tasks.spawn(async move {
            vfpool_k8s::run_device_plugins(cfg, host, changes)
                .await
                .map_err(|e| io("device plugin")(&e))
        });
    }
    if let (Some(slices), Some(client)) = (p.slices, client) {
        let claims = Arc::new(KubeClaims::new(client.clone(), &p.cfg.driver_name));
        let (cfg, h, changes) = (p.cfg.clone(), host.clone(), state.subscribe());
        tasks.spawn(async move {
            vfpool_k8s::run_dra_plugin(cfg, h, changes, claims)
                .await
                .map_err(|e| io("DRA plugin")(&e))
        });
        let (h, changes) = (host.clone(), state.subscribe());
        tasks.spawn(async move {
            vfpool_k8s::run_slice_publisher(slices, h, client, changes)
                .await
                .map_err(|e| io("ResourceSlice publisher")(&e))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> KubernetesConfig {
        KubernetesConfig {
            node_name: Some("worker-1".into()),
            ..KubernetesConfig::default()
        }
    }

    #[test]
    fn the_demo_host_keeps_the_kubelet_and_cdi_in_its_state_directory() {
        let p = plan(&k(), true, std::path::Path::new("/st")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cfg.kubelet_root, PathBuf::from("/st/kubelet"));
        assert_eq!(p.cfg.cdi_dir, PathBuf::from("/st/cdi"));
        let p = plan(&k(), false, std::path::Path::new("/st")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cfg.kubelet_root, PathBuf::from(DEFAULT_KUBELET_ROOT));
        assert_eq!(p.cfg.cdi_dir, PathBuf::from(DEFAULT_CDI_DIR));
        let given = KubernetesConfig {
            kubelet_root: Some("/k".into()),
            cdi_dir: Some("/c".into()),
            ..k()
        };
        let p = plan(&given, true, std::path::Path::new("/st")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cfg.kubelet_root, PathBuf::from("/k"));
        assert_eq!(p.cfg.cdi_dir, PathBuf::from("/c"));
        assert!(p.slices.is_some() && !p.device_plugin);
    }

    #[test]
    fn bad_flags_are_one_line_naming_the_flag() {
        let st = std::path::Path::new("/st");
        let e = |c: KubernetesConfig| match plan(&c, true, st) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            e(KubernetesConfig {
                node_name: None,
                ..k()
            }),
            "invalid node-name '': this node's Kubernetes name (--node-name or NODE_NAME), needed by the DRA driver"
        );
        assert_eq!(
            e(KubernetesConfig { dra: false, ..k() }),
            "invalid no-dra 'true': something to serve: the DRA driver (without --no-dra) or --device-plugin"
        );
        assert_eq!(
            e(KubernetesConfig {
                resource_prefix: "Vfpool_IO".into(),
                ..k()
            }),
            "invalid resource-prefix 'Vfpool_IO': a DNS subdomain (lower-case letters, digits, '-' and '.'), e.g. vfpool.io"
        );
        assert!(
            e(KubernetesConfig {
                driver: "Bad Driver".into(),
                ..k()
            })
            .starts_with("invalid "),
        );
        // Without DRA no node name is needed.
        assert!(
            plan(
                &KubernetesConfig {
                    dra: false,
                    device_plugin: true,
                    node_name: None,
                    ..k()
                },
                true,
                st
            )
            .is_ok()
        );
    }
}
