//! Sending over TCP from any process: this process's connection table.
//!
//! SER keeps every connection in tcp main and lets other processes ask for
//! one. This build keeps it simpler but process-safe: each process has its
//! own table of the connections it holds, by peer address and by alias.
//!
//! * A TCP worker registers the connections tcp main hands it, so replies
//!   and forwards to a peer it reads from go out on that connection (RFC 3261
//!   §18.2.2); a connection opened by a worker is read by that worker too.
//! * Any other process (a UDP receiver, the timer) that opens a connection
//!   keeps it for its later sends to that peer and passes a copy to tcp main
//!   (SCM_RIGHTS over a datagram socketpair made before the fork), which hands
//!   it to a worker: whatever the peer sends back on it is read and handled.
//! * A process that has no connection to a peer opens a new one (bounded by
//!   the connect timeout); two processes may so hold two connections to one
//!   peer, which TCP and SIP allow.
//!
//! When a worker closes a connection (EOF, error, idle for
//! `tcp_connection_lifetime`) it shuts it down, so copies held by other
//! processes fail on their next write and are replaced by a new connection.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// SER's `tcp_connect_timeout` default is 10 s; a blocked worker is worse
/// than a failed forward, so ours is shorter.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one message may take to write before the connection is given up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP sending settings, fixed in main before the fork.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// TCP is enabled (a TCP socket is bound, no `-T`).
    pub enabled: bool,
    /// Connect timeout (`tcp_connect_timeout`).
    pub connect_timeout: Duration,
    /// Idle connections are dropped after this (`tcp_connection_lifetime`).
    pub lifetime: Duration,
    /// Most connections this process opens/holds (`tcp_max_connections`);
    /// tcp main refuses accepted connections beyond it, all workers counted.
    pub max_connections: usize,
    /// How the TCP loops wait (`-W`, `tcp_poll_method`).
    pub poll_method: crate::reactor::PollMethod,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            enabled: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            lifetime: crate::tcp::DEFAULT_LIFETIME,
            max_connections: crate::tcp::MAX_CONNECTIONS_PER_WORKER,
            poll_method: crate::reactor::PollMethod::default(),
        }
    }
}

static CONFIG: OnceLock<TcpConfig> = OnceLock::new();
/// The sending end towards tcp main (children inherit it).
static HANDOFF: OnceLock<UnixDatagram> = OnceLock::new();
/// This process is a TCP worker: it reads what it opens itself.
static IS_WORKER: AtomicBool = AtomicBool::new(false);

/// Sets the TCP settings; main calls it once before forking (later calls
/// are ignored).
pub fn configure(cfg: TcpConfig) {
    let _ = CONFIG.set(cfg);
}

/// The settings [`configure`] fixed (defaults before).
pub fn config() -> TcpConfig {
    CONFIG.get().cloned().unwrap_or_default()
}

/// Installs the handoff socket towards tcp main (main, before forking).
pub(crate) fn set_handoff(tx: UnixDatagram) {
    let _ = HANDOFF.set(tx);
}

pub(crate) fn mark_worker() {
    IS_WORKER.store(true, Ordering::Relaxed);
}

pub(crate) fn is_worker() -> bool {
    IS_WORKER.load(Ordering::Relaxed)
}

struct Entry {
    stream: Arc<TcpStream>,
    last_used: Instant,
}

#[derive(Default)]
struct Table {
    by_peer: HashMap<SocketAddr, Entry>,
    /// Other names of a peer: `ip:Via-port` of a client that connected
    /// from an ephemeral port.
    aliases: HashMap<SocketAddr, SocketAddr>,
    /// Opened by this (worker) process, not yet polled by its loop.
    fresh: Vec<(Arc<TcpStream>, SocketAddr)>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Table::default))
}

/// Registers a connection this worker reads from (accepted or handed over).
pub(crate) fn register(stream: Arc<TcpStream>, peer: SocketAddr) {
    with_table(|t| {
        t.by_peer.insert(
            peer,
            Entry {
                stream,
                last_used: Instant::now(),
            },
        );
    });
}

/// Forgets a connection and shuts it down (copies in other processes see it).
pub(crate) fn unregister(stream: &TcpStream, peer: SocketAddr) {
    let _ = stream.shutdown(std::net::Shutdown::Both);
    with_table(|t| {
        if t.by_peer
            .get(&peer)
            .is_some_and(|e| e.stream.as_raw_fd() == stream.as_raw_fd())
        {
            t.by_peer.remove(&peer);
        }
        t.aliases.retain(|_, p| *p != peer);
    });
}

