//! The DRA plugin's [`ClaimSource`] over the API server: the ResourceClaim
//! (`resource.k8s.io/v1`) the kubelet names, read with `kube`, and what its
//! `status.allocation` gives this driver.

use k8s_openapi::api::resource::v1::{DeviceAllocationConfiguration, ResourceClaim};
use kube::Api;

use crate::dra::{AllocatedDevice, BoxFuture, ClaimRef, ClaimSource};

/// Reads claims from the API server through `client`, for driver `driver`.
#[derive(Clone)]
pub struct KubeClaims {
    client: kube::Client,
    driver: String,
}

impl KubeClaims {
    pub fn new(client: kube::Client, driver: &str) -> Self {
        Self {
            client,
            driver: driver.to_owned(),
        }
    }
}

impl ClaimSource for KubeClaims {
    fn allocation(&self, claim: ClaimRef) -> BoxFuture<'_, Result<Vec<AllocatedDevice>, String>> {
        Box::pin(async move {
            let api: Api<ResourceClaim> = Api::namespaced(self.client.clone(), &claim.namespace);
            let rc = api.get(&claim.name).await.map_err(|e| {
                format!(
                    "cannot get resourceclaim {}/{}: {}",
                    claim.namespace,
                    claim.name,
                    crate::chain(&e)
                )
            })?;
            allocated_devices(&rc, &claim, &self.driver)
        })
    }
}

/// Does a configuration for `requests` (none: every request) apply to the device allocated
/// for `request`? A result of a subrequest (`parent/sub`) is also its parent's.
fn applies(requests: Option<&Vec<String>>, request: &str) -> bool {
    match requests {
        None => true,
        Some(r) if r.is_empty() => true,
        Some(r) => r.iter().any(|q| {
            q == request
                || request
                    .strip_prefix(q.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }),
    }
}

/// What claim `rc` (the kubelet's `want`, checked by uid) was allocated from `driver`:
/// each device of `status.allocation.devices.results` for it, with the opaque configurations
/// for `driver` that apply to its request, the class's first, then the claim's (a later
/// one overrides an earlier one). An error is one line naming the claim.
pub fn allocated_devices(
    rc: &ResourceClaim,
    want: &ClaimRef,
    driver: &str,
) -> Result<Vec<AllocatedDevice>, String> {
    let who = format!("resourceclaim {}/{}", want.namespace, want.name);
    let uid = rc.metadata.uid.as_deref().unwrap_or("");
    if uid != want.uid {
        return Err(format!(
            "{who} has uid '{uid}', not '{}' (deleted and made again?)",
            want.uid
        ));
    }
    let Some(devices) = rc
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .and_then(|a| a.devices.as_ref())
    else {
        return Err(format!("{who} is not allocated"));
    };
    let configs: &[DeviceAllocationConfiguration] = devices.config.as_deref().unwrap_or(&[]);
    for (i, c) in configs.iter().enumerate() {
        if c.source != "FromClass" && c.source != "FromClaim" {
            return Err(format!(
                "{who}: invalid status.allocation.devices.config[{i}].source '{}': FromClass or FromClaim",
                c.source
            ));
        }
    }
    let ordered: Vec<&DeviceAllocationConfiguration> = configs
        .iter()
        .filter(|c| c.source == "FromClass")
        .chain(configs.iter().filter(|c| c.source == "FromClaim"))
        .collect();
    let out: Vec<AllocatedDevice> = devices
        .results
        .iter()
        .flatten()
        .filter(|r| r.driver == driver)
        .map(|r| AllocatedDevice {
            request: r.request.clone(),
            pool: r.pool.clone(),
            device: r.device.clone(),
            configs: ordered
                .iter()
                .filter(|c| applies(c.requests.as_ref(), &r.request))
                .filter_map(|c| c.opaque.as_ref())
                .filter(|o| o.driver == driver)
                .map(|o| o.parameters.0.clone())
                .collect(),
        })
        .collect();
    if out.is_empty() {
        return Err(format!("{who} has no device of driver {driver} allocated"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_applies_to_its_requests_and_their_subrequests() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(applies(None, "nic"));
        assert!(applies(Some(&r(&[])), "nic"));
        assert!(applies(Some(&r(&["nic"])), "nic"));
        assert!(applies(Some(&r(&["nic"])), "nic/fast"));
        assert!(applies(Some(&r(&["nic/fast"])), "nic/fast"));
        assert!(!applies(Some(&r(&["nic"])), "nic2"));
        assert!(!applies(Some(&r(&["nic/fast"])), "nic"));
        assert!(!applies(Some(&r(&["gpu"])), "nic"));
    }
}
