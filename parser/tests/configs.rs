//! Acceptance: the historical configs in `shared/configs` parse, under every combination of
//! their `#!ifdef` switches, and their AST dumps match the golden files.
//!
//! Regenerate the golden dumps with `UPDATE_GOLDEN=1 cargo test -p ser-parser --test configs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ser_parser::{ast::Config, parse_file_report, ParseOptions};

fn shared_configs() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/configs");
    assert!(
        dir.join("kamailio-3.1.cfg").is_file(),
        "shared config directory not found at {} (expected the read-only shared/ next to the work tree)",
        dir.display()
    );
    dir
}

/// Names used in `#!ifdef` / `#!ifndef` lines.
fn switches(text: &str) -> Vec<String> {
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start();
        for d in ["#!ifdef", "#!ifndef"] {
            if let Some(rest) = l.strip_prefix(d) {
                if let Some(name) = rest.split_whitespace().next() {
                    set.insert(name.to_string());
                }
            }
        }
    }
    set.into_iter().collect()
}

/// All subsets when there are few switches; else each alone, all pairs, and all together.
fn combinations(names: &[String]) -> Vec<Vec<String>> {
    let n = names.len();
    if n <= 10 {
        return (0..1u32 << n)
            .map(|mask| {
                (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| names[i].clone())
                    .collect()
            })
            .collect();
    }
    let mut out = vec![Vec::new(), names.to_vec()];
    for i in 0..n {
        out.push(vec![names[i].clone()]);
        for j in i + 1..n {
            out.push(vec![names[i].clone(), names[j].clone()]);
        }
    }
    out
}

fn parse_ok(path: &Path, defines: &[String]) -> ser_parser::Report {
    let opts = ParseOptions {
        defines: defines.iter().map(|d| (d.clone(), None)).collect(),
        ..Default::default()
    };
    let report = parse_file_report(path, &opts);
    assert!(
        report.errors.is_empty(),
        "{} with defines {:?} failed:\n{}",
        path.display(),
        defines,
        report.render()
    );
    report
}

fn check_all_combinations(file: &str) -> usize {
    let path = shared_configs().join(file);
    let text = std::fs::read_to_string(&path).expect("readable config");
    let names = switches(&text);
    let combos = combinations(&names);
    for c in &combos {
        parse_ok(&path, c);
    }
    combos.len()
}

#[test]
fn ser_0_8_8_parses() {
    assert_eq!(check_all_combinations("ser-0.8.8.cfg"), 1);
}

#[test]
fn ser_oob_3_0_parses() {
    assert_eq!(check_all_combinations("ser-oob-3.0.cfg"), 1);
}

#[test]
fn kamailio_3_1_parses_with_every_switch_combination() {
    let text = std::fs::read_to_string(shared_configs().join("kamailio-3.1.cfg")).unwrap();
    let names = switches(&text);
    assert_eq!(
        names,
        [
            "ACCDB_COMMENT",
            "WITH_ACCDB",
            "WITH_AUTH",
            "WITH_DEBUG",
            "WITH_IPAUTH",
            "WITH_MYSQL",
            "WITH_NAT",
            "WITH_PRESENCE",
            "WITH_PSTN",
            "WITH_USRLOCDB"
        ]
    );
    // ACCDB_COMMENT wraps SQL text: defining it must fail, everything else must parse.
    let path = shared_configs().join("kamailio-3.1.cfg");
    let usable: Vec<String> = names
        .iter()
        .filter(|n| *n != "ACCDB_COMMENT")
        .cloned()
        .collect();
    let combos = combinations(&usable);
    assert_eq!(combos.len(), 512);
    for c in &combos {
        parse_ok(&path, c);
    }
    let report = parse_file_report(
        &path,
        &ParseOptions {
            defines: vec![("ACCDB_COMMENT".into(), None)],
            ..Default::default()
        },
    );
    assert!(
        !report.errors.is_empty(),
        "the SQL inside #!ifdef ACCDB_COMMENT is not a config"
    );
}

#[test]
fn kamailio_3_1_uses_dburl_define() {
    let path = shared_configs().join("kamailio-3.1.cfg");
    let report = parse_ok(&path, &["WITH_MYSQL".into(), "WITH_ACCDB".into()]);
    let dump = format!("{:?}", report.config);
    assert!(dump.contains("mysql://openser:openserrw@localhost/openser"));
    assert_eq!(report.dialect, Some(ser_parser::Dialect::Kamailio));
}

