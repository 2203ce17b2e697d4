/* larson-style server simulation: each thread replaces random blocks of a
 * window of random-sized blocks; windows rotate between threads every round
 * (kept in step by a barrier), so most blocks are freed by a thread that did
 * not allocate them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#define THREADS 4
#define WINDOW 1000
static void *windows[THREADS][WINDOW];
static long rounds;
static pthread_barrier_t step;
static void *run(void *arg) {
    long id = (long)arg;
    unsigned x = (unsigned)id * 2654435761u + 1u;
    for (long r = 0; r < rounds; r++) {
        void **w = windows[(id + r) % THREADS];
        for (int i = 0; i < WINDOW / 4; i++) {
            x = x * 1103515245u + 12345u;
            int j = (x >> 8) % WINDOW;
            free(w[j]);
            w[j] = malloc(8 + (x >> 16) % 1000);
            ((char *)w[j])[0] = 1;
        }
        pthread_barrier_wait(&step);
    }
    return NULL;
}
int main(int argc, char **argv) {
    rounds = argc > 1 ? atol(argv[1]) : 4000;
    pthread_barrier_init(&step, NULL, THREADS);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < WINDOW; j++) free(windows[i][j]);
    puts("ok");
    return 0;
}
