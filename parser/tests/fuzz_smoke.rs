//! Stable stand-in for the `parse_cfg` fuzz target (`fuzz/`): `parse_str`
//! over the seed configs and deterministic mutations of them; every input
//! must end in `Ok` or diagnostics, never a panic.

use std::path::PathBuf;

fn seeds() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse_cfg");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|t| !t.contains("include") && !t.contains("import"))
        .collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    ";",
    "\"",
    "#!ifdef X\n",
    "#!endif\n",
    "$",
    "@",
    "=",
    "==",
    "!",
    "\n",
    "route[",
    "if (",
    "else",
    "/*",
    "*/",
    "#",
    "0x",
    "\\",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut v: Vec<char> = base.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(3) {
            0 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.chars());
            }
            1 if at < v.len() => {
                let end = (at + rng.below(32)).min(v.len());
                v.drain(at..end);
            }
            _ => v.truncate(at),
        }
    }
    v.into_iter().collect()
}

#[test]
fn parser_survives_mutated_configs() {
    let seeds = seeds();
    assert!(seeds.len() >= 10, "{}", seeds.len());
    let opts = ser_parser::ParseOptions::default();
    let mut rng = Rng(0x00c0_ffee);
    for s in &seeds {
        let _ = ser_parser::parse_str("/nonexistent/seed.cfg", s, &opts);
    }
    for _ in 0..2000 {
        let base = &seeds[rng.below(seeds.len())];
        let text = mutate(&mut rng, base);
        let _ = ser_parser::parse_str("/nonexistent/fuzz.cfg", &text, &opts);
    }
}
