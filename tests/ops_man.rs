//! The man pages cannot drift from the code: the OPTIONS section of
//! `man/ser.8` is generated from the flags table (`ser::flags`), and the core
//! parameter list and the MODULES section of `man/ser.cfg.5` from the parser's
//! parameter table and the module registry.  Each generated part sits between
//! `.\" BEGIN GENERATED <what>` and `.\" END GENERATED <what>` comment lines;
//! this test fails when a page differs from what the code says, and rewrites
//! the parts with `UPDATE_MAN=1 cargo test -p ser --test ops_man`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use ser_modules::iface::{Module, ParamDefault, RouteMask};
use ser_modules::registry;

const SER: &str = env!("CARGO_BIN_EXE_ser");

/// How to bring the pages up to date.
const UPDATE: &str = "UPDATE_MAN=1 cargo test -p ser --test ops_man";

fn man_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("man")
        .join(name)
}

/// Text safe to put on a roff text line: backslashes and minus signs
/// escaped, and no leading `.`/`'` that would read as a request.
fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with(['.', '\'']) {
        format!("\\&{t}")
    } else {
        t
    }
}

const ROUTE_NAMES: &[(RouteMask, &str)] = &[
    (RouteMask::REQUEST, "request"),
    (RouteMask::FAILURE, "failure"),
    (RouteMask::ONREPLY, "onreply"),
    (RouteMask::BRANCH, "branch"),
    (RouteMask::ONSEND, "onsend"),
    (RouteMask::EVENT, "event"),
    (RouteMask::ERROR, "error"),
];

fn routes_text(mask: RouteMask) -> String {
    if mask.allows(RouteMask::ANY) {
        return "any route".into();
    }
    let names: Vec<&str> = ROUTE_NAMES
        .iter()
        .filter(|(m, _)| mask.allows(*m))
        .map(|(_, n)| *n)
        .collect();
    format!("{} routes", names.join(", "))
}

fn arity_text(min: usize, max: usize) -> String {
    match (min, max) {
        (0, 0) => "no arguments".into(),
        (1, 1) => "1 argument".into(),
        (a, b) if a == b => format!("{a} arguments"),
        (a, b) => format!("{a} to {b} arguments"),
    }
}

fn module_section(m: &dyn Module) -> String {
    let mut out = String::new();
    let _ = writeln!(out, ".SS {}", roff(m.name()));
    if m.functions().is_empty() && m.params().is_empty() {
        out.push_str("No script functions and no parameters.\n");
        return out;
    }
    if m.functions().is_empty() {
        out.push_str("No script functions.\n");
    } else {
        out.push_str("Functions:\n");
        for f in m.functions() {
            let _ = writeln!(
                out,
                ".TP\n.B {}()\n{}; {}.",
                roff(f.name),
                arity_text(f.min_args, f.max_args),
                routes_text(f.routes)
            );
        }
    }
    if !m.params().is_empty() {
        out.push_str(".PP\nParameters (modparam):\n");
        for p in m.params() {
            let kind = match p.default {
                ParamDefault::Int(i) => format!("integer, default {i}"),
                ParamDefault::Str("") => "string, default empty".into(),
                ParamDefault::Str(s) => format!("string, default \"{}\"", roff(s)),
            };
            let multi = if p.multi { "; may be repeated" } else { "" };
            let _ = writeln!(out, ".TP\n.B {}\n{kind}{multi}.", roff(p.name));
        }
    }
    out
}

/// The MODULES section of ser.cfg.5, from the registry.
fn modules_text() -> String {
    let mut out = String::from(
        ".SH MODULES\n\
         These modules are built into this binary; \\fBloadmodule\\fR selects\n\
         them by name.\n\
         A function may be called only from the route types listed for it.\n",
    );
    for m in registry::builtin() {
        out.push_str(&module_section(*m));
    }
    out.push_str(
        ".SS \"Modules not built in yet\"\n\
         Loading one of these, or calling one of their functions, makes\n\
         \\fBser \\-c\\fR refuse the configuration with\n\
         \\fInot available in this build\\fR:\n",
    );
    let names: Vec<String> = registry::NOT_YET
        .iter()
        .filter(|(m, _)| registry::find_builtin(m).is_none())
        .map(|(m, _)| roff(m))
        .collect();
    out.push_str(&names.join(",\n"));
    out.push_str(".\n");
    out
}

