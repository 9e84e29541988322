//! The scanner driver: preprocessor directives, includes, define substitution and token
//! emission, in one pass over the text (as `cfg.lex` does with its start conditions).
//!
//! Modes, per position:
//! - *active*: comments are skipped, directives run, tokens are cut and emitted;
//! - *skipping* (inside a false `#!ifdef` branch): only `#!ifdef`/`#!ifndef`/`#!else`/
//!   `#!endif` are recognised, everything else (even unbalanced quotes or SQL) is ignored.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::diag::Diagnostic;
use crate::scan::{self, is_ident_char, is_ident_start, CutError, DollarTok, Numeric};
use crate::span::{FileId, Pos, SourceMap, Span};
use crate::subst::SubstRule;
use crate::token::{Keyword, Kw, Tok};

/// A token with its start and end positions, as the lalrpop parser wants it.
pub type Spanned = (Pos, Tok, Pos);

/// Options for one preprocessing run.
#[derive(Clone, Debug, Default)]
pub struct LexOptions {
    /// `-A NAME` / `-A NAME=value` defines, set before the first line is read.
    pub defines: Vec<(String, Option<String>)>,
    /// Directories searched for `include_file`/`import_file` after the including file's
    /// own directory.
    pub include_dirs: Vec<PathBuf>,
}

/// Compatibility marker found in the file (`#!SER`, `#!KAMAILIO`, ...). It changes how `$`
/// variables are read: SER → all AVPs, Kamailio → all pseudo-variables, none/`ALL`/
/// `MAXCOMPAT` → decided per name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `#!SER`
    Ser,
    /// `#!KAMAILIO`
    Kamailio,
    /// `#!OPENSER` (same as Kamailio)
    OpenSer,
    /// `#!ALL` (same as MaxCompat)
    All,
    /// `#!MAXCOMPAT`
    MaxCompat,
}

/// Output of preprocessing + lexing.
#[derive(Debug, Default)]
pub struct Lexed {
    /// The token stream (defines already substituted, inactive blocks removed).
    pub tokens: Vec<Spanned>,
    /// Every file read.
    pub sources: SourceMap,
    /// The last compatibility marker seen, if any.
    pub dialect: Option<Dialect>,
    /// Errors (the token stream is still usable for finding more errors).
    pub errors: Vec<Diagnostic>,
    /// Warnings.
    pub warnings: Vec<Diagnostic>,
    /// Files whose scan stopped early (unterminated string or comment): parse errors at
    /// their end are consequences, not new errors.
    pub truncated: Vec<FileId>,
    /// Number of tokens emitted when the first file was cut short: the tokens from this
    /// index on follow an unterminated construct, so syntax errors there are not reported.
    pub cut_at_token: Option<usize>,
    /// Names defined when preprocessing ended, with their values.
    pub defines: Vec<(String, Option<String>)>,
}

/// Preprocesses and lexes a file (following includes).
pub fn lex_file(path: &Path, opts: &LexOptions) -> Lexed {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => lex_str(&name, &String::from_utf8_lossy(&bytes), opts),
        Err(e) => {
            let mut out = Lexed::default();
            let id = out.sources.add(name.clone(), String::new(), None);
            out.errors.push(Diagnostic::error(
                Span {
                    file: id,
                    start: 0,
                    end: 0,
                },
                format!("cannot read config file `{name}`: {e}"),
            ));
            out
        }
    }
}

