//! The allocator that lives inside the segment, in the spirit of SER's
//! `f_malloc.c`: segregated free lists (one per 16-byte size up to 16 KiB,
//! then one per power of two), a bitmap of non-empty lists, splitting on
//! allocation and coalescing with both neighbours on free.
//!
//! Layout of a heap of `total` bytes:
//!
//! ```text
//! [Heap: lock + State][block][block]...[block][end sentinel]
//! ```
//!
//! Every block starts with a 16-byte header: its payload size with the
//! `USED` bit, and the payload size of the previous block (0 for the first)
//! tagged with a magic value. A free block's payload holds its free-list
//! links. Invariants (checked by [`Heap::check`]): blocks tile the heap
//! exactly, no two free blocks are adjacent, every free block is on the list
//! of its size class and only there, and the counters match the walk.

use std::cell::UnsafeCell;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use crate::lock::{Lock, LockGuard};
use crate::ratelimit::LogLimit;
use crate::{ShmError, ShmStats};

/// Alignment of every payload (and granularity of every size).
pub(crate) const ALIGN: usize = 16;
const HDR: usize = size_of::<Block>();
/// Smallest payload: room for the two free-list links.
const MIN_PAYLOAD: usize = size_of::<Links>();
const MIN_BLOCK: usize = HDR + MIN_PAYLOAD;
/// Sizes up to this have one exact list each.
const EXACT_MAX: usize = 16 * 1024;
const EXACT_CLASSES: usize = EXACT_MAX / ALIGN;
const EXACT_MAX_LOG2: u32 = EXACT_MAX.trailing_zeros();
/// Largest heap (and allocation): the size fields must stay below the magic.
pub(crate) const MAX_HEAP: usize = 1 << 47;
const LOG_CLASSES: usize = 48 - EXACT_MAX_LOG2 as usize;
const CLASSES: usize = EXACT_CLASSES + LOG_CLASSES;
const BITMAP_WORDS: usize = CLASSES.div_ceil(64);

const USED: usize = 1;
const SIZE_MASK: usize = !(ALIGN - 1);
const MAGIC: usize = 0x5e7a << 48;
const MAGIC_MASK: usize = 0xffff << 48;

#[repr(C)]
struct Block {
    /// Payload size | `USED`.
    size: usize,
    /// `MAGIC` | payload size of the previous block (0: this is the first).
    prev: usize,
}

/// Free-list links, stored in a free block's payload.
#[repr(C)]
struct Links {
    next: *mut Block,
    prev: *mut Block,
}

/// Allocator metadata; only touched with `Heap::lock` held.
#[repr(C)]
struct State {
    first: *mut Block,
    end: *mut Block,
    total: usize,
    used: usize,
    real_used: usize,
    max_used: usize,
    free_blocks: usize,
    bitmap: [u64; BITMAP_WORDS],
    heads: [*mut Block; CLASSES],
}

/// A heap formatted inside a memory range; the range starts with this header.
#[repr(C)]
pub(crate) struct Heap {
    lock: Lock,
    state: UnsafeCell<State>,
    /// Rate limit of the "out of shared memory" log lines, server-wide.
    oom_log: LogLimit,
}

/// Payload bytes for a request: at least `MIN_PAYLOAD`, rounded to `ALIGN`.
fn round_request(req: usize) -> Option<usize> {
    if req > MAX_HEAP {
        return None;
    }
    Some(req.max(MIN_PAYLOAD).next_multiple_of(ALIGN))
}

fn class_of(size: usize) -> usize {
    if size <= EXACT_MAX {
        size / ALIGN - 1
    } else {
        let log2 = usize::BITS - 1 - size.leading_zeros();
        EXACT_CLASSES + (log2 - EXACT_MAX_LOG2) as usize
    }
}

// Block accessors. All take a pointer to a header inside a formatted heap,
// with the heap lock held (or exclusive access during formatting).

/// # Safety
/// `b` points to a block header inside a formatted heap.
unsafe fn size(b: *mut Block) -> usize {
    // SAFETY: per the function contract.
    unsafe { (*b).size & SIZE_MASK }
}

/// # Safety
/// As for [`size`].
unsafe fn is_used(b: *mut Block) -> bool {
    // SAFETY: per the function contract.
    unsafe { (*b).size & USED != 0 }
}

/// # Safety
/// As for [`size`]; `b` is not the end sentinel.
unsafe fn payload(b: *mut Block) -> *mut u8 {
    // SAFETY: the payload follows the header inside the same block.
    unsafe { b.cast::<u8>().add(HDR) }
}

