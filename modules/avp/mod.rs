//! `avp`: SER 3.0 attribute functions (replaces SER `modules_s/avp`):
//! set, delete, compare and print AVPs, put one into the R-URI
//! (`attr2uri`), into a header (`insert/append/replace_attr_hf`), the reply
//! (`attr_to_reply`) or the destination (`attr_destination`), and set one from
//! an xl format (`xlset_attr`).
//!
//! AVP arguments are written as in SER configs: `"$tu.fwd_always_target"`,
//! `"$gw_ip"`, or a bare `$uid`.

use crate::iface::{Arg, FixupCtx, FixupError, FunctionExport, Handler, Module, RouteMask};
use crate::runtime::access::set_uri_part;
use crate::runtime::avp::AvpRef;
use crate::runtime::ctx::MsgCtx;
use crate::runtime::flow::Flow;
use crate::runtime::pvar::{parse_pv, Pv, UriPart};
use crate::runtime::value::Value;

/// The `avp` module.
pub struct AvpModule;

const ANY: RouteMask = RouteMask::ANY;
const REQ: RouteMask = RouteMask::REQUEST_LIKE;

macro_rules! f {
    ($name:expr, $min:expr, $max:expr, $routes:expr, $fixup:expr) => {
        FunctionExport {
            name: $name,
            min_args: $min,
            max_args: $max,
            routes: $routes,
            fixup: $fixup,
        }
    };
}

static FUNCTIONS: &[FunctionExport] = &[
    f!("set_iattr", 2, 2, ANY, fixup_set_iattr),
    f!("set_sattr", 2, 2, ANY, fixup_set_sattr),
    f!("xlset_attr", 2, 2, ANY, fixup_xlset_attr),
    f!("del_attr", 1, 1, ANY, fixup_del_attr),
    f!("attr_exists", 1, 1, ANY, fixup_attr_exists),
    f!("attr_equals", 2, 2, ANY, fixup_attr_equals),
    f!("attr_equals_xl", 2, 2, ANY, fixup_attr_equals),
    f!("print_attr", 1, 1, ANY, fixup_print_attr),
    f!("dump_attrs", 0, 1, ANY, fixup_dump_attrs),
    f!("attr2uri", 1, 2, REQ, fixup_attr2uri),
    f!("attr_destination", 1, 1, REQ, fixup_attr_destination),
    f!("insert_attr_hf", 1, 2, REQ, fixup_insert_hf),
    f!("append_attr_hf", 1, 2, REQ, fixup_append_hf),
    f!("replace_attr_hf", 1, 2, REQ, fixup_replace_hf),
    f!("attr_to_reply", 1, 2, REQ, fixup_attr_to_reply),
];

impl Module for AvpModule {
    fn name(&self) -> &'static str {
        "avp"
    }
    fn functions(&self) -> &'static [FunctionExport] {
        FUNCTIONS
    }
}

/// An AVP argument: a bare AVP, or a string `"$name"`, `"$t.x"`, `"$tu.x"`, `"name"`.
pub fn avp_arg(args: &[Arg], i: usize) -> Result<AvpRef, FixupError> {
    match &args[i] {
        Arg::Pv(Pv::Avp(r)) => Ok(r.clone()),
        Arg::Str(s) | Arg::Ident(s) => {
            let s = s.trim();
            let with_dollar = if s.starts_with('$') {
                s.to_owned()
            } else {
                format!("${s}")
            };
            match parse_pv(&with_dollar) {
                Ok(Pv::Avp(r)) => Ok(r),
                _ => AvpRef::parse_kamailio(s.trim_start_matches('$'))
                    .map_err(|e| FixupError::arg(i, format!("`{s}` is not an attribute: {e}"))),
            }
        }
        other => Err(FixupError::arg(
            i,
            format!("expected an attribute, found {other:?}"),
        )),
    }
}

fn fixup_set_iattr(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    let v = fx.int_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        ctx.avps.add(&avp, Value::Int(v));
        Flow::True
    }))
}

