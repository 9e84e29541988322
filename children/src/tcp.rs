//! TCP: tcp main and its workers (the shape of SER's `tcp_main.c` and
//! `tcp_read.c`).
//!
//! tcp main owns the listening sockets; it accepts each connection and hands
//! it to a worker (round robin) over a unix socketpair with SCM_RIGHTS,
//! together with the index of the listen socket. A worker polls its link
//! and its connections, reads, frames SIP messages with `ser_sip::frame_stream` and
//! calls the handler; replies go back on the same connection. Unlike SER a
//! worker keeps its connections until they close (no hand-back to tcp main).
//! Sending from any process goes through [`crate::tcp_conn`]: a worker
//! writes the connections it holds (and opens new ones), other processes
//! relay to the holder ([`crate::tcp_relay`]).

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use ser_sip::{frame_stream, Framing};

use crate::handler::{SipHandler, StreamReply};
use crate::reactor::Reactor;
use crate::socket::{ListenSocket, Proto};
use crate::tls::TlsConn;

/// SER's default `tcp_connection_lifetime`: an idle connection is closed
/// after this long.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);

/// Most connections one worker holds; more are refused (closed at once).
pub const MAX_CONNECTIONS_PER_WORKER: usize = 2048;

/// How often blocked loops look at their stop flag.
const STOP_POLL_MS: u16 = 250;

/// Connections tcp main handed to workers and not yet closed, over all
/// workers (in shm once [`init_live_count`] ran; else this process's).
static LIVE: OnceLock<&'static AtomicUsize> = OnceLock::new();
static LIVE_LOCAL: AtomicUsize = AtomicUsize::new(0);

/// Puts the live connection count in shared memory (main, before the fork)
/// so tcp main sees the workers' closes.
pub fn init_live_count() {
    if ser_shm::is_initialized() {
        if let Ok(b) = ser_shm::ShmBox::new(AtomicUsize::new(0)) {
            let _ = LIVE.set(ser_shm::ShmBox::leak(b));
        }
    }
}

fn live() -> &'static AtomicUsize {
    LIVE.get().copied().unwrap_or(&LIVE_LOCAL)
}

/// A counted connection is gone.
fn live_done() {
    let _ = live().fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// Counts a connection about to be opened, unless `max` are open.
pub(crate) fn live_reserve(max: usize) -> bool {
    live()
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// TCP connections open now, accepted and opened, over all workers.
pub fn open_connections() -> usize {
    live().load(Ordering::Acquire)
}

/// `n` counted connections went away with a worker that died.
pub(crate) fn live_forget(n: usize) {
    let _ = live().fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
        Some(c.saturating_sub(n))
    });
}

/// An opened connection counted by [`live_reserve`] did not come to be.
pub(crate) fn live_release() {
    live_done();
}

/// Tokens of the fixed descriptors of the loops; connections count up from
/// [`FIRST_CONN_TOKEN`].
const LINK_TOKEN: u64 = 0;
const INBOX_TOKEN: u64 = 1;
const RELAY_TOKEN: u64 = u64::MAX - 1;
const FIRST_CONN_TOKEN: u64 = 2;

/// How long one message may take to arrive once its first bytes came
/// (Kamailio's `tcp_msg_read_timeout` default).
pub const MSG_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a worker looks at pending connects and write queues.
const PENDING_POLL_MS: u16 = 5;

fn reactor() -> Option<Reactor> {
    let method = crate::tcp_conn::config().poll_method;
    match Reactor::new(method) {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("tcp: cannot set up poll method {}: {e}", method.name());
            None
        }
    }
}

