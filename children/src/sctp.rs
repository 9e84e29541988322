//! The SCTP transport (SER's `sctp_server.c`): one-to-many sockets
//! (`SOCK_SEQPACKET`, `IPPROTO_SCTP`) through libc. One socket serves every
//! association; each `recvmsg` returns one whole SIP message and, in an
//! `SCTP_SNDRCV` control message, the association it came on. Replies and
//! forwards go out with `sendmsg` to the peer's address (the kernel finds
//! or sets up the association). Like UDP, `-Q` receivers per socket read
//! the same inherited socket.
//!
//! Linux needs the `sctp` kernel module: without it `socket()` fails
//! (`EPROTONOSUPPORT`, `ESOCKTNOSUPPORT`) and [`check_kernel`] says so.
//!
//! libc has no SCTP declarations; the few needed (`SOL_SCTP`,
//! `SCTP_EVENTS`, `struct sctp_sndrcvinfo`) are spelled out here from the
//! Linux UAPI header `linux/sctp.h`.

use std::io::{self, ErrorKind};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::handler::SipHandler;
use crate::socket::ListenSocket;
use crate::Error;

/// `SOL_SCTP` (= `IPPROTO_SCTP`).
const SOL_SCTP: libc::c_int = 132;
/// `SCTP_EVENTS` socket option (`struct sctp_event_subscribe`).
const SCTP_EVENTS: libc::c_int = 11;
/// `SCTP_SNDRCV` control message type (`struct sctp_sndrcvinfo`).
const SCTP_SNDRCV: libc::c_int = 1;
/// `MSG_NOTIFICATION`: the message is an SCTP event, not data.
const MSG_NOTIFICATION: libc::c_int = 0x8000;
/// Bytes of `struct sctp_sndrcvinfo`.
const SNDRCVINFO_LEN: usize = 32;
/// How often a blocked receiver looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);
/// The largest message handled (SER's `BUF_SIZE`).
pub const BUF_SIZE: usize = 65535;

/// What `struct sctp_sndrcvinfo` carries that SIP needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SndRcvInfo {
    /// The stream (SIP uses stream 0).
    pub stream: u16,
    /// `SCTP_*` send flags.
    pub flags: u16,
    /// Payload protocol identifier (0: unspecified).
    pub ppid: u32,
    /// The association (`sctp_assoc_t`).
    pub assoc_id: i32,
}

impl SndRcvInfo {
    /// The struct's bytes as the kernel lays them out (native endian:
    /// stream, ssn, flags, 2 bytes padding, ppid, context, timetolive, tsn,
    /// cumtsn, assoc_id).
    pub fn to_bytes(self) -> [u8; SNDRCVINFO_LEN] {
        let mut b = [0u8; SNDRCVINFO_LEN];
        b[0..2].copy_from_slice(&self.stream.to_ne_bytes());
        b[4..6].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..12].copy_from_slice(&self.ppid.to_ne_bytes());
        b[28..32].copy_from_slice(&self.assoc_id.to_ne_bytes());
        b
    }

    /// Reads the struct from the kernel's bytes; `None` if too short.
    pub fn from_bytes(b: &[u8]) -> Option<SndRcvInfo> {
        let u16_at = |i: usize| Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?));
        Some(SndRcvInfo {
            stream: u16_at(0)?,
            flags: u16_at(4)?,
            ppid: u32_at(8)?,
            assoc_id: i32::from_ne_bytes(b.get(28..32)?.try_into().ok()?),
        })
    }
}

/// `CMSG_ALIGN`: control message parts are aligned to `size_t`.
const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Bytes of a `struct cmsghdr` (len: size_t, level: int, type: int).
const CMSG_HDR: usize = cmsg_align(size_of::<usize>() + 2 * size_of::<libc::c_int>());

/// `CMSG_SPACE(sizeof(struct sctp_sndrcvinfo))`.
pub const SNDRCV_SPACE: usize = CMSG_HDR + cmsg_align(SNDRCVINFO_LEN);

/// A control message buffer aligned for `struct cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 2 * SNDRCV_SPACE]);

