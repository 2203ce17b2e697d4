/* glibc-thread equivalent: the simple loop on several threads at once. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static long iters;
static void *run(void *arg) {
    void *live[64] = {0};
    unsigned x = (unsigned)(size_t)arg * 7919u + 1u;
    for (long i = 0; i < iters; i++) {
        x = x * 1103515245u + 12345u;
        unsigned slot = (x >> 8) % 64;
        free(live[slot]);
        live[slot] = malloc(16 + (x >> 16) % 240);
        ((char *)live[slot])[0] = (char)i;
    }
    for (int i = 0; i < 64; i++) free(live[i]);
    return NULL;
}
int main(int argc, char **argv) {
    iters = argc > 1 ? atol(argv[1]) : 5000000;
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    puts("ok");
    return 0;
}
