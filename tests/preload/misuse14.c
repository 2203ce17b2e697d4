/* Heap misuse cases for tests/issue14_misuse.rs, run under the preload:
 * argv[1] names the case, argv[2] the block size. Each case should never
 * return: the allocator aborts with its message, or the access faults. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keeps the compiler from dropping a write into memory about to be freed. */
#define KEEP() __asm__ volatile("" ::: "memory")

/* One allocation of n bytes, freed at once (through a volatile pointer, so
 * the compiler cannot drop the pair). */
static void churn(size_t n) {
    void *volatile q = malloc(n);
    free(q);
}

/* Underflow of a block by `reach` bytes, where the block right before it
 * is live: found as the closest pair among 64 blocks of n bytes (slots of a
 * class sit side by side). The write lands in that block's slack. */
static void underflow(size_t n, size_t reach) {
    char *b[64];
    for (int i = 0; i < 64; i++) b[i] = malloc(n);
    char *p = NULL, *q = NULL;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            if (b[j] > b[i] && (!p || (size_t)(b[j] - b[i]) < (size_t)(q - p))) {
                p = b[i];
                q = b[j];
            }
    printf("block %p\n", (void *)p);
    fflush(stdout);
    memset(q - reach, 'X', reach);
    __asm__ volatile("" ::: "memory");
    free(p);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *c = argv[1];
    size_t n = (size_t)strtoul(argv[2], NULL, 10);
    if (!strcmp(c, "underflow_1") || !strcmp(c, "underflow_32")) {
        underflow(n, c[10] == '1' ? 1 : 32);
        puts("survived");
        return 0;
    }
    volatile char *p = malloc(n);
    if (!p) return 3;
    printf("block %p\n", (void *)p);
    fflush(stdout);
    if (!strcmp(c, "write_after_free")) {
        free((void *)p);
        p[0] = 'X'; /* dangling write */
        void *q = malloc(n);
        printf("reused %p\n", q);
    } else if (!strcmp(c, "write_after_free_deep")) {
        free((void *)p);
        p[n / 2] = 'X'; /* past the first line: Full only */
        /* Under Full the slot waits in quarantine; later frees push it out. */
        for (int i = 0; i < 40; i++) churn(n);
    } else if (!strcmp(c, "write_after_free_no_reuse")) {
        free((void *)p);
        p[0] = 'X';
        /* Never handed out again: other sizes only. */
        for (int i = 0; i < 40; i++) churn(2 * n + 64);
    } else if (!strcmp(c, "calloc_after_write_after_free")) {
        /* Past the 16 bytes the default level checks at allocation: calloc
         * must not hand the dangling write to its next owner. */
        free((void *)p);
        p[n - 1] = 'X';
        volatile char *q = calloc(1, n);
        printf("calloc %d\n", q[n - 1]);
    } else if (!strcmp(c, "large_write_after_free")) {
        free((void *)p);
        p[n / 2] = 'X'; /* a cached large block: PROT_NONE under Full */
    } else if (!strcmp(c, "immediate_reuse")) {
        free((void *)p);
        void *q = malloc(n);
        printf("reused=%d\n", q == (void *)p);
        free(q);
        return 0;
    } else if (!strcmp(c, "overflow_1")) {
        p[n] = 'X';
        free((void *)p);
    } else if (!strcmp(c, "overflow_memcpy_32")) {
        static char source[(256 << 10) + 64];
        memset(source, 'X', sizeof source);
        if (n + 32 > sizeof source) return 5;
        memcpy((char *)p, source, n + 32);
        KEEP();
        free((void *)p);
    } else if (!strcmp(c, "overread_memcpy_32") || !strcmp(c, "read_after_free_memcpy")) {
        /* A Heartbleed-style over-read, and a read of a freed block: the
         * copy's source is the bad range, the destination a static buffer. */
        static char sink[(256 << 10) + 64];
        size_t len = c[0] == 'o' ? n + 32 : n;
        if (len > sizeof sink) return 5;
        if (c[0] == 'r') free((void *)p);
        memcpy(sink, (const char *)p, len);
        KEEP();
    } else if (!strcmp(c, "zero_size_write")) {
        free((void *)p);
        volatile char *z = malloc(0);
        printf("zero %p\n", (void *)z);
        fflush(stdout);
        z[0] = 'X';
    } else if (!strcmp(c, "write_usable_size")) {
        /* Correct use: malloc_usable_size bytes are the caller's. */
        size_t u = malloc_usable_size((void *)p);
        memset((char *)p, 'x', u);
        KEEP();
        free((void *)p);
        printf("usable %zu of %zu: ok\n", u, n);
        return 0;
    } else if (!strcmp(c, "zero_size_distinct")) {
        /* Correct use: many live zero-size blocks, all distinct, freed once. */
        static void *z[100000];
        for (int i = 0; i < 100000; i++) z[i] = malloc(0);
        for (int i = 0; i < 100000; i++) free(z[i]);
        for (int i = 0; i < 100000; i++) z[i] = malloc(0);
        /* 65,536 fit the PROT_NONE region; the rest are ordinary blocks. */
        int nulls = 0, dup = 0;
        for (int i = 0; i < 100000; i++) nulls += z[i] == NULL;
        for (int i = 0; i < 65536; i++)
            for (int j = i + 1; j < i + 64 && j < 100000; j++) dup += z[i] == z[j];
        for (int i = 0; i < 100000; i++) free(z[i]);
        printf("zero blocks: %d null, %d repeated\n", nulls, dup);
        return 0;
    } else if (!strcmp(c, "zero_size_read")) {
        volatile char *z = malloc(0);
        printf("zero %p\n", (void *)z);
        fflush(stdout);
        printf("%d\n", z[0]);
    } else {
        return 4;
    }
    puts("survived");
    return 0;
}
