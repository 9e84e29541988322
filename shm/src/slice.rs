//! [`ShmSlice`] (a fixed-length array in the segment) and [`ShmStr`] (bytes).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use crate::safe::ShmSafe;
use crate::{alloc_array, free_array, ShmError};

/// A fixed number of values in one shm block (hash-table buckets, lock sets,
/// message buffers).
pub struct ShmSlice<T: ShmSafe> {
    ptr: NonNull<T>,
    len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: owns its elements, like Box<[T]>.
unsafe impl<T: ShmSafe + Send> Send for ShmSlice<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe + Sync> Sync for ShmSlice<T> {}
// SAFETY: points into the segment only; Drop drops ShmSafe elements and
// frees shm.
unsafe impl<T: ShmSafe> ShmSafe for ShmSlice<T> {}

/// Drops the initialised prefix and frees the block if `from_fn`'s closure
/// panics.
struct PartialInit<T> {
    ptr: NonNull<T>,
    cap: usize,
    done: usize,
}

impl<T> Drop for PartialInit<T> {
    fn drop(&mut self) {
        // SAFETY: exactly `done` elements were written; the block came from
        // `alloc_array(cap)`.
        unsafe {
            ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.done).drop_in_place();
            free_array(self.ptr, self.cap);
        }
    }
}

impl<T: ShmSafe> ShmSlice<T> {
    /// An empty slice; allocates nothing.
    pub const fn empty() -> Self {
        ShmSlice {
            ptr: NonNull::dangling(),
            len: 0,
            _owns: PhantomData,
        }
    }

    /// Whether the slice's pointer is a live shm block large enough for its
    /// length (lock recovery).
    pub fn is_intact(&self) -> bool {
        if self.len == 0 || std::mem::size_of::<T>() == 0 {
            return true;
        }
        self.len
            .checked_mul(std::mem::size_of::<T>())
            .is_some_and(|bytes| crate::is_live(self.ptr.as_ptr().cast(), bytes))
    }

    /// `n` values, the i-th being `f(i)`.
    pub fn from_fn(n: usize, mut f: impl FnMut(usize) -> T) -> Result<Self, ShmError> {
        let ptr = alloc_array::<T>(n)?;
        let mut init = PartialInit {
            ptr,
            cap: n,
            done: 0,
        };
        while init.done < n {
            // SAFETY: `done < n`, inside the block; the slot is unwritten.
            unsafe { ptr.as_ptr().add(init.done).write(f(init.done)) };
            init.done += 1;
        }
        std::mem::forget(init);
        Ok(ShmSlice {
            ptr,
            len: n,
            _owns: PhantomData,
        })
    }

    /// A copy of `src` in shm.
    pub fn copy_from(src: &[T]) -> Result<Self, ShmError>
    where
        T: Copy,
    {
        let ptr = alloc_array::<T>(src.len())?;
        // SAFETY: the fresh block holds src.len() values and cannot overlap
        // `src`, which is borrowed and alive.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), ptr.as_ptr(), src.len()) };
        Ok(ShmSlice {
            ptr,
            len: src.len(),
            _owns: PhantomData,
        })
    }

    /// Never frees the values; see [`crate::ShmBox::leak`].
    pub fn leak(s: Self) -> &'static [T] {
        let s = std::mem::ManuallyDrop::new(s);
        // SAFETY: the block is never freed and the segment never unmapped.
        unsafe { std::slice::from_raw_parts(s.ptr.as_ptr(), s.len) }
    }
}

impl<T: ShmSafe> Deref for ShmSlice<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised values (or a dangling, aligned pointer
        // with len 0 / zero-sized T, which from_raw_parts allows).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> DerefMut for ShmSlice<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: ShmSafe> Drop for ShmSlice<T> {
    fn drop(&mut self) {
        // SAFETY: we own `len` initialised values in a block from
        // `alloc_array(len)`.
        unsafe {
            ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len).drop_in_place();
            free_array(self.ptr, self.len);
        }
    }
}

impl<T: ShmSafe> Default for ShmSlice<T> {
    fn default() -> Self {
        ShmSlice::empty()
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ShmSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An immutable byte string in shm (a Call-ID, a contact URI, a whole
/// message buffer). Usually text, but SIP does not promise UTF-8.
#[derive(Default)]
pub struct ShmStr {
    bytes: ShmSlice<u8>,
}

// SAFETY: a ShmSlice<u8>.
unsafe impl ShmSafe for ShmStr {}

impl ShmStr {
    /// An empty string; allocates nothing.
    pub const fn empty() -> Self {
        ShmStr {
            bytes: ShmSlice::empty(),
        }
    }

    /// A copy of `bytes` in shm.
    pub fn new(bytes: &[u8]) -> Result<Self, ShmError> {
        Ok(ShmStr {
            bytes: ShmSlice::copy_from(bytes)?,
        })
    }

    /// Whether the string's pointer is a live shm block large enough for
    /// its length (lock recovery: see [`crate::EntryCheck`]).
    pub fn is_intact(&self) -> bool {
        self.bytes.is_intact()
    }

    /// The block's address (0 for an empty string): an identity for
    /// [`crate::EntryCheck`].
    pub fn addr(&self) -> usize {
        if self.bytes.is_empty() {
            0
        } else {
            self.bytes.as_ptr() as usize
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as text, if they are UTF-8.
    pub fn as_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.bytes)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Another shm copy (cloning allocates, so it can fail).
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        ShmStr::new(self.as_bytes())
    }
}

impl TryFrom<&[u8]> for ShmStr {
    type Error = ShmError;
    fn try_from(b: &[u8]) -> Result<Self, ShmError> {
        ShmStr::new(b)
    }
}

impl TryFrom<&str> for ShmStr {
    type Error = ShmError;
    fn try_from(s: &str) -> Result<Self, ShmError> {
        ShmStr::new(s.as_bytes())
    }
}

impl PartialEq for ShmStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShmStr {}

impl PartialEq<[u8]> for ShmStr {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for ShmStr {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl PartialEq<str> for ShmStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShmStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for ShmStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl fmt::Display for ShmStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}