/// The list of core parameter names of ser.cfg.5, from the parser's table.
fn core_params_text() -> String {
    let mut out = String::from(
        "The global parameters this server knows (see GLOBAL PARAMETERS for\n\
         the common ones):\n",
    );
    let names: Vec<String> = ser_parser::core_params::CORE
        .iter()
        .map(|n| format!("\\fB{}\\fR", roff(n)))
        .collect();
    out.push_str(&names.join(",\n"));
    out.push_str(".\n");
    out
}

/// Replaces the generated part `what` of `page` with `body`.
fn splice(page: &str, what: &str, body: &str) -> String {
    let begin = format!(".\\\" BEGIN GENERATED {what}");
    let end = format!(".\\\" END GENERATED {what}\n");
    let b = page
        .find(&begin)
        .unwrap_or_else(|| panic!("no `{begin}` line"));
    let b_end = b + page[b..].find('\n').expect("marker line ends") + 1;
    let e = page[b_end..]
        .find(&end)
        .map(|i| b_end + i)
        .unwrap_or_else(|| panic!("no `{end}` line"));
    format!("{}{body}{}", &page[..b_end], &page[e..])
}

/// Compares a page with its generated parts; rewrites it with UPDATE_MAN=1.
fn check_page(name: &str, parts: &[(&str, String)]) {
    let path = man_path(name);
    let current = std::fs::read_to_string(&path).unwrap();
    let mut want = current.clone();
    for (what, body) in parts {
        want = splice(&want, what, body);
    }
    if want == current {
        return;
    }
    if std::env::var_os("UPDATE_MAN").is_some() {
        std::fs::write(&path, want).unwrap();
        return;
    }
    let line = current
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .map_or(current.lines().count().min(want.lines().count()), |i| i);
    panic!(
        "man/{name} is out of date from line {} (generated: {:?}); run {UPDATE}",
        line + 1,
        want.lines().nth(line)
    );
}

#[test]
fn ser_8_options_follow_the_flags_table() {
    check_page("ser.8", &[("OPTIONS", ser::flags::man_options())]);
}

#[test]
fn ser_cfg_5_follows_the_registry() {
    check_page(
        "ser.cfg.5",
        &[
            ("CORE PARAMETERS", core_params_text()),
            ("MODULES", modules_text()),
        ],
    );
}

/// Independent of the generator: every flag `ser -h` prints is in ser.8.
#[test]
fn ser_8_lists_every_flag_of_ser_h() {
    let out = Command::new(SER).arg("-h").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let page = std::fs::read_to_string(man_path("ser.8")).unwrap();
    let mut n = 0;
    for line in help.lines() {
        let Some(flag) = line.strip_prefix("    -").and_then(|r| r.chars().next()) else {
            continue;
        };
        n += 1;
        assert!(
            page.contains(&format!(".B \\-{flag}\n")) || page.contains(&format!(".BI \\-{flag} ")),
            "ser.8 does not document -{flag}"
        );
    }
    assert!(n >= 25, "only {n} flags found in ser -h:\n{help}");
}

/// Independent of the generator: every exported function and parameter of
/// every built-in module is in ser.cfg.5.
#[test]
fn ser_cfg_5_lists_every_module_function() {
    let page = std::fs::read_to_string(man_path("ser.cfg.5")).unwrap();
    for m in registry::builtin() {
        assert!(
            page.contains(&format!(".SS {}\n", roff(m.name()))),
            "module {} is not in man/ser.cfg.5: run {UPDATE}",
            m.name()
        );
        for f in m.functions() {
            assert!(
                page.contains(&format!(".B {}()\n", roff(f.name))),
                "{}: function {} is not in man/ser.cfg.5: run {UPDATE}",
                m.name(),
                f.name
            );
        }
        for p in m.params() {
            assert!(
                page.contains(&format!(".B {}\n", roff(p.name))),
                "{}: parameter {} is not in man/ser.cfg.5: run {UPDATE}",
                m.name(),
                p.name
            );
        }
    }
}

#[test]
fn roff_escapes() {
    assert_eq!(roff("a-b\\c"), "a\\-b\\ec");
    assert_eq!(roff(".x"), "\\&.x");
    assert_eq!(arity_text(0, 2), "0 to 2 arguments");
    assert_eq!(routes_text(RouteMask::ANY), "any route");
    assert_eq!(
        routes_text(RouteMask::REQUEST.or(RouteMask::FAILURE)),
        "request, failure routes"
    );
}
