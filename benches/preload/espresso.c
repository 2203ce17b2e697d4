/* espresso equivalent: a boolean-cover minimiser-like workload. A cube is a
 * malloc'd bit vector in positional notation (two bits per variable: 01 the
 * variable, 10 its complement, 11 don't care); a cover is a malloc'd array
 * of cube pointers grown by realloc. For each random function (an ON cover
 * and an OFF cover clear of it) the program, for a few rounds: merges
 * distance-1 cubes, building a fresh cover each pass; expands every cube
 * against the OFF cover (raising literals to don't-care while the cube stays
 * clear of it); removes single-cube containment; intersects the result with
 * a random care cover; and takes the union with the care cubes that avoid
 * the OFF cover. Cubes are copied between covers and whole covers freed as
 * it goes: small and medium allocations, with realloc. argv[1]: how many
 * functions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n, cap, words;
    uint32_t **cube;
} cover;

static uint32_t rng = 2463534242u;
static uint32_t next(void) { /* xorshift32 */
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fputs("espresso: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

static cover *cover_new(int words, int cap) {
    cover *c = xmalloc(sizeof *c);
    c->n = 0;
    c->cap = cap;
    c->words = words;
    c->cube = xmalloc((size_t)cap * sizeof *c->cube);
    return c;
}

static void cover_free(cover *c) {
    for (int i = 0; i < c->n; i++) free(c->cube[i]);
    free(c->cube);
    free(c);
}

static void cover_push(cover *c, const uint32_t *cube) {
    if (c->n == c->cap) {
        c->cap = c->cap * 2 + 4;
        uint32_t **grown = realloc(c->cube, (size_t)c->cap * sizeof *c->cube);
        if (!grown) {
            fputs("espresso: out of memory\n", stderr);
            exit(1);
        }
        c->cube = grown;
    }
    uint32_t *copy = xmalloc((size_t)c->words * sizeof *copy);
    memcpy(copy, cube, (size_t)c->words * sizeof *copy);
    c->cube[c->n++] = copy;
}

static cover *cover_copy(const cover *c) {
    cover *r = cover_new(c->words, c->n + 1);
    for (int i = 0; i < c->n; i++) cover_push(r, c->cube[i]);
    return r;
}

#define ODD 0x55555555u

/* A cube is empty when some variable has neither literal bit set; unused
 * variables in the last word are kept at 11 so they never look empty. */
static int cube_empty(const uint32_t *c, int words) {
    for (int w = 0; w < words; w++)
        if (~(c[w] | c[w] >> 1) & ODD) return 1;
    return 0;
}

static int contains(const uint32_t *a, const uint32_t *b, int words) {
    for (int w = 0; w < words; w++)
        if ((a[w] & b[w]) != b[w]) return 0;
    return 1;
}

/* Cubes that differ in exactly one variable, where one has the literal and
 * the other its complement, merge into one with that variable free. */
static int mergeable(const uint32_t *a, const uint32_t *b, int words) {
    int differ = 0, opposite = 0;
    for (int w = 0; w < words; w++) {
        uint32_t x = a[w] ^ b[w];
        differ += __builtin_popcount((x | x >> 1) & ODD);
        opposite += __builtin_popcount(x & x >> 1 & ODD);
        if (differ > 1) return 0;
    }
    return differ == 1 && opposite == 1;
}

static cover *random_cover(int vars, int words, int cubes, int free_pct) {
    cover *c = cover_new(words, 4);
    uint32_t *cube = xmalloc((size_t)words * sizeof *cube);
    for (int i = 0; i < cubes; i++) {
        for (int w = 0; w < words; w++) cube[w] = 0xffffffffu;
        for (int v = 0; v < vars; v++) {
            uint32_t r = next() % 100;
            uint32_t lit = r < (uint32_t)free_pct ? 3u : (r & 1) ? 1u : 2u;
            cube[v / 16] &= ~(3u << (v % 16 * 2));
            cube[v / 16] |= lit << (v % 16 * 2);
        }
        cover_push(c, cube);
        /* a few neighbours: the same cube with one literal flipped */
        for (int k = (int)(next() % 4); k > 0 && i + 1 < cubes; k--, i++) {
            int v = (int)(next() % (uint32_t)vars);
            uint32_t mask = 3u << (v % 16 * 2);
            if ((cube[v / 16] & mask) != mask) cube[v / 16] ^= mask;
            cover_push(c, cube);
        }
    }
    free(cube);
    return c;
}

/* single-cube containment: drop duplicates and cubes inside another */
static cover *scc(cover *c) {
    char *drop = calloc((size_t)c->n + 1, 1);
    if (!drop) exit(1);
    for (int i = 0; i < c->n; i++) {
        if (drop[i]) continue;
        for (int j = 0; j < c->n; j++)
            if (j != i && !drop[j] && contains(c->cube[j], c->cube[i], c->words)) {
                drop[i] = 1;
                break;
            }
    }
    cover *r = cover_new(c->words, 8);
    for (int i = 0; i < c->n; i++)
        if (!drop[i]) cover_push(r, c->cube[i]);
    free(drop);
    cover_free(c);
    return r;
}

static cover *merge_pass(cover *c, int limit, int *merged) {
    cover *r = cover_new(c->words, 8);
    char *used = calloc((size_t)c->n + 1, 1);
    uint32_t *tmp = xmalloc((size_t)c->words * sizeof *tmp);
    if (!used) exit(1);
    *merged = 0;
    for (int i = 0; i < c->n && r->n < limit; i++)
        for (int j = i + 1; j < c->n && r->n < limit; j++)
            if (mergeable(c->cube[i], c->cube[j], c->words)) {
                for (int w = 0; w < c->words; w++) tmp[w] = c->cube[i][w] | c->cube[j][w];
                cover_push(r, tmp);
                used[i] = used[j] = 1;
                ++*merged;
            }
    for (int i = 0; i < c->n; i++)
        if (!used[i]) cover_push(r, c->cube[i]);
    free(tmp);
    free(used);
    cover_free(c);
    return scc(r);
}

static cover *intersect(const cover *a, const cover *b, int limit) {
    cover *r = cover_new(a->words, 2);
    uint32_t *tmp = xmalloc((size_t)a->words * sizeof *tmp);
    for (int i = 0; i < a->n && r->n < limit; i++)
        for (int j = 0; j < b->n && r->n < limit; j++) {
            for (int w = 0; w < a->words; w++) tmp[w] = a->cube[i][w] & b->cube[j][w];
            if (!cube_empty(tmp, a->words)) cover_push(r, tmp);
        }
    free(tmp);
    return r;
}

static cover *unite(cover *a, const cover *b) {
    cover *r = cover_copy(a);
    for (int i = 0; i < b->n; i++) cover_push(r, b->cube[i]);
    cover_free(a);
    return scc(r);
}

static int meets(const uint32_t *cube, const cover *c, uint32_t *tmp) {
    for (int j = 0; j < c->n; j++) {
        for (int w = 0; w < c->words; w++) tmp[w] = cube[w] & c->cube[j][w];
        if (!cube_empty(tmp, c->words)) return 1;
    }
    return 0;
}

/* the cubes of c that do not meet off (a fresh cover; c is kept) */
static cover *outside(const cover *c, const cover *off) {
    cover *r = cover_new(c->words, 4);
    uint32_t *tmp = xmalloc((size_t)c->words * sizeof *tmp);
    for (int i = 0; i < c->n; i++)
        if (!meets(c->cube[i], off, tmp)) cover_push(r, c->cube[i]);
    free(tmp);
    return r;
}

/* raise each literal of each cube to don't-care unless that meets off */
static cover *expand(cover *on, const cover *off, int vars) {
    cover *r = cover_new(on->words, on->n / 2 + 1);
    uint32_t *cube = xmalloc((size_t)on->words * sizeof *cube);
    uint32_t *tmp = xmalloc((size_t)on->words * sizeof *tmp);
    for (int i = 0; i < on->n; i++) {
        memcpy(cube, on->cube[i], (size_t)on->words * sizeof *cube);
        for (int v = 0; v < vars; v++) {
            uint32_t mask = 3u << (v % 16 * 2), old = cube[v / 16];
            if ((old & mask) == mask) continue;
            cube[v / 16] |= mask;
            if (meets(cube, off, tmp)) cube[v / 16] = old;
        }
        cover_push(r, cube);
    }
    free(tmp);
    free(cube);
    cover_free(on);
    return scc(r);
}

int main(int argc, char **argv) {
    long functions = argc > 1 ? atol(argv[1]) : 1000;
    long total_cubes = 0, total_merges = 0, total_meet = 0;
    for (long f = 0; f < functions; f++) {
        int vars = 4 + (int)(next() % 40);
        int words = (vars + 15) / 16;
        int cubes = 20 + (int)(next() % 80);
        cover *on = scc(random_cover(vars, words, cubes, 40));
        cover *raw_off = random_cover(vars, words, cubes / 2, 15);
        cover *off = outside(raw_off, on);
        cover_free(raw_off);
        for (int round = 0; round < 3; round++) {
            int merged;
            for (int pass = 0; pass < 4; pass++) {
                on = merge_pass(on, 4 * cubes, &merged);
                total_merges += merged;
                if (!merged) break;
            }
            on = expand(on, off, vars);
            cover *care = random_cover(vars, words, 8 + (int)(next() % 24), 60);
            cover *both = intersect(on, care, 2 * cubes);
            total_meet += both->n;
            cover *free_cubes = outside(care, off);
            on = unite(on, free_cubes);
            cover_free(free_cubes);
            cover_free(both);
            cover_free(care);
        }
        total_cubes += on->n;
        cover_free(on);
        cover_free(off);
    }
    printf("espresso: %ld functions, %ld cubes left, %ld merges, %ld meets\n", functions,
           total_cubes, total_merges, total_meet);
    return 0;
}