/// tcp main: accepts on every TCP socket and passes connections to the
/// workers until `stop` is set.
pub fn main_loop(sockets: &[ListenSocket], workers: Vec<UnixStream>, stop: &AtomicBool) {
    let listeners: Vec<(usize, &ListenSocket)> = sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_stream())
        .collect();
    for (_, s) in &listeners {
        if let Some(l) = s.tcp() {
            if let Err(e) = l.set_nonblocking(true) {
                log::error!("tcp main: nonblocking {s}: {e}");
            }
        }
    }
    if workers.is_empty() {
        log::error!("tcp main: no tcp workers");
    }
    let Some(mut reactor) = reactor() else { return };
    let max = crate::tcp_conn::config().max_connections;
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let fds: Vec<(u64, std::os::fd::BorrowedFd<'_>)> = listeners
            .iter()
            .filter_map(|(i, s)| Some((*i as u64 + FIRST_CONN_TOKEN, s.tcp()?.as_fd())))
            .collect();
        let ready = match reactor.wait(&fds, STOP_POLL_MS) {
            Ok(r) if r.iter().any(|r| *r) => r,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("tcp main: {}: {e}", reactor.method().name());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        drop((fds, ready));
        for (index, s) in &listeners {
            let Some(l) = s.tcp() else { continue };
            loop {
                match l.accept() {
                    Ok((conn, peer)) => {
                        if workers.is_empty() {
                            break;
                        }
                        if !live_reserve(max) {
                            log::warn!(
                                "tcp main: {max} connections open (tcp_max_connections); \
                                 refusing {peer}"
                            );
                            continue;
                        }
                        let w = &workers[next % workers.len()];
                        next = next.wrapping_add(1);
                        // usize -> u32 index of a listen socket: there are at most a
                        // handful of sockets.
                        let idx = (*index as u32).to_ne_bytes();
                        if let Err(e) = send_fd(w, &idx, conn.as_raw_fd()) {
                            live_done();
                            log::error!("tcp main: passing connection from {peer}: {e}");
                        }
                        // Our copy closes here; the worker holds its own.
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::error!("tcp main: accept on {s}: {e}");
                        break;
                    }
                }
            }
        }
    }
}

fn send_fd(link: &UnixStream, data: &[u8], fd: RawFd) -> nix::Result<usize> {
    send_fd_raw(link.as_raw_fd(), data, fd)
}

/// Sends `data` with `fd` attached (SCM_RIGHTS) on the unix socket `link`.
fn send_fd_raw(link: RawFd, data: &[u8], fd: RawFd) -> nix::Result<usize> {
    let fds = [fd];
    sendmsg::<()>(
        link,
        &[IoSlice::new(data)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
}

/// Receives one passed connection: the listen socket index and the fd.
/// `Ok(None)` when tcp main closed the link.
fn recv_fd(link: RawFd) -> nix::Result<Option<(usize, OwnedFd)>> {
    let mut data = [0u8; 4];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(link, &mut iov, Some(&mut space), MsgFlags::empty())?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor in our
                // table for this message (SCM_RIGHTS); nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    let index = u32::from_ne_bytes(data) as usize;
    Ok(got.map(|fd| (index, fd)))
}

struct Conn {
    stream: Arc<TcpStream>,
    /// Its id in [`crate::tcp_conn`] (0 for TLS, whose table is its own).
    id: u64,
    peer: SocketAddr,
    sock: usize,
    buf: Vec<u8>,
    last_read: Instant,
    /// When the first bytes of the message not yet complete in `buf` came.
    msg_started: Option<Instant>,
    /// The TLS session of a connection on a TLS socket.
    tls: Option<Arc<TlsConn>>,
    /// Names this connection for the reactor for its whole life.
    token: u64,
    /// Counted in [`live`] (accepted by tcp main, or opened by a worker).
    counted: bool,
}

impl Conn {
    fn close(&self) {
        if self.counted {
            live_done();
        }
        match &self.tls {
            Some(t) => crate::tls::unregister(t),
            None => crate::tcp_conn::unregister(self.id),
        }
    }

    /// Idle for `lifetime`: neither read nor written.
    fn idle(&self, now: Instant, lifetime: Duration) -> bool {
        let used =
            crate::tcp_conn::last_used(self.id).map_or(self.last_read, |w| w.max(self.last_read));
        now.duration_since(used) >= lifetime
    }
}

struct Reply<'a>(u64, Option<&'a TlsConn>);

impl StreamReply for Reply<'_> {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(t) = self.1 {
            return t.send(bytes);
        }
        // written, or queued behind what the socket did not take yet
        crate::tcp_conn::write(self.0, bytes)
    }
}

