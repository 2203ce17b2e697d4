/* glibc-thread equivalent: the simple loop on four threads at once. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "churn_loop.h"

static long iters;

static void *run(void *arg) {
    churn(iters, (unsigned)(size_t)arg * 7919u + 1u);
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
