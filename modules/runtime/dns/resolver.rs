//! Asking the nameservers: /etc/resolv.conf (nameservers, `search`,
//! `domain`, `options ndots`), /etc/hosts, and UDP queries with SER's
//! `dns_retr_time`/`dns_retr_no`/`dns_servers_no`, falling back to TCP when
//! an answer comes back truncated.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::wire::{self, RrType};

/// What /etc/resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvConf {
    /// `nameserver` lines, port 53.
    pub servers: Vec<SocketAddr>,
    /// `search` (or `domain`) suffixes.
    pub search: Vec<String>,
    /// `options ndots:n` (default 1).
    pub ndots: usize,
}

impl ResolvConf {
    /// Parses the text of a resolv.conf.
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf {
            ndots: 1,
            ..ResolvConf::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => {
                    if let Some(ip) = w.next().and_then(|s| s.parse::<IpAddr>().ok()) {
                        rc.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("search") | Some("domain") => {
                    rc.search = w
                        .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                        .collect();
                }
                Some("options") => {
                    for o in w {
                        if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            rc.ndots = n;
                        }
                    }
                }
                _ => {}
            }
        }
        rc
    }

    /// /etc/resolv.conf (re-read each time: it is small, and a test may
    /// bind-mount another one).
    pub fn system() -> ResolvConf {
        ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
    }
}

/// The addresses /etc/hosts gives `name`.
pub fn hosts_lookup(hosts_text: &str, name: &str) -> Vec<IpAddr> {
    hosts_text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let ip = w.next()?.parse::<IpAddr>().ok()?;
            w.any(|n| n.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect()
}

/// How long a process keeps its copy of /etc/hosts (it is consulted on
/// every lookup, so it is not re-read per message).
const HOSTS_REFRESH: Duration = Duration::from_secs(5);

/// /etc/hosts's addresses of `name`.
pub fn system_hosts(name: &str) -> Vec<IpAddr> {
    use std::cell::RefCell;
    thread_local! {
        static HOSTS: RefCell<Option<(String, Instant)>> = const { RefCell::new(None) };
    }
    HOSTS.with(|h| {
        let mut h = h.borrow_mut();
        let stale = h
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() > HOSTS_REFRESH);
        if stale {
            let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            *h = Some((text, Instant::now()));
        }
        h.as_ref()
            .map(|(t, _)| hosts_lookup(t, name))
            .unwrap_or_default()
    })
}

/// Query settings (the `dns_*` core parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOpts {
    /// `dns_retr_time`: seconds before a retry.
    pub retr_time: u32,
    /// `dns_retr_no`: tries per server.
    pub retr_no: u32,
    /// `dns_servers_no`: how many of the nameservers to use.
    pub servers_no: u32,
    /// `dns_use_search_list`.
    pub use_search_list: bool,
    /// `dns_search_full_match`: the answer must name what was asked.
    pub search_full_match: bool,
}

impl Default for QueryOpts {
    fn default() -> Self {
        QueryOpts {
            retr_time: 2,
            retr_no: 2,
            servers_no: 3,
            use_search_list: true,
            search_full_match: true,
        }
    }
}

/// A query id no one off the path can guess cheaply.
fn query_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (t ^ (t >> 16) ^ std::process::id()) as u16
}

