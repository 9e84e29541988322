//! RFC 3263 target selection: which transport, address and port a SIP
//! request (or a reply, by its Via, §5) goes to.
//!
//! * an IP address, or a name with a port: A/AAAA (transport as given,
//!   else UDP, TLS for `sips`);
//! * no port and no transport, `dns_try_naptr`: the NAPTR records of the
//!   domain (`SIP+D2U`, `SIP+D2T`, `SIP+D2S`, `SIPS+D2T`), by order, then
//!   by our transport preference, then by preference; each one's SRV name;
//! * no port: SRV `_sip._udp`, `_sip._tcp`, `_sips._tcp`, `_sip._sctp`
//!   (weighted choice per RFC 2782 with `dns_srv_lb`), each target's
//!   addresses;
//! * otherwise A/AAAA on 5060 (5061 for TLS).
//!
//! The result is every candidate in order, so a caller can fail over;
//! blacklisted destinations are moved behind the others.

use std::net::SocketAddr;

use super::wire::{Naptr, Rdata, RrType, Srv};
use super::{addresses, blacklist, config, lookup, LookupError};
use crate::runtime::transport::Proto;

/// One place to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Transport.
    pub proto: Proto,
    /// Address and port.
    pub addr: SocketAddr,
}

fn default_port(proto: Proto) -> u16 {
    if proto == Proto::Tls {
        5061
    } else {
        5060
    }
}

/// The SRV name of a transport for a domain.
pub fn srv_name(host: &str, proto: Proto, sips: bool) -> String {
    let (svc, tp) = match proto {
        Proto::Udp => ("sip", "udp"),
        Proto::Tcp if sips => ("sips", "tcp"),
        Proto::Tcp => ("sip", "tcp"),
        Proto::Tls => ("sips", "tcp"),
        Proto::Sctp => ("sip", "sctp"),
    };
    format!("_{svc}._{tp}.{host}")
}

/// The transport of a NAPTR service field (`None`: not SIP, or not one
/// `sips` allows).
pub fn naptr_proto(service: &str, sips: bool) -> Option<Proto> {
    let s = service.to_ascii_uppercase();
    Some(match s.as_str() {
        "SIPS+D2T" => Proto::Tls,
        "SIP+D2U" if !sips => Proto::Udp,
        "SIP+D2T" if !sips => Proto::Tcp,
        "SIP+D2S" if !sips => Proto::Sctp,
        _ => return None,
    })
}

fn pref(p: Proto) -> i32 {
    let prefs = config().prefs;
    match p {
        Proto::Udp => prefs[0],
        Proto::Tcp => prefs[1],
        Proto::Tls => prefs[2],
        Proto::Sctp => prefs[3],
    }
}

/// The usable NAPTRs (flag `s`, a SIP service, transport not disabled),
/// by order, then transport preference (`prefs`, higher first), then
/// preference.
pub fn order_naptr(
    records: &[Naptr],
    sips: bool,
    pref_of: impl Fn(Proto) -> i32,
) -> Vec<(Proto, String)> {
    let mut v: Vec<(&Naptr, Proto)> = records
        .iter()
        .filter(|n| n.flags.eq_ignore_ascii_case("s") && !n.replacement.is_empty())
        .filter_map(|n| Some((n, naptr_proto(&n.service, sips)?)))
        .filter(|(_, p)| pref_of(*p) >= 0)
        .collect();
    v.sort_by_key(|(n, p)| (n.order, -pref_of(*p), n.preference));
    v.into_iter()
        .map(|(n, p)| (p, n.replacement.clone()))
        .collect()
}

