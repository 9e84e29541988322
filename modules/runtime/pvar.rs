//! Pseudo-variable specs (`$ru`, `$hdr(X)`, `$avp(i:80)`, `$var(x)`, SER 3.0
//! `$t.did`...), parsed once at fixup time.  Reading and writing them against a
//! message is in [`crate::runtime::access`].  Replaces Kamailio `core/pvapi.c`
//! (spec parsing) and the core part of `modules/pv`.

use crate::runtime::avp::{parse_prefix, AvpName, AvpRef};
use crate::runtime::select::Select;

/// Which part of a URI a pvar selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UriPart {
    /// Whole URI (`$ru`, `$fu`).
    Whole,
    /// User (`$rU`, `$fU`).
    User,
    /// Host (`$rd`, `$fd`).
    Host,
    /// Port (`$rp`).
    Port,
}

/// Which name-addr header (`From`/`To`) a pvar reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameAddr {
    /// From.
    From,
    /// To.
    To,
}

/// A parsed pseudo-variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pv {
    /// `$ru $rU $rd $rp` (the new R-URI if rewritten).
    Ruri(UriPart),
    /// `$ou`: original R-URI.
    OrigRuri,
    /// `$du`: destination URI.
    DstUri,
    /// `$fu $fU $fd`, `$tu $tU $td`.
    HdrUri(NameAddr, UriPart),
    /// `$fn $tn`: display name.
    DisplayName(NameAddr),
    /// `$ft $tt`: tag.
    Tag(NameAddr),
    /// `$ci`.
    CallId,
    /// `$cs`: CSeq number.
    CSeqNum,
    /// `$rm`: method (request, or CSeq method of a reply).
    Method,
    /// `$rs`: reply status.
    Status,
    /// `$rr`: reply reason.
    Reason,
    /// `$si`.
    SrcIp,
    /// `$sp`.
    SrcPort,
    /// `$Ri`.
    RcvIp,
    /// `$Rp`.
    RcvPort,
    /// `$pr` / `$proto`.
    Proto,
    /// `$ua`.
    UserAgent,
    /// `$au`: auth username (from Authorization/Proxy-Authorization).
    AuthUser,
    /// `$ar`: auth realm.
    AuthRealm,
    /// `$hdr(Name)`.
    Hdr(String),
    /// AVPs in every syntax.
    Avp(AvpRef),
    /// `$var(x)`.
    Var(String),
    /// `$null`.
    Null,
    /// `$rc`, `$retcode`, `$?`.
    RetCode,
    /// `$mb`: the whole message.
    MsgBuf,
    /// `$ml`: message length.
    MsgLen,
    /// `$sel(...)` — a select.
    Sel(Select),
    /// `$T_*` (tm pvars): read from [`crate::runtime::ctx::MsgCtx::module_pvs`], null when unset.
    Tm(String),
    /// `$mf`: message flags.
    MsgFlags,
    /// `$bf`: branch flags.
    BranchFlags,
    /// `$br`: the branch URI (branch route).
    BranchUri,
    /// `$cl`: Content-Length.
    ContentLength,
    /// `$ct`: Contact header body.
    Contact,
    /// `$rb`: body.
    Body,
    /// `$pp`: our pid.
    Pid,
    /// `$Ts`: current unix time.
    TimeSec,
    /// `$snd(ip|port|af|proto|sproto|len|buf|sip|sport)` in `onsend_route`:
    /// read from [`crate::runtime::ctx::MsgCtx::module_pvs`] under this key
    /// (`snd.ip`), null elsewhere.
    Snd(String),
    /// `$sht(table=>key)`: an htable item (the key may hold pvars, rendered
    /// per message).
    Sht(String, String),
    /// `$shtex(table=>key)`: seconds until that item expires.
    ShtEx(String, String),
    /// `$err.class|level|info|rcode|rreason` in `error_route`: read from
    /// `module_pvs` under this key (`err.class`), null elsewhere.
    Err(String),
    /// `$(hdr(Via)[1])`, `$(avp(x)[-1])`: one of several values, counted
    /// from 0 (the first header, the newest AVP), negative from the other end.
    Indexed(Box<Pv>, i32),
}

