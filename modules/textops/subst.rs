//! sed-like substitution expressions (`/re/repl/flags`) as SER's `subst*`
//! functions take them: any delimiter, `\1`..`\9` back-references, flags
//! `i` (ignore case), `g` (every match), `s` (lines: `.` stops at line ends,
//! `^`/`$` anchor at them).

use regex::bytes::{Regex, RegexBuilder};

/// A compiled substitution.
#[derive(Debug)]
pub struct Subst {
    re: Regex,
    repl: Vec<Piece>,
    global: bool,
}

#[derive(Debug, PartialEq)]
enum Piece {
    Lit(Vec<u8>),
    Group(usize),
}

/// One replacement: the matched range of the subject and what replaces it.
pub type Edit = (usize, usize, Vec<u8>);

impl Subst {
    /// Parses and compiles `/re/repl/flags`.
    pub fn parse(expr: &str) -> Result<Subst, String> {
        let bad = |why: &str| format!("bad subst expression `{expr}`: {why}");
        let mut chars = expr.chars();
        let delim = chars.next().ok_or_else(|| bad("empty"))?;
        if delim.is_alphanumeric() || delim == '\\' || delim.is_whitespace() {
            return Err(bad("the delimiter must be a punctuation character"));
        }
        let mut parts: Vec<String> = vec![String::new()];
        let mut it = chars.peekable();
        while let Some(c) = it.next() {
            let n = parts.len();
            let cur = parts
                .last_mut()
                .expect("parts starts non-empty and only grows");
            if c == '\\' {
                match it.next() {
                    // an escaped delimiter is the delimiter itself
                    Some(n) if n == delim => cur.push(n),
                    Some(n) => {
                        cur.push('\\');
                        cur.push(n);
                    }
                    None => return Err(bad("trailing backslash")),
                }
            } else if c == delim && n < 3 {
                parts.push(String::new());
            } else {
                cur.push(c);
            }
        }
        if parts.len() != 3 {
            return Err(bad("expected /re/replacement/flags"));
        }
        let (mut icase, mut global, mut lines) = (false, false, false);
        for f in parts[2].chars() {
            match f {
                'i' => icase = true,
                'g' => global = true,
                's' => lines = true,
                other => return Err(bad(&format!("unknown flag `{other}`"))),
            }
        }
        if parts[0].is_empty() {
            return Err(bad("empty regular expression"));
        }
        let re = RegexBuilder::new(&parts[0])
            .case_insensitive(icase)
            .multi_line(lines)
            .dot_matches_new_line(!lines)
            .crlf(lines)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let repl = parse_repl(&parts[1]).map_err(|e| bad(&e))?;
        let groups = re.captures_len() - 1;
        if let Some(n) = repl.iter().find_map(|p| match p {
            Piece::Group(n) if *n > groups => Some(*n),
            _ => None,
        }) {
            return Err(bad(&format!(
                "\\{n} refers to a group the expression does not have ({groups})"
            )));
        }
        Ok(Subst { re, repl, global })
    }

    /// The replacements in `hay`: the first match, or every one with `g`.
    pub fn edits(&self, hay: &[u8]) -> Vec<Edit> {
        let mut out = Vec::new();
        for caps in self.re.captures_iter(hay) {
            let m = caps.get(0).expect("group 0 is always present in a match");
            let mut text = Vec::new();
            for p in &self.repl {
                match p {
                    Piece::Lit(b) => text.extend_from_slice(b),
                    Piece::Group(n) => {
                        if let Some(g) = caps.get(*n) {
                            text.extend_from_slice(g.as_bytes());
                        }
                    }
                }
            }
            out.push((m.start(), m.end(), text));
            if !self.global {
                break;
            }
        }
        out
    }

    /// `s` with the substitution done, `None` when nothing matched.
    pub fn apply(&self, s: &[u8]) -> Option<Vec<u8>> {
        let edits = self.edits(s);
        if edits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(s.len());
        let mut pos = 0;
        for (start, end, text) in edits {
            out.extend_from_slice(&s[pos..start]);
            out.extend_from_slice(&text);
            pos = end;
        }
        out.extend_from_slice(&s[pos..]);
        Some(out)
    }
}

fn parse_repl(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            let mut b = [0; 4];
            lit.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        match it.next() {
            Some(d @ '0'..='9') => {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Group(d as usize - '0' as usize));
            }
            Some('n') => lit.push(b'\n'),
            Some('r') => lit.push(b'\r'),
            Some('t') => lit.push(b'\t'),
            Some('\\') => lit.push(b'\\'),
            Some(other) => return Err(format!("unknown escape `\\{other}` in the replacement")),
            None => return Err("trailing backslash in the replacement".to_owned()),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, s: &str) -> Option<String> {
        Subst::parse(expr)
            .unwrap()
            .apply(s.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn first_match_with_backrefs() {
        assert_eq!(
            run("/(a+)(b)/<\\2\\1>/", "xaab aab").as_deref(),
            Some("x<baa> aab")
        );
    }

    #[test]
    fn global_and_ignore_case() {
        assert_eq!(run("/a/_/gi", "AbaA").as_deref(), Some("_b__"));
        assert_eq!(run("/a/_/g", "AbaA").as_deref(), Some("Ab_A"));
        assert_eq!(run("/z/_/", "abc"), None);
    }

    #[test]
    fn other_delimiter_and_escaped_delimiter() {
        assert_eq!(
            run("#sip:(.*)@#tel:\\1#", "sip:123@h").as_deref(),
            Some("tel:123h")
        );
        assert_eq!(run("/a\\/b/c/", "xa/b").as_deref(), Some("xc"));
        assert_eq!(run("/x/a\\\\b\\r\\n/", "x").as_deref(), Some("a\\b\r\n"));
    }

    #[test]
    fn line_flag_anchors_at_line_ends() {
        assert_eq!(
            run("/^B: .*$/B: 2/s", "A: 1\r\nB: 1\r\nC: 1\r\n").as_deref(),
            Some("A: 1\r\nB: 2\r\nC: 1\r\n")
        );
    }

    #[test]
    fn bad_expressions_are_rejected() {
        for e in [
            "",
            "abc",
            "/a/b",
            "/a/b/x",
            "/(/b/",
            "//b/",
            "/(a)/\\2/",
            "/a/\\q/",
            "/a/b\\",
        ] {
            assert!(Subst::parse(e).is_err(), "{e:?} accepted");
        }
    }
}
