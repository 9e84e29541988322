//! Sending on a TCP connection another process holds.
//!
//! SER hands the descriptor of a connection to whichever process must
//! send on it (through tcp main). Here a connection lives in exactly one
//! TCP worker, the only process that writes it, so writes never interleave
//! and one write queue serves it: another process (a UDP receiver relaying
//! a reply, the timer, another worker) finds the holder in
//! [`crate::tcp_table`] and sends it the bytes over the holder's inbox, an
//! abstract unix datagram socket named after the server and the worker's
//! pid. The holder writes (or queues) and acknowledges. A process that
//! needs a new connection asks one worker (chosen by the peer address) to
//! open it, so the peer's answers are read and the connect never stalls the
//! asking process.
//!
//! Requests are `OP SEQ ID DST\n` + the message: `S` sends on connection
//! ID (or any this worker holds to DST), `O` opens a connection to DST and
//! queues the message. The answer is `SEQ 1` (sent or queued) or `SEQ 0`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Largest message relayed (a unix datagram; SIP over TCP allows more, but
/// nothing real comes near).
const MAX_MESSAGE: usize = 200 * 1024;

/// What a relayed request asks of the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Send on a connection this worker holds.
    Send,
    /// Open a connection and send on it.
    Open,
}

fn main_pid() -> i32 {
    crate::table::process_table().next().map_or(0, |p| p.pid)
}

fn name(pid: i32, reply: bool) -> String {
    let kind = if reply { "r" } else { "w" };
    format!("ser-tcp-{}-{pid}-{kind}", main_pid())
}

fn bind(pid: i32, reply: bool) -> io::Result<UnixDatagram> {
    let addr = UnixAddr::from_abstract_name(name(pid, reply).as_bytes())?;
    let s = UnixDatagram::bind_addr(&addr)?;
    s.set_nonblocking(true)?;
    let buf = MAX_MESSAGE + 1024;
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBuf, &buf);
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &(4 * buf));
    if !reply {
        // abstract names have no file permissions: the kernel's sender
        // credentials tell our processes from anyone else's
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::PassCred, &true)?;
    }
    Ok(s)
}

/// This worker's inbox, bound by [`bind_inbox`].
static INBOX: OnceLock<UnixDatagram> = OnceLock::new();
/// This process's socket for answers.
static REPLY: OnceLock<Option<UnixDatagram>> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(1);

/// Binds this TCP worker's inbox; the descriptor the worker polls.
pub(crate) fn bind_inbox() -> Option<&'static UnixDatagram> {
    if INBOX.get().is_none() {
        match bind(std::process::id() as i32, false) {
            Ok(s) => {
                let _ = INBOX.set(s);
            }
            Err(e) => {
                log::warn!("tcp: worker relay socket: {e}");
                return None;
            }
        }
    }
    INBOX.get()
}

/// Receives one request with its sender's address and kernel-checked pid.
fn recv_request(inbox: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, UnixAddr, i32)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr as NixAddr};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let msg = recvmsg::<NixAddr>(
        inbox.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let pid = msg
        .cmsgs()
        .map_err(io::Error::from)?
        .find_map(|c| match c {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
            _ => None,
        })
        .unwrap_or(0);
    let name = msg
        .address
        .and_then(|a| a.as_abstract().map(<[u8]>::to_vec))
        .unwrap_or_default();
    let n = msg.bytes;
    Ok((n, UnixAddr::from_abstract_name(name)?, pid))
}

