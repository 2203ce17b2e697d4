/* malloc-large equivalent: 20 live buffers of 5-25 MiB; a random one is
 * replaced again and again by a new buffer of a random size, value-
 * initialised the way C++'s `new char[n]()` does it (malloc, then memset to
 * zero), so every replacement frees and allocates a large block and touches
 * all of it. argv[1]: replacements. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 20

/* memset through a volatile pointer: the compiler would otherwise fuse
 * malloc + memset(0) into calloc, which `new char[n]()` never becomes */
static void *(*volatile zero_fill)(void *, int, size_t) = memset;
#define MIB ((size_t)1 << 20)

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 2000;
    char *buf[LIVE] = {0};
    size_t len[LIVE] = {0};
    uint64_t s = 0x853C49E6748FEA9Bull, check = 0;
    for (long i = 0; i < count; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull; /* LCG */
        int slot = (int)((s >> 33) % LIVE);
        size_t n = 5 * MIB + (size_t)((s >> 13) % (20 * MIB + 1));
        free(buf[slot]);
        buf[slot] = malloc(n);
        if (!buf[slot]) {
            fputs("malloc-large: out of memory\n", stderr);
            return 1;
        }
        zero_fill(buf[slot], 0, n);
        buf[slot][n / 2] = (char)i;
        len[slot] = n;
        check += (unsigned char)buf[slot][n / 3] + n;
    }
    size_t live = 0;
    for (int i = 0; i < LIVE; i++) {
        live += len[i];
        free(buf[i]);
    }
    printf("malloc-large: %ld replacements, %zu MiB live at the end, check %llu\n", count,
           live / MIB, (unsigned long long)check);
    return 0;
}
