//! Indexing that cannot panic.
//!
//! Every index the arena uses — a size class, a slot, a cache length, a
//! range of a batch — comes from its own tables and metadata, so one out of
//! range means that metadata is inconsistent: a bug, or a stray write into
//! it. A plain `slice[i]` would then panic, and a panic formats its message
//! and allocates, re-entering the allocator (perhaps under one of its own
//! locks) before an `extern "C"` entry point turns it into an abort. These
//! report `heap corruption` instead, with the bad index in the address
//! field, in one write from the stack. The check is the compare and branch
//! the bounds check was; `tests/no_panic_paths.rs` holds the library to it.

use crate::fatal::{fatal_at, FatalKind};
use core::ops::Range;

/// The allocator's metadata gave an index past the end of a table.
#[cold]
#[inline(never)]
fn out_of_range(index: usize) -> ! {
    fatal_at(FatalKind::Corruption, index)
}

/// `slice[index]`, or a corruption report.
#[inline(always)]
pub(crate) fn at<T>(slice: &[T], index: usize) -> &T {
    match slice.get(index) {
        Some(item) => item,
        None => out_of_range(index),
    }
}

/// `&mut slice[index]`, or a corruption report.
#[inline(always)]
pub(crate) fn at_mut<T>(slice: &mut [T], index: usize) -> &mut T {
    match slice.get_mut(index) {
        Some(item) => item,
        None => out_of_range(index),
    }
}

/// `&slice[range]`, or a corruption report.
#[inline(always)]
pub(crate) fn part<T>(slice: &[T], range: Range<usize>) -> &[T] {
    let end = range.end;
    match slice.get(range) {
        Some(part) => part,
        None => out_of_range(end),
    }
}

/// `&mut slice[range]`, or a corruption report.
#[inline(always)]
pub(crate) fn part_mut<T>(slice: &mut [T], range: Range<usize>) -> &mut [T] {
    let end = range.end;
    match slice.get_mut(range) {
        Some(part) => part,
        None => out_of_range(end),
    }
}

/// `index` if it is below `len`, or a corruption report: checked once, so
/// that the compiler drops the bounds checks of the lookups that follow.
#[inline(always)]
pub(crate) fn below(index: usize, len: usize) -> usize {
    if index >= len {
        out_of_range(index);
    }
    index
}
