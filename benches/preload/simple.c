/* glibc-simple equivalent: one thread, many small malloc/free pairs with a
 * small live set (the allocator's fast path). */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    void *live[64] = {0};
    unsigned x = 12345;
    for (long i = 0; i < iters; i++) {
        x = x * 1103515245u + 12345u;
        unsigned slot = (x >> 8) % 64;
        free(live[slot]);
        live[slot] = malloc(16 + (x >> 16) % 240);
        ((char *)live[slot])[0] = (char)i;
    }
    for (int i = 0; i < 64; i++) free(live[i]);
    puts("ok");
    return 0;
}
