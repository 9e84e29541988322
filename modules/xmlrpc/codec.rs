//! XML-RPC documents ↔ [`RpcValue`]s: the `methodCall` a client sends and
//! the `methodResponse` (values or fault) we answer with.

use ser_fifo::{RpcFault, RpcValue};

use super::xml::{self, Element};

/// A decoded `methodCall`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `methodName`.
    pub method: String,
    /// The `params`, in order.
    pub params: Vec<RpcValue>,
}

/// How to read incoming strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOpts {
    /// `double_lf_to_crlf`: LF LF in strings stands for CR LF.
    pub double_lf_to_crlf: bool,
}

/// Why a request could not be decoded (answered as a fault).
fn malformed(what: impl std::fmt::Display) -> RpcFault {
    RpcFault::new(400, format!("Malformed XML-RPC request: {what}"))
}

/// Decodes a `methodCall` document.
pub fn decode_call(body: &[u8], opts: DecodeOpts) -> Result<Call, RpcFault> {
    let doc = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
    let root = xml::parse(doc).map_err(malformed)?;
    if root.name != "methodCall" {
        return Err(malformed(format!(
            "root element is <{}>, not <methodCall>",
            root.name
        )));
    }
    let method = root
        .child("methodName")
        .map(|m| m.text().trim().to_owned())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| malformed("no <methodName>"))?;
    let mut params = Vec::new();
    if let Some(ps) = root.child("params") {
        for p in ps.elements() {
            if p.name != "param" {
                return Err(malformed(format!("<{}> inside <params>", p.name)));
            }
            let v = p
                .child("value")
                .ok_or_else(|| malformed("<param> without <value>"))?;
            params.push(decode_value(v, opts)?);
        }
    }
    Ok(Call { method, params })
}

/// One `<value>`.
fn decode_value(v: &Element, opts: DecodeOpts) -> Result<RpcValue, RpcFault> {
    let mut typed = v.elements();
    let Some(t) = typed.next() else {
        // No type element: a string.
        return Ok(RpcValue::Str(string_of(&v.text(), opts)));
    };
    if typed.next().is_some() || v.has_text() {
        return Err(malformed("<value> with more than one value"));
    }
    let text = t.text();
    let num = text.trim();
    let bad = |what: &str| malformed(format!("bad <{}> value {num:?}: {what}", t.name));
    Ok(match t.name.as_str() {
        "string" => RpcValue::Str(string_of(&text, opts)),
        "int" | "i4" => RpcValue::Int(num.parse().map_err(|_| bad("not a 32-bit integer"))?),
        // 64-bit values travel as doubles, as Kamailio's longs do.
        "i8" => {
            let n: i64 = num.parse().map_err(|_| bad("not an integer"))?;
            i32::try_from(n).map_or(RpcValue::long(n), RpcValue::Int)
        }
        "double" => RpcValue::Double(
            num.parse::<f64>()
                .ok()
                .filter(|d| d.is_finite())
                .ok_or_else(|| bad("not a number"))?,
        ),
        "boolean" => match num {
            "0" | "false" => RpcValue::Int(0),
            "1" | "true" => RpcValue::Int(1),
            _ => return Err(bad("not 0 or 1")),
        },
        "base64" => RpcValue::Bytes(base64_decode(num).ok_or_else(|| bad("not base64"))?),
        "dateTime.iso8601" => RpcValue::Str(num.to_owned()),
        "nil" => RpcValue::Null,
        "struct" => {
            let mut members = Vec::new();
            for m in t.elements() {
                if m.name != "member" {
                    return Err(malformed(format!("<{}> inside <struct>", m.name)));
                }
                let name = m
                    .child("name")
                    .ok_or_else(|| malformed("<member> without <name>"))?
                    .text();
                let val = m
                    .child("value")
                    .ok_or_else(|| malformed("<member> without <value>"))?;
                members.push((name, decode_value(val, opts)?));
            }
            RpcValue::Struct(members)
        }
        "array" => {
            let data = t
                .child("data")
                .ok_or_else(|| malformed("<array> without <data>"))?;
            let mut items = Vec::new();
            for v in data.elements() {
                if v.name != "value" {
                    return Err(malformed(format!("<{}> inside <data>", v.name)));
                }
                items.push(decode_value(v, opts)?);
            }
            RpcValue::Array(items)
        }
        other => return Err(malformed(format!("unknown value type <{other}>"))),
    })
}

fn string_of(s: &str, opts: DecodeOpts) -> String {
    if opts.double_lf_to_crlf {
        s.replace("\n\n", "\r\n")
    } else {
        s.to_owned()
    }
}

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>";

