/* C allocation semantics under the preload: each check prints "ok <name>"
 * or "FAIL <name>"; the Rust test reads the lines. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(name, cond) do { if (cond) printf("ok %s\n", name); else { printf("FAIL %s\n", name); failures++; } } while (0)

int main(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK("malloc0_unique", a && b && a != b);
    free(a); free(b);
    free(NULL);
    CHECK("free_null", 1);

    char *p = malloc(100);
    memset(p, 7, 100);
    errno = 0;
    void *r = realloc(p, 0);
    CHECK("realloc_zero_frees", r == NULL);

    errno = 0;
    void *big = calloc(SIZE_MAX / 2, 4);
    CHECK("calloc_overflow", big == NULL && errno == ENOMEM);

    unsigned char *z = calloc(1000, 8);
    int zero = 1;
    for (int i = 0; i < 8000; i++) zero &= z[i] == 0;
    CHECK("calloc_zero", zero);
    free(z);

    void *out = (void *)1;
    CHECK("posix_memalign_einval_npot", posix_memalign(&out, 24, 10) == EINVAL && out == (void *)1);
    CHECK("posix_memalign_einval_small", posix_memalign(&out, 4, 10) == EINVAL);
    CHECK("posix_memalign_4096", posix_memalign(&out, 4096, 10) == 0 && ((uintptr_t)out % 4096) == 0);
    free(out);
    CHECK("posix_memalign_1mib", posix_memalign(&out, 1 << 20, 10) == 0 && ((uintptr_t)out % (1 << 20)) == 0);
    free(out);

    void *al = aligned_alloc(64, 128);
    CHECK("aligned_alloc", al && ((uintptr_t)al % 64) == 0);
    free(al);
    void *ma = memalign(256, 10);
    CHECK("memalign", ma && ((uintptr_t)ma % 256) == 0);
    free(ma);
    long page = sysconf(_SC_PAGESIZE);
    void *va = valloc(10);
    CHECK("valloc", va && ((uintptr_t)va % page) == 0);
    free(va);
    void *pv = pvalloc(10);
    CHECK("pvalloc", pv && ((uintptr_t)pv % page) == 0 && malloc_usable_size(pv) >= (size_t)page);
    free(pv);

    char *g = malloc(10);
    memcpy(g, "0123456789", 10);
    g = realloc(g, 100000);
    CHECK("realloc_grow_keeps", g && memcmp(g, "0123456789", 10) == 0);
    g = realloc(g, 5);
    CHECK("realloc_shrink_keeps", g && memcmp(g, "01234", 5) == 0);
    CHECK("usable_size", malloc_usable_size(g) >= 5 && malloc_usable_size(NULL) == 0);
    free(g);

    errno = 0;
    void *ra = reallocarray(NULL, SIZE_MAX / 2, 3);
    CHECK("reallocarray_overflow", ra == NULL && errno == ENOMEM);

    errno = 0;
    void *huge = malloc(SIZE_MAX / 2);
    CHECK("malloc_huge_enomem", huge == NULL && errno == ENOMEM);

    printf("done failures=%d\n", failures);
    return failures != 0;
}
