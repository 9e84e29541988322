//! Cutting single tokens out of text: strings, numbers, addresses, `$` variables, `@` selects.
//!
//! Each function looks at `text[pos..]` and returns the token and the byte offset just past
//! it, or a [`CutError`] saying what is wrong and where. They know nothing about files,
//! defines or directives; the [`crate::preproc`] driver calls them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A token that could not be cut: message and the byte range to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutError {
    /// What is wrong.
    pub message: String,
    /// Start of the bad text.
    pub start: usize,
    /// End of the bad text.
    pub end: usize,
}

fn err<T>(message: impl Into<String>, start: usize, end: usize) -> Result<T, CutError> {
    Err(CutError {
        message: message.into(),
        start,
        end,
    })
}

/// True for `[A-Za-z_]`.
pub fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// True for `[A-Za-z0-9_]`.
pub fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// End of the identifier starting at `pos` (which must be an identifier start).
pub fn ident_end(text: &[u8], pos: usize) -> usize {
    let mut i = pos;
    while i < text.len() && is_ident_char(text[i]) {
        i += 1;
    }
    i
}

/// A double-quoted string at `pos` (on the `"`), with SER's escapes: `\n \r \a \t \" \\`,
/// `\xH[H]`, `\ooo` (2–3 octal digits) and `\`+newline (eaten). Any other `\c` is kept as
/// both characters, so regexes like `"^\+[0-9]"` survive. Adjacent literals separated only
/// by whitespace are joined (`"a" "b"` is `"ab"`), as in `cfg.lex`.
pub fn cut_dq_string(text: &[u8], pos: usize) -> Result<(String, usize), CutError> {
    let mut out: Vec<u8> = Vec::new();
    let mut i = pos;
    loop {
        // i is on a '"'
        let open = i;
        i += 1;
        loop {
            let Some(&b) = text.get(i) else {
                return err("unterminated string", open, open + 1);
            };
            match b {
                b'"' => {
                    i += 1;
                    break;
                }
                b'\\' => {
                    let Some(&n) = text.get(i + 1) else {
                        return err("unterminated string", open, open + 1);
                    };
                    i += 2;
                    match n {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b'a' => out.push(0x07),
                        b't' => out.push(b'\t'),
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'\n' => {}
                        b'x' if text.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                            let mut v = 0u32;
                            let mut k = 0;
                            while k < 2 && text.get(i).is_some_and(u8::is_ascii_hexdigit) {
                                v = v * 16 + (text[i] as char).to_digit(16).unwrap_or(0);
                                i += 1;
                                k += 1;
                            }
                            out.push(v as u8);
                        }
                        b'0'..=b'7' if text.get(i).is_some_and(|c| (b'0'..=b'7').contains(c)) => {
                            let mut v = (n - b'0') as u32;
                            let mut k = 1;
                            while k < 3 && text.get(i).is_some_and(|c| (b'0'..=b'7').contains(c)) {
                                v = v * 8 + (text[i] - b'0') as u32;
                                i += 1;
                                k += 1;
                            }
                            out.push(v as u8);
                        }
                        other => {
                            out.push(b'\\');
                            out.push(other);
                        }
                    }
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        // Join with a following literal if only whitespace is between.
        let mut j = i;
        while j < text.len() && matches!(text[j], b' ' | b'\t' | b'\r' | b'\n' | 0x08) {
            j += 1;
        }
        if text.get(j) == Some(&b'"') {
            i = j;
            continue;
        }
        return Ok((String::from_utf8_lossy(&out).into_owned(), i));
    }
}

/// A single-quoted string at `pos` (on the `'`): raw, no escapes, may span lines.
pub fn cut_sq_string(text: &[u8], pos: usize) -> Result<(String, usize), CutError> {
    let mut i = pos + 1;
    while i < text.len() && text[i] != b'\'' {
        i += 1;
    }
    if i >= text.len() {
        return err("unterminated string", pos, pos + 1);
    }
    Ok((
        String::from_utf8_lossy(&text[pos + 1..i]).into_owned(),
        i + 1,
    ))
}

/// What a run starting with a digit (or a hex/colon run) turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Numeric {
    /// An integer.
    Int(i64),
    /// An address.
    Ip(IpAddr),
    /// `addr/prefix`.
    IpNet(IpAddr, u8),
}

/// Length of a maximal run of bytes that may form an IPv6 address (hex digits, `:`, `.`).
fn v6_run(text: &[u8], pos: usize) -> usize {
    let mut i = pos;
    while i < text.len() && (text[i].is_ascii_hexdigit() || text[i] == b':' || text[i] == b'.') {
        i += 1;
    }
    // A trailing '.' or single ':' belongs to what follows (`::1:` is not an address).
    while i > pos && matches!(text[i - 1], b'.') {
        i -= 1;
    }
    i
}

/// A bare IPv6 address at `pos` (`::1`, `fe80::1`, `2001:db8::1`): must contain `::` or
/// seven colons, as SER's `IPV6ADDR` rule requires. Returns `None` if it is not one.
pub fn try_bare_ipv6(text: &[u8], pos: usize) -> Option<(Ipv6Addr, usize)> {
    let end = v6_run(text, pos);
    // Never split an identifier: `abc:` followed by a letter is not an address.
    if end < text.len() && is_ident_char(text[end]) {
        return None;
    }
    let s = std::str::from_utf8(&text[pos..end]).ok()?;
    let colons = s.bytes().filter(|&b| b == b':').count();
    if !(s.contains("::") || colons == 7) {
        return None;
    }
    s.parse::<Ipv6Addr>().ok().map(|a| (a, end))
}

/// A bracketed IPv6 literal `[addr]` at `pos` (on the `[`), or `None`.
pub fn try_bracket_ipv6(text: &[u8], pos: usize) -> Option<(Ipv6Addr, usize)> {
    let mut i = pos + 1;
    while i < text.len() && (text[i].is_ascii_hexdigit() || text[i] == b':' || text[i] == b'.') {
        i += 1;
    }
    if text.get(i) != Some(&b']') || !text[pos + 1..i].contains(&b':') {
        return None;
    }
    let s = std::str::from_utf8(&text[pos + 1..i]).ok()?;
    s.parse::<Ipv6Addr>().ok().map(|a| (a, i + 1))
}

/// A `/prefix` or `/mask` right after an address ending at `pos`, for `10.0.0.0/8`.
pub fn try_netmask(text: &[u8], pos: usize, v6: bool) -> Option<(u8, usize)> {
    if text.get(pos) != Some(&b'/') || !text.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let start = pos + 1;
    let mut i = start;
    while i < text.len() && (text[i].is_ascii_digit() || text[i] == b'.') {
        i += 1;
    }
    if i < text.len() && is_ident_char(text[i]) {
        return None;
    }
    let s = std::str::from_utf8(&text[start..i]).ok()?;
    if let Ok(bits) = s.parse::<u8>() {
        let max = if v6 { 128 } else { 32 };
        return (bits <= max).then_some((bits, i));
    }
    let mask: Ipv4Addr = s.parse().ok()?;
    let m = u32::from(mask);
    let bits = m.leading_ones();
    // Only contiguous masks (255.255.0.0) have a prefix length.
    (m.checked_shl(bits).unwrap_or(0) == 0 && !v6).then_some((bits as u8, i))
}

/// A number or IPv4 address/network at `pos` (on a digit). Numbers: decimal, `0x` hex,
/// `0` octal, `[01]+b` binary (as `cfg.lex`).
pub fn cut_numeric(text: &[u8], pos: usize) -> Result<(Numeric, usize), CutError> {
    // IPv4: d+.d+.d+.d+
    let mut i = pos;
    let mut dots = 0;
    while i < text.len() && (text[i].is_ascii_digit() || text[i] == b'.') {
        if text[i] == b'.' {
            if !text.get(i + 1).is_some_and(u8::is_ascii_digit) {
                break;
            }
            dots += 1;
        }
        i += 1;
    }
    if dots == 3 {
        let s = std::str::from_utf8(&text[pos..i]).unwrap_or("");
        let Ok(a) = s.parse::<Ipv4Addr>() else {
            return err(format!("invalid IPv4 address `{s}`"), pos, i);
        };
        if let Some((bits, end)) = try_netmask(text, i, false) {
            return Ok((Numeric::IpNet(IpAddr::V4(a), bits), end));
        }
        return Ok((Numeric::Ip(IpAddr::V4(a)), i));
    }
    // Bare IPv6 starting with a digit (`2001:db8::1`).
    if let Some((a, end)) = try_bare_ipv6(text, pos) {
        if let Some((bits, e2)) = try_netmask(text, end, true) {
            return Ok((Numeric::IpNet(IpAddr::V6(a), bits), e2));
        }
        return Ok((Numeric::Ip(IpAddr::V6(a)), end));
    }
    let end = ident_end(text, pos);
    let word = std::str::from_utf8(&text[pos..end]).unwrap_or("");
    let parsed = if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = word
        .strip_suffix('b')
        .filter(|b| b.bytes().all(|c| c == b'0' || c == b'1'))
    {
        i64::from_str_radix(bin, 2).ok()
    } else if word.len() > 1 && word.starts_with('0') {
        i64::from_str_radix(&word[1..], 8).ok()
    } else {
        word.parse::<i64>().ok()
    };
    match parsed {
        Some(n) => Ok((Numeric::Int(n), end)),
        None => err(format!("invalid number `{word}`"), pos, end),
    }
}

/// Track/class prefixes of SER AVPs: `f t fr tr fu tu fd td g`.
pub fn is_avp_class(s: &str) -> bool {
    matches!(s, "f" | "t" | "fr" | "tr" | "fu" | "tu" | "fd" | "td" | "g")
}

/// Skips a balanced `(...)` starting at `pos` (on the `(`); returns the offset after `)`.
fn balanced(text: &[u8], pos: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = pos;
    while i < text.len() {
        let b = text[i];
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return Some(i + 1);
            }
        } else if b == b'\n' && open == b'[' {
            return None;
        }
        i += 1;
    }
    None
}

