//! The destination blacklist in shared memory (SER's `dst_blacklist`): a
//! (protocol, address, port) a send to failed is skipped until it expires,
//! in every process. Kamailio's flag bits say why an entry is there.
//!
//! The sending side (the core's transport) adds entries; resolution skips
//! listed targets so a request fails over to the next SRV target.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use ser_shm::{hash, HashTable, ShmBox, ShmError};

use crate::runtime::transport::Proto;

/// Kamailio's `BLST_IS_IPV6`.
pub const IS_IPV6: u16 = 1;
/// `BLST_ERR_SEND`: a send failed.
pub const ERR_SEND: u16 = 2;
/// `BLST_ERR_CONNECT`: a TCP/TLS connect failed.
pub const ERR_CONNECT: u16 = 4;
/// `BLST_ERR_TIMEOUT`: tm's final response timer fired (408).
pub const ERR_TIMEOUT: u16 = 16;
/// `BLST_PERMANENT`.
pub const PERMANENT: u16 = 128;

/// Buckets (Kamailio's DST_BLST_HASH_SIZE).
const BUCKETS: usize = 1024;

/// One entry: (proto code, address octets, port, flags), expires (Unix ms).
type Slot = ((u8, [u8; 16], u16, u16), u64);

/// Bytes an entry counts against `dst_blacklist_mem` (Kamailio counts its
/// struct; ours is the tuple plus a share of the bucket vector).
pub const ENTRY_SIZE: usize = std::mem::size_of::<Slot>();

/// The table, bytes used, last garbage collection (Unix ms).
type Shared = (HashTable<Slot>, AtomicUsize, AtomicU64);

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

/// The blacklist's settings (core parameters), fixed before the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `dst_blacklist_expire`, seconds.
    pub expire: u32,
    /// `dst_blacklist_mem`, bytes.
    pub mem: usize,
    /// `dst_blacklist_gc_interval`, seconds.
    pub gc_interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expire: 60,
            mem: 250 * 1024,
            gc_interval: 60,
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings in force.
pub fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// Creates the table in shm (main, before forking); later calls keep it.
pub fn attach_shm(s: Settings) -> Result<(), ShmError> {
    let _ = SETTINGS.set(s);
    if SHARED.get().is_some() {
        return Ok(());
    }
    let t: &'static Shared = ShmBox::leak(ShmBox::new((
        HashTable::new(BUCKETS)?,
        AtomicUsize::new(0),
        AtomicU64::new(now_ms()),
    ))?);
    ser_shm::register_table("dst_blacklist", &t.0);
    let _ = SHARED.set(t);
    Ok(())
}

/// Whether the blacklist is on (`use_dst_blacklist` and shm attached).
pub fn enabled() -> bool {
    SHARED.get().is_some()
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn proto_code(p: Proto) -> u8 {
    // Kamailio's PROTO_* numbers
    match p {
        Proto::Udp => 1,
        Proto::Tcp => 2,
        Proto::Tls => 3,
        Proto::Sctp => 4,
    }
}

fn proto_of(c: u8) -> Option<Proto> {
    Some(match c {
        1 => Proto::Udp,
        2 => Proto::Tcp,
        3 => Proto::Tls,
        4 => Proto::Sctp,
        _ => return None,
    })
}

/// Kamailio's protocol number of a name (`dst_blacklist.add`), or of the
/// number itself.
pub fn proto_from_code(c: i32) -> Option<Proto> {
    u8::try_from(c).ok().and_then(proto_of)
}

fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn key(proto: Proto, addr: SocketAddr) -> (u8, [u8; 16], u16) {
    (proto_code(proto), octets(addr.ip()), addr.port())
}

fn key_hash(k: &(u8, [u8; 16], u16)) -> u32 {
    hash(&[&[k.0], &k.1, &k.2.to_be_bytes()])
}

fn same(s: &Slot, k: &(u8, [u8; 16], u16)) -> bool {
    s.0 .0 == k.0 && s.0 .1 == k.1 && s.0 .2 == k.2
}

/// Lists `addr` for `expire_s` seconds with the reason `flags`; refreshes
/// an existing entry. Fails when the table is full (`dst_blacklist_mem`).
pub fn add(proto: Proto, addr: SocketAddr, flags: u16, expire_s: u32) -> Result<(), String> {
    let Some(t) = SHARED.get() else {
        return Ok(());
    };
    let now = now_ms();
    let k = key(proto, addr);
    let flags = flags | if addr.is_ipv6() { IS_IPV6 } else { 0 };
    let until = now + u64::from(expire_s) * 1000;
    {
        let mut b = t.0.bucket(key_hash(&k));
        if let Some(s) = b.iter_mut().find(|s| same(s, &k)) {
            s.0 .3 |= flags;
            s.1 = s.1.max(until);
            return Ok(());
        }
    }
    if t.1.load(Ordering::Relaxed) + ENTRY_SIZE > settings().mem {
        gc(now, false);
        if t.1.load(Ordering::Relaxed) + ENTRY_SIZE > settings().mem {
            return Err("dst blacklist full (dst_blacklist_mem)".into());
        }
    }
    t.0.bucket(key_hash(&k))
        .push(((k.0, k.1, k.2, flags), until))
        .map_err(|e| e.to_string())?;
    t.1.fetch_add(ENTRY_SIZE, Ordering::Relaxed);
    Ok(())
}

/// tm's final response timer fired on an INVITE branch that got no reply
/// at all: list the destination for `dst_blacklist_expire` (no-op when the
/// blacklist is off).
pub fn note_timeout(proto: Proto, addr: SocketAddr) {
    if !enabled() {
        return;
    }
    log::info!(
        "dst_blacklist: {}:{addr} did not answer (timeout); skipped for {} s",
        proto.as_str().to_ascii_lowercase(),
        settings().expire
    );
    if let Err(e) = add(proto, addr, ERR_TIMEOUT, settings().expire) {
        log::warn!("dst_blacklist: {e}");
    }
}

/// Whether `addr` is listed now (an expired entry is dropped).
pub fn is_listed(proto: Proto, addr: SocketAddr) -> bool {
    let Some(t) = SHARED.get() else {
        return false;
    };
    let k = key(proto, addr);
    let now = now_ms();
    let mut b = t.0.bucket(key_hash(&k));
    match b.iter().position(|s| same(s, &k)) {
        Some(i) if b[i].1 > now || b[i].0 .3 & PERMANENT != 0 => true,
        Some(i) => {
            b.swap_remove(i);
            t.1.fetch_sub(ENTRY_SIZE, Ordering::Relaxed);
            false
        }
        None => false,
    }
}

/// An entry as `dst_blacklist.view` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Protocol.
    pub proto: Proto,
    /// Destination.
    pub addr: SocketAddr,
    /// Milliseconds left.
    pub expires_in_ms: u64,
    /// Reason bits.
    pub flags: u16,
}

