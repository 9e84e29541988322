//! TLS over the TCP machinery (SER/Kamailio's `tls` module transport), on
//! rustls with the `ring` provider.
//!
//! Profiles (certificate, key, CA list, verification, method) are built in
//! main before the fork ([`configure`]); every child inherits them. A TLS
//! connection lives in the TCP worker that accepted or opened it: its rustls
//! state machine is driven from the worker's poll loop (non-blocking, so a
//! stalled handshake ties up nothing but its own slot, and it is closed after
//! the handshake timeout). Each process keeps a table of the TLS connections
//! it holds, by peer and alias, so replies and forwards to a peer go out on
//! its connection, as for TCP ([`crate::tcp_conn`]). A process that is not a
//! TCP worker (a UDP receiver, the timer) hands its message to the worker
//! holding the peer's session, or has one open it ([`crate::tls_relay`]). A
//! worker opens a connection without blocking: a connector thread connects
//! while the message waits, then the poll loop drives the handshake
//! (`connect_in_background`). Only a server without TCP workers (tests)
//! connects and handshakes in place, within the connect timeout.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, Connection, ServerConfig};

pub use crate::tls_profile::{
    client_config, parse_tls_cfg, server_config, Method, NameMode, Profile, Scope, Section,
};

/// Kamailio's default `tls_handshake_timeout` (seconds... it has 30; a
/// stalled client should not hold a slot that long).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The built profiles, inherited by every child.
pub struct Profiles {
    server_default: Option<Arc<ServerConfig>>,
    servers: HashMap<SocketAddr, Arc<ServerConfig>>,
    client_default: Arc<ClientConfig>,
    clients: HashMap<SocketAddr, Arc<ClientConfig>>,
    client_names: HashMap<SocketAddr, String>,
    /// What `tls.info` and logs say about the profiles.
    pub summary: Vec<String>,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// How long one send may wait for room (`send_timeout`).
    pub send_timeout: Duration,
    /// Connect + handshake timeout for outgoing connections.
    pub connect_timeout: Duration,
}

impl fmt::Debug for Profiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiles")
            .field("summary", &self.summary)
            .finish()
    }
}

static PROFILES: OnceLock<Profiles> = OnceLock::new();

/// Builds every profile from the module parameters (`base`, file names
/// already resolved) and an optional tls.cfg (its relative file names are
/// resolved against `cfg_dir`, the main config file's directory); main
/// calls it once before forking. `tls_listen`: the bound TLS sockets.
pub fn configure(
    base: &Profile,
    tls_cfg: Option<&Path>,
    cfg_dir: &Path,
    tls_listen: &[SocketAddr],
    handshake_timeout: Duration,
    send_timeout: Duration,
) -> Result<(), String> {
    let mut sections = vec![
        Section {
            scope: Scope::ServerDefault,
            profile: base.clone(),
            line: 0,
        },
        Section {
            scope: Scope::ClientDefault,
            profile: base.clone(),
            line: 0,
        },
    ];
    let mut origin = String::from("tls");
    if let Some(f) = tls_cfg {
        origin = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| format!("tls config {origin}: {e}"))?;
        let parsed = parse_tls_cfg(&text, &Profile::default()).map_err(|e| {
            // `line N: ...` -> `file:N: ...`
            match e.strip_prefix("line ") {
                Some(rest) => format!("{origin}:{rest}"),
                None => format!("{origin}: {e}"),
            }
        })?;
        // a section in the file replaces the module parameters' defaults
        for mut s in parsed {
            s.profile.resolve_paths(cfg_dir);
            if s.profile.server_name.is_none() {
                sections.retain(|o| o.line != 0 || o.scope != s.scope);
            }
            sections.push(s);
        }
    }
    let b = crate::tls_profile::build(&sections, &origin, tls_listen)?;
    let profiles = Profiles {
        server_default: b.server_default,
        servers: b.servers,
        client_default: b.client_default,
        clients: b.clients,
        client_names: b.client_names,
        summary: b.summary,
        handshake_timeout,
        send_timeout,
        connect_timeout: crate::tcp_conn::DEFAULT_CONNECT_TIMEOUT,
    };
    PROFILES
        .set(profiles)
        .map_err(|_| "tls configured twice".to_string())
}

