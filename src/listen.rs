//! Listen addresses: SER's `[proto:]addr_lst[:port]` syntax (`-l` and
//! `listen=`), and their resolution to socket addresses (interface names
//! via getifaddrs, host names via the resolver).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use ser_children::Proto;

/// Most sockets one server listens on (SER's `MAX_LISTEN`).
pub const MAX_LISTEN: usize = 16;

/// One `-l`/`listen=` value, unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// `udp:`, `tcp:`..., `None` = every enabled protocol.
    pub proto: Option<Proto>,
    /// Hosts, IP addresses or interface names (IPv6 without brackets).
    pub hosts: Vec<String>,
    /// Port, `None` = the `port` global (5060).
    pub port: Option<u16>,
}

impl ListenSpec {
    /// Parses `[proto:]addr_lst[:port]` where `addr_lst` is one address or
    /// `(a, b, ...)`, and IPv6 addresses are written in brackets.
    pub fn parse(text: &str) -> Result<ListenSpec, String> {
        let s = text.trim();
        let (proto, rest) = match s.split_once(':') {
            Some((p, rest)) if Proto::parse(p).is_some() && !p.is_empty() => {
                (Proto::parse(p), rest)
            }
            _ => (None, s),
        };
        let (hosts, after) = if let Some(inner) = rest.strip_prefix('(') {
            let close = inner.find(')').ok_or("missing ')'")?;
            let hosts: Vec<String> = inner[..close]
                .split(',')
                .map(|h| unbracket(h.trim()))
                .collect::<Result<_, _>>()?;
            (hosts, &inner[close + 1..])
        } else if rest.starts_with('[') {
            let close = rest.find(']').ok_or("missing ']'")?;
            (vec![unbracket(&rest[..=close])?], &rest[close + 1..])
        } else if rest.parse::<Ipv6Addr>().is_ok() {
            (vec![rest.to_string()], "")
        } else {
            match rest.split_once(':') {
                Some((h, _)) => (vec![h.to_string()], &rest[h.len()..]),
                None => (vec![rest.to_string()], ""),
            }
        };
        if hosts.iter().any(|h| h.is_empty()) {
            return Err("empty address".into());
        }
        let port = match after {
            "" => None,
            p => {
                let p = p
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected '{p}'"))?;
                Some(p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?)
            }
        };
        Ok(ListenSpec { proto, hosts, port })
    }
}

fn unbracket(h: &str) -> Result<String, String> {
    match h.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or("missing ']'")?;
            inner
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("bad IPv6 address '{inner}'"))?;
            Ok(inner.to_string())
        }
        None => Ok(h.to_string()),
    }
}

/// Addresses of the interface named `name` (IPv6 link-local ones left out:
/// they cannot be bound without a scope).
pub fn interface_addrs(name: Option<&str>) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    for a in addrs {
        if name.is_some_and(|n| n != a.interface_name) {
            continue;
        }
        let Some(sa) = a.address else { continue };
        if let Some(v4) = sa.as_sockaddr_in() {
            out.insert(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            let ip = v6.ip();
            if ip.segments()[0] & 0xffc0 != 0xfe80 {
                out.insert(IpAddr::V6(ip));
            }
        }
    }
    out.into_iter().collect()
}

/// Resolves one host of a listen spec: an IP, an interface, or a name.
pub fn resolve_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let ifs = interface_addrs(Some(host));
    if !ifs.is_empty() {
        return Ok(ifs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .collect();
    // A name resolving to both families is bound once per address (SER
    // takes the first); keep IPv4 first as the resolver orders them.
    addrs
        .first()
        .map(|a| vec![*a])
        .ok_or_else(|| format!("cannot resolve '{host}'"))
}

/// A resolved address to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BindAddr {
    /// Protocol.
    pub proto: Proto,
    /// Address.
    pub addr: SocketAddr,
}

/// SER's `tls_port_no` default.
pub const TLS_PORT: u16 = 5061;

/// What a spec without protocol listens on besides UDP and TCP, and the
/// TLS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extra {
    /// `tls_port_no`: the port of TLS specs that give none.
    pub tls_port: u16,
    /// `enable_tls=yes`: a spec without protocol nor port listens on TLS
    /// too, on `tls_port` (SER's `listen=addr` with tls enabled).
    pub tls: bool,
    /// SCTP is enabled (and the kernel has it): SCTP too.
    pub sctp: bool,
}

impl Default for Extra {
    fn default() -> Self {
        Extra {
            tls_port: TLS_PORT,
            tls: false,
            sctp: false,
        }
    }
}

/// Turns the listen specs into the list of sockets to bind, in spec order,
/// without duplicates. No specs = every interface address (SER's default).
/// A spec without protocol gives UDP plus TCP unless `disable_tcp`.
pub fn resolve_all(
    specs: &[ListenSpec],
    default_port: u16,
    disable_tcp: bool,
) -> Result<Vec<BindAddr>, String> {
    resolve_all_with(specs, default_port, disable_tcp, Extra::default())
}

