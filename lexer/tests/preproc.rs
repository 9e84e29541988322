//! Preprocessor and lexer behaviour: defines (`#!define`, `-A`), conditionals, substs,
//! includes (relative paths, cycles, optional imports), dialect markers, token cutting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ser_lexer::{lex_file, lex_str, Dialect, Keyword, Kw, LexOptions, Lexed, Tok};

fn toks(l: &Lexed) -> Vec<Tok> {
    l.tokens.iter().map(|t| t.1.clone()).collect()
}

fn lex(text: &str) -> Lexed {
    lex_str("t.cfg", text, &LexOptions::default())
}

fn lex_with(text: &str, defines: &[(&str, Option<&str>)]) -> Lexed {
    let opts = LexOptions {
        defines: defines
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect(),
        ..Default::default()
    };
    lex_str("t.cfg", text, &opts)
}

fn ident(s: &str) -> Tok {
    Tok::Ident(s.into())
}

fn messages(l: &Lexed) -> Vec<String> {
    l.errors
        .iter()
        .map(|d| {
            let (_, line, col) = l.sources.locate(d.span);
            format!("{line}:{col}: {}", d.message)
        })
        .collect()
}

/// A fresh directory under the system temp dir (removed at the end of each test).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ser-lexer-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NESTED: &str = "\
#!ifdef A
a
#!ifdef B
ab
#!else
a_not_b
#!endif
#!else
not_a
#!ifndef B
not_a_not_b
#!endif
#!endif
end
";

#[test]
fn nested_conditionals() {
    type Case<'a> = (&'a [(&'a str, Option<&'a str>)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (&[], &["not_a", "not_a_not_b", "end"]),
        (&[("A", None)], &["a", "a_not_b", "end"]),
        (&[("A", None), ("B", None)], &["a", "ab", "end"]),
        (&[("B", None)], &["not_a", "end"]),
    ];
    for (defs, want) in cases {
        let l = lex_with(NESTED, defs);
        assert!(l.errors.is_empty(), "{:?}", messages(&l));
        let want: Vec<Tok> = want.iter().map(|w| ident(w)).collect();
        assert_eq!(toks(&l), want, "defines {defs:?}");
    }
}

#[test]
fn inactive_text_is_not_tokenised() {
    let l = lex(
        "#!ifdef SQL\n  ALTER TABLE x ADD y VARCHAR(64) DEFAULT '';\n \"unbalanced\n#!endif\nok\n",
    );
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(toks(&l), [ident("ok")]);
}

#[test]
fn unbalanced_conditionals_are_errors_with_locations() {
    assert_eq!(
        messages(&lex("x\n#!endif\n")),
        ["2:1: `#!endif` without `#!ifdef`"]
    );
    assert_eq!(
        messages(&lex("#!else\n")),
        ["1:1: `#!else` without `#!ifdef`"]
    );
    assert_eq!(
        messages(&lex("#!ifdef A\n#!ifdef B\n#!endif\n")),
        ["1:1: missing `#!endif` for this `#!ifdef`"]
    );
    assert_eq!(
        messages(&lex("#!ifdef A\n#!else\n#!else\n#!endif\n")),
        ["3:1: second `#!else` for the same `#!ifdef`"]
    );
}

#[test]
fn defines_replace_identifiers_with_their_value_tokens() {
    let l = lex("#!define DBURL \"mysql://u@h/db\"\n#!define TWO 1 + 1\n#!define EMPTY\nx(DBURL, TWO) EMPTY y\n");
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [
            ident("x"),
            Tok::LParen,
            Tok::Str("mysql://u@h/db".into()),
            Tok::Comma,
            Tok::Int(1),
            Tok::Plus,
            Tok::Int(1),
            Tok::RParen,
            ident("y"),
        ]
    );
    // The value's tokens carry the span of the use site.
    let (_, line, col) = l
        .sources
        .locate(ser_lexer::Span::new(l.tokens[2].0, l.tokens[2].2));
    assert_eq!((line, col), (4, 3));
}

