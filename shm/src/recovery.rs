//! Recovering the locks of a process that died holding them.
//!
//! Every [`Lock`] records its holder's pid. When the supervisor reaps a
//! dead child it calls [`release_locks_of`]: the allocator lock and every
//! lock registered here (tm's and usrloc's bucket locks) that the dead pid
//! holds are force-unlocked, so the survivors do not block forever.
//!
//! What a half-done operation leaves behind:
//! * the allocator: a free list or a block header mid-update. After a
//!   recovery the caller must run [`crate::check`]; if it fails the heap
//!   cannot be trusted and the server should stop.
//! * a bucket's [`crate::ShmVec`]: `push` writes the slot before raising
//!   the length, so a death there only loses the new entry (and leaks
//!   it); a death inside `reserve` leaks one buffer. `remove` and
//!   `swap_remove` move entries before lowering the length: a death in
//!   the middle can leave two slots owning the same shm block (a
//!   `ShmStr`, a `ShmVec`), and dropping both later is a double free,
//!   which the allocator detects and panics on in whichever process does
//!   it. An entry half rewritten in place (tm's transaction state,
//!   usrloc's contact list) keeps a mix of old and new fields.
//!   Recovery logs the table and bucket; the entries are left to the
//!   owners' expiry (tm's timers, usrloc's expiry, pike's idle removal),
//!   and a worker that still trips over one dies and is replaced, up to
//!   the supervisor's crash-loop limit.
//!
//! A lock whose word is held but whose owner is still 0 belonged to a
//! process that died between taking the word and recording its pid; it
//! cannot be attributed and is left alone (and logged by the caller when it
//! blocks someone, which this module cannot see).

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
        if lock.owner() == Some(pid) {
            // SAFETY: the holder is dead (caller's contract); the heap is
            // checked by the caller afterwards.
            unsafe { lock.force_unlock() };
            out.push(Released {
                group: "allocator",
                index: 0,
            });
        }
    }
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for g in groups.iter() {
        for (index, lock) in g.locks.iter().enumerate() {
            if lock.owner() == Some(pid) {
                // SAFETY: as above; the data it protects is left as the
                // dead holder left it (see the module docs).
                unsafe { lock.force_unlock() };
                out.push(Released {
                    group: g.name,
                    index,
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
                index: 3
            }]
        );
        assert!(t.bucket_at(3).unwrap().try_lock().is_some());
        crate::check().unwrap();
    }
}
