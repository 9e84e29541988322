//! The facts of one accounting event (Kamailio's core attributes: method,
//! From/To tags, Call-ID, code, reason, time) and the `name=$pvar;...`
//! extra attribute lists, evaluated on the transaction's request.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ser_sip::SipMsg;

use crate::runtime::ctx::{Env, MsgCtx};
use crate::runtime::flags::Flags;
use crate::runtime::format::Format;
use crate::runtime::transport::{Dest, Myself, Proto, Transport};
use crate::tm::hooks::ReplyOut;

/// What happened to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// 2xx (or 183 with early media).
    Answered,
    /// A negative final reply.
    Failed,
}

/// One accounting record's core attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Request method.
    pub method: String,
    /// From tag.
    pub from_tag: String,
    /// To tag (of the reply when there is one).
    pub to_tag: String,
    /// Call-ID.
    pub callid: String,
    /// CSeq number.
    pub cseq: u32,
    /// Reply code (0 for a script call without one).
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Unix seconds.
    pub time: i64,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Accounting never sends: the request context it builds has no transport.
struct NoSend;

impl Transport for NoSend {
    fn send(&self, _buf: &[u8], _dst: &Dest) -> std::io::Result<()> {
        Err(std::io::Error::other("acc does not send"))
    }
}

fn null_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new(Arc::new(NoSend), Myself::default(), Vec::new()))
}

fn text(m: &SipMsg, span: Option<ser_sip::Span>) -> String {
    span.map(|s| String::from_utf8_lossy(m.s(s)).into_owned())
        .unwrap_or_default()
}

impl Record {
    fn of_msg(req: &SipMsg, code: u16, reason: &str, to_tag: Option<String>) -> Record {
        let method = if req.is_request() {
            String::from_utf8_lossy(req.method_bytes()).into_owned()
        } else {
            req.cseq()
                .map(|c| text(req, Some(c.method_span)))
                .unwrap_or_default()
        };
        Record {
            method,
            from_tag: req.from().map(|f| text(req, f.tag)).unwrap_or_default(),
            to_tag: to_tag
                .unwrap_or_else(|| req.to().map(|t| text(req, t.tag)).unwrap_or_default()),
            callid: req
                .call_id()
                .map(|c| String::from_utf8_lossy(c).trim().to_owned())
                .unwrap_or_default(),
            cseq: req.cseq().map(|c| c.number).unwrap_or(0),
            code,
            reason: reason.to_owned(),
            time: now(),
        }
    }

    /// The record of a reply tm sent upstream, with a context holding the
    /// transaction's request, flags and AVPs (for the extra attributes).
    pub fn of_reply(r: &ReplyOut) -> Option<(Record, MsgCtx<'static>)> {
        let req = SipMsg::parse(r.request.clone()).ok()?;
        let reply = SipMsg::parse(r.reply.clone()).ok();
        let (reason, to_tag) = match &reply {
            Some(m) => (
                String::from_utf8_lossy(m.reason().unwrap_or(b"")).into_owned(),
                Some(m.to().map(|t| text(m, t.tag)).unwrap_or_default()),
            ),
            None => (String::new(), None),
        };
        let rec = Record::of_msg(&req, r.code, &reason, to_tag);
        let mut ctx = MsgCtx::new(req, null_env(), r.src, r.dst, Proto::Udp);
        ctx.flags = Flags(r.flags);
        ctx.avps = r.avps.clone();
        Some((rec, ctx))
    }

    /// The record of a request the script accounts itself.
    pub fn of_request(ctx: &MsgCtx<'_>, code: u16, reason: &str) -> Record {
        Record::of_msg(&ctx.msg, code, reason, None)
    }

    /// Kamailio's log line: `method=..;from_tag=..;to_tag=..;call_id=..;code=..;reason=..`,
    /// the extra attributes, then `timestamp=`.
    pub fn log_line(&self, extra: &[(String, String)]) -> String {
        let mut s = format!(
            "method={};from_tag={};to_tag={};call_id={};code={};reason={}",
            self.method, self.from_tag, self.to_tag, self.callid, self.code, self.reason
        );
        for (k, v) in extra {
            s.push_str(&format!(";{k}={v}"));
        }
        s.push_str(&format!(";timestamp={}", self.time));
        s
    }
}

/// The source address of a record's context as `ip`, `port` strings.
pub fn src_of(ctx: &MsgCtx<'_>) -> (String, u16) {
    let a: SocketAddr = ctx.src;
    (a.ip().to_string(), a.port())
}

/// Parse `"name=$pv;name2=$pv2"` (spaces around items ignored).
pub fn parse_extra(s: &str) -> Result<Vec<(String, Format)>, String> {
    let mut out = Vec::new();
    for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("extra `{item}` is not name=value"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("extra `{item}` has no name"));
        }
        out.push((name.to_owned(), Format::parse(value.trim())?));
    }
    Ok(out)
}

/// Evaluate extra attributes on a message context (unset values are empty).
pub fn extras(ctx: &MsgCtx<'_>, list: &[(String, Format)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, f)| (n.clone(), ctx.render(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_lists() {
        let e =
            parse_extra("src_user=$fU;src_domain=$fd;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd")
                .unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[4].0, "dst_domain");
        assert!(parse_extra("x").is_err());
        assert!(parse_extra("").unwrap().is_empty());
    }

    #[test]
    fn reply_record_and_line() {
        let req =
            b"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\
From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let rep = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\
From: <sip:alice@a.example>;tag=a1\r\nTo: <sip:bob@b.example>;tag=b9\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let r = ReplyOut {
            request: req.to_vec(),
            reply: rep.to_vec(),
            code: 486,
            flags: 0,
            avps: Default::default(),
            local: false,
            src: "1.2.3.4:5060".parse().unwrap(),
            dst: "127.0.0.1:5060".parse().unwrap(),
            script: 0,
        };
        let (rec, ctx) = Record::of_reply(&r).unwrap();
        assert_eq!(
            (
                rec.method.as_str(),
                rec.from_tag.as_str(),
                rec.to_tag.as_str()
            ),
            ("INVITE", "a1", "b9")
        );
        assert_eq!(
            (rec.code, rec.reason.as_str(), rec.cseq),
            (486, "Busy Here", 7)
        );
        let ex = extras(&ctx, &parse_extra("src_user=$fU;dst_domain=$rd").unwrap());
        let line = rec.log_line(&ex);
        assert!(
            line.starts_with(
                "method=INVITE;from_tag=a1;to_tag=b9;call_id=c1;code=486;reason=Busy Here;src_user=alice;dst_domain=b.example;timestamp="
            ),
            "{line}"
        );
        assert_eq!(src_of(&ctx), ("1.2.3.4".to_owned(), 5060));
    }
}
