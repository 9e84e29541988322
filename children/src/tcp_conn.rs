//! Sending over TCP from any process.
//!
//! A connection lives in one TCP worker, which reads it and is the only
//! process that writes it: each worker keeps the connections it holds in
//! this process's table (by id, peer address and aliases), and names them in
//! the shared [`crate::tcp_table`] so every process finds them.
//!
//! [`send`] to a peer:
//! * held by this process (a worker) → written here;
//! * held by another worker → relayed to it ([`crate::tcp_relay`]), so a
//!   reply a UDP receiver relays, or a request another worker forwards, goes
//!   out on the client's own connection (RFC 3261 §18.2.2), also when the
//!   client connected from a port other than its Via port: the Via sent-by
//!   is an alias of the connection ([`add_alias`]);
//! * held by no one → opened: by this worker, or by one worker asked to
//!   (SER's tcp main does it), so the peer's answers are read.
//!
//! Writes never stall the worker (SER's `tcp_async`): a connect runs
//! non-blocking and the message waits in the connection's queue until it
//! completes (or `tcp_connect_timeout` gives up on it); what the socket
//! does not take at once waits too, at most `tcp_conn_wq_max` bytes, and a
//! queue that makes no progress for `tcp_send_timeout` closes the
//! connection. The worker's loop drives the queues ([`drive`]).
//!
//! Outside a forked server (unit tests, `-D` without workers) a process
//! opens and writes its connections itself, blocking within the timeouts.
//!
//! Core parameters: `tcp_connection_lifetime`, `tcp_max_connections`,
//! `tcp_connect_timeout`, `tcp_send_timeout`, `tcp_conn_wq_max`,
//! `tcp_async`, `tcp_keepalive`/`tcp_keepidle`/`tcp_keepintvl`/`tcp_keepcnt`
//! and `tcp_poll_method` are honoured ([`TcpConfig`]). The Via sent-by of
//! every request on a connection becomes an alias of it, whatever
//! `tcp_accept_aliases` says (SER needs it or `force_tcp_alias`; the
//! alias only ever names the client's own address). Accepted without
//! effect: `tcp_fd_cache` (there is no descriptor passing to cache),
//! `tcp_buf_write`, `tcp_wq_max` (queues are per connection),
//! `tcp_rd_buf_size`, `tcp_wq_blk_size`, `tcp_defer_accept`,
//! `tcp_delayed_ack`, `tcp_syncnt`, `tcp_linger2`, `tcp_crlf_ping`,
//! `tcp_accept_no_cl`, `tcp_no_connect`, `tcp_source_ipv4/6`.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::tcp_relay::{self, Op};

/// SER's `tcp_connect_timeout` default is 10 s; a queued message should
/// not wait that long, so ours is shorter.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a message may take to write before the connection is given up
/// (`tcp_send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// SER's `tcp_conn_wq_max` default: bytes queued on one connection.
pub const DEFAULT_WQ_MAX: usize = 32 * 1024;

/// How long a sender waits for the worker holding a connection to take a
/// message.
const RELAY_WAIT: Duration = Duration::from_millis(1500);

/// How long a sender waits for a new connection's connect before queueing
/// behind it: a refusal (a closed port on a near host) comes back at once as
/// the send's error, while a black hole costs only this once.
const CONNECT_QUICK: Duration = Duration::from_millis(50);

/// Aliases one connection may have (a client cycling Via ports cannot
/// fill the table).
const MAX_ALIASES: usize = 4;

