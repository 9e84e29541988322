//! [`ShmBox`]: one value in the segment.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::safe::ShmSafe;
use crate::{alloc_array, free_array, ShmError};

/// An owned value in shared memory, like `Box` but allocated from the
/// segment; dropping it frees the block.
///
/// The pointer is valid in every process that inherited the segment, so a
/// `ShmBox` may itself be stored in shm (it is [`ShmSafe`]). Exactly one
/// owner may drop it: hand ownership over under a lock, or [`ShmBox::leak`]
/// it for structures that live as long as the server.
pub struct ShmBox<T: ShmSafe> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

// SAFETY: like Box: owning the value, the box is as Send/Sync as T.
unsafe impl<T: ShmSafe + Send> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Sync> Sync for ShmBox<T> {}
// SAFETY: the box points into the segment only and its Drop frees shm.
unsafe impl<T: ShmSafe> ShmSafe for ShmBox<T> {}

impl<T: ShmSafe> ShmBox<T> {
    /// Moves `value` into a new shm block.
    pub fn new(value: T) -> Result<Self, ShmError> {
        let ptr = alloc_array::<T>(1)?;
        // SAFETY: a fresh block, aligned and large enough for one T.
        unsafe { ptr.as_ptr().write(value) };
        Ok(ShmBox {
            ptr,
            _owns: PhantomData,
        })
    }

    /// Never frees the value; returns a reference valid in this process and
    /// in every process forked afterwards.
    pub fn leak(b: Self) -> &'static T {
        let ptr = ShmBox::into_raw(b);
        // SAFETY: the block is never freed, and the segment stays mapped for
        // the life of every process sharing it.
        unsafe { ptr.as_ref() }
    }

    /// Gives up ownership, e.g. to publish the value through an atomic
    /// pointer; see [`ShmBox::from_raw`].
    pub fn into_raw(b: Self) -> NonNull<T> {
        let ptr = b.ptr;
        std::mem::forget(b);
        ptr
    }

    /// Takes ownership back of a pointer from [`ShmBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` (in any process sharing the segment) and
    /// no other `ShmBox` owns it.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        ShmBox {
            ptr,
            _owns: PhantomData,
        }
    }

    /// The address of the value (the same in every process).
    pub fn as_ptr(b: &Self) -> *const T {
        b.ptr.as_ptr()
    }
}

impl<T: ShmSafe> Deref for ShmBox<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the box owns an initialised T.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> DerefMut for ShmBox<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns an initialised T; `&mut self` is unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: ShmSafe> Drop for ShmBox<T> {
    fn drop(&mut self) {
        // SAFETY: we own an initialised T in a block from `alloc_array(1)`,
        // and nothing uses either after this.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            free_array(self.ptr, 1);
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
