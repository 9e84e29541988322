//! Matching a request to a transaction: RFC 3261 §17.2.3 (top Via branch
//! with the `z9hG4bK` cookie, sent-by, method; ACK and CANCEL rules) and the
//! RFC 2543 fallback (Call-ID, CSeq, From tag, To tag, R-URI, top Via).
//!
//! The keys are byte ranges of one buffer ([`Off`]), so a transaction stores
//! them as plain numbers next to its shm copy of the request.

use ser_sip::{SipMsg, Span};

/// The RFC 3261 branch cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A byte range of a stored buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Off {
    /// First byte.
    pub start: u32,
    /// Length.
    pub len: u32,
}

impl Off {
    /// From a parser span.
    pub fn of(s: Span) -> Off {
        Off {
            start: s.start,
            len: s.len,
        }
    }

    /// The bytes in `buf` (empty when out of range).
    pub fn get(self, buf: &[u8]) -> &[u8] {
        let (s, e) = (self.start as usize, self.start as usize + self.len as usize);
        buf.get(s..e).unwrap_or(&[])
    }

    /// Packed in one word.
    pub fn pack(self) -> u64 {
        (u64::from(self.start) << 32) | u64::from(self.len)
    }

    /// From [`Off::pack`].
    pub fn unpack(w: u64) -> Off {
        Off {
            start: (w >> 32) as u32,
            len: w as u32,
        }
    }
}

/// The matching keys of a request, as ranges of its buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOffs {
    /// Method of the request line.
    pub method: Off,
    /// Call-ID.
    pub callid: Off,
    /// CSeq number.
    pub cseq: u32,
    /// From tag (empty if none).
    pub from_tag: Off,
    /// To tag (empty if none).
    pub to_tag: Off,
    /// Request-URI.
    pub ruri: Off,
    /// Top Via `branch` (empty if none).
    pub branch: Off,
    /// Top Via sent-by host.
    pub via_host: Off,
    /// Top Via sent-by port (0 = not given).
    pub via_port: u16,
    /// The whole top via-parm.
    pub via: Off,
}

/// Why a request's keys could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl KeyOffs {
    /// The keys of a request.
    pub fn of(msg: &SipMsg) -> Result<KeyOffs, KeyError> {
        let err = |what: &str, e: &dyn std::fmt::Display| KeyError(format!("{what}: {e}"));
        if !msg.is_request() {
            return Err(KeyError("not a request".into()));
        }
        let fl = msg.first_line_span();
        let mlen = msg.method_bytes().len();
        let method = Off {
            start: fl.start,
            len: mlen as u32,
        };
        let callid_h = msg
            .find(ser_sip::HeaderName::CallId)
            .ok_or_else(|| KeyError("no Call-ID".into()))?;
        let body = msg.header_body(callid_h);
        let lead = body.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let trail = body[lead..]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_whitespace())
            .count();
        let callid = Off {
            start: callid_h.body_span.start + lead as u32,
            len: (body.len() - lead - trail) as u32,
        };
        let cseq = msg.cseq().map_err(|e| err("CSeq", &e))?.number;
        let from_tag = msg
            .from()
            .map_err(|e| err("From", &e))?
            .tag
            .map(Off::of)
            .unwrap_or_default();
        let to_tag = msg
            .to()
            .map_err(|e| err("To", &e))?
            .tag
            .map(Off::of)
            .unwrap_or_default();
        let ruri = msg.ruri_span().map(Off::of).unwrap_or_default();
        let v = msg.via1().map_err(|e| err("Via", &e))?;
        Ok(KeyOffs {
            method,
            callid,
            cseq,
            from_tag,
            to_tag,
            ruri,
            branch: v.branch.map(Off::of).unwrap_or_default(),
            via_host: Off::of(v.host),
            via_port: v.port.unwrap_or(0),
            via: Off::of(v.span),
        })
    }

    /// The keys as byte slices of `buf`.
    pub fn view(self, buf: &[u8]) -> Keys<'_> {
        Keys {
            method: self.method.get(buf),
            callid: self.callid.get(buf),
            cseq: self.cseq,
            from_tag: self.from_tag.get(buf),
            to_tag: self.to_tag.get(buf),
            ruri: self.ruri.get(buf),
            branch: self.branch.get(buf),
            via_host: self.via_host.get(buf),
            via_port: self.via_port,
            via: self.via.get(buf),
        }
    }
}

