//! Recovering the locks of a process that died holding them.
//!
//! Every [`Lock`] records its holder's pid. Two parties recover the lock
//! of a process that died holding it, whichever comes first (one
//! compare-and-swap on the owner field picks one):
//! * a waiter, after [`crate::TAKEOVER_AFTER`], finds the holder gone and
//!   takes the lock over ([`Lock::lock`]);
//! * the supervisor, when it reaps the dead child, calls
//!   [`release_locks_of`]: the allocator lock and every lock registered
//!   here (tm's, usrloc's, pike's, pipelimit's bucket locks) that the dead
//!   pid holds are released.
//!
//! Either way the lock's *dirty mark* survives: it says the dead holder was
//! changing the protected data. The next holder sees it and checks:
//! * the allocator runs its full heap check ([`crate::check`]) before the
//!   next alloc/free; a corrupt heap cannot be trusted and the server stops;
//! * a [`HashTable`] bucket is repaired on the spot ([`HashTable::bucket`]):
//!   a torn vector header drops (leaks) the bucket's entries, entries the
//!   table's check rejects (a pointer that is not a live shm block) are
//!   leaked, and two slots owning the same block (an entry moved by
//!   `remove`/`swap_remove` when the holder died) keep only one owner.
//!   Leaking is the safe side: dropping a torn entry could free a block
//!   twice.
//!
//! The updates themselves are ordered so most deaths need no repair:
//! [`crate::ShmVec`]'s `push` writes the slot before raising the length and
//! `reserve` switches to the new buffer before freeing the old one; usrloc
//! and tm build a new record completely before linking it in, and drop the
//! old one only after it is unlinked.
//!
//! A lock whose word is held but whose owner is still 0 belonged to a
//! process that died between taking the word and recording its pid; it
//! cannot be attributed and is left alone.

use std::sync::Mutex as StdMutex;

use crate::lock::Lock;
use crate::safe::ShmSafe;
use crate::table::HashTable;

/// A registered group of locks: a name for the logs and the locks.
struct Group {
    name: &'static str,
    locks: Vec<&'static Lock>,
}

/// Process-local: filled in main before forking (children get a copy and
/// never use it).
static GROUPS: StdMutex<Vec<Group>> = StdMutex::new(Vec::new());

/// One lock force-unlocked by [`release_locks_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The group's name (`"allocator"` for the allocator lock).
    pub group: &'static str,
    /// Index of the lock within its group (the bucket index of a table).
    pub index: usize,
    /// Whether the dead holder was in the middle of a change (the next
    /// holder checks the data).
    pub dirty: bool,
}

/// Registers locks for recovery under `name` (call in main, before fork).
pub fn register_locks(name: &'static str, locks: impl IntoIterator<Item = &'static Lock>) {
    let locks = locks.into_iter().collect();
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Group { name, locks });
}

/// Registers every bucket lock of a table that lives for the rest of the
/// server (leaked in main, before fork).
pub fn register_table<V: ShmSafe>(name: &'static str, table: &'static HashTable<V>) {
    register_locks(name, table.buckets().map(|b| b.raw_lock()));
}

/// Force-unlocks the allocator lock and every registered lock held by
/// `pid`, returning what was released (allocator first).
///
/// # Safety
/// `pid` must be a process that is dead (reaped) or otherwise guaranteed
/// never to touch shared memory again.
pub unsafe fn release_locks_of(pid: i32) -> Vec<Released> {
    let mut out = Vec::new();
    if pid <= 0 {
        return out;
    }
    if let Ok(heap) = crate::segment::global() {
        let lock = heap.raw_lock();
        if lock.release_dead(pid) {
            out.push(Released {
                group: "allocator",
                index: 0,
                dirty: lock.is_dirty(),
            });
        }
    }
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for g in groups.iter() {
        for (index, lock) in g.locks.iter().enumerate() {
            if lock.release_dead(pid) {
                out.push(Released {
                    group: g.name,
                    index,
                    dirty: lock.is_dirty(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShmBox;

    #[test]
    fn releases_only_the_dead_pids_locks() {
        crate::tests::setup();
        let t: &'static HashTable<u32> =
            ShmBox::leak(ShmBox::new(HashTable::new(8).unwrap()).unwrap());
        register_table("recovery-test", t);
        // SAFETY: the child only takes a lock (no allocation, no other
        // lock another test thread could hold) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            std::mem::forget(t.bucket_at(3).unwrap().lock());
            // SAFETY: ends the child at once, without running destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(t.bucket_at(3).unwrap().raw_lock().owner(), Some(pid));
        // SAFETY: pid 1 holds nothing of ours; nothing is released.
        assert!(unsafe { release_locks_of(1) }.is_empty());
        // SAFETY: the child is dead and reaped.
        let r = unsafe { release_locks_of(pid) };
        assert_eq!(
            r,
            [Released {
                group: "recovery-test",
                index: 3,
                dirty: false,
            }]
        );
        assert!(t.bucket_at(3).unwrap().try_lock().is_some());
        crate::check().unwrap();
    }
}