/// What a `$` token is.
#[derive(Debug, Clone, PartialEq)]
pub enum DollarTok {
    /// `$?`, `$retcode`, `$rc`.
    Retcode,
    /// Anything else, raw text including `$`.
    Var(String),
}

/// A `$` variable at `pos` (on the `$`): `$?`, `$(...)`, `$name(...)`, `$class.name[idx]`,
/// `$name[idx]`, `$name.more` (dotted pvar names such as `$err.class`). Also cuts SER's
/// `%name` attributes when `pos` is on a `%`.
pub fn cut_dollar(text: &[u8], pos: usize) -> Result<(DollarTok, usize), CutError> {
    let raw = |end: usize| String::from_utf8_lossy(&text[pos..end]).into_owned();
    match text.get(pos + 1) {
        Some(b'?') => Ok((DollarTok::Retcode, pos + 2)),
        Some(b'(') => match balanced(text, pos + 1, b'(', b')') {
            Some(end) => Ok((DollarTok::Var(raw(end)), end)),
            None => err("unbalanced parentheses in variable", pos, pos + 2),
        },
        Some(&b) if is_ident_start(b) => {
            let name_end = ident_end(text, pos + 1);
            let name = std::str::from_utf8(&text[pos + 1..name_end]).unwrap_or("");
            let mut end = name_end;
            if text.get(end) == Some(&b'(') {
                match balanced(text, end, b'(', b')') {
                    Some(e) => end = e,
                    None => return err("unbalanced parentheses in variable", pos, end + 1),
                }
            } else {
                if (name == "retcode" || name == "rc")
                    && !text.get(end).is_some_and(|&c| c == b'.' || c == b'[')
                {
                    return Ok((DollarTok::Retcode, end));
                }
                // `.name` continuations (`$t.did`, `$err.class`)
                while text.get(end) == Some(&b'.')
                    && text.get(end + 1).is_some_and(|&c| is_ident_start(c))
                {
                    end = ident_end(text, end + 1);
                }
            }
            if text.get(end) == Some(&b'[') {
                match balanced(text, end, b'[', b']') {
                    Some(e) => end = e,
                    None => return err("unterminated `[` index in variable", pos, end + 1),
                }
            }
            Ok((DollarTok::Var(raw(end)), end))
        }
        _ => err("`$` must be followed by a variable name", pos, pos + 1),
    }
}

