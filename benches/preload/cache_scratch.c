/* cache-scratch equivalent (passive false sharing): the main thread
 * allocates one small object per worker, back to back, and hands each
 * worker its object; the worker frees it and then, over and over, allocates
 * an object of the same size, writes every byte of it many times and frees
 * it. An allocator that gives a worker back the memory the main thread
 * carved next to the other workers' objects puts several threads' hot
 * objects on one cache line. argv[1]: allocations per worker. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define OBJ_SIZE 8
#define REPETITIONS 20000

struct job {
    char *first; /* allocated by the main thread, freed by the worker */
    long iterations;
    long sum;
};

static void *worker(void *arg) {
    struct job *job = arg;
    free(job->first);
    long sum = 0;
    for (long i = 0; i < job->iterations; i++) {
        volatile char *obj = malloc(OBJ_SIZE);
        if (!obj) exit(1);
        for (int r = 0; r < REPETITIONS; r++)
            for (int k = 0; k < OBJ_SIZE; k++) {
                obj[k] = (char)(k + r);
                sum += obj[k];
            }
        free((void *)obj);
    }
    job->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 200;
    pthread_t t[THREADS];
    struct job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i].first = malloc(OBJ_SIZE);
        if (!jobs[i].first) return 1;
        jobs[i].first[0] = (char)i;
        jobs[i].iterations = iterations;
    }
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, &jobs[i]);
    long sum = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        sum += jobs[i].sum;
    }
    printf("cache-scratch: %d threads x %ld objects, sum %ld\n", THREADS, iterations, sum);
    return 0;
}