/// Encodes one `SCTP_SNDRCV` control message (what `sendmsg` gets).
pub fn encode_sndrcv(info: SndRcvInfo) -> [u8; SNDRCV_SPACE] {
    let mut b = [0u8; SNDRCV_SPACE];
    let len = CMSG_HDR + SNDRCVINFO_LEN; // CMSG_LEN
    b[..size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    let lvl = size_of::<usize>();
    let typ = lvl + size_of::<libc::c_int>();
    b[lvl..typ].copy_from_slice(&SOL_SCTP.to_ne_bytes());
    b[typ..typ + size_of::<libc::c_int>()].copy_from_slice(&SCTP_SNDRCV.to_ne_bytes());
    b[CMSG_HDR..CMSG_HDR + SNDRCVINFO_LEN].copy_from_slice(&info.to_bytes());
    b
}

/// Finds the `SCTP_SNDRCV` control message among those `recvmsg` filled
/// in (`buf`: the first `msg_controllen` bytes).
pub fn decode_sndrcv(mut buf: &[u8]) -> Option<SndRcvInfo> {
    let word = size_of::<usize>();
    let int = size_of::<libc::c_int>();
    while buf.len() >= CMSG_HDR {
        let len = usize::from_ne_bytes(buf[..word].try_into().ok()?);
        let level = libc::c_int::from_ne_bytes(buf[word..word + int].try_into().ok()?);
        let typ = libc::c_int::from_ne_bytes(buf[word + int..word + 2 * int].try_into().ok()?);
        if len < CMSG_HDR || len > buf.len() {
            return None;
        }
        if level == SOL_SCTP && typ == SCTP_SNDRCV {
            return SndRcvInfo::from_bytes(&buf[CMSG_HDR..len]);
        }
        buf = buf.get(cmsg_align(len)..)?;
    }
    None
}

/// The missing-kernel-support error, or what else `socket()` said.
fn socket_error(e: io::Error) -> Error {
    let missing = matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
    );
    let what = if missing {
        "sctp: the kernel has no SCTP support (load it: modprobe sctp)"
    } else {
        "sctp: socket()"
    };
    Error::io(what.to_string(), e)
}

fn new_socket(ipv6: bool) -> Result<OwnedFd, Error> {
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call with constant arguments; the result is
    // checked before use.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            libc::IPPROTO_SCTP,
        )
    };
    if fd < 0 {
        return Err(socket_error(io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the kernel can make SCTP sockets; the error names the missing
/// kernel support (`modprobe sctp`).
pub fn check_kernel() -> Result<(), Error> {
    new_socket(false).map(drop)
}

/// A bound, listening one-to-many SCTP socket.
#[derive(Debug)]
pub struct SctpSocket {
    fd: OwnedFd,
}

impl SctpSocket {
    /// Binds `addr`, subscribes to the per-message association info and
    /// listens (a one-to-many socket accepts associations implicitly).
    pub fn bind(addr: SocketAddr) -> Result<SctpSocket, Error> {
        let what = || format!("bind sctp:{addr}");
        let fd = new_socket(addr.is_ipv6())?;
        let raw = fd.as_raw_fd();
        let on: libc::c_int = 1;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &on.to_ne_bytes())
            .map_err(|e| Error::io(what(), e))?;
        let sa = SockaddrStorage::from(addr);
        nix::sys::socket::bind(raw, &sa).map_err(|e| Error::io(what(), e.into()))?;
        // struct sctp_event_subscribe: its first byte is sctp_data_io_event,
        // which makes recvmsg return the SCTP_SNDRCV info; no notifications
        let mut events = [0u8; 14];
        events[0] = 1;
        setsockopt(raw, SOL_SCTP, SCTP_EVENTS, &events).map_err(|e| Error::io(what(), e))?;
        // SAFETY: listen(2) on a socket we own.
        if unsafe { libc::listen(raw, 128) } < 0 {
            return Err(Error::io(what(), io::Error::last_os_error()));
        }
        Ok(SctpSocket { fd })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let sa: SockaddrStorage =
            nix::sys::socket::getsockname(self.fd.as_raw_fd()).map_err(io::Error::from)?;
        to_socket_addr(&sa).ok_or_else(|| io::Error::other("sctp: unknown address family"))
    }

    /// Receives one message into `buf`: its length, source address and
    /// association. SCTP notifications are skipped.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SndRcvInfo)> {
        loop {
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut cmsg = CmsgBuf([0u8; 2 * SNDRCV_SPACE]);
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain old data; all-zero is a valid start.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = cmsg.0.len();
            // SAFETY: every pointer in msg points to a live local buffer of
            // the length given with it, for the duration of the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if msg.msg_flags & MSG_NOTIFICATION != 0 {
                continue;
            }
            if msg.msg_flags & libc::MSG_TRUNC != 0 {
                log::warn!("sctp: message larger than {} bytes dropped", buf.len());
                continue;
            }
            let controllen = msg.msg_controllen.min(cmsg.0.len());
            let info = decode_sndrcv(&cmsg.0[..controllen]).unwrap_or_default();
            // SAFETY: the kernel wrote msg_namelen bytes of a socket address
            // into `name`, which is large enough for any family.
            let sa = unsafe {
                SockaddrStorage::from_raw(
                    (&name as *const libc::sockaddr_storage).cast(),
                    Some(msg.msg_namelen),
                )
            };
            let src = sa
                .as_ref()
                .and_then(to_socket_addr)
                .ok_or_else(|| io::Error::other("sctp: message without a source address"))?;
            let n = usize::try_from(n).unwrap_or(0);
            return Ok((n, src, info));
        }
    }

    /// Sends one message to `dst` on stream 0 (the kernel uses the
    /// association to `dst`, or sets one up).
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        let sa = SockaddrStorage::from(dst);
        let mut cmsg = CmsgBuf([0u8; 2 * SNDRCV_SPACE]);
        cmsg.0[..SNDRCV_SPACE].copy_from_slice(&encode_sndrcv(SndRcvInfo::default()));
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid start.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = sa.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = sa.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = SNDRCV_SPACE;
        // SAFETY: every pointer in msg points to a live buffer of the given
        // length for the duration of the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Sets a receive timeout, so a blocked receiver sees its stop flag.
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: d.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(d.subsec_micros()),
        };
        // SAFETY: timeval is plain old data; we pass its exact size.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&tv as *const libc::timeval).cast::<u8>(),
                size_of::<libc::timeval>(),
            )
        };
        setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            bytes,
        )
    }
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: val is a live buffer of the length passed; the kernel only
    // reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn to_socket_addr(sa: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = sa.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    sa.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// The body of SCTP receiver `sock` of the fork plan (an index among the