/// TCP settings, fixed in main before the fork (the core `tcp_*`
/// parameters).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// TCP is enabled (a TCP socket is bound, no `-T`).
    pub enabled: bool,
    /// Connect timeout (`tcp_connect_timeout`).
    pub connect_timeout: Duration,
    /// Idle connections are dropped after this (`tcp_connection_lifetime`).
    pub lifetime: Duration,
    /// Most connections open at once, accepted and opened, over all workers
    /// (`tcp_max_connections`).
    pub max_connections: usize,
    /// A write queue that makes no progress this long closes its connection
    /// (`tcp_send_timeout`).
    pub send_timeout: Duration,
    /// Bytes one connection may queue (`tcp_conn_wq_max`).
    pub conn_wq_max: usize,
    /// Connect and write without blocking, queueing (`tcp_async`); false:
    /// the worker waits for the connect and the write, within the timeouts.
    pub async_send: bool,
    /// TCP keepalive on every connection (`tcp_keepalive`), with
    /// `tcp_keepidle`/`tcp_keepintvl`/`tcp_keepcnt` (None: the kernel's).
    pub keepalive: Option<Keepalive>,
    /// Accepted for SER configs (`tcp_accept_aliases`); Via aliases are
    /// always recorded.
    pub accept_aliases: bool,
    /// How the TCP loops wait (`-W`, `tcp_poll_method`).
    pub poll_method: crate::reactor::PollMethod,
    /// A message begun but not complete after this closes its connection
    /// (`tcp_msg_read_timeout`; slowloris clients).
    pub msg_read_timeout: Duration,
}

/// TCP keepalive timing (seconds; None = the kernel's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`tcp_keepidle`).
    pub idle: Option<u32>,
    /// Between probes (`tcp_keepintvl`).
    pub interval: Option<u32>,
    /// Probes before the connection is dropped (`tcp_keepcnt`).
    pub count: Option<u32>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            enabled: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            lifetime: crate::tcp::DEFAULT_LIFETIME,
            max_connections: crate::tcp::MAX_CONNECTIONS_PER_WORKER,
            send_timeout: SEND_TIMEOUT,
            conn_wq_max: DEFAULT_WQ_MAX,
            async_send: true,
            keepalive: None,
            accept_aliases: false,
            poll_method: crate::reactor::PollMethod::default(),
            msg_read_timeout: crate::tcp::MSG_READ_TIMEOUT,
        }
    }
}

static CONFIG: OnceLock<TcpConfig> = OnceLock::new();
thread_local! {
    /// This process is a TCP worker: it holds and reads connections. (Per
    /// thread: a worker is single-threaded, and unit tests run workers in
    /// threads beside plain senders.)
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
}
/// Serial part of connection ids (the pid is the other part).
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// Sets the TCP settings; the supervisor calls it once before forking
/// (later calls are ignored), so respawned children get them too.
pub fn configure(cfg: TcpConfig) {
    let _ = CONFIG.set(cfg);
}

/// The settings [`configure`] fixed (defaults before).
pub fn config() -> TcpConfig {
    CONFIG.get().cloned().unwrap_or_default()
}

pub(crate) fn mark_worker() {
    IS_WORKER.with(|w| w.set(true));
}

pub(crate) fn is_worker() -> bool {
    IS_WORKER.with(Cell::get)
}

fn new_id() -> u64 {
    (u64::from(std::process::id()) << 32) | (SERIAL.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

struct Entry {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    aliases: Vec<SocketAddr>,
    last_used: Instant,
    /// Connect started, not yet completed.
    connecting: Option<Instant>,
    /// Bytes waiting for the socket.
    queue: Vec<u8>,
    /// Last time the queue was empty or shrank.
    progress: Instant,
    /// Failed (write error, timeout): its worker closes it.
    dead: bool,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Entry>,
    /// Peer addresses and aliases.
    by_addr: HashMap<SocketAddr, u64>,
    /// Opened by this (worker) process, not yet polled by its loop.
    fresh: Vec<(u64, Arc<TcpStream>, SocketAddr)>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Table::default))
}

fn me() -> i32 {
    std::process::id() as i32
}

