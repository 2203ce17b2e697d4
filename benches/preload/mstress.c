/* mstress equivalent (mimalloc's stress test): rounds of worker threads,
 * started afresh each round. Each worker keeps its own set of blocks and
 * at random allocates into it (sizes mostly small, 1 in 10 up to 8 KiB,
 * 1 in 200 up to 1 MiB), frees from it, or swaps a block with a random slot
 * of a shared transfer array, so blocks allocated on one thread are freed on
 * another; the transfer array outlives the rounds. Every block carries its
 * size and a cookie in its first and last words, checked before it is
 * freed. argv[1]: rounds. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define STEPS 25000    /* per thread per round */
#define KEEP 1000      /* a worker's block set */
#define TRANSFERS 1000 /* shared between workers */

static _Atomic(uintptr_t *) transfer[TRANSFERS];
static atomic_long corrupt, allocated;

static uint64_t next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uintptr_t *alloc_block(uint64_t *s) {
    uint64_t r = next(s);
    size_t words;
    if (r % 200 == 0)
        words = 8192 + (r >> 16) % (131072 - 8192); /* 64 KiB .. 1 MiB */
    else if (r % 10 == 0)
        words = 32 + (r >> 16) % 992; /* 256 B .. 8 KiB */
    else
        words = 2 + (r >> 16) % 30; /* 16 .. 256 B */
    uintptr_t *p = malloc(words * sizeof *p);
    if (!p) {
        fputs("mstress: out of memory\n", stderr);
        exit(1);
    }
    uintptr_t cookie = words ^ ((uintptr_t)p >> 4) ^ 0x5A5A5A5Au;
    p[0] = words;
    p[words - 1] = cookie;
    atomic_fetch_add_explicit(&allocated, 1, memory_order_relaxed);
    return p;
}

static void free_block(uintptr_t *p) {
    if (!p) return;
    size_t words = p[0];
    if (words < 2 || words > 131072 || p[words - 1] != (words ^ ((uintptr_t)p >> 4) ^ 0x5A5A5A5Au))
        atomic_fetch_add(&corrupt, 1);
    free(p);
}

static void *worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull + 1;
    uintptr_t **keep = calloc(KEEP, sizeof *keep);
    if (!keep) exit(1);
    for (int i = 0; i < STEPS; i++) {
        uint64_t r = next(&s);
        size_t slot = (r >> 8) % KEEP;
        switch (r % 8) {
        case 0: case 1: case 2: case 3: /* allocate (replacing what was there) */
            free_block(keep[slot]);
            keep[slot] = alloc_block(&s);
            break;
        case 4: case 5: /* free */
            free_block(keep[slot]);
            keep[slot] = NULL;
            break;
        default: /* swap with the transfer array: the other side frees it */
            keep[slot] = atomic_exchange(&transfer[(r >> 32) % TRANSFERS], keep[slot]);
            break;
        }
    }
    for (int i = 0; i < KEEP; i++) free_block(keep[i]);
    free(keep);
    return NULL;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 20;
    for (long r = 0; r < rounds; r++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++)
            pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(r * THREADS + i + 1));
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < TRANSFERS; i++) free_block(atomic_load(&transfer[i]));
    printf("mstress: %ld rounds, %ld blocks, %ld corrupt\n", rounds, (long)allocated,
           (long)corrupt);
    return corrupt ? 1 : 0;
}
