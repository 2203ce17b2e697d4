//! C++ `operator new` and `operator delete`, every standard form (scalar
//! and array; plain, `nothrow`, `align_val_t`; sized deletes), over the
//! same arena as `malloc`, with the form of `new` recorded out of band so
//! that each `delete` can be checked against it:
//! - `delete` of a block from `new[]`, or `delete[]` of one from `new`,
//!   aborts with `secalloc: fatal: mismatched new/delete: <address>`;
//! - a sized `delete` whose size is not the one the block was allocated
//!   with aborts with `secalloc: fatal: sized delete with the wrong size:
//!   <address>`.
//!
//! **Programs that replace operators.** C++ lets a program replace any of
//! these functions, and the standard defines the others in terms of the
//! replaced ones (the default `nothrow` new calls the throwing one, the
//! default sized delete calls the unsized one, ...). If the program defines
//! any of the twenty itself (the first lookup finds its definition, not
//! ours), every operator here forwards to the C++ runtime's own (the next
//! definition after this library), which implements exactly those default
//! semantics on top of `malloc` and `free` — this arena, with no pairing
//! checks. (Checking anyway aborted correct programs: a replaced `new[]`
//! calling `malloc` left no record for our `delete[]`, a replaced unsized
//! delete was bypassed by our sized one — found by the issue-14 attack
//! review.)
//!
//! **Refusals.** A throwing `new` that the arena refuses (out of memory or
//! lock budget) hands the request to the runtime's operator, which runs
//! the program's new-handler and throws `std::bad_alloc` as the standard
//! requires: the exception unwinds through this frame, hence the
//! `C-unwind` ABI. A `nothrow` `new` the arena refuses goes to the
//! runtime's `nothrow` operator, which runs the new-handler too and returns
//! null if that fails.

use crate::SURFACE;
use core::ffi::{c_void, CStr};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use secalloc::__unstable::sys;

/// `std::nothrow_t` arrives as a reference; only its ABI matters here.
type NoThrow = *const c_void;

/// Whether the program replaced any operator (0 not yet known, 1 no, 2 yes).
static REPLACED: AtomicU8 = AtomicU8::new(0);

/// The symbols of every operator defined here.
const OPERATORS: [&CStr; 20] = [
    c"_Znwm",
    c"_Znam",
    c"_ZnwmSt11align_val_t",
    c"_ZnamSt11align_val_t",
    c"_ZnwmRKSt9nothrow_t",
    c"_ZnamRKSt9nothrow_t",
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
    c"_ZdlPv",
    c"_ZdlPvm",
    c"_ZdlPvSt11align_val_t",
    c"_ZdlPvmSt11align_val_t",
    c"_ZdlPvRKSt9nothrow_t",
    c"_ZdlPvSt11align_val_tRKSt9nothrow_t",
    c"_ZdaPv",
    c"_ZdaPvm",
    c"_ZdaPvSt11align_val_t",
    c"_ZdaPvmSt11align_val_t",
    c"_ZdaPvRKSt9nothrow_t",
    c"_ZdaPvSt11align_val_tRKSt9nothrow_t",
];

/// Whether the program defines any of the operators itself: then every
/// operator here forwards to the runtime's (see the module comment).
/// Looked up once; the lookups may allocate (through `malloc`).
fn replaced() -> bool {
    match REPLACED.load(Ordering::Acquire) {
        1 => false,
        2 => true,
        _ => {
            // Our own code's address, taken from a function no one can
            // interpose (not exported): the first definition of each
            // operator must be in the same object, this library.
            let here = replaced as fn() -> bool as *const () as usize;
            let replaced = OPERATORS.iter().any(|&name| {
                let first = sys::global_symbol(name);
                first != 0 && !sys::same_object(first, here)
            });
            REPLACED.store(if replaced { 2 } else { 1 }, Ordering::Release);
            replaced
        }
    }
}

/// The runtime's definition of `name` (the next after this library),
/// looked up once into `cache`; 0 if there is none.
fn runtime(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        f = sys::next_symbol(name);
        cache.store(f, Ordering::Release);
    }
    f
}

/// Defines one `operator new`: `$args` are its parameters after the size,
/// `$align` the alignment it asks for, `$array` whether it is `new[]`, and
/// `$throws` whether a refusal must end in the runtime's operator (the
/// throwing forms abort when there is none; the `nothrow` ones return null).
macro_rules! new_operator {
    ($name:ident, $symbol:expr, ($($arg:ident: $ty:ty),*), $align:expr, $array:expr, $throws:expr) => {
        /// A C++ `operator new` form.
        ///
        /// # Safety
        /// Called by C++ code as the operator.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize $(, $arg: $ty)*) -> *mut c_void {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            type Runtime = unsafe extern "C-unwind" fn(usize $(, $ty)*) -> *mut c_void;
            let align: usize = $align;
            if !replaced() {
                let p = SURFACE.cxx_new(size, align, $array);
                if !p.is_null() {
                    return p;
                }
            }
            let f = runtime(&NEXT, $symbol);
            if f == 0 {
                if replaced() {
                    // No runtime to defer to: the arena, unchecked (a
                    // throwing form never returns null: it aborts below).
                    let p = SURFACE.cxx_new(size, align, $array);
                    if !p.is_null() || !$throws {
                        return p;
                    }
                }
                if $throws {
                    sys::fatal("out of memory in operator new, and no C++ runtime operator to throw");
                }
                return core::ptr::null_mut();
            }
            // SAFETY: `f` is the runtime's definition of this very operator.
            let next = unsafe { core::mem::transmute::<usize, Runtime>(f) };
            // SAFETY: called as C++ calls the operator.
            let p = unsafe { next(size $(, $arg)*) };
            if !replaced() {
                // The runtime's retry went through `malloc` or
                // `aligned_alloc` (which may round the size up): record the
                // form and the size asked for.
                SURFACE.cxx_record(p, $array, Some(size));
            }
            p
        }
    };
}

