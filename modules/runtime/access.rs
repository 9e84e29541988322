//! Reading and writing pseudo-variables and selects against a message, and
//! rendering format strings (Kamailio `pv_get_*` / `pv_set_*` of the core pvars).

use ser_sip::{HeaderName, Scheme};

use crate::iface::{RouteEnd, RouteMask, RouteRunner};
use crate::runtime::ctx::MsgCtx;
use crate::runtime::format::{Format, Piece};
use crate::runtime::pvar::{NameAddr, Pv, UriPart};
use crate::runtime::select::{HdrPart, Select};
use crate::runtime::transport::{Dest, Proto};
use crate::runtime::value::Value;

/// Kamailio's numbers for `$snd(proto)` / `$K(UDP)`...
fn proto_number(p: Proto) -> i64 {
    match p {
        Proto::Udp => 1,
        Proto::Tcp => 2,
        Proto::Tls => 3,
        Proto::Sctp => 4,
    }
}

impl<'e> MsgCtx<'e> {
    /// The context `onsend_route` runs on: this message as the script left
    /// it (flags, branch flags, AVPs, R-URI, destination URI) — not the
    /// outgoing bytes, which are `$snd(buf)` with the rest of `$snd(...)`.
    pub fn onsend_ctx(&self, buf: &[u8], dest: &Dest) -> MsgCtx<'e> {
        let mut c = MsgCtx::new(self.msg.clone(), self.env, self.src, self.local, self.proto);
        c.new_uri = self.new_uri.clone();
        c.dst_uri = self.dst_uri.clone();
        c.flags = self.flags;
        c.bflags = self.bflags;
        c.avps = self.avps.clone();
        let local = dest.send_sock.unwrap_or(self.local);
        let af = if dest.addr.is_ipv4() { 2 } else { 10 };
        for (k, v) in [
            ("snd.ip", Value::Str(dest.addr.ip().to_string())),
            ("snd.port", Value::Int(i64::from(dest.addr.port()))),
            ("snd.af", Value::Int(af)),
            ("snd.proto", Value::Int(proto_number(dest.proto))),
            (
                "snd.sproto",
                Value::Str(dest.proto.as_str().to_ascii_lowercase()),
            ),
            ("snd.len", Value::Int(buf.len() as i64)),
            (
                "snd.buf",
                Value::Str(String::from_utf8_lossy(buf).into_owned()),
            ),
            ("snd.sip", Value::Str(local.ip().to_string())),
            ("snd.sport", Value::Int(i64::from(local.port()))),
        ] {
            c.module_pvs.insert(k.to_owned(), v);
        }
        c
    }

    /// `onsend_route`: run for a request about to be sent by `forward()` or
    /// tm's branches, on [`MsgCtx::onsend_ctx`]; `drop` there keeps it from
    /// going out.  `true` when it may be sent (also without `onsend_route`).
    pub fn onsend_allows(&self, runner: Option<&dyn RouteRunner>, buf: &[u8], dest: &Dest) -> bool {
        let Some(r) = runner.filter(|r| r.has_route(RouteMask::ONSEND, "")) else {
            return true;
        };
        let mut sctx = self.onsend_ctx(buf, dest);
        if r.run_route(RouteMask::ONSEND, "", &mut sctx) == RouteEnd::Drop {
            log::info!("onsend_route dropped the message to {}", dest.addr);
            return false;
        }
        true
    }

    /// `$err.*` for `error_route`: class (1: parser), level (1 critical ..
    /// 5 low), what went wrong, and the reply code and reason to use.
    pub fn set_error_info(
        &mut self,
        class: i64,
        level: i64,
        info: &str,
        rcode: u16,
        rreason: &str,
    ) {
        for (k, v) in [
            ("err.class", Value::Int(class)),
            ("err.level", Value::Int(level)),
            ("err.info", Value::Str(info.to_owned())),
            ("err.rcode", Value::Int(i64::from(rcode))),
            ("err.rreason", Value::Str(rreason.to_owned())),
        ] {
            self.module_pvs.insert(k.to_owned(), v);
        }
    }
}

