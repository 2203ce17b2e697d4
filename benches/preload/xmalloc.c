/* xmalloc-test equivalent: producer threads allocate, consumer threads free
 * (every free crosses threads), through a bounded ring per pair. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#define PAIRS 2
#define RING 4096
struct ring { void *slot[RING]; atomic_long head, tail; };
static struct ring rings[PAIRS];
static long count;
static void *produce(void *arg) {
    struct ring *q = &rings[(long)arg];
    unsigned x = (unsigned)(long)arg + 7u;
    for (long i = 0; i < count; i++) {
        x = x * 1103515245u + 12345u;
        void *p = malloc(16 + (x >> 16) % 512);
        ((char *)p)[0] = 1;
        while (atomic_load(&q->head) - atomic_load(&q->tail) >= RING) sched_yield();
        q->slot[atomic_load(&q->head) % RING] = p;
        atomic_fetch_add(&q->head, 1);
    }
    return NULL;
}
static void *consume(void *arg) {
    struct ring *q = &rings[(long)arg];
    for (long i = 0; i < count; i++) {
        while (atomic_load(&q->tail) == atomic_load(&q->head)) sched_yield();
        free(q->slot[atomic_load(&q->tail) % RING]);
        atomic_fetch_add(&q->tail, 1);
    }
    return NULL;
}
int main(int argc, char **argv) {
    count = argc > 1 ? atol(argv[1]) : 2000000;
    pthread_t p[PAIRS], c[PAIRS];
    for (long i = 0; i < PAIRS; i++) {
        pthread_create(&p[i], NULL, produce, (void *)i);
        pthread_create(&c[i], NULL, consume, (void *)i);
    }
    for (int i = 0; i < PAIRS; i++) { pthread_join(p[i], NULL); pthread_join(c[i], NULL); }
    puts("ok");
    return 0;
}
