//! The DNS cache in shared memory (SER's `use_dns_cache`): one table for
//! every process, entries keyed by (name, type), expiring by TTL (clamped
//! to `dns_cache_min_ttl`..`dns_cache_max_ttl`), negative answers kept for
//! `dns_cache_negative_ttl`, the whole bounded by `dns_cache_mem` bytes.
//!
//! An entry is one shm tuple: the name, (type, flags), expiry and last use
//! (Unix seconds), the records packed into one block, and its size as
//! counted against the cap.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use ser_shm::{hash, HashTable, ShmBox, ShmError, ShmStr};

use super::wire::{Naptr, Rdata, RrType, Srv};

/// Number of buckets (Kamailio's DNS_HASH_SIZE).
pub const BUCKETS: usize = 1024;

/// Flag: a negative entry (NXDOMAIN or no records of the type).
pub const NEGATIVE: u16 = 1;
/// Flag: added by hand (`dns.add_*`), survives `dns.delete_all`.
pub const PERMANENT: u16 = 2;

/// Bytes an entry costs besides its name and records (the tuple, two block
/// headers), so a cap is honest about many tiny entries.
const ENTRY_OVERHEAD: usize = 96;

/// One entry: name, (type code, flags), expires, last used, records, size.
type Slot = (ShmStr, (u16, u16), u64, u64, ShmStr, u32);

/// The table, bytes used, and when the last garbage collection ran.
type Shared = (HashTable<Slot>, AtomicUsize, AtomicU64);

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

/// The cache's limits (core parameters), fixed in main before the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `dns_cache_min_ttl`, seconds.
    pub min_ttl: u32,
    /// `dns_cache_max_ttl`, seconds.
    pub max_ttl: u32,
    /// `dns_cache_negative_ttl`, seconds (0: no negative caching).
    pub negative_ttl: u32,
    /// `dns_cache_mem`, bytes.
    pub mem: usize,
    /// `dns_cache_gc_interval`, seconds.
    pub gc_interval: u32,
    /// `dns_cache_del_nonexp`: when full, evict live entries too.
    pub del_nonexp: bool,
}

impl Default for Limits {
    fn default() -> Self {
        // Kamailio's defaults
        Limits {
            min_ttl: 0,
            max_ttl: u32::MAX,
            negative_ttl: 60,
            mem: 500 * 1024,
            gc_interval: 120,
            del_nonexp: false,
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// The limits in force.
pub fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// Creates the table in shm (main, after shm is mapped, before forking).
/// Later calls keep the first table.
pub fn attach_shm(l: Limits) -> Result<(), ShmError> {
    let _ = LIMITS.set(l);
    if SHARED.get().is_some() {
        return Ok(());
    }
    let t: &'static Shared = ShmBox::leak(ShmBox::new((
        HashTable::new(BUCKETS)?,
        AtomicUsize::new(0),
        AtomicU64::new(now()),
    ))?);
    ser_shm::register_table("dns_cache", &t.0);
    let _ = SHARED.set(t);
    Ok(())
}

/// Whether the cache exists (`use_dns_cache` and shm attached).
pub fn enabled() -> bool {
    SHARED.get().is_some()
}

/// Unix seconds (valid in every process, unlike `Instant`).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn key_hash(name: &str, ty: RrType) -> u32 {
    hash(&[name.as_bytes(), &ty.code().to_be_bytes()])
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(0xff)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn get_str(b: &[u8], at: &mut usize) -> Option<String> {
    let n = usize::from(*b.get(*at)?);
    let s = b.get(*at + 1..*at + 1 + n)?;
    *at += 1 + n;
    Some(String::from_utf8_lossy(s).into_owned())
}

fn get16(b: &[u8], at: &mut usize) -> Option<u16> {
    let s = b.get(*at..*at + 2)?;
    *at += 2;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Packs records of one type into bytes.
fn pack(records: &[Rdata]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        match r {
            Rdata::A(a) => out.extend_from_slice(&a.octets()),
            Rdata::Aaaa(a) => out.extend_from_slice(&a.octets()),
            Rdata::Cname(n) => put_str(&mut out, n),
            Rdata::Srv(s) => {
                for v in [s.priority, s.weight, s.port] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                put_str(&mut out, &s.target);
            }
            Rdata::Naptr(n) => {
                out.extend_from_slice(&n.order.to_be_bytes());
                out.extend_from_slice(&n.preference.to_be_bytes());
                for s in [&n.flags, &n.service, &n.regexp, &n.replacement] {
                    put_str(&mut out, s);
                }
            }
        }
    }
    out
}