/// Preprocesses and lexes text; `name` is shown in diagnostics and its directory is the
/// base for relative includes.
pub fn lex_str(name: &str, text: &str, opts: &LexOptions) -> Lexed {
    let mut pp = Pre::new(opts);
    let id = pp.out.sources.add(name.to_string(), text.to_string(), None);
    let dir = Path::new(name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let canon = std::fs::canonicalize(name).unwrap_or_else(|_| PathBuf::from(name));
    pp.include_stack.push(canon);
    pp.run_file(id, dir);
    let mut defs: Vec<_> = pp
        .defines
        .iter()
        .map(|(k, d)| (k.clone(), d.value.clone()))
        .collect();
    defs.sort();
    pp.out.defines = defs;
    pp.out
}

/// Maximum nesting of include files (as Kamailio's `MAX_INCLUDE_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 10;
/// Maximum nesting of define expansions (catches `#!define A B` + `#!define B A`).
const MAX_DEFINE_DEPTH: usize = 16;
/// Maximum number of define expansions in one config.
const MAX_EXPANSIONS: usize = 100_000;

#[derive(Debug, Clone)]
struct Define {
    value: Option<String>,
}

#[derive(Debug, Clone)]
struct Cond {
    /// The `#!ifdef` condition was true.
    cond: bool,
    /// The enclosing code is active.
    parent_active: bool,
    /// Currently inside the taken branch.
    taking: bool,
    seen_else: bool,
    span: Span,
}

struct Pre<'o> {
    opts: &'o LexOptions,
    out: Lexed,
    defines: HashMap<String, Define>,
    substs: Vec<SubstRule>,
    conds: Vec<Cond>,
    include_stack: Vec<PathBuf>,
    /// Define expansions so far (bounded: `#!define A B B` chains grow exponentially).
    expansions: usize,
}

/// The text being scanned and how to place its tokens.
struct Src<'t> {
    text: &'t [u8],
    file: FileId,
    /// Directory for relative includes.
    dir: &'t Path,
    /// For define values: every token and error gets this span (the use site).
    remap: Option<Span>,
    depth: usize,
}

impl Src<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        self.remap.unwrap_or(Span {
            file: self.file,
            start: start as u32,
            end: end as u32,
        })
    }
}

fn word_at(text: &[u8], pos: usize) -> &str {
    let end = scan::ident_end(text, pos);
    std::str::from_utf8(&text[pos..end]).unwrap_or("")
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x08 | 0x0c)
}

fn line_end(text: &[u8], pos: usize) -> usize {
    text[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| pos + i)
}

