//! The destination blacklist on the send path (SER's `dst_blacklist`, core
//! parameters `use_dst_blacklist`, `dst_blacklist_expire`,
//! `dst_blacklist_mem`, `dst_blacklist_gc_interval`): a destination a send
//! to failed (TCP/TLS connect refused or timed out, a UDP send error) is
//! skipped for `dst_blacklist_expire` seconds, so `forward`/`t_relay` to it
//! fail at once instead of waiting for the same timeout again, and RFC 3263
//! resolution tries the next SRV target first.
//!
//! The table lives in shm ([`ser_modules::runtime::dns::blacklist`]): what
//! one process learns, every process skips. ICMP errors for UDP are not
//! seen: the sockets are unconnected.

use std::io;
use std::sync::OnceLock;

use ser_modules::runtime::dns::blacklist as shm;
use ser_modules::runtime::transport::{Dest, Proto};

/// The send-path guard (a handle on the shm table).
#[derive(Debug, Clone, Copy)]
pub struct Blacklist {
    expire: u32,
}

impl Blacklist {
    /// Sends with `send` unless `dst` is listed; lists it when the send
    /// fails for a reason of the destination (not a local one such as "no
    /// socket" or "unsupported").
    pub fn guard(&self, dst: &Dest, send: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        if shm::is_listed(dst.proto, dst.addr) {
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
                    self.expire
                );
                let why = match (dst.proto, e.kind()) {
                    (Proto::Udp, _) => shm::ERR_SEND,
                    (_, io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut) => {
                        shm::ERR_CONNECT
                    }
                    _ => shm::ERR_SEND,
                };
                if let Err(e) = shm::add(dst.proto, dst.addr, why, self.expire) {
                    log::warn!("dst_blacklist: {e}");
                }
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
/// fork, later calls are ignored. The table itself is created by
/// [`attach_shm`] once shm is mapped.
pub fn configure(enabled: bool, expire_secs: u32) {
    let _ = GLOBAL.set(enabled.then_some(Blacklist {
        expire: expire_secs,
    }));
}

/// Creates the shm table when the blacklist is on (main, after shm is
/// mapped, before forking): `mem_kb` is `dst_blacklist_mem`, `gc_secs`
/// `dst_blacklist_gc_interval`.
pub fn attach_shm(mem_kb: u32, gc_secs: u32) -> Result<(), String> {
    let Some(Some(b)) = GLOBAL.get() else {
        return Ok(());
    };
    shm::attach_shm(shm::Settings {
        expire: b.expire,
        mem: (mem_kb as usize).saturating_mul(1024),
        gc_interval: gc_secs,
    })
    .map_err(|e| format!("dst blacklist: {e}"))
}

/// The configured blacklist, if on and its table exists.
pub fn global() -> Option<&'static Blacklist> {
    GLOBAL
        .get()
        .and_then(|b| b.as_ref())
        .filter(|_| shm::enabled())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn dest(port: u16) -> Dest {
        Dest {
            proto: Proto::Tcp,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            send_sock: None,
        }
    }

    #[test]
    fn a_failed_destination_is_skipped_and_local_errors_do_not_list() {
        ser_shm::init_once(8 << 20).unwrap();
        shm::attach_shm(shm::Settings::default()).unwrap();
        let b = Blacklist { expire: 30 };
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
        let listed = shm::entries();
        assert!(listed
            .iter()
            .any(|l| l.addr == d.addr && l.flags & shm::ERR_CONNECT != 0));
        // other destinations and protocols are untouched
        assert!(b.guard(&dest(5100), || Ok(())).is_ok());
        let udp = Dest {
            proto: Proto::Udp,
            ..d
        };
        assert!(b.guard(&udp, || Ok(())).is_ok());
        let d2 = dest(5101);
        let _ = b.guard(&d2, || Err(io::Error::from(io::ErrorKind::Unsupported)));
        assert!(!shm::is_listed(Proto::Tcp, d2.addr));
    }
}
