//! Tests with real forked processes sharing the segment.

mod common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    assert_all_ok, barrier, fork_lock, run_children, setup, spawn_children, wait_children,
};
use ser_shm::{HashTable, Lock, Mutex, ShmBox, ShmStr, ShmVec};

const SEGMENT: usize = 64 << 20;
const CHILDREN: usize = 4;
const LIMIT: Duration = Duration::from_secs(60);

/// A small deterministic PRNG (xorshift64*), so children need no crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn pattern_word(tag: u64, i: usize) -> u64 {
    tag ^ (i as u64).wrapping_mul(0x0100_0000_01b3)
}

/// Fills `len` bytes at `p` with a pattern derived from `tag`.
fn fill(p: NonNull<u8>, len: usize, tag: u64) {
    // SAFETY (test): a live block of at least `len` bytes, 16-aligned.
    let words = unsafe { std::slice::from_raw_parts_mut(p.as_ptr().cast::<u64>(), len / 8) };
    for (i, w) in words.iter_mut().enumerate() {
        *w = pattern_word(tag, i);
    }
    for j in len / 8 * 8..len {
        // SAFETY (test): j < len.
        unsafe { *p.as_ptr().add(j) = tag as u8 };
    }
}

fn verify(p: NonNull<u8>, len: usize, tag: u64) -> bool {
    // SAFETY (test): as in `fill`.
    let words = unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<u64>(), len / 8) };
    words.iter().enumerate().all(|(i, &w)| w == pattern_word(tag, i))
        // SAFETY (test): j < len.
        && (len / 8 * 8..len).all(|j| unsafe { *p.as_ptr().add(j) } == tag as u8)
}

/// Random sizes: mostly small (SIP headers), some message-sized, a few big.
fn random_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=79 => 1 + rng.below(256) as usize,
        80..=98 => 256 + rng.below(3840) as usize,
        _ => 4096 + rng.below(28 * 1024) as usize,
    }
}

/// One child's share of the stress test; true if every block kept its
/// pattern. Uses only the stack and shm.
fn stress_child(i: usize, ops: usize, done: &AtomicU64) -> bool {
    const SLOTS: usize = 256;
    let mut rng = Rng::new(i as u64 + 1);
    let mut slots: [Option<(NonNull<u8>, usize, u64)>; SLOTS] = [None; SLOTS];
    let mut ok = true;
    for n in 0..ops {
        if n % 50_000 == 0 && ser_shm::check().is_err() {
            return false;
        }
        let k = rng.below(SLOTS as u64) as usize;
        match slots[k].take() {
            Some((p, len, tag)) => {
                ok &= verify(p, len, tag);
                // SAFETY (test): allocated below, freed once.
                unsafe { ser_shm::free(p) };
            }
            None => {
                let len = random_size(&mut rng);
                // OOM is legitimate under pressure: just skip this slot.
                if let Ok(p) = ser_shm::alloc(len) {
                    let tag = rng.next_u64();
                    fill(p, len, tag);
                    slots[k] = Some((p, len, tag));
                }
            }
        }
    }
    for (p, len, tag) in slots.into_iter().flatten() {
        ok &= verify(p, len, tag);
        // SAFETY (test): still allocated, freed once.
        unsafe { ser_shm::free(p) };
    }
    done.fetch_add(ops as u64, Ordering::Relaxed);
    ok
}

#[test]
fn children_alloc_and_free_concurrently() {
    let _fork = fork_lock();
    setup(SEGMENT);
    // A million operations take about half a second in a debug build.
    let total = if cfg!(debug_assertions) {
        1_000_000
    } else {
        4_000_000
    };
    let per_child = total / CHILDREN;
    let started = Instant::now();
    let done = ShmBox::new(AtomicU64::new(0)).unwrap();
    let start = ShmBox::new(AtomicUsize::new(0)).unwrap();
    let before = ser_shm::stats();
    let results = run_children(CHILDREN, LIMIT, |i| {
        barrier(&start, CHILDREN);
        stress_child(i, per_child, &done)
    });
    let elapsed = started.elapsed();
    assert_all_ok(&results);
    assert_eq!(done.load(Ordering::Relaxed), (per_child * CHILDREN) as u64);
    let after = ser_shm::stats();
    eprintln!(
        "{total} alloc/free ops in {CHILDREN} processes: {elapsed:?}; max_used {} of {}",
        after.max_used, after.total
    );
    assert_eq!(
        (after.used, after.real_used, after.free, after.fragments),
        (before.used, before.real_used, before.free, before.fragments)
    );
    assert!(after.max_used > before.real_used);
    ser_shm::check().unwrap();
}

