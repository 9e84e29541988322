//! SER 3.0's AVP cookies: `record_route()` carries the user and URI AVPs
//! flagged `dialog_cookie` (`avpflags dialog_cookie;` + `setavpflag`) in an
//! `;avp=` parameter of our Record-Route; `loose_route()` on an in-dialog
//! request restores them from the Route it consumes, flagged again (so a
//! `record_route()` after it carries them on), with From/To tracks swapped
//! when the callee sends.
//!
//! * `cookie_secret`: keys the cookie's integrity check (HMAC-SHA256), so a
//!   UA cannot forge or alter the AVPs, and cookies of servers with
//!   different secrets do not mix;
//! * `cookie_filter`: a regular expression; only AVPs whose name matches
//!   (`i:N` for numeric names) are restored.
//!
//! The encoding is ours (SER's was a CRC-keyed binary dump): base64url of
//! `mac(8) entry*`, entry = `track class name-kind name-len(2) name
//! value-kind value-len(2) value`.

use sha2::{Digest, Sha256};

use crate::runtime::avp::{AvpName, AvpRef, Class, Track};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::value::Value;

/// The Record-Route / Route parameter carrying the cookie.
pub const PARAM: &str = "avp";
/// Serialized AVPs beyond this are left out (SER's limit too).
pub const MAX_COOKIE: usize = 1024;
const MAC_LEN: usize = 8;

/// What the rr handlers need to make and read cookies.
#[derive(Debug, Clone)]
pub struct Cookies {
    /// Bit of the `dialog_cookie` AVP flag (None: not declared, no cookies).
    pub flag: Option<u32>,
    /// `cookie_secret`.
    pub secret: String,
    /// `cookie_filter` (None: restore every AVP).
    pub filter: Option<regex::Regex>,
}

impl Cookies {
    /// Whether `cookie_filter` lets an AVP of this name through (numeric
    /// names are matched as `i:N`). Applied when the cookie is made (it
    /// stays short) and when it is read (SER's place).
    fn passes(&self, name: &AvpName) -> bool {
        let Some(re) = &self.filter else { return true };
        match name {
            AvpName::Int(n) => re.is_match(&format!("i:{n}")),
            AvpName::Str(s) => re.is_match(s),
        }
    }
}

fn mac(secret: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    // HMAC (RFC 2104) over SHA-256, truncated.
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let pad = |b: u8| key.map(|k| k ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&outer[..MAC_LEN]);
    out
}

fn push_field(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.push(kind);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..len]);
}

/// The cookie for the flagged AVPs of `ctx` (None when there are none).
pub fn encode(ctx: &MsgCtx<'_>, c: &Cookies) -> Option<String> {
    let bit = c.flag?;
    let mut body = Vec::new();
    for (track, class, name, value, flags) in ctx.avps.export() {
        if flags & (1 << bit) == 0 || !matches!(class, Class::User | Class::Uri) || !c.passes(&name)
        {
            continue;
        }
        let mut e = vec![
            if track == Track::To { b't' } else { b'f' },
            if class == Class::Uri { b'r' } else { b'u' },
        ];
        match &name {
            AvpName::Int(n) => push_field(&mut e, b'i', n.to_string().as_bytes()),
            AvpName::Str(s) => push_field(&mut e, b's', s.as_bytes()),
        }
        match &value {
            Value::Int(n) => push_field(&mut e, b'i', n.to_string().as_bytes()),
            other => push_field(&mut e, b's', other.as_str().as_bytes()),
        }
        if body.len() + e.len() > MAX_COOKIE {
            log::error!("rr: AVP cookie larger than {MAX_COOKIE} bytes; AVPs left out");
            break;
        }
        body.extend_from_slice(&e);
    }
    if body.is_empty() {
        return None;
    }
    let mut all = mac(c.secret.as_bytes(), &body).to_vec();
    all.extend_from_slice(&body);
    Some(b64_encode(&all))
}

/// One AVP read back from a cookie.
#[derive(Debug, Clone, PartialEq)]
pub struct CookieAvp {
    /// Track.
    pub track: Track,
    /// Class.
    pub class: Class,
    /// Name.
    pub name: AvpName,
    /// Value.
    pub value: Value,
}