/// Turns on TCP keepalive as configured.
pub(crate) fn set_keepalive(s: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let Some(k) = config().keepalive else { return };
    let _ = setsockopt(s, sockopt::KeepAlive, &true);
    if let Some(v) = k.idle {
        let _ = setsockopt(s, sockopt::TcpKeepIdle, &v);
    }
    if let Some(v) = k.interval {
        let _ = setsockopt(s, sockopt::TcpKeepInterval, &v);
    }
    if let Some(v) = k.count {
        let _ = setsockopt(s, sockopt::TcpKeepCount, &v);
    }
}

/// Registers a connection this worker reads from (accepted or handed
/// over); its id.
pub(crate) fn register(stream: Arc<TcpStream>, peer: SocketAddr) -> u64 {
    let id = new_id();
    insert(id, stream, peer, None);
    id
}

fn insert(id: u64, stream: Arc<TcpStream>, peer: SocketAddr, connecting: Option<Instant>) {
    let now = Instant::now();
    with_table(|t| {
        t.by_addr.insert(peer, id);
        t.by_id.insert(
            id,
            Entry {
                stream,
                peer,
                aliases: Vec::new(),
                last_used: now,
                connecting,
                queue: Vec::new(),
                progress: now,
                dead: false,
            },
        );
    });
    if is_worker() {
        crate::tcp_table::insert(peer, id, me(), false);
    }
}

/// Forgets connection `id` and shuts it down.
pub(crate) fn unregister(id: u64) {
    let gone = with_table(|t| {
        let e = t.by_id.remove(&id)?;
        for a in std::iter::once(&e.peer).chain(&e.aliases) {
            if t.by_addr.get(a) == Some(&id) {
                t.by_addr.remove(a);
            }
        }
        Some(e)
    });
    if let Some(e) = gone {
        let _ = e.stream.shutdown(std::net::Shutdown::Both);
        for a in std::iter::once(&e.peer).chain(&e.aliases) {
            crate::tcp_table::remove(*a, id);
        }
    }
}

/// Connections this worker opened since the last call.
pub(crate) fn take_fresh() -> Vec<(u64, Arc<TcpStream>, SocketAddr)> {
    with_table(|t| std::mem::take(&mut t.fresh))
}

/// When connection `id` was last read or written through this table.
pub(crate) fn last_used(id: u64) -> Option<Instant> {
    with_table(|t| t.by_id.get(&id).map(|e| e.last_used))
}

/// Records that `alias` (e.g. the Via sent-by of a request that came in on
/// the connection from `peer`) names the same connection.
pub fn add_alias(alias: SocketAddr, peer: SocketAddr) {
    if alias == peer {
        return;
    }
    let id = with_table(|t| {
        let id = *t.by_addr.get(&peer)?;
        if t.by_addr.get(&alias) == Some(&id) {
            return None;
        }
        let e = t.by_id.get_mut(&id)?;
        if e.aliases.len() >= MAX_ALIASES {
            return None;
        }
        e.aliases.push(alias);
        t.by_addr.insert(alias, id);
        Some(id)
    });
    if let (Some(id), true) = (id, is_worker()) {
        crate::tcp_table::insert(alias, id, me(), true);
    }
}

/// Whether a connection to `dst` (or an alias of it) is held, by this
/// process or, in a forked server, by any worker.
pub fn has_connection(dst: SocketAddr) -> bool {
    local_id(dst).is_some() || crate::tcp_table::find(dst).is_some()
}

/// Every connection the workers hold: `(peer address or alias, connection
/// id, worker pid, is an alias)`.
pub fn list_all() -> Vec<(SocketAddr, u64, i32, bool)> {
    crate::tcp_table::all()
        .into_iter()
        .map(|s| (s.addr, s.id, s.owner, s.alias))
        .collect()
}

fn local_id(dst: SocketAddr) -> Option<u64> {
    let lifetime = config().lifetime;
    with_table(|t| {
        let id = *t.by_addr.get(&dst)?;
        let e = t.by_id.get(&id)?;
        if e.dead {
            return None;
        }
        if !is_worker() && e.last_used.elapsed() > lifetime {
            // a connection no one read for this long may be gone
            let peer = e.peer;
            t.by_id.remove(&id);
            t.by_addr.retain(|_, v| *v != id);
            log::debug!("tcp: dropping idle connection to {peer}");
            return None;
        }
        Some(id)
    })
}

