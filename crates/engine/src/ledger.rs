//! The ledger: pools and leases in SQLite (`STATE/state.db`).
//!
//! Several processes (the CNI plugin, the CLI, the daemon) open the same file. It runs in
//! WAL mode with a busy timeout; every acquire or release is a short `BEGIN IMMEDIATE`
//! transaction, so writers queue instead of failing. `vf_pci` and `owner` are UNIQUE in
//! `leases`: a VF can never be leased twice, an owner never holds two leases.
//!
//! Durability: what an acquire or a release tells its caller is on disk before it returns:
//! the commit that makes a lease `active` and the one that removes a released lease are
//! synced (one WAL fsync, taken after the write lock is released so that concurrent writers
//! share it: see [`Ledger::write`]). The steps before them (the `acquiring` row written
//! before the VF is touched, `active` -> `releasing`) are committed but not synced: a commit
//! survives a crash of the process, which is what they guard against, and a power cut
//! re-creates every VF with the kernel's defaults anyway, so a row lost with it leaves
//! nothing behind on the host. So each acquire and each release costs one fsync, and
//! concurrent ones share theirs. The real-kernel tier cuts a guest's power right after an
//! acquire and a release and checks both survived.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use serde::Serialize;
use vfpool_model::{InvalidValue, PciAddr};

use crate::error::EngineError;
use crate::lease::{Applied, DesiredNic, Lease, LeaseState, Original, OwnerKind};
use crate::pool::{Policy, Pool};
use crate::selector::PoolSelector;
use vfpool_netlink::NetnsId;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pools (
    name      TEXT PRIMARY KEY,
    selectors TEXT NOT NULL,
    policy    TEXT NOT NULL,
    created   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    vf_pci     TEXT NOT NULL UNIQUE,
    owner      TEXT NOT NULL UNIQUE,
    owner_kind TEXT NOT NULL,
    pool       TEXT NOT NULL,
    pf         TEXT NOT NULL,
    pf_pci     TEXT NOT NULL,
    vf_index   INTEGER NOT NULL,
    netdev     TEXT,
    netns      TEXT,
    created    INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('acquiring', 'active', 'releasing', 'stale')),
    applied    TEXT NOT NULL,
    original   TEXT NOT NULL,
    pid        INTEGER,
    pid_start  INTEGER
);
";

