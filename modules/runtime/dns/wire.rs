//! The DNS wire format (RFC 1035 §4, SRV RFC 2782, NAPTR RFC 3403, AAAA
//! RFC 3596): building a query and reading the answer records we use.
//!
//! Parsing is defensive: every read is bounds-checked, compression
//! pointers may only point backwards and chains are bounded, so a
//! truncated or hostile answer is an `Err`, never a panic or a loop.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Record types we ask for and keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RrType {
    /// IPv4 address.
    A,
    /// Alias.
    Cname,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Naming authority pointer.
    Naptr,
}

impl RrType {
    /// The type code on the wire.
    pub fn code(self) -> u16 {
        match self {
            RrType::A => 1,
            RrType::Cname => 5,
            RrType::Aaaa => 28,
            RrType::Srv => 33,
            RrType::Naptr => 35,
        }
    }

    /// From a type code.
    pub fn from_code(c: u16) -> Option<RrType> {
        Some(match c {
            1 => RrType::A,
            5 => RrType::Cname,
            28 => RrType::Aaaa,
            33 => RrType::Srv,
            35 => RrType::Naptr,
            _ => return None,
        })
    }

    /// Upper-case name (`dns.view`, `dns.lookup`).
    pub fn name(self) -> &'static str {
        match self {
            RrType::A => "A",
            RrType::Cname => "CNAME",
            RrType::Aaaa => "AAAA",
            RrType::Srv => "SRV",
            RrType::Naptr => "NAPTR",
        }
    }

    /// From a name, any case.
    pub fn from_name(s: &str) -> Option<RrType> {
        [
            RrType::A,
            RrType::Cname,
            RrType::Aaaa,
            RrType::Srv,
            RrType::Naptr,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// SRV data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Relative weight among equal priorities.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host (no trailing dot).
    pub target: String,
}

/// NAPTR data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Lower first.
    pub order: u16,
    /// Lower first among equal orders.
    pub preference: u16,
    /// `s`, `a`, `u`, `p` (SIP uses `s`).
    pub flags: String,
    /// e.g. `SIP+D2U`.
    pub service: String,
    /// Regular expression (unused by SIP).
    pub regexp: String,
    /// Replacement: the SRV name to look up next.
    pub replacement: String,
}

/// The data of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// A.
    A(Ipv4Addr),
    /// AAAA.
    Aaaa(Ipv6Addr),
    /// CNAME target.
    Cname(String),
    /// SRV.
    Srv(Srv),
    /// NAPTR.
    Naptr(Naptr),
}

impl Rdata {
    /// Its type.
    pub fn rr_type(&self) -> RrType {
        match self {
            Rdata::A(_) => RrType::A,
            Rdata::Aaaa(_) => RrType::Aaaa,
            Rdata::Cname(_) => RrType::Cname,
            Rdata::Srv(_) => RrType::Srv,
            Rdata::Naptr(_) => RrType::Naptr,
        }
    }
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, lower-case, no trailing dot.
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// The data.
    pub data: Rdata,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Query id.
    pub id: u16,
    /// TC bit: the answer did not fit (retry over TCP).
    pub truncated: bool,
    /// RCODE (0 ok, 3 NXDOMAIN).
    pub rcode: u8,
    /// Answer-section records of the types we know.
    pub answers: Vec<Record>,
    /// The SOA minimum of the authority section (negative caching, RFC 2308).
    pub soa_minimum: Option<u32>,
}

/// Why an answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Ran past the end of the message.
    Truncated,
    /// A name that is malformed (label too long, pointer loop, not UTF-8).
    BadName,
    /// Not a response, or not to our query.
    NotOurs,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated DNS message",
            WireError::BadName => "malformed name in DNS message",
            WireError::NotOurs => "not an answer to our query",
        })
    }
}

impl std::error::Error for WireError {}

type Parse<T> = Result<T, WireError>;

/// Encodes `name` as labels; `None` for an empty label or one over 63
/// bytes, or a name over 255 bytes.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..64).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() - start <= 255).then_some(())
}

/// The query for `name`/`ty` (class IN, recursion desired).
pub fn query(id: u16, name: &str, ty: RrType) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(name, &mut q)?;
    q.extend_from_slice(&ty.code().to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    Some(q)
}

fn be16(b: &[u8], at: usize) -> Parse<u16> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(WireError::Truncated),
    }
}

fn be32(b: &[u8], at: usize) -> Parse<u32> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(WireError::Truncated),
    }
}