impl<'o> Pre<'o> {
    fn new(opts: &'o LexOptions) -> Pre<'o> {
        let mut defines = HashMap::new();
        for (k, v) in &opts.defines {
            defines.insert(k.clone(), Define { value: v.clone() });
        }
        Pre {
            opts,
            out: Lexed::default(),
            defines,
            substs: Vec::new(),
            conds: Vec::new(),
            include_stack: Vec::new(),
            expansions: 0,
        }
    }

    fn active(&self) -> bool {
        match self.conds.last() {
            Some(c) => c.taking,
            None => true,
        }
    }

    fn error(&mut self, span: Span, msg: impl Into<String>) {
        self.out.errors.push(Diagnostic::error(span, msg));
    }

    fn emit(&mut self, src: &Src, start: usize, tok: Tok, end: usize) {
        let sp = src.span(start, end);
        self.out.tokens.push((sp.lo(), tok, sp.hi()));
    }

    fn run_file(&mut self, id: FileId, dir: PathBuf) {
        let text: Rc<str> = Rc::from(self.out.sources.file(id).text.as_str());
        let base = self.conds.len();
        let src = Src {
            text: text.as_bytes(),
            file: id,
            dir: &dir,
            remap: None,
            depth: 0,
        };
        self.scan(&src);
        // Every #!ifdef opened in this file must be closed in it.
        while self.conds.len() > base {
            if let Some(c) = self.conds.pop() {
                self.error(c.span, "missing `#!endif` for this `#!ifdef`");
            }
        }
    }

    /// Scans one text to its end.
    fn scan(&mut self, src: &Src) {
        let t = src.text;
        // A UTF-8 byte order mark at the start of a file is not text.
        let mut i = if src.remap.is_none() && t.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        while i < t.len() {
            if !self.active() {
                i = self.skip_inactive(src, i);
                continue;
            }
            let b = t[i];
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | 0x08 | 0x0c => i += 1,
                b'\\' if t.get(i + 1) == Some(&b'\n') => i += 2,
                b'\\' if t.get(i + 1) == Some(&b'\r') && t.get(i + 2) == Some(&b'\n') => i += 3,
                b'#' if t.get(i + 1) == Some(&b'!') && src.remap.is_none() => {
                    i = self.directive(src, i);
                }
                b'#' => i = line_end(t, i),
                b'/' if t.get(i + 1) == Some(&b'/') => i = line_end(t, i),
                b'/' if t.get(i + 1) == Some(&b'*') => match self.block_comment(src, i) {
                    Some(e) => i = e,
                    None => return,
                },
                b'"' | b'\'' => {
                    let r = if b == b'"' {
                        scan::cut_dq_string(t, i)
                    } else {
                        scan::cut_sq_string(t, i)
                    };
                    match r {
                        Ok((s, end)) => {
                            let s = self.run_substs(s);
                            self.emit(src, i, Tok::Str(s), end);
                            i = end;
                        }
                        Err(e) => {
                            self.cut_error(src, e);
                            self.truncate(src);
                            return;
                        }
                    }
                }
                b'0'..=b'9' => match scan::cut_numeric(t, i) {
                    Ok((n, end)) => {
                        let tok = match n {
                            Numeric::Int(v) => Tok::Int(v),
                            Numeric::Ip(a) => Tok::Ip(a),
                            Numeric::IpNet(a, m) => Tok::IpNet(a, m),
                        };
                        self.emit(src, i, tok, end);
                        i = end;
                    }
                    Err(e)
                        if i > 0
                            && t[i - 1] == b'.'
                            && t[i..e.end].iter().all(|b| b.is_ascii_alphanumeric()) =>
                    {
                        // A host name label starting with a digit (`mcc001.3gppnetwork.org`).
                        let w = String::from_utf8_lossy(&t[i..e.end]).into_owned();
                        self.emit(src, i, Tok::Ident(w), e.end);
                        i = e.end;
                    }
                    Err(e) => {
                        // A stand-in token keeps the parser from reporting a second error.
                        let is_ip = t[e.start..e.end].contains(&b'.');
                        let tok = if is_ip {
                            Tok::Ip(Ipv4Addr::UNSPECIFIED.into())
                        } else {
                            Tok::Int(0)
                        };
                        self.emit(src, e.start, tok, e.end);
                        i = e.end.max(i + 1);
                        self.cut_error(src, e);
                    }
                },
                b'$' => match scan::cut_dollar(t, i) {
                    Ok((d, end)) => {
                        let tok = match d {
                            DollarTok::Retcode => Tok::KwValue(Keyword::Retcode),
                            DollarTok::Var(raw) => Tok::Dollar(self.run_substs(raw)),
                        };
                        self.emit(src, i, tok, end);
                        i = end;
                    }
                    Err(e) => {
                        self.emit(src, e.start, Tok::Dollar("$".into()), e.end);
                        i = e.end.max(i + 1);
                        self.cut_error(src, e);
                    }
                },
                b'@' => match scan::cut_select(t, i) {
                    Ok((s, end)) => {
                        self.emit(src, i, Tok::Select(s), end);
                        i = end;
                    }
                    Err(e) => {
                        self.emit(src, e.start, Tok::Select("@".into()), e.end);
                        i = e.end.max(i + 1);
                        self.cut_error(src, e);
                    }
                },
                b'[' => i = self.open_bracket(src, i),
                b':' if t.get(i + 1) == Some(&b':') => match scan::try_bare_ipv6(t, i) {
                    Some((a, end)) => i = self.emit_v6(src, i, a, end),
                    None => {
                        self.emit(src, i, Tok::Colon, i + 1);
                        i += 1;
                    }
                },
                _ if is_ident_start(b) => i = self.word(src, i),
                // SER's `%name` attribute syntax (Kamailio's ATTR_MARK); `%` followed by
                // anything else is the modulo operator.
                b'%' if t.get(i + 1).is_some_and(|&c| is_ident_start(c)) => {
                    match scan::cut_dollar(t, i) {
                        Ok((DollarTok::Var(raw), end)) => {
                            self.emit(src, i, Tok::Dollar(raw), end);
                            i = end;
                        }
                        _ => i = self.punct(src, i),
                    }
                }
                b'(' if t[i..].starts_with(b"(int)") => {
                    self.emit(src, i, Tok::IntCast, i + 5);
                    i += 5;
                }
                b'(' if t[i..].starts_with(b"(str)") => {
                    self.emit(src, i, Tok::StrCast, i + 5);
                    i += 5;
                }
                _ => i = self.punct(src, i),
            }
        }
    }

