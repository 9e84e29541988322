//! The broken-config corpus in `tests/cfg/` (workspace root): every `X.cfg` must fail to
//! parse with exactly the `file:line:column: message` lines of `X.err` (errors, then
//! warnings; paths relative to the corpus directory). `*.inc` files are include targets.
//!
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p ser-parser --test broken`, then review
//! the diff by eye.

use std::path::{Path, PathBuf};

use ser_parser::{parse_file_report, ParseOptions};

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cfg");
    assert!(
        dir.is_dir(),
        "broken-config corpus not found at {}",
        dir.display()
    );
    dir
}

/// The headlines of all diagnostics, with the corpus directory stripped from file names.
fn headlines(path: &Path) -> (usize, String) {
    let report = parse_file_report(path, &ParseOptions::default());
    let prefix = format!("{}/", path.parent().unwrap().display());
    let mut out = String::new();
    for d in report.errors.iter().chain(&report.warnings) {
        out.push_str(&d.headline(&report.sources).replace(&prefix, ""));
        out.push('\n');
    }
    (report.errors.len(), out)
}

#[test]
fn broken_configs_report_exactly_the_expected_errors() {
    let dir = corpus_dir();
    let mut cfgs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    cfgs.sort();
    assert!(cfgs.len() >= 25, "corpus has only {} configs", cfgs.len());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for cfg in &cfgs {
        let (n_errors, got) = headlines(cfg);
        let err_file = cfg.with_extension("err");
        if update {
            std::fs::write(&err_file, &got).unwrap();
            continue;
        }
        if n_errors == 0 {
            failures.push(format!("{}: parsed without errors", cfg.display()));
            continue;
        }
        match std::fs::read_to_string(&err_file) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                cfg.file_name().unwrap().to_string_lossy()
            )),
            Err(e) => failures.push(format!("{}: {e}", err_file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rendering_shows_the_line_and_a_caret() {
    let path = corpus_dir().join("missing_semicolon.cfg");
    let report = parse_file_report(&path, &ParseOptions::default());
    let text = report.render();
    assert!(text.contains("missing `;`"), "{text}");
    assert!(text.contains(" 2 | \tt_check_trans()\n"), "{text}");
    assert!(text.contains("   | \t               ^\n"), "{text}");
}

#[test]
fn include_errors_name_the_included_file_and_where_it_was_included() {
    let path = corpus_dir().join("include_with_error.cfg");
    let report = parse_file_report(&path, &ParseOptions::default());
    let text = report.render();
    assert!(text.contains("include_with_error.inc:2:"), "{text}");
    assert!(text.contains("note: included from"), "{text}");
}
