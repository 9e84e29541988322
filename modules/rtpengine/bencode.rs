//! Bencode, the encoding of rtpengine's "ng" control protocol: strings
//! (`4:spam`), integers (`i3e`), lists (`l...e`) and dictionaries (`d...e`,
//! keys sorted when we encode).

use std::collections::BTreeMap;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    /// A byte string.
    Str(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A list.
    List(Vec<Bencode>),
    /// A dictionary.
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    /// A string value.
    pub fn str(s: impl AsRef<[u8]>) -> Bencode {
        Bencode::Str(s.as_ref().to_vec())
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Bencode::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Member `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Str(s) => {
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(s);
            }
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Most nesting accepted when decoding (replies are flat dictionaries).
const MAX_DEPTH: usize = 32;

/// Decodes one value at the start of `b`; the value and the bytes used.
pub fn decode(b: &[u8]) -> Result<(Bencode, usize), String> {
    decode_at(b, 0, 0)
}

fn decode_at(b: &[u8], at: usize, depth: usize) -> Result<(Bencode, usize), String> {
    if depth > MAX_DEPTH {
        return Err("bencode nested too deep".into());
    }
    let bad = |why: &str| format!("bad bencode at byte {at}: {why}");
    match b.get(at) {
        None => Err(bad("truncated")),
        Some(b'i') => {
            let end = b[at..]
                .iter()
                .position(|&c| c == b'e')
                .ok_or_else(|| bad("unterminated integer"))?;
            let n = std::str::from_utf8(&b[at + 1..at + end])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad integer"))?;
            Ok((Bencode::Int(n), end + 1))
        }
        Some(b'l') | Some(b'd') => {
            let dict = b[at] == b'd';
            let mut pos = at + 1;
            let mut list = Vec::new();
            let mut map = BTreeMap::new();
            loop {
                match b.get(pos) {
                    None => return Err(bad("unterminated container")),
                    Some(b'e') => break,
                    _ => {}
                }
                let (v, used) = decode_at(b, pos, depth + 1)?;
                pos += used;
                if dict {
                    let Bencode::Str(k) = v else {
                        return Err(bad("dictionary key is not a string"));
                    };
                    let (val, used) = decode_at(b, pos, depth + 1)?;
                    pos += used;
                    map.insert(k, val);
                } else {
                    list.push(v);
                }
            }
            let v = if dict {
                Bencode::Dict(map)
            } else {
                Bencode::List(list)
            };
            Ok((v, pos + 1 - at))
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = b[at..]
                .iter()
                .position(|&c| c == b':')
                .ok_or_else(|| bad("string without ':'"))?;
            let len: usize = std::str::from_utf8(&b[at..at + colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad string length"))?;
            let start = at + colon + 1;
            let s = b
                .get(
                    start
                        ..start
                            .checked_add(len)
                            .ok_or_else(|| bad("length overflow"))?,
                )
                .ok_or_else(|| bad("truncated string"))?;
            Ok((Bencode::Str(s.to_vec()), colon + 1 + len))
        }
        Some(_) => Err(bad("unknown type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut d = BTreeMap::new();
        d.insert(b"command".to_vec(), Bencode::str("offer"));
        d.insert(b"flags".to_vec(), Bencode::List(vec![Bencode::str("a b")]));
        d.insert(b"n".to_vec(), Bencode::Int(-3));
        let v = Bencode::Dict(d);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, b"d7:command5:offer5:flagsl3:a be1:ni-3ee");
        assert_eq!(decode(&out).unwrap(), (v, out.len()));
        for bad in [
            &b"d3:abc"[..],
            b"5:ab",
            b"i12",
            b"x",
            b"d1:ai1e",
            b"l",
            b"99999999999999999999:",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep = vec![b'l'; 100];
        assert!(decode(&deep).is_err());
    }
}