fn unpack(ty: RrType, b: &[u8]) -> Vec<Rdata> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let r = (|| {
            Some(match ty {
                RrType::A => {
                    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
                    at += 4;
                    Rdata::A(Ipv4Addr::from(o))
                }
                RrType::Aaaa => {
                    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
                    at += 16;
                    Rdata::Aaaa(Ipv6Addr::from(o))
                }
                RrType::Cname => Rdata::Cname(get_str(b, &mut at)?),
                RrType::Srv => Rdata::Srv(Srv {
                    priority: get16(b, &mut at)?,
                    weight: get16(b, &mut at)?,
                    port: get16(b, &mut at)?,
                    target: get_str(b, &mut at)?,
                }),
                RrType::Naptr => Rdata::Naptr(Naptr {
                    order: get16(b, &mut at)?,
                    preference: get16(b, &mut at)?,
                    flags: get_str(b, &mut at)?,
                    service: get_str(b, &mut at)?,
                    regexp: get_str(b, &mut at)?,
                    replacement: get_str(b, &mut at)?,
                }),
            })
        })();
        match r {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out
}

/// An entry as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name (lower-case).
    pub name: String,
    /// Type.
    pub ty: RrType,
    /// Records (empty for a negative entry).
    pub records: Vec<Rdata>,
    /// [`NEGATIVE`], [`PERMANENT`].
    pub flags: u16,
    /// Unix seconds it expires (0: permanent).
    pub expires: u64,
    /// Unix seconds of the last lookup that used it.
    pub last_used: u64,
    /// Bytes counted against `dns_cache_mem`.
    pub size: usize,
}

impl Entry {
    /// A negative entry.
    pub fn is_negative(&self) -> bool {
        self.flags & NEGATIVE != 0
    }

    /// Added by hand.
    pub fn is_permanent(&self) -> bool {
        self.flags & PERMANENT != 0
    }
}

fn decode(s: &Slot) -> Option<Entry> {
    let ty = RrType::from_code(s.1 .0)?;
    Some(Entry {
        name: String::from_utf8_lossy(s.0.as_bytes()).into_owned(),
        ty,
        records: unpack(ty, s.4.as_bytes()),
        flags: s.1 .1,
        expires: s.2,
        last_used: s.3,
        size: s.5 as usize,
    })
}

fn live(s: &Slot, now: u64) -> bool {
    s.1 .1 & PERMANENT != 0 || s.2 > now
}

/// The live entry for `name`/`ty` (its last use is updated).
pub fn get(name: &str, ty: RrType) -> Option<Entry> {
    let t = SHARED.get()?;
    let now = now();
    let mut b = t.0.bucket(key_hash(name, ty));
    let s = b
        .iter_mut()
        .find(|s| s.1 .0 == ty.code() && s.0 == *name.as_bytes())?;
    if !live(s, now) {
        return None;
    }
    s.3 = now;
    decode(s)
}

/// The TTL an answer is kept: clamped to the configured range.
pub fn clamp_ttl(ttl: u32) -> u32 {
    let l = limits();
    ttl.max(l.min_ttl).min(l.max_ttl.max(l.min_ttl))
}

/// Stores (replaces) `name`/`ty`. `ttl` is used as given (callers clamp);
/// `flags` may say [`NEGATIVE`] / [`PERMANENT`]. Fails when the entry does
/// not fit under `dns_cache_mem` even after evicting.
pub fn put(name: &str, ty: RrType, records: &[Rdata], ttl: u32, flags: u16) -> Result<(), String> {
    let Some(t) = SHARED.get() else {
        return Ok(());
    };
    let now = now();
    let packed = pack(records);
    let size = ENTRY_OVERHEAD + name.len() + packed.len();
    let cap = limits().mem;
    if size > cap {
        return Err(format!("entry of {size} bytes exceeds dns_cache_mem"));
    }
    delete(name, ty);
    if t.1.load(Ordering::Relaxed) + size > cap {
        gc(now, false);
        if t.1.load(Ordering::Relaxed) + size > cap && limits().del_nonexp {
            evict_oldest(size);
        }
        if t.1.load(Ordering::Relaxed) + size > cap {
            return Err("dns cache full (dns_cache_mem)".into());
        }
    }
    let slot: Slot = (
        ShmStr::new(name.as_bytes()).map_err(|e| e.to_string())?,
        (ty.code(), flags),
        if flags & PERMANENT != 0 {
            0
        } else {
            now + u64::from(ttl)
        },
        now,
        ShmStr::new(&packed).map_err(|e| e.to_string())?,
        size as u32,
    );
    t.0.bucket(key_hash(name, ty))
        .push(slot)
        .map_err(|e| e.to_string())?;
    t.1.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// Removes `name`/`ty`; whether it was there.
pub fn delete(name: &str, ty: RrType) -> bool {
    let Some(t) = SHARED.get() else {
        return false;
    };
    let mut b = t.0.bucket(key_hash(name, ty));
    let Some(i) = b
        .iter()
        .position(|s| s.1 .0 == ty.code() && s.0 == *name.as_bytes())
    else {
        return false;
    };
    let s = b.swap_remove(i);
    t.1.fetch_sub(s.5 as usize, Ordering::Relaxed);
    true
}

/// Removes every entry (`force`) or every one but the permanent ones.
pub fn delete_all(force: bool) {
    let Some(t) = SHARED.get() else { return };
    for i in 0..t.0.len() {
        let mut b = t.0.bucket(i as u32);
        let mut freed = 0;
        b.retain(|s| {
            let keep = !force && s.1 .1 & PERMANENT != 0;
            if !keep {
                freed += s.5 as usize;
            }
            keep
        });
        t.1.fetch_sub(freed, Ordering::Relaxed);
    }
}

/// Drops expired entries; with `due_only`, only when `dns_cache_gc_interval`
/// has passed since the last run (the timer calls it often). Returns how
/// many went.
pub fn gc(now: u64, due_only: bool) -> usize {
    let Some(t) = SHARED.get() else { return 0 };
    if due_only {
        let last = t.2.load(Ordering::Relaxed);
        let every = u64::from(limits().gc_interval.max(1));
        if now < last + every
            || t.2
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return 0;
        }
    }
    let mut gone = 0;
    for i in 0..t.0.len() {
        let mut b = t.0.bucket(i as u32);
        let mut freed = 0;
        b.retain(|s| {
            let keep = live(s, now);
            if !keep {
                freed += s.5 as usize;
                gone += 1;
            }
            keep
        });
        t.1.fetch_sub(freed, Ordering::Relaxed);
    }
    gone
}

