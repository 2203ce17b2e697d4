/* alloc-test equivalent (after the OLDI allocator test): a fixed number of
 * threads, each with its own live set of blocks, each step freeing a random
 * slot's block and allocating a new one of a random size, log-uniform over
 * 8 B - 1 KiB most of the time and now and then up to 64 KiB. The first and last bytes of a block are written on allocation and
 * checked before it is freed. argv[1]: steps per thread. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define LIVE 4096

struct job {
    long steps, bad, bytes;
    unsigned seed;
};

static uint32_t next(uint32_t *s) { /* xorshift32 */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* 8 << k with k uniform in 0..7 (8 B - 1 KiB) fifteen times in sixteen,
 * otherwise 8..13 (up to 64 KiB) with each step half as likely; then a
 * uniform size in the upper half of that: log-uniform, mostly small */
static size_t pick_size(uint32_t *s) {
    uint32_t r = next(s);
    int k = r % 16 ? (int)(r >> 4) % 8 : 8 + __builtin_ctz((r >> 4) | 32u);
    size_t top = (size_t)8 << k;
    return top / 2 + 1 + next(s) % (top - top / 2);
}

static void *worker(void *arg) {
    struct job *job = arg;
    uint32_t s = job->seed;
    unsigned char **live = calloc(LIVE, sizeof *live);
    size_t *size = calloc(LIVE, sizeof *size);
    if (!live || !size) exit(1);
    long bad = 0, bytes = 0;
    for (long i = 0; i < job->steps; i++) {
        uint32_t slot = next(&s) % LIVE;
        if (live[slot]) {
            unsigned char tag = (unsigned char)size[slot];
            bad += live[slot][0] != tag || live[slot][size[slot] - 1] != tag;
            free(live[slot]);
        }
        size_t n = pick_size(&s);
        unsigned char *p = malloc(n);
        if (!p) exit(1);
        p[0] = p[n - 1] = (unsigned char)n;
        live[slot] = p;
        size[slot] = n;
        bytes += (long)n;
    }
    for (int i = 0; i < LIVE; i++) free(live[i]);
    free(live);
    free(size);
    job->bad = bad;
    job->bytes = bytes;
    return NULL;
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 2000000;
    pthread_t t[THREADS];
    struct job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (struct job){.steps = steps, .seed = 0x9E3779B9u * (unsigned)(i + 1)};
        pthread_create(&t[i], NULL, worker, &jobs[i]);
    }
    long bad = 0, bytes = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += jobs[i].bad;
        bytes += jobs[i].bytes;
    }
    printf("alloc-test: %d threads x %ld steps, %ld MiB allocated, %ld bad\n", THREADS, steps,
           bytes >> 20, bad);
    return bad ? 1 : 0;
}