/// Version 1 had an index on `leases(pool)`, which no query uses: every insert and delete
/// wrote one page more to the WAL for it. Version 3 adds `vf_gens`: how many leases each VF
/// has had, which an acquire that read the VF outside the write lock checks (see
/// [`Tx::vf_gen`]). A new ledger is [`SCHEMA`] (version 2's tables) plus this.
const MIGRATE_1: &str = "
DROP INDEX IF EXISTS leases_pool;
";
const MIGRATE_2: &str = "
CREATE TABLE IF NOT EXISTS vf_gens (
    vf_pci TEXT PRIMARY KEY,
    gen    INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 3;
";
/// Version 4 records a container's network namespace by identity (see [`crate::netns`]):
/// a namespace deleted and created again under the same path is another owner. Leases
/// written before have none; `gc` then goes by the path alone, as before.
const MIGRATE_NETNS_ID: &str = "
ALTER TABLE leases ADD COLUMN netns_dev INTEGER;
ALTER TABLE leases ADD COLUMN netns_ino INTEGER;
PRAGMA user_version = 4;
";

/// Version 5 keeps the VF counts vfpool set on each PF (`desired_nics`): what `host apply`
/// brings back at boot. They were a JSON file beside the ledger, read, changed and written
/// without a lock; in the ledger they are written under the same lock and synced like
/// leases.
const MIGRATE_DESIRED: &str = "
CREATE TABLE IF NOT EXISTS desired_nics (
    pci       TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    num_vfs   INTEGER NOT NULL,
    autoprobe INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 5;
";

/// Version 6 adds `leases.ifname`: the name the lease's VF netdev has in the container's
/// network namespace (`leases.netns`) while it is attached there (`NULL`: not attached;
/// see `Engine::attach`).
const MIGRATE_ATTACH: &str = "
ALTER TABLE leases ADD COLUMN ifname TEXT;
PRAGMA user_version = 6;
";

/// Version 7 adds the VM layer (see [`crate::vm`]): L2 networks on a NIC (`sriov` the flag
/// its L3 networks inherit), L3 networks (IPv4: a CIDR, a gateway and the range handed
/// out), the addresses handed out (`owner` `vm/NAME/nicN`), VMs and their NICs.
/// `vm_nics.l2` repeats the L3's L2 so that UNIQUE (l2, mac) is the last word on a MAC.
const MIGRATE_VM: &str = "
CREATE TABLE IF NOT EXISTS l2_networks (
    name    TEXT PRIMARY KEY,
    nic     TEXT NOT NULL,
    type    TEXT NOT NULL CHECK (type IN ('novlan', 'vlan', 'vxlan')),
    vlan    INTEGER,
    sriov   INTEGER NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS l3_networks (
    name        TEXT PRIMARY KEY,
    l2          TEXT NOT NULL,
    cidr        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    range_first TEXT NOT NULL,
    range_last  TEXT NOT NULL,
    dns         TEXT,
    created     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS l3_addresses (
    l3      TEXT NOT NULL,
    address TEXT NOT NULL,
    owner   TEXT NOT NULL UNIQUE,
    PRIMARY KEY (l3, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vms (
    name    TEXT PRIMARY KEY,
    uuid    TEXT NOT NULL UNIQUE,
    state   TEXT NOT NULL CHECK (state IN ('stopped', 'running')),
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vm_nics (
    vm          TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    l3          TEXT NOT NULL,
    l2          TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('vf', 'vnic')),
    mac         TEXT NOT NULL,
    lease_owner TEXT,
    detached    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vm, idx),
    UNIQUE (l2, mac)
) WITHOUT ROWID;
PRAGMA user_version = 7;
";

/// Version 8 gives a VM its memory (MiB) and vCPUs (a schema-7 VM gets the 1024 MiB and one
/// vCPU its domain had) and `libvirt_uri`: the libvirt vfpool defined the VM's domain at
/// (`vm start --libvirt`; `NULL`: vfpool defined none, so `vm stop` undefines none).
const MIGRATE_VM_SIZE: &str = "
ALTER TABLE vms ADD COLUMN memory_mib INTEGER NOT NULL DEFAULT 1024;
ALTER TABLE vms ADD COLUMN vcpus INTEGER NOT NULL DEFAULT 1;
ALTER TABLE vms ADD COLUMN libvirt_uri TEXT;
PRAGMA user_version = 8;
";

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 8;

/// Whether a commit must be on disk when [`Ledger::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk when `write` returns (one WAL fsync, shared with concurrent writers): a step
    /// that answers a caller (a lease made `active`, a lease removed).
    Synced,
    /// Committed (survives the process) but not synced: a step a power cut may drop, since
    /// it resets the VFs as well (the `acquiring` row, `active` -> `releasing`).
    Unsynced,
}

pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Whether the state directory was synced since this ledger first made a commit
    /// durable (the WAL's directory entry must be on disk too).
    dir_synced: bool,
    /// Whether the ledger runs in WAL mode (else SQLite syncs each commit itself).
    wal: bool,
    /// `STATE/state.db-writers`: writers of this program queue on its lock (see
    /// [`Ledger::write`]). `None` for a ledger opened read-only.
    queue: Option<std::fs::File>,
}

/// Holds the writers' queue lock; released when dropped, or by the kernel when the process
/// dies (a killed writer never blocks the others).
struct QueueTurn<'a>(&'a std::fs::File);

impl Drop for QueueTurn<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_string(v).unwrap_or_default()
}

/// Column `i` of `r`, a PCI address as text.
fn pci_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<PciAddr> {
    let s: String = r.get(i)?;
    s.parse().map_err(|e: InvalidValue| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn row_to_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Lease, String, String)> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let pci = |i: usize| pci_column(r, i);
    let kind: String = text(3)?;
    let pid: Option<i64> = r.get(14)?;
    let pid_start: Option<i64> = r.get(15)?;
    let netns_dev: Option<i64> = r.get(16)?;
    let netns_ino: Option<i64> = r.get(17)?;
    Ok((
        Lease {
            id: r.get(0)?,
            vf_pci: pci(1)?,
            owner: text(2)?,
            owner_kind: kind.parse().unwrap_or(OwnerKind::Manual),
            pool: text(4)?,
            pf: text(5)?,
            pf_pci: pci(6)?,
            vf_index: r.get(7)?,
            netdev: r.get(8)?,
            netns: r.get(9)?,
            // Stored as SQLite's signed integers, bit for bit.
            netns_id: netns_dev.zip(netns_ino).map(|(d, i)| NetnsId {
                dev: d as u64,
                ino: i as u64,
            }),
            created: r.get(10)?,
            state: LeaseState::parse(&text(11)?),
            applied: Applied::default(),
            original: Original::default(),
            pid: pid.map(|p| (p, pid_start.unwrap_or(0) as u64)),
            ifname: r.get(18)?,
        },
        text(12)?,
        text(13)?,
    ))
}

const LEASE_COLS: &str = "id, vf_pci, owner, owner_kind, pool, pf, pf_pci, vf_index, netdev, netns, created, state, applied, original, pid, pid_start, netns_dev, netns_ino, ifname";

fn finish_lease(t: (Lease, String, String)) -> Result<Lease, EngineError> {
    let (mut l, applied, original) = t;
    l.applied = serde_json::from_str(&applied).map_err(|source| EngineError::CorruptRow {
        what: format!("applied of lease {}", l.id),
        source,
    })?;
    l.original = serde_json::from_str(&original).map_err(|source| EngineError::CorruptRow {
        what: format!("original of lease {}", l.id),
        source,
    })?;
    Ok(l)
}

/// A transaction on the ledger: what the engine's closures get.
pub struct Tx<'a> {
    pub(crate) tx: rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    /// Runs one statement, its compiled form kept for the next time.
    pub(crate) fn exec(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        what: &'static str,
    ) -> Result<usize, EngineError> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(p))
            .map_err(EngineError::db(what))
    }

    /// The recorded VF count of every PF vfpool changed, by address.
    pub fn desired(&self) -> Result<Vec<DesiredNic>, EngineError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT pci, name, num_vfs, autoprobe FROM desired_nics ORDER BY pci")
            .map_err(EngineError::db("read the desired VF counts"))?;
        let rows = st
            .query_map([], |r| {
                Ok(DesiredNic {
                    pci: pci_column(r, 0)?,
                    name: r.get(1)?,
                    num_vfs: r.get(2)?,
                    autoprobe: r.get(3)?,
                })
            })
            .map_err(EngineError::db("read the desired VF counts"))?;
        rows.collect::<Result<_, _>>()
            .map_err(EngineError::db("read the desired VF counts"))
    }

    /// Records `d` as the VF count to keep on its PF.
    pub fn set_desired(&self, d: &DesiredNic) -> Result<(), EngineError> {
        self.exec(
            "INSERT INTO desired_nics (pci, name, num_vfs, autoprobe) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (pci) DO UPDATE SET name = ?2, num_vfs = ?3, autoprobe = ?4",
            params![d.pci.to_string(), d.name, d.num_vfs, d.autoprobe],
            "record a desired VF count",
        )
        .map(drop)
    }

    pub fn pools(&self) -> Result<Vec<Pool>, EngineError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT name, selectors, policy, created FROM pools ORDER BY created, name",
            )
            .map_err(EngineError::db("read pools"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(EngineError::db("read pools"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, sel, policy, created) = row.map_err(EngineError::db("read pools"))?;
            let selectors: Vec<PoolSelector> =
                serde_json::from_str(&sel).map_err(|source| EngineError::CorruptRow {
                    what: format!("selectors of pool {name}"),
                    source,
                })?;
            out.push(Pool {
                name,
                selectors,
                policy: policy.parse().unwrap_or(Policy::FirstFit),
                created,
            });
        }
        Ok(out)
    }

    pub fn insert_pool(&self, p: &Pool) -> Result<(), EngineError> {
        self.exec(
            "INSERT INTO pools (name, selectors, policy, created) VALUES (?1, ?2, ?3, ?4)",
            params![p.name, json(&p.selectors), p.policy.as_str(), p.created],
            "insert a pool",
        )?;
        Ok(())
    }

    pub fn delete_pool(&self, name: &str) -> Result<(), EngineError> {
        self.exec(
            "DELETE FROM pools WHERE name = ?1",
            params![name],
            "delete a pool",
        )?;
        Ok(())
    }

    fn query_leases(
        &self,
        filter: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Lease>, EngineError> {
        let sql = format!("SELECT {LEASE_COLS} FROM leases {filter} ORDER BY id");
        let mut st = self
            .tx
            .prepare_cached(&sql)
            .map_err(EngineError::db("read leases"))?;
        let rows = st
            .query_map(p, row_to_lease)
            .map_err(EngineError::db("read leases"))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(finish_lease(r.map_err(EngineError::db("read leases"))?)?);
        }
        Ok(out)
    }

    pub fn leases(&self) -> Result<Vec<Lease>, EngineError> {
        self.query_leases("", &[])
    }

    pub fn lease_by_owner(&self, owner: &str) -> Result<Option<Lease>, EngineError> {
        Ok(self
            .query_leases("WHERE owner = ?1", &[&owner])?
            .into_iter()
            .next())
    }

    pub fn lease_by_vf(&self, vf: PciAddr) -> Result<Option<Lease>, EngineError> {
        Ok(self
            .query_leases("WHERE vf_pci = ?1", &[&vf.to_string()])?
            .into_iter()
            .next())
    }

    pub fn lease_by_id(&self, id: i64) -> Result<Option<Lease>, EngineError> {
        Ok(self
            .query_leases("WHERE id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    /// Inserts a new lease and returns its id. The UNIQUE constraints on `vf_pci` and
    /// `owner` hold even if a caller's own checks were wrong.
    pub fn insert_lease(&self, l: &Lease) -> Result<i64, EngineError> {
        let (pid, start) = l.pid.unzip();
        let (ns_dev, ns_ino) = l.netns_id.map(|n| (n.dev as i64, n.ino as i64)).unzip();
        self.exec("INSERT INTO leases (vf_pci, owner, owner_kind, pool, pf, pf_pci, vf_index, netdev, netns, created, state, applied, original, pid, pid_start, netns_dev, netns_ino)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    l.vf_pci.to_string(),
                    l.owner,
                    l.owner_kind.as_str(),
                    l.pool,
                    l.pf,
                    l.pf_pci.to_string(),
                    l.vf_index,
                    l.netdev,
                    l.netns,
                    l.created,
                    l.state.as_str(),
                    json(&l.applied),
                    json(&l.original),
                    pid,
                    start.map(|s| s as i64),
                    ns_dev,
                    ns_ino,
                ], "insert a lease")?;
        let id = self.tx.last_insert_rowid();
        self.exec(
            "INSERT INTO vf_gens (vf_pci, gen) VALUES (?1, 1)
             ON CONFLICT (vf_pci) DO UPDATE SET gen = gen + 1",
            params![l.vf_pci.to_string()],
            "count the VF's leases",
        )?;
        Ok(id)
    }

    /// [`Tx::vf_gen`] of every VF that has had a lease.
    pub fn vf_gens(&self) -> Result<HashMap<PciAddr, i64>, EngineError> {
        self.tx
            .prepare_cached("SELECT vf_pci, gen FROM vf_gens")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((pci_column(r, 0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(EngineError::db("read the VFs' lease counts"))
    }

    /// How many leases VF `vf` has had (every insert counts, also one rolled back later).
    /// Unchanged between two reads, with no lease on the VF at the first, means nobody
    /// leased, and so nobody touched, the VF in between: what the VF showed meanwhile is its
    /// own configuration.
    pub fn vf_gen(&self, vf: PciAddr) -> Result<i64, EngineError> {
        use rusqlite::OptionalExtension;
        self.tx
            .prepare_cached("SELECT gen FROM vf_gens WHERE vf_pci = ?1")
            .and_then(|mut st| {
                st.query_row(params![vf.to_string()], |r| r.get(0))
                    .optional()
            })
            .map(|n| n.unwrap_or(0))
            .map_err(EngineError::db("read a VF's lease count"))
    }

    /// Moves lease `id` from one of `from` to `to`, recording the process doing it. False
    /// when the row is gone or in another state (someone else got there first).
    pub fn transition(
        &self,
        id: i64,
        from: &[LeaseState],
        to: LeaseState,
        pid: Option<(i64, u64)>,
    ) -> Result<bool, EngineError> {
        let Some(cur) = self.lease_by_id(id)? else {
            return Ok(false);
        };
        if !from.contains(&cur.state) {
            return Ok(false);
        }
        let (p, s) = pid.unzip();
        self.exec(
            "UPDATE leases SET state = ?2, pid = ?3, pid_start = ?4 WHERE id = ?1",
            params![id, to.as_str(), p, s.map(|s| s as i64)],
            "update a lease",
        )?;
        Ok(true)
    }

    pub fn set_netdev(&self, id: i64, netdev: Option<&str>) -> Result<(), EngineError> {
        self.exec(
            "UPDATE leases SET netdev = ?2 WHERE id = ?1",
            params![id, netdev],
            "update a lease",
        )?;
        Ok(())
    }

    /// Records where lease `id`'s VF netdev is attached: the container's namespace and the
    /// netdev's name there (`None`, `None`: back in the host).
    pub fn set_attachment(
        &self,
        id: i64,
        netns: Option<(&str, Option<NetnsId>)>,
        ifname: Option<&str>,
    ) -> Result<(), EngineError> {
        let (path, ns_id) = netns.unzip();
        let (dev, ino) = ns_id
            .flatten()
            .map(|n| (n.dev as i64, n.ino as i64))
            .unzip();
        self.exec(
            "UPDATE leases SET netns = ?2, netns_dev = ?3, netns_ino = ?4, ifname = ?5 WHERE id = ?1",
            params![id, path, dev, ino, ifname],
            "update a lease",
        )?;
        Ok(())
    }

    /// Replaces lease `id`'s record of the VF as it was before the lease.
    pub fn set_original(&self, id: i64, original: &Original) -> Result<(), EngineError> {
        self.exec(
            "UPDATE leases SET original = ?2 WHERE id = ?1",
            params![id, json(original)],
            "update a lease",
        )?;
        Ok(())
    }

    pub fn delete_lease(&self, id: i64) -> Result<(), EngineError> {
        self.exec(
            "DELETE FROM leases WHERE id = ?1",
            params![id],
            "delete a lease",
        )?;
        Ok(())
    }

    /// Marks every lease on a VF of PF `pf_pci` stale (its VFs were destroyed).
    pub fn mark_pf_stale(&self, pf_pci: PciAddr) -> Result<usize, EngineError> {
        self.exec(
            "UPDATE leases SET state = 'stale' WHERE pf_pci = ?1",
            params![pf_pci.to_string()],
            "mark leases stale",
        )
    }
}

impl Ledger {
    /// The ledger's file in a state directory.
    pub fn path_in(state: &Path) -> PathBuf {
        state.join("state.db")
    }

    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let open_err = |source| EngineError::OpenDb {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", dir.display())),
                ))
            })?;
        }
        if !path.exists() {
            create(path)?;
        }
        refuse_empty(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_handler(Some(wait_for_writer)).map_err(open_err)?;
        // Switching to WAL needs a moment alone with the file; the busy handler does not
        // cover it, so retry while another process holds it.
        let mut tries = 0;
        let wal = loop {
            let r: rusqlite::Result<String> =
                conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0));
            match r {
                Ok(mode) => break mode.eq_ignore_ascii_case("wal"),
                Err(e) if tries < 500 && is_busy(&e) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(corrupt_or(path, e, open_err)),
            }
        };
        // Closing the last connection would checkpoint the WAL into the database and delete it
        // (two fsyncs), and the next process would re-create it (a directory fsync): with
        // short-lived processes (the CLI, the CNI plugin) that triples the fsyncs of a lease.
        // The WAL stays instead; SQLite's auto-checkpoint (every 1000 pages) keeps it small.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(open_err)?;
        // In WAL mode commits do not fsync under the write lock; `write` syncs the WAL after
        // it (see there). A filesystem that cannot do WAL (no shared memory) keeps SQLite's
        // rollback journal, which then syncs every commit itself.
        if !wal {
            tracing::warn!(path = %path.display(), "the ledger cannot use WAL mode here; every commit syncs under the write lock");
        }
        conn.pragma_update(None, "synchronous", if wal { "NORMAL" } else { "FULL" })
            .map_err(open_err)?;
        let queue_path = PathBuf::from(format!("{}-writers", path.display()));
        let queue = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&queue_path)
            .map_err(|e| {
                open_err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot open {}: {e}", queue_path.display())),
                ))
            })?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            dir_synced: false,
            wal,
            queue: Some(queue),
        };
        let version = schema_version(&ledger.conn, path)?;
        if version < SCHEMA_VERSION {
            ledger.write(Durability::Synced, |tx| {
                // Again under the write lock: another process may have just done it.
                let version: i64 = tx
                    .tx
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(EngineError::db("read the schema version"))?;
                let steps: &[&str] = match version {
                    1 => &[
                        MIGRATE_1,
                        MIGRATE_2,
                        MIGRATE_NETNS_ID,
                        MIGRATE_DESIRED,
                        MIGRATE_ATTACH,
                        MIGRATE_VM,
                        MIGRATE_VM_SIZE,
                    ],
                    2 => &[
                        MIGRATE_2,
                        MIGRATE_NETNS_ID,
                        MIGRATE_DESIRED,
                        MIGRATE_ATTACH,
                        MIGRATE_VM,
                        MIGRATE_VM_SIZE,
                    ],
                    3 => &[
                        MIGRATE_NETNS_ID,
                        MIGRATE_DESIRED,
                        MIGRATE_ATTACH,
                        MIGRATE_VM,
                        MIGRATE_VM_SIZE,
                    ],
                    4 => &[MIGRATE_DESIRED, MIGRATE_ATTACH, MIGRATE_VM, MIGRATE_VM_SIZE],
                    5 => &[MIGRATE_ATTACH, MIGRATE_VM, MIGRATE_VM_SIZE],
                    6 => &[MIGRATE_VM, MIGRATE_VM_SIZE],
                    7 => &[MIGRATE_VM_SIZE],
                    _ => &[],
                };
                steps
                    .iter()
                    .try_for_each(|sql| tx.tx.execute_batch(sql))
                    .map_err(EngineError::db("create or upgrade the schema"))
            })?;
        }
        Ok(ledger)
    }

    /// Opens the ledger at `path` for reading only (SQLite's `SQLITE_OPEN_READ_ONLY`): what
    /// read-only commands use when the state directory cannot be written (a read-only
    /// mount, or a user without write access). [`Ledger::write`] then fails with
    /// [`EngineError::ReadOnlyLedger`].
    ///
    /// A WAL-mode ledger needs its `-shm` file to be read, and one that is missing cannot be
    /// created in a read-only directory. When it is missing and the WAL holds nothing (it is
    /// missing or empty), the database file alone is the whole ledger and it is opened
    /// `immutable` (no locks, no `-shm`). No ledger at all is an empty one.
    pub fn open_read_only(path: &Path) -> Result<Self, EngineError> {
        let open_err = |source| EngineError::OpenDb {
            path: path.to_owned(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = if !path.exists() {
            // Nothing was ever written: no pools, no leases.
            let conn = Connection::open_in_memory().map_err(open_err)?;
            conn.execute_batch(&format!(
                "{SCHEMA}{MIGRATE_2}{MIGRATE_NETNS_ID}{MIGRATE_DESIRED}{MIGRATE_ATTACH}{MIGRATE_VM}{MIGRATE_VM_SIZE}"
            ))
            .map_err(open_err)?;
            conn.pragma_update(None, "query_only", true)
                .map_err(open_err)?;
            conn
        } else {
            refuse_empty(path)?;
            let side = |ext: &str| PathBuf::from(format!("{}-{ext}", path.display()));
            let wal_empty = std::fs::metadata(side("wal")).map_or(true, |m| m.len() == 0);
            if wal_empty && !side("shm").exists() {
                Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
            } else {
                Connection::open_with_flags(path, flags)
            }
            .map_err(open_err)?
        };
        conn.busy_handler(Some(wait_for_writer)).map_err(open_err)?;
        schema_version(&conn, path)?;
        Ok(Ledger {
            conn,
            path: path.to_owned(),
            dir_synced: false,
            wal: false,
            queue: None,
        })
    }

    /// `STATE/locks`: the in-flight locks of the VFs (see [`lock_vf`]).
    pub fn locks_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.join("locks"),
            _ => PathBuf::from("locks"),
        }
    }

    /// [`lock_vf`] in this ledger's state directory.
    pub fn lock_vf(&self, vf: PciAddr) -> Result<Option<VfLock>, EngineError> {
        lock_vf(&self.locks_dir(), vf)
    }

    /// Whether this ledger was opened with [`Ledger::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.queue.is_none()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction; when [`Durability::Synced`], the commit is on disk
    /// when this returns. An error from `f` rolls the transaction back.
    ///
    /// Writers first queue on an exclusive `flock` of `state.db-writers`: the kernel wakes
    /// the next one when the lock is freed, where SQLite's busy handler would have each
    /// waiter poll (with eight processes waiting, the polling alone took a core). A writer
    /// that ignores the queue (the `sqlite3` shell) is still handled by the busy handler.
    ///
    /// Group commit: SQLite's `synchronous=FULL` would fsync the WAL while holding the write
    /// lock, so writers in several processes would queue behind each other's fsyncs: at most
    /// one change per fsync. Here every commit is `synchronous=NORMAL` (the WAL frames are
    /// written, in order, and survive the process), and a durable one then syncs the WAL
    /// itself, after the lock is free: the next writer commits meanwhile, and one fsync
    /// makes every commit before it durable. A commit is durable when this returns, as with
    /// `FULL`. (Should a checkpoint have moved the WAL into the database and removed it,
    /// SQLite synced the database then.)
    pub fn write<T>(
        &mut self,
        durability: Durability,
        f: impl FnOnce(&Tx<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(queue) = &self.queue else {
            return Err(EngineError::ReadOnlyLedger {
                path: self.path.clone(),
            });
        };
        let out = {
            let _turn = match queue.lock() {
                Ok(()) => Some(QueueTurn(queue)),
                // No flock here (some network filesystems): SQLite's busy handler queues.
                Err(e) => {
                    tracing::debug!(error = %e, "cannot lock the writers' queue; relying on SQLite's busy handler");
                    None
                }
            };
            run_tx(&mut self.conn, TransactionBehavior::Immediate, f)?
        };
        if durability == Durability::Synced && self.wal {
            self.sync_wal()?;
        }
        Ok(out)
    }

    /// How many WAL pages this connection's commits let accumulate before they checkpoint
    /// them into the database (SQLite's `wal_autocheckpoint`; 1000 by default). A process
    /// that opens the ledger while no other has it open reads and checksums every page of
    /// the WAL since its last restart (SQLite's WAL recovery): for a process per call (the
    /// CNI plugin), a small WAL is the cheaper trade. Durability is unchanged: a checkpoint
    /// syncs the WAL before and the database after.
    pub fn set_autocheckpoint(&mut self, pages: u32) -> Result<(), EngineError> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", pages)
            .map_err(EngineError::db("set wal_autocheckpoint"))
    }

    /// Makes every commit so far durable (what a `write(Durability::Synced, ..)` does after its commit).
    pub fn sync(&mut self) -> Result<(), EngineError> {
        if self.wal { self.sync_wal() } else { Ok(()) }
    }

    /// Makes every commit so far durable: fdatasync of the WAL, and once per ledger of the
    /// state directory (the WAL's own entry in it).
    fn sync_wal(&mut self) -> Result<(), EngineError> {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        let sync_err = |path: &Path| {
            let path = path.to_owned();
            move |source| EngineError::Sync { path, source }
        };
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_data().map_err(sync_err(&wal))?,
            // Checkpointed into the database (which SQLite synced) and removed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(sync_err(&wal)(e)),
        }
        if !self.dir_synced {
            let dir = match self.path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            };
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(sync_err(&dir))?;
            self.dir_synced = true;
        }
        Ok(())
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        run_tx(&mut self.conn, TransactionBehavior::Deferred, f)
    }

    /// The number of live (not stale) leases per PF, for `nic list`'s free VFs.
    pub fn leased_per_pf(&mut self) -> Result<Vec<(PciAddr, usize)>, EngineError> {
        self.read(|tx| {
            let mut m: std::collections::BTreeMap<PciAddr, usize> = Default::default();
            for l in tx.leases()? {
                if l.state != LeaseState::Stale {
                    *m.entry(l.pf_pci).or_default() += 1;
                }
            }
            Ok(m.into_iter().collect())
        })
    }
}

