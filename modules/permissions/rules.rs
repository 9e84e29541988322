//! Kamailio's allow/deny files (`permissions.allow`, `permissions.deny`):
//! one rule a line, `FROM_LIST : REQUEST_URI_LIST`, each list `ALL` or
//! comma-separated (quoted) regular expressions, optionally followed by
//! `EXCEPT` and more expressions; `#` starts a comment.  Expressions are
//! POSIX extended and case-insensitive, as Kamailio compiles them.

use regex::Regex;

use crate::iface::compile_regex;

/// One side of a rule.
#[derive(Debug, Clone)]
pub struct Part {
    all: bool,
    any: Vec<Regex>,
    except: Vec<Regex>,
}

impl Part {
    fn matches(&self, s: &str) -> bool {
        (self.all || self.any.iter().any(|r| r.is_match(s)))
            && !self.except.iter().any(|r| r.is_match(s))
    }
}

/// One line of a file.
#[derive(Debug, Clone)]
pub struct Rule {
    from: Part,
    ruri: Part,
}

/// The rules of one file.
#[derive(Debug, Clone, Default)]
pub struct Rules(pub Vec<Rule>);

impl Rules {
    /// Whether some rule matches the (From URI, Request-URI) pair.
    pub fn matches(&self, from: &str, ruri: &str) -> bool {
        self.0
            .iter()
            .any(|r| r.from.matches(from) && r.ruri.matches(ruri))
    }

    /// Parse a file's text; errors name the line.
    pub fn parse(text: &str) -> Result<Rules, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = strip_comment(line);
            if line.trim().is_empty() {
                continue;
            }
            let (from, ruri) = split_top(line, ':')
                .ok_or_else(|| format!("line {}: expected `from : request-uri`", n + 1))?;
            let part = |s: &str| parse_part(s).map_err(|e| format!("line {}: {e}", n + 1));
            rules.push(Rule {
                from: part(from)?,
                ruri: part(ruri)?,
            });
        }
        Ok(Rules(rules))
    }

    /// Read a file; a missing file has no rules (as Kamailio, with a warning).
    pub fn load(path: &str) -> Result<Rules, String> {
        match std::fs::read_to_string(path) {
            Ok(t) => Rules::parse(&t).map_err(|e| format!("{path}: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("permissions: {path} not found, no rules from it");
                Ok(Rules::default())
            }
            Err(e) => Err(format!("{path}: {e}")),
        }
    }
}

/// Text before an unquoted `#`.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Split at the first unquoted `sep`.
fn split_top(s: &str, sep: char) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Tokens: quoted strings, bare words, commas dropped.
fn tokens(s: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(ch) => t.push(ch),
                    None => return Err("unterminated quoted expression".into()),
                }
            }
            out.push((t, true));
        } else {
            let mut t = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == ',' || ch == '"' {
                    break;
                }
                t.push(ch);
                chars.next();
            }
            out.push((t, false));
        }
    }
    Ok(out)
}

fn parse_part(s: &str) -> Result<Part, String> {
    let mut p = Part {
        all: false,
        any: Vec::new(),
        except: Vec::new(),
    };
    let mut in_except = false;
    let toks = tokens(s)?;
    if toks.is_empty() {
        return Err("empty list".into());
    }
    for (t, quoted) in toks {
        if !quoted && t.eq_ignore_ascii_case("ALL") && !in_except {
            p.all = true;
        } else if !quoted && t.eq_ignore_ascii_case("EXCEPT") {
            if in_except {
                return Err("EXCEPT twice".into());
            }
            in_except = true;
        } else {
            let re = compile_regex(&t, true)?;
            if in_except {
                p.except.push(re);
            } else {
                p.any.push(re);
            }
        }
    }
    if in_except && p.except.is_empty() {
        return Err("EXCEPT without expressions".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamailio_examples() {
        let r = Rules::parse(
            "# comment\n\
             ALL : \"^sip:3[0-9]*@\" EXCEPT \"^sip:3333@\"  # trailing\n\
             \"^sip:.*@foo\\.com$\", \"^sip:bar@\" : ALL\n\n",
        )
        .unwrap();
        assert_eq!(r.0.len(), 2);
        assert!(r.matches("sip:x@y", "sip:3123@gw"));
        assert!(!r.matches("sip:x@y", "sip:3333@gw"));
        assert!(r.matches("sip:joe@FOO.com", "sip:anything@x"));
        assert!(r.matches("sip:bar@z", "sip:1@x"));
        assert!(!r.matches("sip:baz@z", "sip:1@x"));
    }

    #[test]
    fn bad_files() {
        assert!(Rules::parse("ALL ALL").is_err());
        assert!(Rules::parse("ALL : \"(\"").is_err());
        assert!(Rules::parse("ALL : \"x").is_err());
        assert!(Rules::parse("ALL : ALL EXCEPT").is_err());
        assert!(Rules::parse(" : ALL").is_err());
    }
}