/// Matching keys as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    /// Method.
    pub method: &'a [u8],
    /// Call-ID.
    pub callid: &'a [u8],
    /// CSeq number.
    pub cseq: u32,
    /// From tag.
    pub from_tag: &'a [u8],
    /// To tag.
    pub to_tag: &'a [u8],
    /// R-URI.
    pub ruri: &'a [u8],
    /// Top Via branch.
    pub branch: &'a [u8],
    /// Top Via host.
    pub via_host: &'a [u8],
    /// Top Via port (0 = absent).
    pub via_port: u16,
    /// Top via-parm.
    pub via: &'a [u8],
}

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The same request again (a retransmission).
    Retransmission,
    /// An ACK for the INVITE transaction's non-2xx reply.
    Ack,
    /// A CANCEL for the INVITE (or other) transaction it cancels.
    Cancel,
}

/// Whether a request carries an RFC 3261 branch.
pub fn is_3261(k: &Keys<'_>) -> bool {
    k.branch.len() > MAGIC_COOKIE.len()
        && k.branch[..MAGIC_COOKIE.len()].eq_ignore_ascii_case(MAGIC_COOKIE)
}

fn port_or_default(p: u16) -> u16 {
    if p == 0 {
        5060
    } else {
        p
    }
}

fn method_fits(stored: &[u8], incoming: &[u8], purpose: Purpose) -> bool {
    match purpose {
        Purpose::Retransmission => stored == incoming,
        Purpose::Ack => stored == b"INVITE",
        Purpose::Cancel => stored != b"CANCEL" && stored != b"ACK",
    }
}

/// RFC 3261 §17.2.3: same branch, same sent-by, and the method fits.
pub fn match_3261(stored: &Keys<'_>, inc: &Keys<'_>, purpose: Purpose) -> bool {
    is_3261(inc)
        && stored.branch == inc.branch
        && stored.via_host.eq_ignore_ascii_case(inc.via_host)
        && port_or_default(stored.via_port) == port_or_default(inc.via_port)
        && method_fits(stored.method, inc.method, purpose)
}

/// RFC 2543 §17: Call-ID, CSeq number, From tag, R-URI and top Via equal; the
/// To tag equals the request's (retransmission, CANCEL) or, for an ACK, the
/// tag of the reply we sent (`reply_to_tag`).
pub fn match_2543(
    stored: &Keys<'_>,
    inc: &Keys<'_>,
    purpose: Purpose,
    reply_to_tag: &[u8],
) -> bool {
    let to_ok = match purpose {
        Purpose::Ack if stored.to_tag.is_empty() => inc.to_tag == reply_to_tag,
        _ => inc.to_tag == stored.to_tag,
    };
    stored.callid == inc.callid
        && stored.cseq == inc.cseq
        && stored.from_tag == inc.from_tag
        && to_ok
        && stored.ruri == inc.ruri
        && stored.via == inc.via
        && method_fits(stored.method, inc.method, purpose)
}

