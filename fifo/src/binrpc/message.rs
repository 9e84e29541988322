//! Whole packets: framing, requests, replies and faults, and [`RpcValue`] ⇄ records.

use super::header::{decode_header, encode_header, Header, PacketType};
use super::record::{self, RecordKind, RecordReader};
use super::{BinRpcError, Decoded};
use crate::rpc::RpcValue;

/// A complete packet found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its header.
    pub header: Header,
    /// Its body (exactly `header.body_len` bytes).
    pub body: &'a [u8],
}

/// Finds the packet at the start of `buf`: `Complete(frame, total_len)`, or `NeedMore(n)`
/// while the header or body is incomplete. A body announced larger than `max_body` is refused
/// at once, before anything is buffered for it.
pub fn split_frame(buf: &[u8], max_body: usize) -> Result<Decoded<Frame<'_>>, BinRpcError> {
    let (header, hlen) = match decode_header(buf)? {
        Decoded::Complete(h, n) => (h, n),
        Decoded::NeedMore(n) => return Ok(Decoded::NeedMore(n)),
    };
    let body_len = header.body_len as usize;
    if body_len > max_body {
        return Err(BinRpcError::BodyTooLarge {
            len: u64::from(header.body_len),
            max: max_body,
        });
    }
    let total = hlen + body_len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    Ok(Decoded::Complete(
        Frame {
            header,
            body: &buf[hlen..total],
        },
        total,
    ))
}

fn packet(kind: PacketType, cookie: u32, body: Vec<u8>) -> Result<Vec<u8>, BinRpcError> {
    let body_len = u32::try_from(body.len()).map_err(|_| BinRpcError::Oversized)?;
    let mut out = Vec::with_capacity(body.len() + super::MAX_HDR_SIZE);
    encode_header(
        &Header {
            kind,
            body_len,
            cookie,
        },
        &mut out,
    );
    out.extend_from_slice(&body);
    Ok(out)
}

/// Appends `v` as records. Arrays go out as a STRUCT of bare values, as Kamailio's
/// `rpc->add("[")`/`array_add` do: kamcmd cannot read an ARRAY as a struct member.
pub fn encode_value(v: &RpcValue, out: &mut Vec<u8>) -> Result<(), BinRpcError> {
    match v {
        RpcValue::Int(i) => record::write_int(out, *i),
        RpcValue::Str(s) => record::write_str(out, s.as_bytes())?,
        RpcValue::Double(d) => record::write_double(out, *d),
        RpcValue::Bytes(b) => record::write_bytes(out, b)?,
        RpcValue::Null => record::write_bytes(out, &[])?,
        RpcValue::Struct(members) => {
            record::write_struct_start(out);
            for (name, value) in members {
                record::write_avp_name(out, name.as_bytes())?;
                encode_value(value, out)?;
            }
            record::write_struct_end(out);
        }
        RpcValue::Array(items) => {
            record::write_struct_start(out);
            for item in items {
                encode_value(item, out)?;
            }
            record::write_struct_end(out);
        }
    }
    Ok(())
}

/// A request packet: method name then the parameters.
pub fn encode_request(
    method: &str,
    params: &[RpcValue],
    cookie: u32,
) -> Result<Vec<u8>, BinRpcError> {
    let mut body = Vec::new();
    record::write_str(&mut body, method.as_bytes())?;
    for p in params {
        encode_value(p, &mut body)?;
    }
    packet(PacketType::Request, cookie, body)
}

/// A reply packet carrying `values` as top-level records.
pub fn encode_reply(values: &[RpcValue], cookie: u32) -> Result<Vec<u8>, BinRpcError> {
    let mut body = Vec::new();
    for v in values {
        encode_value(v, &mut body)?;
    }
    packet(PacketType::Reply, cookie, body)
}

