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
//! A throwing `new` that the arena refuses (out of memory or lock budget)
//! hands the request to the C++ runtime's own operator (the next definition
//! after this library), which runs the program's new-handler and throws
//! `std::bad_alloc` as the standard requires: the exception unwinds through
//! this frame, hence the `C-unwind` ABI. Without a C++ runtime in the
//! process no one can call these operators.

use crate::SURFACE;
use core::ffi::{c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};
use secalloc::__unstable::sys;

/// `std::nothrow_t` and `std::align_val_t` arrive as a reference and a
/// `size_t`; only their ABI matters here.
type NoThrow = *const c_void;

/// The C++ runtime's throwing operator, looked up on first refusal.
type RuntimeNew = unsafe extern "C-unwind" fn(usize) -> *mut c_void;
type RuntimeNewAligned = unsafe extern "C-unwind" fn(usize, usize) -> *mut c_void;

/// Finds (once) the next definition of `name`; 0 if there is none.
fn runtime_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        f = sys::next_symbol(name);
        cache.store(f, Ordering::Release);
    }
    f
}

/// A throwing `new` the arena refused: the runtime's operator retries
/// through `malloc` (this arena) after running the new-handler, or throws.
/// Aborts if there is no runtime operator to defer to.
///
/// # Safety
/// `f` is 0 or the address of a function of type `RuntimeNew`.
unsafe fn refused(f: usize, size: usize, array: bool) -> *mut c_void {
    if f == 0 {
        sys::fatal("out of memory in operator new, and no C++ runtime operator to throw");
    }
    // SAFETY: `f` is the runtime's `operator new(size_t)` (caller).
    let next: RuntimeNew = unsafe { core::mem::transmute::<usize, RuntimeNew>(f) };
    // SAFETY: the runtime's operator new, called as C++ does.
    let p = unsafe { next(size) };
    SURFACE.cxx_record(p, array);
    p
}

/// As [`refused`], for the `align_val_t` forms.
///
/// # Safety
/// `f` is 0 or the address of a function of type `RuntimeNewAligned`.
unsafe fn refused_aligned(f: usize, size: usize, align: usize, array: bool) -> *mut c_void {
    if f == 0 {
        sys::fatal("out of memory in operator new, and no C++ runtime operator to throw");
    }
    // SAFETY: `f` is the runtime's `operator new(size_t, align_val_t)`.
    let next: RuntimeNewAligned = unsafe { core::mem::transmute::<usize, RuntimeNewAligned>(f) };
    // SAFETY: the runtime's operator new, called as C++ does.
    let p = unsafe { next(size, align) };
    SURFACE.cxx_record(p, array);
    p
}

macro_rules! throwing_new {
    ($name:ident, $symbol:expr, $array:expr) => {
        /// C++ throwing `operator new` / `new[]`.
        ///
        /// # Safety
        /// Called by C++ code as the operator.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize) -> *mut c_void {
            let p = SURFACE.cxx_new(size, 16, $array);
            if !p.is_null() {
                return p;
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let f = runtime_symbol(&NEXT, $symbol);
            // SAFETY: `f` is the runtime's definition of this very operator.
            unsafe { refused(f, size, $array) }
        }
    };
}

macro_rules! throwing_new_aligned {
    ($name:ident, $symbol:expr, $array:expr) => {
        /// C++ throwing aligned `operator new` / `new[]`.
        ///
        /// # Safety
        /// Called by C++ code as the operator.
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(size: usize, align: usize) -> *mut c_void {
            let p = SURFACE.cxx_new(size, align, $array);
            if !p.is_null() {
                return p;
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let f = runtime_symbol(&NEXT, $symbol);
            // SAFETY: `f` is the runtime's definition of this very operator.
            unsafe { refused_aligned(f, size, align, $array) }
        }
    };
}

throwing_new!(_Znwm, c"_Znwm", false);
throwing_new!(_Znam, c"_Znam", true);
throwing_new_aligned!(_ZnwmSt11align_val_t, c"_ZnwmSt11align_val_t", false);
throwing_new_aligned!(_ZnamSt11align_val_t, c"_ZnamSt11align_val_t", true);

/// `operator new(size_t, const nothrow_t&)`: null on refusal.
#[no_mangle]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _: NoThrow) -> *mut c_void {
    SURFACE.cxx_new(size, 16, false)
}

/// `operator new[](size_t, const nothrow_t&)`.
#[no_mangle]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _: NoThrow) -> *mut c_void {
    SURFACE.cxx_new(size, 16, true)
}

/// `operator new(size_t, align_val_t, const nothrow_t&)`.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _: NoThrow,
) -> *mut c_void {
    SURFACE.cxx_new(size, align, false)
}

/// `operator new[](size_t, align_val_t, const nothrow_t&)`.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _: NoThrow,
) -> *mut c_void {
    SURFACE.cxx_new(size, align, true)
}

macro_rules! deletes {
    ($array:expr, $plain:ident, $sized:ident, $aligned:ident, $sized_aligned:ident,
     $nothrow:ident, $aligned_nothrow:ident) => {
        /// C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// `p` is null or a block from the matching `operator new`.
        #[no_mangle]
        pub unsafe extern "C" fn $plain(p: *mut c_void) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, None, $array) }
        }

        /// Sized C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// As the plain form; `size` is the size passed to `new`.
        #[no_mangle]
        pub unsafe extern "C" fn $sized(p: *mut c_void, size: usize) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, Some(size), $array) }
        }

        /// Aligned C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// As the plain form.
        #[no_mangle]
        pub unsafe extern "C" fn $aligned(p: *mut c_void, _align: usize) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, None, $array) }
        }

        /// Sized, aligned C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// As the sized form.
        #[no_mangle]
        pub unsafe extern "C" fn $sized_aligned(p: *mut c_void, size: usize, _align: usize) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, Some(size), $array) }
        }

        /// `nothrow` C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// As the plain form.
        #[no_mangle]
        pub unsafe extern "C" fn $nothrow(p: *mut c_void, _: NoThrow) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, None, $array) }
        }

        /// `nothrow`, aligned C++ `operator delete` / `delete[]`.
        ///
        /// # Safety
        /// As the plain form.
        #[no_mangle]
        pub unsafe extern "C" fn $aligned_nothrow(p: *mut c_void, _align: usize, _: NoThrow) {
            // SAFETY: forwarded from the caller.
            unsafe { SURFACE.cxx_delete(p, None, $array) }
        }
    };
}

deletes!(
    false,
    _ZdlPv,
    _ZdlPvm,
    _ZdlPvSt11align_val_t,
    _ZdlPvmSt11align_val_t,
    _ZdlPvRKSt9nothrow_t,
    _ZdlPvSt11align_val_tRKSt9nothrow_t
);
deletes!(
    true,
    _ZdaPv,
    _ZdaPvm,
    _ZdaPvSt11align_val_t,
    _ZdaPvmSt11align_val_t,
    _ZdaPvRKSt9nothrow_t,
    _ZdaPvSt11align_val_tRKSt9nothrow_t
);
