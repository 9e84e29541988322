//! Classifying `$...` tokens into pseudo-variables and AVPs, and splitting `@` selects.
//!
//! The rules follow `cfg.lex`'s `AVP_PVAR` state: `$(...)`, `$name(...)` are
//! pseudo-variables (`$avp(...)` is kept as an AVP), `$class.name` with a SER track prefix
//! and `$name[idx]` are AVPs, and a plain `$name` is a pseudo-variable when the name is a
//! known one (`$rU`, `$si`, ...), else an AVP. A `#!SER` file makes every `$` an AVP, a
//! `#!KAMAILIO` file makes every `$` a pseudo-variable.

use ser_lexer::scan::is_avp_class;
use ser_lexer::{Dialect, Span};

use crate::ast::{Avp, Expr, Pvar, Select, SelectParam, SelectPart};

/// Pseudo-variable names used without parentheses (Kamailio core and `pv` module).
const PVAR_NAMES: &[&str] = &[
    "ai", "adu", "aa", "ar", "au", "ad", "aU", "Au", "AU", "bf", "bF", "bs", "br", "bR", "bS",
    "ci", "cl", "cs", "ct", "cT", "cn", "cnt", "conid", "dd", "di", "dip", "dir", "dp", "dP", "ds",
    "du", "err", "fd", "fn", "fs", "fsn", "ft", "fti", "fu", "fU", "fUl", "hu", "mb", "mbu", "mf",
    "mF", "mi", "ml", "mt", "mx", "null", "od", "op", "oP", "ou", "oU", "oUl", "pd", "pn", "pp",
    "pr", "proto", "pu", "pU", "rb", "rd", "rdir", "re", "rm", "rmid", "rp", "rP", "rr", "rs",
    "rt", "ru", "rU", "rUl", "rv", "rz", "Ri", "Rp", "RP", "Ru", "Rut", "Rn", "RAi", "RAp", "RAu",
    "RAut", "sf", "sF", "si", "sid", "sp", "sP", "sas", "su", "sut", "td", "tn", "tt", "tti", "tu",
    "tU", "tUl", "ua", "ts", "TS", "Ts", "Tf", "TF", "Tb", "TV", "ki", "uuid", "version",
];

/// Splits `name(inner)[index]` (the text after `$`, or inside `$( )`).
fn split_name(s: &str) -> (String, Option<String>, Option<String>) {
    let name_end = s.find(['(', '[', '{']).unwrap_or(s.len());
    let name = s[..name_end].to_string();
    let mut rest = &s[name_end..];
    let mut inner = None;
    if rest.starts_with('(') {
        let mut depth = 0usize;
        let mut close = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        inner = Some(rest[1..close].to_string());
        rest = rest.get(close + 1..).unwrap_or("");
    }
    let index = rest
        .strip_prefix('[')
        .and_then(|r| r.find(']').map(|e| r[..e].to_string()));
    (name, inner, index)
}

/// Builds the expression for a `$...` token.
pub fn classify_dollar(raw: String, span: Span, dialect: Option<Dialect>) -> Expr {
    let body = &raw[1..];
    if let Some(paren) = body.strip_prefix('(') {
        let inside = paren.strip_suffix(')').unwrap_or(paren);
        let (name, inner, index) = split_name(inside);
        return Expr::Pvar(Pvar {
            raw,
            name,
            inner,
            index,
            span,
        });
    }
    let (name, inner, index) = split_name(body);
    let kamailio = matches!(dialect, Some(Dialect::Kamailio | Dialect::OpenSer));
    // `%name` is SER's attribute syntax: always an AVP.
    let ser = dialect == Some(Dialect::Ser) || raw.starts_with('%');
    if name == "avp" && inner.is_some() {
        let name = inner.unwrap_or_default();
        return Expr::Avp(Avp {
            raw,
            class: None,
            name,
            index,
            span,
        });
    }
    if inner.is_some() && !ser {
        return Expr::Pvar(Pvar {
            raw,
            name,
            inner,
            index,
            span,
        });
    }
    let avp = |raw: String, name: String, index| {
        let (class, n) = match name.split_once('.') {
            Some((c, n)) if is_avp_class(c) => (Some(c.to_string()), n.to_string()),
            _ => (None, name),
        };
        Expr::Avp(Avp {
            raw,
            class,
            name: n,
            index,
            span,
        })
    };
    if ser {
        return avp(raw, name, index);
    }
    if kamailio {
        return Expr::Pvar(Pvar {
            raw,
            name,
            inner,
            index,
            span,
        });
    }
    let has_class = name.split_once('.').is_some_and(|(c, _)| is_avp_class(c));
    if has_class || index.is_some() || !PVAR_NAMES.contains(&name.as_str()) {
        avp(raw, name, index)
    } else {
        Expr::Pvar(Pvar {
            raw,
            name,
            inner,
            index,
            span,
        })
    }
}

