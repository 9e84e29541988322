//! Records: the tagged values a body is made of, written one at a time and read as a flat
//! stream (struct/array starts and ends are records of their own, as in Kamailio's reader;
//! that is also what kamcmd's printing follows).

use super::{tag, BinRpcError, MAX_DEPTH};

/// Bytes needed to hold `v` big-endian, 0 for 0.
fn min_bytes_u64(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(8)
}

/// Writes a variable-length record: short form (length in the tag) up to 7 bytes, else the
/// S form with a big-endian length field of 1–4 bytes.
fn write_var(out: &mut Vec<u8>, typ: u8, payload: &[u8], nul: bool) -> Result<(), BinRpcError> {
    let len = payload.len() + usize::from(nul);
    if len <= 7 {
        // len <= 7 fits the 3-bit size field.
        out.push(((len as u8) << 4) | typ);
    } else {
        let len32 = u32::try_from(len).map_err(|_| BinRpcError::Oversized)?;
        let lb = min_bytes_u64(u64::from(len32)); // 1..=4, since len32 > 7
        out.push(0x80 | ((lb as u8) << 4) | typ);
        out.extend_from_slice(&len32.to_be_bytes()[4 - lb..]);
    }
    out.extend_from_slice(payload);
    if nul {
        out.push(0);
    }
    Ok(())
}

/// Writes an INT: fewest bytes; 0 is the bare tag; negatives take 4 bytes.
pub fn write_int(out: &mut Vec<u8>, v: i32) {
    let u = v as u32; // two's complement bytes, as the C writer sends them
    let n = min_bytes_u64(u64::from(u));
    out.push(((n as u8) << 4) | tag::INT);
    out.extend_from_slice(&u.to_be_bytes()[4 - n..]);
}

/// Writes a STR (NUL-terminated; the length counts the NUL).
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) -> Result<(), BinRpcError> {
    write_var(out, tag::STR, s, true)
}

/// Writes a BYTES record (no terminator).
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), BinRpcError> {
    write_var(out, tag::BYTES, b, false)
}

/// Writes a struct member's name (an AVP tag); the member's value record must follow.
pub fn write_avp_name(out: &mut Vec<u8>, name: &[u8]) -> Result<(), BinRpcError> {
    write_var(out, tag::AVP, name, true)
}

/// Writes a DOUBLE as Kamailio does: `(long long)(d * 1000)`, fewest bytes (the 4-bit size
/// holds up to 8), negatives on 8 bytes. Only 3 decimals survive.
pub fn write_double(out: &mut Vec<u8>, d: f64) {
    let fixed = (d * 1000.0) as i64; // saturating, NaN → 0
    let u = fixed as u64;
    let n = min_bytes_u64(u);
    out.push(((n as u8) << 4) | tag::DOUBLE);
    out.extend_from_slice(&u.to_be_bytes()[8 - n..]);
}

/// Struct start tag.
pub fn write_struct_start(out: &mut Vec<u8>) {
    out.push(tag::STRUCT);
}
/// Struct end tag.
pub fn write_struct_end(out: &mut Vec<u8>) {
    out.push(0x80 | tag::STRUCT);
}
/// Array start tag.
pub fn write_array_start(out: &mut Vec<u8>) {
    out.push(tag::ARRAY);
}
/// Array end tag.
pub fn write_array_end(out: &mut Vec<u8>) {
    out.push(0x80 | tag::ARRAY);
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecordKind<'a> {
    /// INT.
    Int(i32),
    /// STR, without its NUL.
    Str(&'a [u8]),
    /// DOUBLE, already divided by 1000.
    Double(f64),
    /// BYTES.
    Bytes(&'a [u8]),
    /// Struct start.
    StructStart,
    /// Struct end.
    StructEnd,
    /// Array start.
    ArrayStart,
    /// Array end.
    ArrayEnd,
}

/// One record as read from a body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The member name when this record is a struct member's value.
    pub name: Option<&'a [u8]>,
    /// The value.
    pub kind: RecordKind<'a>,
    /// Open structs + arrays after this record (kamcmd indents by it).
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Struct,
    Array,
}

/// Reads the records of a body one by one. Structs may hold named members (AVPs) and, as in
/// Kamailio's reply mode, bare values; an AVP outside a struct is an error. Stops after the
/// first error.
#[derive(Debug, Clone)]
pub struct RecordReader<'a> {
    body: &'a [u8],
    pos: usize,
    open: Vec<Container>,
    done: bool,
}

fn strip_nul(b: &[u8]) -> &[u8] {
    b.strip_suffix(&[0]).unwrap_or(b)
}

fn read_be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

impl<'a> RecordReader<'a> {
    /// A reader over a complete body.
    pub fn new(body: &'a [u8]) -> Self {
        RecordReader {
            body,
            pos: 0,
            open: Vec::new(),
            done: false,
        }
    }