/// [`resolve_all`], a spec without protocol also giving TLS and SCTP as
/// `extra` says. TLS comes only on specs without a port: with one, TCP
/// holds it already (SER would fail to bind TLS there).
pub fn resolve_all_with(
    specs: &[ListenSpec],
    default_port: u16,
    disable_tcp: bool,
    extra: Extra,
) -> Result<Vec<BindAddr>, String> {
    let everything;
    let specs = if specs.is_empty() {
        let hosts: Vec<String> = interface_addrs(None)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        if hosts.is_empty() {
            return Err("no interface address to listen on".into());
        }
        everything = [ListenSpec {
            proto: None,
            hosts,
            port: None,
        }];
        &everything[..]
    } else {
        specs
    };
    let mut out: Vec<BindAddr> = Vec::new();
    for spec in specs {
        let mut protos: Vec<Proto> = match spec.proto {
            // TLS runs over TCP: -T disables both
            Some(p @ (Proto::Tcp | Proto::Tls)) if disable_tcp => {
                let port = spec.port.map(|n| format!(":{n}")).unwrap_or_default();
                log::warn!(
                    "listen {p}:{}{port}: ignored, TCP is disabled (disable_tcp=yes or -T)",
                    spec.hosts.join(",")
                );
                Vec::new()
            }
            Some(p) => vec![p],
            None if disable_tcp => vec![Proto::Udp],
            None => vec![Proto::Udp, Proto::Tcp],
        };
        if spec.proto.is_none() && extra.sctp {
            protos.push(Proto::Sctp);
        }
        // the TLS port of a spec without protocol nor port
        let tls_port = match (spec.proto, spec.port) {
            (None, None) if extra.tls && !disable_tcp => Some(extra.tls_port),
            _ => None,
        };
        for host in &spec.hosts {
            let port = spec.port.unwrap_or(match spec.proto {
                Some(Proto::Tls) => extra.tls_port,
                _ => default_port,
            });
            for addr in resolve_host(host, port)? {
                let tls = tls_port.map(|p| BindAddr {
                    proto: Proto::Tls,
                    addr: SocketAddr::new(addr.ip(), p),
                });
                for b in protos
                    .iter()
                    .map(|p| BindAddr { proto: *p, addr })
                    .chain(tls)
                {
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
            }
        }
    }
    if out.len() > MAX_LISTEN {
        return Err(format!(
            "too many listen sockets ({}, at most {MAX_LISTEN})",
            out.len()
        ));
    }
    // UDP sockets first, as SER's lists (udp_listen before tcp_listen).
    out.sort_by_key(|b| b.proto);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: Option<Proto>, hosts: &[&str], port: Option<u16>) -> ListenSpec {
        ListenSpec {
            proto: p,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            port,
        }
    }

    #[test]
    fn parses_ser_forms() {
        let ok = |s| ListenSpec::parse(s).unwrap();
        assert_eq!(
            ok("udp:127.0.0.1:5080"),
            spec(Some(Proto::Udp), &["127.0.0.1"], Some(5080))
        );
        assert_eq!(ok("127.0.0.1"), spec(None, &["127.0.0.1"], None));
        assert_eq!(ok("eth0:5062"), spec(None, &["eth0"], Some(5062)));
        assert_eq!(ok("sctp:(eth0)"), spec(Some(Proto::Sctp), &["eth0"], None));
        assert_eq!(
            ok("(eth0, eth1, 127.0.0.1):5065"),
            spec(None, &["eth0", "eth1", "127.0.0.1"], Some(5065))
        );
        assert_eq!(
            ok("tcp:[::1]:5070"),
            spec(Some(Proto::Tcp), &["::1"], Some(5070))
        );
        assert_eq!(ok("[::1]"), spec(None, &["::1"], None));
        assert_eq!(ok("::1"), spec(None, &["::1"], None));
        assert_eq!(
            ok("udp:localhost"),
            spec(Some(Proto::Udp), &["localhost"], None)
        );
        assert_eq!(ok("(udp)"), spec(None, &["udp"], None));
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "udp:1.2.3.4:70000",
            "(a, b",
            "[::1",
            "[zz]:5060",
            "a:b",
            "udp:",
            "(a,):5",
        ] {
            assert!(ListenSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_loopback_interface_and_ip() {
        let lo = resolve_host("lo", 5060).unwrap();
        assert!(lo.contains(&"127.0.0.1:5060".parse().unwrap()));
        let all = resolve_all(&[spec(None, &["127.0.0.1"], Some(5070))], 5060, false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].proto, Proto::Udp);
        // -T: no TLS either (it runs over TCP)
        let tls = resolve_all(&[spec(Some(Proto::Tls), &["127.0.0.1"], None)], 5061, true);
        assert_eq!(tls.unwrap(), []);
        let udp = resolve_all(&[spec(None, &["127.0.0.1"], None)], 5061, true).unwrap();
        // enable_tls: specs without protocol and port get TLS on tls_port_no
        let extra = Extra {
            tls_port: 5061,
            tls: true,
            sctp: true,
        };
        let all = resolve_all_with(
            &[
                spec(None, &["127.0.0.1"], None),
                spec(None, &["127.0.0.2"], Some(5070)),
                spec(Some(Proto::Tls), &["127.0.0.3"], None),
            ],
            5060,
            false,
            extra,
        )
        .unwrap();
        let got: Vec<String> = all
            .iter()
            .map(|b| format!("{}:{}", b.proto, b.addr))
            .collect();
        assert_eq!(
            got,
            [
                "udp:127.0.0.1:5060",
                "udp:127.0.0.2:5070",
                "tcp:127.0.0.1:5060",
                "tcp:127.0.0.2:5070",
                "tls:127.0.0.1:5061",
                "tls:127.0.0.3:5061",
                "sctp:127.0.0.1:5060",
                "sctp:127.0.0.2:5070",
            ]
        );
        assert_eq!(
            udp,
            [BindAddr {
                proto: Proto::Udp,
                addr: "127.0.0.1:5061".parse().unwrap()
            }]
        );
    }
}