/// The in-flight lock of one VF: an exclusive `flock` of `STATE/locks/vf-PCI.lock`, held
/// by the process acquiring, releasing, re-applying or repairing a lease of that VF for
/// the whole step, and freed when dropped or by the kernel when the process dies. So a
/// lease `acquiring` or `releasing` whose lock is free was abandoned, whatever PID
/// namespace its process lived in (a pid says nothing across them). One file per VF
/// address: a bounded set, never removed (removing a lock file races with its next user).
#[derive(Debug)]
pub struct VfLock {
    _file: std::fs::File,
}

/// Takes VF `vf`'s in-flight lock in `locks` without waiting; `None` when another holder
/// has it (a step on that VF is under way).
pub fn lock_vf(locks: &Path, vf: PciAddr) -> Result<Option<VfLock>, EngineError> {
    let path = locks.join(format!("vf-{vf}.lock"));
    let io_err = |e: std::io::Error| EngineError::LockVf {
        vf,
        path: path.clone(),
        source: e,
    };
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(locks).map_err(io_err)?;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(VfLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

/// Creates a new ledger at `path`, whole or not at all: its schema is written to a
/// temporary file beside it, synced, and linked to `path` only then (a link, not a rename:
/// it fails rather than replace a ledger another process created meanwhile, which wins).
/// So a `state.db` that exists always had a schema: one that is empty or has none lost its
/// content (a disk or a person cut it), and [`Ledger::open`] refuses it instead of taking it
/// for a new, empty ledger and forgetting every lease.
fn create(path: &Path) -> Result<(), EngineError> {
    let err = |what: String| EngineError::OpenDb {
        path: path.to_owned(),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(what),
        ),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = PathBuf::from(format!(
        "{}.new-{}-{nanos}",
        path.display(),
        std::process::id()
    ));
    let made = (|| -> Result<(), EngineError> {
        let conn = Connection::open(&tmp).map_err(|source| EngineError::OpenDb {
            path: tmp.clone(),
            source,
        })?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; BEGIN; {SCHEMA}{MIGRATE_2}{MIGRATE_NETNS_ID}{MIGRATE_DESIRED}{MIGRATE_ATTACH}{MIGRATE_VM}{MIGRATE_VM_SIZE} COMMIT;"
        ))
        .map_err(EngineError::db("create the schema"))?;
        conn.close()
            .map_err(|(_, e)| EngineError::db("create the schema")(e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(format!("cannot sync {}: {e}", tmp.display())))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("cannot link {}: {e}", tmp.display()))),
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    made?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(format!("cannot sync {}: {e}", dir.display())))
}

