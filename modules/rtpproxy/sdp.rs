//! Just enough SDP for relaying media: where the addresses and ports sit in
//! the body (offsets relative to the body), so they can be rewritten by
//! lumps.  Sessions start at `v=`; the `c=` before the first `m=` is the
//! session's, a `c=` after an `m=` belongs to that stream.

use std::ops::Range;

/// A `c=` (or `o=`) address: `IP4 1.2.3.4`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAddr {
    /// From the address type (`IP4`) to the end of the address.
    pub span: Range<usize>,
    /// IPv6 (`IP6`).
    pub v6: bool,
    /// The address text.
    pub addr: String,
}

/// One `m=` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The port number in the `m=` line.
    pub port: Range<usize>,
    /// Its text.
    pub port_text: String,
    /// The stream's own `c=`.
    pub conn: Option<ConnAddr>,
    /// The port of `a=rtcp:` (RFC 3605), if present.
    pub rtcp_port: Option<Range<usize>>,
}

/// One session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// The `o=` address.
    pub origin: Option<ConnAddr>,
    /// The session-level `c=`.
    pub conn: Option<ConnAddr>,
    /// Its streams.
    pub streams: Vec<Stream>,
}

/// Lines of `body` with their offsets (without the line end).
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= body.len() {
            return None;
        }
        let start = pos;
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i);
        pos = end + 1;
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        Some((start, &body[start..line_end]))
    })
}

/// Whitespace-separated words of `line` with their offsets in it.
fn words(line: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        let s = i;
        while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
            i += 1;
        }
        if i > s {
            out.push((s, &line[s..i]));
        }
    }
    out
}

/// `IN IP4 addr[/ttl]` starting at word `at` of `w` (line at `off`).
fn conn_addr(off: usize, w: &[(usize, &[u8])], at: usize) -> Option<ConnAddr> {
    let (net, ty, addr) = (w.get(at)?, w.get(at + 1)?, w.get(at + 2)?);
    if !net.1.eq_ignore_ascii_case(b"IN") {
        return None;
    }
    let v6 = match ty.1 {
        t if t.eq_ignore_ascii_case(b"IP4") => false,
        t if t.eq_ignore_ascii_case(b"IP6") => true,
        _ => return None,
    };
    let alen = addr
        .1
        .iter()
        .position(|&b| b == b'/')
        .unwrap_or(addr.1.len());
    Some(ConnAddr {
        span: off + ty.0..off + addr.0 + alen,
        v6,
        addr: String::from_utf8_lossy(&addr.1[..alen]).into_owned(),
    })
}

/// Parse `body`; sessions with no `v=` line start at the body's first line.
pub fn parse(body: &[u8]) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    for (off, line) in lines(body) {
        if line.len() < 2 || line[1] != b'=' {
            continue;
        }
        let value = &line[2..];
        let voff = off + 2;
        if line[0] == b'v' || out.is_empty() {
            out.push(Session::default());
            if line[0] == b'v' {
                continue;
            }
        }
        // `out` is non-empty here.
        let Some(s) = out.last_mut() else { continue };
        let w = words(value);
        match line[0] {
            b'o' => s.origin = conn_addr(voff, &w, 3),
            b'c' => {
                let c = conn_addr(voff, &w, 0);
                match s.streams.last_mut() {
                    Some(m) => m.conn = c,
                    None => s.conn = c,
                }
            }
            b'm' => {
                if let Some((po, p)) = w.get(1) {
                    let plen = p.iter().position(|&b| b == b'/').unwrap_or(p.len());
                    s.streams.push(Stream {
                        port: voff + po..voff + po + plen,
                        port_text: String::from_utf8_lossy(&p[..plen]).into_owned(),
                        conn: None,
                        rtcp_port: None,
                    });
                }
            }
            b'a' => {
                if let (Some(m), Some(rest)) = (s.streams.last_mut(), value.strip_prefix(b"rtcp:"))
                {
                    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    if n > 0 {
                        let p = voff + 5;
                        m.rtcp_port = Some(p..p + n);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether `body` has `marker` at the start of a line (a proxy already
/// took this session: Kamailio's `nortpproxy_str`).
pub fn has_marker(body: &[u8], marker: &str) -> bool {
    !marker.is_empty() && lines(body).any(|(_, l)| l.starts_with(marker.as_bytes()))
}

/// An unspecified (hold) address: `0.0.0.0` / `::`.
pub fn is_null_addr(a: &str) -> bool {
    a.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.1\r\ns=-\r\n\
c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:6001\r\n\
m=video 6002/2 RTP/AVP 31\r\nc=IN IP6 fd00::1\r\n";

    #[test]
    fn finds_addresses_and_ports() {
        let s = parse(SDP.as_bytes());
        assert_eq!(s.len(), 1);
        let at = |r: &Range<usize>| &SDP[r.clone()];
        assert_eq!(at(&s[0].origin.as_ref().unwrap().span), "IP4 10.0.0.1");
        let c = s[0].conn.as_ref().unwrap();
        assert_eq!(
            (at(&c.span), c.v6, c.addr.as_str()),
            ("IP4 10.0.0.1", false, "10.0.0.1")
        );
        assert_eq!(s[0].streams.len(), 2);
        assert_eq!(at(&s[0].streams[0].port), "6000");
        assert_eq!(at(s[0].streams[0].rtcp_port.as_ref().unwrap()), "6001");
        assert!(s[0].streams[0].conn.is_none());
        assert_eq!(at(&s[0].streams[1].port), "6002");
        let c2 = s[0].streams[1].conn.as_ref().unwrap();
        assert_eq!((at(&c2.span), c2.v6), ("IP6 fd00::1", true));
    }

    #[test]
    fn marker_and_null_address() {
        assert!(!has_marker(SDP.as_bytes(), "a=nortpproxy:yes"));
        assert!(has_marker(
            b"v=0\r\na=nortpproxy:yes\r\n",
            "a=nortpproxy:yes"
        ));
        assert!(!has_marker(
            b"v=0\r\nx a=nortpproxy:yes\r\n",
            "a=nortpproxy:yes"
        ));
        assert!(is_null_addr("0.0.0.0") && is_null_addr("::") && !is_null_addr("1.2.3.4"));
    }

    #[test]
    fn garbage_is_no_stream() {
        for b in [
            &b""[..],
            b"\r\n\r\n",
            b"m=",
            b"m=audio",
            b"c=IN",
            b"=x\nv\n",
            b"\xff\xfe",
        ] {
            assert!(parse(b).iter().all(|s| s.streams.is_empty()), "{b:?}");
        }
    }
}
