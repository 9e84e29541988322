//! Micro-benchmarks: the shm allocator against glibc malloc, and the shm
//! futex lock against std's Mutex, single process, uncontended.
//!
//! Run: `cargo bench -p ser-shm` (plain `std::time`, no framework).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use ser_shm::{Lock, Mutex, ShmBox};

const SIZES: [usize; 4] = [64, 256, 1024, 4096];

fn report(what: &str, ops: u64, secs: f64) {
    println!("{what:<44} {:>8.1} ns/op", secs * 1e9 / ops as f64);
}

fn time(ops: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    let secs = t.elapsed().as_secs_f64();
    black_box(ops);
    secs
}

/// Sizes 64..=4096 from a fixed xorshift sequence.
fn mixed_sizes(n: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            64 + (x % (4096 - 64 + 1)) as usize
        })
        .collect()
}

fn bench_alloc() {
    const N: u64 = 2_000_000;
    for size in SIZES {
        let shm = time(N, || {
            for _ in 0..N {
                let p = ser_shm::alloc(black_box(size)).expect("shm alloc");
                // SAFETY: just allocated, freed once.
                unsafe { ser_shm::free(black_box(p)) };
            }
        });
        let layout = Layout::from_size_align(size, 16).expect("valid layout");
        let sys = time(N, || {
            for _ in 0..N {
                // SAFETY: non-zero size; freed with the same layout.
                unsafe {
                    let p = System.alloc(black_box(layout));
                    System.dealloc(black_box(p), layout);
                }
            }
        });
        report(&format!("alloc+free {size:>4} B, shm"), N, shm);
        report(&format!("alloc+free {size:>4} B, glibc malloc"), N, sys);
    }

    // A batch of 1000 live blocks of mixed sizes, freed in another order:
    // exercises splitting and coalescing, not just the exact-fit fast path.
    const ROUNDS: u64 = 500;
    let sizes = mixed_sizes(1000);
    let mut shm_ptrs: Vec<NonNull<u8>> = Vec::with_capacity(sizes.len());
    let shm = time(ROUNDS * 1000, || {
        for _ in 0..ROUNDS {
            for &s in &sizes {
                shm_ptrs.push(ser_shm::alloc(s).expect("shm alloc"));
            }
            for i in (0..shm_ptrs.len())
                .step_by(2)
                .chain((1..shm_ptrs.len()).step_by(2))
            {
                // SAFETY: each pointer allocated above, freed once.
                unsafe { ser_shm::free(shm_ptrs[i]) };
            }
            shm_ptrs.clear();
        }
    });
    let mut sys_ptrs: Vec<*mut u8> = Vec::with_capacity(sizes.len());
    let sys = time(ROUNDS * 1000, || {
        for _ in 0..ROUNDS {
            for &s in &sizes {
                // SAFETY: non-zero size, valid alignment.
                sys_ptrs.push(unsafe { System.alloc(Layout::from_size_align_unchecked(s, 16)) });
            }
            for i in (0..sys_ptrs.len())
                .step_by(2)
                .chain((1..sys_ptrs.len()).step_by(2))
            {
                // SAFETY: allocated above with this layout, freed once.
                unsafe {
                    System.dealloc(sys_ptrs[i], Layout::from_size_align_unchecked(sizes[i], 16))
                };
            }
            sys_ptrs.clear();
        }
    });
    report(
        "1000 mixed 64..4096 B live, alloc+free, shm",
        ROUNDS * 1000,
        shm,
    );
    report(
        "1000 mixed 64..4096 B live, glibc malloc",
        ROUNDS * 1000,
        sys,
    );
}

fn bench_lock() {
    const N: u64 = 20_000_000;
    let lock = ShmBox::new(Lock::new()).expect("shm");
    let shm = time(N, || {
        for _ in 0..N {
            drop(black_box(&*lock).lock());
        }
    });
    let std_lock = std::sync::Mutex::new(());
    let std_t = time(N, || {
        for _ in 0..N {
            drop(black_box(&std_lock).lock());
        }
    });
    report("lock+unlock, shm Lock", N, shm);
    report("lock+unlock, std::sync::Mutex", N, std_t);

    let counter = ShmBox::new(Mutex::new(0u64)).expect("shm");
    let shm = time(N, || {
        for _ in 0..N {
            *black_box(&*counter).lock() += 1;
        }
    });
    let std_counter = std::sync::Mutex::new(0u64);
    let std_t = time(N, || {
        for _ in 0..N {
            *black_box(&std_counter).lock().expect("not poisoned") += 1;
        }
    });
    report("counter += 1 under lock, shm Mutex", N, shm);
    report("counter += 1 under lock, std::sync::Mutex", N, std_t);
}

fn main() {
    // `cargo test --benches` runs this too: keep that pass short.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    ser_shm::init(64 << 20).expect("shm init");
    bench_alloc();
    bench_lock();
    let s = ser_shm::stats();
    println!(
        "shm after: used {} real_used {} fragments {}",
        s.used, s.real_used, s.fragments
    );
    ser_shm::check().expect("heap consistent");
}
