//! A stable, readable dump of a [`Config`] for golden tests and `ser -c`-style debugging:
//! the derived pretty `Debug` output with every span written as `@line:col` (plus the file
//! name when it is not the main file).

use ser_lexer::{FileId, SourceMap};

use crate::ast::Config;

/// Pretty-prints the tree, spans as `@line:col`.
pub fn dump(config: &Config, sources: &SourceMap) -> String {
    let raw = format!("{config:#?}\n");
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
            continue;
        }
        if let Some((file, start, end)) = span_at(b, i) {
            let id = FileId(file);
            let (line, col) = sources.get(id).map_or((0, 0), |f| f.line_col(start));
            if file == 0 {
                out.push_str(&format!("@{line}:{col}"));
            } else {
                let name = sources.get(id).map_or("?", |f| f.name.as_str());
                out.push_str(&format!("@{name}:{line}:{col}"));
            }
            i = end;
            continue;
        }
        // Copy one UTF-8 character.
        let ch_len = raw[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&raw[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Matches `F:S..E` (a span's Debug form) at `i`, at a token boundary.
fn span_at(b: &[u8], i: usize) -> Option<(u32, u32, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.') {
        return None;
    }
    let num = |mut j: usize| -> Option<(u32, usize)> {
        let s = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == s {
            return None;
        }
        std::str::from_utf8(&b[s..j])
            .ok()?
            .parse()
            .ok()
            .map(|n| (n, j))
    };
    let (file, j) = num(i)?;
    if b.get(j) != Some(&b':') {
        return None;
    }
    let (start, j) = num(j + 1)?;
    if b.get(j..j + 2) != Some(b"..") {
        return None;
    }
    let (_end, j) = num(j + 2)?;
    Some((file, start, j))
}