    fn emit_v6(&mut self, src: &Src, start: usize, a: std::net::Ipv6Addr, end: usize) -> usize {
        if let Some((bits, e2)) = scan::try_netmask(src.text, end, true) {
            self.emit(src, start, Tok::IpNet(a.into(), bits), e2);
            e2
        } else {
            self.emit(src, start, Tok::Ip(a.into()), end);
            end
        }
    }

    fn cut_error(&mut self, src: &Src, e: CutError) {
        let span = src.span(e.start, e.end);
        self.error(span, e.message);
    }

    fn truncate(&mut self, src: &Src) {
        let f = src.remap.map_or(src.file, |s| s.file);
        if self.out.cut_at_token.is_none() {
            self.out.cut_at_token = Some(self.out.tokens.len());
        }
        if !self.out.truncated.contains(&f) {
            self.out.truncated.push(f);
        }
    }

    fn block_comment(&mut self, src: &Src, start: usize) -> Option<usize> {
        let t = src.text;
        // Nested, as in cfg.lex (`/* a /* b */ c */` is one comment).
        let mut depth = 0usize;
        let mut i = start;
        while i < t.len() {
            if t[i] == b'/' && t.get(i + 1) == Some(&b'*') {
                depth += 1;
                i += 2;
            } else if t[i] == b'*' && t.get(i + 1) == Some(&b'/') {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            } else {
                i += 1;
            }
        }
        let span = src.span(start, start + 2);
        self.error(span, "unterminated comment: `/*` without `*/`");
        self.truncate(src);
        None
    }

    fn run_substs(&self, mut s: String) -> String {
        for r in &self.substs {
            if let Some(n) = r.apply(&s) {
                s = n;
            }
        }
        s
    }

    fn open_bracket(&mut self, src: &Src, i: usize) -> usize {
        let t = src.text;
        if let Some((a, end)) = scan::try_bracket_ipv6(t, i) {
            return self.emit_v6(src, i, a, end);
        }
        self.emit(src, i, Tok::LBracket, i + 1);
        // event_route[module:event-name]: the name is raw text up to `]`.
        let after_event_route = matches!(
            self.out.tokens.iter().rev().nth(1),
            Some((_, Tok::Kw(Kw::EventRoute), _))
        );
        if after_event_route {
            let le = line_end(t, i);
            if let Some(close) = t[i + 1..le]
                .iter()
                .position(|&b| b == b']')
                .map(|p| i + 1 + p)
            {
                let name = String::from_utf8_lossy(&t[i + 1..close]).trim().to_string();
                let name = name.trim_matches('"').to_string();
                let ns = i + 1 + (t[i + 1..close].len() - t[i + 1..close].trim_ascii_start().len());
                self.emit(src, ns, Tok::RouteName(name), close);
                self.emit(src, close, Tok::RBracket, close + 1);
                return close + 1;
            }
        }
        i + 1
    }