fn fixup_set_sattr(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    let v = fx.str_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        ctx.avps.add(&avp, Value::Str(v.clone()));
        Flow::True
    }))
}

/// `xlset_attr("$rpidheader", "<sip:%$asserted_id@%@ruri.host>;screen=yes")`.
fn fixup_xlset_attr(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    let f = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let v = ctx.render(&f);
        ctx.avps.add(&avp, Value::Str(v));
        Flow::True
    }))
}

fn fixup_del_attr(_fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        ctx.avps.delete(&avp);
        Flow::True
    }))
}

fn fixup_attr_exists(_fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        Flow::from_bool(ctx.avps.get(&avp).is_some())
    }))
}

/// `attr_equals(name, value)`: true when some value of the AVP equals
/// `value` (a format; ints compare numerically).
fn fixup_attr_equals(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    let f = fx.format_arg(a, 1)?;
    Ok(Box::new(move |ctx| {
        let want = ctx.render(&f);
        let mut all = ctx.avps.get_all(&avp);
        if all.is_empty() {
            all.extend(ctx.avps.get(&avp));
        }
        Flow::from_bool(all.iter().any(|v| match v {
            Value::Int(i) => want.trim().parse::<i64>() == Ok(*i),
            other => other.as_str() == want,
        }))
    }))
}

fn fixup_print_attr(_fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    Ok(Box::new(move |ctx| {
        match ctx.avps.get(&avp) {
            Some(v) => log::info!("avp: {:?} = {v}", avp.name),
            None => log::info!("avp: {:?} not set", avp.name),
        }
        Flow::True
    }))
}

/// `dump_attrs(["$f"|"$tu"|...])`: every AVP (of a track/class) to the log.
fn fixup_dump_attrs(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let filter = match a.first() {
        None => None,
        Some(_) => {
            let p = fx.str_arg(a, 0)?;
            let p = p.trim().trim_start_matches('$').to_owned();
            Some(
                crate::runtime::avp::parse_prefix(&p)
                    .ok_or_else(|| FixupError::arg(0, format!("`{p}` is not a track/class")))?,
            )
        }
    };
    Ok(Box::new(move |ctx| {
        for (t, c, n, v, fl) in ctx.avps.export() {
            if let Some((ft, fc)) = filter {
                if ft.is_some_and(|ft| ft != t) || fc.is_some_and(|fc| fc != c) {
                    continue;
                }
            }
            log::info!("avp: {t:?} {c:?} {n:?} = {v} (flags {fl:#x})");
        }
        Flow::True
    }))
}

fn attr_text(ctx: &MsgCtx<'_>, avp: &AvpRef) -> Option<String> {
    ctx.avps
        .get(avp)
        .filter(|v| !v.is_empty())
        .map(|v| v.as_str().into_owned())
}

/// `attr2uri(name[, part])`: the attribute becomes the R-URI, or only its
/// `user`/`username`, `domain`/`host` or `port`.
fn fixup_attr2uri(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    let part = match a.get(1) {
        None => UriPart::Whole,
        Some(_) => match fx.str_arg(a, 1)?.to_ascii_lowercase().as_str() {
            "uri" => UriPart::Whole,
            "user" | "username" => UriPart::User,
            "domain" | "host" => UriPart::Host,
            "port" => UriPart::Port,
            other => {
                return Err(FixupError::arg(
                    1,
                    format!("unknown URI part `{other}` (uri, user, domain, host, port)"),
                ))
            }
        },
    };
    Ok(Box::new(move |ctx| {
        let Some(v) = attr_text(ctx, &avp) else {
            return Flow::False;
        };
        if part == UriPart::Whole {
            if ser_sip::parse_uri(v.as_bytes()).is_err() {
                log::error!("attr2uri: `{v}` is not a URI");
                return Flow::False;
            }
            ctx.new_uri = Some(v);
            return Flow::True;
        }
        let Some(ruri) = ctx.ruri() else {
            return Flow::False;
        };
        match set_uri_part(&ruri, part, Some(&v)) {
            Ok(u) => {
                ctx.new_uri = Some(u);
                Flow::True
            }
            Err(e) => {
                log::error!("attr2uri: {e}");
                Flow::False
            }
        }
    }))
}

