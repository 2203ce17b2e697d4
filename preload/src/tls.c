/* The preload's per-thread arena caches, in initial-exec TLS.
 *
 * A Rust cdylib reaches its thread-locals through __tls_get_addr (the
 * general-dynamic model: a call and a lookup in the dynamic thread vector on
 * every malloc and free). This library is loaded at program start by
 * LD_PRELOAD, so its TLS is part of the static TLS block and the
 * initial-exec model applies: the block is one %fs-relative address away.
 * (Loading the library later with dlopen would fail for want of static TLS
 * space; LD_PRELOAD is the only supported use.)
 *
 * The block starts all zero, which secalloc documents as a valid empty
 * cache; only the owning thread touches it; and it lives until the thread's
 * TLS is freed, after its pthread key destructors have run. */

#include <stddef.h>

/* At least secalloc::arena::EXTERNAL_THREAD_BLOCK_BYTES; lib.rs asserts it. */
#define SECALLOC_THREAD_BLOCK_BYTES 12288

static __thread unsigned char block[SECALLOC_THREAD_BLOCK_BYTES]
    __attribute__((tls_model("initial-exec"), aligned(64)));

__attribute__((visibility("hidden"))) void *secalloc_preload_thread_block(void) {
    return block;
}

__attribute__((visibility("hidden"))) size_t secalloc_preload_thread_block_bytes(void) {
    return sizeof block;
}