/// The profiles, once [`configure`]d.
pub fn profiles() -> Option<&'static Profiles> {
    PROFILES.get()
}

/// A new server-side session for a connection accepted on `local`.
pub fn accept(local: SocketAddr) -> Option<Connection> {
    let p = PROFILES.get()?;
    let cfg = p.servers.get(&local).or(p.server_default.as_ref())?;
    match rustls::ServerConnection::new(cfg.clone()) {
        Ok(c) => Some(c.into()),
        Err(e) => {
            log::error!("tls: new server session: {e}");
            None
        }
    }
}

/// A TLS connection this process holds.
pub struct TlsConn {
    /// The TCP connection under it.
    pub stream: Arc<TcpStream>,
    /// The session; one process, so the lock is never contended.
    pub session: Mutex<Connection>,
    /// The peer.
    pub peer: SocketAddr,
    /// When it was accepted/opened (handshake timeout).
    pub started: Instant,
}

impl TlsConn {
    /// Wraps an accepted or opened stream.
    pub fn new(stream: Arc<TcpStream>, session: Connection, peer: SocketAddr) -> TlsConn {
        TlsConn {
            stream,
            session: Mutex::new(session),
            peer,
            started: Instant::now(),
        }
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Still handshaking.
    pub fn handshaking(&self) -> bool {
        self.session().is_handshaking()
    }

    /// Reads what the socket has (non-blocking), appending plaintext to
    /// `out`; answers the handshake. False when the connection is finished
    /// (EOF, error, TLS alert or garbage).
    pub fn read_into(&self, out: &mut Vec<u8>, chunk: &mut [u8]) -> bool {
        let mut s = self.session();
        loop {
            match s.read_tls(&mut &*self.stream) {
                Ok(0) => return false,
                Ok(_) => {
                    if let Err(e) = s.process_new_packets() {
                        log::info!("tls: {} : {e}; closing", self.peer);
                        // tell the peer why (an alert), best effort
                        let _ = flush(&mut s, &self.stream, Duration::from_millis(100));
                        return false;
                    }
                    loop {
                        match s.reader().read(chunk) {
                            Ok(0) => return false, // close_notify
                            Ok(n) => out.extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => return false,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        flush(&mut s, &self.stream, send_timeout()).is_ok()
    }

    /// Encrypts and sends one whole message (bounded by the send timeout).
    pub fn send(&self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.session();
        s.writer().write_all(buf)?;
        flush(&mut s, &self.stream, send_timeout())
    }

    /// The negotiated version and cipher suite, for `tls.list`.
    pub fn describe(&self) -> (String, String) {
        let s = self.session();
        (
            s.protocol_version()
                .map_or("-".into(), |v| format!("{v:?}")),
            s.negotiated_cipher_suite()
                .map_or("-".into(), |c| format!("{:?}", c.suite())),
        )
    }
}

fn send_timeout() -> Duration {
    PROFILES
        .get()
        .map_or(crate::tcp_conn::SEND_TIMEOUT, |p| p.send_timeout)
}

/// Writes the session's pending records, waiting for room within `limit`.
fn flush(s: &mut Connection, stream: &TcpStream, limit: Duration) -> io::Result<()> {
    let end = Instant::now() + limit;
    while s.wants_write() {
        match s.write_tls(&mut &*stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(ErrorKind::TimedOut, "tls send timed out"));
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

#[derive(Default)]
struct Table {
    by_peer: HashMap<SocketAddr, Arc<TlsConn>>,
    aliases: HashMap<SocketAddr, SocketAddr>,
    /// Opened by this worker, not yet polled by its loop.
    fresh: Vec<Arc<TlsConn>>,
    /// Outgoing connections still connecting (in a connector thread of
    /// this worker), with the messages waiting for them.
    connecting: HashMap<SocketAddr, Vec<Vec<u8>>>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Table::default))
}

/// Registers a connection this worker reads.
pub(crate) fn register(c: Arc<TlsConn>) {
    with_table(|t| {
        t.by_peer.insert(c.peer, c);
    });
}

/// Forgets a connection and shuts it down (after a close_notify).
pub(crate) fn unregister(c: &TlsConn) {
    {
        let mut s = c.session();
        if !s.is_handshaking() {
            s.send_close_notify();
            let _ = flush(&mut s, &c.stream, Duration::from_millis(50));
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    with_table(|t| {
        if t.by_peer
            .get(&c.peer)
            .is_some_and(|e| Arc::ptr_eq(&e.stream, &c.stream))
        {
            t.by_peer.remove(&c.peer);
        }
        t.aliases.retain(|_, p| *p != c.peer);
    });
}

pub(crate) fn take_fresh() -> Vec<Arc<TlsConn>> {
    with_table(|t| std::mem::take(&mut t.fresh))
}

/// `alias` (a Via sent-by) names the connection from `peer`.
pub fn add_alias(alias: SocketAddr, peer: SocketAddr) {
    if alias != peer {
        with_table(|t| {
            if t.by_peer.contains_key(&peer) {
                t.aliases.insert(alias, peer);
            }
        });
    }
}

fn lookup(dst: SocketAddr) -> Option<Arc<TlsConn>> {
    with_table(|t| {
        let peer = if t.by_peer.contains_key(&dst) {
            dst
        } else {
            *t.aliases.get(&dst)?
        };
        t.by_peer.get(&peer).cloned()
    })
}

/// `(peer, version, cipher)` of the connections this process holds.
pub fn list() -> Vec<(SocketAddr, String, String)> {
    let conns: Vec<Arc<TlsConn>> = with_table(|t| t.by_peer.values().cloned().collect());
    conns
        .iter()
        .map(|c| {
            let (v, s) = c.describe();
            (c.peer, v, s)
        })
        .collect()
}

/// Sends one whole SIP message to `dst` over TLS: on the connection this
/// process holds to it, else on a new client connection (handshake bounded
/// by the connect timeout).
///
/// In a TCP worker the connect and handshake never block: a message to a
/// new peer waits while a connector thread connects (see
/// [`connect_in_background`]); an error then is only logged.
pub fn send(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let p = PROFILES.get().ok_or_else(|| {
        io::Error::new(
            ErrorKind::Unsupported,
            "tls is not enabled (enable_tls, loadmodule \"tls\")",
        )
    })?;
    if !crate::tcp_conn::is_worker() && lookup(dst).is_none() && crate::tls_relay::available() {
        // the session lives in a TCP worker (crate::tls_relay)
        return crate::tls_relay::send(dst, buf);
    }
    if let Some(c) = lookup(dst) {
        match c.send(buf) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::debug!("tls: connection to {dst} failed ({e}); reconnecting");
                unregister(&c);
            }
        }
    }
    if crate::tcp_conn::is_worker() {
        connect_in_background(p, dst, buf);
        return Ok(());
    }
    let c = Arc::new(connect(p, dst)?);
    c.send(buf)?;
    register(c);
    Ok(())
}

/// Sends on a connection this process holds to `dst`, if any.
pub(crate) fn send_if_held(dst: SocketAddr, buf: &[u8]) -> bool {
    let Some(c) = lookup(dst) else {
        // still connecting here: the message waits with the others
        return with_table(|t| {
            t.connecting
                .get_mut(&dst)
                .map(|q| q.push(buf.to_vec()))
                .is_some()
        });
    };
    match c.send(buf) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("tls: connection to {dst} failed ({e})");
            unregister(&c);
            false
        }
    }
}

/// How many connector threads a worker runs at once; more new peers wait
/// for a slot (their messages queue, nothing blocks).
const MAX_CONNECTORS: usize = 16;

static CONNECTORS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A TCP worker's send to a peer it has no connection to: the message
/// waits in the table while a connector thread connects (a peer that never
/// answers the SYN blocks only that thread, for the connect timeout) and
/// starts the handshake; the worker's poll loop then drives the handshake
/// and rustls sends the waiting messages once it is done.
fn connect_in_background(p: &'static Profiles, dst: SocketAddr, buf: &[u8]) {
    use std::sync::atomic::Ordering;
    let first = with_table(|t| {
        let q = t.connecting.entry(dst).or_default();
        q.push(buf.to_vec());
        q.len() == 1
    });
    if !first {
        return; // a connector for dst is already under way
    }
    let spawn = || {
        if CONNECTORS.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTORS {
            CONNECTORS.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::new(
                ErrorKind::WouldBlock,
                "too many connections being opened",
            ));
        }
        std::thread::Builder::new()
            .name("tls-connect".into())
            .spawn(move || {
                finish_connect(p, dst);
                CONNECTORS.fetch_sub(1, Ordering::Relaxed);
            })
            .map(drop)
            .inspect_err(|_| {
                CONNECTORS.fetch_sub(1, Ordering::Relaxed);
            })
    };
    if let Err(e) = spawn() {
        log::info!("tls: connection to {dst} not opened: {e}");
        with_table(|t| t.connecting.remove(&dst));
    }
}

/// The connector thread's work: connect, queue the waiting messages in a
/// new session, send the ClientHello, and hand the connection to the
/// worker's loop (woken through its relay inbox).
fn finish_connect(p: &Profiles, dst: SocketAddr) {
    let c = match start_client(p, dst) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let lost = with_table(|t| t.connecting.remove(&dst)).map_or(0, |q| q.len());
            log::info!("tls: connect to {dst}: {e}; {lost} message(s) dropped");
            return;
        }
    };
    // under the table lock, so a send racing with us either queued its
    // message already or finds the registered connection
    with_table(|t| {
        let waiting = t.connecting.remove(&dst).unwrap_or_default();
        {
            let mut s = c.session();
            for m in &waiting {
                // buffered by rustls until the handshake is done
                let _ = s.writer().write_all(m);
            }
            // the ClientHello; the socket is fresh, so this does not wait
            let _ = flush(&mut s, &c.stream, Duration::from_millis(100));
        }
        t.by_peer.insert(c.peer, c.clone());
        t.fresh.push(c);
    });
    crate::tls_relay::wake_self();
}

/// Opens a TCP connection to `dst` and starts a client session on it (the
/// ClientHello is queued, not yet sent).
fn start_client(p: &Profiles, dst: SocketAddr) -> io::Result<TlsConn> {
    let cfg = p.clients.get(&dst).unwrap_or(&p.client_default).clone();
    let name = match p.client_names.get(&dst) {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?,
        None => ServerName::IpAddress(dst.ip().into()),
    };
    let session = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
    let stream = TcpStream::connect_timeout(&dst, p.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    stream.set_nonblocking(true)?;
    Ok(TlsConn::new(Arc::new(stream), session.into(), dst))
}

/// Opens a client connection to `dst` and completes the handshake (a
/// process without a poll loop to drive it).
fn connect(p: &Profiles, dst: SocketAddr) -> io::Result<TlsConn> {
    let end = Instant::now() + p.connect_timeout;
    let c = start_client(p, dst)?;
    let mut scratch = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        {
            let mut s = c.session();
            flush(&mut s, &c.stream, p.connect_timeout)?;
            if !s.is_handshaking() {
                break;
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "tls handshake timed out",
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !c.read_into(&mut scratch, &mut chunk) {
            return Err(io::Error::new(
                ErrorKind::ConnectionAborted,
                format!("tls handshake with {dst} failed"),
            ));
        }
    }
    Ok(c)
}