/// Marks connection `id` failed: no longer found, shut down, closed by its
/// worker's loop.
fn fail(id: u64, why: &dyn std::fmt::Display) {
    let e = with_table(|t| {
        let e = t.by_id.get_mut(&id)?;
        e.dead = true;
        e.queue.clear();
        let names: Vec<SocketAddr> = std::iter::once(e.peer).chain(e.aliases.clone()).collect();
        for a in &names {
            if t.by_addr.get(a) == Some(&id) {
                t.by_addr.remove(a);
            }
        }
        Some((e.stream.clone(), names))
    });
    if let Some((stream, names)) = e {
        log::info!("tcp: connection to {} failed: {why}", names[0]);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        for a in names {
            crate::tcp_table::remove(a, id);
        }
    }
}

/// Writes all of `buf` within `limit`, whatever the socket's blocking mode.
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

/// Writes what the socket takes now; the rest of `buf`.
fn write_some<'a>(stream: &TcpStream, mut buf: &'a [u8]) -> io::Result<&'a [u8]> {
    let mut w = stream;
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "connection closed")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// Writes one whole message on connection `id` that this process holds:
/// at once, or queued behind what waits (a connect, earlier bytes).
pub(crate) fn write(id: u64, buf: &[u8]) -> io::Result<()> {
    let cfg = config();
    let r = with_table(|t| {
        let e = t
            .by_id
            .get_mut(&id)
            .filter(|e| !e.dead)
            .ok_or_else(|| io::Error::new(ErrorKind::NotConnected, "connection closed"))?;
        e.last_used = Instant::now();
        if !cfg.async_send || !is_worker() {
            // blocking within the send timeout (see the module doc)
            return write_all_timeout(&e.stream, buf, cfg.send_timeout);
        }
        let rest = if e.connecting.is_some() || !e.queue.is_empty() {
            buf
        } else {
            write_some(&e.stream, buf)?
        };
        if rest.is_empty() {
            return Ok(());
        }
        if e.queue.len() + rest.len() > cfg.conn_wq_max {
            return Err(io::Error::new(
                ErrorKind::WouldBlock,
                format!(
                    "write queue to {} full ({} bytes, tcp_conn_wq_max)",
                    e.peer,
                    e.queue.len()
                ),
            ));
        }
        if e.queue.is_empty() {
            e.progress = Instant::now();
        }
        e.queue.extend_from_slice(rest);
        Ok(())
    });
    if let Err(e) = &r {
        if e.kind() != ErrorKind::NotConnected {
            fail(id, e);
        }
    }
    r
}

/// Whether a connect or a write queue waits (the worker then polls often).
pub(crate) fn has_pending() -> bool {
    with_table(|t| {
        t.by_id
            .values()
            .any(|e| !e.dead && (e.connecting.is_some() || !e.queue.is_empty()))
    })
}

