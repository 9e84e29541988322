//! `usrloc`: the user location tables (replaces SER/Kamailio `modules/usrloc`).
//!
//! A *domain* is one location table (`location`, or any name `save("x")`
//! uses).  Fixups of the registrar ask for a domain by name ([`domain_ref`]);
//! usrloc's `init` (main, before fork, shm mapped) creates the shm tables and
//! loads them from the database in `db_mode` 1 and 2, so a restart loses no
//! registration.  The timer process expires contacts ([`tick`]) and, in
//! write-back mode, flushes changes every `timer_interval`.
//!
//! `db_mode`: 0 memory only, 1 write-through, 2 write-back, 3 DB only.

pub mod persist;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ser_fifo::{RpcCtx, RpcFault, RpcRegistry, RpcValue};

use crate::db::DbError;
use crate::iface::{Module, ModuleEnv, ParamExport};
use store::{AorRec, Table};
pub use store::{Changed, Ucontact, ALL_METHODS};

/// The `usrloc` module.
pub struct Usrloc;

static PARAMS: &[ParamExport] = &[
    ParamExport::int("db_mode", 0),
    ParamExport::str("db_url", "sqlite:///var/lib/ser/ser.db"),
    ParamExport::int("timer_interval", 60),
    // Kamailio 5: expiry runs in the one timer process whatever the value.
    ParamExport::int("timer_procs", 0),
    ParamExport::int("use_domain", 0),
    ParamExport::int("nat_bflag", -1),
    ParamExport::int("desc_time_order", 0),
    ParamExport::str("user_column", "username"),
    ParamExport::str("domain_column", "domain"),
    ParamExport::str("contact_column", "contact"),
];

/// How a set of domains behaves (usrloc's modparams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlCfg {
    /// 0 memory, 1 write-through, 2 write-back, 3 DB only.
    pub db_mode: i64,
    /// Database of the tables.
    pub db_url: String,
    /// Flush / expiry period (seconds).
    pub timer_interval: u64,
    /// AOR is `user@domain` instead of `user`.
    pub use_domain: bool,
    /// Branch flag marking contacts behind NAT (-1: none).
    pub nat_bflag: i64,
    /// Newest contact first among equal q.
    pub desc_time_order: bool,
}

impl Default for UlCfg {
    fn default() -> Self {
        UlCfg {
            db_mode: 0,
            db_url: String::new(),
            timer_interval: 60,
            use_domain: false,
            nat_bflag: -1,
            desc_time_order: false,
        }
    }
}

impl UlCfg {
    fn from_env(env: &ModuleEnv) -> UlCfg {
        UlCfg {
            db_mode: env.int("db_mode"),
            db_url: env.str("db_url"),
            timer_interval: env.int("timer_interval").clamp(1, 86_400) as u64,
            use_domain: env.int("use_domain") != 0,
            nat_bflag: env.int("nat_bflag"),
            desc_time_order: env.int("desc_time_order") != 0,
        }
    }
}

/// Why a usrloc operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UlError {
    /// Shared memory exhausted.
    Shm(ser_shm::ShmError),
    /// The database failed.
    Db(DbError),
}

impl std::fmt::Display for UlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UlError::Shm(e) => write!(f, "usrloc: {e}"),
            UlError::Db(e) => write!(f, "usrloc: {e}"),
        }
    }
}

impl From<ser_shm::ShmError> for UlError {
    fn from(e: ser_shm::ShmError) -> Self {
        UlError::Shm(e)
    }
}

impl From<DbError> for UlError {
    fn from(e: DbError) -> Self {
        UlError::Db(e)
    }
}

/// One location table as a process sees it: the shared shm table plus the
/// configuration it runs with.
pub struct Domain {
    /// Table name (`location`).
    pub name: String,
    table: Table,
    /// Module configuration.
    pub cfg: UlCfg,
}

/// A domain resolved at init; what registrar fixups hold.
pub type DomainRef = Arc<OnceLock<Arc<Domain>>>;

thread_local! {
    // Domains asked for by fixups of the config being loaded (loading runs
    // on one thread: main in the server, one test thread in tests).
    static PENDING: RefCell<Vec<(String, DomainRef)>> = const { RefCell::new(Vec::new()) };
}