/// Fields of `$snd(...)`.
pub const SND_FIELDS: &[&str] = &[
    "ip", "port", "af", "proto", "sproto", "len", "buf", "sip", "sport",
];

/// Fields of `$err.*`.
pub const ERR_FIELDS: &[&str] = &["class", "level", "info", "rcode", "rreason"];

impl Pv {
    /// Whether scripts may assign to it.
    pub fn is_writable(&self) -> bool {
        matches!(
            self,
            Pv::Ruri(_)
                | Pv::DstUri
                | Pv::Avp(_)
                | Pv::Var(_)
                | Pv::Sht(..)
                | Pv::MsgFlags
                | Pv::BranchFlags
                | Pv::Null
        )
    }
}

/// Parse a pvar from the start of `s` (which starts with `$`).  Returns the
/// spec and the number of bytes consumed.  Unknown plain names are SER 3.0
/// AVPs (`$gw_ip`).
pub fn parse_pv_prefix(s: &str) -> Result<(Pv, usize), String> {
    let b = s.as_bytes();
    if b.first() != Some(&b'$') {
        return Err(format!("`{s}` is not a pseudo-variable"));
    }
    if b.get(1) == Some(&b'?') {
        return Ok((Pv::RetCode, 2));
    }
    if b.get(1) == Some(&b'(') {
        let close = matching_paren(s, 1).ok_or_else(|| format!("unclosed `(` in `{s}`"))?;
        return Ok((pv_in_parens(&s[2..close])?, close + 1));
    }
    let name_end = 1 + s[1..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len() - 1);
    let name = &s[1..name_end];
    if name.is_empty() {
        return Err(format!("empty pseudo-variable name in `{s}`"));
    }
    // $name(inner)
    if b.get(name_end) == Some(&b'(') {
        let close = matching_paren(s, name_end).ok_or_else(|| format!("unclosed `(` in `{s}`"))?;
        let inner = &s[name_end + 1..close];
        return Ok((pv_with_arg(name, inner)?, close + 1));
    }
    // $err.class
    if name == "err" && b.get(name_end) == Some(&b'.') {
        let rest = &s[name_end + 1..];
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let field = &rest[..len];
        if !ERR_FIELDS.contains(&field) {
            return Err(format!(
                "unknown field `{field}` of $err (class, level, info, rcode, rreason)"
            ));
        }
        return Ok((Pv::Err(format!("err.{field}")), name_end + 1 + len));
    }
    // SER 3.0 $t.did / $fu.uid
    if b.get(name_end) == Some(&b'.') {
        if let Some((track, class)) = parse_prefix(name) {
            let rest = &s[name_end + 1..];
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len > 0 {
                let avp = AvpRef {
                    track,
                    class,
                    name: AvpName::Str(rest[..len].to_owned()),
                };
                return Ok((Pv::Avp(avp), name_end + 1 + len));
            }
        }
    }
    Ok((pv_plain(name), name_end))
}

/// The inside of `$( ... )`: a pvar without its `$`, with an optional
/// `[index]` for headers and AVPs (`hdr(Via)[1]`, `avp(x)[-1]`, `err.class`).
fn pv_in_parens(inner: &str) -> Result<Pv, String> {
    let inner = inner.trim();
    let (base, index) = match inner.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        Some((base, idx)) => {
            let i = idx
                .trim()
                .parse::<i32>()
                .map_err(|_| format!("bad index `{idx}` in `$({inner})`"))?;
            (base, Some(i))
        }
        None => (inner, None),
    };
    if base.contains('{') {
        return Err(format!("transformations are not supported: `$({inner})`"));
    }
    let pv = parse_pv(&format!("${base}"))?;
    match (index, &pv) {
        (None, _) => Ok(pv),
        (Some(i), Pv::Hdr(_) | Pv::Avp(_)) => Ok(Pv::Indexed(Box::new(pv), i)),
        (Some(_), _) => Err(format!("`$({inner})`: only $hdr() and AVPs take an index")),
    }
}

