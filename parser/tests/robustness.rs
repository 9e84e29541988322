//! Bad input never panics or hangs: every prefix-truncation and a bounded set of seeded
//! byte mutations of the shared configs go through the whole pipeline.

use std::path::Path;
use std::time::{Duration, Instant};

use ser_parser::{parse_str_report, ParseOptions};

fn configs() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/configs");
    [
        "ser-0.8.8.cfg",
        "ser-oob-3.0.cfg",
        "kamailio-3.1.cfg",
        "sip_router-2001.cfg",
    ]
    .iter()
    .map(|f| {
        let text = std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
        (f.to_string(), text)
    })
    .collect()
}

fn check(name: &str, text: &str) {
    let r = parse_str_report(name, text, &ParseOptions::default());
    // Rendering must not panic either (spans always inside their files).
    let _ = r.render();
    assert!(r.config.is_some() == r.errors.is_empty());
}

#[test]
fn truncations_do_not_panic() {
    let start = Instant::now();
    for (name, text) in configs() {
        let mut cut = 0;
        while cut < text.len() {
            if text.is_char_boundary(cut) {
                check(&name, &text[..cut]);
            }
            cut += 61;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn mutations_do_not_panic() {
    const BYTES: &[u8] = b"{}()[];\"'#!/*$@:=.,-\\\n x0";
    let mut seed: u64 = 0x5e7_c0f1;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for (name, text) in configs() {
        for _ in 0..150 {
            let mut b = text.clone().into_bytes();
            for _ in 0..1 + next() % 4 {
                let at = next() % b.len();
                match next() % 3 {
                    0 => b[at] = BYTES[next() % BYTES.len()],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, BYTES[next() % BYTES.len()]),
                }
            }
            check(&name, &String::from_utf8_lossy(&b));
        }
    }
}

#[test]
fn absurd_depth_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "route {{ if ({}1{}) drop; }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let chain = format!("route {{ $x = 1{}; }}", " + 1".repeat(100_000));
    let nots = format!("route {{ if ({}f()) drop; }}", "!".repeat(100_000));
    let elses = format!(
        "route {{ if (a()) b();{} }}",
        " else if (a()) b();".repeat(5_000)
    );
    let defs = "#!define A B B B B B B B B\n#!define B C C C C C C C C\n#!define C D D D D D D D D\n\
                #!define D E E E E E E E E\n#!define E F F F F F F F F\n#!define F 1 1 1 1 1 1 1 1\nA\n";
    for text in [deep, chain, nots, elses, defs.to_string()] {
        let r = parse_str_report("deep.cfg", &text, &ParseOptions::default());
        assert_eq!(r.errors.len(), 1, "{}", r.render());
    }
}

#[test]
fn odd_inputs() {
    for text in [
        "#!ifdef",
        "route",
        "route {",
        "}",
        "\"",
        "/*",
        "$",
        "@",
        "[",
        "[::",
        "event_route[",
        "modparam(",
        "a=",
        "a.b=",
        "include_file",
        "include_file \"\"",
        "flags",
        "if (",
        "route { switch ($x) { case",
        "route { if (a()) else b(); }",
    ] {
        check("odd.cfg", text);
        let r = parse_str_report("odd.cfg", text, &ParseOptions::default());
        assert!(!r.errors.is_empty(), "{text:?} was accepted");
    }
    for text in ["", "\n\n", "#!", "\u{feff}debug=3"] {
        let r = parse_str_report("odd.cfg", text, &ParseOptions::default());
        assert!(r.errors.is_empty(), "{text:?}: {}", r.render());
    }
}