// The shm tables by name: every load of the same name shares the table.
static TABLES: Mutex<Option<HashMap<String, &'static ser_shm::HashTable<AorRec>>>> =
    Mutex::new(None);

/// The domain `name`, resolved when usrloc initialises.
pub fn domain_ref(name: &str) -> Result<DomainRef, String> {
    crate::db::ident(name).map_err(|e| e.to_string())?;
    let r: DomainRef = Arc::new(OnceLock::new());
    PENDING.with(|p| p.borrow_mut().push((name.to_owned(), r.clone())));
    Ok(r)
}

fn table_for(name: &str) -> Result<Table, UlError> {
    let mut g = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(t) = map.get(name) {
        return Ok(Table::from_raw(t));
    }
    let t = Table::create()?;
    map.insert(name.to_owned(), t.raw());
    Ok(t)
}

/// Create (or attach to) the tables of every pending domain
/// with `cfg`, load them from the DB when the mode keeps memory and DB in
/// step.  Returns the domains of this config.
pub fn resolve_pending(cfg: &UlCfg) -> Result<Vec<Arc<Domain>>, String> {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut by_name: HashMap<String, Arc<Domain>> = HashMap::new();
    let mut names: Vec<String> = pending.iter().map(|(n, _)| n.clone()).collect();
    if names.is_empty() && cfg.db_mode == 0 {
        // For the ul.* RPCs of a config that saves nowhere yet.
        names.push("location".to_owned());
    }
    for n in names {
        if by_name.contains_key(&n) {
            continue;
        }
        let table = table_for(&n).map_err(|e| e.to_string())?;
        let d = Arc::new(Domain {
            name: n.clone(),
            table,
            cfg: cfg.clone(),
        });
        if matches!(cfg.db_mode, 1 | 2) {
            let loaded = persist::load(&d).map_err(|e| format!("loading table `{n}`: {e}"))?;
            log::info!("usrloc: {loaded} contacts of table `{n}` loaded from the database");
        }
        by_name.insert(n, d);
    }
    for (n, r) in pending {
        if let Some(d) = by_name.get(&n) {
            let _ = r.set(d.clone());
        }
    }
    if matches!(cfg.db_mode, 1..=3) {
        // No connection may cross the fork.
        crate::db::close_all();
    }
    let mut v: Vec<Arc<Domain>> = by_name.into_values().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Whether some registrar fixup still waits for usrloc (usrloc not loaded).
pub fn has_pending() -> bool {
    PENDING.with(|p| !p.borrow().is_empty())
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Domain {
    /// The AOR key of `user` at `host` (`user@host` with `use_domain`).
    pub fn aor(&self, user: &str, host: &str) -> String {
        if self.cfg.use_domain && !host.is_empty() {
            format!("{user}@{}", host.to_ascii_lowercase())
        } else {
            user.to_owned()
        }
    }

    fn db(&self) -> bool {
        self.cfg.db_mode != 0
    }

    /// The AOR's live contacts, best first (q desc, then by time as `desc_time_order`).
    pub fn get(&self, aor: &str) -> Result<Vec<Ucontact>, UlError> {
        let now = now();
        let mut list = if self.cfg.db_mode == 3 {
            persist::read_aor(self, aor)?
        } else {
            self.table.get(aor)
        };
        list.retain(|c| !c.expired(now));
        sort_contacts(&mut list, self.cfg.desc_time_order);
        Ok(list)
    }

    /// Change the AOR's contacts with `f` (see [`Table::update`]); the DB is
    /// written as `db_mode` says (`no_db`: save flag 0x01, memory only).
    pub fn update<R>(
        &self,
        aor: &str,
        no_db: bool,
        f: impl FnOnce(&mut Vec<Ucontact>) -> (Changed, R),
    ) -> Result<R, UlError> {
        let now = now();
        match self.cfg.db_mode {
            3 => {
                let mut list = persist::read_aor(self, aor)?;
                list.retain(|c| !c.expired(now));
                let before = list.clone();
                let (changed, out) = f(&mut list);
                if changed == Changed::Yes && list != before {
                    persist::write_aor(self, aor, &list)?;
                }
                Ok(out)
            }
            mode => {
                let mut snapshot = None;
                let out = self.table.update(aor, mode == 2, |list| {
                    list.retain(|c| !c.expired(now));
                    let r = f(list);
                    if mode == 1 && !no_db && r.0 == Changed::Yes {
                        snapshot = Some(list.clone());
                    }
                    r
                })?;
                // Written outside the bucket lock: no I/O under a lock.
                if let Some(list) = snapshot {
                    persist::write_aor(self, aor, &list)?;
                }
                Ok(out)
            }
        }
    }

    /// Remove every contact of the AOR.
    pub fn remove(&self, aor: &str) -> Result<bool, UlError> {
        self.update(aor, false, |l| {
            let had = !l.is_empty();
            l.clear();
            (if had { Changed::Yes } else { Changed::No }, had)
        })
    }

    /// Expire contacts and, in write-back mode, flush changes.
    pub fn timer(&self, now: u64) -> Result<(), UlError> {
        match self.cfg.db_mode {
            0 => {
                self.table.expire(now, false);
            }
            1 => {
                for aor in self.table.expire(now, false) {
                    let list = self.table.get(&aor);
                    persist::write_aor(self, &aor, &list)?;
                }
            }
            2 => {
                self.table.expire(now, true);
                self.flush()?;
            }
            _ => persist::delete_expired(self, now)?,
        }
        Ok(())
    }

    /// Write every changed AOR to the DB (write-back mode; a no-op otherwise).
    pub fn flush(&self) -> Result<usize, UlError> {
        if self.cfg.db_mode != 2 {
            return Ok(0);
        }
        let dirty = self.table.take_dirty();
        let n = dirty.len();
        for (i, (aor, list)) in dirty.iter().enumerate() {
            if let Err(e) = persist::write_aor(self, aor, list) {
                // Retry the rest at the next flush.
                let rest: Vec<String> = dirty[i..].iter().map(|(a, _)| a.clone()).collect();
                self.table.mark_dirty(&rest);
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Every AOR with its live contacts.
    pub fn dump(&self) -> Result<Vec<(String, Vec<Ucontact>)>, UlError> {
        if self.cfg.db_mode == 3 {
            return persist::read_all(self);
        }
        let now = now();
        let mut v = self.table.dump();
        for (_, l) in v.iter_mut() {
            l.retain(|c| !c.expired(now));
        }
        v.retain(|(_, l)| !l.is_empty());
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Number of AORs and contacts in memory.
    pub fn counts(&self) -> (usize, usize) {
        self.table.counts()
    }

    pub(crate) fn mem_insert_loaded(&self, aor: &str, c: Ucontact) -> Result<(), UlError> {
        self.table.update(aor, false, |l| {
            l.push(c);
            (Changed::Yes, ())
        })?;
        Ok(())
    }

    pub(crate) fn uses_db(&self) -> bool {
        self.db()
    }
}

/// Best first: q descending (unset q counts as 1.0), then newest first when
/// `desc_time_order`, else oldest first.
pub fn sort_contacts(list: &mut [Ucontact], desc_time: bool) {
    list.sort_by(|a, b| {
        let qa = if a.q < 0 { 1000 } else { a.q };
        let qb = if b.q < 0 { 1000 } else { b.q };
        qb.cmp(&qa).then(if desc_time {
            b.last_modified.cmp(&a.last_modified)
        } else {
            a.last_modified.cmp(&b.last_modified)
        })
    });
}

/// A new unique record id (Kamailio `ruid`): pid, time, counter.
pub fn new_ruid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "uloc-{:x}-{:x}-{}",
        now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct State {
    domains: Vec<Arc<Domain>>,
}

fn state(env: &ModuleEnv) -> Option<&State> {
    env.state.get().and_then(|b| b.downcast_ref::<State>())
}

/// What the timer process runs every `timer_interval` for the domains of
/// a loaded config (the lead wires it if the module hook is not used).
pub fn tick(domains: &[Arc<Domain>], now: u64) {
    for d in domains {
        if let Err(e) = d.timer(now) {
            log::error!("usrloc: timer on table `{}`: {e}", d.name);
        }
    }
}

/// The domains usrloc initialised for this module env.
pub fn domains(env: &ModuleEnv) -> Vec<Arc<Domain>> {
    state(env).map(|s| s.domains.clone()).unwrap_or_default()
}

// The domains of the config usrloc initialised last (in main, before the
// fork, so every child sees them): for modules that walk every contact.
static LIVE: Mutex<Vec<Arc<Domain>>> = Mutex::new(Vec::new());

/// Every location table of the loaded config, to iterate contacts with
/// [`Domain::dump`] (nathelper's NAT pinging).
pub fn all_domains() -> Vec<Arc<Domain>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Module for Usrloc {
    fn name(&self) -> &'static str {
        "usrloc"
    }
    fn params(&self) -> &'static [ParamExport] {
        PARAMS
    }
    fn init(&self, env: &ModuleEnv) -> Result<(), String> {
        let cfg = UlCfg::from_env(env);
        if !(0..=3).contains(&cfg.db_mode) {
            return Err(format!("db_mode {} is not one of 0..3", cfg.db_mode));
        }
        let domains = resolve_pending(&cfg)?;
        *LIVE.lock().unwrap_or_else(|p| p.into_inner()) = domains.clone();
        let _ = env.state.set(Box::new(State { domains }));
        Ok(())
    }
    fn child_init(&self, env: &ModuleEnv, rank: i32) -> Result<(), String> {
        // SIP workers and the timer process connect after fork; a database
        // that is down is retried on each use.
        let cfg = UlCfg::from_env(env);
        if cfg.db_mode != 0 && (rank > 0 || rank == -1) {
            if let Err(e) = crate::db::with(&cfg.db_url, |_| Ok(())) {
                log::warn!("usrloc: {e}");
            }
        }
        Ok(())
    }
    fn on_tick(&self, env: &ModuleEnv, _proc_env: &crate::runtime::ctx::Env, now: Instant) {
        // Called every timer tick; the work runs every `timer_interval`.
        static NEXT: Mutex<Option<Instant>> = Mutex::new(None);
        let every = Duration::from_secs(UlCfg::from_env(env).timer_interval);
        let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
        match *next {
            Some(due) if now < due => {}
            Some(_) => {
                *next = Some(now + every);
                drop(next);
                self.on_timer(env);
            }
            None => *next = Some(now + every),
        }
    }
    fn timer_interval(&self, env: &ModuleEnv) -> Option<Duration> {
        Some(Duration::from_secs(UlCfg::from_env(env).timer_interval))
    }
    fn on_timer(&self, env: &ModuleEnv) {
        tick(&domains(env), now());
    }
    fn destroy(&self, env: &ModuleEnv) {
        for d in domains(env) {
            if let Err(e) = d.flush() {
                log::error!("usrloc: final flush of `{}`: {e}", d.name);
            }
        }
    }
    fn register_rpc(&self, env: &ModuleEnv, reg: &mut RpcRegistry) {
        // Resolved per call: the RPCs may be registered before init ran.
        let st = |env: &ModuleEnv| {
            let s = env.state.clone();
            move || {
                s.get()
                    .and_then(|b| b.downcast_ref::<State>())
                    .map(|s| s.domains.clone())
                    .unwrap_or_default()
            }
        };
        let (ds, d2, d3, d4, d5, d6) = (st(env), st(env), st(env), st(env), st(env), st(env));
        let r = [
            reg.register("ul.dump", &["Dump every location table: AORs and their contacts."], move |ctx| rpc_dump(&ds(), ctx)),
            reg.register("ul.lookup", &["ul.lookup table aor: the contacts of one AOR."], move |ctx| rpc_lookup(&d2(), ctx)),
            reg.register("ul.rm", &["ul.rm table aor: remove an AOR with all its contacts."], move |ctx| rpc_rm(&d3(), ctx)),
            reg.register(
                "ul.add",
                &["ul.add table aor contact expires q path flags cflags methods: add or update a contact."],
                move |ctx| rpc_add(&d4(), ctx),
            ),
            reg.register("ul.flush", &["Write every pending change to the database (db_mode 2)."], move |ctx| rpc_flush(&d5(), ctx)),
            reg.register("ul.stats", &["Registered users, and users and contacts of every table."], move |ctx| rpc_stats(&d6(), ctx)),
        ];
        for e in r.into_iter().filter_map(Result::err) {
            log::warn!("usrloc: rpc: {e}");
        }
    }
}

fn find<'a>(ds: &'a [Arc<Domain>], ctx: &dyn RpcCtx) -> Result<&'a Arc<Domain>, RpcFault> {
    let t = ctx.scan_str(0)?;
    ds.iter()
        .find(|d| d.name == t)
        .ok_or_else(|| RpcFault::new(404, format!("Table not found: {t}")))
}

fn fault(e: UlError) -> RpcFault {
    RpcFault::new(500, e.to_string())
}

/// A contact as an RPC struct (names as Kamailio's `ul.dump`).
pub fn contact_value(c: &Ucontact, now: u64) -> RpcValue {
    let q = if c.q < 0 {
        -1.0
    } else {
        f64::from(c.q) / 1000.0
    };
    RpcValue::structure([
        ("Address", RpcValue::Str(c.uri.clone())),
        (
            "Expires",
            if c.expires == 0 {
                RpcValue::Str("permanent".into())
            } else {
                RpcValue::long(c.remaining(now) as i64)
            },
        ),
        ("Q", RpcValue::Double(q)),
        ("Call-ID", RpcValue::Str(c.callid.clone())),
        ("CSeq", RpcValue::long(i64::from(c.cseq))),
        ("User-Agent", RpcValue::Str(c.user_agent.clone())),
        ("Received", RpcValue::Str(c.received.clone())),
        ("Path", RpcValue::Str(c.path.clone())),
        ("Socket", RpcValue::Str(c.socket.clone())),
        ("Flags", RpcValue::long(i64::from(c.flags))),
        ("CFlags", RpcValue::long(i64::from(c.cflags))),
        ("Methods", RpcValue::long(i64::from(c.methods))),
        ("Instance", RpcValue::Str(c.instance.clone())),
        ("Reg-Id", RpcValue::long(i64::from(c.reg_id))),
        ("Ruid", RpcValue::Str(c.ruid.clone())),
        ("Last-Modified", RpcValue::long(c.last_modified as i64)),
    ])
}

fn aor_value(aor: &str, list: &[Ucontact], now: u64) -> RpcValue {
    RpcValue::structure([
        ("AoR", RpcValue::Str(aor.to_owned())),
        (
            "Contacts",
            RpcValue::Array(
                list.iter()
                    .map(|c| RpcValue::structure([("Contact", contact_value(c, now))]))
                    .collect(),
            ),
        ),
    ])
}

fn rpc_dump(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let now = now();
    let mut tables = Vec::new();
    for d in ds {
        let aors = d.dump().map_err(fault)?;
        let n_aors = aors.len();
        tables.push(RpcValue::structure([(
            "Domain",
            RpcValue::structure([
                ("Domain", RpcValue::Str(d.name.clone())),
                ("Size", RpcValue::Int(store::BUCKETS as i32)),
                (
                    "AoRs",
                    RpcValue::Array(aors.iter().map(|(a, l)| aor_value(a, l, now)).collect()),
                ),
                (
                    "Stats",
                    RpcValue::structure([("Records", RpcValue::long(n_aors as i64))]),
                ),
            ]),
        )]));
    }
    ctx.add(RpcValue::structure([("Domains", RpcValue::Array(tables))]));
    Ok(())
}

/// Kamailio's usrloc statistics: `registered_users` (AORs of every table)
/// and `<table>-users` / `<table>-contacts`; `stats.get_statistics` shows
/// them as group `usrloc`.
fn rpc_stats(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let mut users = 0;
    let mut members = Vec::new();
    for d in ds {
        let aors = d.dump().map_err(fault)?;
        let contacts: usize = aors.iter().map(|(_, l)| l.len()).sum();
        users += aors.len();
        members.push((
            format!("{}-users", d.name),
            RpcValue::long(aors.len() as i64),
        ));
        members.push((
            format!("{}-contacts", d.name),
            RpcValue::long(contacts as i64),
        ));
    }
    members.insert(
        0,
        ("registered_users".to_owned(), RpcValue::long(users as i64)),
    );
    ctx.add(RpcValue::Struct(members));
    Ok(())
}

fn rpc_lookup(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let d = find(ds, ctx)?;
    let aor = aor_param(d, &ctx.scan_str(1)?);
    let list = d.get(&aor).map_err(fault)?;
    if list.is_empty() {
        return Err(RpcFault::new(404, "AOR not found"));
    }
    ctx.add(aor_value(&aor, &list, now()));
    Ok(())
}

/// An AOR given to an RPC: `user`, `user@domain` or a SIP URI.
fn aor_param(d: &Domain, s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .unwrap_or(s);
    match s.split_once('@') {
        Some((u, h)) => d.aor(u, h.split([';', ':', '>']).next().unwrap_or(h)),
        None => s.to_owned(),
    }
}

fn rpc_rm(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let d = find(ds, ctx)?;
    let aor = aor_param(d, &ctx.scan_str(1)?);
    if !d.remove(&aor).map_err(fault)? {
        return Err(RpcFault::new(404, "AOR not found"));
    }
    Ok(())
}

fn rpc_add(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let d = find(ds, ctx)?;
    let aor = aor_param(d, &ctx.scan_str(1)?);
    let uri = ctx.scan_str(2)?;
    if ser_sip::parse_uri(uri.as_bytes()).is_err() {
        return Err(RpcFault::bad_param(2, format!("`{uri}` is not a SIP URI")));
    }
    let expires = ctx.scan_opt_int(3)?.unwrap_or(0).max(0) as u64;
    let q = match ctx.param(4) {
        Some(_) => (ctx.scan_double(4)? * 1000.0).round() as i32,
        None => -1,
    };
    let path = ctx.scan_opt_str(5)?.unwrap_or_default();
    let flags = ctx.scan_opt_int(6)?.unwrap_or(0) as u32;
    let cflags = ctx.scan_opt_int(7)?.unwrap_or(0) as u32;
    let methods = ctx.scan_opt_int(8)?.map_or(ALL_METHODS, |m| m as u32);
    let now = now();
    let c = Ucontact {
        uri: uri.clone(),
        callid: "dfjrewr12386fd6-343@ser.rpc".into(),
        path,
        expires: if expires == 0 { 0 } else { now + expires },
        last_modified: now,
        cseq: 1,
        flags,
        cflags,
        methods,
        q,
        ruid: new_ruid(),
        ..Default::default()
    };
    d.update(&aor, false, |l| {
        match l.iter_mut().find(|x| x.uri == uri) {
            Some(x) => {
                let ruid = std::mem::take(&mut x.ruid);
                *x = Ucontact { ruid, ..c };
            }
            None => l.push(c),
        }
        (Changed::Yes, ())
    })
    .map_err(fault)
}

fn rpc_flush(ds: &[Arc<Domain>], ctx: &mut dyn RpcCtx) -> Result<(), RpcFault> {
    let mut n = 0;
    for d in ds {
        n += d.flush().map_err(fault)?;
    }
    ctx.add(RpcValue::Int(n as i32));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, DbValue};

    fn contact(uri: &str, expires: u64) -> Ucontact {
        Ucontact {
            uri: uri.into(),
            callid: "cid@h".into(),
            expires,
            last_modified: now(),
            q: -1,
            methods: ALL_METHODS,
            ruid: new_ruid(),
            ..Default::default()
        }
    }

    fn domain(name: &str, cfg: UlCfg) -> Arc<Domain> {
        store::shm_for_tests();
        let r = domain_ref(name).unwrap();
        resolve_pending(&cfg).unwrap();
        r.get().unwrap().clone()
    }

    fn rows(url: &str, table: &str) -> usize {
        db::with(url, |c| c.query(table, &["contact"], &[], None))
            .unwrap()
            .len()
    }

    #[test]
    fn write_back_flushes_on_the_timer() {
        let dir = std::env::temp_dir().join(format!("ser-ul-wb-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let url = format!("sqlite://{}/wb.db", dir.display());
        db::with(&url, |c| c.batch(db::schema("sqlite").unwrap())).unwrap();
        db::with(&url, |c| {
            c.batch("CREATE TABLE IF NOT EXISTS ul_wb AS SELECT * FROM location WHERE 0")
        })
        .unwrap();
        let cfg = UlCfg {
            db_mode: 2,
            db_url: url.clone(),
            use_domain: true,
            ..UlCfg::default()
        };
        let d = domain("ul_wb", cfg);
        let aor = d.aor("jo", "Example.COM");
        assert_eq!(aor, "jo@example.com");
        let t = now();
        d.update(&aor, false, |l| {
            l.push(contact("sip:jo@192.0.2.1", t + 5));
            l.push(contact("sip:jo@192.0.2.2", t + 3600));
            (Changed::Yes, ())
        })
        .unwrap();
        assert_eq!(
            rows(&url, "ul_wb"),
            0,
            "write-back: nothing written before the flush"
        );
        d.timer(t).unwrap();
        assert_eq!(rows(&url, "ul_wb"), 2);
        let dom = db::with(&url, |c| {
            c.query("ul_wb", &["username", "domain"], &[], None)
        })
        .unwrap();
        assert_eq!(
            dom[0],
            vec![
                DbValue::Str("jo".into()),
                DbValue::Str("example.com".into())
            ]
        );
        // The first contact expires; the next timer run removes its row.
        d.timer(t + 10).unwrap();
        assert_eq!(d.get(&aor).unwrap().len(), 1);
        assert_eq!(rows(&url, "ul_wb"), 1);
        d.remove(&aor).unwrap();
        assert_eq!(d.flush().unwrap(), 1);
        assert_eq!(rows(&url, "ul_wb"), 0);
        assert!(d.dump().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_mode_expires_and_sorts() {
        let d = domain(
            "ul_mem",
            UlCfg {
                desc_time_order: true,
                ..UlCfg::default()
            },
        );
        let t = now();
        d.update("kim", false, |l| {
            let mut a = contact("sip:kim@a", t + 100);
            a.last_modified = 1;
            let mut b = contact("sip:kim@b", t + 100);
            b.last_modified = 2;
            let mut c = contact("sip:kim@c", t + 100);
            c.q = 200;
            l.extend([c, a, b]);
            (Changed::Yes, ())
        })
        .unwrap();
        let order: Vec<String> = d.get("kim").unwrap().into_iter().map(|c| c.uri).collect();
        assert_eq!(order, ["sip:kim@b", "sip:kim@a", "sip:kim@c"]);
        d.timer(t + 200).unwrap();
        assert!(d.get("kim").unwrap().is_empty());
        assert_eq!(d.counts().0, 0);
    }

    #[test]
    fn rpc_add_lookup_rm_dump() {
        let d = domain("ul_rpc", UlCfg::default());
        let mut reg = RpcRegistry::new();
        let ds = vec![d.clone()];
        reg.register("t.add", &[""], {
            let ds = ds.clone();
            move |ctx| rpc_add(&ds, ctx)
        })
        .unwrap();
        reg.register("t.lookup", &[""], {
            let ds = ds.clone();
            move |ctx| rpc_lookup(&ds, ctx)
        })
        .unwrap();
        reg.register("t.rm", &[""], {
            let ds = ds.clone();
            move |ctx| rpc_rm(&ds, ctx)
        })
        .unwrap();
        reg.register("t.dump", &[""], move |ctx| rpc_dump(&ds, ctx))
            .unwrap();
        let s = |x: &str| RpcValue::Str(x.into());
        reg.call(
            "t.add",
            vec![
                s("ul_rpc"),
                s("sip:lee@example.com"),
                s("sip:lee@192.0.2.3"),
                RpcValue::Int(600),
                RpcValue::Double(0.5),
            ],
        )
        .unwrap();
        let out = reg.call("t.lookup", vec![s("ul_rpc"), s("lee")]).unwrap();
        let text = format!("{out:?}");
        assert!(
            text.contains("sip:lee@192.0.2.3") && text.contains("0.5"),
            "{text}"
        );
        assert!(format!("{:?}", reg.call("t.dump", vec![]).unwrap()).contains("lee"));
        assert!(reg
            .call("t.add", vec![s("ul_rpc"), s("lee"), s("not a uri")])
            .is_err());
        assert!(reg.call("t.lookup", vec![s("nosuch"), s("lee")]).is_err());
        reg.call("t.rm", vec![s("ul_rpc"), s("lee")]).unwrap();
        assert!(reg.call("t.lookup", vec![s("ul_rpc"), s("lee")]).is_err());
        assert!(reg.call("t.rm", vec![s("ul_rpc"), s("lee")]).is_err());
    }
}
