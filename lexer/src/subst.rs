//! `#!subst "/re/repl/flags"` and `#!substdef "/ID/value/"` rules (Kamailio `ppcfg.c`).
//!
//! A subst rule rewrites the text of string literals and `$` variables after they are cut.
//! `substdef` also defines `ID` as `value` for identifier substitution.

use regex::{Regex, RegexBuilder};

/// One compiled substitution.
#[derive(Debug, Clone)]
pub struct SubstRule {
    re: Regex,
    replacement: String,
    global: bool,
    /// The match text as written (for `substdef`, the define name).
    pub pattern: String,
    /// The replacement as written (for `substdef`, the define value).
    pub raw_replacement: String,
}

impl SubstRule {
    /// Parses `/re/repl/flags` (any delimiter: the first character). Flags: `g` (all
    /// matches), `i` (ignore case). `\1`..`\9` in the replacement are back references.
    pub fn parse(spec: &str) -> Result<SubstRule, String> {
        let mut chars = spec.chars();
        let Some(delim) = chars.next() else {
            return Err("empty subst expression".into());
        };
        let mut parts: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut esc = false;
        for c in chars {
            if esc {
                // `\/` is a literal delimiter; other escapes stay for the regex engine.
                if c != delim {
                    cur.push('\\');
                }
                cur.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == delim {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        parts.push(cur);
        if parts.len() != 3 {
            return Err(format!(
                "bad subst expression `{spec}`: expected {delim}match{delim}replacement{delim}flags"
            ));
        }
        let flags = &parts[2];
        if let Some(bad) = flags.chars().find(|c| !matches!(c, 'g' | 'i')) {
            return Err(format!("unknown subst flag `{bad}` in `{spec}`"));
        }
        let re = RegexBuilder::new(&parts[0])
            .case_insensitive(flags.contains('i'))
            .build()
            .map_err(|e| format!("bad regular expression `{}`: {e}", parts[0]))?;
        Ok(SubstRule {
            re,
            replacement: to_rust_replacement(&parts[1]),
            global: flags.contains('g'),
            pattern: parts[0].clone(),
            raw_replacement: parts[1].clone(),
        })
    }

    /// Applies the rule; `None` when it does not match.
    pub fn apply(&self, text: &str) -> Option<String> {
        if !self.re.is_match(text) {
            return None;
        }
        let out = if self.global {
            self.re.replace_all(text, self.replacement.as_str())
        } else {
            self.re.replace(text, self.replacement.as_str())
        };
        Some(out.into_owned())
    }
}

/// `\1` → `${1}`, `$` → `$$` (so a literal `$` in the replacement stays literal).
fn to_rust_replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some(&d) => {
                    out.push(d);
                    chars.next();
                }
                None => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_apply() {
        let r = SubstRule::parse("/ID/value/").unwrap();
        assert_eq!(r.pattern, "ID");
        assert_eq!(r.raw_replacement, "value");
        assert_eq!(r.apply("x ID y ID").as_deref(), Some("x value y ID"));
        let g = SubstRule::parse("/(a+)/<\\1>/g").unwrap();
        assert_eq!(g.apply("aa b a").as_deref(), Some("<aa> b <a>"));
        let i = SubstRule::parse("|host|$x|i").unwrap();
        assert_eq!(i.apply("HOST").as_deref(), Some("$x"));
        assert!(SubstRule::parse("/a/b").is_err());
        assert!(SubstRule::parse("/a/b/z").is_err());
        assert!(SubstRule::parse("/(/b/").is_err());
        assert_eq!(r.apply("nothing"), None);
    }
}