/// Advances connects and write queues: connections whose connect completed
/// get their queue written, stalled ones fail. The worker's loop calls it
/// each round.
pub(crate) fn drive() {
    let cfg = config();
    let waiting: Vec<(u64, Arc<TcpStream>)> = with_table(|t| {
        t.by_id
            .iter()
            .filter(|(_, e)| !e.dead && (e.connecting.is_some() || !e.queue.is_empty()))
            .map(|(id, e)| (*id, e.stream.clone()))
            .collect()
    });
    if waiting.is_empty() {
        return;
    }
    let mut fds: Vec<PollFd<'_>> = waiting
        .iter()
        .map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLOUT))
        .collect();
    if poll(&mut fds, PollTimeout::ZERO).is_err() {
        return;
    }
    let writable: Vec<bool> = fds
        .iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect();
    drop(fds);
    let now = Instant::now();
    for ((id, stream), ready) in waiting.iter().zip(writable) {
        let outcome: Result<(), String> = with_table(|t| {
            let Some(e) = t.by_id.get_mut(id) else {
                return Ok(());
            };
            if let Some(since) = e.connecting {
                if !ready {
                    return if now.duration_since(since) >= cfg.connect_timeout {
                        Err(format!(
                            "connect timed out after {} ms (tcp_connect_timeout)",
                            cfg.connect_timeout.as_millis()
                        ))
                    } else {
                        Ok(())
                    };
                }
                match stream.take_error() {
                    Ok(None) => {
                        log::debug!("tcp: connected to {}", e.peer);
                        e.connecting = None;
                        e.progress = now;
                    }
                    Ok(Some(err)) | Err(err) => return Err(format!("connect: {err}")),
                }
            }
            if e.queue.is_empty() {
                return Ok(());
            }
            if ready {
                let before = e.queue.len();
                let left = write_some(stream, &e.queue)
                    .map_err(|e| e.to_string())?
                    .len();
                e.queue.drain(..before - left);
                if left < before {
                    e.progress = now;
                }
            }
            if !e.queue.is_empty() && now.duration_since(e.progress) >= cfg.send_timeout {
                return Err(format!(
                    "{} bytes not sent within {} ms (tcp_send_timeout)",
                    e.queue.len(),
                    cfg.send_timeout.as_millis()
                ));
            }
            Ok(())
        });
        if let Err(why) = outcome {
            fail(*id, &why);
        }
    }
}

/// Whether connection `id` has failed (its worker closes it).
pub(crate) fn is_dead(id: u64) -> bool {
    with_table(|t| t.by_id.get(&id).is_none_or(|e| e.dead))
}

/// Starts a connect to `dst` waiting at most [`CONNECT_QUICK`]: the socket,
/// and whether it is connected. Errors known by then (refused,
/// unreachable) come back here.
fn connect_nonblocking(dst: SocketAddr) -> io::Result<(TcpStream, bool)> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = SockaddrStorage::from(dst);
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => return Ok((TcpStream::from(fd), true)),
        Err(nix::errno::Errno::EINPROGRESS) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let ms = u8::try_from(CONNECT_QUICK.as_millis()).unwrap_or(u8::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    let done = matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0);
    let stream = TcpStream::from(fd);
    if done {
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, done))
}

