//! Format strings with pseudo-variables (xlog, append_hf, sl reasons):
//! Kamailio `$pvar` and SER-xl `%$avp` / `%@select`, compiled once at fixup
//! time and rendered per message ([`crate::runtime::access`]).

use crate::runtime::pvar::{parse_pv_prefix, Pv};
use crate::runtime::select::Select;

/// One piece of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A pseudo-variable.
    Pv(Pv),
}

/// A compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The pieces in order.
    pub pieces: Vec<Piece>,
}

impl Format {
    /// Compile `s`.  `$` not followed by a name, and `%` not followed by `$`,
    /// `@` or `%`, are literal.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        let b = s.as_bytes();
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            let starts_pv = |n: Option<u8>| matches!(n, Some(n) if n.is_ascii_alphabetic() || n == b'?' || n == b'_' || n == b'(');
            if c == b'$' && starts_pv(next) {
                let (pv, used) = parse_pv_prefix(&s[i..])?;
                flush(&mut text, &mut pieces);
                pieces.push(Piece::Pv(pv));
                i += used;
            } else if c == b'%' && next == Some(b'$') && starts_pv(b.get(i + 2).copied()) {
                let (pv, used) = parse_pv_prefix(&s[i + 1..])?;
                flush(&mut text, &mut pieces);
                pieces.push(Piece::Pv(pv));
                i += 1 + used;
            } else if c == b'%' && next == Some(b'@') {
                let len = Select::prefix_len(&s[i + 1..]);
                let sel = Select::parse(&s[i + 1..i + 1 + len])?;
                flush(&mut text, &mut pieces);
                pieces.push(Piece::Pv(Pv::Sel(sel)));
                i += 1 + len;
            } else if c == b'%' && next == Some(b'%') {
                text.push('%');
                i += 2;
            } else {
                // push the whole UTF-8 char
                let ch = s[i..]
                    .chars()
                    .next()
                    .expect("i is on a char boundary below len");
                text.push(ch);
                i += ch.len_utf8();
            }
        }
        flush(&mut text, &mut pieces);
        Ok(Format { pieces })
    }

    /// The text if the format has no variables.
    pub fn as_constant(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }
}

fn flush(text: &mut String, pieces: &mut Vec<Piece>) {
    if !text.is_empty() {
        pieces.push(Piece::Text(std::mem::take(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::avp::AvpRef;
    use crate::runtime::pvar::UriPart;

    #[test]
    fn kamailio_style() {
        let f = Format::parse("Malformed SIP message from $si:$sp\n").unwrap();
        assert_eq!(f.pieces.len(), 5);
        assert_eq!(f.pieces[1], Piece::Pv(Pv::SrcIp));
        assert_eq!(f.pieces[2], Piece::Text(":".into()));
        assert_eq!(
            Format::parse("100% sure $").unwrap().as_constant(),
            Some("100% sure $")
        );
    }

    #[test]
    fn ser_xl_style() {
        let f = Format::parse("<sip:%$asserted_id@%@ruri.host>;screen=yes").unwrap();
        assert_eq!(
            f.pieces,
            vec![
                Piece::Text("<sip:".into()),
                Piece::Pv(Pv::Avp(AvpRef::named("asserted_id"))),
                Piece::Text("@".into()),
                Piece::Pv(Pv::Sel(Select::Ruri(UriPart::Host))),
                Piece::Text(">;screen=yes".into()),
            ]
        );
        assert_eq!(Format::parse("%$digest_challenge").unwrap().pieces.len(), 1);
    }

    #[test]
    fn errors() {
        assert!(Format::parse("x $hdr(").is_err());
        assert!(Format::parse("x %@nope.y").is_err());
    }
}
