//! The ctl poll loop: one thread, non-blocking sockets, bounded buffers.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::listener::Sock;
use super::{CtlConfig, CtlError, CtlListener};
use crate::binrpc::{
    decode_header, decode_request, encode_fault, encode_reply, split_frame, Decoded, Header,
    PacketType, MAX_HDR_SIZE,
};
use crate::fifo_server;
use crate::rpc::RpcRegistry;

/// How often the loop wakes up to look at `stop` and the timeouts.
const TICK_MS: u16 = 100;
/// Largest datagram we read (and the largest reply a datagram can carry).
const MAX_DGRAM: usize = 65_507;
/// Connections accepted / datagrams read per wake-up, so one busy listener cannot starve
/// the others.
const BURST: usize = 32;

/// Serves `registry` on `listeners` with the default [`CtlConfig`] until `stop` is set.
pub fn serve(
    listeners: Vec<CtlListener>,
    registry: &RpcRegistry,
    stop: &AtomicBool,
) -> Result<(), CtlError> {
    serve_with(listeners, registry, stop, &CtlConfig::default())
}

/// Answers one binrpc packet: the reply, or a fault for a bad request, an unknown method,
/// a handler fault or a reply larger than `cfg.max_reply`. The cookie is echoed.
pub fn handle_packet(
    header: &Header,
    body: &[u8],
    registry: &RpcRegistry,
    cfg: &CtlConfig,
) -> Vec<u8> {
    let cookie = header.cookie;
    if header.kind != PacketType::Request {
        return encode_fault(400, "not a request", cookie);
    }
    let (method, params) = match decode_request(body) {
        Ok(r) => r,
        Err(e) => return encode_fault(400, &format!("bad request: {e}"), cookie),
    };
    match super::call_guarded(registry, &method, params) {
        Ok(values) => match encode_reply(&values, cookie) {
            Ok(p) if p.len() <= cfg.max_reply + MAX_HDR_SIZE => p,
            _ => encode_fault(500, "reply too big", cookie),
        },
        Err(f) => encode_fault(f.code, &f.message, cookie),
    }
}

/// The cookie of a packet whose framing failed, when its header is readable.
fn cookie_of(buf: &[u8]) -> u32 {
    match decode_header(buf) {
        Ok(Decoded::Complete(h, _)) => h.cookie,
        _ => 0,
    }
}

/// Serves `registry` on `listeners` until `stop` is set; the listeners (and their files) are
/// dropped on return.
pub fn serve_with(
    listeners: Vec<CtlListener>,
    registry: &RpcRegistry,
    stop: &AtomicBool,
    cfg: &CtlConfig,
) -> Result<(), CtlError> {
    let mut fifo_bufs: Vec<Vec<u8>> = listeners.iter().map(|_| Vec::new()).collect();
    let mut conns: Vec<Conn> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        conns.retain(|c| !c.expired(now, cfg));
        let revents = {
            let mut fds: Vec<PollFd<'_>> = listeners
                .iter()
                .map(|l| PollFd::new(sock_fd(&l.sock), PollFlags::POLLIN))
                .collect();
            fds.extend(
                conns
                    .iter()
                    .map(|c| PollFd::new(c.stream.as_fd(), c.interest(cfg))),
            );
            match poll(&mut fds, PollTimeout::from(TICK_MS)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(CtlError::io("poll", e.into())),
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect::<Vec<_>>()
        };
        let ready = PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP;
        let mut accepted = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            if !revents[i].intersects(ready) {
                continue;
            }
            match &l.sock {
                Sock::UnixStream(s) => {
                    for _ in 0..BURST {
                        match s.accept() {
                            Ok((st, _)) => accepted.push(Stream::Unix(st)),
                            Err(_) => break,
                        }
                    }
                }
                Sock::Tcp(s) => {
                    for _ in 0..BURST {
                        match s.accept() {
                            Ok((st, _)) => accepted.push(Stream::Tcp(st)),
                            Err(_) => break,
                        }
                    }
                }
                Sock::UnixDgram(s) if l.json => serve_json_datagrams(registry, cfg, move |buf| {
                    let (n, from) = s.recv_from(buf)?;
                    Ok((n, move |reply: &[u8]| {
                        if let Some(p) = from.as_pathname() {
                            let _ = s.send_to(reply, p);
                        }
                    }))
                }),
                Sock::Udp(s) if l.json => serve_json_datagrams(registry, cfg, move |buf| {
                    let (n, from) = s.recv_from(buf)?;
                    Ok((n, move |reply: &[u8]| {
                        let _ = s.send_to(reply, from);
                    }))
                }),
                Sock::Fifo { read, .. } if l.json => {
                    let buf = &mut fifo_bufs[i];
                    fifo_server::read_available(read, buf, cfg.max_request);
                    crate::jsonrpc::process_fifo_buffer(buf, registry, cfg);
                }
                Sock::UnixDgram(s) => serve_datagrams(registry, cfg, move |buf| {
                    let (n, from) = s.recv_from(buf)?;
                    Ok((n, move |reply: &[u8]| {
                        if let Some(p) = from.as_pathname() {
                            let _ = s.send_to(reply, p);
                        }
                    }))
                }),
                Sock::Udp(s) => serve_datagrams(registry, cfg, move |buf| {
                    let (n, from) = s.recv_from(buf)?;
                    Ok((n, move |reply: &[u8]| {
                        let _ = s.send_to(reply, from);
                    }))
                }),
                Sock::Fifo { read, .. } => {
                    let buf = &mut fifo_bufs[i];
                    fifo_server::read_available(read, buf, cfg.max_request);
                    fifo_server::process_buffer(buf, registry, cfg);
                }
            }
        }
        for (j, c) in conns.iter_mut().enumerate() {
            let ev = revents[listeners.len() + j];
            if ev.intersects(ready) {
                c.on_readable(registry, cfg);
            }
            if ev.contains(PollFlags::POLLOUT) || c.has_output() {
                c.on_writable();
            }
        }
        conns.retain(|c| !c.dead);
        for st in accepted {
            // Over the limit: accept and close at once rather than leave clients hanging.
            if conns.len() < cfg.max_connections && st.set_nonblocking().is_ok() {
                conns.push(Conn::new(st));
            }
        }
    }
    Ok(())
}