/// Parse a whole string as one pvar (`"$avp(i:80)"` in a modparam).
pub fn parse_pv(s: &str) -> Result<Pv, String> {
    let s = s.trim();
    let (pv, used) = parse_pv_prefix(s)?;
    if used != s.len() {
        return Err(format!(
            "unexpected `{}` after pseudo-variable in `{s}`",
            &s[used..]
        ));
    }
    Ok(pv)
}

fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn pv_with_arg(name: &str, inner: &str) -> Result<Pv, String> {
    Ok(match name {
        "hdr" => {
            let h = inner.trim();
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == ':') {
                return Err(format!("bad header name `{inner}` in $hdr()"));
            }
            Pv::Hdr(h.to_owned())
        }
        "avp" => Pv::Avp(AvpRef::parse_kamailio(inner)?),
        "var" => {
            let v = inner.trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable name `{inner}` in $var()"));
            }
            Pv::Var(v.to_owned())
        }
        "sel" => Pv::Sel(Select::parse(inner.trim())?),
        "sht" | "shtex" => {
            let (t, k) = inner
                .split_once("=>")
                .ok_or_else(|| format!("want ${name}(table=>key), got `{inner}`"))?;
            let (t, k) = (t.trim().to_owned(), k.trim().to_owned());
            if t.is_empty() || k.is_empty() {
                return Err(format!("want ${name}(table=>key), got `{inner}`"));
            }
            if name == "sht" {
                Pv::Sht(t, k)
            } else {
                Pv::ShtEx(t, k)
            }
        }
        "snd" => {
            let f = inner.trim();
            if !SND_FIELDS.contains(&f) {
                return Err(format!(
                    "unknown field `{f}` of $snd ({})",
                    SND_FIELDS.join(", ")
                ));
            }
            Pv::Snd(format!("snd.{f}"))
        }
        _ => return Err(format!("unknown pseudo-variable `${name}({inner})`")),
    })
}