/// Reads and checks a cookie; `Err` says why it is not ours or corrupt.
pub fn decode(cookie: &str, secret: &str) -> Result<Vec<CookieAvp>, &'static str> {
    let raw = b64_decode(cookie).ok_or("not base64")?;
    if raw.len() <= MAC_LEN || raw.len() > MAC_LEN + MAX_COOKIE {
        return Err("bad length");
    }
    let (tag, body) = raw.split_at(MAC_LEN);
    if mac(secret.as_bytes(), body) != tag {
        return Err("integrity check failed (other server, other secret, or altered)");
    }
    let mut avps = Vec::new();
    let mut p = body;
    while !p.is_empty() {
        let (&[t, c], rest) = p.split_first_chunk::<2>().ok_or("truncated")?;
        let (nk, name, rest) = field(rest)?;
        let (vk, value, rest) = field(rest)?;
        p = rest;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "not UTF-8");
        let int =
            |b: &[u8]| -> Result<i64, &'static str> { text(b)?.parse().map_err(|_| "bad number") };
        avps.push(CookieAvp {
            track: match t {
                b'f' => Track::From,
                b't' => Track::To,
                _ => return Err("bad track"),
            },
            class: match c {
                b'u' => Class::User,
                b'r' => Class::Uri,
                _ => return Err("bad class"),
            },
            name: match nk {
                b'i' => AvpName::Int(int(name)?),
                b's' => AvpName::Str(text(name)?),
                _ => return Err("bad name kind"),
            },
            value: match vk {
                b'i' => Value::Int(int(value)?),
                b's' => Value::Str(text(value)?),
                _ => return Err("bad value kind"),
            },
        });
    }
    Ok(avps)
}

fn field(p: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&[kind, hi, lo], rest) = p.split_first_chunk::<3>().ok_or("truncated")?;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if rest.len() < len {
        return Err("truncated");
    }
    Ok((kind, &rest[..len], &rest[len..]))
}

/// Restores the AVPs of the cookie in the consumed Route's `params` (if
/// any): filtered by name, flagged `dialog_cookie`, tracks swapped when
/// `upstream`.
pub fn restore(ctx: &mut MsgCtx<'_>, c: &Cookies, params: &str, upstream: bool) {
    let Some(bit) = c.flag else { return };
    let Some(cookie) = super::param_value(params, PARAM).filter(|v| !v.is_empty()) else {
        return;
    };
    let avps = match decode(cookie, &c.secret) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("rr: AVP cookie from {} ignored: {e}", ctx.src);
            return;
        }
    };
    for a in avps {
        if !c.passes(&a.name) {
            continue;
        }
        let track = match (a.track, upstream) {
            (Track::From, true) => Track::To,
            (Track::To, true) => Track::From,
            (t, false) => t,
        };
        let r = AvpRef {
            track: Some(track),
            class: Some(a.class),
            name: a.name,
        };
        ctx.avps.add(&r, a.value);
        ctx.avps.set_flag(&r, bit);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding: every character is allowed in a URI parameter.
fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 || s.len() > 2 * (MAC_LEN + MAX_COOKIE) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | B64.iter().position(|x| *x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let e = b64_encode(&data);
            assert!(e
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_eq!(b64_decode(&e).unwrap(), data);
        }
        assert!(b64_decode("a").is_none());
        assert!(b64_decode("ab=c").is_none());
    }

    #[test]
    fn mac_depends_on_secret_and_data() {
        assert_ne!(mac(b"a", b"x"), mac(b"b", b"x"));
        assert_ne!(mac(b"a", b"x"), mac(b"a", b"y"));
        assert_eq!(mac(&[7; 100], b"x"), mac(&[7; 100], b"x"));
    }

    #[test]
    fn garbage_cookies_are_errors_not_panics() {
        let good = {
            let body = b"fus\x00\x07accounts\x00\x03yes";
            let mut all = mac(b"k", body).to_vec();
            all.extend_from_slice(body);
            b64_encode(&all)
        };
        let avps = decode(&good, "k").unwrap();
        assert_eq!(avps[0].name, AvpName::Str("account".into()));
        assert_eq!(avps[0].value, Value::Str("yes".into()));
        assert!(decode(&good, "other").is_err());
        for bad in ["", "!!!!", "AAAA", &"A".repeat(5000)] {
            assert!(decode(bad, "k").is_err(), "{bad}");
        }
        // Well signed but malformed bodies.
        for body in [
            &b"f"[..],
            b"xus\x00\x01a",
            b"fus\x00\x09a",
            b"fuq\x00\x01ai\x00\x01x",
        ] {
            let mut all = mac(b"k", body).to_vec();
            all.extend_from_slice(body);
            assert!(decode(&b64_encode(&all), "k").is_err(), "{body:?}");
        }
    }
}
