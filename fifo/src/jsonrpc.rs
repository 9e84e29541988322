//! JSON-RPC 2.0 codec of Kamailio's `jsonrpcs` module, pure (no I/O): a
//! request object in, the reply text out, for the FIFO and datagram
//! transports the ctl server runs (fifo/src/ctl/server.rs).
//!
//! Reply shapes as jsonrpcs: no value → `"result": {}`; one value →
//! `"result": value`; several → `"result": [values]`; a struct → an object;
//! a fault → `"error": {"code": .., "message": ..}`.  The FIFO transport
//! reads the extra `"reply_name"` member (the client's reply FIFO).

use serde_json::Value as Json;

use crate::ctl::CtlConfig;
use crate::rpc::{RpcRegistry, RpcValue};

/// JSON-RPC's "parse error".
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "invalid request".
const INVALID_REQUEST: i64 = -32600;
/// What Kamailio's jsonrpcs answers for an unknown method (not JSON-RPC's
/// -32601).
const METHOD_NOT_FOUND_CODE: i64 = 500;

/// A handled request: the reply (None for a notification, a request
/// without `id`) and the `reply_name` member, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The reply text, ending with a newline.
    pub reply: Option<String>,
    /// The FIFO client's reply file name.
    pub reply_name: Option<String>,
}

/// Answers one request (`text` holds one JSON object).
pub fn handle(text: &[u8], registry: &RpcRegistry, pretty: bool) -> Handled {
    match serde_json::from_slice(text) {
        Ok(req) => handle_value(&req, registry, pretty),
        Err(e) => parse_error(&e, pretty),
    }
}

fn parse_error(e: &serde_json::Error, pretty: bool) -> Handled {
    Handled {
        reply: Some(error_reply(
            &Json::Null,
            PARSE_ERROR,
            &format!("Parse error: {e}"),
            pretty,
        )),
        reply_name: None,
    }
}

/// Runs every complete JSON request in `buf` (a FIFO's bytes so far, several
/// requests may follow each other), drops what was used, and writes each reply
/// to its client's `reply_name` FIFO in `cfg.json_reply_dir`.  Garbage is
/// dropped up to the next newline.
pub(crate) fn process_fifo_buffer(buf: &mut Vec<u8>, registry: &RpcRegistry, cfg: &CtlConfig) {
    loop {
        let start = buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(buf.len());
        buf.drain(..start);
        if buf.is_empty() {
            return;
        }
        let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<Json>();
        let handled = match stream.next() {
            Some(Ok(req)) => handle_value(&req, registry, cfg.json_pretty),
            Some(Err(e)) if e.is_eof() && buf.len() < cfg.max_request => return,
            Some(Err(e)) => {
                log::warn!("jsonrpc fifo: bad request: {e}");
                let end = buf
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(buf.len(), |i| i + 1);
                buf.drain(..end);
                continue;
            }
            None => return,
        };
        let used = stream.byte_offset();
        buf.drain(..used.min(buf.len()));
        match (handled.reply, handled.reply_name) {
            (Some(reply), Some(name))
                if !crate::fifo_server::send_reply(
                    &cfg.json_reply_dir,
                    &name,
                    reply.as_bytes(),
                    cfg.fifo_reply_timeout,
                ) =>
            {
                log::warn!("jsonrpc fifo: cannot write the reply to {name}");
            }
            (Some(_), None) => log::warn!("jsonrpc fifo: request without reply_name"),
            _ => {}
        }
    }
}

/// Answers one parsed request.
pub fn handle_value(req: &Json, registry: &RpcRegistry, pretty: bool) -> Handled {
    let reply_name = req
        .get("reply_name")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let id = req.get("id").cloned();
    let reply = answer(req, id.as_ref(), registry, pretty);
    Handled {
        reply: if id.is_some() || reply_name.is_some() {
            Some(reply)
        } else {
            None
        },
        reply_name,
    }
}