    fn punct(&mut self, src: &Src, i: usize) -> usize {
        let t = src.text;
        let two = |a: u8, b: u8| t[i] == a && t.get(i + 1) == Some(&b);
        let (tok, len) = if two(b'=', b'=') {
            (Tok::Eq, 2)
        } else if two(b'=', b'~') {
            (Tok::Match, 2)
        } else if two(b'!', b'=') {
            (Tok::Ne, 2)
        } else if two(b'!', b'~') {
            (Tok::NotMatch, 2)
        } else if two(b'<', b'=') {
            (Tok::Le, 2)
        } else if two(b'>', b'=') {
            (Tok::Ge, 2)
        } else if two(b'<', b'<') {
            (Tok::Shl, 2)
        } else if two(b'>', b'>') {
            (Tok::Shr, 2)
        } else if two(b'&', b'&') {
            (Tok::AndAnd, 2)
        } else if two(b'|', b'|') {
            (Tok::OrOr, 2)
        } else if two(b':', b'=') {
            (Tok::ColonAssign, 2)
        } else {
            let tok = match t[i] {
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b'{' => Tok::LBrace,
                b'}' => Tok::RBrace,
                b']' => Tok::RBracket,
                b';' => Tok::Semi,
                b',' => Tok::Comma,
                b':' => Tok::Colon,
                b'.' => Tok::Dot,
                b'=' => Tok::Assign,
                b'<' => Tok::Lt,
                b'>' => Tok::Gt,
                b'!' => Tok::Not,
                b'+' => Tok::Plus,
                b'-' => Tok::Minus,
                b'*' => Tok::Star,
                b'/' => Tok::Slash,
                b'%' => Tok::Percent,
                b'|' => Tok::Pipe,
                b'&' => Tok::Amp,
                b'^' => Tok::Caret,
                b'~' => Tok::Tilde,
                _ => {
                    let ch = std::str::from_utf8(&t[i..])
                        .ok()
                        .and_then(|s| s.chars().next())
                        .or_else(|| {
                            String::from_utf8_lossy(&t[i..(i + 4).min(t.len())])
                                .chars()
                                .next()
                        })
                        .unwrap_or('?');
                    let len = ch.len_utf8().max(1);
                    let span = src.span(i, i + len);
                    self.error(
                        span,
                        format!("unexpected character `{}`", ch.escape_debug()),
                    );
                    return i + len;
                }
            };
            (tok, 1)
        };
        self.emit(src, i, tok, i + len);
        i + len
    }

    /// An identifier-like word: keyword, operator word, define, include, or identifier.
    fn word(&mut self, src: &Src, i: usize) -> usize {
        let t = src.text;
        // Hex-looking words followed by ':' may be a bare IPv6 address (`fe80::1`).
        if t[i].is_ascii_hexdigit() {
            if let Some((a, end)) = scan::try_bare_ipv6(t, i) {
                return self.emit_v6(src, i, a, end);
            }
        }
        let end = scan::ident_end(t, i);
        let w = word_at(t, i).to_string();
        if w == "msg"
            && t[end..].starts_with(b":len")
            && !t.get(end + 4).is_some_and(|&c| is_ident_char(c))
        {
            self.emit(src, i, Tok::Subject(Keyword::MsgLen), end + 4);
            return end + 4;
        }
        // SER 0.8's `forward(uri:host, uri:port)`: one name, resolved by the function.
        for part in [&b":host"[..], b":port"] {
            if w == "uri"
                && t[end..].starts_with(part)
                && !t.get(end + 5).is_some_and(|&c| is_ident_char(c))
            {
                let name = format!("uri{}", String::from_utf8_lossy(part));
                self.emit(src, i, Tok::Ident(name), end + 5);
                return end + 5;
            }
        }
        if (w == "include_file" || w == "import_file") && src.remap.is_none() {
            return self.include_directive(src, i, end, w == "import_file");
        }
        // After a `.` a word is a name part (`session_timer.default`), never a keyword.
        let after_dot = i > 0 && t[i - 1] == b'.';
        let tok = if after_dot {
            if let Some(d) = self.defines.get(&w).cloned() {
                self.expand_define(src, i, end, &w, d);
                return end;
            }
            Tok::Ident(w)
        } else if let Some(k) = Kw::from_word(&w) {
            Tok::Kw(k)
        } else if let Some(k) = Keyword::from_word(&w) {
            if k.is_subject() {
                Tok::Subject(k)
            } else {
                Tok::KwValue(k)
            }
        } else {
            match w.as_str() {
                "and" => Tok::AndAnd,
                "or" => Tok::OrOr,
                "not" => Tok::Not,
                "mod" => Tok::Percent,
                "eq" => Tok::StrEq,
                "ne" => Tok::StrNe,
                "ieq" => Tok::IntEq,
                "ine" => Tok::IntNe,
                _ => {
                    if let Some(d) = self.defines.get(&w).cloned() {
                        self.expand_define(src, i, end, &w, d);
                        return end;
                    }
                    Tok::Ident(w)
                }
            }
        };
        self.emit(src, i, tok, end);
        end
    }