/// RFC 2782 order: by priority; within one priority, with `lb`, a weighted
/// random draw (`rand(n)` returns 0..=n) repeated over the remaining
/// records (weight 0 ones first in the running sum, so they are picked
/// rarely); without `lb`, by weight, highest first.
pub fn order_srv(records: &[Srv], lb: bool, mut rand: impl FnMut(u32) -> u32) -> Vec<Srv> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(sorted.len());
    for group in sorted.chunk_by(|a, b| a.priority == b.priority) {
        let mut left: Vec<Srv> = group.to_vec();
        if !lb {
            left.sort_by_key(|r| std::cmp::Reverse(r.weight));
            out.extend(left);
            continue;
        }
        left.sort_by_key(|r| r.weight != 0);
        while !left.is_empty() {
            let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rand(total);
            let mut run = 0;
            let i = left
                .iter()
                .position(|r| {
                    run += u32::from(r.weight);
                    run >= pick
                })
                .unwrap_or(0);
            out.push(left.remove(i));
        }
    }
    out
}

/// A cheap random number in `0..=n` (no crypto needed: load balancing).
fn random_upto(n: u32) -> u32 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                ^ (u64::from(std::process::id()) << 32)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % (u64::from(n) + 1)) as u32
    })
}

fn srv_targets(name: &str, proto: Proto) -> Result<Vec<Target>, LookupError> {
    let recs: Vec<Srv> = lookup(name, RrType::Srv)?
        .into_iter()
        .filter_map(|r| match r {
            Rdata::Srv(s) if !s.target.is_empty() && s.target != "." => Some(s),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for s in order_srv(&recs, config().srv_lb, random_upto) {
        match addresses(&s.target) {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| Target {
                proto,
                addr: SocketAddr::new(ip, s.port),
            })),
            Err(e) => log::debug!("dns: SRV target {}: {e}", s.target),
        }
    }
    if out.is_empty() {
        Err(LookupError::NotFound)
    } else {
        Ok(out)
    }
}