#[test]
fn command_line_defines_with_and_without_values() {
    let text = "#!ifdef WITH_X\nport=PORT\n#!endif\nlisten=ADDR\n";
    let l = lex_with(
        text,
        &[
            ("WITH_X", None),
            ("PORT", Some("5070")),
            ("ADDR", Some("udp:127.0.0.1")),
        ],
    );
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [
            ident("port"),
            Tok::Assign,
            Tok::Int(5070),
            ident("listen"),
            Tok::Assign,
            ident("udp"),
            Tok::Colon,
            Tok::Ip("127.0.0.1".parse().unwrap()),
        ]
    );
}

#[test]
fn define_variants_and_undef() {
    let l =
        lex("#!define A 1\n#!trydef A 2\nA\n#!redefine A 3\nA\n#!undef A\nA\n#!define A 4\nA\n");
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [Tok::Int(1), Tok::Int(3), ident("A"), Tok::Int(4)]
    );
    assert_eq!(
        messages(&lex("#!define A 1\n#!define A 2\n")),
        ["2:1: `A` is already defined (use `#!redefine` to change it)"]
    );
    assert_eq!(
        messages(&lex("#!define A B\n#!define B A\nA\n")),
        ["3:1: define `A` expands into itself (recursion too deep)"]
    );
    // A continued define value.
    let l = lex("#!define L 1 \\\n + 2\nL\n");
    assert_eq!(toks(&l), [Tok::Int(1), Tok::Plus, Tok::Int(2)]);
}

#[test]
fn substdef_defines_and_substitutes_in_strings() {
    let l = lex("#!substdef \"/MYIP/10.1.2.3/\"\nlisten=MYIP\nx(\"sip:MYIP:5060\")\n");
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [
            ident("listen"),
            Tok::Assign,
            Tok::Ip("10.1.2.3".parse().unwrap()),
            ident("x"),
            Tok::LParen,
            Tok::Str("sip:10.1.2.3:5060".into()),
            Tok::RParen,
        ]
    );
    // substdefs quotes the defined value; subst only rewrites strings.
    let l = lex("#!substdefs \"/NAME/a b/\"\n#!subst \"/foo/bar/g\"\nNAME foo \"foo foo\"\n");
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [
            Tok::Str("a b".into()),
            ident("foo"),
            Tok::Str("bar bar".into())
        ]
    );
    assert_eq!(
        messages(&lex("#!subst \"/a/b\"\n")),
        ["1:9: bad subst expression `/a/b`: expected /match/replacement/flags"]
    );
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let d = TempDir::new();
    let main = d.write("etc/main.cfg", "a\ninclude_file \"sub/one.cfg\"\nd\n");
    d.write("etc/sub/one.cfg", "b\n#!include_file \"two.cfg\"\n");
    d.write("etc/sub/two.cfg", "c\nimport_file \"missing.cfg\"\n");
    let l = lex_file(&main, &LexOptions::default());
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(toks(&l), [ident("a"), ident("b"), ident("c"), ident("d")]);
    assert_eq!(l.sources.len(), 3);
    let two = &l.sources.file(ser_lexer::FileId(2));
    assert!(two.name.ends_with("sub/two.cfg"), "{}", two.name);
    assert!(two.included_from.is_some());
}

#[test]
fn include_dirs_are_searched_after_the_including_directory() {
    let d = TempDir::new();
    let main = d.write("a/main.cfg", "include_file \"lib.cfg\"\n");
    d.write("lib/lib.cfg", "x\n");
    let opts = LexOptions {
        include_dirs: vec![d.0.join("lib")],
        ..Default::default()
    };
    let l = lex_file(&main, &opts);
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(toks(&l), [ident("x")]);
}