/// Connections this worker opened since the last call.
pub(crate) fn take_fresh() -> Vec<(Arc<TcpStream>, SocketAddr)> {
    with_table(|t| std::mem::take(&mut t.fresh))
}

/// Records that `alias` (e.g. the Via sent-by of a request that came in on
/// the connection from `peer`) names the same connection.
pub fn add_alias(alias: SocketAddr, peer: SocketAddr) {
    if alias == peer {
        return;
    }
    with_table(|t| {
        if t.by_peer.contains_key(&peer) {
            t.aliases.insert(alias, peer);
        }
    });
}

/// Whether this process holds a connection to `dst` (or an alias of it).
pub fn has_connection(dst: SocketAddr) -> bool {
    lookup(dst).is_some()
}

fn lookup(dst: SocketAddr) -> Option<Arc<TcpStream>> {
    let lifetime = config().lifetime;
    with_table(|t| {
        let peer = if t.by_peer.contains_key(&dst) {
            dst
        } else {
            *t.aliases.get(&dst)?
        };
        let e = t.by_peer.get_mut(&peer)?;
        if e.last_used.elapsed() > lifetime && !IS_WORKER.load(Ordering::Relaxed) {
            // our copy of a connection a worker may have closed by now
            t.by_peer.remove(&peer);
            return None;
        }
        e.last_used = Instant::now();
        Some(e.stream.clone())
    })
}

/// Writes all of `buf` within `limit`, whatever the socket's blocking mode
/// (a worker reads the same connection non-blocking).
pub fn write_all_timeout(stream: &TcpStream, mut buf: &[u8], limit: Duration) -> io::Result<()> {
    let end = Instant::now() + limit;
    let mut w = stream;
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "connection closed")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(ErrorKind::TimedOut, "send timed out"));
                }
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends one whole SIP message to `dst` over TCP: on a connection this
/// process holds to it, else on a new one (which is kept, and read by a
/// worker).
pub fn send(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let cfg = config();
    if !cfg.enabled {
        return Err(io::Error::new(
            ErrorKind::Unsupported,
            "tcp is disabled (no tcp socket, or -T)",
        ));
    }
    if let Some(s) = lookup(dst) {
        match write_all_timeout(&s, buf, SEND_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::debug!("tcp: connection to {dst} failed ({e}); reconnecting");
                unregister(&s, peer_of(&s).unwrap_or(dst));
            }
        }
    }
    let count = with_table(|t| t.by_peer.len());
    if count >= cfg.max_connections {
        return Err(io::Error::other(format!(
            "too many tcp connections ({count}, tcp_max_connections)"
        )));
    }
    let stream = TcpStream::connect_timeout(&dst, cfg.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    write_all_timeout(&stream, buf, SEND_TIMEOUT)?;
    let stream = Arc::new(stream);
    if IS_WORKER.load(Ordering::Relaxed) {
        register(stream.clone(), dst);
        with_table(|t| t.fresh.push((stream, dst)));
    } else {
        // tcp main gives a copy to a worker, which reads the peer's answers
        if let Some(tx) = HANDOFF.get() {
            if let Err(e) =
                crate::tcp::send_fd_raw(tx.as_raw_fd(), &u32::MAX.to_ne_bytes(), stream.as_raw_fd())
            {
                log::warn!("tcp: cannot hand the connection to {dst} to tcp main: {e}");
            }
        }
        register(stream, dst);
    }
    Ok(())
}

fn peer_of(s: &TcpStream) -> Option<SocketAddr> {
    s.peer_addr().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn send_opens_then_reuses_a_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send(addr, b"one").unwrap();
        let (mut c, _) = l.accept().unwrap();
        send(addr, b"two").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = [0u8; 6];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"onetwo");
        assert!(has_connection(addr));
        // an alias finds the same connection
        let alias: SocketAddr = "127.0.0.1:1".parse().unwrap();
        add_alias(alias, addr);
        send(alias, b"3").unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"3");
    }

    #[test]
    fn a_dead_connection_is_replaced() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send(addr, b"a").unwrap();
        let (c, _) = l.accept().unwrap();
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        // the first write after the peer closed may still succeed; within
        // a few sends the connection is found dead and a new one opened
        for _ in 0..5 {
            let _ = send(addr, b"b");
            std::thread::sleep(Duration::from_millis(20));
        }
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_ok(), "a new connection was opened");
    }

    #[test]
    fn refused_connect_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(send(addr, b"x").is_err());
    }
}