/// The whole rule: RFC 3261 when the incoming request has a cookie branch,
/// RFC 2543 otherwise.
pub fn matches(stored: &Keys<'_>, inc: &Keys<'_>, purpose: Purpose, reply_to_tag: &[u8]) -> bool {
    if is_3261(inc) {
        match_3261(stored, inc, purpose)
    } else {
        match_2543(stored, inc, purpose, reply_to_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> SipMsg {
        SipMsg::parse(s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()).unwrap()
    }

    fn req(method: &str, branch: &str, to_tag: &str, cseq_method: &str) -> SipMsg {
        msg(&format!(
            "{method} sip:bob@example.com SIP/2.0\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\n\
             From: <sip:alice@example.com>;tag=ft1\n\
             To: <sip:bob@example.com>{to_tag}\n\
             Call-ID: cid-1@10.0.0.1\n\
             CSeq: 7 {cseq_method}\n\
             Content-Length: 0\n\n"
        ))
    }

    fn check(a: &SipMsg, b: &SipMsg, p: Purpose, rtag: &[u8]) -> bool {
        let ka = KeyOffs::of(a).unwrap();
        let kb = KeyOffs::of(b).unwrap();
        matches(&ka.view(a.buf()), &kb.view(b.buf()), p, rtag)
    }

    #[test]
    fn keys_read() {
        let m = req("INVITE", "z9hG4bKabc", "", "INVITE");
        let k = KeyOffs::of(&m).unwrap();
        let v = k.view(m.buf());
        assert_eq!(v.method, b"INVITE");
        assert_eq!(v.callid, b"cid-1@10.0.0.1");
        assert_eq!(v.cseq, 7);
        assert_eq!(v.from_tag, b"ft1");
        assert_eq!(v.to_tag, b"");
        assert_eq!(v.ruri, b"sip:bob@example.com");
        assert_eq!(v.branch, b"z9hG4bKabc");
        assert_eq!(v.via_host, b"10.0.0.1");
        assert_eq!(v.via_port, 5060);
        assert!(is_3261(&v));
        assert_eq!(Off::unpack(k.ruri.pack()), k.ruri);
    }

    #[test]
    fn rfc3261() {
        let inv = req("INVITE", "z9hG4bKabc", "", "INVITE");
        assert!(check(
            &inv,
            &req("INVITE", "z9hG4bKabc", "", "INVITE"),
            Purpose::Retransmission,
            b""
        ));
        assert!(!check(
            &inv,
            &req("INVITE", "z9hG4bKabd", "", "INVITE"),
            Purpose::Retransmission,
            b""
        ));
        // ACK to a non-2xx: same branch, method ACK
        assert!(check(
            &inv,
            &req("ACK", "z9hG4bKabc", ";tag=x", "ACK"),
            Purpose::Ack,
            b"zzz"
        ));
        // an ACK with another branch (ACK to 2xx) does not match
        assert!(!check(
            &inv,
            &req("ACK", "z9hG4bKnew", ";tag=x", "ACK"),
            Purpose::Ack,
            b"x"
        ));
        // CANCEL matches the INVITE with the same branch, not as a retransmission
        let cancel = req("CANCEL", "z9hG4bKabc", "", "CANCEL");
        assert!(check(&inv, &cancel, Purpose::Cancel, b""));
        assert!(!check(&inv, &cancel, Purpose::Retransmission, b""));
        assert!(!check(&cancel, &cancel, Purpose::Cancel, b""));
        assert!(check(&cancel, &cancel, Purpose::Retransmission, b""));
        // sent-by differs
        let other = msg(&String::from_utf8_lossy(inv.buf()).replace("10.0.0.1:5060", "10.0.0.2"));
        assert!(!check(&inv, &other, Purpose::Retransmission, b""));
        // default port equals explicit 5060
        let noport = msg(&String::from_utf8_lossy(inv.buf()).replace("10.0.0.1:5060", "10.0.0.1"));
        assert!(check(&inv, &noport, Purpose::Retransmission, b""));
    }

    #[test]
    fn rfc2543() {
        let inv = req("INVITE", "1", "", "INVITE");
        assert!(check(
            &inv,
            &req("INVITE", "1", "", "INVITE"),
            Purpose::Retransmission,
            b""
        ));
        // a different top Via is a different transaction
        assert!(!check(
            &inv,
            &req("INVITE", "2", "", "INVITE"),
            Purpose::Retransmission,
            b""
        ));
        // ACK: the To tag must be that of our reply
        assert!(check(
            &inv,
            &req("ACK", "1", ";tag=ours", "ACK"),
            Purpose::Ack,
            b"ours"
        ));
        assert!(!check(
            &inv,
            &req("ACK", "1", ";tag=theirs", "ACK"),
            Purpose::Ack,
            b"ours"
        ));
        // CANCEL: same keys, To as in the request
        assert!(check(
            &inv,
            &req("CANCEL", "1", "", "CANCEL"),
            Purpose::Cancel,
            b""
        ));
        assert!(!check(
            &inv,
            &req("CANCEL", "1", ";tag=q", "CANCEL"),
            Purpose::Cancel,
            b""
        ));
        // other Call-ID / CSeq / From tag
        let s = String::from_utf8_lossy(inv.buf()).into_owned();
        for (a, b) in [
            ("cid-1@", "cid-2@"),
            ("CSeq: 7", "CSeq: 8"),
            ("tag=ft1", "tag=ft2"),
            ("INVITE sip:bob", "INVITE sip:carol"),
        ] {
            let m = msg(&s.replace(a, b));
            assert!(!check(&inv, &m, Purpose::Retransmission, b""), "{a} -> {b}");
        }
    }
}
