//! [`ShmVec`]: a growable array in the segment.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use crate::safe::ShmSafe;
use crate::{alloc_array, free_array, ShmError};

/// A growable array in shm, like `Vec`, except that growing can fail with
/// [`ShmError::OutOfMemory`] (the value is then not inserted).
///
/// Slice methods (`len`, `iter`, `iter_mut`, indexing, `sort`, …) come
/// through `Deref<Target = [T]>`.
pub struct ShmVec<T: ShmSafe> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    _owns: PhantomData<T>,
}

// SAFETY: owns its elements, like Vec<T>.
unsafe impl<T: ShmSafe + Send> Send for ShmVec<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Sync> Sync for ShmVec<T> {}
// SAFETY: points into the segment only; Drop drops ShmSafe elements and
// frees shm.
unsafe impl<T: ShmSafe> ShmSafe for ShmVec<T> {}

impl<T: ShmSafe> ShmVec<T> {
    /// An empty vector; allocates nothing.
    pub const fn new() -> Self {
        ShmVec {
            ptr: NonNull::dangling(),
            len: 0,
            cap: if std::mem::size_of::<T>() == 0 {
                usize::MAX
            } else {
                0
            },
            _owns: PhantomData,
        }
    }

    /// An empty vector with room for `cap` values.
    pub fn with_capacity(cap: usize) -> Result<Self, ShmError> {
        let mut v = ShmVec::new();
        v.reserve(cap)?;
        Ok(v)
    }

