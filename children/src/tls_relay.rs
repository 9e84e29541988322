//! Sending on a TLS connection another process holds.
//!
//! A TLS session cannot be shared between processes the way a TCP socket
//! can (its state lives in the worker that drives it), so a process that is
//! not a TCP worker (a UDP receiver relaying a reply to a TLS caller, the
//! timer retransmitting) hands the plaintext to the workers instead: each
//! TCP worker binds an abstract unix datagram socket named after the server
//! and its pid; the sender asks every worker to send if it holds a
//! connection to the peer, and when none does, asks one worker (chosen by
//! the peer's address) to open one, so the peer's answers are read by it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the holders have to answer "sent"/"not mine".
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

fn main_pid() -> i32 {
    crate::table::process_table().next().map_or(0, |p| p.pid)
}

fn name(pid: i32, reply: bool) -> String {
    let kind = if reply { "r" } else { "w" };
    format!("ser-tls-{}-{pid}-{kind}", main_pid())
}

fn bind(pid: i32, reply: bool) -> io::Result<UnixDatagram> {
    let addr = UnixAddr::from_abstract_name(name(pid, reply).as_bytes())?;
    let s = UnixDatagram::bind_addr(&addr)?;
    s.set_nonblocking(true)?;
    if !reply {
        // abstract names have no file permissions: the kernel's sender
        // credentials tell our processes from anyone else's
        nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::PassCred, &true)?;
    }
    Ok(s)
}

/// Receives one request with its sender's address and kernel-checked pid.
fn recv_request(inbox: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, UnixAddr, i32)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr as NixAddr};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    // nix asserts on the address of an unnamed sender (no name at all):
    // such a datagram (not one of ours) is consumed and skipped, not a
    // crash of the worker
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> io::Result<(usize, Vec<u8>, i32)> {
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
            Ok((msg.bytes, name, pid))
        },
    ));
    let Ok(got) = got else {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            "relay request from an unnamed socket",
        ));
    };
    let (n, name, pid) = got?;
    Ok((n, UnixAddr::from_abstract_name(name)?, pid))
}

/// The inbox of this TCP worker (bound once it runs).
pub(crate) fn worker_inbox() -> Option<UnixDatagram> {
    match bind(std::process::id() as i32, false) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("tls: worker relay socket: {e}");
            None
        }
    }
}

/// Handles the requests waiting in a worker's inbox.
pub(crate) fn serve_inbox(inbox: &UnixDatagram) {
    let mut buf = vec![0u8; 70 * 1024];
    loop {
        let (n, from, pid) = match recv_request(inbox, &mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                log::warn!("tls: {e}; ignored");
                continue;
            }
            Err(_) => return,
        };
        if pid <= 0 || crate::table::index_of(pid).is_none() {
            log::warn!("tls: relay request from pid {pid}, not one of ours; ignored");
            continue;
        }
        let Some((head, payload)) = split_head(&buf[..n]) else {
            continue;
        };
        let mut words = head.split(' ');
        let (Some(op), Some(seq), Some(dst)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if op == "W" {
            continue; // wake_self: the loop picks up new connections next
        }
        if op == "L" {
            // tls.list: this worker's connections, one per line
            let mut ack = format!("{seq} L\n");
            for (peer, version, cipher) in crate::tls::list() {
                ack.push_str(&format!("{peer} {version} {cipher}\n"));
            }
            reply_to(inbox, &from, ack.as_bytes());
            continue;
        }
        let Ok(dst) = dst.parse::<SocketAddr>() else {
            continue;
        };
        let ok = match op {
            "S" => crate::tls::send_if_held(dst, payload),
            "O" => match crate::tls::send(dst, payload) {
                Ok(()) => true,
                Err(e) => {
                    log::info!("tls: relayed send to {dst}: {e}");
                    false
                }
            },
            _ => continue,
        };
        let ack = format!("{seq} {}", u8::from(ok));
        reply_to(inbox, &from, ack.as_bytes());
    }
}

/// Wakes this worker's poll loop (from a connector thread: a new
/// outgoing connection is ready to be polled).
pub(crate) fn wake_self() {
    static WAKES: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let me = format!(
        "ser-tls-{}-{pid}-k{}",
        main_pid(),
        WAKES.fetch_add(1, Ordering::Relaxed)
    );
    let Ok(s) =
        UnixAddr::from_abstract_name(me.as_bytes()).and_then(|a| UnixDatagram::bind_addr(&a))
    else {
        return;
    };
    if let Ok(to) = UnixAddr::from_abstract_name(name(std::process::id() as i32, false).as_bytes())
    {
        let _ = s.send_to_addr(b"W 0 -\n", &to);
    }
}

fn reply_to(inbox: &UnixDatagram, from: &UnixAddr, bytes: &[u8]) {
    if let Some(path) = from.as_abstract_name() {
        if let Ok(to) = UnixAddr::from_abstract_name(path) {
            let _ = inbox.send_to_addr(bytes, &to);
        }
    }
}

