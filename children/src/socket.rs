//! Listen sockets, bound in main before the fork so every child inherits
//! them (`socket_info` + `udp_init`/`tcp_init` of SER).

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

use crate::sctp::SctpSocket;
use crate::Error;

/// SER's transport protocols (ordered as SER lists sockets: UDP first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP (one-to-many sockets, [`crate::sctp`]).
    Sctp,
}

impl Proto {
    /// Parses `udp`, `tcp`, `tls`, `sctp` (any case).
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            "tls" => Some(Proto::Tls),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
enum Inner {
    Udp(UdpSocket),
    Tcp(TcpListener),
    Sctp(SctpSocket),
}

/// A bound listen socket.
#[derive(Debug)]
pub struct ListenSocket {
    proto: Proto,
    addr: SocketAddr,
    name: String,
    inner: Inner,
}

/// SER's `MAX_RECV_BUFFER_SIZE`: the default ceiling of receive buffer
/// probing (`-b`).
pub const MAX_RECV_BUFFER_SIZE: usize = 262_144;

impl ListenSocket {
    /// Binds `proto` on `addr`. UDP sockets get their receive buffer raised
    /// towards `rcvbuf_max` (SER's probing, `-b`).
    pub fn bind(proto: Proto, addr: SocketAddr, rcvbuf_max: usize) -> Result<Self, Error> {
        let what = || format!("bind {proto}:{}", addr_name(addr));
        let inner = match proto {
            Proto::Udp => {
                let s = UdpSocket::bind(addr).map_err(|e| Error::io(what(), e))?;
                probe_rcvbuf(&s, rcvbuf_max);
                Inner::Udp(s)
            }
            Proto::Tcp | Proto::Tls => {
                Inner::Tcp(TcpListener::bind(addr).map_err(|e| Error::io(what(), e))?)
            }
            Proto::Sctp => Inner::Sctp(SctpSocket::bind(addr)?),
        };
        let addr = match &inner {
            Inner::Udp(s) => s.local_addr(),
            Inner::Tcp(s) => s.local_addr(),
            Inner::Sctp(s) => s.local_addr(),
        }
        .map_err(|e| Error::io(what(), e))?;
        Ok(ListenSocket {
            proto,
            addr,
            name: addr_name(addr),
            inner,
        })
    }

    /// The protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SER's name of the socket: `127.0.0.1:5060`, `[::1]:5060`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP socket, if this is one.
    pub fn udp(&self) -> Option<&UdpSocket> {
        match &self.inner {
            Inner::Udp(s) => Some(s),
            _ => None,
        }
    }

    /// The SCTP socket, if this is one.
    pub fn sctp(&self) -> Option<&SctpSocket> {
        match &self.inner {
            Inner::Sctp(s) => Some(s),
            _ => None,
        }
    }

    /// A stream transport (TCP or TLS) served by tcp main and its workers.
    pub fn is_stream(&self) -> bool {
        matches!(self.proto, Proto::Tcp | Proto::Tls)
    }

    /// The TCP listener, if this is one.
    pub fn tcp(&self) -> Option<&TcpListener> {
        match &self.inner {
            Inner::Tcp(s) => Some(s),
            _ => None,
        }
    }

    /// Sends a datagram from this (UDP) socket, or one message from this
    /// SCTP socket: the way replies and forwards leave through an
    /// inherited socket.
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> std::io::Result<usize> {
        match &self.inner {
            Inner::Udp(s) => s.send_to(buf, dst),
            Inner::Sctp(s) => s.send_to(buf, dst),
            Inner::Tcp(_) => Err(std::io::Error::other("send_to on a tcp socket")),
        }
    }
}

impl fmt::Display for ListenSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.name)
    }
}

static SOCKETS: OnceLock<&'static [ListenSocket]> = OnceLock::new();

/// Makes the bound sockets the server's socket list for the rest of its
/// life, in every process (children inherit it): replies, forwards and
/// timers send through [`all`]. Called once in main, before forking.
pub fn install(sockets: Vec<ListenSocket>) -> Result<&'static [ListenSocket], Error> {
    let list: &'static [ListenSocket] = Vec::leak(sockets);
    SOCKETS.set(list).map_err(|_| Error::Unsupported {
        what: "installing sockets twice".into(),
    })?;
    Ok(list)
}

/// The installed sockets (empty before [`install`]).
pub fn all() -> &'static [ListenSocket] {
    SOCKETS.get().copied().unwrap_or(&[])
}

/// The installed socket `addr` on `proto`, e.g. to send from a given
/// address.
pub fn find(proto: Proto, addr: SocketAddr) -> Option<&'static ListenSocket> {
    all().iter().find(|s| s.proto == proto && s.addr == addr)
}

/// `127.0.0.1:5060` / `[::1]:5060`.
pub fn addr_name(addr: SocketAddr) -> String {
    addr.to_string()
}

/// Raises SO_RCVBUF step by step up to `max` and keeps what the OS grants;
/// never lowers the OS default.
fn probe_rcvbuf(s: &UdpSocket, max: usize) {
    let fd = s.as_fd();
    let start = getsockopt(&fd, sockopt::RcvBuf).unwrap_or(0);
    let mut granted = start;
    let mut want = start.max(4096);
    while want < max {
        want = (want * 2).min(max);
        if setsockopt(&fd, sockopt::RcvBuf, &want).is_err() {
            break;
        }
        // Linux reports twice the asked size; a smaller value means the
        // OS ceiling (rmem_max) was hit.
        let now = getsockopt(&fd, sockopt::RcvBuf).unwrap_or(granted);
        if now <= granted {
            break;
        }
        granted = now;
    }
    // Sizes are as the kernel reports them (twice what was set).
    log::debug!("udp receive buffer: {start} -> {granted} (probed up to {max})");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_udp_port_zero_gets_real_port() {
        let s = ListenSocket::bind(Proto::Udp, "127.0.0.1:0".parse().unwrap(), 65536).unwrap();
        assert_ne!(s.addr().port(), 0);
        assert!(s.name().starts_with("127.0.0.1:"));
        assert!(s.udp().is_some() && s.tcp().is_none());
    }

    #[test]
    fn tls_binds_a_stream_listener() {
        let s = ListenSocket::bind(Proto::Tls, "127.0.0.1:0".parse().unwrap(), 0).unwrap();
        assert!(s.is_stream() && s.tcp().is_some());
    }

    #[test]
    fn sctp_binds_or_names_the_missing_kernel_support() {
        match ListenSocket::bind(Proto::Sctp, "127.0.0.1:0".parse().unwrap(), 0) {
            Ok(s) => assert!(s.sctp().is_some() && !s.is_stream()),
            Err(e) => assert!(e.to_string().contains("modprobe sctp"), "{e}"),
        }
    }

    #[test]
    fn proto_names() {
        assert_eq!(Proto::parse("UDP"), Some(Proto::Udp));
        assert_eq!(Proto::parse("x"), None);
    }
}