    /// Offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Reads the tag and length at `self.pos`: (type, payload, is_end_marker), advancing past it.
    fn read_tlv(&mut self) -> Result<(u8, &'a [u8], bool), BinRpcError> {
        let offset = self.pos;
        let truncated = BinRpcError::Truncated { offset };
        let t = *self.body.get(offset).ok_or(truncated.clone())?;
        let typ = t & 0x0f;
        let size = usize::from(t >> 4);
        let mut p = offset + 1;
        let mut end = false;
        let len = if typ == tag::DOUBLE {
            // Doubles use all four bits as the byte count (up to 8).
            if size > 8 {
                return Err(BinRpcError::BadRecord {
                    offset,
                    reason: "double longer than 8 bytes",
                });
            }
            size
        } else if size & 8 != 0 {
            let lb = size & 7;
            if typ == tag::STRUCT || typ == tag::ARRAY {
                if lb != 0 {
                    return Err(BinRpcError::BadRecord {
                        offset,
                        reason: "end marker with length",
                    });
                }
                end = true;
                0
            } else {
                if lb > 4 {
                    return Err(BinRpcError::BadRecord {
                        offset,
                        reason: "length field over 4 bytes",
                    });
                }
                let field = self.body.get(p..p + lb).ok_or(truncated.clone())?;
                p += lb;
                // At most 4 bytes, so it fits in usize on every supported target.
                read_be(field) as usize
            }
        } else {
            size
        };
        if len > self.body.len() - p {
            return Err(truncated);
        }
        let payload = &self.body[p..p + len];
        self.pos = p + len;
        Ok((typ, payload, end))
    }

    fn read_one(&mut self, name: Option<&'a [u8]>) -> Result<Record<'a>, BinRpcError> {
        let offset = self.pos;
        let (typ, payload, end) = self.read_tlv()?;
        let bad = |reason| BinRpcError::BadRecord { offset, reason };
        let kind = match typ {
            tag::INT => {
                if payload.len() > 4 {
                    return Err(bad("int longer than 4 bytes"));
                }
                // Shorter forms are not sign-extended, as in the C reader.
                RecordKind::Int(read_be(payload) as u32 as i32)
            }
            tag::STR => RecordKind::Str(strip_nul(payload)),
            tag::BYTES => RecordKind::Bytes(payload),
            tag::DOUBLE => RecordKind::Double(read_be(payload) as i64 as f64 / 1000.0),
            tag::STRUCT | tag::ARRAY => {
                let c = if typ == tag::STRUCT {
                    Container::Struct
                } else {
                    Container::Array
                };
                if end {
                    if name.is_some() {
                        return Err(bad("end marker as a member value"));
                    }
                    if self.open.last() != Some(&c) {
                        return Err(bad("unbalanced end marker"));
                    }
                    self.open.pop();
                    if c == Container::Struct {
                        RecordKind::StructEnd
                    } else {
                        RecordKind::ArrayEnd
                    }
                } else {
                    if !payload.is_empty() {
                        return Err(bad("container start with a length"));
                    }
                    if self.open.len() >= MAX_DEPTH {
                        return Err(BinRpcError::TooDeep { offset });
                    }
                    self.open.push(c);
                    if c == Container::Struct {
                        RecordKind::StructStart
                    } else {
                        RecordKind::ArrayStart
                    }
                }
            }
            tag::AVP => {
                if name.is_some() {
                    return Err(bad("member value is a member"));
                }
                if self.open.last() != Some(&Container::Struct) {
                    return Err(bad("member outside a struct"));
                }
                return self.read_one(Some(strip_nul(payload)));
            }
            _ => return Err(bad("unknown record type")),
        };
        Ok(Record {
            name,
            kind,
            depth: self.open.len(),
        })
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<Record<'a>, BinRpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.pos >= self.body.len() {
            self.done = true;
            return (!self.open.is_empty()).then_some(Err(BinRpcError::Unterminated));
        }
        let r = self.read_one(None);
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i32) -> Vec<u8> {
        let mut o = Vec::new();
        write_int(&mut o, v);
        o
    }

