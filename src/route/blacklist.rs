//! The destination blacklist (SER's `dst_blacklist`, core parameters
//! `use_dst_blacklist` and `dst_blacklist_expire`): a destination a send to
//! failed (TCP/TLS connect refused or timed out, a UDP send error) is
//! skipped for `dst_blacklist_expire` seconds, so `forward`/`t_relay` to it
//! fail at once instead of waiting for the same timeout again.
//!
//! The table is per process (each worker learns on its own; SER shares it
//! in shm). ICMP errors for UDP are not seen: the sockets are unconnected.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ser_modules::runtime::transport::{Dest, Proto};

/// Most destinations remembered; the oldest entries go first beyond it.
const MAX_ENTRIES: usize = 4096;

/// Failed destinations and until when they are skipped.
#[derive(Debug)]
pub struct Blacklist {
    expire: Duration,
    until: Mutex<HashMap<(Proto, SocketAddr), Instant>>,
}

impl Blacklist {
    /// An empty list whose entries last `expire`.
    pub fn new(expire: Duration) -> Blacklist {
        Blacklist {
            expire,
            until: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<(Proto, SocketAddr), Instant>> {
        // a panic while holding it leaves a usable map
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `dst` failed at `now`.
    pub fn add(&self, proto: Proto, dst: SocketAddr, now: Instant) {
        let mut t = self.table();
        if t.len() >= MAX_ENTRIES {
            t.retain(|_, until| *until > now);
            if t.len() >= MAX_ENTRIES {
                if let Some(oldest) = t.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                    t.remove(&oldest);
                }
            }
        }
        t.insert((proto, dst), now + self.expire);
    }

    /// `dst` is still skipped at `now` (expired entries are dropped).
    pub fn is_listed(&self, proto: Proto, dst: SocketAddr, now: Instant) -> bool {
        let mut t = self.table();
        match t.get(&(proto, dst)) {
            Some(until) if *until > now => true,
            Some(_) => {
                t.remove(&(proto, dst));
                false
            }
            None => false,
        }
    }

    /// Sends with `send` unless `dst` is listed; lists it when the send
    /// fails for a reason of the destination (not a local one such as "no
    /// socket" or "unsupported").
    pub fn guard(&self, dst: &Dest, send: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let now = Instant::now();
        if self.is_listed(dst.proto, dst.addr, now) {
            return Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!(
                    "destination {}:{} is blacklisted (dst_blacklist)",
                    proto_name(dst.proto),
                    dst.addr
                ),
            ));
        }
        let r = send();
        if let Err(e) = &r {
            if !matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
            ) {
                log::info!(
                    "dst_blacklist: {}:{} failed ({e}); skipped for {} s",
                    proto_name(dst.proto),
                    dst.addr,
                    self.expire.as_secs()
                );
                self.add(dst.proto, dst.addr, now);
            }
        }
        r
    }
}

/// `tcp` as in listen addresses.
fn proto_name(p: Proto) -> String {
    p.as_str().to_ascii_lowercase()
}

static GLOBAL: OnceLock<Option<Blacklist>> = OnceLock::new();

/// Turns the blacklist on (`use_dst_blacklist`) with entries lasting
/// `expire_secs` (`dst_blacklist_expire`); main calls it once before the
/// fork, later calls are ignored.
pub fn configure(enabled: bool, expire_secs: u32) {
    let _ =
        GLOBAL.set(enabled.then(|| Blacklist::new(Duration::from_secs(u64::from(expire_secs)))));
}

/// The configured blacklist, if on.
pub fn global() -> Option<&'static Blacklist> {
    GLOBAL.get().and_then(|b| b.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> Dest {
        Dest {
            proto: Proto::Tcp,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            send_sock: None,
        }
    }

    #[test]
    fn a_failed_destination_is_skipped_until_it_expires() {
        let b = Blacklist::new(Duration::from_secs(30));
        let d = dest(5099);
        let mut tries = 0;
        let refused = |tries: &mut i32| {
            *tries += 1;
            Err(io::Error::from(io::ErrorKind::ConnectionRefused))
        };
        assert!(b.guard(&d, || refused(&mut tries)).is_err());
        assert_eq!(tries, 1);
        // the second send does not reach the network
        let e = b.guard(&d, || refused(&mut tries)).unwrap_err();
        assert_eq!(tries, 1);
        assert!(e.to_string().contains("blacklisted"), "{e}");
        // other destinations and protocols are untouched
        assert!(b.guard(&dest(5100), || Ok(())).is_ok());
        let udp = Dest {
            proto: Proto::Udp,
            ..d
        };
        assert!(b.guard(&udp, || Ok(())).is_ok());
        // and it expires
        let later = Instant::now() + Duration::from_secs(31);
        assert!(b.is_listed(Proto::Tcp, d.addr, Instant::now()));
        assert!(!b.is_listed(Proto::Tcp, d.addr, later));
    }

    #[test]
    fn local_errors_do_not_list_and_the_table_is_bounded() {
        let b = Blacklist::new(Duration::from_secs(30));
        let d = dest(5101);
        let _ = b.guard(&d, || Err(io::Error::from(io::ErrorKind::Unsupported)));
        assert!(!b.is_listed(Proto::Tcp, d.addr, Instant::now()));
        let now = Instant::now();
        for p in 0..(MAX_ENTRIES as u16 + 10) {
            b.add(Proto::Udp, SocketAddr::from(([127, 0, 0, 2], p)), now);
        }
        assert!(b.table().len() <= MAX_ENTRIES);
    }
}