fn answer(req: &Json, id: Option<&Json>, registry: &RpcRegistry, pretty: bool) -> String {
    let id = id.unwrap_or(&Json::Null);
    let Some(method) = req.get("method").and_then(Json::as_str) else {
        return error_reply(id, INVALID_REQUEST, "Invalid Request", pretty);
    };
    let params = match req.get("params") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a.iter().map(from_json).collect(),
        Some(other) => vec![from_json(other)],
    };
    if registry.lookup(method).is_none() {
        return error_reply(id, METHOD_NOT_FOUND_CODE, "Method Not Found", pretty);
    }
    match crate::ctl::call_guarded(registry, method, params) {
        Ok(mut values) => {
            let result = match values.len() {
                // Kamailio answers a method that added nothing with `{}`.
                0 => RpcValue::Struct(Vec::new()),
                1 => values.remove(0),
                _ => RpcValue::Array(values),
            };
            let mut out = String::new();
            let mut w = Writer::new(&mut out, pretty);
            w.open('{');
            w.key("jsonrpc");
            w.str("2.0");
            w.key("result");
            w.value(&result);
            w.key("id");
            w.json(id);
            w.close('}');
            out.push('\n');
            out
        }
        Err(f) => error_reply(id, i64::from(f.code), &f.message, pretty),
    }
}

fn error_reply(id: &Json, code: i64, message: &str, pretty: bool) -> String {
    let mut out = String::new();
    let mut w = Writer::new(&mut out, pretty);
    w.open('{');
    w.key("jsonrpc");
    w.str("2.0");
    w.key("error");
    w.open('{');
    w.key("code");
    w.raw(&code.to_string());
    w.key("message");
    w.str(message);
    w.close('}');
    w.key("id");
    w.json(id);
    w.close('}');
    out.push('\n');
    out
}

