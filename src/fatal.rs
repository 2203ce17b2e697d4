//! The one table of fatal messages: every detected misuse of the allocator
//! ends here, with exactly one message per bug class, written without
//! allocating, then `abort()`. Tests compare these strings exactly.

/// A class of allocator misuse (or corruption) that ends the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FatalKind {
    /// A block freed twice (its live mark was already clear).
    DoubleFree,
    /// A free of a pointer that is not the start of a live allocation.
    InvalidFree,
    /// A free or realloc whose layout is not the allocation's.
    LayoutMismatch,
    /// A realloc of a block that was already freed.
    UseAfterFree,
    /// A realloc of a pointer the arena never issued.
    InvalidRealloc,
    /// `malloc_usable_size` of a pointer the arena never issued.
    InvalidUsableSize,
    /// The arena's own bookkeeping contradicts itself.
    Corruption,
    /// A free slot was not zero when handed out again: written after free.
    WriteAfterFree,
    /// The slack past a block's end was not zero at its free: an overflow.
    HeapOverflow,
    /// A `memcpy` or `memmove` (under the preload) whose source or
    /// destination runs outside the live block it starts in, or starts in
    /// arena memory no live block holds.
    CopyOutOfBounds,
    /// C++ `delete` of a block from `new[]`, or `delete[]` of one from `new`.
    MismatchedDelete,
    /// C++ sized `delete` with another size than the block was allocated with.
    SizedDeleteMismatch,
}

impl FatalKind {
    /// The message, after `secalloc: fatal: `.
    pub(crate) const fn message(self) -> &'static str {
        match self {
            FatalKind::DoubleFree => "double free detected",
            FatalKind::InvalidFree => {
                "invalid free: a pointer secalloc did not allocate (or already freed)"
            }
            FatalKind::LayoutMismatch => {
                "mismatched layout: the free or realloc layout does not match the allocation"
            }
            FatalKind::UseAfterFree => "use after free: realloc of a freed pointer",
            FatalKind::InvalidRealloc => {
                "invalid realloc: a pointer secalloc did not allocate (or already freed)"
            }
            FatalKind::InvalidUsableSize => {
                "invalid pointer: malloc_usable_size of a pointer secalloc did not allocate"
            }
            FatalKind::Corruption => "heap corruption: allocator metadata is inconsistent",
            FatalKind::WriteAfterFree => "write after free",
            FatalKind::HeapOverflow => "heap overflow",
            FatalKind::CopyOutOfBounds => "copy out of bounds",
            FatalKind::MismatchedDelete => "mismatched new/delete",
            FatalKind::SizedDeleteMismatch => "sized delete with the wrong size",
        }
    }
}

/// Prints `secalloc: fatal: <message>` on stderr and aborts.
#[cold]
pub(crate) fn fatal(kind: FatalKind) -> ! {
    crate::sys::fatal(kind.message())
}

/// Prints `secalloc: fatal: <message>: 0x<address>` on stderr and aborts
/// (for the detections that name the block they found).
#[cold]
pub(crate) fn fatal_at(kind: FatalKind, addr: usize) -> ! {
    let mut hex = [0u8; 18];
    hex[0] = b'0';
    hex[1] = b'x';
    for i in 0..16 {
        let nibble = (addr >> ((15 - i) * 4)) & 0xF;
        hex[2 + i] = b"0123456789abcdef"[nibble];
    }
    crate::sys::fatal_parts(&[kind.message().as_bytes(), b": ", &hex])
}