/// A `methodResponse` carrying `values`, all in one `<param>` as SER's
/// xmlrpc sends them (a client sees one value, or a tuple of several).
pub fn encode_response(values: &[RpcValue], escape_cr: bool) -> String {
    let mut out = String::from(HEAD);
    out.push_str("<params><param>");
    for v in values {
        encode_value(v, escape_cr, &mut out);
    }
    out.push_str("</param></params></methodResponse>\r\n");
    out
}

/// A `methodResponse` fault with `faultCode` and `faultString`.
pub fn encode_fault(fault: &RpcFault, escape_cr: bool) -> String {
    let mut out = String::from(HEAD);
    out.push_str("<fault>");
    encode_value(
        &RpcValue::structure([
            ("faultCode", RpcValue::Int(fault.code)),
            ("faultString", RpcValue::Str(fault.message.clone())),
        ]),
        escape_cr,
        &mut out,
    );
    out.push_str("</fault></methodResponse>\r\n");
    out
}

fn encode_value(v: &RpcValue, escape_cr: bool, out: &mut String) {
    out.push_str("<value>");
    match v {
        RpcValue::Int(i) => {
            out.push_str("<i4>");
            out.push_str(&i.to_string());
            out.push_str("</i4>");
        }
        RpcValue::Double(d) => {
            out.push_str("<double>");
            // XML-RPC doubles have no exponent and no inf/nan.
            let d = if d.is_finite() { *d } else { 0.0 };
            if d.fract() == 0.0 && d.abs() < 1e15 {
                out.push_str(&format!("{d:.1}"));
            } else {
                out.push_str(&format!("{d}"));
            }
            out.push_str("</double>");
        }
        RpcValue::Str(s) => {
            out.push_str("<string>");
            xml::escape(s, escape_cr, out);
            out.push_str("</string>");
        }
        RpcValue::Bytes(b) => {
            out.push_str("<base64>");
            out.push_str(&base64_encode(b));
            out.push_str("</base64>");
        }
        RpcValue::Null => out.push_str("<string></string>"),
        RpcValue::Struct(members) => {
            out.push_str("<struct>");
            for (name, v) in members {
                out.push_str("<member><name>");
                xml::escape(name, escape_cr, out);
                out.push_str("</name>");
                encode_value(v, escape_cr, out);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        RpcValue::Array(items) => {
            out.push_str("<array><data>");
            for v in items {
                encode_value(v, escape_cr, out);
            }
            out.push_str("</data></array>");
        }
    }
    out.push_str("</value>");
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (white space ignored, padding optional).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut pad = false;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            pad = true;
            continue;
        }
        if pad {
            return None;
        }
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
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

    fn call(params: &str) -> Result<Call, RpcFault> {
        let doc = format!(
            "<?xml version='1.0'?>\n<methodCall>\n<methodName>m.x</methodName>\n\
             <params>{params}</params>\n</methodCall>\n"
        );
        decode_call(doc.as_bytes(), DecodeOpts::default())
    }

    fn param(v: &str) -> String {
        format!("<param><value>{v}</value></param>")
    }

    #[test]
    fn every_value_type_decodes() {
        let ps = [
            param("<string>a&amp;b</string>"),
            param("plain"),
            param("<int>-5</int>"),
            param("<i4>7</i4>"),
            param("<i8>5000000000</i8>"),
            param("<double>1.5</double>"),
            param("<boolean>1</boolean>"),
            param("<base64>aGVsbG8=</base64>"),
            param(
                "<struct><member><name>k</name><value><int>1</int></value></member>\
                 <member><name>s</name><value>t</value></member></struct>",
            ),
            param("<array><data><value><int>1</int></value><value>x</value></data></array>"),
            param("<nil/>"),
            param("<string/>"),
        ]
        .concat();
        let c = call(&ps).unwrap();
        assert_eq!(c.method, "m.x");
        assert_eq!(
            c.params,
            vec![
                RpcValue::Str("a&b".into()),
                RpcValue::Str("plain".into()),
                RpcValue::Int(-5),
                RpcValue::Int(7),
                RpcValue::Double(5e9),
                RpcValue::Double(1.5),
                RpcValue::Int(1),
                RpcValue::Bytes(b"hello".to_vec()),
                RpcValue::structure([("k", RpcValue::Int(1)), ("s", RpcValue::from("t"))]),
                RpcValue::Array(vec![RpcValue::Int(1), RpcValue::from("x")]),
                RpcValue::Null,
                RpcValue::Str(String::new()),
            ]
        );
        let no_params = decode_call(
            b"<methodCall><methodName>a</methodName></methodCall>",
            DecodeOpts::default(),
        )
        .unwrap();
        assert!(no_params.params.is_empty());
    }

    #[test]
    fn bad_calls_are_400_faults() {
        for bad in [
            param("<int>x</int>"),
            param("<int>99999999999</int>"),
            param("<double>inf</double>"),
            param("<boolean>2</boolean>"),
            param("<base64>@@</base64>"),
            param("<foo>1</foo>"),
            param("<int>1</int><int>2</int>"),
            param("<struct><member><value>1</value></member></struct>"),
            param("<array><value>1</value></array>"),
            "<param/>".into(),
            "<x/>".into(),
        ] {
            let e = call(&bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}: {e}");
        }
        for doc in [
            &b"garbage"[..],
            b"<methodResponse/>",
            b"<methodCall><params/></methodCall>",
            b"<methodCall><methodName> </methodName></methodCall>",
            b"\xff\xfe",
        ] {
            assert_eq!(
                decode_call(doc, DecodeOpts::default()).unwrap_err().code,
                400
            );
        }
    }

    #[test]
    fn double_lf_to_crlf() {
        let doc = b"<methodCall><methodName>a</methodName><params><param><value>x\n\ny</value>\
                    </param></params></methodCall>";
        let opts = DecodeOpts {
            double_lf_to_crlf: true,
        };
        assert_eq!(
            decode_call(doc, opts).unwrap().params,
            vec![RpcValue::from("x\r\ny")]
        );
    }

    #[test]
    fn responses_round_trip_through_the_reader() {
        let vals = [
            RpcValue::Int(3),
            RpcValue::Double(2.0),
            RpcValue::Double(0.25),
            RpcValue::Str("a<b\r\n".into()),
            RpcValue::Bytes(vec![0, 1, 2, 255]),
            RpcValue::Null,
            RpcValue::structure([("n", RpcValue::Array(vec![RpcValue::Int(1)]))]),
        ];
        let out = encode_response(&vals, true);
        assert!(out.contains("<i4>3</i4>") && out.contains("<double>2.0</double>"));
        assert!(out.contains("a&lt;b&#xD;\n"));
        // The response decodes with our own reader as a call's params would.
        let as_call = out
            .replace("methodResponse>", "methodCall>")
            .replace("<params>", "<methodName>r</methodName><params>");
        let as_call = as_call.split_once("?>").unwrap().1;
        // One <param> holding several values is not a call; read the values directly.
        let root = xml::parse(as_call).unwrap();
        let p = root.child("params").unwrap().child("param").unwrap();
        let got: Vec<RpcValue> = p
            .elements()
            .map(|v| decode_value(v, DecodeOpts::default()).unwrap())
            .collect();
        let mut want = vals.to_vec();
        want[3] = RpcValue::Str("a<b\r\n".into());
        want[5] = RpcValue::Str(String::new());
        assert_eq!(got, want);
        let f = encode_fault(&RpcFault::new(500, "command x not found"), true);
        assert!(f.contains("<name>faultCode</name><value><i4>500</i4></value>"));
        assert!(f.contains("<string>command x not found</string>"));
    }

    #[test]
    fn base64() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
        }
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zg==Zg").is_none());
    }

    #[test]
    fn mutated_calls_never_panic() {
        let base = "<?xml version=\"1.0\"?><methodCall><methodName>a.b</methodName><params>\
                    <param><value><struct><member><name>k</name><value><i4>1</i4></value>\
                    </member></struct></value></param><param><value><array><data><value>\
                    <base64>aGk=</base64></value><value>&lt;x&#65;</value></data></array>\
                    </value></param><param><value><![CDATA[c]]></value></param></params>\
                    </methodCall>";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let alphabet = b"<>/&;#x=\"' abc[]!-?\xff0";
        for _ in 0..5000 {
            let mut doc = base.as_bytes().to_vec();
            for _ in 0..1 + next(4) {
                let at = next(doc.len());
                match next(3) {
                    0 => doc[at] = alphabet[next(alphabet.len())],
                    1 => {
                        doc.remove(at);
                    }
                    _ => {
                        let end = (at + next(16)).min(doc.len());
                        let piece = doc[at..end].to_vec();
                        doc.splice(at..at, piece);
                    }
                }
            }
            let _ = decode_call(&doc, DecodeOpts::default());
        }
    }
}