    fn expand_define(&mut self, src: &Src, i: usize, end: usize, name: &str, d: Define) {
        let Some(value) = d.value else { return };
        let span = src.span(i, end);
        if src.depth >= MAX_DEFINE_DEPTH {
            self.error(
                span,
                format!("define `{name}` expands into itself (recursion too deep)"),
            );
            return;
        }
        self.expansions += 1;
        if self.expansions > MAX_EXPANSIONS {
            if self.expansions == MAX_EXPANSIONS + 1 {
                self.error(
                    span,
                    format!("too many define expansions (more than {MAX_EXPANSIONS})"),
                );
            }
            return;
        }
        let sub = Src {
            text: value.as_bytes(),
            file: src.file,
            dir: src.dir,
            remap: Some(span),
            depth: src.depth + 1,
        };
        self.scan(&sub);
    }

    /// `#!...` at `i`. Returns the offset to continue from.
    fn directive(&mut self, src: &Src, i: usize) -> usize {
        let t = src.text;
        let ws = i + 2;
        let we = scan::ident_end(t, ws);
        let word = std::str::from_utf8(&t[ws..we]).unwrap_or("").to_string();
        let le = line_end(t, i);
        let dspan = src.span(i, we);
        match word.as_str() {
            "define" | "def" | "trydef" | "trydefine" | "redef" | "redefine" => {
                self.define_directive(src, i, we, &word)
            }
            "undef" => {
                let (name, after) = self.directive_name(src, we, &word);
                if let Some(n) = name {
                    self.defines.remove(&n);
                }
                self.expect_eol(src, after, &word)
            }
            "ifdef" | "ifndef" => {
                let (name, after) = self.directive_name(src, we, &word);
                let defined = name.as_ref().is_some_and(|n| self.defines.contains_key(n));
                let cond = if word == "ifdef" { defined } else { !defined };
                self.push_cond(cond, true, src.span(i, after));
                self.expect_eol(src, after, &word)
            }
            "else" => {
                self.else_directive(dspan);
                self.expect_eol(src, we, &word)
            }
            "endif" => {
                self.endif_directive(dspan);
                self.expect_eol(src, we, &word)
            }
            "include_file" | "import_file" => {
                self.include_directive(src, i, we, word == "import_file")
            }
            "subst" | "substdef" | "substdefs" => self.subst_directive(src, i, we, &word),
            "SER" | "KAMAILIO" | "OPENSER" | "ALL" | "MAXCOMPAT"
                if t[we..le].iter().all(|&b| b == b'\r') =>
            {
                self.out.dialect = Some(match word.as_str() {
                    "SER" => Dialect::Ser,
                    "KAMAILIO" => Dialect::Kamailio,
                    "OPENSER" => Dialect::OpenSer,
                    "ALL" => Dialect::All,
                    _ => Dialect::MaxCompat,
                });
                le
            }
            // Anything else after `#!` is a comment, as in SER (e.g. a `#!/usr/sbin/ser` line).
            _ => le,
        }
    }

    /// Reads `<blanks> NAME` after a directive word. Reports a missing name.
    fn directive_name(&mut self, src: &Src, from: usize, word: &str) -> (Option<String>, usize) {
        let t = src.text;
        let mut j = from;
        while j < t.len() && is_blank(t[j]) {
            j += 1;
        }
        if j < t.len() && is_ident_start(t[j]) && j > from {
            let e = scan::ident_end(t, j);
            if t.get(e) == Some(&b'-') {
                let span = src.span(j, e + 1);
                self.error(
                    span,
                    format!("`-` is not allowed in a define name (after `#!{word}`)"),
                );
            }
            return (Some(word_at(t, j).to_string()), e);
        }
        let span = src.span(from, from + 1);
        self.error(span, format!("missing name after `#!{word}`"));
        (None, j)
    }

    /// After a directive only blanks may follow on the line.
    fn expect_eol(&mut self, src: &Src, from: usize, word: &str) -> usize {
        let t = src.text;
        let le = line_end(t, from);
        let mut j = from;
        while j < le && is_blank(t[j]) {
            j += 1;
        }
        if j < le {
            let span = src.span(j, le);
            self.error(span, format!("unexpected text after `#!{word}`"));
        }
        le
    }

    fn push_cond(&mut self, cond: bool, parent_active: bool, span: Span) {
        let taking = parent_active && cond;
        self.conds.push(Cond {
            cond,
            parent_active,
            taking,
            seen_else: false,
            span,
        });
    }