/// A TCP worker: takes connections from tcp main and handles their messages
/// until `stop` is set. A connection idle for `lifetime` is closed.
pub fn worker_loop(
    sockets: &[ListenSocket],
    link: UnixStream,
    handler: &mut dyn SipHandler,
    lifetime: Duration,
    stop: &AtomicBool,
) {
    crate::tcp_conn::mark_worker();
    // other processes' sends on the TLS connections this worker holds
    let inbox = crate::tls::profiles().and_then(|_| crate::tls_relay::worker_inbox());
    // ... and on its TCP connections
    let relay = crate::tcp_relay::bind_inbox();
    let Some(mut reactor) = reactor() else { return };
    let mut serial = FIRST_CONN_TOKEN;
    let mut token = || {
        serial += 1;
        serial
    };
    let mut conns: Vec<Conn> = Vec::new();
    let mut link_open = true;
    let mut chunk = vec![0u8; 16 * 1024];
    // fixed before the fork: read once, not on every wake-up
    let handshake_timeout = crate::tls::profiles()
        .map_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT, |p| {
            p.handshake_timeout
        });
    let msg_read_timeout = crate::tcp_conn::config().msg_read_timeout;
    while !stop.load(Ordering::Relaxed) && (link_open || !conns.is_empty()) {
        crate::tcp_conn::drive();
        for (id, stream, peer) in crate::tcp_conn::take_fresh() {
            conns.push(Conn {
                stream,
                id,
                peer,
                sock: first_tcp(sockets, peer, Proto::Tcp),
                buf: Vec::new(),
                last_read: Instant::now(),
                msg_started: None,
                tls: None,
                token: token(),
                counted: true,
            });
        }
        for t in crate::tls::take_fresh() {
            conns.push(Conn {
                stream: t.stream.clone(),
                id: 0,
                peer: t.peer,
                sock: first_tcp(sockets, t.peer, Proto::Tls),
                buf: Vec::new(),
                last_read: Instant::now(),
                msg_started: None,
                tls: Some(t),
                token: token(),
                counted: false,
            });
        }
        let mut fds = Vec::with_capacity(conns.len() + 3);
        fds.push((LINK_TOKEN, link.as_fd()));
        fds.extend(conns.iter().map(|c| (c.token, c.stream.as_fd())));
        let inbox_at = fds.len();
        if let Some(i) = &inbox {
            fds.push((INBOX_TOKEN, i.as_fd()));
        }
        let relay_at = fds.len();
        if let Some(r) = relay {
            fds.push((RELAY_TOKEN, r.as_fd()));
        }
        let wait_ms = if crate::tcp_conn::has_pending() {
            PENDING_POLL_MS
        } else {
            STOP_POLL_MS
        };
        let polled = reactor.wait(&fds, wait_ms);
        let ready: Vec<bool> = match &polled {
            Ok(r) => r.clone(),
            Err(_) => vec![false; fds.len()],
        };
        drop(fds);
        let now = Instant::now();
        let before = conns.len();
        conns.retain(|c| {
            // A client that never finishes its handshake holds a slot only
            // this long.
            let stalled = c.tls.as_ref().is_some_and(|t| {
                t.handshaking() && now.duration_since(t.started) >= handshake_timeout
            });
            if stalled {
                log::info!("tls: handshake with {} timed out; closing", c.peer);
            }
            // a failed connect or write queue (crate::tcp_conn::drive)
            let failed = c.tls.is_none() && crate::tcp_conn::is_dead(c.id);
            // a peer trickling one message (slowloris) is not idle
            let slow = c
                .msg_started
                .is_some_and(|t| now.duration_since(t) >= msg_read_timeout);
            if slow {
                log::info!(
                    "tcp: no whole message from {} within {} s; closing",
                    c.peer,
                    msg_read_timeout.as_secs()
                );
            }
            let keep = !stalled && !failed && !slow && !c.idle(now, lifetime);
            if !keep {
                c.close();
            }
            keep
        });
        if conns.len() != before {
            // Indices moved; what is readable stays readable for the next
            // (level-triggered) poll.
            log::debug!(
                "tcp worker: closed {} idle or failed connections",
                before - conns.len()
            );
            continue;
        }
        match polled {
            Ok(r) if !r.iter().any(|r| *r) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("tcp worker: {}: {e}", reactor.method().name());
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        if let (Some(i), Some(true)) = (&inbox, ready.get(inbox_at)) {
            crate::tls_relay::serve_inbox(i);
        }
        if let (Some(_), Some(true)) = (relay, ready.get(relay_at)) {
            crate::tcp_relay::serve(crate::tcp_conn::relayed);
        }
        let mut closed = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if ready[i + 1] && !read_conn(c, sockets, handler, &mut chunk) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            conns.swap_remove(i).close();
        }
        if link_open && ready[0] {
            match recv_fd(link.as_raw_fd()) {
                Ok(Some((sock, fd))) => {
                    let stream = TcpStream::from(fd);
                    // replies are small writes: Nagle would hold each one
                    // back until the peer's delayed ACK
                    let _ = stream.set_nodelay(true);
                    crate::tcp_conn::set_keepalive(&stream);
                    match (stream.peer_addr(), stream.set_nonblocking(true)) {
                        (Ok(peer), _) if conns.len() >= MAX_CONNECTIONS_PER_WORKER => {
                            live_done();
                            log::warn!("tcp worker: too many connections, refusing {peer}")
                        }
                        (Ok(peer), Ok(())) if sock < sockets.len() => {
                            let stream = Arc::new(stream);
                            let mut id = 0;
                            let tls = if sockets[sock].proto() == Proto::Tls {
                                let Some(session) = crate::tls::accept(sockets[sock].addr()) else {
                                    log::warn!("tls: no server profile; dropping {peer}");
                                    live_done();
                                    continue;
                                };
                                let t = Arc::new(TlsConn::new(stream.clone(), session, peer));
                                crate::tls::register(t.clone());
                                Some(t)
                            } else {
                                id = crate::tcp_conn::register(stream.clone(), peer);
                                None
                            };
                            conns.push(Conn {
                                stream,
                                id,
                                peer,
                                sock,
                                buf: Vec::new(),
                                last_read: Instant::now(),
                                msg_started: None,
                                tls,
                                token: token(),
                                counted: true,
                            })
                        }
                        _ => {
                            live_done();
                            log::warn!("tcp worker: dropping unusable connection")
                        }
                    }
                }
                Ok(None) => link_open = false,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log::error!("tcp worker: receiving a connection: {e}");
                    link_open = false;
                }
            }
        }
    }
}