/// SCTP sockets of `sockets`); false when there is no such socket.
pub fn run_receiver(
    sockets: &[ListenSocket],
    sock: usize,
    handler: &mut dyn SipHandler,
    stop: &AtomicBool,
) -> bool {
    match sockets.iter().filter(|s| s.sctp().is_some()).nth(sock) {
        Some(s) => {
            receive_loop(s, handler, stop);
            true
        }
        None => false,
    }
}

/// Receives on the SCTP socket `sock` until `stop` is set, handing every
/// message to `handler` as a datagram (SIP over SCTP frames one message
/// per SCTP message). A panicking handler is logged and the loop goes on.
pub fn receive_loop(sock: &ListenSocket, handler: &mut dyn SipHandler, stop: &AtomicBool) {
    let Some(s) = sock.sctp() else {
        log::error!("sctp receive_loop on non-sctp socket {sock}");
        return;
    };
    if let Err(e) = s.set_read_timeout(STOP_POLL) {
        log::warn!("cannot set receive timeout on {sock}: {e}");
    }
    let mut buf = vec![0u8; BUF_SIZE];
    while !stop.load(Ordering::Relaxed) {
        match s.recv(&mut buf) {
            Ok((n, src, info)) => {
                let data = &buf[..n];
                log::trace!(
                    "sctp: {n} bytes from {src} (assoc {}, stream {}) on {sock}",
                    info.assoc_id,
                    info.stream
                );
                if catch_unwind(AssertUnwindSafe(|| handler.on_datagram(data, src, sock))).is_err()
                {
                    log::error!("handler panicked on a {n} byte sctp message from {src}; dropped");
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => {}
                _ => {
                    log::error!("recvmsg on {sock}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sndrcvinfo_layout_round_trips() {
        let info = SndRcvInfo {
            stream: 3,
            flags: 0x10,
            ppid: 0x01020304,
            assoc_id: -7,
        };
        let b = info.to_bytes();
        assert_eq!(&b[0..2], &3u16.to_ne_bytes());
        assert_eq!(&b[28..32], &(-7i32).to_ne_bytes());
        assert_eq!(SndRcvInfo::from_bytes(&b), Some(info));
        assert_eq!(SndRcvInfo::from_bytes(&b[..20]), None);
    }

    #[test]
    fn cmsg_encoding_matches_libc_macros() {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(SNDRCVINFO_LEN as u32) as usize,
                libc::CMSG_LEN(SNDRCVINFO_LEN as u32) as usize,
            )
        };
        assert_eq!(SNDRCV_SPACE, space);
        let info = SndRcvInfo {
            assoc_id: 42,
            ..SndRcvInfo::default()
        };
        let b = encode_sndrcv(info);
        assert_eq!(usize::from_ne_bytes(b[..8].try_into().unwrap()), len);
        assert_eq!(decode_sndrcv(&b), Some(info));
        // after another control message, still found
        let mut two = vec![0u8; 0];
        let other_len = CMSG_HDR + 4;
        let mut other = vec![0u8; cmsg_align(other_len)];
        other[..8].copy_from_slice(&other_len.to_ne_bytes());
        other[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        two.extend_from_slice(&other);
        two.extend_from_slice(&b);
        assert_eq!(decode_sndrcv(&two), Some(info));
        // garbage lengths end the walk instead of reading past the end
        let mut bad = b;
        bad[..8].copy_from_slice(&999usize.to_ne_bytes());
        assert_eq!(decode_sndrcv(&bad), None);
        assert_eq!(decode_sndrcv(&[]), None);
    }

    #[test]
    fn without_kernel_support_the_error_says_modprobe() {
        match check_kernel() {
            Ok(()) => {
                // a kernel with SCTP: a real socket binds and talks
                let s = SctpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let a = s.local_addr().unwrap();
                let c = SctpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                c.send_to(b"hello", a).unwrap();
                s.set_read_timeout(Duration::from_secs(2)).unwrap();
                let mut buf = [0u8; 64];
                let (n, src, _) = s.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"hello");
                assert_eq!(src.port(), c.local_addr().unwrap().port());
            }
            Err(e) => {
                eprintln!("skipped the real SCTP part: {e}");
                assert!(e.to_string().contains("modprobe sctp"), "{e}");
            }
        }
    }
}