/// An `@` select at `pos` (on the `@`): `@name(.name | [int] | ["str"])*`.
pub fn cut_select(text: &[u8], pos: usize) -> Result<(String, usize), CutError> {
    if !text.get(pos + 1).is_some_and(|&b| is_ident_start(b)) {
        return err("`@` must be followed by a select name", pos, pos + 1);
    }
    let mut i = ident_end(text, pos + 1);
    loop {
        match text.get(i) {
            Some(b'.') if text.get(i + 1).is_some_and(|&b| is_ident_start(b)) => {
                i = ident_end(text, i + 1);
            }
            Some(b'[') => {
                let mut j = i + 1;
                if text.get(j) == Some(&b'"') {
                    let (_, e) = cut_dq_string(text, j)?;
                    j = e;
                } else {
                    if text.get(j) == Some(&b'-') {
                        j += 1;
                    }
                    let s = j;
                    while j < text.len() && text[j].is_ascii_alphanumeric() {
                        j += 1;
                    }
                    if j == s {
                        return err("bad select index", i, j + 1);
                    }
                }
                if text.get(j) != Some(&b']') {
                    return err("missing `]` in select", i, j.max(i + 1));
                }
                i = j + 1;
            }
            _ => break,
        }
    }
    Ok((String::from_utf8_lossy(&text[pos..i]).into_owned(), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dq(s: &str) -> String {
        cut_dq_string(s.as_bytes(), 0).unwrap().0
    }

    #[test]
    fn strings() {
        assert_eq!(dq(r#""a\nb\t\"\\""#), "a\nb\t\"\\");
        assert_eq!(dq(r#""^(\+|00)[1-9]""#), r"^(\+|00)[1-9]");
        assert_eq!(dq(r#""\x41\101""#), "AA");
        assert_eq!(dq("\"a\"  \n \"b\" x"), "ab");
        assert_eq!(
            cut_dq_string(b"\"abc", 0).unwrap_err().message,
            "unterminated string"
        );
        assert_eq!(cut_sq_string(b"'a\\n' x", 0).unwrap(), ("a\\n".into(), 5));
    }

    #[test]
    fn numbers_and_addresses() {
        let n = |s: &str| cut_numeric(s.as_bytes(), 0).unwrap();
        assert_eq!(n("5060;"), (Numeric::Int(5060), 4));
        assert_eq!(n("0x1f"), (Numeric::Int(31), 4));
        assert_eq!(n("010"), (Numeric::Int(8), 3));
        assert_eq!(n("101b"), (Numeric::Int(5), 4));
        assert_eq!(
            n("127.0.0.1)"),
            (Numeric::Ip("127.0.0.1".parse().unwrap()), 9)
        );
        assert_eq!(
            n("10.0.0.0/8)"),
            (Numeric::IpNet("10.0.0.0".parse().unwrap(), 8), 10)
        );
        assert_eq!(
            n("10.0.0.0/255.255.0.0"),
            (Numeric::IpNet("10.0.0.0".parse().unwrap(), 16), 20)
        );
        assert_eq!(
            n("2001:db8::1 "),
            (Numeric::Ip("2001:db8::1".parse().unwrap()), 11)
        );
        assert!(cut_numeric(b"12ab", 0).is_err());
        assert!(cut_numeric(b"1.2.3.400", 0).is_err());
        assert_eq!(try_bare_ipv6(b"::1)", 0), Some(("::1".parse().unwrap(), 3)));
        assert_eq!(
            try_bracket_ipv6(b"[::1]:5060", 0),
            Some(("::1".parse().unwrap(), 5))
        );
        assert_eq!(try_bare_ipv6(b"udp:", 0), None);
    }

    #[test]
    fn dollars() {
        let d = |s: &str| cut_dollar(s.as_bytes(), 0).unwrap();
        assert_eq!(d("$rU=="), (DollarTok::Var("$rU".into()), 3));
        assert_eq!(d("$avp(i:80))"), (DollarTok::Var("$avp(i:80)".into()), 10));
        assert_eq!(d("$hdr(X-(a))"), (DollarTok::Var("$hdr(X-(a))".into()), 11));
        assert_eq!(
            d("$(avp(x)[0]) "),
            (DollarTok::Var("$(avp(x)[0])".into()), 12)
        );
        assert_eq!(d("$t.did)"), (DollarTok::Var("$t.did".into()), 6));
        assert_eq!(d("$fu.uid "), (DollarTok::Var("$fu.uid".into()), 7));
        assert_eq!(d("$x[1]"), (DollarTok::Var("$x[1]".into()), 5));
        assert_eq!(d("$? =="), (DollarTok::Retcode, 2));
        assert_eq!(d("$rc)"), (DollarTok::Retcode, 3));
        assert_eq!(d("$rcv"), (DollarTok::Var("$rcv".into()), 4));
        assert_eq!(
            d("$sel(cfg_get.pstn.gw_ip))"),
            (DollarTok::Var("$sel(cfg_get.pstn.gw_ip)".into()), 24)
        );
        assert!(cut_dollar(b"$hdr(X", 0).is_err());
        assert!(cut_dollar(b"$ x", 0).is_err());
    }

    #[test]
    fn selects() {
        let s = |t: &str| cut_select(t.as_bytes(), 0).unwrap();
        assert_eq!(s("@to.tag)"), ("@to.tag".into(), 7));
        assert_eq!(s("@from.uri.host)"), ("@from.uri.host".into(), 14));
        assert_eq!(s("@hf_value[\"x\"].y "), ("@hf_value[\"x\"].y".into(), 16));
        assert_eq!(s("@via[1].host"), ("@via[1].host".into(), 12));
        assert!(cut_select(b"@ x", 0).is_err());
    }
}
