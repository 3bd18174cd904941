//! Binding a VF to a driver the way that works with autoprobe off: `driver_override`, unbind
//! from the current driver, `drivers_probe`, then a check of the `driver` link (a probe
//! that fails still answers success). All writes go through [`Sysfs`], so the simulated
//! host sees them as the kernel would.

use std::io;
use std::path::PathBuf;

use vfpool_model::PciAddr;

use crate::{HostError, Sysfs};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot bind {vf} to {driver}: writing {}", .path.display())]
    Bind {
        vf: PciAddr,
        driver: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "probing {vf} with {driver} did not bind it (bound now: {found}); vfio-pci needs an IOMMU"
    )]
    NotBound {
        vf: PciAddr,
        driver: String,
        found: String,
    },
    #[error(transparent)]
    Sysfs(#[from] HostError),
}

fn dev(fs: &Sysfs, vf: PciAddr) -> PathBuf {
    fs.path(format!("bus/pci/devices/{vf}"))
}

/// The driver `vf` is bound to now, if any.
pub fn current(fs: &Sysfs, vf: PciAddr) -> Result<Option<String>, HostError> {
    fs.link_name(&dev(fs, vf).join("driver"))
}

/// `driver_override` of `vf` (`None` for the kernel's `(null)` or empty).
pub fn driver_override(fs: &Sysfs, vf: PciAddr) -> Result<Option<String>, HostError> {
    Ok(fs
        .read_opt(&dev(fs, vf).join("driver_override"))?
        .filter(|v| v != "(null)" && !v.is_empty()))
}

/// Sets `driver_override` of `vf` (`None` clears it), unless it is that already.
pub fn set_driver_override(fs: &Sysfs, vf: PciAddr, value: Option<&str>) -> Result<(), HostError> {
    if driver_override(fs, vf).ok().flatten().as_deref() == value {
        return Ok(());
    }
    let path = dev(fs, vf).join("driver_override");
    let value = value.unwrap_or("\n");
    fs.write(&path, value).map_err(|source| HostError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// A writer of sysfs attributes for binding `vf` to `driver` (named in its errors).
fn writer<'a>(
    fs: &'a Sysfs,
    vf: PciAddr,
    driver: &'a str,
) -> impl Fn(PathBuf, &str) -> Result<(), DriverError> + 'a {
    move |path, value| {
        fs.write(&path, value).map_err(|source| DriverError::Bind {
            vf,
            driver: driver.to_owned(),
            path,
            source,
        })
    }
}

/// Checks that `vf` is bound to `driver` now.
fn check_bound(fs: &Sysfs, vf: PciAddr, driver: &str) -> Result<(), DriverError> {
    let now = current(fs, vf)?;
    if now.as_deref() != Some(driver) {
        return Err(DriverError::NotBound {
            vf,
            driver: driver.to_owned(),
            found: now.unwrap_or_else(|| "none".into()),
        });
    }
    Ok(())
}

/// Binds `vf` to `target`, or leaves it unbound for `None` (`driver_override` cleared, so
/// the next probe picks the kernel's choice). Nothing to do when it is bound so already.
pub fn bind(fs: &Sysfs, vf: PciAddr, target: Option<&str>) -> Result<(), DriverError> {
    let cur = current(fs, vf)?;
    if cur.as_deref() == target {
        return Ok(());
    }
    let driver = target.unwrap_or("(none)");
    let w = writer(fs, vf, driver);
    w(dev(fs, vf).join("driver_override"), target.unwrap_or("\n"))?;
    if let Some(c) = &cur {
        w(
            fs.path(format!("bus/pci/drivers/{c}/unbind")),
            &vf.to_string(),
        )?;
    }
    if let Some(t) = target {
        w(fs.path("bus/pci/drivers_probe"), &vf.to_string())?;
        check_bound(fs, vf, t)?;
    }
    tracing::debug!(vf = %vf, driver, "driver bound");
    Ok(())
}

/// Unbinds `vf` from its driver (`driver_override` cleared).
pub fn unbind(fs: &Sysfs, vf: PciAddr) -> Result<(), DriverError> {
    bind(fs, vf, None)
}

/// Unbinds and probes `vf` again with the driver it has now (a reload: the VF driver comes
/// up with what its PF set, a MAC for one), leaving `driver_override` as it was. Nothing
/// to do for an unbound VF.
pub fn rebind(fs: &Sysfs, vf: PciAddr) -> Result<(), DriverError> {
    let Some(cur) = current(fs, vf)? else {
        return Ok(());
    };
    let over = dev(fs, vf).join("driver_override");
    let prev = driver_override(fs, vf)?;
    let w = writer(fs, vf, &cur);
    w(over.clone(), &cur)?;
    w(
        fs.path(format!("bus/pci/drivers/{cur}/unbind")),
        &vf.to_string(),
    )?;
    let probed = w(fs.path("bus/pci/drivers_probe"), &vf.to_string());
    w(over, prev.as_deref().unwrap_or("\n"))?;
    probed?;
    check_bound(fs, vf, &cur)
}
