//! [`ShmSafe`]: the types allowed to live in the segment.

use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32,
    AtomicU64, AtomicU8, AtomicUsize,
};

/// Marks a type whose values may live in shared memory and be used from any
/// process that maps the segment.
///
/// # Safety
/// Implement it only for a type that
/// * holds no pointer or reference into private memory (the Rust heap, the
///   stack, statics of one process): only plain data, atomics, and handles
///   into the segment such as `ShmBox`, `ShmVec` or `ShmStr`;
/// * has no `Drop` (nor field with a `Drop`) that touches per-process state
///   — freeing shm is fine, freeing a `Box`/`String`/`Vec` is not;
/// * needs no alignment above 16 bytes (the allocator's alignment);
/// * stays valid when its bytes are read by another process: every field is
///   itself `ShmSafe`.
///
/// `String`, `Vec`, `Box`, `Rc`/`Arc`, references, raw pointers, function
/// pointers and trait objects are therefore never `ShmSafe`:
///
/// ```compile_fail,E0277
/// let b = ser_shm::ShmBox::new(String::from("lives in one process's heap"));
/// ```
///
/// A struct of `ShmSafe` fields opts in explicitly:
///
/// ```
/// use ser_shm::{ShmSafe, ShmStr};
/// struct Contact { uri: ShmStr, expires: u32 }
/// // SAFETY: both fields are ShmSafe, and Contact has no Drop of its own.
/// unsafe impl ShmSafe for Contact {}
/// ```
pub unsafe trait ShmSafe {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: plain data without pointers or Drop.
        unsafe impl ShmSafe for $t {}
    )* };
}

shm_safe!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    AtomicBool,
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: an array is N values of an ShmSafe type, nothing else.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: either nothing or an ShmSafe value.
unsafe impl<T: ShmSafe> ShmSafe for Option<T> {}
// SAFETY: a zero-sized marker holds no data at all.
unsafe impl<T: ?Sized> ShmSafe for std::marker::PhantomData<T> {}

macro_rules! shm_safe_tuple {
    ($($name:ident)+) => {
        // SAFETY: a tuple of ShmSafe values.
        unsafe impl<$($name: ShmSafe),+> ShmSafe for ($($name,)+) {}
    };
}

shm_safe_tuple!(A);
shm_safe_tuple!(A B);
shm_safe_tuple!(A B C);
shm_safe_tuple!(A B C D);
shm_safe_tuple!(A B C D E);
shm_safe_tuple!(A B C D E F);
shm_safe_tuple!(A B C D E F G);
shm_safe_tuple!(A B C D E F G H);