/// A (possibly compressed) name at `at`: the name (lower-case) and the
/// offset just after it where it started. Pointers must go backwards.
pub fn read_name(b: &[u8], start: usize) -> Parse<(String, usize)> {
    let mut out = String::new();
    let mut at = start;
    let mut end = None;
    let mut limit = start;
    for _ in 0..128 {
        let len = usize::from(*b.get(at).ok_or(WireError::Truncated)?);
        if len == 0 {
            return Ok((out, end.unwrap_or(at + 1)));
        }
        match len & 0xc0 {
            0xc0 => {
                let ptr = usize::from(be16(b, at)? & 0x3fff);
                if ptr >= limit {
                    return Err(WireError::BadName);
                }
                end.get_or_insert(at + 2);
                limit = ptr;
                at = ptr;
            }
            0 => {
                let label = b.get(at + 1..at + 1 + len).ok_or(WireError::Truncated)?;
                if !out.is_empty() {
                    out.push('.');
                }
                let text = std::str::from_utf8(label).map_err(|_| WireError::BadName)?;
                out.push_str(&text.to_ascii_lowercase());
                if out.len() > 255 {
                    return Err(WireError::BadName);
                }
                at += 1 + len;
            }
            _ => return Err(WireError::BadName),
        }
    }
    Err(WireError::BadName)
}

fn char_string(b: &[u8], at: usize) -> Parse<(String, usize)> {
    let len = usize::from(*b.get(at).ok_or(WireError::Truncated)?);
    let s = b.get(at + 1..at + 1 + len).ok_or(WireError::Truncated)?;
    Ok((String::from_utf8_lossy(s).into_owned(), at + 1 + len))
}

fn rdata(b: &[u8], ty: u16, at: usize, len: usize) -> Parse<Option<Rdata>> {
    let rd = b.get(at..at + len).ok_or(WireError::Truncated)?;
    Ok(Some(match RrType::from_code(ty) {
        Some(RrType::A) => {
            let o: [u8; 4] = rd.try_into().map_err(|_| WireError::Truncated)?;
            Rdata::A(Ipv4Addr::from(o))
        }
        Some(RrType::Aaaa) => {
            let o: [u8; 16] = rd.try_into().map_err(|_| WireError::Truncated)?;
            Rdata::Aaaa(Ipv6Addr::from(o))
        }
        Some(RrType::Cname) => Rdata::Cname(read_name(b, at)?.0),
        Some(RrType::Srv) => {
            if len < 7 {
                return Err(WireError::Truncated);
            }
            Rdata::Srv(Srv {
                priority: be16(b, at)?,
                weight: be16(b, at + 2)?,
                port: be16(b, at + 4)?,
                target: read_name(b, at + 6)?.0,
            })
        }
        Some(RrType::Naptr) => {
            let (flags, p) = char_string(b, at + 4)?;
            let (service, p) = char_string(b, p)?;
            let (regexp, p) = char_string(b, p)?;
            if p >= at + len {
                return Err(WireError::Truncated);
            }
            Rdata::Naptr(Naptr {
                order: be16(b, at)?,
                preference: be16(b, at + 2)?,
                flags,
                service,
                regexp,
                replacement: read_name(b, p)?.0,
            })
        }
        None => return Ok(None),
    }))
}