/// Splits an `@a.b[1].c["x"]` select into parts.
pub fn parse_select(raw: String, span: Span) -> Select {
    let mut parts: Vec<SelectPart> = Vec::new();
    let b = raw.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'[' => {
                let close = raw[i..].rfind(']').map_or(b.len(), |c| i + c);
                let close = if b.get(i + 1) == Some(&b'"') {
                    // a quoted key may contain `]`: find the closing quote first
                    let q = raw[i + 2..].find('"').map_or(close, |q| i + 2 + q);
                    raw[q..].find(']').map_or(close, |c| q + c)
                } else {
                    raw[i..].find(']').map_or(close, |c| i + c)
                };
                let inner = raw[i + 1..close].trim();
                let param = if let Some(s) = inner.strip_prefix('"') {
                    SelectParam::Str(s.strip_suffix('"').unwrap_or(s).to_string())
                } else {
                    match inner.parse::<i64>() {
                        Ok(n) => SelectParam::Int(n),
                        Err(_) => SelectParam::Str(inner.to_string()),
                    }
                };
                if let Some(last) = parts.last_mut() {
                    last.param = Some(param);
                }
                i = close + 1;
            }
            _ => {
                let end = raw[i..].find(['.', '[']).map_or(b.len(), |e| i + e);
                parts.push(SelectPart {
                    name: raw[i..end].to_string(),
                    param: None,
                });
                i = end;
            }
        }
    }
    Select { raw, parts, span }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(raw: &str, dialect: Option<Dialect>) -> Expr {
        classify_dollar(raw.to_string(), Span::default(), dialect)
    }

    #[test]
    fn pvars_and_avps() {
        match d("$rU", None) {
            Expr::Pvar(p) => assert_eq!((p.name.as_str(), p.inner), ("rU", None)),
            e => panic!("{e:?}"),
        }
        match d("$hdr(X-(a))", None) {
            Expr::Pvar(p) => assert_eq!(
                (p.name.as_str(), p.inner.as_deref()),
                ("hdr", Some("X-(a)"))
            ),
            e => panic!("{e:?}"),
        }
        match d("$(avp(x)[0])", None) {
            Expr::Pvar(p) => {
                assert_eq!(p.name, "avp");
                assert_eq!(p.inner.as_deref(), Some("x"));
                assert_eq!(p.index.as_deref(), Some("0"));
            }
            e => panic!("{e:?}"),
        }
        match d("$avp(i:80)", None) {
            Expr::Avp(a) => assert_eq!((a.class, a.name.as_str()), (None, "i:80")),
            e => panic!("{e:?}"),
        }
        match d("$t.did", None) {
            Expr::Avp(a) => assert_eq!((a.class.as_deref(), a.name.as_str()), (Some("t"), "did")),
            e => panic!("{e:?}"),
        }
        match d("$account", None) {
            Expr::Avp(a) => assert_eq!((a.class, a.name.as_str()), (None, "account")),
            e => panic!("{e:?}"),
        }
        assert!(matches!(d("$rU", Some(Dialect::Ser)), Expr::Avp(_)));
        assert!(matches!(
            d("$account", Some(Dialect::Kamailio)),
            Expr::Pvar(_)
        ));
    }

    #[test]
    fn selects() {
        let s = parse_select("@hf_value[\"x\"].y".into(), Span::default());
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].name, "hf_value");
        assert_eq!(s.parts[0].param, Some(SelectParam::Str("x".into())));
        assert_eq!(s.parts[1].name, "y");
        let s = parse_select("@via[1].host".into(), Span::default());
        assert_eq!(s.parts[0].param, Some(SelectParam::Int(1)));
        let s = parse_select("@cfg_get.pstn.gw_ip".into(), Span::default());
        let names: Vec<_> = s.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cfg_get", "pstn", "gw_ip"]);
    }
}