/// Every candidate destination of a SIP URI's (or Via's) host, in RFC 3263
/// order, blacklisted ones last. `port`/`proto` as the URI gives them;
/// `sips` for a `sips:` URI.
pub fn resolve_sip(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<Vec<Target>, String> {
    let mut v = candidates(host, port, proto, sips)?;
    if blacklist::enabled() {
        // stable: keeps the RFC 3263 order within both groups
        v.sort_by_key(|t| blacklist::is_listed(t.proto, t.addr));
    }
    Ok(v)
}

fn candidates(
    host: &str,
    port: Option<u16>,
    proto: Option<Proto>,
    sips: bool,
) -> Result<Vec<Target>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err("destination has no host".into());
    }
    let fixed = proto.or(sips.then_some(Proto::Tls));
    let is_ip = bare.parse::<std::net::IpAddr>().is_ok();
    let direct = |p: Proto, port: u16| -> Result<Vec<Target>, String> {
        let ips = addresses(bare).map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
        Ok(ips
            .into_iter()
            .map(|ip| Target {
                proto: p,
                addr: SocketAddr::new(ip, port),
            })
            .collect())
    };
    if let Some(port) = port {
        let p = fixed.unwrap_or(Proto::Udp);
        return direct(p, port);
    }
    if is_ip || !bare.contains('.') {
        let p = fixed.unwrap_or(Proto::Udp);
        return direct(p, default_port(p));
    }
    let c = config();
    if fixed.is_none() && c.try_naptr {
        if let Ok(recs) = lookup(bare, RrType::Naptr) {
            let naptrs: Vec<Naptr> = recs
                .into_iter()
                .filter_map(|r| match r {
                    Rdata::Naptr(n) => Some(n),
                    _ => None,
                })
                .collect();
            let mut out = Vec::new();
            for (p, srv) in order_naptr(&naptrs, sips, pref) {
                if let Ok(t) = srv_targets(&srv, p) {
                    out.extend(t);
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
    let p = fixed.unwrap_or(Proto::Udp);
    if let Ok(t) = srv_targets(&srv_name(bare, p, sips), p) {
        return Ok(t);
    }
    direct(p, default_port(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: format!("t{port}.test"),
        }
    }

    #[test]
    fn srv_priority_then_weight_without_lb() {
        let recs = [srv(20, 0, 1), srv(10, 5, 2), srv(10, 50, 3)];
        let o = order_srv(&recs, false, |_| 0);
        let ports: Vec<u16> = o.iter().map(|r| r.port).collect();
        assert_eq!(ports, [3, 2, 1]);
    }

    #[test]
    fn srv_weights_share_the_first_pick() {
        // weights 1:3 → the heavy one first about 75% of the time
        let recs = [srv(10, 10, 1), srv(10, 30, 2), srv(20, 0, 9)];
        let mut seed = 99u64;
        let mut rand = |n: u32| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 33) % (u64::from(n) + 1)) as u32
        };
        let mut heavy_first = 0;
        for _ in 0..4000 {
            let o = order_srv(&recs, true, &mut rand);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2].port, 9, "lower priority stays last");
            if o[0].port == 2 {
                heavy_first += 1;
            }
        }
        assert!((2700..3300).contains(&heavy_first), "{heavy_first}");
        // weight 0 next to weighted ones is rarely first; alone it works
        let zero = [srv(1, 0, 1), srv(1, 100, 2)];
        let firsts = (0..1000)
            .filter(|_| order_srv(&zero, true, &mut rand)[0].port == 1)
            .count();
        assert!(firsts < 30, "{firsts}");
        assert_eq!(order_srv(&[srv(1, 0, 7)], true, &mut rand)[0].port, 7);
    }

    fn naptr(order: u16, preference: u16, service: &str, repl: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: "s".into(),
            service: service.into(),
            regexp: String::new(),
            replacement: repl.into(),
        }
    }

    #[test]
    fn naptr_order_preference_and_transport_choice() {
        let recs = [
            naptr(20, 1, "SIP+D2U", "_sip._udp.late"),
            naptr(10, 50, "SIP+D2T", "_sip._tcp.x"),
            naptr(10, 10, "SIP+D2U", "_sip._udp.x"),
            naptr(10, 5, "SIPS+D2T", "_sips._tcp.x"),
            naptr(5, 1, "E2U+sip", "ignored"),
            Naptr {
                flags: "u".into(),
                ..naptr(1, 1, "SIP+D2U", "not-s")
            },
        ];
        let prefs = |p: Proto| match p {
            Proto::Udp => 30,
            Proto::Tcp => 20,
            Proto::Tls => 10,
            Proto::Sctp => -1,
        };
        let o = order_naptr(&recs, false, prefs);
        let names: Vec<&str> = o.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "_sip._udp.x",
                "_sip._tcp.x",
                "_sips._tcp.x",
                "_sip._udp.late"
            ]
        );
        // prefer TCP: it wins within order 10
        let o = order_naptr(&recs, false, |p| if p == Proto::Tcp { 99 } else { 1 });
        assert_eq!(o[0], (Proto::Tcp, "_sip._tcp.x".to_string()));
        // sips: only SIPS+D2T
        let o = order_naptr(&recs, true, prefs);
        assert_eq!(o, [(Proto::Tls, "_sips._tcp.x".to_string())]);
        // a disabled transport is never chosen
        let o = order_naptr(&[naptr(1, 1, "SIP+D2S", "_sip._sctp.x")], false, prefs);
        assert!(o.is_empty());
    }

    #[test]
    fn literal_addresses_need_no_dns() {
        let t = resolve_sip("127.0.0.1", None, None, false).unwrap();
        assert_eq!(
            t,
            [Target {
                proto: Proto::Udp,
                addr: "127.0.0.1:5060".parse().unwrap()
            }]
        );
        let t = resolve_sip("[::1]", Some(5070), Some(Proto::Tcp), false).unwrap();
        assert_eq!(t[0].addr, "[::1]:5070".parse().unwrap());
        let t = resolve_sip("127.0.0.1", None, None, true).unwrap();
        assert_eq!((t[0].proto, t[0].addr.port()), (Proto::Tls, 5061));
        assert!(resolve_sip("", None, None, false).is_err());
        assert_eq!(srv_name("x.test", Proto::Tls, true), "_sips._tcp.x.test");
        assert_eq!(srv_name("x.test", Proto::Sctp, false), "_sip._sctp.x.test");
    }
}
