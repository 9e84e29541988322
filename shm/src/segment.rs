//! The mapping itself and the process-wide segment handle (replaces
//! Kamailio's `mem/shm.c`).

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::heap::{Heap, MAX_HEAP};
use crate::sys;
use crate::ShmError;

/// A shared anonymous mapping with a heap formatted in it.
pub(crate) struct Segment {
    base: NonNull<u8>,
    len: usize,
    heap: NonNull<Heap>,
}

impl Segment {
    /// Maps `size` bytes (rounded up to whole pages) and formats a heap.
    pub(crate) fn new(size: usize) -> Result<Segment, ShmError> {
        if size == 0 || size > MAX_HEAP {
            return Err(ShmError::InvalidSize { requested: size });
        }
        let len = size.next_multiple_of(sys::page_size());
        let base = sys::mmap_shared(len).map_err(ShmError::Map)?;
        // SAFETY: a fresh page-aligned mapping of `len` bytes, owned by the
        // Segment being built, which unmaps it only when dropped.
        match unsafe { Heap::format(base, len) } {
            Ok(heap) => Ok(Segment { base, len, heap }),
            Err(e) => {
                // SAFETY: our own mapping, nothing points into it yet.
                unsafe { sys::munmap(base, len) };
                Err(e)
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn heap(&self) -> &Heap {
        // SAFETY: the heap was formatted at the start of the mapping, which
        // lives as long as `self`.
        unsafe { self.heap.as_ref() }
    }

    /// Keeps the mapping for the rest of the process (and its children).
    fn leak(self) -> NonNull<Heap> {
        let heap = self.heap;
        std::mem::forget(self);
        heap
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: our own mapping; only test segments are ever dropped, and
        // `&self.heap()` borrows end before the Segment can be dropped.
        unsafe { sys::munmap(self.base, self.len) };
    }
}

/// The heap of the process-wide segment; null until [`init`].
static GLOBAL: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());

/// Length of the process-wide segment (set before `GLOBAL`).
static GLOBAL_LEN: AtomicUsize = AtomicUsize::new(0);

/// Serialises concurrent `init` calls (only tests can race them).
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Maps the shared-memory segment of `size_bytes` (rounded up to whole
/// pages) and makes it the process-wide heap.
///
/// Call once, in the main process, **before any fork**: children inherit the
/// mapping at the same address, which is what makes pointers into it valid
/// in every process. The mapping is never unmapped.
pub fn init(size_bytes: usize) -> Result<(), ShmError> {
    // A poisoned lock only means another init panicked; the check below
    // still tells whether a segment exists.
    let _serial = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if is_initialized() {
        return Err(ShmError::AlreadyInitialized);
    }
    let seg = Segment::new(size_bytes)?;
    GLOBAL_LEN.store(seg.len, Ordering::Relaxed);
    GLOBAL.store(seg.leak().as_ptr(), Ordering::Release);
    Ok(())
}

/// Like [`init`], but succeeds (keeping the existing segment, whatever its
/// size) if the segment is already mapped. For test binaries and tools
/// where several callers may be first; the server itself calls [`init`].
pub fn init_once(size_bytes: usize) -> Result<(), ShmError> {
    match init(size_bytes) {
        Err(ShmError::AlreadyInitialized) => Ok(()),
        r => r,
    }
}

/// Whether `p` points into the process-wide segment (false before
/// [`init`]). Handy in debug assertions: "this must be a shm pointer".
pub fn contains<T>(p: *const T) -> bool {
    let base = GLOBAL.load(Ordering::Acquire) as usize;
    let len = GLOBAL_LEN.load(Ordering::Relaxed);
    let a = p as usize;
    base != 0 && a >= base && a - base < len
}

/// Whether [`init`] has mapped the segment (in this process or an ancestor).
pub fn is_initialized() -> bool {
    !GLOBAL.load(Ordering::Acquire).is_null()
}

/// The process-wide heap.
pub(crate) fn global() -> Result<&'static Heap, ShmError> {
    let p = GLOBAL.load(Ordering::Acquire);
    // SAFETY: non-null only after `init` stored a formatted heap whose
    // mapping is leaked, i.e. valid for the rest of the process.
    unsafe { p.as_ref() }.ok_or(ShmError::NotInitialized)
}