fn udp_exchange(server: SocketAddr, q: &[u8], id: u16, wait: Duration) -> io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(server)?;
    s.send(q)?;
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "DNS timeout"));
        }
        s.set_read_timeout(Some(left))?;
        let n = s.recv(&mut buf)?;
        // anything else (late answers to other queries) is ignored
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn tcp_exchange(server: SocketAddr, q: &[u8], wait: Duration) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, wait)?;
    s.set_read_timeout(Some(wait))?;
    s.set_write_timeout(Some(wait))?;
    let len = u16::try_from(q.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed)?;
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Asks the servers of `rc` for `name`/`ty` (no search list): the first
/// usable answer (NXDOMAIN included), or the last error.
pub fn query(
    rc: &ResolvConf,
    opts: &QueryOpts,
    name: &str,
    ty: RrType,
) -> io::Result<wire::Response> {
    let id = query_id();
    let q = wire::query(id, name, ty)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad DNS name"))?;
    let wait = Duration::from_secs(u64::from(opts.retr_time.max(1)));
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no nameserver in /etc/resolv.conf");
    let servers = rc.servers.iter().take(opts.servers_no.max(1) as usize);
    for _round in 0..opts.retr_no.max(1) {
        for &server in servers.clone() {
            let got = udp_exchange(server, &q, id, wait).and_then(|b| {
                let r = wire::parse(id, &b).map_err(io::Error::other)?;
                if r.truncated {
                    let b = tcp_exchange(server, &q, wait)?;
                    return wire::parse(id, &b).map_err(io::Error::other);
                }
                Ok(r)
            });
            match got {
                // SERVFAIL/REFUSED: try the next server
                Ok(r) if r.rcode == 0 || r.rcode == 3 => return Ok(r),
                Ok(r) => last = io::Error::other(format!("DNS rcode {} from {server}", r.rcode)),
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

/// The names to try for `name`: with fewer dots than `ndots`, the search
/// suffixes first, then the name itself (as the system resolver does).
pub fn candidates(rc: &ResolvConf, opts: &QueryOpts, name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !opts.use_search_list || rc.search.is_empty() || name.matches('.').count() >= rc.ndots {
        return vec![name];
    }
    let mut v: Vec<String> = rc.search.iter().map(|s| format!("{name}.{s}")).collect();
    v.push(name);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_hosts() {
        let rc = ResolvConf::parse(
            "# c\nnameserver 127.0.0.1\nnameserver ::1 # x\nnameserver bad\n\
             search a.test b.test\noptions ndots:2 rotate\n",
        );
        assert_eq!(rc.servers.len(), 2);
        assert_eq!(rc.servers[1], "[::1]:53".parse().unwrap());
        assert_eq!(rc.search, ["a.test", "b.test"]);
        assert_eq!(rc.ndots, 2);
        let o = QueryOpts::default();
        assert_eq!(
            candidates(&rc, &o, "h.x"),
            ["h.x.a.test", "h.x.b.test", "h.x"]
        );
        assert_eq!(candidates(&rc, &o, "h.x.y."), ["h.x.y"]);
        let no = QueryOpts {
            use_search_list: false,
            ..o
        };
        assert_eq!(candidates(&rc, &no, "h"), ["h"]);
        let hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# 1.2.3.4 gone\n";
        assert_eq!(hosts_lookup(hosts, "LOCALHOST").len(), 2);
        assert!(hosts_lookup(hosts, "gone").is_empty());
    }

    #[test]
    fn asks_a_loopback_server_and_falls_back_to_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = std::net::TcpListener::bind(addr).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            // truncated over UDP
            let mut r = wire::tests::answer(&buf[..n], &[]);
            r[2] |= 0x02;
            udp.send_to(&r, from).unwrap();
            let (mut c, _) = tcp.accept().unwrap();
            let mut lb = [0u8; 2];
            c.read_exact(&mut lb).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(lb))];
            c.read_exact(&mut q).unwrap();
            let r = wire::tests::answer(&q, &[(1, vec![10, 0, 0, 1])]);
            c.write_all(&(r.len() as u16).to_be_bytes()).unwrap();
            c.write_all(&r).unwrap();
        });
        let rc = ResolvConf {
            servers: vec![addr],
            search: vec![],
            ndots: 1,
        };
        let r = query(&rc, &QueryOpts::default(), "h.test", RrType::A).unwrap();
        t.join().unwrap();
        assert_eq!(r.answers.len(), 1);
    }

    #[test]
    fn silent_server_times_out_within_the_retry_budget() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rc = ResolvConf {
            servers: vec![udp.local_addr().unwrap()],
            search: vec![],
            ndots: 1,
        };
        let o = QueryOpts {
            retr_time: 1,
            retr_no: 1,
            ..QueryOpts::default()
        };
        let t0 = Instant::now();
        assert!(query(&rc, &o, "h.test", RrType::A).is_err());
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