/// A fault packet: INT code, STR message.
pub fn encode_fault(code: i32, message: &str, cookie: u32) -> Vec<u8> {
    let mut body = Vec::new();
    record::write_int(&mut body, code);
    // A fault message longer than 4 GiB cannot happen; fall back to an empty one if it did.
    if record::write_str(&mut body, message.as_bytes()).is_err() {
        body.truncate(0);
        record::write_int(&mut body, code);
        body.extend_from_slice(&[0x11, 0x00]);
    }
    // The body is a few bytes over the message, far below the 4 GiB length limit.
    packet(PacketType::Fault, cookie, body).unwrap_or_default()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A struct or array being rebuilt from the flat record stream.
struct Open {
    name: Option<String>,
    is_array: bool,
    members: Vec<(Option<String>, RpcValue)>,
}

impl Open {
    /// A struct whose members are all unnamed is Kamailio's encoding of an array.
    fn finish(self) -> RpcValue {
        let all_bare = !self.members.is_empty() && self.members.iter().all(|(n, _)| n.is_none());
        if self.is_array || all_bare {
            RpcValue::Array(self.members.into_iter().map(|(_, v)| v).collect())
        } else {
            RpcValue::Struct(
                self.members
                    .into_iter()
                    .map(|(n, v)| (n.unwrap_or_default(), v))
                    .collect(),
            )
        }
    }
}

/// Decodes a body into top-level values (structs rebuilt from their records).
pub fn decode_body(body: &[u8]) -> Result<Vec<RpcValue>, BinRpcError> {
    let mut top = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    for rec in RecordReader::new(body) {
        let rec = rec?;
        let name = rec.name.map(text);
        let value = match rec.kind {
            RecordKind::StructStart | RecordKind::ArrayStart => {
                let is_array = rec.kind == RecordKind::ArrayStart;
                stack.push(Open {
                    name,
                    is_array,
                    members: Vec::new(),
                });
                continue;
            }
            RecordKind::StructEnd | RecordKind::ArrayEnd => {
                // The reader guarantees ends match starts.
                let Some(open) = stack.pop() else {
                    return Err(BinRpcError::Unterminated);
                };
                let name = open.name.clone();
                push(&mut stack, &mut top, name, open.finish());
                continue;
            }
            RecordKind::Int(i) => RpcValue::Int(i),
            RecordKind::Str(s) => RpcValue::Str(text(s)),
            RecordKind::Double(d) => RpcValue::Double(d),
            RecordKind::Bytes(b) => RpcValue::Bytes(b.to_vec()),
        };
        push(&mut stack, &mut top, name, value);
    }
    Ok(top)
}

fn push(stack: &mut [Open], top: &mut Vec<RpcValue>, name: Option<String>, v: RpcValue) {
    match stack.last_mut() {
        Some(open) => open.members.push((name, v)),
        None => top.push(v),
    }
}

/// Splits a request body into the method name and its parameters.
pub fn decode_request(body: &[u8]) -> Result<(String, Vec<RpcValue>), BinRpcError> {
    let mut values = decode_body(body)?.into_iter();
    match values.next() {
        Some(RpcValue::Str(method)) => Ok((method, values.collect())),
        Some(_) => Err(BinRpcError::BadMessage("method name is not a string")),
        None => Err(BinRpcError::BadMessage("empty request")),
    }
}

/// Reads a fault body: (code, message). Missing parts read as 0 / empty, as kamcmd prints
/// whatever is there.
pub fn decode_fault(body: &[u8]) -> Result<(i32, String), BinRpcError> {
    let values = decode_body(body)?;
    let code = values.first().and_then(RpcValue::as_int).unwrap_or(0);
    let msg = values.get(1).map(ToString::to_string).unwrap_or_default();
    Ok((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_request_worked_example() {
        let p = encode_request("core.uptime", &[], 0x1234_abcd).unwrap();
        let mut want = vec![0xa1, 0x03, 0x0e, 0x12, 0x34, 0xab, 0xcd, 0x91, 0x0c];
        want.extend_from_slice(b"core.uptime\0");
        assert_eq!(p, want);
        let Decoded::Complete(f, n) = split_frame(&p, 1024).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(n, p.len());
        assert_eq!(
            decode_request(f.body).unwrap(),
            ("core.uptime".to_owned(), vec![])
        );
    }

    #[test]
    fn fault_worked_example() {
        let p = encode_fault(500, "command foo.bar not found", 7);
        let mut want = vec![0xa1, 0x30, 0x1f, 0x07, 0x20, 0x01, 0xf4, 0x91, 0x1a];
        want.extend_from_slice(b"command foo.bar not found\0");
        assert_eq!(p, want);
        let Decoded::Complete(f, _) = split_frame(&p, 1024).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(f.header.kind, PacketType::Fault);
        assert_eq!(
            decode_fault(f.body).unwrap(),
            (500, "command foo.bar not found".into())
        );
    }

    #[test]
    fn uptime_reply_shape() {
        let v = RpcValue::structure([
            ("now", RpcValue::from("Sun Nov 29 16:00:00 2026")),
            ("up_since", RpcValue::from("Sun Nov 29 15:59:18 2026")),
            ("uptime", RpcValue::Int(42)),
        ]);
        let p = encode_reply(std::slice::from_ref(&v), 0x1234_abcd).unwrap();
        assert_eq!(&p[..7], [0xa1, 0x13, 0x52, 0x12, 0x34, 0xab, 0xcd]);
        assert_eq!(&p[7..13], b"\x03\x45now\x00");
        assert_eq!(&p[p.len() - 11..], b"\x75uptime\x00\x10\x2a\x83");
        let Decoded::Complete(f, _) = split_frame(&p, 1024).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(decode_body(f.body).unwrap(), vec![v]);
    }

    #[test]
    fn round_trip_values() {
        let values = vec![
            RpcValue::Int(-5),
            RpcValue::from("héllo, world"),
            RpcValue::Double(3.25),
            RpcValue::Bytes(vec![0, 1, 2, 255]),
            RpcValue::structure([
                ("a", RpcValue::Int(1)),
                ("nested", RpcValue::structure([("x", RpcValue::from("y"))])),
                (
                    "list",
                    RpcValue::Array(vec![RpcValue::Int(1), RpcValue::from("two")]),
                ),
            ]),
            RpcValue::Array(vec![RpcValue::structure([("k", RpcValue::Int(0))])]),
        ];
        let p = encode_reply(&values, 1).unwrap();
        let Decoded::Complete(f, _) = split_frame(&p, 1 << 16).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(decode_body(f.body).unwrap(), values);
    }

    #[test]
    fn framing_needs_more_and_limits() {
        let p = encode_request("core.echo", &["abc".into(), RpcValue::Int(9)], 99).unwrap();
        for cut in 0..p.len() {
            match split_frame(&p[..cut], 1024).unwrap() {
                Decoded::NeedMore(n) => assert!(n > 0 && cut + n <= p.len()),
                Decoded::Complete(..) => panic!("complete at {cut}"),
            }
        }
        // Two packets back to back: the first is split off exactly.
        let two = [p.clone(), p.clone()].concat();
        let Decoded::Complete(_, n) = split_frame(&two, 1024).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(n, p.len());
        // Huge announced body → refused before buffering.
        let huge = [0xa1, 0x0c, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            split_frame(&huge, 1024),
            Err(BinRpcError::BodyTooLarge {
                len: 0xffff_ffff,
                max: 1024
            })
        );
        assert!(matches!(
            decode_request(&[0x10, 0x01]),
            Err(BinRpcError::BadMessage(_))
        ));
        assert!(matches!(
            decode_request(&[]),
            Err(BinRpcError::BadMessage(_))
        ));
    }

    #[test]
    fn golden_packets() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let read = |n: &str| std::fs::read(format!("{dir}/{n}")).unwrap();
        assert_eq!(
            encode_request("core.uptime", &[], 0x1234_abcd).unwrap(),
            read("request_core_uptime.bin")
        );
        assert_eq!(
            encode_request(
                "core.echo",
                &["s".into(), RpcValue::Int(-1), RpcValue::Double(1.5)],
                0x2a
            )
            .unwrap(),
            read("request_core_echo.bin")
        );
        assert_eq!(
            encode_fault(500, "command foo.bar not found", 7),
            read("fault_not_found.bin")
        );
        let reply = RpcValue::structure([
            ("name", RpcValue::from("x")),
            (
                "list",
                RpcValue::Array(vec![RpcValue::Int(1), RpcValue::Int(2)]),
            ),
        ]);
        assert_eq!(
            encode_reply(&[reply], 0x0102).unwrap(),
            read("reply_struct_array.bin")
        );
    }
}