/// Evicts the least recently used non-permanent entries until `need`
/// bytes fit.
fn evict_oldest(need: usize) {
    let Some(t) = SHARED.get() else { return };
    let cap = limits().mem;
    let mut all: Vec<(u64, String, RrType)> = entries()
        .into_iter()
        .filter(|e| !e.is_permanent())
        .map(|e| (e.last_used, e.name, e.ty))
        .collect();
    all.sort();
    for (_, name, ty) in all {
        if t.1.load(Ordering::Relaxed) + need <= cap {
            break;
        }
        delete(&name, ty);
    }
}

/// Every entry, expired ones included (`dns.view` filters).
pub fn entries() -> Vec<Entry> {
    let Some(t) = SHARED.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..t.0.len() {
        out.extend(t.0.bucket(i as u32).iter().filter_map(decode));
    }
    out
}

/// (bytes used, `dns_cache_mem`).
pub fn mem_info() -> (usize, usize) {
    let used = SHARED.get().map_or(0, |t| t.1.load(Ordering::Relaxed));
    (used, limits().mem)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serialises tests sharing the one process-wide table.
    pub static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub fn setup() -> std::sync::MutexGuard<'static, ()> {
        let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        ser_shm::init_once(16 << 20).unwrap();
        attach_shm(Limits {
            mem: 20_000,
            ..Limits::default()
        })
        .unwrap();
        delete_all(true);
        g
    }

    #[test]
    fn pack_round_trip() {
        let srv = vec![Rdata::Srv(Srv {
            priority: 1,
            weight: 2,
            port: 3,
            target: "t.test".into(),
        })];
        assert_eq!(unpack(RrType::Srv, &pack(&srv)), srv);
        let n = vec![Rdata::Naptr(Naptr {
            order: 1,
            preference: 2,
            flags: "s".into(),
            service: "SIP+D2T".into(),
            regexp: String::new(),
            replacement: "_sip._tcp.x".into(),
        })];
        assert_eq!(unpack(RrType::Naptr, &pack(&n)), n);
        // garbage stops decoding, never panics
        assert!(unpack(RrType::Srv, &[1, 2, 3]).is_empty());
    }

    #[test]
    fn put_get_expire_delete_and_cap() {
        let _g = setup();
        let a = vec![Rdata::A(Ipv4Addr::new(10, 0, 0, 1))];
        put("h.test", RrType::A, &a, 60, 0).unwrap();
        put("p.test", RrType::A, &a, 0, PERMANENT).unwrap();
        put("n.test", RrType::Aaaa, &[], 60, NEGATIVE).unwrap();
        assert_eq!(get("h.test", RrType::A).unwrap().records, a);
        assert!(get("h.test", RrType::Aaaa).is_none());
        assert!(get("n.test", RrType::Aaaa).unwrap().is_negative());
        let used = mem_info().0;
        assert!(used > 3 * ENTRY_OVERHEAD, "{used}");
        // expiry: everything but the permanent entry is gone an hour later
        assert_eq!(gc(now() + 3600, false), 2);
        assert!(get("p.test", RrType::A).is_some());
        delete_all(false);
        assert!(get("p.test", RrType::A).is_some());
        delete_all(true);
        assert_eq!(mem_info().0, 0);
        // the cap: 20 000 bytes hold ~190 small entries, no more
        let mut stored = 0;
        for i in 0..400 {
            if put(&format!("h{i}.test"), RrType::A, &a, 60, 0).is_ok() {
                stored += 1;
            }
        }
        assert!((100..400).contains(&stored), "{stored}");
        assert!(mem_info().0 <= 20_000);
        delete_all(true);
    }
}