/// Parses the response to query `id`.
pub fn parse(id: u16, b: &[u8]) -> Parse<Response> {
    if be16(b, 0)? != id || b.get(2).is_none_or(|f| f & 0x80 == 0) {
        return Err(WireError::NotOurs);
    }
    let flags = be16(b, 2)?;
    let (qd, an, ns) = (be16(b, 4)?, be16(b, 6)?, be16(b, 8)?);
    let mut r = Response {
        id,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x0f) as u8,
        ..Response::default()
    };
    let mut at = 12;
    for _ in 0..qd {
        at = read_name(b, at)?.1 + 4;
    }
    for i in 0..u32::from(an) + u32::from(ns) {
        let (name, p) = read_name(b, at)?;
        let ty = be16(b, p)?;
        let ttl = be32(b, p + 4)?.min(i32::MAX as u32);
        let len = usize::from(be16(b, p + 8)?);
        let rd = p + 10;
        if i < u32::from(an) {
            if let Some(data) = rdata(b, ty, rd, len)? {
                r.answers.push(Record { name, ttl, data });
            }
        } else if ty == 6 {
            // SOA: mname, rname, serial, refresh, retry, expire, minimum
            let (_, p2) = read_name(b, rd)?;
            let (_, p3) = read_name(b, p2)?;
            r.soa_minimum = Some(be32(b, p3 + 16)?.min(ttl));
        }
        at = rd + len;
        if at > b.len() {
            return Err(WireError::Truncated);
        }
    }
    Ok(r)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An answer to `q` with `records` (type, rdata), each owned by the
    /// question name through a compression pointer.
    pub fn answer(q: &[u8], records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (ty, rd) in records {
            r.extend_from_slice(&[0xc0, 12]);
            r.extend_from_slice(&ty.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 100]);
            r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            r.extend_from_slice(rd);
        }
        r
    }

    pub fn srv_rd(prio: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut rd = Vec::new();
        rd.extend_from_slice(&prio.to_be_bytes());
        rd.extend_from_slice(&weight.to_be_bytes());
        rd.extend_from_slice(&port.to_be_bytes());
        encode_name(target, &mut rd).unwrap();
        rd
    }

    pub fn naptr_rd(order: u16, pref: u16, service: &str, repl: &str) -> Vec<u8> {
        let mut rd = Vec::new();
        rd.extend_from_slice(&order.to_be_bytes());
        rd.extend_from_slice(&pref.to_be_bytes());
        for s in ["s", service, ""] {
            rd.push(s.len() as u8);
            rd.extend_from_slice(s.as_bytes());
        }
        encode_name(repl, &mut rd).unwrap();
        rd
    }

    #[test]
    fn query_layout() {
        let q = query(0x1234, "Example.ORG.", RrType::Naptr).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 1, 0]);
        assert_eq!(&q[12..25], b"\x07Example\x03ORG\x00");
        assert_eq!(&q[25..], &[0, 35, 0, 1]);
        assert!(query(1, &"a".repeat(64), RrType::A).is_none());
        assert!(query(1, "a..b", RrType::A).is_none());
        assert!(query(1, &"abc.".repeat(70), RrType::A).is_none());
    }

    #[test]
    fn parses_every_type_with_compression() {
        let q = query(7, "x.test", RrType::A).unwrap();
        // a CNAME whose target is compressed against the question name
        let cname = vec![3, b'w', b'w', b'w', 0xc0, 12];
        let r = answer(
            &q,
            &[
                (1, vec![127, 0, 0, 1]),
                (28, [0u8; 15].iter().copied().chain([1]).collect()),
                (5, cname),
                (33, srv_rd(10, 5, 5070, "a.test")),
                (35, naptr_rd(10, 20, "SIP+D2U", "_sip._udp.x.test")),
                (99, vec![1, 2, 3]),
            ],
        );
        let p = parse(7, &r).unwrap();
        assert_eq!(p.answers.len(), 5, "unknown type skipped");
        assert_eq!(p.answers[0].data, Rdata::A(Ipv4Addr::LOCALHOST));
        assert_eq!(p.answers[0].name, "x.test");
        assert_eq!(p.answers[1].data, Rdata::Aaaa(Ipv6Addr::LOCALHOST));
        assert_eq!(p.answers[2].data, Rdata::Cname("www.x.test".into()));
        let Rdata::Srv(s) = &p.answers[3].data else {
            panic!("srv expected")
        };
        assert_eq!((s.priority, s.weight, s.port), (10, 5, 5070));
        let Rdata::Naptr(n) = &p.answers[4].data else {
            panic!("naptr expected")
        };
        assert_eq!(n.service, "SIP+D2U");
        assert_eq!(n.replacement, "_sip._udp.x.test");
        assert_eq!(p.answers[4].ttl, 100);
    }

    #[test]
    fn rejects_foreign_and_broken_answers() {
        let q = query(7, "x.test", RrType::A).unwrap();
        let r = answer(&q, &[(1, vec![127, 0, 0, 1])]);
        assert_eq!(parse(8, &r), Err(WireError::NotOurs));
        assert_eq!(parse(7, &q), Err(WireError::NotOurs), "a query");
        for cut in 0..r.len() {
            assert!(parse(7, &r[..cut]).is_err(), "cut at {cut}");
        }
        // a pointer to itself, forward pointers
        let mut lp = r.clone();
        let at = q.len();
        lp[at] = 0xc0;
        lp[at + 1] = at as u8;
        assert_eq!(parse(7, &lp), Err(WireError::BadName));
        // A with a wrong length
        let bad = answer(&q, &[(1, vec![1, 2, 3])]);
        assert!(parse(7, &bad).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // a deterministic pseudo-random walk over mutations of a valid answer
        let q = query(9, "_sip._udp.x.test", RrType::Srv).unwrap();
        let good = answer(
            &q,
            &[
                (33, srv_rd(1, 2, 3, "t.x.test")),
                (35, naptr_rd(1, 1, "SIP+D2T", "x")),
            ],
        );
        let mut seed: u32 = 12345;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..20000 {
            let mut m = good.clone();
            for _ in 0..(next() % 6 + 1) {
                let i = next() as usize % m.len();
                m[i] = next() as u8;
            }
            let len = next() as usize % (m.len() + 1);
            let _ = parse(9, &m[..len]);
            let _ = parse(9, &m);
        }
    }

    #[test]
    fn negative_answer_soa_minimum() {
        let q = query(3, "nx.test", RrType::A).unwrap();
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x83; // NXDOMAIN
        r[8..10].copy_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&[4, b't', b'e', b's', b't', 0, 0, 6, 0, 1, 0, 0, 1, 0]);
        let mut soa = Vec::new();
        encode_name("ns.test", &mut soa).unwrap();
        encode_name("h.test", &mut soa).unwrap();
        for v in [1u32, 2, 3, 4, 45] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        r.extend_from_slice(&(soa.len() as u16).to_be_bytes());
        r.extend_from_slice(&soa);
        let p = parse(3, &r).unwrap();
        assert_eq!((p.rcode, p.soa_minimum), (3, Some(45)));
        assert!(p.answers.is_empty());
    }
}