/// A part of a URI given as text.
pub fn uri_part(uri: &str, part: UriPart) -> Value {
    if part == UriPart::Whole {
        return Value::Str(uri.to_owned());
    }
    let Ok(u) = ser_sip::parse_uri(uri.as_bytes()) else {
        return Value::Null;
    };
    let b = uri.as_bytes();
    let s = |sp: ser_sip::Span| String::from_utf8_lossy(sp.of(b)).into_owned();
    match part {
        UriPart::Whole => Value::Str(uri.to_owned()),
        UriPart::User => u.user.map_or(Value::Null, |sp| Value::Str(s(sp))),
        UriPart::Host => Value::Str(s(u.host)),
        UriPart::Port => match u.port {
            Some(p) => Value::Int(i64::from(p)),
            None => Value::Int(if u.scheme == Scheme::Sips { 5061 } else { 5060 }),
        },
    }
}

/// Replace a part of a URI (`$rU = "x"`, `rewritehost`); `None` removes the part
/// (user / port).
pub fn set_uri_part(uri: &str, part: UriPart, value: Option<&str>) -> Result<String, String> {
    if part == UriPart::Whole {
        return value
            .map(str::to_owned)
            .ok_or_else(|| "cannot unset the whole URI".to_owned());
    }
    let u = ser_sip::parse_uri(uri.as_bytes()).map_err(|e| format!("bad URI `{uri}`: {e}"))?;
    let (start, end, text) = match part {
        UriPart::User => match (u.user, value) {
            (Some(sp), Some(v)) => (sp.begin(), sp.end(), v.to_owned()),
            // delete "user@" (and ":password")
            (Some(sp), None) => (sp.begin(), u.host.begin(), String::new()),
            (None, Some(v)) => (u.host.begin(), u.host.begin(), format!("{v}@")),
            (None, None) => return Ok(uri.to_owned()),
        },
        UriPart::Host => (u.host.begin(), u.host.end(), value.unwrap_or("").to_owned()),
        UriPart::Port => {
            let after_host = u.host.end();
            let port_end = if u.port.is_some() {
                after_host
                    + uri[after_host..]
                        .find(|c: char| !(c == ':' || c.is_ascii_digit()))
                        .unwrap_or(uri.len() - after_host)
            } else {
                after_host
            };
            let text = value
                .filter(|v| !v.is_empty())
                .map(|v| format!(":{v}"))
                .unwrap_or_default();
            (after_host, port_end, text)
        }
        UriPart::Whole => unreachable!("handled above"),
    };
    Ok(format!("{}{}{}", &uri[..start], text, &uri[end..]))
}