#[test]
fn legacy_2001_table() {
    let path = shared_configs().join("sip_router-2001.cfg");
    let report = parse_ok(&path, &[]);
    let Some(Config::LegacyTable(rules)) = report.config else {
        panic!("not a legacy table")
    };
    let got: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|r| (r.method_re.as_str(), r.uri_re.as_str(), r.dest.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("^R.*", "^sip:.*@dorian.*", "ekina.fokus.gmd.de"),
            ("^INVITE", ".*", "ape"),
            (".", ".", "192.168.46.55"),
            (".*", ".*andrei", "helios.fokus.gmd.de"),
        ]
    );
    let (_, line, col) = report.sources.locate(rules[3].span);
    assert_eq!((line, col), (10, 1));
}

fn golden(file: &str, defines: &[&str], golden_name: &str) {
    let path = shared_configs().join(file);
    let defines: Vec<String> = defines.iter().map(|s| s.to_string()).collect();
    let report = parse_ok(&path, &defines);
    let dump = ser_parser::dump::dump(report.config.as_ref().unwrap(), &report.sources);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(golden_name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &dump).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", golden.display()));
    if want != dump {
        let line = want
            .lines()
            .zip(dump.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs from the golden dump at line {}:\n  golden: {:?}\n  got:    {:?}\n(run with UPDATE_GOLDEN=1 after checking)",
            golden.display(),
            line + 1,
            want.lines().nth(line),
            dump.lines().nth(line)
        );
    }
}

#[test]
fn golden_ser_0_8_8() {
    golden("ser-0.8.8.cfg", &[], "ser-0.8.8.ast");
}

#[test]
fn golden_ser_oob_3_0() {
    golden("ser-oob-3.0.cfg", &[], "ser-oob-3.0.ast");
}

#[test]
fn golden_kamailio_3_1() {
    golden("kamailio-3.1.cfg", &[], "kamailio-3.1.ast");
}

#[test]
fn golden_kamailio_3_1_all_features() {
    golden(
        "kamailio-3.1.cfg",
        &[
            "WITH_ACCDB",
            "WITH_AUTH",
            "WITH_DEBUG",
            "WITH_IPAUTH",
            "WITH_MYSQL",
            "WITH_NAT",
            "WITH_PRESENCE",
            "WITH_PSTN",
            "WITH_USRLOCDB",
        ],
        "kamailio-3.1-all.ast",
    );
}

#[test]
fn configs_with_crlf_line_ends_parse_the_same() {
    for file in ["ser-0.8.8.cfg", "ser-oob-3.0.cfg", "kamailio-3.1.cfg"] {
        let path = shared_configs().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lf = ser_parser::parse_str(file, &text, &ParseOptions::default()).unwrap();
        let crlf =
            ser_parser::parse_str(file, &text.replace('\n', "\r\n"), &ParseOptions::default())
                .unwrap_or_else(|e| panic!("{file} with CRLF: {e:?}"));
        assert_eq!(lf.config.items().len(), crlf.config.items().len(), "{file}");
    }
}

/// Kamailio 5.6's shipped example configs (when the package is installed): all parse,
/// except those that are broken for Kamailio too or are not scripts.
#[test]
fn installed_kamailio_examples_parse() {
    const KNOWN_BAD: &[&str] = &[
        "exec/exec_s5.cfg",         // missing `;` before `else` (Kamailio rejects it too)
        "exec/exec_s5b.cfg",        // same
        "kamailio/exec_s5.cfg",     // same
        "ims/icscf/kamailio.cfg",   // includes icscf.cfg, shipped only as .cfg.sample
        "ims/scscf/kamailio.cfg",   // includes scscf.cfg, shipped only as .cfg.sample
        "ims/pcscf/tls.cfg.sample", // the tls module's ini-style file, not a script
        "kemi/kamailio-basic-kemi.cfg", // includes a file under /usr/local that is not shipped
        "pkg/sip-router-basic.cfg", // one `#!endif` too many
        "pkg/sip-router-oob.cfg",   // one `#!endif` missing
    ];
    let root = Path::new("/usr/share/doc/kamailio/examples");
    if !root.is_dir() {
        eprintln!("skipped: {} not installed", root.display());
        return;
    }
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(".cfg")
                || p.to_string_lossy().ends_with(".cfg.sample")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut failures = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let report = parse_file_report(f, &ParseOptions::default());
        let bad = KNOWN_BAD.contains(&rel.as_str());
        if report.errors.is_empty() == bad {
            failures.push(format!(
                "{rel}: expected {}:\n{}",
                if bad { "errors" } else { "success" },
                report.render()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    let etc = Path::new("/etc/kamailio/kamailio.cfg");
    if etc.is_file() {
        let report = parse_file_report(etc, &ParseOptions::default());
        assert!(report.errors.is_empty(), "{}", report.render());
    }
}