/// Handles the requests waiting in this worker's inbox with `handle`
/// (whether the message was sent or queued).
pub(crate) fn serve(mut handle: impl FnMut(Op, u64, SocketAddr, &[u8]) -> bool) {
    let Some(inbox) = INBOX.get() else { return };
    let mut buf = vec![0u8; MAX_MESSAGE + 1024];
    loop {
        let (n, from, pid) = match recv_request(inbox, &mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if pid <= 0 || crate::table::index_of(pid).is_none() {
            log::warn!("tcp: relay request from pid {pid}, not one of ours; ignored");
            continue;
        }
        let Some(nl) = buf[..n].iter().position(|c| *c == b'\n') else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..nl]).into_owned();
        let mut w = head.split(' ');
        let (Some(op), Some(seq), Some(Ok(id)), Some(Ok(dst))) = (
            w.next(),
            w.next(),
            w.next().map(str::parse::<u64>),
            w.next().map(str::parse::<SocketAddr>),
        ) else {
            continue;
        };
        let op = match op {
            "S" => Op::Send,
            "O" => Op::Open,
            _ => continue,
        };
        let ok = handle(op, id, dst, &buf[nl + 1..n]);
        let ack = format!("{seq} {}", u8::from(ok));
        if let Some(path) = from.as_abstract_name() {
            if let Ok(to) = UnixAddr::from_abstract_name(path) {
                let _ = inbox.send_to_addr(ack.as_bytes(), &to);
            }
        }
    }
}

/// pids of the TCP workers.
pub(crate) fn workers() -> Vec<i32> {
    crate::table::process_table()
        .filter(|p| p.desc.starts_with("tcp receiver") && p.pid > 0)
        .map(|p| p.pid)
        .collect()
}

/// Whether sends go through the workers: a forked server with TCP workers
/// and the shared table.
pub(crate) fn available() -> bool {
    crate::tcp_table::available() && !workers().is_empty()
}

/// The worker that opens connections to `dst` for processes that are not
/// workers (the same one each time).
pub(crate) fn opener(dst: SocketAddr) -> Option<i32> {
    let pids = workers();
    if pids.is_empty() {
        return None;
    }
    let mut h = DefaultHasher::new();
    dst.ip().hash(&mut h);
    Some(pids[(h.finish() % pids.len() as u64) as usize])
}

/// Asks worker `pid` to do `op`: `Ok(true)` done, `Ok(false)` refused (no
/// such connection, or the connect failed at once); an error of kind
/// `ConnectionRefused` when the worker is gone, `TimedOut` when it did not
/// answer within `wait`.
pub(crate) fn ask(
    pid: i32,
    op: Op,
    id: u64,
    dst: SocketAddr,
    msg: &[u8],
    wait: Duration,
) -> io::Result<bool> {
    if msg.len() > MAX_MESSAGE {
        return Err(io::Error::other(format!(
            "tcp: message of {} bytes is too large to relay",
            msg.len()
        )));
    }
    let reply = REPLY
        .get_or_init(|| bind(std::process::id() as i32, true).ok())
        .as_ref()
        .ok_or_else(|| io::Error::other("tcp: no relay socket"))?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tag = match op {
        Op::Send => "S",
        Op::Open => "O",
    };
    let mut req = format!("{tag} {seq} {id} {dst}\n").into_bytes();
    req.extend_from_slice(msg);
    let to = UnixAddr::from_abstract_name(name(pid, false).as_bytes())?;
    let end = Instant::now() + wait;
    // a worker just (re)forked may not have bound its inbox yet; a full
    // inbox drains as the worker runs
    loop {
        match reply.send_to_addr(&req, &to) {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionRefused
                ) && Instant::now() + Duration::from_millis(5) < end
                    && (e.kind() != ErrorKind::ConnectionRefused || nix_alive(pid)) =>
            {
                serve_own_inbox();
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    let mut ack = [0u8; 64];
    let want = seq.to_string();
    while Instant::now() < end {
        match reply.recv(&mut ack) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&ack[..n]);
                let mut w = text.split(' ');
                if w.next() == Some(want.as_str()) {
                    return Ok(w.next() == Some("1"));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // two workers asking each other must not wait for each other
                serve_own_inbox();
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(reply),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2u8));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        ErrorKind::TimedOut,
        format!("tcp: worker {pid} did not answer a relayed send to {dst}"),
    ))
}

/// A worker waiting for another serves its own inbox meanwhile.
fn serve_own_inbox() {
    if INBOX.get().is_some() {
        serve(crate::tcp_conn::relayed);
    }
}

/// Whether process `pid` exists (a worker that died leaves its slot empty
/// until respawned; its inbox name is then gone).
fn nix_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}