fn sock_fd(s: &Sock) -> BorrowedFd<'_> {
    match s {
        Sock::UnixStream(l) => l.as_fd(),
        Sock::UnixDgram(l) => l.as_fd(),
        Sock::Tcp(l) => l.as_fd(),
        Sock::Udp(l) => l.as_fd(),
        Sock::Fifo { read, .. } => read.as_fd(),
    }
}

/// Reads up to [`BURST`] datagrams with `recv` (which returns the length and a function
/// sending a reply to the sender) and answers each.
fn serve_datagrams<R, F>(registry: &RpcRegistry, cfg: &CtlConfig, mut recv: F)
where
    F: FnMut(&mut [u8]) -> io::Result<(usize, R)>,
    R: FnOnce(&[u8]),
{
    let mut buf = vec![0u8; MAX_DGRAM];
    for _ in 0..BURST {
        let Ok((n, reply_to)) = recv(&mut buf) else {
            return;
        };
        let pkt = &buf[..n];
        let reply = match split_frame(pkt, cfg.max_request.min(MAX_DGRAM)) {
            Ok(Decoded::Complete(f, _)) => {
                let r = handle_packet(&f.header, f.body, registry, cfg);
                if r.len() > MAX_DGRAM {
                    encode_fault(500, "reply too big", f.header.cookie)
                } else {
                    r
                }
            }
            Ok(Decoded::NeedMore(_)) => encode_fault(400, "truncated packet", cookie_of(pkt)),
            Err(e) => encode_fault(400, &format!("bad packet: {e}"), cookie_of(pkt)),
        };
        reply_to(&reply);
    }
}

/// [`serve_datagrams`] for JSON-RPC: one request per datagram, the reply
/// (too big: an error) to the sender; notifications get none.
fn serve_json_datagrams<R, F>(registry: &RpcRegistry, cfg: &CtlConfig, mut recv: F)
where
    F: FnMut(&mut [u8]) -> io::Result<(usize, R)>,
    R: FnOnce(&[u8]),
{
    let mut buf = vec![0u8; MAX_DGRAM];
    for _ in 0..BURST {
        let Ok((n, reply_to)) = recv(&mut buf) else {
            return;
        };
        let h = crate::jsonrpc::handle(&buf[..n], registry, cfg.json_pretty);
        if let Some(reply) = h.reply {
            // Datagram replies carry no trailing newline (as Kamailio's).
            let reply = reply.trim_end_matches('\n');
            if reply.len() <= MAX_DGRAM {
                reply_to(reply.as_bytes());
            } else {
                reply_to(b"{\"jsonrpc\":\"2.0\",\"error\":{\"code\":500,\"message\":\"reply too big\"},\"id\":null}\n");
            }
        }
    }
}

/// An accepted stream.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => s.set_nonblocking(true),
        }
    }
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
}

/// One stream client: requests may follow each other on the connection (interactive
/// kamcmd), each answered in order.
struct Conn {
    stream: Stream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    last_active: Instant,
    /// When the first byte of the request being assembled arrived.
    request_started: Option<Instant>,
    /// Framing is lost: send what is queued, then close.
    closing: bool,
    dead: bool,
}