    fn read_all(b: &[u8]) -> Result<Vec<Record<'_>>, BinRpcError> {
        RecordReader::new(b).collect()
    }

    #[test]
    fn int_examples_from_binrpc_md() {
        assert_eq!(int(0), [0x00]);
        assert_eq!(int(7), [0x10, 0x07]);
        assert_eq!(int(0x1234), [0x20, 0x12, 0x34]);
        assert_eq!(int(-1), [0x40, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(int(500), [0x20, 0x01, 0xf4]);
        // The long form is accepted too.
        let r = read_all(&[0x90, 0x02, 0x12, 0x34]).unwrap();
        assert_eq!(r[0].kind, RecordKind::Int(0x1234));
        for v in [0, 1, -1, 255, 256, i32::MAX, i32::MIN, 0x12_3456] {
            assert_eq!(read_all(&int(v)).unwrap()[0].kind, RecordKind::Int(v));
        }
    }

    #[test]
    fn str_and_double_examples_from_binrpc_md() {
        let mut o = Vec::new();
        write_str(&mut o, b"abcdef").unwrap();
        assert_eq!(o, b"\x71abcdef\x00");
        o.clear();
        write_str(&mut o, b"abcdefghi").unwrap();
        assert_eq!(o, b"\x91\x0aabcdefghi\x00");
        o.clear();
        write_str(&mut o, b"").unwrap();
        assert_eq!(o, [0x11, 0x00]);
        o.clear();
        write_double(&mut o, 1.5);
        assert_eq!(o, [0x22, 0x05, 0xdc]);
        o.clear();
        write_double(&mut o, -2.0);
        assert_eq!(o[0], 0x82);
        assert_eq!(read_all(&o).unwrap()[0].kind, RecordKind::Double(-2.0));
        o.clear();
        write_avp_name(&mut o, b"up_since").unwrap();
        assert_eq!(o, b"\x95\x09up_since\x00");
        o.clear();
        let long = vec![b'x'; 70_000];
        write_bytes(&mut o, &long).unwrap();
        assert_eq!(&o[..4], [0xb6, 0x01, 0x11, 0x70]);
        assert_eq!(read_all(&o).unwrap()[0].kind, RecordKind::Bytes(&long));
    }

    #[test]
    fn struct_members_and_depth() {
        // {now: "x", sub: {a: 1}, 5}
        let mut o = Vec::new();
        write_struct_start(&mut o);
        write_avp_name(&mut o, b"now").unwrap();
        write_str(&mut o, b"x").unwrap();
        write_avp_name(&mut o, b"sub").unwrap();
        write_struct_start(&mut o);
        write_avp_name(&mut o, b"a").unwrap();
        write_int(&mut o, 1);
        write_struct_end(&mut o);
        write_int(&mut o, 5);
        write_struct_end(&mut o);
        let r = read_all(&o).unwrap();
        let summary: Vec<_> = r.iter().map(|r| (r.name, r.kind, r.depth)).collect();
        assert_eq!(
            summary,
            [
                (None, RecordKind::StructStart, 1),
                (Some(&b"now"[..]), RecordKind::Str(b"x"), 1),
                (Some(&b"sub"[..]), RecordKind::StructStart, 2),
                (Some(&b"a"[..]), RecordKind::Int(1), 2),
                (None, RecordKind::StructEnd, 1),
                (None, RecordKind::Int(5), 1),
                (None, RecordKind::StructEnd, 0),
            ]
        );
    }

    #[test]
    fn malformed_records() {
        use BinRpcError::*;
        let e = |b: &[u8]| read_all(b).unwrap_err();
        assert_eq!(e(&[0x20, 0x01]), Truncated { offset: 0 }); // 2-byte int, 1 byte
        assert_eq!(e(&[0x91]), Truncated { offset: 0 }); // length field missing
        assert_eq!(
            e(&[0xc1, 0xff, 0xff, 0xff, 0xff, b'a']),
            Truncated { offset: 0 }
        ); // 4 GiB string
        assert!(matches!(e(&[0xd1, 0, 0, 0, 0, 1]), BadRecord { .. })); // 5-byte length field
        assert!(matches!(e(&[0x50, 1, 2, 3, 4, 5]), BadRecord { .. })); // 5-byte int
        assert!(matches!(e(&[0x92, 0]), BadRecord { .. })); // 9-byte double
        assert!(matches!(e(&[0x07]), BadRecord { .. })); // unknown type
        assert!(matches!(e(&[0x83]), BadRecord { .. })); // end without start
        assert!(matches!(e(&[0x03, 0x84]), BadRecord { .. })); // mismatched end
        assert!(matches!(e(&[0x25, b'a', 0, 0x00]), BadRecord { .. })); // AVP at top level
        assert!(matches!(e(&[0x03, 0x25, b'a', 0, 0x83]), BadRecord { .. })); // AVP value = end
        assert!(matches!(
            e(&[0x03, 0x25, b'a', 0, 0x25, b'b', 0]),
            BadRecord { .. }
        ));
        assert_eq!(e(&[0x03, 0x10, 0x01]), Unterminated);
        assert_eq!(e(&[0x03, 0x25, b'a', 0]), Truncated { offset: 4 });
        let deep = vec![0x04; MAX_DEPTH + 1];
        assert_eq!(e(&deep), TooDeep { offset: MAX_DEPTH });
        let ok: Vec<u8> = [vec![0x04; MAX_DEPTH], vec![0x84; MAX_DEPTH]].concat();
        assert!(read_all(&ok).is_ok());
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every 1- and 2-byte body, and every prefix of a rich body.
        for a in 0..=255u8 {
            let _ = read_all(&[a]);
            for b in 0..=255u8 {
                let _ = read_all(&[a, b]);
                let _ = read_all(&[a, b, 0xff, 0xff, 0xff, 0xff]);
            }
        }
    }
}