/// Refuses a ledger file of 0 bytes (see [`create`]).
fn refuse_empty(path: &Path) -> Result<(), EngineError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(EngineError::CorruptLedger {
            path: path.to_owned(),
            what: "it is empty (0 bytes)".into(),
        }),
        _ => Ok(()),
    }
}

/// The ledger's schema version; a file that is not a database, or a database without
/// vfpool's schema, is a corrupt ledger.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, EngineError> {
    let open_err = |source| EngineError::OpenDb {
        path: path.to_owned(),
        source,
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| corrupt_or(path, e, open_err))?;
    if version == 0 {
        return Err(EngineError::CorruptLedger {
            path: path.to_owned(),
            what: "it holds no vfpool schema".into(),
        });
    }
    Ok(version)
}

/// SQLite's "not a database" and "malformed" as [`EngineError::CorruptLedger`]; any other
/// error through `other`.
fn corrupt_or(
    path: &Path,
    e: rusqlite::Error,
    other: impl FnOnce(rusqlite::Error) -> EngineError,
) -> EngineError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            EngineError::CorruptLedger {
                path: path.to_owned(),
                what: e.to_string(),
            }
        }
        _ => other(e),
    }
}

/// `file:PATH?immutable=1`, with the characters a URI gives a meaning escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", u32::from(c))),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Runs `f` in one transaction of kind `behavior`, committed when `f` succeeds and rolled
/// back (when the transaction is dropped) when it fails.
fn run_tx<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    f: impl FnOnce(&Tx<'_>) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(EngineError::db("begin a transaction"))?;
    let t = Tx { tx };
    let out = f(&t)?;
    t.tx.commit().map_err(EngineError::db("commit"))?;
    Ok(out)
}

/// SQLite's busy handler: called while another connection holds the write lock, with how
/// many times it was called for this wait; true means try again. SQLite's own
/// `busy_timeout` sleeps 1, 2, 5 ... 100 ms between tries, far longer than a lease's
/// transaction holds the lock (one commit, well under a millisecond): under contention it
/// idles the disk. This polls every 50 us at first and backs off to 1 ms, about 60 s in all.
fn wait_for_writer(tries: i32) -> bool {
    let pause = match tries {
        0..200 => Duration::from_micros(50),
        200..2000 => Duration::from_micros(200),
        2000..62_000 => Duration::from_millis(1),
        _ => return false,
    };
    std::thread::sleep(pause);
    true
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked
    )
}

/// Whether an error is a UNIQUE constraint violation (a VF or owner taken meanwhile).
pub(crate) fn is_unique_violation(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Db {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}
