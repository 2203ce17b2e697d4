// A heap-misuse suite in the image of the ones hardened allocators are
// compared with (one misuse per run; argv[1] the case, argv[2] the block
// size: 8, 4096 or 262144). tests/issue14_misuse.rs runs every case at
// every size under the preload at each check level and tabulates what is
// caught: an abort with secalloc's message, a fault, or (for the reuse
// cases) a different address. A case that returns normally was missed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>

#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static void churn(size_t n, int times) {
    for (int i = 0; i < times; i++) {
        void *volatile q = malloc(n);
        free(q);
    }
}

// The closest pair of 64 blocks of n bytes: q right after p's slot.
static void adjacent(size_t n, char **p, char **q) {
    static char *b[64];
    for (int i = 0; i < 64; i++) b[i] = static_cast<char *>(malloc(n));
    *p = *q = nullptr;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            if (b[j] > b[i] && (!*p || b[j] - b[i] < *q - *p)) {
                *p = b[i];
                *q = b[j];
            }
}

__attribute__((noinline)) static void scalar_delete(char *p) {
    KEEP(p);
    delete p;
}
__attribute__((noinline)) static void array_delete(char *p) {
    KEEP(p);
    delete[] p;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *c = argv[1];
    size_t n = strtoul(argv[2], nullptr, 10);
    static char source[(256 << 10) + 64];
    memset(source, 'X', sizeof source);
    volatile char *p = static_cast<char *>(malloc(n));
    if (!strcmp(c, "overflow_1")) {
        p[n] = 'X';
        free((void *)p);
    } else if (!strcmp(c, "overflow_32_memcpy")) {
        memcpy((char *)p, source, n + 32);
        KEEP(p);
        free((void *)p);
    } else if (!strcmp(c, "overflow_usable_size")) {
        // As such suites write it: past what malloc_usable_size reports.
        size_t usable = malloc_usable_size((void *)p);
        p[usable + 7] ^= 1;
        free((void *)p);
    } else if (!strcmp(c, "underflow_1") || !strcmp(c, "underflow_32")) {
        size_t reach = c[10] == '1' ? 1 : 32;
        char *a, *b;
        adjacent(n, &a, &b);
        memset(b - reach, 'X', reach);
        KEEP(b);
        free(a);
        free(b);
    } else if (!strcmp(c, "write_after_free_reuse")) {
        free((void *)p);
        p[n / 2] = 'X';
        churn(n, 100);
    } else if (!strcmp(c, "write_after_free_no_reuse")) {
        free((void *)p);
        p[0] = 'X';
        churn(2 * n + 64, 100);
    } else if (!strcmp(c, "immediate_reuse")) {
        free((void *)p);
        void *q = malloc(n);
        if (q == (void *)p) return 0;  // missed: the same block again
        puts("caught");
        return 3;
    } else if (!strcmp(c, "realloc_then_reuse")) {
        // realloc to a bigger class moves the block; the old one must not
        // come straight back.
        void *q = realloc((void *)p, 4 * n + 64);
        void *r = malloc(n);
        if (r == (void *)p) return 0;
        free(q);
        puts("caught");
        return 3;
    } else if (!strcmp(c, "far_after")) {
        p[n + (1 << 20) - 64] = 'X';
        free((void *)p);
    } else if (!strcmp(c, "far_before")) {
        *(p - (1 << 20) + 64) = 'X';
        free((void *)p);
    } else if (!strcmp(c, "zero_size_write")) {
        volatile char *z = static_cast<char *>(malloc(0));
        z[0] = 'X';
    } else if (!strcmp(c, "zero_size_read")) {
        volatile char *z = static_cast<char *>(malloc(0));
        printf("%d\n", z[0]);
    } else if (!strcmp(c, "zero_size_write_after_free")) {
        volatile char *z = static_cast<char *>(malloc(0));
        free((void *)z);
        z[0] = 'X';
    } else if (!strcmp(c, "zero_size_double_free")) {
        void *volatile z = malloc(0);
        free(z);
        free(z);
    } else if (!strcmp(c, "double_free")) {
        free((void *)p);
        free((void *)p);
    } else if (!strcmp(c, "invalid_free_interior")) {
        free((void *)(p + 16));
    } else if (!strcmp(c, "delete_of_new_array")) {
        scalar_delete(new char[n]);
    } else if (!strcmp(c, "delete_array_of_new")) {
        array_delete(static_cast<char *>(::operator new(n)));
    } else if (!strcmp(c, "sized_delete_wrong_size")) {
        void *q = ::operator new(n);
        ::operator delete(q, n + 16);
    } else {
        return 4;
    }
    return 0;  // missed
}
