//! Exhausting a tiny segment is an error, not a crash, and recovers.

mod common;

use std::time::Duration;

use common::{assert_all_ok, fork_lock, run_children, setup};
use ser_shm::{ShmBox, ShmError, ShmStr, ShmVec};

const TINY: usize = 128 * 1024;

#[test]
fn tiny_segment_runs_out_and_recovers() {
    let _fork = fork_lock();
    setup(TINY);
    let base = ser_shm::stats();
    assert_eq!(base.total, TINY);
    let mut boxes = Vec::new();
    let err = loop {
        match ShmBox::new([0u8; 1000]) {
            Ok(b) => boxes.push(b),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, ShmError::OutOfMemory { requested: 1000 }),
        "{err}"
    );
    assert!(boxes.len() > 50);
    let full = ser_shm::stats();
    assert!(full.largest_free < 1000);
    assert!(matches!(
        ShmStr::new(&[b'x'; 4096]),
        Err(ShmError::OutOfMemory { requested: 4096 })
    ));
    // Freeing every other box leaves holes of 1000 bytes; freeing the
    // rest coalesces everything back.
    let mut odd = Vec::new();
    for (i, b) in boxes.into_iter().enumerate() {
        if i % 2 == 1 {
            odd.push(b);
        }
    }
    assert!(ShmBox::new([1u8; 1000]).is_ok());
    assert!(ShmStr::new(&[b'x'; 4096]).is_err(), "holes are too small");
    drop(odd);
    assert_eq!(ser_shm::stats().used, base.used);
    assert!(ShmStr::new(&[b'x'; 64 * 1024]).is_ok());
    ser_shm::check().unwrap();
}

#[test]
fn child_running_out_leaves_parent_consistent() {
    let _fork = fork_lock();
    setup(TINY);
    let base = ser_shm::stats();
    let results = run_children(2, Duration::from_secs(30), |_| {
        let mut v = ShmVec::new();
        let mut saw_oom = false;
        for i in 0..100_000u64 {
            if v.push(i).is_err() {
                saw_oom = true;
                break;
            }
        }
        drop(v);
        saw_oom
    });
    assert_all_ok(&results);
    let after = ser_shm::stats();
    assert_eq!((after.used, after.fragments), (base.used, base.fragments));
    assert!(after.max_used > base.real_used, "{base:?} {after:?}");
    ser_shm::check().unwrap();
}