new_operator!(_Znwm, c"_Znwm", (), 16, false, true);
new_operator!(_Znam, c"_Znam", (), 16, true, true);
new_operator!(_ZnwmSt11align_val_t, c"_ZnwmSt11align_val_t", (al: usize), al, false, true);
new_operator!(_ZnamSt11align_val_t, c"_ZnamSt11align_val_t", (al: usize), al, true, true);
new_operator!(_ZnwmRKSt9nothrow_t, c"_ZnwmRKSt9nothrow_t", (nt: NoThrow), 16, false, false);
new_operator!(_ZnamRKSt9nothrow_t, c"_ZnamRKSt9nothrow_t", (nt: NoThrow), 16, true, false);
new_operator!(
    _ZnwmSt11align_val_tRKSt9nothrow_t,
    c"_ZnwmSt11align_val_tRKSt9nothrow_t",
    (al: usize, nt: NoThrow),
    al,
    false,
    false
);
new_operator!(
    _ZnamSt11align_val_tRKSt9nothrow_t,
    c"_ZnamSt11align_val_tRKSt9nothrow_t",
    (al: usize, nt: NoThrow),
    al,
    true,
    false
);

/// Defines one `operator delete`: `$args` its parameters after the pointer,
/// `$size` the size it names (sized forms), `$array` whether it is
/// `delete[]`.
macro_rules! delete_operator {
    ($name:ident, $symbol:expr, ($($arg:ident: $ty:ty),*), $size:expr, $array:expr) => {
        /// A C++ `operator delete` form.
        ///
        /// # Safety
        /// `p` is null or a block from the matching `operator new`.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(p: *mut c_void $(, $arg: $ty)*) {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            type Runtime = unsafe extern "C-unwind" fn(*mut c_void $(, $ty)*);
            if replaced() {
                let f = runtime(&NEXT, $symbol);
                if f != 0 {
                    // SAFETY: `f` is the runtime's definition of this very
                    // operator.
                    let next = unsafe { core::mem::transmute::<usize, Runtime>(f) };
                    // SAFETY: called as C++ calls the operator.
                    return unsafe { next(p $(, $arg)*) };
                }
                // SAFETY: forwarded from the caller.
                return unsafe { SURFACE.free(p) };
            }
            let size: Option<usize> = $size;
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, size, $array) }
        }
    };
}

delete_operator!(_ZdlPv, c"_ZdlPv", (), None, false);
delete_operator!(_ZdlPvm, c"_ZdlPvm", (n: usize), Some(n), false);
delete_operator!(_ZdlPvSt11align_val_t, c"_ZdlPvSt11align_val_t", (al: usize), None, false);
delete_operator!(
    _ZdlPvmSt11align_val_t,
    c"_ZdlPvmSt11align_val_t",
    (n: usize, al: usize),
    Some(n),
    false
);
delete_operator!(_ZdlPvRKSt9nothrow_t, c"_ZdlPvRKSt9nothrow_t", (nt: NoThrow), None, false);
delete_operator!(
    _ZdlPvSt11align_val_tRKSt9nothrow_t,
    c"_ZdlPvSt11align_val_tRKSt9nothrow_t",
    (al: usize, nt: NoThrow),
    None,
    false
);
delete_operator!(_ZdaPv, c"_ZdaPv", (), None, true);
delete_operator!(_ZdaPvm, c"_ZdaPvm", (n: usize), Some(n), true);
delete_operator!(_ZdaPvSt11align_val_t, c"_ZdaPvSt11align_val_t", (al: usize), None, true);
delete_operator!(
    _ZdaPvmSt11align_val_t,
    c"_ZdaPvmSt11align_val_t",
    (n: usize, al: usize),
    Some(n),
    true
);
delete_operator!(_ZdaPvRKSt9nothrow_t, c"_ZdaPvRKSt9nothrow_t", (nt: NoThrow), None, true);
delete_operator!(
    _ZdaPvSt11align_val_tRKSt9nothrow_t,
    c"_ZdaPvSt11align_val_tRKSt9nothrow_t",
    (al: usize, nt: NoThrow),
    None,
    true
);
