//! The 2001 `sip_router.cfg` format: a regex routing table, one rule per line,
//! `method_re  uri_re  dest_host`, fields separated by blanks, `#` starts a comment.
//! Regexes cannot contain blanks.

use ser_lexer::{FileId, Span};

use crate::ast::LegacyRule;

fn strip_comment(line: &str) -> &str {
    line.find('#').map_or(line, |i| &line[..i])
}

/// True when every non-blank, non-comment line has exactly three fields and none looks
/// like script syntax (quotes, braces, `;`, `=`), and there is at least one rule.
pub fn looks_like_table(text: &str) -> bool {
    let mut rules = 0;
    for line in text.lines() {
        let l = strip_comment(line).trim();
        if l.is_empty() {
            continue;
        }
        if l.split_whitespace().count() != 3 || l.contains(['"', '\'', '{', '}', ';', '=']) {
            return false;
        }
        rules += 1;
    }
    rules > 0
}

/// Parses the table (call after [`looks_like_table`]).
pub fn parse_table(file: FileId, text: &str) -> Vec<LegacyRule> {
    let mut rules = Vec::new();
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let body = strip_comment(line);
        let trimmed = body.trim();
        if !trimmed.is_empty() {
            let lead = body.len() - body.trim_start().len();
            let start = (offset + lead) as u32;
            let span = Span {
                file,
                start,
                end: start + trimmed.len() as u32,
            };
            let f: Vec<&str> = trimmed.split_whitespace().collect();
            if let [m, u, d] = f[..] {
                rules.push(LegacyRule {
                    method_re: m.into(),
                    uri_re: u.into(),
                    dest: d.into(),
                    span,
                });
            }
        }
        offset += line.len();
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_and_parses() {
        let t = "# c\n\n^R.*   ^sip:.*@x  host   \n.\t.\t1.2.3.4 # me\n";
        assert!(looks_like_table(t));
        let r = parse_table(FileId(0), t);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].method_re.as_str(),
                r[0].uri_re.as_str(),
                r[0].dest.as_str()
            ),
            ("^R.*", "^sip:.*@x", "host")
        );
        assert_eq!(r[1].dest, "1.2.3.4");
        assert_eq!(r[0].span.start, 5);
        assert!(!looks_like_table("debug=3\n"));
        assert!(!looks_like_table("modparam(\"a\", \"b\", 1)\n"));
        assert!(!looks_like_table("# only comments\n"));
    }
}
