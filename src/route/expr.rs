//! Expressions (Kamailio `rvalue.c` / SER `route.c` eval_expr): the compiled
//! form and its evaluation against a message.

use std::net::IpAddr;

use regex::Regex;
use ser_modules::runtime::ctx::MsgCtx;
use ser_modules::runtime::pvar::Pv;
use ser_modules::runtime::value::Value;

use super::exec::{Ctl, Exec};

/// Core keywords read as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kw {
    /// `method`
    Method,
    /// `uri` (current R-URI)
    Uri,
    /// `from_uri`
    FromUri,
    /// `to_uri`
    ToUri,
    /// `status`
    Status,
    /// `src_ip`
    SrcIp,
    /// `src_port`
    SrcPort,
    /// `dst_ip`
    DstIp,
    /// `dst_port`
    DstPort,
    /// `proto`
    Proto,
    /// `af`
    Af,
    /// `msg:len`
    MsgLen,
    /// `retcode`, `$?`
    Retcode,
    /// `max_len`
    MaxLen,
}

/// Binary operators kept after compilation (`=~`, `==` with special operands are
/// compiled to dedicated nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    BitOr,
    BitAnd,
    BitXor,
    Shl,
    Shr,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    StrEq,
    StrNe,
    IntEq,
    IntNe,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Match,
    NotMatch,
}

/// A compiled expression.
pub enum Rv {
    Const(Value),
    Pv(Pv),
    Kw(Kw),
    /// A module function used as a value: its return code.
    Call(usize),
    /// `route(X)` used as a value: the route's return code.
    Route(usize),
    Not(Box<Rv>),
    Neg(Box<Rv>),
    BitNot(Box<Rv>),
    Defined(Box<Rv>),
    StrLen(Box<Rv>),
    StrEmpty(Box<Rv>),
    Bin(Op, Box<Rv>, Box<Rv>),
    /// `x =~ "const"` (regex compiled at load time); `true` = negated (`!~`).
    MatchRe(Box<Rv>, Regex, bool),
    /// `uri == myself` etc. (a URI, or a bare host); `true` = negated.
    Myself(Box<Rv>, bool),
    /// `src_ip == 10.0.0.0/8`; `true` = negated.
    IpIn(Box<Rv>, IpAddr, u8, bool),
    /// `method == "INVITE"` (case-insensitive, as SER compares methods); `true` = negated.
    MethodIs(String, bool),
}

impl Rv {
    /// The constant value, if this is one.
    pub fn as_const(&self) -> Option<&Value> {
        match self {
            Rv::Const(v) => Some(v),
            _ => None,
        }
    }
}

/// SER `max_len` (BUF_SIZE).
pub const MAX_LEN: i64 = 65535;

fn b(v: bool) -> Value {
    Value::Int(i64::from(v))
}

/// Equality with SER rvalue conversions: the left operand's type decides, null
/// equals only null (or "" / 0 after conversion).
pub fn values_eq(l: &Value, r: &Value) -> bool {
    match (l, r) {
        (Value::Null, Value::Null) => true,
        (Value::Int(a), _) => *a == r.as_int(),
        (Value::Null, Value::Int(b)) => *b == 0,
        (_, Value::Null) => l.as_str().is_empty() && !matches!(l, Value::Int(_)),
        (Value::Null, Value::Str(s)) => s.is_empty(),
        (Value::Str(a), _) => *a == r.as_str(),
    }
}

fn compare(l: &Value, r: &Value) -> std::cmp::Ordering {
    match (l, r) {
        (Value::Str(a), Value::Str(b)) => a.cmp(b),
        _ => l.as_int().cmp(&r.as_int()),
    }
}

/// Whether `ip` lies in `net/prefix`.
pub fn ip_in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let p = u32::from(prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(v4) => ip_in_net(IpAddr::V4(v4), net, prefix),
            None => false,
        },
        _ => false,
    }
}