    /// How many values fit without reallocating.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes room for `additional` more values.
    pub fn reserve(&mut self, additional: usize) -> Result<(), ShmError> {
        let need = self
            .len
            .checked_add(additional)
            .ok_or(ShmError::OutOfMemory {
                requested: usize::MAX,
            })?;
        if need <= self.cap {
            return Ok(());
        }
        let want = need.max(self.cap.saturating_mul(2)).max(4);
        let new = alloc_array::<T>(want)?;
        // Use the block's rounding slack too.
        // SAFETY: `new` is a live block (T is not zero-sized here: a ZST
        // vector has cap usize::MAX and never gets this far).
        let new_cap = unsafe { crate::usable_size(new.cast()) } / std::mem::size_of::<T>();
        // SAFETY: the new block holds `new_cap >= len` values and is disjoint
        // from the old one; the values are moved (bitwise), so the old block
        // is freed without dropping them. The vector points at the new block
        // before the old one is freed: a process dying in between leaks the
        // old block instead of leaving a dangling vector.
        unsafe {
            ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len);
            let (old, old_cap) = (self.ptr, self.cap);
            self.ptr = new;
            self.cap = new_cap;
            free_array(old, old_cap);
        }
        Ok(())
    }

    /// Whether the vector's header looks sound: its buffer is a live shm
    /// block large enough for its capacity, and `len <= cap` (lock
    /// recovery, before trusting a vector a dead process was changing).
    pub fn is_intact(&self) -> bool {
        if std::mem::size_of::<T>() == 0 {
            return true;
        }
        if self.cap == 0 {
            return self.len == 0;
        }
        self.len <= self.cap
            && self
                .cap
                .checked_mul(std::mem::size_of::<T>())
                .is_some_and(|bytes| crate::is_live(self.ptr.as_ptr().cast(), bytes))
    }

    /// The buffer's address (0 when nothing is allocated): an identity for
    /// [`crate::EntryCheck`].
    pub fn addr(&self) -> usize {
        if self.cap == 0 || std::mem::size_of::<T>() == 0 {
            0
        } else {
            self.ptr.as_ptr() as usize
        }
    }

    /// Keeps only the values for which `keep` returns true (in order); the
    /// others are removed WITHOUT being dropped, so whatever shm they own
    /// leaks. For values that cannot be trusted to drop (a duplicate or a
    /// torn entry after a process died changing the vector).
    pub fn retain_leaking(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            // SAFETY: i < len; a kept value moves down to `kept <= i`
            // (bitwise; the slot it leaves is overwritten or cut off by the
            // new length), a dropped one is simply forgotten.
            unsafe {
                let p = self.ptr.as_ptr();
                if keep(&*p.add(i)) {
                    if kept != i {
                        ptr::copy_nonoverlapping(p.add(i), p.add(kept), 1);
                    }
                    kept += 1;
                }
            }
        }
        self.len = kept;
    }

    /// Appends `value`; on `Err` the vector is unchanged and `value` dropped.
    pub fn push(&mut self, value: T) -> Result<(), ShmError> {
        if self.len == self.cap {
            self.reserve(1)?;
        }
        // SAFETY: len < cap, so the slot is inside the block and unused.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
        Ok(())
    }

    /// Inserts `value` at `index`, shifting the rest right.
    ///
    /// # Panics
    /// If `index > len`.
    pub fn insert(&mut self, index: usize, value: T) -> Result<(), ShmError> {
        assert!(
            index <= self.len,
            "ShmVec::insert index {index} > len {}",
            self.len
        );
        if self.len == self.cap {
            self.reserve(1)?;
        }
        // SAFETY: index <= len < cap; the tail moves one slot right inside
        // the block, then the gap is filled.
        unsafe {
            let p = self.ptr.as_ptr().add(index);
            ptr::copy(p, p.add(1), self.len - index);
            p.write(value);
        }
        self.len += 1;
        Ok(())
    }

    /// Removes and returns the last value.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the slot at the old last index is initialised and is now
        // outside `len`, so it is read exactly once.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Removes the value at `index`, shifting the rest left (keeps order).
    ///
    /// # Panics
    /// If `index >= len`.
    pub fn remove(&mut self, index: usize) -> T {
        assert!(
            index < self.len,
            "ShmVec::remove index {index} >= len {}",
            self.len
        );
        // SAFETY: index < len; the value is read out, then the tail moves
        // left over its slot.
        unsafe {
            let p = self.ptr.as_ptr().add(index);
            let v = p.read();
            ptr::copy(p.add(1), p, self.len - index - 1);
            self.len -= 1;
            v
        }
    }

    /// Removes the value at `index`, moving the last value into its place
    /// (O(1), does not keep order).
    ///
    /// # Panics
    /// If `index >= len`.
    pub fn swap_remove(&mut self, index: usize) -> T {
        assert!(
            index < self.len,
            "ShmVec::swap_remove index {index} >= len {}",
            self.len
        );
        let last = self.len - 1;
        self.swap(index, last);
        // infallible: len > index >= 0, so the vector is not empty.
        match self.pop() {
            Some(v) => v,
            None => unreachable!("non-empty vector"),
        }
    }

    /// Drops every value past the first `len`.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let tail = self.len - len;
        self.len = len;
        // SAFETY: the `tail` values after `len` are initialised and no longer
        // reachable through the vector (len was lowered first, so a panicking
        // Drop cannot cause a double drop).
        unsafe { ptr::slice_from_raw_parts_mut(self.ptr.as_ptr().add(len), tail).drop_in_place() };
    }

    /// Drops every value, keeping the allocation.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps only the values for which `keep` returns true (in order).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut i = 0;
        while i < self.len {
            if keep(&self[i]) {
                i += 1;
            } else {
                drop(self.remove(i));
            }
        }
    }
}

impl<T: ShmSafe> Default for ShmVec<T> {
    fn default() -> Self {
        ShmVec::new()
    }
}

impl<T: ShmSafe> Deref for ShmVec<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised values (dangling + 0 when unallocated).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> DerefMut for ShmVec<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> Drop for ShmVec<T> {
    fn drop(&mut self) {
        self.clear();
        // SAFETY: the block (if any) came from `alloc_array(cap)` and holds
        // no live values any more.
        unsafe { free_array(self.ptr, self.cap) };
    }
}

impl<'a, T: ShmSafe> IntoIterator for &'a ShmVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: ShmSafe> IntoIterator for &'a mut ShmVec<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
