/* The C runtime's own memcpy, memmove and their _FORTIFY_SOURCE forms, for
 * the preload's checked replacements in copy.rs to forward to once a copy
 * has passed the bounds check.
 *
 * They are looked up with dlsym(RTLD_NEXT) when the library is loaded. A
 * copy made before that (by the loader's relocation of other libraries'
 * constructors, say) takes a byte loop through volatile pointers, which the
 * compiler cannot turn back into a call to memcpy — that would be this
 * library's own memcpy, and the loop would never end. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

typedef void *(*copy_fn)(void *, const void *, size_t);
typedef void *(*copy_chk_fn)(void *, const void *, size_t, size_t);

static copy_fn next_memcpy, next_memmove;
static copy_chk_fn next_memcpy_chk, next_memmove_chk;

__attribute__((constructor)) static void find_next_copies(void) {
    __atomic_store_n(&next_memcpy, (copy_fn)dlsym(RTLD_NEXT, "memcpy"), __ATOMIC_RELEASE);
    __atomic_store_n(&next_memmove, (copy_fn)dlsym(RTLD_NEXT, "memmove"), __ATOMIC_RELEASE);
    __atomic_store_n(&next_memcpy_chk, (copy_chk_fn)dlsym(RTLD_NEXT, "__memcpy_chk"),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&next_memmove_chk, (copy_chk_fn)dlsym(RTLD_NEXT, "__memmove_chk"),
                     __ATOMIC_RELEASE);
}

/* memmove semantics, byte by byte, forwards or backwards as overlap needs. */
static void *byte_move(void *dst, const void *src, size_t n) {
    volatile unsigned char *d = dst;
    const volatile unsigned char *s = src;
    if (d <= s || s + n <= d) {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else {
        for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
    }
    return dst;
}

__attribute__((visibility("hidden"))) void *secalloc_preload_next_memcpy(void *dst,
                                                                         const void *src,
                                                                         size_t n) {
    copy_fn next = __atomic_load_n(&next_memcpy, __ATOMIC_ACQUIRE);
    return next ? next(dst, src, n) : byte_move(dst, src, n);
}

__attribute__((visibility("hidden"))) void *secalloc_preload_next_memmove(void *dst,
                                                                          const void *src,
                                                                          size_t n) {
    copy_fn next = __atomic_load_n(&next_memmove, __ATOMIC_ACQUIRE);
    return next ? next(dst, src, n) : byte_move(dst, src, n);
}

/* The fortified forms abort when n exceeds the destination object's size;
 * the runtime's own does so with its message, the fallback plainly. */
__attribute__((visibility("hidden"))) void *secalloc_preload_next_memcpy_chk(
    void *dst, const void *src, size_t n, size_t dst_len) {
    copy_chk_fn next = __atomic_load_n(&next_memcpy_chk, __ATOMIC_ACQUIRE);
    if (next) return next(dst, src, n, dst_len);
    if (n > dst_len) abort();
    return byte_move(dst, src, n);
}

__attribute__((visibility("hidden"))) void *secalloc_preload_next_memmove_chk(
    void *dst, const void *src, size_t n, size_t dst_len) {
    copy_chk_fn next = __atomic_load_n(&next_memmove_chk, __ATOMIC_ACQUIRE);
    if (next) return next(dst, src, n, dst_len);
    if (n > dst_len) abort();
    return byte_move(dst, src, n);
}