impl Exec<'_> {
    /// Read a keyword.
    pub fn keyword(&self, ctx: &MsgCtx<'_>, kw: Kw) -> Value {
        match kw {
            Kw::Method => Value::Str(ctx.method().to_owned()),
            Kw::Uri => ctx.ruri().map_or(Value::Null, Value::Str),
            Kw::FromUri => ctx.from_uri().map_or(Value::Null, Value::Str),
            Kw::ToUri => ctx.to_uri().map_or(Value::Null, Value::Str),
            Kw::Status => ctx
                .status()
                .map_or(Value::Null, |s| Value::Int(i64::from(s))),
            Kw::SrcIp => Value::Str(ctx.src.ip().to_string()),
            Kw::SrcPort => Value::Int(i64::from(ctx.src.port())),
            Kw::DstIp => Value::Str(ctx.local.ip().to_string()),
            Kw::DstPort => Value::Int(i64::from(ctx.local.port())),
            Kw::Proto => Value::Str(ctx.proto.as_str().to_owned()),
            Kw::Af => Value::Str(if ctx.src.is_ipv4() { "INET" } else { "INET6" }.to_owned()),
            Kw::MsgLen => Value::Int(ctx.msg_len() as i64),
            Kw::Retcode => Value::Int(i64::from(ctx.retcode)),
            Kw::MaxLen => Value::Int(MAX_LEN),
        }
    }

    /// Evaluate an expression.  A function or route call that stops the script
    /// (returns 0, `exit`, `drop`) is reported through `self.stop`.
    pub fn eval(&mut self, ctx: &mut MsgCtx<'_>, e: &Rv) -> Value {
        match e {
            Rv::Const(v) => v.clone(),
            Rv::Pv(pv) => ctx.get_pv(pv),
            Rv::Kw(k) => self.keyword(ctx, *k),
            Rv::Call(idx) => {
                let ctl = self.call(ctx, *idx);
                self.note_stop(ctl);
                Value::Int(i64::from(ctx.retcode))
            }
            Rv::Route(idx) => {
                let ctl = self.run_route_idx(ctx, *idx);
                self.note_stop(ctl);
                Value::Int(i64::from(ctx.retcode))
            }
            Rv::Not(x) => b(!self.cond(ctx, x)),
            Rv::Neg(x) => Value::Int(self.eval(ctx, x).as_int().wrapping_neg()),
            Rv::BitNot(x) => Value::Int(!self.eval(ctx, x).as_int()),
            Rv::Defined(x) => b(!self.eval(ctx, x).is_null()),
            Rv::StrLen(x) => Value::Int(self.eval(ctx, x).as_str().len() as i64),
            Rv::StrEmpty(x) => b(self.eval(ctx, x).is_empty()),
            Rv::MatchRe(x, re, neg) => {
                let v = self.eval(ctx, x);
                b(re.is_match(&v.as_str()) != *neg)
            }
            Rv::Myself(x, neg) => {
                let v = self.eval(ctx, x);
                let s = v.as_str();
                let ours = if s.contains(':') && !s.starts_with('[') && s.parse::<IpAddr>().is_err()
                {
                    ctx.env.myself.matches_uri(&s)
                } else {
                    // A bare host or IP (`src_ip`, `$rd`) is ours on any of
                    // our ports, as Kamailio's check_self with port 0.
                    ctx.env.myself.matches(&s, None)
                        || ctx
                            .env
                            .listen
                            .iter()
                            .any(|l| ctx.env.myself.matches(&s, Some(l.addr.port())))
                };
                b(ours != *neg)
            }
            Rv::IpIn(x, net, prefix, neg) => {
                let v = self.eval(ctx, x);
                let inside = v
                    .as_str()
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip_in_net(ip, *net, *prefix));
                b(inside != *neg)
            }
            Rv::MethodIs(m, neg) => b(ctx.method().eq_ignore_ascii_case(m) != *neg),
            Rv::Bin(op, l, r) => self.binary(ctx, *op, l, r),
        }
    }

    fn binary(&mut self, ctx: &mut MsgCtx<'_>, op: Op, l: &Rv, r: &Rv) -> Value {
        // short-circuit first
        match op {
            Op::And => return b(self.cond(ctx, l) && self.stop.is_none() && self.cond(ctx, r)),
            Op::Or => return b(self.cond(ctx, l) || (self.stop.is_none() && self.cond(ctx, r))),
            _ => {}
        }
        let lv = self.eval(ctx, l);
        let rv = self.eval(ctx, r);
        let (li, ri) = (lv.as_int(), rv.as_int());
        match op {
            Op::And | Op::Or => unreachable!("handled above"),
            Op::BitOr => Value::Int(li | ri),
            Op::BitAnd => Value::Int(li & ri),
            Op::BitXor => Value::Int(li ^ ri),
            Op::Shl => Value::Int(li.wrapping_shl(ri as u32)),
            Op::Shr => Value::Int(li.wrapping_shr(ri as u32)),
            Op::Eq => b(values_eq(&lv, &rv)),
            Op::Ne => b(!values_eq(&lv, &rv)),
            Op::Lt => b(compare(&lv, &rv).is_lt()),
            Op::Gt => b(compare(&lv, &rv).is_gt()),
            Op::Le => b(compare(&lv, &rv).is_le()),
            Op::Ge => b(compare(&lv, &rv).is_ge()),
            Op::StrEq => b(lv.as_str() == rv.as_str()),
            Op::StrNe => b(lv.as_str() != rv.as_str()),
            Op::IntEq => b(li == ri),
            Op::IntNe => b(li != ri),
            // the left operand's type decides (so `(int)x` = `0 + x`, `(str)x` = `"" + x`)
            Op::Add => match (&lv, &rv) {
                (Value::Int(a), _) => Value::Int(a.wrapping_add(ri)),
                (Value::Str(a), _) => Value::Str(format!("{a}{}", rv.as_str())),
                (Value::Null, _) => rv.clone(),
            },
            Op::Sub => Value::Int(li.wrapping_sub(ri)),
            Op::Mul => Value::Int(li.wrapping_mul(ri)),
            Op::Div | Op::Mod if ri == 0 => {
                log::error!("division by zero in script expression");
                Value::Null
            }
            Op::Div => Value::Int(li.wrapping_div(ri)),
            Op::Mod => Value::Int(li.wrapping_rem(ri)),
            Op::Match | Op::NotMatch => {
                // regex known only at run time
                let matched = match ser_modules::iface::compile_regex(&rv.as_str(), true) {
                    Ok(re) => re.is_match(&lv.as_str()),
                    Err(e) => {
                        log::error!("{e}");
                        false
                    }
                };
                b(matched == (op == Op::Match))
            }
        }
    }

    /// Evaluate as a condition.
    pub fn cond(&mut self, ctx: &mut MsgCtx<'_>, e: &Rv) -> bool {
        self.eval(ctx, e).is_true()
    }

    fn note_stop(&mut self, ctl: Ctl) {
        if matches!(ctl, Ctl::Exit | Ctl::Drop) && self.stop.is_none() {
            self.stop = Some(ctl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_conversions() {
        assert!(values_eq(&Value::Int(-2), &Value::from("-2")));
        assert!(values_eq(&Value::Null, &Value::Null));
        assert!(!values_eq(&Value::from("alice"), &Value::Null));
        assert!(values_eq(&Value::from(""), &Value::Null));
        assert!(values_eq(&Value::Null, &Value::from("")));
        assert!(!values_eq(&Value::Null, &Value::from("x")));
        assert!(values_eq(&Value::from("a"), &Value::from("a")));
        assert!(!values_eq(&Value::from("a"), &Value::from("A")));
    }

    #[test]
    fn nets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ip_in_net(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!ip_in_net(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(ip_in_net(ip("1.2.3.4"), ip("1.2.3.4"), 32));
        assert!(ip_in_net(ip("::ffff:1.2.3.4"), ip("1.2.3.0"), 24));
        assert!(ip_in_net(ip("2001:db8::1"), ip("2001:db8::"), 32));
    }
}
