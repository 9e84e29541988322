//! Low-level lexing over a header body inside the message buffer.
//!
//! A header body span may contain folded lines (CRLF followed by SP/HT):
//! inside one span every CR and LF is folding, so all of them count as
//! linear white space here.

use crate::error::ParseError;
use crate::hname::HeaderName;
use crate::span::Span;

/// RFC 3261 `token` characters, as a lookup table (hot in header-name
/// and parameter scanning).
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};

/// RFC 3261 `token` characters.
#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Position of the first `needle` in `hay`, eight bytes at a time (SWAR).
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ pat;
        // Non-zero iff some byte of x is zero (the classic has-zero trick;
        // the lowest flagged byte is always a true match).
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|c| *c == needle)
        .map(|p| base + p)
}

/// Linear white space inside a (possibly folded) header body.
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Characters of a generic parameter value besides `token`: `host`
/// (IPv6 references) and a few common tolerated extras.
pub(crate) fn is_value_char(c: u8) -> bool {
    is_token(c) || matches!(c, b'[' | b']' | b':' | b'/' | b'@')
}

/// A cursor over `b[pos..end]` producing absolute spans.
#[derive(Clone, Copy)]
pub(crate) struct Cur<'a> {
    pub b: &'a [u8],
    pub pos: usize,
    pub end: usize,
    /// Header being parsed, for error reports.
    pub name: HeaderName,
}

impl<'a> Cur<'a> {
    pub fn new(b: &'a [u8], span: Span, name: HeaderName) -> Cur<'a> {
        let end = span.end().min(b.len());
        Cur {
            b,
            pos: span.begin().min(end),
            end,
            name,
        }
    }

    pub fn peek(&self) -> Option<u8> {
        if self.pos < self.end {
            Some(self.b[self.pos])
        } else {
            None
        }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    pub fn bump(&mut self) {
        if self.pos < self.end {
            self.pos += 1;
        }
    }

    /// Consumes `c` if it is next.
    pub fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips LWS; true when any was skipped.
    pub fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Skips LWS and consumes `c` if it follows (LWS is consumed only
    /// when `c` is found).
    pub fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.eat(c) {
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Span {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        Span::new(start, self.pos)
    }

    pub fn token(&mut self) -> Span {
        self.take_while(is_token)
    }

    /// A quoted string starting at the cursor (which must be at `"`);
    /// the span includes both quotes. Quoted pairs may escape any octet.
    pub fn quoted(&mut self) -> Result<Span, ParseError> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err(self.err("expected quoted string"));
        }
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return Ok(Span::new(start, self.pos)),
                b'\\' => {
                    if self.at_end() {
                        break;
                    }
                    self.pos += 1;
                }
                _ => {}
            }
        }
        Err(ParseError::BadHeader {
            name: self.name,
            at: start as u32,
            what: "unterminated quoted string",
        })
    }

    pub fn err(&self, what: &'static str) -> ParseError {
        ParseError::BadHeader {
            name: self.name,
            at: self.pos as u32,
            what,
        }
    }

    /// Errors unless only LWS remains.
    pub fn expect_end(&mut self) -> Result<(), ParseError> {
        self.skip_lws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err("unexpected characters"))
        }
    }
}

/// Parses a decimal number of at most `max`, rejecting empty input,
/// signs and overflow.
pub(crate) fn parse_u32(digits: &[u8], max: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
        if v > u64::from(max) {
            return None;
        }
    }
    Some(v as u32)
}

/// Strips one level of double quotes and resolves quoted pairs.
pub fn unquote(b: &[u8]) -> Vec<u8> {
    let inner = if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        &b[1..b.len() - 1]
    } else {
        return b.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&c) = it.next() {
        if c == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes `%HH` escapes (invalid escapes are kept literally).
pub fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068", 255), Some(68));
        assert_eq!(parse_u32(b"300", 255), None);
        assert_eq!(parse_u32(b"36893488147419103232", u32::MAX), None);
        assert_eq!(parse_u32(b"-1", 255), None);
        assert_eq!(parse_u32(b"", 255), None);
    }

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..40 {
            for n in [0u8, 10, 13, 37, 250, 255] {
                let h = &hay[start..];
                assert_eq!(
                    find_byte(h, n),
                    h.iter().position(|c| *c == n),
                    "{start} {n}"
                );
            }
        }
        assert_eq!(find_byte(b"", b'a'), None);
        assert_eq!(find_byte(b"\x80\x81\n", b'\n'), Some(2));
        assert_eq!(find_byte(b"\x01\x01\x01\x01\x01\x01\x01\x00x", 0), Some(7));
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(unquote(br#""a\"b\\""#), br#"a"b\"#.to_vec());
        assert_eq!(unescape(b"%41b%2"), b"Ab%2".to_vec());
        assert_eq!(unescape(b"x%00y"), b"x\0y".to_vec());
    }
}
