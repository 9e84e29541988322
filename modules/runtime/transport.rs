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

    /// Whether `host:port` is ours (port None = 5060, as SER's `check_self`).
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        let p = port.unwrap_or(5060);
        self.entries
            .iter()
            .any(|(eh, ep)| eh.eq_ignore_ascii_case(h) && ep.is_none_or(|ep| ep == p))
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

/// DNS SRV for SIP targets (RFC 3263 §4.2, without NAPTR): a minimal query
/// over UDP to the first `nameserver` of /etc/resolv.conf, answers cached
/// per process for their TTL (at most 5 minutes).
pub mod srv {
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// How long one query may take.
    pub const TIMEOUT: Duration = Duration::from_millis(1500);
    const MAX_TTL: u32 = 300;

    /// One SRV record.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Record {
        /// Priority (lower first).
        pub priority: u16,
        /// Weight (higher first among equal priorities; no random choice).
        pub weight: u16,
        /// Port.
        pub port: u16,
        /// Target host name (no trailing dot).
        pub target: String,
    }

    type Cache = HashMap<String, (Vec<Record>, Instant)>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

    /// The query for `name` (type SRV, class IN, recursion desired).
    pub fn query(id: u16, name: &str) -> Option<Vec<u8>> {
        let mut q = Vec::with_capacity(name.len() + 18);
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.trim_end_matches('.').split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..64).contains(l))?;
            q.push(len);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&[0, 33, 0, 1]);
        Some(q)
    }

    fn be16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }

    /// A (possibly compressed) name at `at`; returns it and the offset after
    /// it in the record. Pointer chains are bounded.
    fn name_at(b: &[u8], mut at: usize) -> Option<(String, usize)> {
        let mut out = String::new();
        let mut end = None;
        for _ in 0..64 {
            let len = *b.get(at)? as usize;
            if len == 0 {
                return Some((out, end.unwrap_or(at + 1)));
            }
            if len & 0xc0 == 0xc0 {
                let ptr = (be16(b, at)? & 0x3fff) as usize;
                end.get_or_insert(at + 2);
                at = ptr;
                continue;
            }
            let label = b.get(at + 1..at + 1 + len)?;
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(std::str::from_utf8(label).ok()?);
            at += 1 + len;
        }
        None
    }

    /// The SRV answers of a response to query `id`, and their smallest TTL.
    pub fn parse_response(id: u16, b: &[u8]) -> Option<(Vec<Record>, u32)> {
        if be16(b, 0)? != id || b.get(2)? & 0x80 == 0 {
            return None;
        }
        let rcode = b.get(3)? & 0x0f;
        let qd = be16(b, 4)?;
        let an = be16(b, 6)?;
        if rcode != 0 {
            return Some((Vec::new(), 60));
        }
        let mut at = 12;
        for _ in 0..qd {
            at = name_at(b, at)?.1 + 4;
        }
        let mut out = Vec::new();
        let mut ttl = MAX_TTL;
        for _ in 0..an {
            at = name_at(b, at)?.1;
            let rtype = be16(b, at)?;
            let rttl = u32::from_be_bytes(b.get(at + 4..at + 8)?.try_into().ok()?);
            let rdlen = be16(b, at + 8)? as usize;
            let rdata = at + 10;
            if rtype == 33 && rdlen >= 7 {
                out.push(Record {
                    priority: be16(b, rdata)?,
                    weight: be16(b, rdata + 2)?,
                    port: be16(b, rdata + 4)?,
                    target: name_at(b, rdata + 6)?.0,
                });
                ttl = ttl.min(rttl);
            }
            at = rdata + rdlen;
        }
        out.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
        Some((out, ttl))
    }

    /// The first `nameserver` of /etc/resolv.conf.
    pub fn nameserver() -> Option<SocketAddr> {
        let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.parse::<IpAddr>().ok())
                .flatten()
                .map(|ip| SocketAddr::new(ip, 53))
        })
    }

    /// Asks `server` for the SRV records of `name` (no cache).
    pub fn lookup_via(server: SocketAddr, name: &str) -> std::io::Result<(Vec<Record>, u32)> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        } else {
            "[::]:0".parse().map_err(std::io::Error::other)?
        };
        let s = UdpSocket::bind(bind)?;
        s.connect(server)?;
        // a query id no one on the path can guess cheaply
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u16)
            ^ (std::process::id() as u16);
        let q = query(id, name).ok_or_else(|| std::io::Error::other("bad DNS name"))?;
        let end = Instant::now() + TIMEOUT;
        s.send(&q)?;
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "DNS timeout",
                ));
            }
            s.set_read_timeout(Some(left))?;
            let n = s.recv(&mut buf)?;
            if let Some(r) = parse_response(id, &buf[..n]) {
                return Ok(r);
            }
        }
    }

    /// Whether `host` is a name the system resolves locally (/etc/hosts,
    /// `localhost`): no SRV query for those.
    fn is_local_name(host: &str) -> bool {
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        std::fs::read_to_string("/etc/hosts").is_ok_and(|t| {
            t.lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .any(|l| {
                    l.split_whitespace()
                        .skip(1)
                        .any(|n| n.eq_ignore_ascii_case(host))
                })
        })
    }

    /// SRV targets for `_service._proto.host` (cached), empty when there are
    /// none, when the host is an IP or a local name, or when DNS fails.
    pub fn lookup(service: &str, proto: &str, host: &str) -> Vec<Record> {
        if host.parse::<IpAddr>().is_ok()
            || host.starts_with('[')
            || !host.contains('.')
            || is_local_name(host)
        {
            return Vec::new();
        }
        let name = format!("_{service}._{proto}.{}", host.to_ascii_lowercase());
        let now = Instant::now();
        {
            let g = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((r, until)) = g.as_ref().and_then(|c| c.get(&name)) {
                if *until > now {
                    return r.clone();
                }
            }
        }
        let Some(server) = nameserver() else {
            return Vec::new();
        };
        let (records, ttl) = match lookup_via(server, &name) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("SRV {name}: {e}");
                (Vec::new(), 30)
            }
        };
        let mut g = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.get_or_insert_with(HashMap::new);
        if c.len() > 1024 {
            c.clear();
        }
        c.insert(
            name,
            (
                records.clone(),
                now + Duration::from_secs(u64::from(ttl.min(MAX_TTL))),
            ),
        );
        records
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn answer(id: u16, name: &str) -> Vec<u8> {
            let q = query(id, name).unwrap();
            let mut r = q.clone();
            r[2] = 0x81;
            r[3] = 0x80;
            r[7] = 2; // two answers
            for (prio, weight, port, target) in [
                (20u16, 0u16, 5080u16, "b.example"),
                (10, 5, 5070, "a.example"),
            ] {
                r.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 100]);
                let mut rd = Vec::new();
                rd.extend_from_slice(&prio.to_be_bytes());
                rd.extend_from_slice(&weight.to_be_bytes());
                rd.extend_from_slice(&port.to_be_bytes());
                for l in target.split('.') {
                    rd.push(l.len() as u8);
                    rd.extend_from_slice(l.as_bytes());
                }
                rd.push(0);
                r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
                r.extend_from_slice(&rd);
            }
            r
        }

        #[test]
        fn parses_and_orders_srv_answers() {
            let r = answer(7, "_sip._udp.example.org");
            let (recs, ttl) = parse_response(7, &r).unwrap();
            assert_eq!(ttl, 100);
            assert_eq!(recs[0].target, "a.example");
            assert_eq!(recs[0].port, 5070);
            assert_eq!(recs[1].port, 5080);
            assert!(parse_response(8, &r).is_none(), "wrong id");
            assert!(parse_response(7, &r[..r.len() - 3]).is_none(), "truncated");
        }

        #[test]
        fn queries_a_loopback_server() {
            let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = srv.local_addr().unwrap();
            let t = std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                let (n, from) = srv.recv_from(&mut buf).unwrap();
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                assert_eq!(
                    &buf[12..n - 4],
                    &query(0, "_sip._tcp.x.org").unwrap()[12..n - 4]
                );
                srv.send_to(&answer(id, "_sip._tcp.x.org"), from).unwrap();
            });
            let (recs, _) = lookup_via(addr, "_sip._tcp.x.org").unwrap();
            t.join().unwrap();
            assert_eq!(recs.len(), 2);
        }

        #[test]
        fn no_query_for_ips_and_local_names() {
            assert!(lookup("sip", "udp", "127.0.0.1").is_empty());
            assert!(lookup("sip", "udp", "localhost").is_empty());
            assert!(lookup("sip", "udp", "[::1]").is_empty());
            assert!(query(1, &"a".repeat(64)).is_none());
        }
    }
}
