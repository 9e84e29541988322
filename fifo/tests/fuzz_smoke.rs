//! Stable stand-in for the `binrpc` and `fifo_reader` fuzz targets
//! (`fuzz/`): the same bodies over the seed corpus and a few thousand
//! deterministic mutations of it; any panic fails.

use std::path::PathBuf;

use ser_fifo::binrpc::{decode_body, decode_fault, decode_request, split_frame, Decoded};
use ser_fifo::fifo_server::{parse_request, FifoParse};

fn seeds(dir: &str) -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
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

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = rng.next() as u8;
            }
            1 => v.insert(at, [b'\n', b':', 0xff, 0x00, 0x80][rng.below(5)]),
            2 if at < v.len() => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            _ => v.truncate(at),
        }
    }
    v
}

/// The `binrpc` fuzz target's body.
fn binrpc(data: &[u8]) {
    let mut rest = data;
    while let Ok(Decoded::Complete(frame, used)) = split_frame(rest, 1 << 16) {
        let _ = decode_request(frame.body);
        let _ = decode_body(frame.body);
        let _ = decode_fault(frame.body);
        if used == 0 || used > rest.len() {
            break;
        }
        rest = &rest[used..];
    }
    let _ = decode_request(data);
    let _ = decode_body(data);
}

/// The `fifo_reader` fuzz target's body.
fn fifo_reader(data: &[u8]) {
    let mut rest = data;
    for _ in 0..64 {
        let consumed = match parse_request(rest, 256, 4096) {
            FifoParse::NeedMore => break,
            FifoParse::Request(_, consumed) | FifoParse::Bad { consumed, .. } => consumed,
        };
        if consumed == 0 || consumed > rest.len() {
            break;
        }
        rest = &rest[consumed..];
    }
}

#[test]
fn binrpc_decoder_survives_mutated_golden_packets() {
    let seeds = seeds("tests/golden");
    assert!(seeds.len() >= 4);
    let mut rng = Rng(0x5eed_b1b1);
    for s in &seeds {
        binrpc(s);
    }
    for _ in 0..20_000 {
        let base = &seeds[rng.below(seeds.len())];
        binrpc(&mutate(&mut rng, base));
    }
}

#[test]
fn fifo_parser_survives_mutated_requests() {
    let seeds = seeds("../fuzz/corpus/fifo_reader");
    assert!(!seeds.is_empty());
    let mut rng = Rng(0xf1f0);
    for _ in 0..20_000 {
        let base = &seeds[rng.below(seeds.len())];
        fifo_reader(&mutate(&mut rng, base));
    }
}