impl Conn {
    fn new(stream: Stream) -> Self {
        Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            last_active: Instant::now(),
            request_started: None,
            closing: false,
            dead: false,
        }
    }

    fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Read only while there is room and the replies are being taken (back-pressure).
    fn wants_read(&self, cfg: &CtlConfig) -> bool {
        !self.closing && self.out.len() - self.out_pos <= cfg.max_reply
    }

    fn interest(&self, cfg: &CtlConfig) -> PollFlags {
        let mut f = PollFlags::empty();
        if self.wants_read(cfg) {
            f |= PollFlags::POLLIN;
        }
        if self.has_output() {
            f |= PollFlags::POLLOUT;
        }
        f
    }

    fn expired(&self, now: Instant, cfg: &CtlConfig) -> bool {
        now.duration_since(self.last_active) > cfg.idle_timeout
            || self
                .request_started
                .is_some_and(|t| now.duration_since(t) > cfg.request_timeout)
    }

    fn on_readable(&mut self, registry: &RpcRegistry, cfg: &CtlConfig) {
        let mut chunk = [0u8; 8192];
        let mut eof = false;
        while self.wants_read(cfg) && self.inbuf.len() < cfg.max_request + MAX_HDR_SIZE {
            let room = (cfg.max_request + MAX_HDR_SIZE - self.inbuf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let now = Instant::now();
                    self.last_active = now;
                    self.request_started.get_or_insert(now);
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    self.process(registry, cfg);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if eof {
            // The client is gone or done sending: finish what is queued, then close.
            self.closing = true;
            self.inbuf.clear();
            self.request_started = None;
            if !self.has_output() {
                self.dead = true;
            }
        }
    }

    /// Answers every complete request in the input buffer.
    fn process(&mut self, registry: &RpcRegistry, cfg: &CtlConfig) {
        while !self.closing {
            let (reply, used) = match split_frame(&self.inbuf, cfg.max_request) {
                Ok(Decoded::NeedMore(_)) => break,
                Ok(Decoded::Complete(f, n)) => (handle_packet(&f.header, f.body, registry, cfg), n),
                Err(e) => {
                    // The stream cannot be re-synchronised: fault, then close.
                    let fault =
                        encode_fault(400, &format!("bad packet: {e}"), cookie_of(&self.inbuf));
                    self.out.extend_from_slice(&fault);
                    self.closing = true;
                    self.inbuf.clear();
                    break;
                }
            };
            self.out.extend_from_slice(&reply);
            self.inbuf.drain(..used);
        }
        self.request_started = if self.inbuf.is_empty() {
            None
        } else {
            self.request_started
        };
    }

    fn on_writable(&mut self) {
        while self.has_output() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.out_pos += n;
                    self.last_active = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.closing {
            self.dead = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binrpc::{decode_body, decode_fault, encode_request};
    use crate::rpc::RpcValue;

    fn answer(pkt: &[u8], cfg: &CtlConfig) -> (Header, Vec<u8>) {
        let mut reg = RpcRegistry::new();
        reg.register("t.big", &[], |ctx| {
            ctx.add(RpcValue::Str("x".repeat(ctx.scan_int(0)? as usize)));
            Ok(())
        })
        .unwrap();
        let Ok(Decoded::Complete(f, _)) = split_frame(pkt, 1 << 20) else {
            panic!("bad input")
        };
        let reply = handle_packet(&f.header, f.body, &reg, cfg);
        let Ok(Decoded::Complete(r, n)) = split_frame(&reply, 1 << 20) else {
            panic!("bad reply")
        };
        assert_eq!(n, reply.len());
        (r.header, r.body.to_vec())
    }

    #[test]
    fn cookie_echoed_and_limits_applied() {
        let cfg = CtlConfig {
            max_reply: 100,
            ..CtlConfig::default()
        };
        let (h, body) = answer(
            &encode_request("t.big", &[RpcValue::Int(50)], 0xdead_beef).unwrap(),
            &cfg,
        );
        assert_eq!((h.kind, h.cookie), (PacketType::Reply, 0xdead_beef));
        assert_eq!(
            decode_body(&body).unwrap(),
            vec![RpcValue::Str("x".repeat(50))]
        );
        let (h, body) = answer(
            &encode_request("t.big", &[RpcValue::Int(500)], 7).unwrap(),
            &cfg,
        );
        assert_eq!((h.kind, h.cookie), (PacketType::Fault, 7));
        assert_eq!(decode_fault(&body).unwrap(), (500, "reply too big".into()));
    }

    #[test]
    fn replies_sent_to_the_server_are_refused() {
        let reply = crate::binrpc::encode_reply(&[RpcValue::Int(1)], 3).unwrap();
        let (h, body) = answer(&reply, &CtlConfig::default());
        assert_eq!((h.kind, h.cookie), (PacketType::Fault, 3));
        assert_eq!(decode_fault(&body).unwrap().0, 400);
    }
}
