//! Sending: the [`Transport`] the spine implements (UDP sockets inherited by
//! every child, TCP via tcp main), and what the engine knows of our own
//! addresses (`myself`).

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Transport protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// Upper-case name as in Via and `proto == UDP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
            Proto::Sctp => "SCTP",
        }
    }

    /// From a name, any case.
    pub fn from_name(s: &str) -> Option<Proto> {
        Some(match s.to_ascii_lowercase().as_str() {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            "tls" => Proto::Tls,
            "sctp" => Proto::Sctp,
            _ => return None,
        })
    }
}

/// Where to send a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// Protocol.
    pub proto: Proto,
    /// Peer address.
    pub addr: SocketAddr,
    /// Our socket to send from (`force_send_socket`, or the one the request came in on).
    pub send_sock: Option<SocketAddr>,
}

/// Sends SIP buffers; implemented by the spine over its inherited sockets.
pub trait Transport: Send + Sync {
    /// Send one whole message.
    fn send(&self, buf: &[u8], dst: &Dest) -> io::Result<()>;
}

/// A transport that records what would be sent (tests).
#[derive(Debug, Default)]
pub struct Recorder {
    sent: Mutex<Vec<(Dest, Vec<u8>)>>,
}

impl Recorder {
    /// Take everything sent so far.
    pub fn take(&self) -> Vec<(Dest, Vec<u8>)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Transport for Recorder {
    fn send(&self, buf: &[u8], dst: &Dest) -> io::Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((*dst, buf.to_vec()));
        Ok(())
    }
}

/// One listening socket as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Protocol.
    pub proto: Proto,
    /// Bound address.
    pub addr: SocketAddr,
    /// `advertise` host/port (or `set_advertised_*` defaults), used in Via / Record-Route.
    pub advertise: Option<(String, u16)>,
}

/// A module's extra "is this host ours" check (Kamailio's check_self
/// callbacks: domain's `register_myself`); set once, in main before forking.
static EXTRA_SELF: std::sync::OnceLock<fn(&str) -> bool> = std::sync::OnceLock::new();

/// Registers `f` as the extra `myself` check (the first registration wins).
pub fn register_myself_check(f: fn(&str) -> bool) {
    let _ = EXTRA_SELF.set(f);
}

/// Our addresses and aliases: what `myself` matches.
#[derive(Debug, Clone, Default)]
pub struct Myself {
    /// `(host lower-case, port; None = any)`; IPv6 without brackets.
    entries: Vec<(String, Option<u16>)>,
}

impl Myself {
    /// Add an address or alias (`alias=`, listen addresses, advertised names).
    pub fn add(&mut self, host: &str, port: Option<u16>) {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.entries.contains(&(h.clone(), port)) {
            self.entries.push((h, port));
        }
    }

    /// Whether `host:port` is ours (port None = 5060, as SER's `check_self`),
    /// or a local domain of a module that registered one (any port).
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        let p = port.unwrap_or(5060);
        self.entries
            .iter()
            .any(|(eh, ep)| eh.eq_ignore_ascii_case(h) && ep.is_none_or(|ep| ep == p))
            || EXTRA_SELF.get().is_some_and(|f| f(h))
    }

    /// Whether a URI's host:port is ours.
    pub fn matches_uri(&self, uri: &str) -> bool {
        match ser_sip::parse_uri(uri.as_bytes()) {
            Ok(u) => {
                let host = String::from_utf8_lossy(u.host.of(uri.as_bytes())).into_owned();
                let port = u.port.or(if u.scheme == ser_sip::Scheme::Sips {
                    Some(5061)
                } else {
                    None
                });
                !host.is_empty() && self.matches(&host, port)
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn myself_matching() {
        let mut m = Myself::default();
        m.add("127.0.0.1", Some(5060));
        m.add("Example.COM", None);
        m.add("[::1]", Some(5070));
        assert!(m.matches("127.0.0.1", None));
        assert!(!m.matches("127.0.0.1", Some(5070)));
        assert!(m.matches("example.com", Some(9999)));
        assert!(m.matches("::1", Some(5070)));
        assert!(m.matches_uri("sip:alice@127.0.0.1"));
        assert!(m.matches_uri("sip:bob@example.com:5080;transport=udp"));
        assert!(!m.matches_uri("sip:bob@other.org"));
        assert!(!m.matches_uri("garbage"));
    }
}