#[test]
fn lock_counts_exactly_across_processes() {
    let _fork = fork_lock();
    setup(SEGMENT);
    let per_child = 100_000;
    let counter = ShmBox::new(Mutex::new(0u64)).unwrap();
    // A bare Lock guarding a non-atomic read-modify-write of an atomic.
    let raw = ShmBox::new((Lock::new(), AtomicU64::new(0))).unwrap();
    let start = ShmBox::new(AtomicUsize::new(0)).unwrap();
    let started = Instant::now();
    let results = run_children(CHILDREN, LIMIT, |_| {
        barrier(&start, CHILDREN);
        for _ in 0..per_child {
            *counter.lock() += 1;
            let _g = raw.0.lock();
            let v = raw.1.load(Ordering::Relaxed);
            raw.1.store(v + 1, Ordering::Relaxed);
        }
        true
    });
    eprintln!(
        "{} contended lock/unlock pairs in {CHILDREN} processes: {:?}",
        2 * CHILDREN * per_child,
        started.elapsed()
    );
    assert_all_ok(&results);
    assert_eq!(*counter.lock(), (CHILDREN * per_child) as u64);
    assert_eq!(raw.1.load(Ordering::Relaxed), (CHILDREN * per_child) as u64);
    assert!(!counter.raw_lock().is_locked());
}

#[test]
fn owner_pid_names_a_dead_holder() {
    let _fork = fork_lock();
    setup(SEGMENT);
    let lock: &'static Lock = ShmBox::leak(ShmBox::new(Lock::new()).unwrap());
    let child_pid: &'static AtomicU32 = ShmBox::leak(ShmBox::new(AtomicU32::new(0)).unwrap());
    let results = run_children(1, LIMIT, |_| {
        child_pid.store(ser_shm::current_pid() as u32, Ordering::SeqCst);
        std::mem::forget(lock.lock());
        true // exits still holding the lock
    });
    assert_all_ok(&results);
    let owner = lock.owner().expect("lock still held");
    assert_eq!(owner as u32, child_pid.load(Ordering::SeqCst));
    assert_ne!(owner, ser_shm::current_pid());
    // SAFETY (test): the holder has exited and was reaped.
    unsafe { lock.force_unlock() };
    assert!(lock.try_lock().is_some());
}

#[test]
fn hash_table_shared_between_processes() {
    let _fork = fork_lock();
    setup(SEGMENT);
    let before = ser_shm::stats();
    let table: ShmBox<HashTable<(u32, ShmStr)>> = ShmBox::new(HashTable::new(64).unwrap()).unwrap();
    let per_child = 500;
    let results = run_children(CHILDREN, LIMIT, |i| {
        for n in 0..per_child {
            let key = format!("{i}-{n}@example.com");
            let h = ser_shm::hash(&[key.as_bytes()]);
            let entry = (i as u32, ShmStr::new(key.as_bytes()).unwrap());
            if table.bucket(h).push(entry).is_err() {
                return false;
            }
        }
        // Remove every other entry of our own again.
        for n in (0..per_child).step_by(2) {
            let key = format!("{i}-{n}@example.com");
            let mut b = table.bucket(ser_shm::hash(&[key.as_bytes()]));
            match b.iter().position(|(_, k)| k == key.as_str()) {
                Some(pos) => drop(b.swap_remove(pos)),
                None => return false,
            }
        }
        true
    });
    assert_all_ok(&results);
    assert_eq!(table.count(), CHILDREN * per_child / 2);
    let key = "3-7@example.com";
    assert!(table
        .bucket(ser_shm::hash(&[key.as_bytes()]))
        .iter()
        .any(|(owner, k)| *owner == 3 && k == key));
    drop(table);
    let after = ser_shm::stats();
    assert_eq!(
        (after.used, after.fragments),
        (before.used, before.fragments)
    );
    ser_shm::check().unwrap();
}

#[test]
fn vec_grown_in_child_is_seen_by_parent() {
    let _fork = fork_lock();
    setup(SEGMENT);
    let shared = ShmBox::new(Mutex::new(ShmVec::<u64>::new())).unwrap();
    let results = run_children(2, LIMIT, |i| {
        (0..1000).all(|n| shared.lock().push(i as u64 * 10_000 + n).is_ok())
    });
    assert_all_ok(&results);
    let mut v = shared.lock();
    assert_eq!(v.len(), 2000);
    v.sort_unstable();
    assert_eq!(v[0], 0);
    assert_eq!(v[1999], 10_999);
}

#[test]
fn sleepers_in_other_processes_are_woken() {
    let _fork = fork_lock();
    setup(SEGMENT);
    let counter = ShmBox::new(Mutex::new(0u32)).unwrap();
    let waiting = ShmBox::new(AtomicUsize::new(0)).unwrap();
    let mut held = Some(counter.lock());
    let pids = spawn_children(3, |_| {
        // The inherited guard is the parent's: never unlock it here.
        std::mem::forget(held.take());
        waiting.fetch_add(1, Ordering::SeqCst);
        *counter.lock() += 1;
        true
    });
    // Hold the lock far longer than the spin phase, so every child ends up
    // asleep in FUTEX_WAIT; each unlock must wake the next one.
    while waiting.load(Ordering::SeqCst) < 3 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(counter.raw_lock().is_locked());
    drop(held.take());
    assert_all_ok(&wait_children(pids, LIMIT));
    assert_eq!(*counter.lock(), 3);
}
