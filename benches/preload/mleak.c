/* mleak equivalent: a window of blocks replaced at random, where one block
 * in a hundred is dropped instead of freed (never freed at all), so the heap
 * keeps growing while most allocations are still short-lived. Sizes are
 * mostly 16 B - 1 KiB, one in fifty up to 16 KiB. argv[1]: allocations. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WINDOW 2048
#define LEAK_EVERY 100

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 5000000;
    void *window[WINDOW] = {0};
    uint64_t s = 0x243F6A8885A308D3ull, leaked = 0, leaked_blocks = 0;
    for (long i = 0; i < count; i++) {
        s ^= s >> 12; /* xorshift64 */
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 2685821657736338717ull;
        int slot = (int)((r >> 40) % WINDOW);
        size_t n = r % 50 ? 16 + (r >> 8) % 1009 : 1024 + (r >> 8) % (15 * 1024 + 1);
        if (window[slot]) {
            if (r % LEAK_EVERY == 7) { /* forget it: a leak */
                leaked += ((size_t *)window[slot])[0];
                leaked_blocks++;
            } else {
                free(window[slot]);
            }
        }
        size_t *p = malloc(n);
        if (!p) {
            fputs("mleak: out of memory\n", stderr);
            return 1;
        }
        p[0] = n;
        ((char *)p)[n - 1] = (char)i;
        window[slot] = p;
    }
    for (int i = 0; i < WINDOW; i++) free(window[i]);
    printf("mleak: %ld allocations, %llu leaked (%llu KiB)\n", count,
           (unsigned long long)leaked_blocks, (unsigned long long)(leaked >> 10));
    return 0;
}