#[test]
fn include_cycles_and_missing_files_are_errors() {
    let d = TempDir::new();
    let main = d.write("main.cfg", "include_file \"a.cfg\"\n");
    d.write("a.cfg", "a\ninclude_file \"b.cfg\"\n");
    d.write("b.cfg", "b\ninclude_file \"a.cfg\"\n");
    let l = lex_file(&main, &LexOptions::default());
    assert_eq!(l.errors.len(), 1, "{:?}", messages(&l));
    assert_eq!(
        l.errors[0].message,
        "include cycle: `a.cfg` is already being read"
    );
    assert_eq!(l.errors[0].notes, ["cycle: a.cfg -> b.cfg -> a.cfg"]);
    assert_eq!(toks(&l), [ident("a"), ident("b")]);

    let self_inc = d.write("self.cfg", "include_file \"self.cfg\"\n");
    let l = lex_file(&self_inc, &LexOptions::default());
    assert_eq!(l.errors.len(), 1);

    let missing = d.write(
        "m.cfg",
        "include_file \"nope.cfg\"\nimport_file \"nope.cfg\"\n",
    );
    let l = lex_file(&missing, &LexOptions::default());
    assert_eq!(
        messages(&l),
        ["1:1: cannot open included file `nope.cfg`: no such file"]
    );

    let l = lex_file(Path::new("/nonexistent/ser.cfg"), &LexOptions::default());
    assert_eq!(l.errors.len(), 1);
    assert!(l.errors[0].message.starts_with("cannot read config file"));
}

#[test]
fn dialect_markers() {
    assert_eq!(lex("#!KAMAILIO\nx\n").dialect, Some(Dialect::Kamailio));
    assert_eq!(lex("#!SER\n").dialect, Some(Dialect::Ser));
    assert_eq!(lex("#!OPENSER\n").dialect, Some(Dialect::OpenSer));
    assert_eq!(lex("#!ALL\n").dialect, Some(Dialect::All));
    assert_eq!(lex("#!MAXCOMPAT").dialect, Some(Dialect::MaxCompat));
    // Followed by other text it is just a comment.
    assert_eq!(lex("#!KAMAILIO rocks\n").dialect, None);
    assert_eq!(lex("x\n").dialect, None);
}

#[test]
fn comments() {
    let l = lex("a # c\n/* x /* nested */ y */ b // c\n#!/usr/sbin/ser\n## c\nc\n");
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(toks(&l), [ident("a"), ident("b"), ident("c")]);
    assert_eq!(
        messages(&lex("a /* open\n")),
        ["1:3: unterminated comment: `/*` without `*/`"]
    );
}

#[test]
fn token_forms() {
    let l = lex(
        "msg:len >= 4096 $? $rc $avp(i:80) $(avp(x)[0]) @hf_value[\"x\"] [::1]:5060 fe80::1 \
         10.0.0.0/8 event_route[tm:local-request] \"a\" \"b\" 'c\\n' 0x1F -3 a.b && and ! not =~ !~ :=",
    );
    assert!(l.errors.is_empty(), "{:?}", messages(&l));
    assert_eq!(
        toks(&l),
        [
            Tok::Subject(Keyword::MsgLen),
            Tok::Ge,
            Tok::Int(4096),
            Tok::KwValue(Keyword::Retcode),
            Tok::KwValue(Keyword::Retcode),
            Tok::Dollar("$avp(i:80)".into()),
            Tok::Dollar("$(avp(x)[0])".into()),
            Tok::Select("@hf_value[\"x\"]".into()),
            Tok::Ip("::1".parse().unwrap()),
            Tok::Colon,
            Tok::Int(5060),
            Tok::Ip("fe80::1".parse().unwrap()),
            Tok::IpNet("10.0.0.0".parse().unwrap(), 8),
            Tok::Kw(Kw::EventRoute),
            Tok::LBracket,
            Tok::RouteName("tm:local-request".into()),
            Tok::RBracket,
            Tok::Str("ab".into()),
            Tok::Str("c\\n".into()),
            Tok::Int(31),
            Tok::Minus,
            Tok::Int(3),
            ident("a"),
            Tok::Dot,
            ident("b"),
            Tok::AndAnd,
            Tok::AndAnd,
            Tok::Not,
            Tok::Not,
            Tok::Match,
            Tok::NotMatch,
            Tok::ColonAssign,
        ]
    );
}

#[test]
fn lexer_errors_do_not_stop_the_scan() {
    let l = lex("a § b 12ab c $ d\n");
    assert_eq!(
        messages(&l),
        [
            "1:3: unexpected character `§`",
            "1:7: invalid number `12ab`",
            "1:14: `$` must be followed by a variable name",
        ]
    );
    assert!(toks(&l).contains(&ident("d")));
    let l = lex("x(\"abc);\ny\n");
    assert_eq!(messages(&l), ["1:3: unterminated string"]);
    assert_eq!(l.truncated.len(), 1);
}