fn fixup_attr_destination(_fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let avp = avp_arg(a, 0)?;
    Ok(Box::new(move |ctx| match attr_text(ctx, &avp) {
        Some(v) if ser_sip::parse_uri(v.as_bytes()).is_ok() => {
            ctx.dst_uri = Some(v);
            Flow::True
        }
        _ => Flow::False,
    }))
}

/// Header name and AVP of the `*_attr_hf` functions: `(hf, attr)`, or one
/// argument naming both (SER: the AVP's name is the header name).
fn hf_args(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<(String, AvpRef), FixupError> {
    if a.len() == 2 {
        let hf = fx.str_arg(a, 0)?;
        Ok((hf, avp_arg(a, 1)?))
    } else {
        let avp = avp_arg(a, 0)?;
        let hf = match &avp.name {
            crate::runtime::avp::AvpName::Str(s) => s.clone(),
            crate::runtime::avp::AvpName::Int(i) => i.to_string(),
        };
        Ok((hf, avp))
    }
}

fn valid_hf(hf: &str) -> Result<(), FixupError> {
    if hf.is_empty()
        || !hf
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
    {
        return Err(FixupError::arg(0, format!("bad header name `{hf}`")));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum HfMode {
    Insert,
    Append,
    Replace,
}

fn hf_fixup(fx: &FixupCtx<'_>, a: &[Arg], mode: HfMode) -> Result<Handler, FixupError> {
    let (hf, avp) = hf_args(fx, a)?;
    valid_hf(&hf)?;
    Ok(Box::new(move |ctx| {
        let Some(v) = attr_text(ctx, &avp) else {
            return Flow::False;
        };
        let line = format!("{hf}: {v}\r\n");
        if mode == HfMode::Replace {
            let spans: Vec<_> = ctx.msg.find_by_name(hf.as_bytes()).cloned().collect();
            for h in &spans {
                ctx.lumps.remove_header(&ctx.msg, h);
            }
        }
        if mode == HfMode::Insert {
            let at = ctx.msg.headers().first().map(|h| h.span.start as usize);
            match at {
                Some(at) => ctx.lumps.insert(&ctx.msg, at, line.as_bytes()),
                None => ctx.append_header(&line),
            }
        } else {
            ctx.append_header(&line);
        }
        Flow::True
    }))
}

fn fixup_insert_hf(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    hf_fixup(fx, a, HfMode::Insert)
}

fn fixup_append_hf(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    hf_fixup(fx, a, HfMode::Append)
}

/// `replace_attr_hf("Remote-Party-ID", "$rpidheader")`: removes every such
/// header and appends one with the attribute's value.
fn fixup_replace_hf(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    hf_fixup(fx, a, HfMode::Replace)
}

fn fixup_attr_to_reply(fx: &FixupCtx<'_>, a: &[Arg]) -> Result<Handler, FixupError> {
    let (hf, avp) = hf_args(fx, a)?;
    valid_hf(&hf)?;
    Ok(Box::new(move |ctx| {
        let Some(v) = attr_text(ctx, &avp) else {
            return Flow::False;
        };
        ctx.reply_headers.push(format!("{hf}: {v}\r\n"));
        Flow::True
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::avp::{AvpName, Class, Track};

    #[test]
    fn avp_args() {
        let r = avp_arg(&[Arg::Str("$tu.fwd_always_target".into())], 0).unwrap();
        assert_eq!(
            (r.track, r.class, r.name),
            (
                Some(Track::To),
                Some(Class::User),
                AvpName::Str("fwd_always_target".into())
            )
        );
        assert_eq!(
            avp_arg(&[Arg::Str("$gw_ip".into())], 0).unwrap(),
            AvpRef::named("gw_ip")
        );
        assert_eq!(
            avp_arg(&[Arg::Str("uid".into())], 0).unwrap(),
            AvpRef::named("uid")
        );
        assert!(avp_arg(&[Arg::Str("$a b".into())], 0).is_err());
    }
}