/// The TLS connections every TCP worker holds: `(worker pid, peer,
/// version, cipher suite)`; workers that do not answer in time are left out.
pub fn list_all() -> Vec<(i32, SocketAddr, String, String)> {
    let Some(reply) = REPLY
        .get_or_init(|| bind(std::process::id() as i32, true).ok())
        .as_ref()
    else {
        return Vec::new();
    };
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let msg = format!("L {seq} -\n");
    let mut asked = Vec::new();
    for pid in workers() {
        if let Ok(to) = UnixAddr::from_abstract_name(name(pid, false).as_bytes()) {
            if reply.send_to_addr(msg.as_bytes(), &to).is_ok() {
                asked.push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = Instant::now() + ASK_TIMEOUT;
    let mut answers = 0;
    while answers < asked.len() && Instant::now() < end {
        match reply.recv_from(&mut buf) {
            Ok((n, from)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut lines = text.lines();
                if lines.next() != Some(format!("{seq} L").as_str()) {
                    continue;
                }
                answers += 1;
                let pid = from
                    .as_abstract_name()
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.split('-').nth(3))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                for l in lines {
                    let mut w = l.split(' ');
                    if let (Some(Ok(peer)), Some(v), Some(c)) =
                        (w.next().map(str::parse), w.next(), w.next())
                    {
                        out.push((pid, peer, v.to_string(), c.to_string()));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

fn split_head(b: &[u8]) -> Option<(&str, &[u8])> {
    let nl = b.iter().position(|c| *c == b'\n')?;
    Some((std::str::from_utf8(&b[..nl]).ok()?, &b[nl + 1..]))
}

static REPLY: OnceLock<Option<UnixDatagram>> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(1);

fn workers() -> Vec<i32> {
    crate::table::process_table()
        .filter(|p| p.desc.starts_with("tcp receiver") && p.pid > 0)
        .map(|p| p.pid)
        .collect()
}

/// Whether there are TCP workers to relay through (this process runs in a
/// forked server, not a test or `-c`).
pub(crate) fn available() -> bool {
    !workers().is_empty()
}

/// Sends `buf` to `dst` through the worker that holds a connection to it,
/// or has one worker open it.
pub(crate) fn send(dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
    let pids = workers();
    let reply = REPLY
        .get_or_init(|| bind(std::process::id() as i32, true).ok())
        .as_ref()
        .ok_or_else(|| io::Error::other("tls: no relay socket"))?;
    let ask = |op: &str, pids: &[i32], wait: Duration| -> io::Result<bool> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut msg = format!("{op} {seq} {dst}\n").into_bytes();
        msg.extend_from_slice(buf);
        let mut asked = 0usize;
        for pid in pids {
            let to = UnixAddr::from_abstract_name(name(*pid, false).as_bytes())?;
            // a worker just forked may not have bound its inbox yet
            for _ in 0..50 {
                match reply.send_to_addr(&msg, &to) {
                    Ok(_) => {
                        asked += 1;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        let end = Instant::now() + wait;
        let mut answers = 0usize;
        let mut ack = [0u8; 64];
        while answers < asked && Instant::now() < end {
            match reply.recv(&mut ack) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&ack[..n]);
                    let mut w = text.split(' ');
                    if w.next() == Some(seq.to_string().as_str()) {
                        answers += 1;
                        if w.next() == Some("1") {
                            return Ok(true);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    };
    if ask("S", &pids, ASK_TIMEOUT)? {
        return Ok(());
    }
    let mut h = DefaultHasher::new();
    dst.hash(&mut h);
    let owner = pids[(h.finish() % pids.len() as u64) as usize];
    let wait = crate::tls::profiles().map_or(Duration::from_secs(3), |p| p.connect_timeout)
        + Duration::from_millis(500);
    if ask("O", &[owner], wait)? {
        Ok(())
    } else {
        Err(io::Error::new(
            ErrorKind::NotConnected,
            format!("tls: no connection to {dst} could be used or opened"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_senders_name_and_unnamed_ones_do_not_panic() {
        let me = format!("ser-tls-test-{}", std::process::id());
        let inbox = UnixDatagram::bind_addr(
            &UnixAddr::from_abstract_name(format!("{me}-in").as_bytes()).unwrap(),
        )
        .unwrap();
        nix::sys::socket::setsockopt(&inbox, nix::sys::socket::sockopt::PassCred, &true).unwrap();
        let out = UnixDatagram::bind_addr(
            &UnixAddr::from_abstract_name(format!("{me}-out").as_bytes()).unwrap(),
        )
        .unwrap();
        let to = UnixAddr::from_abstract_name(format!("{me}-in").as_bytes()).unwrap();
        out.send_to_addr(b"S 1 127.0.0.1:5061\nx", &to).unwrap();
        let mut buf = [0u8; 256];
        let (n, from, pid) = recv_request(&inbox, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"S 1 127.0.0.1:5061\nx");
        assert_eq!(pid, std::process::id() as i32);
        assert_eq!(
            from.as_abstract_name(),
            Some(format!("{me}-out").as_bytes())
        );
        let unnamed = UnixDatagram::unbound().unwrap();
        unnamed.send_to_addr(b"W 0 -\n", &to).unwrap();
        let e = recv_request(&inbox, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        // and the inbox goes on
        out.send_to_addr(b"W 0 -\n", &to).unwrap();
        let (n, _, _) = recv_request(&inbox, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"W 0 -\n");
    }
}