/// # Safety
/// As for [`payload`].
unsafe fn next(b: *mut Block) -> *mut Block {
    // SAFETY: blocks tile the heap, so header + payload ends at the next
    // header (at worst the end sentinel).
    unsafe { payload(b).add(size(b)).cast() }
}

/// # Safety
/// As for [`size`].
unsafe fn prev(b: *mut Block) -> Option<*mut Block> {
    // SAFETY: per the contract; `prev` records the previous payload size, so
    // the previous header sits that many bytes plus one header before `b`.
    unsafe {
        let ps = (*b).prev & !MAGIC_MASK;
        (ps != 0).then(|| b.cast::<u8>().sub(HDR + ps).cast())
    }
}

/// # Safety
/// `b` is a free block (its payload holds links).
unsafe fn links(b: *mut Block) -> *mut Links {
    // SAFETY: per the contract.
    unsafe { payload(b).cast() }
}

/// Writes `b`'s header and the `prev` field of the block after it.
///
/// # Safety
/// `b` is a block position inside a formatted heap and `size` keeps the
/// tiling (the next header, at `b + HDR + size`, exists).
unsafe fn set_block(b: *mut Block, size: usize, used: bool) {
    // SAFETY: per the contract.
    unsafe {
        (*b).size = size | if used { USED } else { 0 };
        let n: *mut Block = payload(b).add(size).cast();
        (*n).prev = MAGIC | size;
    }
}

impl State {
    fn set_bit(&mut self, c: usize) {
        self.bitmap[c / 64] |= 1 << (c % 64);
    }

    fn clear_bit(&mut self, c: usize) {
        self.bitmap[c / 64] &= !(1 << (c % 64));
    }

    /// The first non-empty class at or after `c`.
    fn next_nonempty(&self, c: usize) -> Option<usize> {
        let mut w = c / 64;
        if w >= BITMAP_WORDS {
            return None;
        }
        let mut bits = self.bitmap[w] & (!0u64 << (c % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            if w == BITMAP_WORDS {
                return None;
            }
            bits = self.bitmap[w];
        }
    }

    /// # Safety
    /// `b` is a free block not on any list.
    unsafe fn push_free(&mut self, b: *mut Block) {
        // SAFETY: `b` is free, so its payload can hold links; the head, if
        // any, is a free block on this list.
        let c = unsafe {
            let c = class_of(size(b));
            let head = self.heads[c];
            links(b).write(Links {
                next: head,
                prev: ptr::null_mut(),
            });
            if !head.is_null() {
                (*links(head)).prev = b;
            }
            c
        };
        self.heads[c] = b;
        self.set_bit(c);
        self.free_blocks += 1;
    }

    /// # Safety
    /// `b` is a free block on the list of its class.
    unsafe fn unlink_free(&mut self, b: *mut Block) {
        // SAFETY: `b` and its list neighbours are free blocks holding links.
        let c = unsafe {
            let c = class_of(size(b));
            let Links { next, prev } = links(b).read();
            if prev.is_null() {
                self.heads[c] = next;
            } else {
                (*links(prev)).next = next;
            }
            if !next.is_null() {
                (*links(next)).prev = prev;
            }
            c
        };
        if self.heads[c].is_null() {
            self.clear_bit(c);
        }
        self.free_blocks -= 1;
    }

    /// Finds a free block with at least `want` payload bytes.
    ///
    /// # Safety
    /// The state describes a formatted heap.
    unsafe fn find_fit(&self, want: usize) -> Option<*mut Block> {
        let mut c = class_of(want);
        if c < EXACT_CLASSES {
            if !self.heads[c].is_null() {
                return Some(self.heads[c]);
            }
        } else {
            // A power-of-two list mixes sizes: first fit within it.
            let mut b = self.heads[c];
            while !b.is_null() {
                // SAFETY: list members are free blocks of this heap.
                unsafe {
                    if size(b) >= want {
                        return Some(b);
                    }
                    b = (*links(b)).next;
                }
            }
        }
        // Every block of a higher class is big enough: take the smallest.
        c = self.next_nonempty(c + 1)?;
        Some(self.heads[c])
    }
}

/// The heap's state, borrowed while its lock is held.
struct Locked<'a> {
    guard: LockGuard<'a>,
    state: &'a UnsafeCell<State>,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: the heap lock is held for the life of `self`, so no other
        // process or thread accesses the state meanwhile.
        unsafe { &*self.state.get() }
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        // A change begins: a death from here to the unlock leaves the mark.
        self.guard.mark_dirty();
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { &mut *self.state.get() }
    }
}