    fn else_directive(&mut self, span: Span) {
        match self.conds.last_mut() {
            None => self.error(span, "`#!else` without `#!ifdef`"),
            Some(c) if c.seen_else => self.error(span, "second `#!else` for the same `#!ifdef`"),
            Some(c) => {
                c.seen_else = true;
                c.taking = c.parent_active && !c.cond;
            }
        }
    }

    fn endif_directive(&mut self, span: Span) {
        if self.conds.pop().is_none() {
            self.error(span, "`#!endif` without `#!ifdef`");
        }
    }

    /// Inside a false branch: look only for conditional directives.
    fn skip_inactive(&mut self, src: &Src, i: usize) -> usize {
        let t = src.text;
        if !(t[i] == b'#' && t.get(i + 1) == Some(&b'!')) {
            return i + 1;
        }
        let we = scan::ident_end(t, i + 2);
        let word = word_at(t, i + 2).to_string();
        let dspan = src.span(i, we);
        match word.as_str() {
            "ifdef" | "ifndef" => {
                let le = line_end(t, i);
                self.push_cond(false, false, src.span(i, le));
                le
            }
            "else" => {
                self.else_directive(dspan);
                self.expect_eol(src, we, &word)
            }
            "endif" => {
                self.endif_directive(dspan);
                self.expect_eol(src, we, &word)
            }
            _ => i + 2,
        }
    }

    fn define_directive(&mut self, src: &Src, i: usize, we: usize, word: &str) -> usize {
        let t = src.text;
        let (name, after) = self.directive_name(src, we, word);
        // Value: rest of the line, `\`+newline continues it.
        let mut value = Vec::new();
        let mut j = after;
        while j < t.len() && t[j] != b'\n' {
            if t[j] == b'\\' && t.get(j + 1) == Some(&b'\n') {
                j += 2;
                continue;
            }
            value.push(t[j]);
            j += 1;
        }
        let Some(name) = name else { return j };
        let v = String::from_utf8_lossy(&value).trim().to_string();
        let v = if v.is_empty() { None } else { Some(v) };
        let exists = self.defines.contains_key(&name);
        match word {
            "define" | "def" if exists => {
                let span = src.span(i, after);
                self.error(
                    span,
                    format!("`{name}` is already defined (use `#!redefine` to change it)"),
                );
            }
            "trydef" | "trydefine" if exists => {}
            _ => {
                self.defines.insert(name, Define { value: v });
            }
        }
        j
    }

    fn subst_directive(&mut self, src: &Src, i: usize, we: usize, word: &str) -> usize {
        let t = src.text;
        let mut j = we;
        while j < t.len() && is_blank(t[j]) {
            j += 1;
        }
        let r = match t.get(j) {
            Some(b'"') => scan::cut_dq_string(t, j),
            Some(b'\'') => scan::cut_sq_string(t, j),
            _ => {
                let span = src.span(i, we);
                self.error(
                    span,
                    format!("`#!{word}` needs a quoted \"/match/replacement/flags\" argument"),
                );
                return line_end(t, i);
            }
        };
        let (spec, end) = match r {
            Ok(x) => x,
            Err(e) => {
                self.cut_error(src, e);
                return line_end(t, i);
            }
        };
        let sspan = src.span(j, end);
        match SubstRule::parse(&spec) {
            Ok(rule) => {
                if word != "subst" {
                    let value = if word == "substdefs" {
                        format!(
                            "\"{}\"",
                            rule.raw_replacement
                                .replace('\\', "\\\\")
                                .replace('"', "\\\"")
                        )
                    } else {
                        rule.raw_replacement.clone()
                    };
                    let v = if value.is_empty() { None } else { Some(value) };
                    self.defines
                        .insert(rule.pattern.clone(), Define { value: v });
                }
                self.substs.push(rule);
            }
            Err(m) => self.error(sspan, m),
        }
        self.expect_eol(src, end, word)
    }