/// Opens a connection to `dst` held by this worker and queues `buf` on it.
fn open_here(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let cfg = config();
    if !crate::tcp::live_reserve(cfg.max_connections) {
        return Err(io::Error::other(format!(
            "{} tcp connections open (tcp_max_connections)",
            cfg.max_connections
        )));
    }
    let opened = if cfg.async_send {
        connect_nonblocking(dst)
    } else {
        TcpStream::connect_timeout(&dst, cfg.connect_timeout).map(|s| (s, true))
    };
    let (stream, done) = match opened {
        Ok(s) => s,
        Err(e) => {
            crate::tcp::live_release();
            return Err(e);
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_nonblocking(true);
    set_keepalive(&stream);
    let stream = Arc::new(stream);
    let id = new_id();
    let now = Instant::now();
    insert(id, stream.clone(), dst, (!done).then_some(now));
    with_table(|t| t.fresh.push((id, stream, dst)));
    write(id, buf)
}

/// A worker's answer to a relayed request ([`crate::tcp_relay`]).
pub(crate) fn relayed(op: Op, id: u64, dst: SocketAddr, buf: &[u8]) -> bool {
    let held = with_table(|t| {
        t.by_id
            .get(&id)
            .filter(|e| !e.dead)
            .map(|_| id)
            .or_else(|| t.by_addr.get(&dst).copied())
    });
    let r = match (held, op) {
        (Some(id), _) => write(id, buf),
        (None, Op::Send) => return false,
        (None, Op::Open) => open_here(dst, buf),
    };
    match r {
        Ok(()) => true,
        Err(e) => {
            log::info!("tcp: relayed send to {dst}: {e}");
            false
        }
    }
}

/// Sends one whole SIP message to `dst` over TCP: on the connection this
/// process or another worker holds to it (by peer address or alias), else on
/// a new one (see the module doc).
pub fn send(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let cfg = config();
    if !cfg.enabled {
        return Err(io::Error::new(
            ErrorKind::Unsupported,
            "tcp is disabled (no tcp socket, or -T)",
        ));
    }
    if let Some(id) = local_id(dst) {
        match write(id, buf) {
            Ok(()) => return Ok(()),
            Err(e) => log::debug!("tcp: connection to {dst} failed ({e}); reconnecting"),
        }
    }
    if !tcp_relay::available() {
        return if is_worker() {
            open_here(dst, buf)
        } else {
            open_blocking(dst, buf, &cfg)
        };
    }
    // held by another worker; a stale name (its worker died, or closed it
    // meanwhile) is dropped and the next one tried
    for _ in 0..4 {
        let Some(slot) = crate::tcp_table::find(dst) else {
            break;
        };
        if slot.owner == me() {
            crate::tcp_table::remove(slot.addr, slot.id);
            continue;
        }
        match tcp_relay::ask(slot.owner, Op::Send, slot.id, dst, buf, RELAY_WAIT) {
            Ok(true) => return Ok(()),
            Ok(false) => crate::tcp_table::remove(slot.addr, slot.id),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                log::debug!("tcp: worker {} holding {dst} is gone", slot.owner);
                crate::tcp_table::remove(slot.addr, slot.id);
            }
            Err(e) => return Err(e),
        }
    }
    if is_worker() {
        return open_here(dst, buf);
    }
    let Some(pid) = tcp_relay::opener(dst) else {
        return open_blocking(dst, buf, &cfg);
    };
    // the worker only starts the connect: this process does not wait for it
    match tcp_relay::ask(pid, Op::Open, 0, dst, buf, RELAY_WAIT)? {
        true => Ok(()),
        false => Err(io::Error::new(
            ErrorKind::ConnectionRefused,
            format!("tcp: cannot connect to {dst}"),
        )),
    }
}

/// Outside a forked server: connect here, within the connect timeout.
fn open_blocking(dst: SocketAddr, buf: &[u8], cfg: &TcpConfig) -> io::Result<()> {
    let count = with_table(|t| t.by_id.len());
    if count >= cfg.max_connections {
        return Err(io::Error::other(format!(
            "too many tcp connections ({count}, tcp_max_connections)"
        )));
    }
    let stream = TcpStream::connect_timeout(&dst, cfg.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    set_keepalive(&stream);
    write_all_timeout(&stream, buf, cfg.send_timeout)?;
    register(Arc::new(stream), dst);
    Ok(())
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
    fn a_worker_queues_what_the_socket_does_not_take_and_drives_it_out() {
        mark_worker();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        // the peer does not read yet: the kernel's buffers fill, then the
        // worker's queue takes the rest
        for _ in 0..2000 {
            send(addr, &chunk).unwrap();
            sent += chunk.len();
            if has_pending() {
                break;
            }
        }
        assert!(
            has_pending(),
            "the socket took {sent} bytes without queueing"
        );
        let (mut c, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while total < sent {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
            total
        });
        let end = Instant::now() + Duration::from_secs(5);
        while has_pending() && Instant::now() < end {
            drive();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!has_pending());
        assert_eq!(reader.join().unwrap(), sent);
        assert!(local_id(addr).is_some(), "the connection is still usable");
    }

    #[test]
    fn refused_connect_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(send(addr, b"x").is_err());
        assert!(connect_nonblocking(addr).is_err(), "refused at once on lo");
    }
}
