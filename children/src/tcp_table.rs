//! The TCP connection table every process sees (the role of SER's
//! `tcpconn_id_hash`/`tcpconn_aliases_hash`): a peer address, or an alias
//! of it, names a connection (its id) and the TCP worker holding it.
//!
//! It lives in shared memory, made by main before the fork
//! ([`init`]); each worker adds the connections it holds and removes them
//! when it closes them. A worker that dies leaves its entries behind: a
//! sender finds the owner gone ([`crate::tcp_relay`] cannot reach it) and
//! removes them ([`remove`]). Without shared memory (unit tests, `-c`) the
//! table is absent and every lookup misses.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use ser_shm::{hash, HashTable, ShmBox, ShmSafe};

/// One name of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The peer address, or an alias of it (`ip:Via-port`).
    pub addr: SocketAddr,
    /// The connection's id (unique in this server's life).
    pub id: u64,
    /// pid of the TCP worker holding the connection.
    pub owner: i32,
    /// `addr` is an alias, not the connection's peer address.
    pub alias: bool,
}

// SAFETY: plain data: a socket address is bytes and integers, the rest are
// integers and a bool; no pointer, no Drop, alignment below 16.
unsafe impl ShmSafe for Slot {}

const BUCKETS: usize = 512;

static TABLE: OnceLock<&'static HashTable<Slot>> = OnceLock::new();

/// Makes the table in shared memory (main, before forking; once).
pub fn init() {
    if !ser_shm::is_initialized() || TABLE.get().is_some() {
        return;
    }
    match HashTable::new(BUCKETS).and_then(ShmBox::new) {
        Ok(t) => {
            let t: &'static HashTable<Slot> = ShmBox::leak(t);
            ser_shm::register_table("tcp connections", t);
            let _ = TABLE.set(t);
        }
        Err(e) => log::error!("tcp: no shared connection table ({e}); connections stay per worker"),
    }
}

/// Whether the table exists (a forked server).
pub fn available() -> bool {
    TABLE.get().is_some()
}

fn key(addr: &SocketAddr) -> u32 {
    let port = addr.port().to_be_bytes();
    match addr.ip() {
        IpAddr::V4(ip) => hash(&[&ip.octets(), &port]),
        IpAddr::V6(ip) => hash(&[&ip.octets(), &port]),
    }
}

/// Adds a name of connection `id` held by `owner`; false when the table is
/// absent or shared memory is exhausted.
pub fn insert(addr: SocketAddr, id: u64, owner: i32, alias: bool) -> bool {
    let Some(t) = TABLE.get() else { return false };
    let mut b = t.bucket(key(&addr));
    if b.iter().any(|s| s.addr == addr && s.id == id) {
        return true;
    }
    b.push(Slot {
        addr,
        id,
        owner,
        alias,
    })
    .is_ok()
}

/// The connection `addr` names: its peer address first, else an alias.
pub fn find(addr: SocketAddr) -> Option<Slot> {
    let t = TABLE.get()?;
    let b = t.bucket(key(&addr));
    let mut named = b.iter().filter(|s| s.addr == addr);
    let first = *named.next()?;
    Some(if first.alias {
        named.find(|s| !s.alias).copied().unwrap_or(first)
    } else {
        first
    })
}

/// Removes the name `addr` of connection `id`.
pub fn remove(addr: SocketAddr, id: u64) {
    if let Some(t) = TABLE.get() {
        t.bucket(key(&addr))
            .retain(|s| !(s.addr == addr && s.id == id));
    }
}

/// Removes every name of the connections `pid` held (it died); how many
/// connections those were.
pub fn remove_owner(pid: i32) -> usize {
    let Some(t) = TABLE.get() else { return 0 };
    let mut conns = 0;
    for b in (0..t.len()).filter_map(|i| t.bucket_at(i)) {
        b.lock().retain(|s| {
            let gone = s.owner == pid;
            conns += usize::from(gone && !s.alias);
            !gone
        });
    }
    conns
}

/// Every name of every connection (`tcp.list`-style listings, tests).
pub fn all() -> Vec<Slot> {
    let Some(t) = TABLE.get() else {
        return Vec::new();
    };
    (0..t.len())
        .filter_map(|i| t.bucket_at(i))
        .flat_map(|b| b.lock().iter().copied().collect::<Vec<_>>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_their_connection_and_go_away() {
        ser_shm::init_once(4 << 20).unwrap();
        init();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let alias: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        assert!(insert(alias, 7, 100, true));
        assert!(insert(peer, 7, 100, false));
        // a connection whose peer address is the alias wins over the alias
        assert!(insert(alias, 9, 101, false));
        assert_eq!(find(peer).map(|s| (s.id, s.owner)), Some((7, 100)));
        assert_eq!(find(alias).map(|s| s.id), Some(9));
        remove(alias, 9);
        assert_eq!(find(alias).map(|s| s.id), Some(7));
        assert!(all().iter().any(|s| s.addr == alias && s.alias));
        remove(alias, 7);
        remove(peer, 7);
        assert_eq!(find(peer), None);
        insert(peer, 8, 102, false);
        insert(alias, 8, 102, true);
        assert_eq!(remove_owner(102), 1);
        assert_eq!(find(peer), None);
        assert_eq!(find("[::1]:5060".parse().unwrap()), None);
    }
}
