/* The malloc/free loop shared by simple.c and threads.c: a live set of 64
 * blocks of 16-255 bytes, one random block replaced per iteration. */
#include <stdlib.h>

static void churn(long iters, unsigned seed) {
    void *live[64] = {0};
    unsigned x = seed;
    for (long i = 0; i < iters; i++) {
        x = x * 1103515245u + 12345u;
        unsigned slot = (x >> 8) % 64;
        free(live[slot]);
        live[slot] = malloc(16 + (x >> 16) % 240);
        ((char *)live[slot])[0] = (char)i;
    }
    for (int i = 0; i < 64; i++) free(live[i]);
}