/// A JSON parameter as an RPC value (numbers that fit are INT, as binrpc).
fn from_json(v: &Json) -> RpcValue {
    match v {
        Json::Null => RpcValue::Null,
        Json::Bool(b) => RpcValue::Int(i32::from(*b)),
        Json::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => RpcValue::Int(i),
            None => RpcValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => RpcValue::Str(s.clone()),
        Json::Array(a) => RpcValue::Array(a.iter().map(from_json).collect()),
        Json::Object(m) => {
            RpcValue::Struct(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// A small JSON writer keeping struct member order (Kamailio's order) and
/// indenting with tabs when pretty, as jsonrpcs' `pretty_format`.
struct Writer<'a> {
    out: &'a mut String,
    pretty: bool,
    depth: usize,
    /// Per open container: no member written yet.
    first: Vec<bool>,
    /// A key was written; its value comes next.
    pending_value: bool,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut String, pretty: bool) -> Self {
        Writer {
            out,
            pretty,
            depth: 0,
            first: Vec::new(),
            pending_value: false,
        }
    }

    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push('\t');
            }
        }
    }

    /// Before a member or element: separator and indentation.
    fn item(&mut self) {
        if let Some(first) = self.first.last_mut() {
            if !*first {
                self.out.push(',');
            }
            *first = false;
            self.newline();
        }
    }

    fn open(&mut self, c: char) {
        self.out.push(c);
        self.depth += 1;
        self.first.push(true);
    }

    fn close(&mut self, c: char) {
        self.depth -= 1;
        let empty = self.first.pop().unwrap_or(true);
        // Kamailio's printer breaks the line of an empty object, not of `[]`.
        if !empty || c == '}' {
            self.newline();
        }
        self.out.push(c);
    }

    fn key(&mut self, k: &str) {
        self.item();
        quote(self.out, k);
        self.out.push(':');
        if self.pretty {
            self.out.push('\t');
        }
        // The value that follows is not a new item.
        self.pending_value = true;
    }

    fn value_prefix(&mut self) {
        if self.pending_value {
            self.pending_value = false;
        } else {
            self.item();
        }
    }

    fn str(&mut self, s: &str) {
        self.value_prefix();
        quote(self.out, s);
    }

    fn raw(&mut self, s: &str) {
        self.value_prefix();
        self.out.push_str(s);
    }

    fn json(&mut self, v: &Json) {
        self.value_prefix();
        self.out.push_str(&v.to_string());
    }

    fn value(&mut self, v: &RpcValue) {
        match v {
            RpcValue::Int(i) => self.raw(&i.to_string()),
            RpcValue::Double(d) => {
                // 64-bit counters travel as doubles: print whole ones as integers.
                let t = if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e15 {
                    format!("{}", *d as i64)
                } else if d.is_finite() {
                    d.to_string()
                } else {
                    "null".to_owned()
                };
                self.raw(&t)
            }
            RpcValue::Str(s) => self.str(s),
            RpcValue::Bytes(b) => self.str(&String::from_utf8_lossy(b)),
            RpcValue::Null => self.raw("null"),
            RpcValue::Struct(members) => {
                self.value_prefix();
                self.open('{');
                for (k, v) in members {
                    self.key(k);
                    self.value(v);
                }
                self.close('}');
            }
            RpcValue::Array(items) => {
                self.value_prefix();
                self.open('[');
                for v in items {
                    self.value(v);
                }
                self.close(']');
            }
        }
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> RpcRegistry {
        let mut r = RpcRegistry::new();
        r.register("t.one", &["one value"], |ctx| {
            ctx.add(RpcValue::Str("x\"y".into()));
            Ok(())
        })
        .unwrap();
        r.register("t.many", &["several"], |ctx| {
            ctx.add(RpcValue::Int(1));
            ctx.add(RpcValue::long(5_000_000_000));
            Ok(())
        })
        .unwrap();
        r.register("t.st", &["struct"], |ctx| {
            let p = ctx.scan_int(0)?;
            ctx.add(RpcValue::structure([
                ("b", RpcValue::Int(p)),
                ("a", RpcValue::Array(vec![])),
            ]));
            Ok(())
        })
        .unwrap();
        r.register("t.void", &["nothing"], |_| Ok(())).unwrap();
        r
    }

    fn call(text: &str) -> Json {
        let h = handle(text.as_bytes(), &reg(), false);
        serde_json::from_str(&h.reply.expect("a reply")).expect("valid JSON")
    }

    #[test]
    fn shapes() {
        let r = call(r#"{"jsonrpc":"2.0","method":"t.one","id":1}"#);
        assert_eq!(r["result"], "x\"y");
        assert_eq!(r["id"], 1);
        let r = call(r#"{"jsonrpc":"2.0","method":"t.many","id":"a"}"#);
        assert_eq!(r["result"], serde_json::json!([1, 5_000_000_000i64]));
        let r = call(r#"{"jsonrpc":"2.0","method":"t.st","params":[7],"id":2}"#);
        assert_eq!(r["result"], serde_json::json!({"b": 7, "a": []}));
        let r = call(r#"{"jsonrpc":"2.0","method":"t.void","id":3}"#);
        assert_eq!(r["result"], serde_json::json!({}));
    }

    #[test]
    fn order_kept_and_pretty() {
        let h = handle(
            br#"{"jsonrpc":"2.0","method":"t.st","params":["4"],"id":9,"reply_name":"r1"}"#,
            &reg(),
            true,
        );
        assert_eq!(h.reply_name.as_deref(), Some("r1"));
        let text = h.reply.unwrap();
        assert!(text.find("\"b\"").unwrap() < text.find("\"a\"").unwrap());
        assert!(text.contains("\n\t\"result\":\t{"), "{text}");
        serde_json::from_str::<Json>(&text).unwrap();
    }

    #[test]
    fn errors() {
        let r = call(r#"{"jsonrpc":"2.0","method":"nope","id":1}"#);
        assert_eq!(r["error"]["code"], METHOD_NOT_FOUND_CODE);
        assert_eq!(r["error"]["message"], "Method Not Found");
        let r = call("{not json");
        assert_eq!(r["error"]["code"], PARSE_ERROR);
        let r = call(r#"{"jsonrpc":"2.0","id":1}"#);
        assert_eq!(r["error"]["code"], INVALID_REQUEST);
        let r = call(r#"{"jsonrpc":"2.0","method":"t.st","params":["x"],"id":1}"#);
        assert_eq!(r["error"]["code"], 400);
        // A notification gets no reply.
        assert_eq!(
            handle(br#"{"jsonrpc":"2.0","method":"t.one"}"#, &reg(), false).reply,
            None
        );
    }
}
