//! TCP: tcp main and its workers (the shape of SER's `tcp_main.c` and
//! `tcp_read.c`).
//!
//! tcp main owns the listening sockets; it accepts each connection and hands
//! it to a worker (round robin) over a unix socketpair with SCM_RIGHTS,
//! together with the index of the listen socket. A worker polls its link
//! and its connections, reads, frames SIP messages by Content-Length and
//! calls the handler; replies go back on the same connection. Unlike SER a
//! worker keeps its connections until they close (no hand-back to tcp main
//! yet), and there is no connection lookup for sending from other processes.

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::handler::{SipHandler, StreamReply};
use crate::socket::{ListenSocket, Proto};
use crate::udp::BUF_SIZE;

/// How often blocked loops look at their stop flag.
const STOP_POLL_MS: u16 = 250;

/// Result of looking for one complete message at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// The first `n` bytes are one message (keep-alive CRLFs count as one).
    Message(usize),
    /// The stream cannot be a SIP stream (bad Content-Length): close it.
    Invalid,
}

/// Frames a SIP stream by its header end and Content-Length (RFC 3261
/// 18.3); a bare CRLF keep-alive is returned as a message of its own.
pub fn frame(buf: &[u8]) -> Frame {
    if buf.starts_with(b"\r\n") {
        return Frame::Message(2);
    }
    let Some(hdr_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Frame::Incomplete;
    };
    let mut body_len = 0usize;
    for line in buf[..hdr_end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            {
                Some(n) if n <= BUF_SIZE => body_len = n,
                _ => return Frame::Invalid,
            }
        }
    }
    if buf.len() >= hdr_end + body_len {
        Frame::Message(hdr_end + body_len)
    } else {
        Frame::Incomplete
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// tcp main: accepts on every TCP socket and passes connections to the
/// workers until `stop` is set.
pub fn main_loop(sockets: &[ListenSocket], workers: Vec<UnixStream>, stop: &AtomicBool) {
    let listeners: Vec<(usize, &ListenSocket)> = sockets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.proto() == Proto::Tcp)
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
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd> = listeners
            .iter()
            .filter_map(|(_, s)| s.tcp())
            .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(STOP_POLL_MS)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("tcp main: poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        drop(fds);
        for (index, s) in &listeners {
            let Some(l) = s.tcp() else { continue };
            loop {
                match l.accept() {
                    Ok((conn, peer)) => {
                        if workers.is_empty() {
                            break;
                        }
                        let w = &workers[next % workers.len()];
                        next = next.wrapping_add(1);
                        // usize -> u32 index of a listen socket: there are at most a
                        // handful of sockets.
                        let idx = (*index as u32).to_ne_bytes();
                        if let Err(e) = send_fd(w, &idx, conn.as_raw_fd()) {
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
    let fds = [fd];
    sendmsg::<()>(
        link.as_raw_fd(),
        &[IoSlice::new(data)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
}

/// Receives one passed connection: the listen socket index and the fd.
/// `Ok(None)` when tcp main closed the link.
fn recv_fd(link: &UnixStream) -> nix::Result<Option<(usize, OwnedFd)>> {
    let mut data = [0u8; 4];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        link.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
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
    stream: TcpStream,
    peer: SocketAddr,
    sock: usize,
    buf: Vec<u8>,
}

struct Reply<'a>(&'a mut TcpStream);

impl StreamReply for Reply<'_> {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // The connection is non-blocking for reads; write with a bounded
        // blocking send so a reply is not cut short.
        self.0.set_nonblocking(false)?;
        self.0.set_write_timeout(Some(Duration::from_secs(1)))?;
        let r = self.0.write_all(bytes);
        self.0.set_nonblocking(true)?;
        r
    }
}

/// A TCP worker: takes connections from tcp main and handles their messages
/// until `stop` is set.
pub fn worker_loop(
    sockets: &[ListenSocket],
    link: UnixStream,
    handler: &mut dyn SipHandler,
    stop: &AtomicBool,
) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut link_open = true;
    let mut chunk = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) && (link_open || !conns.is_empty()) {
        let mut fds = Vec::with_capacity(conns.len() + 1);
        fds.push(PollFd::new(link.as_fd(), PollFlags::POLLIN));
        fds.extend(
            conns
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::from(STOP_POLL_MS)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("tcp worker: poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if ready[i + 1] && !read_conn(c, sockets, handler, &mut chunk) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            conns.swap_remove(i);
        }
        if link_open && ready[0] {
            match recv_fd(&link) {
                Ok(Some((sock, fd))) => {
                    let stream = TcpStream::from(fd);
                    match (stream.peer_addr(), stream.set_nonblocking(true)) {
                        (Ok(peer), Ok(())) if sock < sockets.len() => conns.push(Conn {
                            stream,
                            peer,
                            sock,
                            buf: Vec::new(),
                        }),
                        _ => log::warn!("tcp worker: dropping unusable connection"),
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

/// Reads what is available and handles complete messages; false when the
/// connection is finished (EOF, error, or not SIP).
fn read_conn(
    c: &mut Conn,
    sockets: &[ListenSocket],
    handler: &mut dyn SipHandler,
    chunk: &mut [u8],
) -> bool {
    loop {
        match c.stream.read(chunk) {
            Ok(0) => return false,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    loop {
        match frame(&c.buf) {
            Frame::Incomplete => {
                // A header that never ends, or more than one message's worth
                // of junk, ends the connection.
                return c.buf.len() <= 2 * BUF_SIZE;
            }
            Frame::Invalid => {
                log::warn!("tcp: bad message framing from {}, closing", c.peer);
                return false;
            }
            Frame::Message(n) => {
                let msg: Vec<u8> = c.buf.drain(..n).collect();
                if msg == b"\r\n" {
                    continue;
                }
                let sock = &sockets[c.sock];
                let peer = c.peer;
                let mut reply = Reply(&mut c.stream);
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

    #[test]
    fn frames_by_content_length() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcNEXT";
        assert_eq!(frame(m), Frame::Message(m.len() - 4));
        assert_eq!(
            frame(b"OPTIONS sip:a SIP/2.0\r\nl: 5\r\n\r\nab"),
            Frame::Incomplete
        );
        assert_eq!(
            frame(b"INVITE x\r\nContent-Length: zz\r\n\r\n"),
            Frame::Invalid
        );
        assert_eq!(frame(b"\r\n\r\nX"), Frame::Message(2));
        assert_eq!(frame(b"INVITE"), Frame::Incomplete);
    }

    #[test]
    fn fd_passing_over_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        send_fd(&a, &7u32.to_ne_bytes(), srv.as_raw_fd()).unwrap();
        drop(srv);
        let (idx, fd) = recv_fd(&b).unwrap().unwrap();
        assert_eq!(idx, 7);
        let mut got = TcpStream::from(fd);
        (&client).write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        got.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }
}