fn pv_plain(name: &str) -> Pv {
    use NameAddr::{From, To};
    match name {
        "ru" => Pv::Ruri(UriPart::Whole),
        // xhttp's `$hu`: an HTTP request's URL is its request-URI.
        "hu" => Pv::Ruri(UriPart::Whole),
        "rU" => Pv::Ruri(UriPart::User),
        "rd" => Pv::Ruri(UriPart::Host),
        "rp" => Pv::Ruri(UriPart::Port),
        "ou" => Pv::OrigRuri,
        "du" => Pv::DstUri,
        "fu" => Pv::HdrUri(From, UriPart::Whole),
        "fU" => Pv::HdrUri(From, UriPart::User),
        "fd" => Pv::HdrUri(From, UriPart::Host),
        "fn" => Pv::DisplayName(From),
        "ft" => Pv::Tag(From),
        "tu" => Pv::HdrUri(To, UriPart::Whole),
        "tU" => Pv::HdrUri(To, UriPart::User),
        "td" => Pv::HdrUri(To, UriPart::Host),
        "tn" => Pv::DisplayName(To),
        "tt" => Pv::Tag(To),
        "ci" => Pv::CallId,
        "cs" => Pv::CSeqNum,
        "rm" => Pv::Method,
        "rs" => Pv::Status,
        "rr" => Pv::Reason,
        "si" => Pv::SrcIp,
        "sp" => Pv::SrcPort,
        "Ri" => Pv::RcvIp,
        "Rp" => Pv::RcvPort,
        "pr" | "proto" => Pv::Proto,
        "ua" => Pv::UserAgent,
        "au" => Pv::AuthUser,
        "ar" => Pv::AuthRealm,
        "null" => Pv::Null,
        "rc" | "retcode" => Pv::RetCode,
        "mb" => Pv::MsgBuf,
        "ml" => Pv::MsgLen,
        "mf" => Pv::MsgFlags,
        "bf" => Pv::BranchFlags,
        "br" => Pv::BranchUri,
        "cl" => Pv::ContentLength,
        "ct" => Pv::Contact,
        "rb" => Pv::Body,
        "pp" => Pv::Pid,
        "Ts" => Pv::TimeSec,
        n if n.starts_with("T_") => Pv::Tm(n.to_owned()),
        // SER 3.0: any other `$name` is an AVP.
        n => Pv::Avp(AvpRef::named(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::avp::{Class, Track};

    #[test]
    fn core_names() {
        assert_eq!(parse_pv("$rU").unwrap(), Pv::Ruri(UriPart::User));
        assert_eq!(
            parse_pv("$fd").unwrap(),
            Pv::HdrUri(NameAddr::From, UriPart::Host)
        );
        assert_eq!(parse_pv("$?").unwrap(), Pv::RetCode);
        assert_eq!(parse_pv("$retcode").unwrap(), Pv::RetCode);
        assert_eq!(parse_pv("$null").unwrap(), Pv::Null);
        assert_eq!(
            parse_pv("$T_reply_code").unwrap(),
            Pv::Tm("T_reply_code".into())
        );
    }

    #[test]
    fn with_args() {
        assert_eq!(
            parse_pv("$hdr(User-Agent)").unwrap(),
            Pv::Hdr("User-Agent".into())
        );
        assert_eq!(
            parse_pv("$avp(i:80)").unwrap(),
            Pv::Avp(AvpRef {
                track: None,
                class: None,
                name: AvpName::Int(80)
            })
        );
        assert_eq!(parse_pv("$var(x)").unwrap(), Pv::Var("x".into()));
        assert!(matches!(
            parse_pv("$sel(cfg_get.pstn.gw_ip)").unwrap(),
            Pv::Sel(_)
        ));
        assert!(parse_pv("$hdr()").is_err());
        assert!(parse_pv("$foo(x)").is_err());
        assert!(parse_pv("$avp(i:80").is_err());
    }

    #[test]
    fn ser3_avps() {
        let Pv::Avp(a) = parse_pv("$t.did").unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.track, a.class, a.name),
            (Some(Track::To), None, AvpName::Str("did".into()))
        );
        let Pv::Avp(a) = parse_pv("$fr.authuid").unwrap() else {
            panic!()
        };
        assert_eq!((a.track, a.class), (Some(Track::From), Some(Class::Uri)));
        assert_eq!(parse_pv("$gw_ip").unwrap(), Pv::Avp(AvpRef::named("gw_ip")));
        // `$fd` alone stays the From domain; `$fd.x` is an AVP
        let (pv, n) = parse_pv_prefix("$fd.digest_realm rest").unwrap();
        assert!(matches!(pv, Pv::Avp(_)));
        assert_eq!(n, "$fd.digest_realm".len());
        let (pv, n) = parse_pv_prefix("$fd. end").unwrap();
        assert_eq!((pv, n), (Pv::HdrUri(NameAddr::From, UriPart::Host), 3));
    }

    #[test]
    fn indexed_and_route_specific() {
        assert_eq!(
            parse_pv("$(hdr(Via)[1])").unwrap(),
            Pv::Indexed(Box::new(Pv::Hdr("Via".into())), 1)
        );
        let Pv::Indexed(a, -1) = parse_pv("$(avp(x)[-1])").unwrap() else {
            panic!()
        };
        assert!(matches!(*a, Pv::Avp(_)));
        assert_eq!(parse_pv("$(ru)").unwrap(), Pv::Ruri(UriPart::Whole));
        assert!(parse_pv("$(ru[0])").is_err());
        assert!(parse_pv("$(hdr(Via)[x])").is_err());
        assert!(parse_pv("$(ru{s.len})").is_err());
        assert_eq!(parse_pv("$snd(ip)").unwrap(), Pv::Snd("snd.ip".into()));
        assert!(parse_pv("$snd(nope)").is_err());
        assert_eq!(parse_pv("$err.rcode").unwrap(), Pv::Err("err.rcode".into()));
        assert_eq!(
            parse_pv("$(err.class)").unwrap(),
            Pv::Err("err.class".into())
        );
        assert!(parse_pv("$err.nope").is_err());
        let (pv, n) = parse_pv_prefix("$err.info rest").unwrap();
        assert_eq!((pv, n), (Pv::Err("err.info".into()), 9));
    }

    #[test]
    fn prefix_lengths() {
        assert_eq!(parse_pv_prefix("$si:$sp").unwrap().1, 3);
        assert_eq!(parse_pv_prefix("$hdr(X)y").unwrap().1, 7);
        assert!(parse_pv("$ru x").is_err());
    }
}
