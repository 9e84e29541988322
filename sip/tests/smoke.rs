//! Stable stand-in for the fuzzers: runs the `parse_msg` and `parse_uri`
//! fuzz bodies over the seed corpus (the torture messages) and a few
//! thousand deterministic mutations of it.

use std::path::PathBuf;

use ser_sip::fuzzing;

fn corpus() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/sip-torture");
    assert!(root.is_dir(), "torture corpus missing: {}", root.display());
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .expect("read corpus dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "dat") {
                out.push(std::fs::read(&p).expect("read corpus file"));
            }
        }
    }
    assert!(
        out.len() >= 70,
        "expected the 74 torture messages, found {}",
        out.len()
    );
    // XML-RPC over HTTP arrives on the SIP stream ports too.
    out.push(
        b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n\
          Content-Length: 62\r\n\r\n<methodCall><methodName>core.version</methodName></methodCall>"
            .to_vec(),
    );
    out.push(b"GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n".to_vec());
    out
}

/// xorshift64*: deterministic, dependency-free.
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

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b" ",
    b"\r\n ",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"@",
    b"%",
    b"=",
    b"?",
    b"\0",
    b"\xff",
    b"SIP/2.0",
    b"Via: SIP/2.0/UDP [::1]:5060;rport;received=1.2.3.4",
    b"l: 99999",
    b"Content-Length: 0",
    b"sip:",
    b"tel:",
    b";tag=",
    b"*",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = rng.next() as u8;
            }
            1 => {
                let s = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 if at < v.len() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => v.truncate(at),
            _ => {
                // Duplicate a random chunk elsewhere (e.g. a header line).
                if !v.is_empty() {
                    let s = rng.below(v.len());
                    let e = (s + rng.below(64)).min(v.len());
                    let chunk = v[s..e].to_vec();
                    let at = at.min(v.len());
                    v.splice(at..at, chunk);
                }
            }
        }
    }
    v
}

/// Runs `f`; on a panic, saves the input (for `cargo fuzz run` or a
/// regression test) before failing.
fn run_saving(input: &[u8], f: fn(&[u8])) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let path = std::env::temp_dir().join("ser-sip-smoke-crash.bin");
        let _ = std::fs::write(&path, input);
        panic!("crash; input saved to {}", path.display());
    }
}

#[test]
fn corpus_and_mutations() {
    let corpus = corpus();
    for m in &corpus {
        fuzzing::parse_msg(m);
    }
    let mut rng = Rng(0x5e5_5eed_0bad_cafe);
    let rounds = std::env::var("SMOKE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    for _ in 0..rounds {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base);
        run_saving(&input, fuzzing::parse_msg);
    }
}

#[test]
fn uri_mutations() {
    let seeds: &[&[u8]] = &[
        b"sip:alice@example.com",
        b"sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x&y=z",
        b"tel:+1-201-555-0123;phone-context=example.com",
        b"sip:user;par=u%40example.net@example.com",
        b"urn:service:sos",
    ];
    let mut rng = Rng(42);
    for _ in 0..4000 {
        let base = seeds[rng.below(seeds.len())];
        run_saving(&mutate(&mut rng, base), fuzzing::parse_uri);
    }
}