impl Heap {
    /// Formats a heap over `[base, base + len)` and returns its header.
    ///
    /// # Safety
    /// The range is writable, exclusively ours, `ALIGN`-aligned at `base`,
    /// and stays mapped for as long as the returned heap is used.
    pub(crate) unsafe fn format(base: NonNull<u8>, len: usize) -> Result<NonNull<Heap>, ShmError> {
        let meta = size_of::<Heap>().next_multiple_of(ALIGN);
        let usable = len & SIZE_MASK;
        if len > MAX_HEAP || usable < meta + MIN_BLOCK + HDR {
            return Err(ShmError::InvalidSize { requested: len });
        }
        let heap: *mut Heap = base.as_ptr().cast();
        // SAFETY: the range is ours and large enough for the header, the
        // first block and the sentinel (checked above); all offsets are
        // ALIGN multiples, so every header is aligned.
        unsafe {
            let first: *mut Block = base.as_ptr().add(meta).cast();
            let end: *mut Block = base.as_ptr().add(usable - HDR).cast();
            let first_size = usable - meta - 2 * HDR;
            (*first).prev = MAGIC;
            set_block(first, first_size, false);
            (*end).size = USED;
            heap.write(Heap {
                lock: Lock::new(),
                state: UnsafeCell::new(State {
                    first,
                    end,
                    total: len,
                    used: 0,
                    real_used: len - first_size,
                    max_used: len - first_size,
                    free_blocks: 0,
                    bitmap: [0; BITMAP_WORDS],
                    heads: [ptr::null_mut(); CLASSES],
                }),
                oom_log: LogLimit::new(),
            });
            (*(*heap).state.get()).push_free(first);
            Ok(NonNull::new_unchecked(heap))
        }
    }