/// Index of the first `proto` listen socket of `peer`'s address family (what
/// an outgoing connection counts as having arrived on).
fn first_tcp(sockets: &[ListenSocket], peer: SocketAddr, proto: Proto) -> usize {
    sockets
        .iter()
        .position(|s| s.proto() == proto && s.addr().is_ipv4() == peer.is_ipv4())
        .or_else(|| sockets.iter().position(|s| s.proto() == proto))
        .or_else(|| sockets.iter().position(|s| s.is_stream()))
        .unwrap_or(0)
}

/// Reads what is available and handles complete messages; false when the
/// connection is finished (EOF, error, or not SIP).
fn read_conn(
    c: &mut Conn,
    sockets: &[ListenSocket],
    handler: &mut dyn SipHandler,
    chunk: &mut [u8],
) -> bool {
    if let Some(t) = &c.tls {
        let before = c.buf.len();
        if !t.read_into(&mut c.buf, chunk) {
            return false;
        }
        if c.buf.len() != before {
            c.last_read = Instant::now();
        }
    }
    while c.tls.is_none() {
        match (&*c.stream).read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                c.buf.extend_from_slice(&chunk[..n]);
                c.last_read = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // e.g. an outgoing connect refused after it was queued
                log::debug!("tcp: connection with {}: {e}", c.peer);
                return false;
            }
        }
    }
    loop {
        match frame_stream(&c.buf) {
            Framing::NeedMore => {
                c.msg_started = match c.msg_started {
                    _ if c.buf.is_empty() => None,
                    Some(t) => Some(t),
                    None => Some(Instant::now()),
                };
                return true;
            }
            Framing::Keepalive(n) => {
                c.buf.drain(..n);
            }
            Framing::Error(e) => {
                log::warn!("tcp: bad message framing from {}: {e}; closing", c.peer);
                return false;
            }
            Framing::Complete(n) => {
                c.msg_started = None;
                let msg: Vec<u8> = c.buf.drain(..n).collect();
                let sock = &sockets[c.sock];
                log::trace!("tcp: message of {n} bytes from {} on {sock}", c.peer);
                let peer = c.peer;
                let mut reply = Reply(c.id, c.tls.as_deref());
                let r = catch_unwind(AssertUnwindSafe(|| {
                    handler.on_stream_message(&msg, peer, sock, &mut reply)
                }));
                if r.is_err() {
                    log::error!("handler panicked on a tcp message from {peer}; dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fd_passing_over_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        send_fd(&a, &7u32.to_ne_bytes(), srv.as_raw_fd()).unwrap();
        drop(srv);
        let (idx, fd) = recv_fd(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(idx, 7);
        let mut got = TcpStream::from(fd);
        (&client).write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        got.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }

    struct Echo;
    impl SipHandler for Echo {
        fn on_datagram(&mut self, _: &[u8], _: SocketAddr, _: &ListenSocket) {}
        fn on_stream_message(
            &mut self,
            msg: &[u8],
            _src: SocketAddr,
            _sock: &ListenSocket,
            reply: &mut dyn StreamReply,
        ) {
            reply
                .send(format!("got {}\n", msg.len()).as_bytes())
                .unwrap();
        }
    }

    #[test]
    fn tcp_main_hands_connections_to_a_worker_that_replies() {
        use std::sync::Arc;
        let sockets = Arc::new(vec![
            ListenSocket::bind(Proto::Udp, "127.0.0.1:0".parse().unwrap(), 0).unwrap(),
            ListenSocket::bind(Proto::Tcp, "127.0.0.1:0".parse().unwrap(), 0).unwrap(),
        ]);
        let addr = sockets[1].addr();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, w) = UnixStream::pair().unwrap();
        let main = {
            let (s, st) = (sockets.clone(), stop.clone());
            std::thread::spawn(move || main_loop(&s, vec![m], &st))
        };
        let worker = {
            let (s, st) = (sockets.clone(), stop.clone());
            std::thread::spawn(move || worker_loop(&s, w, &mut Echo, DEFAULT_LIFETIME, &st))
        };
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msg = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
        c.write_all(b"\r\n\r\n").unwrap();
        c.write_all(&msg[..10]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(&msg[10..]).unwrap();
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, format!("got {}\n", msg.len()).as_bytes());
        stop.store(true, Ordering::Relaxed);
        main.join().unwrap();
        worker.join().unwrap();
    }

    #[test]
    fn idle_connections_are_closed_after_the_lifetime() {
        use std::sync::Arc;
        let sockets = Arc::new(vec![ListenSocket::bind(
            Proto::Tcp,
            "127.0.0.1:0".parse().unwrap(),
            0,
        )
        .unwrap()]);
        let stop = Arc::new(AtomicBool::new(false));
        let (m, w) = UnixStream::pair().unwrap();
        let worker = {
            let (s, st) = (sockets.clone(), stop.clone());
            std::thread::spawn(move || {
                worker_loop(&s, w, &mut Echo, Duration::from_millis(300), &st)
            })
        };
        let l = sockets[0].tcp().unwrap();
        let mut c = TcpStream::connect(sockets[0].addr()).unwrap();
        let (srv, _) = l.accept().unwrap();
        send_fd(&m, &0u32.to_ne_bytes(), srv.as_raw_fd()).unwrap();
        drop(srv);
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = [0u8; 8];
        // EOF once the worker drops the idle connection.
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        assert!(t0.elapsed() >= Duration::from_millis(250));
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    }
}