impl MsgCtx<'_> {
    /// A part of the current R-URI; the received one is parsed once (cached
    /// by ser-sip), a rewritten one per call.
    pub fn ruri_part(&self, part: UriPart) -> Value {
        if self.new_uri.is_some() || part == UriPart::Whole {
            return self.ruri().map_or(Value::Null, |u| uri_part(&u, part));
        }
        let Ok(u) = self.msg.parsed_ruri() else {
            return Value::Null;
        };
        match part {
            UriPart::User => u.user.map_or(Value::Null, |s| Value::Str(self.text(s))),
            UriPart::Host => Value::Str(self.text(u.host)),
            UriPart::Port => Value::Int(i64::from(u.port.unwrap_or(if u.scheme == Scheme::Sips {
                5061
            } else {
                5060
            }))),
            UriPart::Whole => Value::Null, // handled above
        }
    }

    fn name_addr_value(&self, which: NameAddr, part: HdrPart) -> Value {
        let na = match which {
            NameAddr::From => self.msg.from(),
            NameAddr::To => self.msg.to(),
        };
        let Ok(na) = na else { return Value::Null };
        match part {
            HdrPart::Body => Value::Str(self.text(na.span)),
            HdrPart::Tag => na.tag.map_or(Value::Null, |t| Value::Str(self.text(t))),
            HdrPart::Name => na.display.map_or(Value::Null, |d| {
                Value::Str(self.text(d).trim_matches('"').to_owned())
            }),
            HdrPart::Uri(p) => match p {
                UriPart::Whole => Value::Str(self.text(na.uri.span)),
                UriPart::User => na
                    .uri
                    .user
                    .map_or(Value::Null, |u| Value::Str(self.text(u))),
                UriPart::Host => Value::Str(self.text(na.uri.host)),
                UriPart::Port => Value::Int(i64::from(na.uri.port.unwrap_or(
                    if na.uri.scheme == Scheme::Sips {
                        5061
                    } else {
                        5060
                    },
                ))),
            },
        }
    }

    fn auth_value(&self, realm: bool) -> Value {
        let h = self
            .msg
            .find(HeaderName::ProxyAuthorization)
            .or_else(|| self.msg.find(HeaderName::Authorization));
        let Some(h) = h else { return Value::Null };
        match self.msg.parsed(h) {
            Ok(ser_sip::HeaderValue::Auth(a)) => {
                let sp = if realm { a.realm } else { a.username };
                sp.map_or(Value::Null, |s| {
                    Value::Str(self.text(s).trim_matches('"').to_owned())
                })
            }
            _ => Value::Null,
        }
    }

    /// Read a select.
    pub fn get_select(&self, sel: &Select) -> Value {
        match sel {
            Select::Ruri(p) => self.ruri_part(*p),
            Select::NameAddr(w, p) => self.name_addr_value(*w, *p),
            Select::CallId => self.msg.call_id().map_or(Value::Null, |c| {
                Value::Str(String::from_utf8_lossy(c).into_owned())
            }),
            Select::CSeq => self
                .header_of(HeaderName::CSeq)
                .map_or(Value::Null, Value::Str),
            Select::Method => Value::Str(self.method().to_owned()),
            Select::SrcIp => Value::Str(self.src.ip().to_string()),
            Select::SrcPort => Value::Int(i64::from(self.src.port())),
            Select::Header(h) => self.header(h).map_or(Value::Null, Value::Str),
            Select::CfgGet { group, name } => self.env.cfg.get(group, name).unwrap_or(Value::Null),
        }
    }

    /// Read a pseudo-variable.
    pub fn get_pv(&self, pv: &Pv) -> Value {
        let opt_str = |o: Option<String>| o.map_or(Value::Null, Value::Str);
        match pv {
            Pv::Ruri(p) => self.ruri_part(*p),
            Pv::OrigRuri => opt_str(self.orig_ruri()),
            Pv::DstUri => opt_str(self.dst_uri.clone()),
            Pv::HdrUri(w, p) => self.name_addr_value(*w, HdrPart::Uri(*p)),
            Pv::DisplayName(w) => self.name_addr_value(*w, HdrPart::Name),
            Pv::Tag(w) => self.name_addr_value(*w, HdrPart::Tag),
            Pv::CallId => self.get_select(&Select::CallId),
            Pv::CSeqNum => self
                .msg
                .cseq()
                .map_or(Value::Null, |c| Value::Int(i64::from(c.number))),
            Pv::Method => Value::Str(self.method().to_owned()),
            Pv::Status => self
                .status()
                .map_or(Value::Null, |s| Value::Int(i64::from(s))),
            Pv::Reason => self.msg.reason().map_or(Value::Null, |r| {
                Value::Str(String::from_utf8_lossy(r).into_owned())
            }),
            Pv::SrcIp => Value::Str(self.src.ip().to_string()),
            Pv::SrcPort => Value::Int(i64::from(self.src.port())),
            Pv::RcvIp => Value::Str(self.local.ip().to_string()),
            Pv::RcvPort => Value::Int(i64::from(self.local.port())),
            Pv::Proto => Value::Str(self.proto.as_str().to_ascii_lowercase()),
            Pv::UserAgent => opt_str(self.header_of(HeaderName::UserAgent)),
            Pv::AuthUser => self.auth_value(false),
            Pv::AuthRealm => self.auth_value(true),
            Pv::Hdr(h) => opt_str(self.header(h)),
            Pv::Avp(a) => self.avps.get(a).cloned().unwrap_or(Value::Null),
            Pv::Var(v) => crate::runtime::script_vars::get(v),
            Pv::Sht(t, k) => crate::htable::get(t, &self.sht_key(k)),
            Pv::ShtEx(t, k) => crate::htable::expires_in(t, &self.sht_key(k)),
            Pv::Null => Value::Null,
            Pv::RetCode => Value::Int(i64::from(self.retcode)),
            Pv::MsgBuf => Value::Str(String::from_utf8_lossy(self.msg.buf()).into_owned()),
            Pv::MsgLen => Value::Int(self.msg_len() as i64),
            Pv::Sel(s) => self.get_select(s),
            Pv::Tm(name) | Pv::Snd(name) | Pv::Err(name) => {
                self.module_pvs.get(name).cloned().unwrap_or(Value::Null)
            }
            Pv::Indexed(pv, i) => self.nth_value(pv, *i),
            Pv::MsgFlags => Value::Int(i64::from(self.flags.0)),
            Pv::BranchFlags => Value::Int(i64::from(self.bflags.0)),
            Pv::BranchUri => opt_str(self.branches.last().map(|b| b.uri.clone())),
            Pv::ContentLength => self
                .msg
                .content_length()
                .map_or(Value::Null, |n| Value::Int(i64::from(n))),
            Pv::Contact => opt_str(self.header_of(HeaderName::Contact)),
            Pv::Body => Value::Str(String::from_utf8_lossy(self.msg.body()).into_owned()),
            Pv::Pid => Value::Int(i64::from(std::process::id())),
            Pv::TimeSec => Value::Int(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ),
        }
    }

    /// `$(hdr(X)[i])` / `$(avp(x)[i])`: value `i` of several (headers in
    /// message order, AVPs newest first), negative counting from the end.
    fn nth_value(&self, pv: &Pv, i: i32) -> Value {
        let values: Vec<Value> = match pv {
            Pv::Hdr(h) => self
                .msg
                .find_by_name(h.as_bytes())
                .map(|x| Value::Str(String::from_utf8_lossy(self.msg.header_body(x)).into_owned()))
                .collect(),
            Pv::Avp(a) => self.avps.get_all(a).into_iter().cloned().collect(),
            _ => return Value::Null,
        };
        let at = if i < 0 {
            values.len().checked_sub(i.unsigned_abs() as usize)
        } else {
            Some(i as usize)
        };
        at.and_then(|k| values.get(k).cloned())
            .unwrap_or(Value::Null)
    }

    /// Assign to a pseudo-variable (`colon`: Kamailio `:=`, same for single values).
    pub fn set_pv(&mut self, pv: &Pv, v: Value, _colon: bool) -> Result<(), String> {
        match pv {
            Pv::Ruri(p) => {
                let cur = self.ruri().ok_or("message has no R-URI")?;
                let value = if v.is_null() {
                    None
                } else {
                    Some(v.as_str().into_owned())
                };
                self.new_uri = Some(set_uri_part(&cur, *p, value.as_deref())?);
            }
            Pv::DstUri => {
                self.dst_uri = if v.is_empty() {
                    None
                } else {
                    Some(v.as_str().into_owned())
                }
            }
            Pv::Avp(a) => self.avps.assign(a, v),
            Pv::Var(name) => crate::runtime::script_vars::set(name, v),
            Pv::Sht(t, k) => {
                let key = self.sht_key(k);
                crate::htable::set(t, &key, v)?
            }
            Pv::MsgFlags => self.flags.0 = v.as_int() as u32,
            Pv::BranchFlags => self.bflags.0 = v.as_int() as u32,
            Pv::Null => {}
            other => return Err(format!("{other:?} is read-only")),
        }
        Ok(())
    }

    /// An htable key with its pvars (`$si`) rendered.
    fn sht_key(&self, k: &str) -> String {
        if !k.contains('$') {
            return k.to_owned();
        }
        match Format::parse(k) {
            Ok(f) => self.render(&f),
            Err(_) => k.to_owned(),
        }
    }

    /// Render a compiled format.
    pub fn render(&self, f: &Format) -> String {
        let mut out = String::new();
        for p in &f.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Pv(pv) => match self.get_pv(pv) {
                    // xlog prints `<null>` for unset values
                    Value::Null => out.push_str("<null>"),
                    v => out.push_str(&v.as_str()),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_avps_and_snd() {
        use crate::runtime::ctx::Env;
        use crate::runtime::pvar::parse_pv;
        use crate::runtime::transport::{Myself, Recorder};
        let env = Env::new(
            std::sync::Arc::new(Recorder::default()),
            Myself::default(),
            Vec::new(),
        );
        let msg = ser_sip::SipMsg::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .unwrap();
        let mut ctx = MsgCtx::new(
            msg,
            &env,
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5060".parse().unwrap(),
            Proto::Udp,
        );
        let Pv::Avp(a) = parse_pv("$avp(x)").unwrap() else {
            panic!()
        };
        ctx.avps.add(&a, Value::from("old"));
        ctx.avps.add(&a, Value::from("new"));
        let get = |ctx: &MsgCtx<'_>, s: &str| ctx.get_pv(&parse_pv(s).unwrap());
        assert_eq!(get(&ctx, "$(avp(x)[0])"), Value::from("new"));
        assert_eq!(get(&ctx, "$(avp(x)[1])"), Value::from("old"));
        assert_eq!(get(&ctx, "$(avp(x)[-1])"), Value::from("old"));
        assert_eq!(get(&ctx, "$(avp(x)[2])"), Value::Null);
        assert_eq!(get(&ctx, "$(avp(x)[-3])"), Value::Null);
        assert_eq!(get(&ctx, "$snd(ip)"), Value::Null, "outside onsend_route");
        let dest = Dest {
            proto: Proto::Tcp,
            addr: "[::1]:5070".parse().unwrap(),
            send_sock: None,
        };
        let s = ctx.onsend_ctx(b"INVITE x", &dest);
        assert_eq!(get(&s, "$snd(ip)"), Value::from("::1"));
        assert_eq!(get(&s, "$snd(af)"), Value::Int(10));
        assert_eq!(get(&s, "$snd(proto)"), Value::Int(2));
        assert_eq!(get(&s, "$snd(sproto)"), Value::from("tcp"));
        assert_eq!(get(&s, "$snd(len)"), Value::Int(8));
        assert_eq!(get(&s, "$snd(sport)"), Value::Int(5060));
        assert_eq!(get(&s, "$(avp(x)[1])"), Value::from("old"), "AVPs copied");
    }

    #[test]
    fn uri_parts() {
        let u = "sip:alice@example.com:5070;transport=udp";
        assert_eq!(uri_part(u, UriPart::User), Value::from("alice"));
        assert_eq!(uri_part(u, UriPart::Host), Value::from("example.com"));
        assert_eq!(uri_part(u, UriPart::Port), Value::Int(5070));
        assert_eq!(uri_part("sip:example.com", UriPart::User), Value::Null);
        assert_eq!(uri_part("sip:example.com", UriPart::Port), Value::Int(5060));
    }

    #[test]
    fn set_parts() {
        let u = "sip:alice@example.com:5070;transport=udp";
        assert_eq!(
            set_uri_part(u, UriPart::User, Some("bob")).unwrap(),
            "sip:bob@example.com:5070;transport=udp"
        );
        assert_eq!(
            set_uri_part(u, UriPart::User, None).unwrap(),
            "sip:example.com:5070;transport=udp"
        );
        assert_eq!(
            set_uri_part(u, UriPart::Host, Some("h.org")).unwrap(),
            "sip:alice@h.org:5070;transport=udp"
        );
        assert_eq!(
            set_uri_part(u, UriPart::Port, Some("7")).unwrap(),
            "sip:alice@example.com:7;transport=udp"
        );
        assert_eq!(
            set_uri_part(u, UriPart::Port, None).unwrap(),
            "sip:alice@example.com;transport=udp"
        );
        assert_eq!(
            set_uri_part("sip:h.org", UriPart::User, Some("x")).unwrap(),
            "sip:x@h.org"
        );
        assert_eq!(
            set_uri_part("sip:h.org", UriPart::Port, Some("5080")).unwrap(),
            "sip:h.org:5080"
        );
    }
}
