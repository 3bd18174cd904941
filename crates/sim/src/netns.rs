//! Network namespaces, names, altnames, promiscuous mode and addresses of the simulated host
//! (the netdev half of [`SimNetOps`]).
//!
//! A netdev of the simulated host's own namespace sits where the sysfs simulator put it
//! (`sys/devices/.../PCI/net/NAME`, reached through `sys/class/net/NAME`). Moved into
//! another namespace, its directory goes to `SIMROOT/netns/KEY/dev/NAME` and it vanishes
//! from `sys/class/net` and from its PCI function's `net/`, as it does from a real host's
//! sysfs; `KEY` names the namespace by the device and inode of the file the caller opened
//! (`/run/netns/NAME` on a real host; any file on the simulated one), and
//! `SIMROOT/netns/KEY/path` remembers that file. When it is gone the namespace is gone:
//! as the kernel does (`default_device_exit_net`), its netdevs come back to the host under
//! their names, or as `devIFINDEX` when the name is taken there; a netdev whose PCI function
//! or driver went meanwhile is gone with it.
//!
//! What the kernel keeps that sysfs does not show lives in `SIMROOT/netlink/`:
//! `altnames.json` and `addrs.json`, by ifindex. Rules kept from the kernel (checked on
//! 6.18): a name is taken in a namespace when a netdev has it as its name or as an altname
//! (rename and move give EEXIST, also for the netdev's own altname); a netdev that is up
//! can be renamed (since 6.2; older kernels said EBUSY); a rename keeps no altname; altnames travel with a netdev to
//! another namespace, addresses do not; a moved netdev arrives down.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::libc;
use serde::{Deserialize, Serialize};

use vfpool_host::kfile;
use vfpool_netlink::{IfAddr, NetlinkError, dev_valid_name};

use crate::net::SimNetOps;

pub(crate) const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;

/// Per-ifindex facts of the simulated kernel that sysfs does not show.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Extra {
    #[serde(default)]
    pub(crate) altnames: BTreeMap<u32, Vec<String>>,
    #[serde(default)]
    pub(crate) addrs: BTreeMap<u32, Vec<String>>,
    /// The other end of each veth, by ifindex (both directions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) peers: BTreeMap<u32, u32>,
    /// The main table of each namespace (`""` for the host's), see `route.rs`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) routes: BTreeMap<String, Vec<crate::route::SimRoute>>,
    /// The sysctls written in each namespace (`""` for the host's), see `route.rs`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sysctls: BTreeMap<String, BTreeMap<String, String>>,
}

pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl SimNetOps {
    pub(crate) fn sim_io(path: &Path) -> impl FnOnce(io::Error) -> NetlinkError + '_ {
        move |source| NetlinkError::SimIo {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn extra_path(&self) -> PathBuf {
        self.root().join("netlink/netdevs.json")
    }

    pub(crate) fn load_extra(&self) -> Result<Extra, NetlinkError> {
        let path = self.extra_path();
        match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| NetlinkError::SimState { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Extra::default()),
            Err(source) => Err(NetlinkError::SimIo { path, source }),
        }
    }

    pub(crate) fn store_extra(&self, e: &Extra) -> Result<(), NetlinkError> {
        let path = self.extra_path();
        let json = serde_json::to_vec(e).map_err(|source| NetlinkError::SimState {
            path: path.clone(),
            source,
        })?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        fs::create_dir_all(self.root().join("netlink"))
            .and_then(|()| fs::write(&tmp, json))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(Self::sim_io(&path))
    }

    /// The namespace `fd` is, for this simulated host: `None` for the host's own (the
    /// calling thread's real namespace stands for it), else its key.
    pub(crate) fn ns_key(fd: BorrowedFd<'_>) -> Result<Option<String>, NetlinkError> {
        let enter = |source| NetlinkError::EnterNetns { source };
        let st = nix::sys::stat::fstat(fd).map_err(|e| enter(e.into()))?;
        let here = fs::metadata("/proc/thread-self/ns/net").map_err(enter)?;
        if (st.st_dev, st.st_ino) == (here.dev(), here.ino()) {
            return Ok(None);
        }
        Ok(Some(format!("{:x}-{}", st.st_dev, st.st_ino)))
    }

    pub(crate) fn ns_dir(&self, key: &str) -> PathBuf {
        self.root().join("netns").join(key)
    }

    pub(crate) fn sys(&self) -> Result<PathBuf, NetlinkError> {
        let p = self.root().join("sys");
        kfile::real_path(&p).map_err(Self::sim_io(&p))
    }

    /// The netdevs of namespace `ns`: (name, directory).
    pub(crate) fn devs_in(&self, ns: Option<&str>) -> Result<Vec<(String, PathBuf)>, NetlinkError> {
        let dir = match ns {
            None => self.root().join("sys/class/net"),
            Some(k) => self.ns_dir(k).join("dev"),
        };
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(NetlinkError::SimIo { path: dir, source }),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match kfile::real_path(&e.path()) {
                Ok(p) => out.push((name, p)),
                Err(err) => tracing::debug!(name, error = %err, "skipping dangling netdev"),
            }
        }
        out.sort();
        Ok(out)
    }

    pub(crate) fn ifindex_of(dir: &Path) -> Option<u32> {
        kfile::read_small(&dir.join("ifindex"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The altnames of the netdev at `dir`.
    pub(crate) fn alt_names_of(&self, dir: &Path) -> Result<Vec<String>, NetlinkError> {
        let Some(i) = Self::ifindex_of(dir) else {
            return Ok(Vec::new());
        };
        Ok(self.load_extra()?.altnames.remove(&i).unwrap_or_default())
    }

    /// The netdev called `name` in namespace `ns`, by name or else by altname (as the
    /// kernel's `__dev_get_by_name` finds both).
    pub(crate) fn resolve(&self, ns: Option<&str>, name: &str) -> Result<PathBuf, NetlinkError> {
        let not_found = || NetlinkError::LinkNotFound {
            name: name.to_string(),
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(not_found());
        }
        // By name: the one entry, as the kernel's name hash finds it (no walk of every
        // netdev: an acquire asks for a few dozen).
        let dir = match ns {
            None => self.root().join("sys/class/net"),
            Some(k) => self.ns_dir(k).join("dev"),
        };
        if let Ok(d) = kfile::real_path(&dir.join(name)) {
            return Ok(d);
        }
        // By altname: the rarer case.
        let devs = self.devs_in(ns)?;
        let extra = self.load_extra()?;
        devs.into_iter()
            .find(|(_, d)| {
                Self::ifindex_of(d)
                    .and_then(|i| extra.altnames.get(&i))
                    .is_some_and(|a| a.iter().any(|a| a == name))
            })
            .map(|(_, d)| d)
            .ok_or_else(not_found)
    }

    /// Whether `name` is a name or an altname of a netdev of namespace `ns`.
    pub(crate) fn name_taken(&self, ns: Option<&str>, name: &str) -> Result<bool, NetlinkError> {
        match self.resolve(ns, name) {
            Ok(_) => Ok(true),
            Err(NetlinkError::LinkNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The netdev's `flags`; without that file, IFF_UP from `operstate` (as `link` reads).
    pub(crate) fn flags(dir: &Path) -> u32 {
        kfile::read_small(&dir.join("flags"))
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| {
                let oper = kfile::read_small(&dir.join("operstate")).unwrap_or_default();
                if oper.trim() == "down" {
                    0x1002
                } else {
                    0x1003
                }
            })
    }

    pub(crate) fn write(dir: &Path, attr: &str, value: &str) -> Result<(), NetlinkError> {
        let p = dir.join(attr);
        fs::write(&p, format!("{value}\n")).map_err(Self::sim_io(&p))
    }

    pub(crate) fn set_flag(dir: &Path, flag: u32, on: bool) -> Result<(), NetlinkError> {
        let f = Self::flags(dir);
        let f = if on { f | flag } else { f & !flag };
        Self::write(dir, "flags", &format!("{f:#x}"))
    }

    /// The PCI function under the netdev at `dir` (its `device` link), if any.
    pub(crate) fn pci_of(dir: &Path) -> Option<PathBuf> {
        kfile::real_path(&dir.join("device")).ok()
    }

    /// Takes the netdev at `dir` out of namespace `from` and puts it into `to` as `name`.
    /// Returns its new directory.
    fn relocate(
        &self,
        from: Option<&str>,
        dir: &Path,
        to: Option<&str>,
        name: &str,
    ) -> Result<PathBuf, NetlinkError> {
        let old = file_name(dir);
        let sys = self.sys()?;
        let pci = Self::pci_of(dir);
        if from.is_none() {
            let l = self.root().join("sys/class/net").join(&old);
            fs::remove_file(&l).map_err(Self::sim_io(&l))?;
        }
        let target = match (to, &pci) {
            (None, Some(p)) => p.join("net").join(name),
            (None, None) => sys.join("devices/virtual/net").join(name),
            (Some(k), _) => self.ns_dir(k).join("dev").join(name),
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(Self::sim_io(parent))?;
        }
        fs::rename(dir, &target).map_err(Self::sim_io(&target))?;
        if let Some(p) = &pci {
            // Relative where the sysfs simulator puts it, absolute from elsewhere.
            let dev_link = target.join("device");
            let link_to = match to {
                None => PathBuf::from(format!("../../../{}", file_name(p))),
                Some(_) => p.clone(),
            };
            let _ = fs::remove_file(&dev_link);
            std::os::unix::fs::symlink(&link_to, &dev_link).map_err(Self::sim_io(&dev_link))?;
        }
        if to.is_none() {
            let rel = target.strip_prefix(&sys).unwrap_or(&target);
            let l = self.root().join("sys/class/net").join(name);
            std::os::unix::fs::symlink(Path::new("../..").join(rel), &l)
                .map_err(Self::sim_io(&l))?;
        }
        Ok(target)
    }

    /// Gives back to the host the netdevs of every namespace whose file is gone (see the
    /// module doc). Takes the lock itself: call it with no lock held.
    pub(crate) fn reap_gone_netns(&self) -> Result<(), NetlinkError> {
        let base = self.root().join("netns");
        let Ok(rd) = fs::read_dir(&base) else {
            return Ok(());
        };
        let keys: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let _lock = self.lock(true)?;
        for key in keys {
            let dir = self.ns_dir(&key);
            let Ok(path) = fs::read_to_string(dir.join("path")) else {
                continue;
            };
            let alive = fs::metadata(path.trim())
                .is_ok_and(|m| format!("{:x}-{}", m.dev(), m.ino()) == key);
            if alive || !dir.exists() {
                continue;
            }
            let mut extra = self.load_extra()?;
            extra.routes.remove(&key);
            extra.sysctls.remove(&key);
            for (name, d) in self.devs_in(Some(&key))? {
                let index = Self::ifindex_of(&d);
                if let Some(i) = index {
                    extra.addrs.remove(&i);
                }
                // A veth end is not given back but destroyed, with its peer wherever that
                // is (default_device_exit_net skips devices whose rtnl_link_ops have no
                // netns_refund; default_device_exit_batch calls veth_dellink, which
                // unregisters the peer too).
                if let Some(i) = index
                    && extra.peers.contains_key(&i)
                {
                    tracing::debug!(name, "veth of a gone namespace destroyed with its peer");
                    self.destroy_veth(&mut extra, i)?;
                    continue;
                }
                let live = Self::pci_of(&d).is_some_and(|p| p.join("driver").exists());
                if !live {
                    tracing::debug!(name, "netdev of a gone namespace destroyed with its device");
                    fs::remove_dir_all(&d).map_err(Self::sim_io(&d))?;
                    continue;
                }
                let back = if self.name_taken(None, &name)? {
                    format!("dev{}", index.unwrap_or(0))
                } else {
                    name.clone()
                };
                tracing::debug!(name, back, "namespace gone: netdev back in the host");
                let d = self.relocate(Some(&key), &d, None, &back)?;
                Self::set_down(&d)?;
            }
            self.store_extra(&extra)?;
            fs::remove_dir_all(&dir).map_err(Self::sim_io(&dir))?;
        }
        Ok(())
    }

    fn set_down(dir: &Path) -> Result<(), NetlinkError> {
        Self::set_flag(dir, IFF_UP, false)?;
        Self::write(dir, "operstate", "down")?;
        Self::write(dir, "carrier", "0")
    }

    /// Moves netdev `name` of namespace `from` into `to` (the namespace of `to_fd`),
    /// renamed to `new_name` if given: all or nothing, EEXIST when the name it would have
    /// there (or one of its altnames) is taken, EINVAL for an invalid new name.
    pub(crate) fn sim_move(
        &self,
        from: Option<&str>,
        name: &str,
        to: Option<&str>,
        to_fd: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        if from.is_none() || to.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(from, name)?;
        let cur = file_name(&dir);
        let fail = |e: i32| NetlinkError::MoveToNetns {
            name: name.to_string(),
            new_name: new_name.map(str::to_string),
            source: errno(e),
        };
        if new_name.is_some_and(|n| !dev_valid_name(n)) {
            return Err(fail(libc::EINVAL));
        }
        let want = new_name.unwrap_or(&cur).to_string();
        if from == to {
            if want != cur {
                return self.rename_locked(from, &dir, &want);
            }
            return Ok(());
        }
        if self.name_taken(to, &want)? {
            return Err(fail(libc::EEXIST));
        }
        for alt in self.alt_names_of(&dir)? {
            if self.name_taken(to, &alt)? {
                return Err(fail(libc::EEXIST));
            }
        }
        if let Some(k) = to {
            self.record_ns(k, to_fd)?;
        }
        // Addresses, routes and sysctls do not survive a change of namespace.
        if let Some(i) = Self::ifindex_of(&dir) {
            let mut extra = self.load_extra()?;
            extra.addrs.remove(&i);
            Self::forget_in_ns(&mut extra, from, i);
            self.store_extra(&extra)?;
        }
        let d = self.relocate(from, &dir, to, &want)?;
        Self::set_down(&d)?;
        tracing::debug!(name, to = ?to, as_name = %want, "simulated netdev moved");
        Ok(())
    }

    /// Remembers the file namespace `key` was opened from (see the module doc), once.
    pub(crate) fn record_ns(&self, key: &str, fd: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let nsd = self.ns_dir(key);
        let rec = nsd.join("path");
        if !rec.exists() {
            fs::create_dir_all(&nsd).map_err(Self::sim_io(&nsd))?;
            let fdlink = format!("/proc/self/fd/{}", fd.as_raw_fd());
            // A file of a real namespace reads `net:[N]`: not a path, never "gone".
            if let Ok(p) = fs::read_link(&fdlink)
                && p.is_absolute()
            {
                fs::write(&rec, p.as_os_str().as_encoded_bytes()).map_err(Self::sim_io(&rec))?;
            }
        }
        Ok(())
    }

    fn rename_locked(&self, ns: Option<&str>, dir: &Path, new: &str) -> Result<(), NetlinkError> {
        let cur = file_name(dir);
        let fail = |e: i32| NetlinkError::Rename {
            name: cur.clone(),
            new_name: new.to_string(),
            source: errno(e),
        };
        if !dev_valid_name(new) {
            return Err(fail(libc::EINVAL));
        }
        if cur == new {
            return Ok(());
        }
        if self.name_taken(ns, new)? {
            return Err(fail(libc::EEXIST));
        }
        self.relocate(ns, dir, ns, new)?;
        Ok(())
    }

    pub(crate) fn sim_rename(&self, name: &str, new: &str) -> Result<(), NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, name)?;
        self.rename_locked(ns, &dir, new)
    }

    pub(crate) fn sim_alt_name(
        &self,
        name: &str,
        alt: &str,
        add: bool,
    ) -> Result<(), NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, name)?;
        let fail = |e: i32| NetlinkError::AltName {
            name: name.to_string(),
            alt: alt.to_string(),
            add,
            source: errno(e),
        };
        let index = Self::ifindex_of(&dir).ok_or_else(|| fail(libc::ENODEV))?;
        let mut extra = self.load_extra()?;
        let list = extra.altnames.entry(index).or_default();
        if add {
            // ALTIFNAMSIZ is 128; the same characters as a name.
            let valid = !alt.is_empty()
                && alt.len() < 128
                && !alt
                    .bytes()
                    .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
            if !valid {
                return Err(fail(libc::EINVAL));
            }
            if self.name_taken(ns, alt)? {
                return Err(fail(libc::EEXIST));
            }
            list.push(alt.to_string());
        } else {
            if file_name(&dir) == alt {
                // The primary name is not a property (rtnl_alt_ifname: -EINVAL).
                return Err(fail(libc::EINVAL));
            }
            let before = list.len();
            list.retain(|a| a != alt);
            if list.len() == before {
                return Err(fail(libc::ENOENT));
            }
        }
        self.store_extra(&extra)
    }

    pub(crate) fn sim_set_promisc(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, name)?;
        Self::set_flag(&dir, IFF_PROMISC, on)
    }

    pub(crate) fn sim_addresses(&self, name: &str) -> Result<Vec<IfAddr>, NetlinkError> {
        let dir = self.resolve(self.ns(), name)?;
        let Some(i) = Self::ifindex_of(&dir) else {
            return Ok(Vec::new());
        };
        let path = self.extra_path();
        self.load_extra()?
            .addrs
            .remove(&i)
            .unwrap_or_default()
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e: vfpool_model::InvalidValue| NetlinkError::SimIo {
                        path: path.clone(),
                        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                    })
            })
            .collect()
    }

    pub(crate) fn sim_address(&self, name: &str, a: IfAddr, add: bool) -> Result<(), NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, name)?;
        let fail = |e: i32| NetlinkError::Address {
            name: name.to_string(),
            addr: a,
            add,
            source: errno(e),
        };
        let i = Self::ifindex_of(&dir).ok_or_else(|| fail(libc::ENODEV))?;
        let mut extra = self.load_extra()?;
        let list = extra.addrs.entry(i).or_default();
        let s = a.to_string();
        let has = list.contains(&s);
        match (add, has) {
            (true, true) => return Err(fail(libc::EEXIST)),
            (false, false) => return Err(fail(libc::EADDRNOTAVAIL)),
            (true, false) => list.push(s),
            (false, true) => list.retain(|x| *x != s),
        }
        if Self::flags(&dir) & IFF_UP != 0 {
            if add {
                Self::kernel_route_added(&mut extra, ns, i, a);
            } else {
                Self::kernel_route_removed(&mut extra, ns, i, a);
            }
        }
        self.store_extra(&extra)
    }

    /// The names of the netdevs of this backend's namespace.
    pub(crate) fn sim_link_names(&self) -> Result<Vec<String>, NetlinkError> {
        if self.ns().is_none() {
            self.reap_gone_netns()?;
        }
        Ok(self
            .devs_in(self.ns())?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }
}