    /// Takes the lock. If the previous holder died in the middle of an
    /// alloc/free (the lock's dirty mark survived it), the heap is checked
    /// first: a corrupt heap must not be used by anyone, so that panics (the
    /// supervisor then finds the corruption too and stops the server).
    fn locked(&self) -> Locked<'_> {
        let guard = self.lock.lock();
        let inherited = guard.inherited_dirty();
        let st = Locked {
            guard,
            state: &self.state,
        };
        if inherited {
            if let Err(e) = self.check_locked(&st) {
                st.guard.abandon();
                panic!("shm allocator left corrupt by a dead process: {e}");
            }
        }
        st
    }

    /// Allocates `req` bytes, `ALIGN`-aligned.
    pub(crate) fn alloc(&self, req: usize) -> Result<NonNull<u8>, ShmError> {
        let want = round_request(req).ok_or(ShmError::OutOfMemory { requested: req })?;
        let mut st = self.locked();
        // SAFETY: the lock is held; `find_fit` returns a free listed block of
        // at least `want` bytes, and splitting keeps the tiling because the
        // remainder is at least MIN_BLOCK bytes.
        unsafe {
            let b = st
                .find_fit(want)
                .ok_or(ShmError::OutOfMemory { requested: req })?;
            st.unlink_free(b);
            let have = size(b);
            let mut got = have;
            if have - want >= MIN_BLOCK {
                let rest: *mut Block = payload(b).add(want).cast();
                set_block(b, want, true);
                set_block(rest, have - want - HDR, false);
                st.push_free(rest);
                got = want;
                st.real_used += HDR;
            } else {
                set_block(b, have, true);
            }
            st.used += got;
            st.real_used += got;
            st.max_used = st.max_used.max(st.real_used);
            Ok(NonNull::new_unchecked(payload(b)))
        }
    }

    /// Frees a block returned by [`Heap::alloc`].
    ///
    /// # Panics
    /// If `p` is not a live allocation of this heap (double free, wild
    /// pointer) as far as the header shows: continuing would corrupt shm.
    ///
    /// # Safety
    /// `p` came from `alloc` on this heap and is not used afterwards.
    pub(crate) unsafe fn free(&self, p: NonNull<u8>) {
        let mut st = self.locked();
        let addr = p.as_ptr() as usize;
        let b: *mut Block = p.as_ptr().wrapping_sub(HDR).cast();
        let in_range =
            addr % ALIGN == 0 && addr >= st.first as usize + HDR && addr < st.end as usize;
        // SAFETY: in range and aligned, so `b` is readable heap memory.
        if !in_range || unsafe { (*b).prev & MAGIC_MASK != MAGIC || !is_used(b) } {
            drop(st);
            panic!("shm free of {p:p}: not a live shm allocation (double free?)");
        }
        // SAFETY: `b` is a used block of this heap and the lock is held;
        // neighbours are found through the tiling, and only free ones (which
        // are on their lists) are unlinked and merged.
        unsafe {
            let mut b = b;
            let mut sz = size(b);
            st.used -= sz;
            st.real_used -= sz;
            let n = next(b);
            if !is_used(n) {
                st.unlink_free(n);
                sz += HDR + size(n);
                st.real_used -= HDR;
            }
            if let Some(p) = prev(b) {
                if !is_used(p) {
                    st.unlink_free(p);
                    sz += HDR + size(p);
                    st.real_used -= HDR;
                    b = p;
                }
            }
            set_block(b, sz, false);
            st.push_free(b);
        }
    }

    /// The payload size of a live block (at least what was requested).
    ///
    /// # Safety
    /// `p` came from `alloc` on this heap and is still allocated.
    pub(crate) unsafe fn usable_size(&self, p: NonNull<u8>) -> usize {
        // SAFETY: per the contract the header before `p` is a live used
        // block; its size word only changes while the block is free.
        unsafe { size(p.as_ptr().sub(HDR).cast()) }
    }

    /// Whether `[p, p + bytes)` lies inside the payload of a live (used)
    /// block: lets lock recovery tell a sound shm pointer left by a dead
    /// process from a torn one before anything dereferences it.
    pub(crate) fn is_live(&self, p: *const u8, bytes: usize) -> bool {
        let st = self.locked();
        let addr = p as usize;
        if addr % ALIGN != 0 || addr < st.first as usize + HDR || addr >= st.end as usize {
            return false;
        }
        let b: *mut Block = p.cast_mut().wrapping_sub(HDR).cast();
        // SAFETY: in range and aligned, so the 16 bytes before `p` are heap
        // memory; a stray pointer that passes the magic check merely reads
        // a size word, and the tiling bound below keeps it inside the heap.
        unsafe {
            (*b).prev & MAGIC_MASK == MAGIC
                && is_used(b)
                && size(b) >= bytes
                && addr + size(b) <= st.end as usize
        }
    }

    /// The server-wide limiter of out-of-memory log lines.
    pub(crate) fn oom_log(&self) -> &LogLimit {
        &self.oom_log
    }

    /// Who holds the allocator lock right now.
    pub(crate) fn lock_owner(&self) -> Option<i32> {
        self.lock.owner()
    }

    /// The allocator lock itself (for recovery after its holder died).
    pub(crate) fn raw_lock(&self) -> &Lock {
        &self.lock
    }

    /// A consistent snapshot of the counters.
    pub(crate) fn stats(&self) -> ShmStats {
        let st = self.locked();
        let mut largest = 0;
        if let Some(c) = (0..CLASSES).rev().find(|&c| !st.heads[c].is_null()) {
            let mut b = st.heads[c];
            while !b.is_null() {
                // SAFETY: list members are free blocks; the lock is held.
                unsafe {
                    largest = largest.max(size(b));
                    b = (*links(b)).next;
                }
            }
        }
        ShmStats {
            total: st.total,
            free: st.total - st.real_used,
            used: st.used,
            real_used: st.real_used,
            max_used: st.max_used,
            fragments: st.free_blocks,
            largest_free: largest,
        }
    }

    /// Walks every block and every free list and checks the invariants.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.check_locked(&self.locked())
    }

    /// [`Heap::check`] with the lock already held.
    fn check_locked(&self, st: &State) -> Result<(), String> {
        let (first, end) = (st.first as usize, st.end as usize);
        let valid = |b: *mut Block| {
            let a = b as usize;
            a >= first && a < end && a % ALIGN == 0
        };
        let (mut used, mut free, mut nfree, mut blocks) = (0usize, 0usize, 0usize, 0usize);
        let mut b = st.first;
        let mut prev_size = 0;
        let mut prev_free = false;
        while b != st.end {
            if !valid(b) {
                return Err(format!("block {b:p} outside the heap"));
            }
            // SAFETY: `b` is inside the heap and aligned; the lock is held.
            let (raw_prev, sz, u) = unsafe { ((*b).prev, size(b), is_used(b)) };
            if raw_prev & MAGIC_MASK != MAGIC {
                return Err(format!("block {b:p}: bad magic {raw_prev:#x}"));
            }
            if raw_prev & !MAGIC_MASK != prev_size {
                return Err(format!(
                    "block {b:p}: prev size {raw_prev:#x}, expected {prev_size}"
                ));
            }
            if sz < MIN_PAYLOAD || sz > end - b as usize - HDR {
                return Err(format!("block {b:p}: bad size {sz}"));
            }
            if u {
                used += sz;
                prev_free = false;
            } else {
                if prev_free {
                    return Err(format!("block {b:p}: two adjacent free blocks"));
                }
                free += sz;
                nfree += 1;
                prev_free = true;
            }
            blocks += 1;
            prev_size = sz;
            // SAFETY: size checked against the end above.
            b = unsafe { next(b) };
        }
        // SAFETY: `end` is the sentinel header inside the heap.
        let (end_size, end_prev) = unsafe { ((*b).size, (*b).prev) };
        if end_size != USED || end_prev != MAGIC | prev_size {
            return Err(format!("end sentinel corrupt: {end_size:#x} {end_prev:#x}"));
        }
        // The free lists must hold exactly the free blocks, each once.
        let mut listed = 0;
        for c in 0..CLASSES {
            let bit = st.bitmap[c / 64] >> (c % 64) & 1 == 1;
            if bit == st.heads[c].is_null() {
                return Err(format!("class {c}: bitmap disagrees with its list"));
            }
            let mut p: *mut Block = ptr::null_mut();
            let mut l = st.heads[c];
            while !l.is_null() {
                listed += 1;
                if listed > nfree {
                    return Err("free lists hold more blocks than the heap (cycle?)".into());
                }
                if !valid(l) {
                    return Err(format!("class {c}: listed block {l:p} outside the heap"));
                }
                // SAFETY: `l` is inside the heap and aligned; lock held.
                let (u, sz, lk) = unsafe { (is_used(l), size(l), links(l).read()) };
                if u || class_of(sz) != c || lk.prev != p {
                    return Err(format!("class {c}: bad listed block {l:p}"));
                }
                p = l;
                l = lk.next;
            }
        }
        if listed != nfree || nfree != st.free_blocks {
            return Err(format!(
                "free blocks: {nfree} in the heap, {listed} listed, {} counted",
                st.free_blocks
            ));
        }
        if used != st.used || free != st.total - st.real_used {
            return Err(format!(
                "counters: walk used {used} free {free}, stats used {} free {}",
                st.used,
                st.total - st.real_used
            ));
        }
        let meta = first - (self as *const Heap as usize);
        let slack = st.total - (end + HDR - (self as *const Heap as usize));
        if meta + blocks * HDR + HDR + used + free + slack != st.total {
            return Err("blocks do not add up to the heap size".into());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::segment::Segment;

    fn heap(size: usize) -> Segment {
        Segment::new(size).unwrap()
    }

    fn ok(h: &Heap) {
        if let Err(e) = h.check() {
            panic!("heap check: {e}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(32), 1);
        assert_eq!(class_of(EXACT_MAX), EXACT_CLASSES - 1);
        assert_eq!(class_of(EXACT_MAX + 16), EXACT_CLASSES);
        assert_eq!(class_of(2 * EXACT_MAX - 16), EXACT_CLASSES);
        assert_eq!(class_of(2 * EXACT_MAX), EXACT_CLASSES + 1);
        assert_eq!(class_of(MAX_HEAP), CLASSES - 1);
        assert_eq!(round_request(0), Some(16));
        assert_eq!(round_request(17), Some(32));
        assert_eq!(round_request(usize::MAX), None);
    }

    #[test]
    fn fresh_heap_stats_add_up() {
        let seg = heap(1 << 20);
        let h = seg.heap();
        let s = h.stats();
        assert_eq!(s.total, 1 << 20);
        assert_eq!(s.free + s.real_used, s.total);
        assert_eq!(s.used, 0);
        assert_eq!(s.fragments, 1);
        assert_eq!(s.largest_free, s.free);
        ok(h);
    }

    #[test]
    fn alloc_free_split_coalesce() {
        let seg = heap(1 << 20);
        let h = seg.heap();
        let base = h.stats();
        let a = h.alloc(100).unwrap();
        let b = h.alloc(200).unwrap();
        let c = h.alloc(300).unwrap();
        ok(h);
        let s = h.stats();
        assert_eq!(s.used, 112 + 208 + 304);
        assert_eq!(s.real_used, base.real_used + s.used + 3 * HDR);
        assert_eq!(s.free + s.real_used, s.total);
        assert_eq!(s.fragments, 1);
        // b's neighbours are used: it becomes a lone fragment.
        unsafe { h.free(b) };
        ok(h);
        assert_eq!(h.stats().fragments, 2);
        // a merges with the free b on its right.
        unsafe { h.free(a) };
        ok(h);
        assert_eq!(h.stats().fragments, 2);
        // c merges with both sides: one block again.
        unsafe { h.free(c) };
        ok(h);
        let s = h.stats();
        assert_eq!((s.used, s.real_used, s.fragments), (0, base.real_used, 1));
        assert_eq!(s.max_used, base.real_used + 624 + 3 * HDR);
    }

    #[test]
    fn exact_fit_reuses_freed_block() {
        let seg = heap(1 << 20);
        let h = seg.heap();
        let a = h.alloc(64).unwrap();
        let _guard = h.alloc(64).unwrap();
        unsafe { h.free(a) };
        let b = h.alloc(64).unwrap();
        assert_eq!(a, b);
        ok(h);
    }

    #[test]
    fn alignment() {
        let seg = heap(1 << 20);
        let h = seg.heap();
        for n in [1, 3, 15, 16, 17, 33, 100, 4095, 20000] {
            let p = h.alloc(n).unwrap();
            assert_eq!(p.as_ptr() as usize % ALIGN, 0);
            assert!(unsafe { h.usable_size(p) } >= n);
        }
        ok(h);
    }

    #[test]
    fn large_blocks_use_power_of_two_lists() {
        let seg = heap(4 << 20);
        let h = seg.heap();
        let v: Vec<_> = (0..20)
            .map(|i| h.alloc(20_000 + i * 3000).unwrap())
            .collect();
        for p in v.iter().step_by(2) {
            unsafe { h.free(*p) };
        }
        ok(h);
        // 40000 fits one of the freed ~[20000, 74000] blocks.
        let p = h.alloc(40_000).unwrap();
        ok(h);
        unsafe { h.free(p) };
        for p in v.iter().skip(1).step_by(2) {
            unsafe { h.free(*p) };
        }
        ok(h);
        assert_eq!(h.stats().fragments, 1);
    }

    #[test]
    fn out_of_memory_is_an_error_and_recovers() {
        let seg = heap(64 * 1024);
        let h = seg.heap();
        let mut v = Vec::new();
        let err = loop {
            match h.alloc(1000) {
                Ok(p) => v.push(p),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ShmError::OutOfMemory { requested: 1000 }));
        assert!(v.len() > 10);
        assert!(matches!(
            h.alloc(usize::MAX),
            Err(ShmError::OutOfMemory {
                requested: usize::MAX
            })
        ));
        ok(h);
        for p in v.drain(..) {
            unsafe { h.free(p) };
        }
        ok(h);
        assert!(h.alloc(30_000).is_ok());
    }

    #[test]
    fn random_workload_keeps_invariants() {
        let seg = heap(2 << 20);
        let h = seg.heap();
        let base = h.stats();
        let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
        let mut x = 0x9e3779b97f4a7c15u64;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() < 200 && x % 3 != 0 {
                let n = 1 + (x >> 20) as usize % 3000;
                if let Ok(p) = h.alloc(n) {
                    let tag = i as u8;
                    unsafe { p.as_ptr().write_bytes(tag, n) };
                    live.push((p, n, tag));
                }
            } else if !live.is_empty() {
                let (p, n, tag) = live.swap_remove((x >> 32) as usize % live.len());
                let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), n) };
                assert!(s.iter().all(|&b| b == tag));
                unsafe { h.free(p) };
            }
            if i % 1000 == 0 {
                ok(h);
            }
        }
        for (p, _, _) in live {
            unsafe { h.free(p) };
        }
        ok(h);
        let s = h.stats();
        assert_eq!((s.used, s.real_used, s.fragments), (0, base.real_used, 1));
    }

    #[test]
    #[should_panic(expected = "not a live shm allocation")]
    fn double_free_panics() {
        let seg = heap(1 << 20);
        let h = seg.heap();
        let a = h.alloc(10).unwrap();
        let _b = h.alloc(10).unwrap();
        unsafe {
            h.free(a);
            h.free(a);
        }
    }

    #[test]
    fn too_small_is_rejected() {
        assert!(matches!(
            Segment::new(64),
            Err(ShmError::InvalidSize { .. })
        ));
    }
}