/// Every live entry.
pub fn entries() -> Vec<Listed> {
    let Some(t) = SHARED.get() else {
        return Vec::new();
    };
    let now = now_ms();
    let mut out = Vec::new();
    for i in 0..t.0.len() {
        for s in t.0.bucket(i as u32).iter() {
            if s.1 <= now && s.0 .3 & PERMANENT == 0 {
                continue;
            }
            let Some(proto) = proto_of(s.0 .0) else {
                continue;
            };
            let v6 = std::net::Ipv6Addr::from(s.0 .1);
            let ip = match v6.to_ipv4_mapped() {
                Some(v4) if s.0 .3 & IS_IPV6 == 0 => IpAddr::V4(v4),
                _ => IpAddr::V6(v6),
            };
            out.push(Listed {
                proto,
                addr: SocketAddr::new(ip, s.0 .2),
                expires_in_ms: s.1.saturating_sub(now),
                flags: s.0 .3,
            });
        }
    }
    out
}

/// Drops expired entries (with `due_only`, only once per
/// `dst_blacklist_gc_interval`); returns how many went.
pub fn gc(now: u64, due_only: bool) -> usize {
    let Some(t) = SHARED.get() else { return 0 };
    if due_only {
        let last = t.2.load(Ordering::Relaxed);
        let every = u64::from(settings().gc_interval.max(1)) * 1000;
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
        let before = b.len();
        b.retain(|s| s.1 > now || s.0 .3 & PERMANENT != 0);
        let n = before - b.len();
        gone += n;
        t.1.fetch_sub(n * ENTRY_SIZE, Ordering::Relaxed);
    }
    gone
}

/// Removes every entry.
pub fn delete_all() {
    let Some(t) = SHARED.get() else { return };
    for i in 0..t.0.len() {
        let mut b = t.0.bucket(i as u32);
        let n = b.len();
        b.clear();
        t.1.fetch_sub(n * ENTRY_SIZE, Ordering::Relaxed);
    }
}

/// (bytes used, `dst_blacklist_mem`).
pub fn mem_info() -> (usize, usize) {
    (
        SHARED.get().map_or(0, |t| t.1.load(Ordering::Relaxed)),
        settings().mem,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_seen_expired_and_bounded() {
        let _g = super::super::cache::tests::LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ser_shm::init_once(16 << 20).unwrap();
        attach_shm(Settings {
            expire: 60,
            mem: 100 * ENTRY_SIZE,
            gc_interval: 1,
        })
        .unwrap();
        delete_all();
        let d: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let d6: SocketAddr = "[::1]:5099".parse().unwrap();
        add(Proto::Tcp, d, ERR_CONNECT, 60).unwrap();
        add(Proto::Udp, d6, ERR_SEND, 0).unwrap();
        assert!(is_listed(Proto::Tcp, d));
        assert!(!is_listed(Proto::Udp, d), "other protocol");
        assert!(!is_listed(Proto::Udp, d6), "expired at once");
        let e = entries();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].proto, e[0].addr, e[0].flags), (Proto::Tcp, d, 4));
        assert_eq!(mem_info().0, ENTRY_SIZE);
        assert_eq!(gc(now_ms() + 61_000, false), 1);
        for p in 0..200u16 {
            let _ = add(Proto::Udp, SocketAddr::from(([10, 0, 0, 1], p)), 2, 60);
        }
        assert_eq!(entries().len(), 100);
        delete_all();
        assert_eq!(mem_info().0, 0);
    }
}
