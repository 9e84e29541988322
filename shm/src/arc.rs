//! [`ShmArc`]: a reference-counted value in the segment.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

use crate::safe::ShmSafe;
use crate::{alloc_array, free_array, ShmError};

#[repr(C)]
struct Inner<T> {
    count: AtomicUsize,
    value: T,
}

/// A shared, reference-counted value in shm, like `Arc`: the last handle
/// dropped (in whichever process) frees it.
///
/// For objects reached from several places at once, e.g. a transaction
/// referenced by its hash bucket and by timer lists. The count lives in shm,
/// so handles may be cloned and dropped in any process. A process that dies
/// holding handles leaks their references (the value is never freed).
pub struct ShmArc<T: ShmSafe> {
    ptr: NonNull<Inner<T>>,
}

// SAFETY: as for Arc: the value is shared between threads (and processes)
// and dropped by whichever handle is last, so T must be Send + Sync.
unsafe impl<T: ShmSafe + Send + Sync> Send for ShmArc<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Send + Sync> Sync for ShmArc<T> {}
// SAFETY: points into the segment only; Drop touches the shm count and
// frees shm.
unsafe impl<T: ShmSafe> ShmSafe for ShmArc<T> {}

impl<T: ShmSafe> ShmArc<T> {
    /// Moves `value` into shm with a count of 1.
    pub fn new(value: T) -> Result<Self, ShmError> {
        let ptr = alloc_array::<Inner<T>>(1)?;
        // SAFETY: a fresh block, aligned and large enough for one Inner<T>.
        unsafe {
            ptr.as_ptr().write(Inner {
                count: AtomicUsize::new(1),
                value,
            })
        };
        Ok(ShmArc { ptr })
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: the block lives while any handle (this one) exists.
        unsafe { self.ptr.as_ref() }
    }

    /// How many handles exist right now (a snapshot).
    pub fn strong_count(a: &Self) -> usize {
        a.inner().count.load(Ordering::Acquire)
    }

    /// Whether two handles point to the same value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// Turns the handle into a pointer without dropping its reference (to
    /// store it in a plain shm word); see [`ShmArc::from_raw`].
    pub fn into_raw(a: Self) -> NonNull<T> {
        let a = std::mem::ManuallyDrop::new(a);
        // SAFETY: `value` is a field of the live Inner.
        unsafe { NonNull::new_unchecked(std::ptr::addr_of_mut!((*a.ptr.as_ptr()).value)) }
    }

    /// Takes back a reference given up by [`ShmArc::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` on a `ShmArc<T>` (in any process sharing
    /// the segment), and each `into_raw` is matched by one `from_raw`.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        let offset = std::mem::offset_of!(Inner<T>, value);
        // SAFETY: `ptr` points at the `value` field of an Inner<T>, so
        // stepping back by the field offset yields the Inner.
        let inner = unsafe { ptr.as_ptr().cast::<u8>().sub(offset).cast::<Inner<T>>() };
        // SAFETY: derived from a non-null pointer inside the same block.
        ShmArc {
            ptr: unsafe { NonNull::new_unchecked(inner) },
        }
    }
}

impl<T: ShmSafe> Clone for ShmArc<T> {
    fn clone(&self) -> Self {
        let old = self.inner().count.fetch_add(1, Ordering::Relaxed);
        // A count this high means handles were leaked without bound (e.g.
        // mem::forget in a loop); wrapping would free a live value.
        if old > isize::MAX as usize {
            std::process::abort();
        }
        ShmArc { ptr: self.ptr }
    }
}

impl<T: ShmSafe> Deref for ShmArc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: ShmSafe> Drop for ShmArc<T> {
    fn drop(&mut self) {
        if self.inner().count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Synchronise with every other handle's release before freeing.
        fence(Ordering::Acquire);
        // SAFETY: this was the last handle: nobody else can reach the value,
        // which is dropped once and its block (from alloc_array(1)) freed.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            free_array(self.ptr, 1);
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
