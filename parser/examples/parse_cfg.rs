//! Parses a config and prints its diagnostics, or its AST dump with `--dump`, and the time
//! one parse takes (averaged over `--repeat N` runs).
//!
//! `cargo run --release -p ser-parser --example parse_cfg -- FILE [--dump] [--repeat N] [-A NAME[=VALUE]]...`

use std::path::PathBuf;
use std::time::Instant;

use ser_parser::{parse_file_report, ParseOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut dump = false;
    let mut repeat = 1u32;
    let mut opts = ParseOptions::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dump" => dump = true,
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(1).max(1),
            "-A" => {
                let d = args.next().unwrap_or_default();
                let (k, v) = match d.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (d, None),
                };
                opts.defines.push((k, v));
            }
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: parse_cfg FILE [--dump] [--repeat N] [-A NAME[=VALUE]]...");
        std::process::exit(2);
    };
    let start = Instant::now();
    let mut report = parse_file_report(&file, &opts);
    for _ in 1..repeat {
        report = parse_file_report(&file, &opts);
    }
    let per = start.elapsed() / repeat;
    eprint!("{}", report.render());
    if dump {
        if let Some(c) = &report.config {
            print!("{}", ser_parser::dump::dump(c, &report.sources));
        }
    }
    eprintln!(
        "{}: {} errors, {} warnings, {:?} per parse ({} runs)",
        file.display(),
        report.errors.len(),
        report.warnings.len(),
        per,
        repeat
    );
    std::process::exit(i32::from(!report.errors.is_empty()));
}
