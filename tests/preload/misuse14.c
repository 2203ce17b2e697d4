/* Heap misuse cases for tests/issue14_misuse.rs, run under the preload:
 * argv[1] names the case, argv[2] the block size. Each case should never
 * return: the allocator aborts with its message, or the access faults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keeps the compiler from dropping a write into memory about to be freed. */
#define KEEP() __asm__ volatile("" ::: "memory")

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *c = argv[1];
    size_t n = (size_t)strtoul(argv[2], NULL, 10);
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
        void *q = malloc(n);
        printf("reused %p\n", q);
    } else if (!strcmp(c, "overflow_1")) {
        p[n] = 'X';
        free((void *)p);
    } else if (!strcmp(c, "overflow_memcpy_32")) {
        memcpy((char *)p, "0123456789abcdef0123456789abcdefXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", n + 32);
        KEEP();
        free((void *)p);
    } else if (!strcmp(c, "zero_size_write")) {
        free((void *)p);
        volatile char *z = malloc(0);
        printf("zero %p\n", (void *)z);
        fflush(stdout);
        z[0] = 'X';
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