    /// `include_file "path"` / `import_file "path"` (with or without `#!`). `i` is the start
    /// of the directive, `we` the end of its word.
    fn include_directive(&mut self, src: &Src, i: usize, we: usize, import: bool) -> usize {
        let t = src.text;
        let what = if import {
            "import_file"
        } else {
            "include_file"
        };
        let mut j = we;
        while j < t.len() && is_blank(t[j]) {
            j += 1;
        }
        let (path, end) = match t.get(j) {
            Some(b'"') | Some(b'\'') => {
                let r = if t[j] == b'"' {
                    scan::cut_dq_string(t, j)
                } else {
                    scan::cut_sq_string(t, j)
                };
                match r {
                    Ok(x) => x,
                    Err(e) => {
                        self.cut_error(src, e);
                        return line_end(t, i);
                    }
                }
            }
            Some(&b) if !b.is_ascii_whitespace() && b != b';' => {
                let mut e = j;
                while e < t.len() && !t[e].is_ascii_whitespace() && t[e] != b';' {
                    e += 1;
                }
                (String::from_utf8_lossy(&t[j..e]).into_owned(), e)
            }
            _ => {
                let span = src.span(i, we);
                self.error(span, format!("`{what}` needs a file name"));
                return line_end(t, i);
            }
        };
        let path = self.run_substs(path);
        let span = src.span(i, end);
        self.include(src, &path, span, import);
        end
    }

    fn include(&mut self, src: &Src, rel: &str, span: Span, import: bool) {
        let what = if import {
            "import_file"
        } else {
            "include_file"
        };
        if self.include_stack.len() > MAX_INCLUDE_DEPTH {
            self.error(
                span,
                format!("includes nested too deeply (more than {MAX_INCLUDE_DEPTH})"),
            );
            return;
        }
        let p = Path::new(rel);
        let mut candidates = Vec::new();
        if p.is_absolute() {
            candidates.push(p.to_path_buf());
        } else {
            candidates.push(src.dir.join(p));
            candidates.extend(self.opts.include_dirs.iter().map(|d| d.join(p)));
            candidates.push(p.to_path_buf());
        }
        let Some(found) = candidates.iter().find(|c| c.is_file()).cloned() else {
            if !import {
                self.error(
                    span,
                    format!("cannot open included file `{rel}`: no such file"),
                );
            }
            return;
        };
        let canon = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
        if let Some(pos) = self.include_stack.iter().position(|c| *c == canon) {
            let chain: Vec<String> = self.include_stack[pos..]
                .iter()
                .chain(std::iter::once(&canon))
                .map(|c| {
                    c.file_name().map_or_else(
                        || c.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            self.out.errors.push(
                Diagnostic::error(
                    span,
                    format!("include cycle: `{rel}` is already being read"),
                )
                .with_note(format!("cycle: {}", chain.join(" -> "))),
            );
            return;
        }
        let text = match std::fs::read(&found) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                self.error(span, format!("cannot read {what} `{rel}`: {e}"));
                return;
            }
        };
        let id = self
            .out
            .sources
            .add(found.display().to_string(), text, Some(span));
        let dir = found.parent().map(Path::to_path_buf).unwrap_or_default();
        self.include_stack.push(canon);
        self.run_file(id, dir);
        self.include_stack.pop();
    }
}

/// Splits a `-A` command-line argument: `NAME` → `(NAME, None)`, `NAME=value` →
/// `(NAME, Some(value))`. The name must be an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn parse_define_arg(arg: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match arg.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (arg, None),
    };
    let b = name.as_bytes();
    if b.is_empty() || !is_ident_start(b[0]) || !b.iter().all(|&c| is_ident_char(c)) {
        return Err(format!("invalid define name `{name}` in `-A {arg}`"));
    }
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn define_args() {
        assert_eq!(parse_define_arg("WITH_X"), Ok(("WITH_X".into(), None)));
        assert_eq!(
            parse_define_arg("PORT=5070"),
            Ok(("PORT".into(), Some("5070".into())))
        );
        assert_eq!(
            parse_define_arg("DB=\"a=b\""),
            Ok(("DB".into(), Some("\"a=b\"".into())))
        );
        assert!(parse_define_arg("1X").is_err());
        assert!(parse_define_arg("A-B").is_err());
        assert!(parse_define_arg("=1").is_err());
    }
}
