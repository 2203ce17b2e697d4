/* barnes equivalent: a Barnes-Hut n-body simulation. Every step builds an
 * octree over the bodies from malloc'd nodes (all one size: one leaf per
 * body plus the internal cells), computes each cell's mass and centre of
 * mass, walks the tree for every body's acceleration (cells far enough away,
 * by the opening angle, count as one mass), advances the bodies by a
 * leapfrog step and frees the whole tree: bursts of same-size allocations
 * and a bulk free each step. argv[1]: steps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODIES 3072
#define THETA2 (0.5 * 0.5)
#define EPS2 1e-4
#define DT 1e-3
#define MAX_DEPTH 48

typedef struct node {
    double mass, com[3];   /* total mass and centre of mass */
    double centre[3], half; /* the cube this node covers */
    int body;              /* leaf: the body's index; internal: -1 */
    struct node *child[8];
} node;

static double pos[BODIES][3], vel[BODIES][3], acc[BODIES][3], mass[BODIES];
static long nodes_made;

static uint64_t rng = 88172645463325252ull;
static double uniform(void) { /* xorshift64, in [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

/* 1/sqrt(x) for x > 0 without libm (the programs are linked without -lm):
 * the usual bit-level first guess, then Newton steps to double precision */
static double inv_sqrt(double x) {
    uint64_t i;
    double y;
    memcpy(&i, &x, sizeof i);
    i = 0x5FE6EB50C7B537A9ull - (i >> 1);
    memcpy(&y, &i, sizeof y);
    for (int k = 0; k < 4; k++) y *= 1.5 - 0.5 * x * y * y;
    return y;
}

static node *new_node(const double centre[3], double half, int body) {
    node *n = malloc(sizeof *n);
    if (!n) {
        fputs("barnes: out of memory\n", stderr);
        exit(1);
    }
    nodes_made++;
    for (int k = 0; k < 3; k++) n->centre[k] = centre[k];
    n->half = half;
    n->body = body;
    n->mass = 0;
    for (int i = 0; i < 8; i++) n->child[i] = NULL;
    return n;
}

static int octant(const node *n, const double p[3]) {
    return (p[0] > n->centre[0]) | (p[1] > n->centre[1]) << 1 | (p[2] > n->centre[2]) << 2;
}

static void child_centre(const node *n, int oct, double out[3]) {
    double q = n->half / 2;
    for (int k = 0; k < 3; k++) out[k] = n->centre[k] + ((oct >> k) & 1 ? q : -q);
}

static void insert(node *n, int b, int depth) {
    for (;;) {
        if (n->body >= 0) { /* a leaf: push its body one level down */
            int old = n->body;
            if (depth >= MAX_DEPTH) { /* coincident bodies: keep them merged */
                mass[old] += mass[b];
                mass[b] = 0;
                return;
            }
            n->body = -1;
            int oct = octant(n, pos[old]);
            double c[3];
            child_centre(n, oct, c);
            n->child[oct] = new_node(c, n->half / 2, old);
        }
        int oct = octant(n, pos[b]);
        if (!n->child[oct]) {
            double c[3];
            child_centre(n, oct, c);
            n->child[oct] = new_node(c, n->half / 2, b);
            return;
        }
        n = n->child[oct];
        depth++;
    }
}

static void summarise(node *n) {
    if (n->body >= 0) {
        n->mass = mass[n->body];
        for (int k = 0; k < 3; k++) n->com[k] = pos[n->body][k];
        return;
    }
    n->mass = 0;
    double c[3] = {0, 0, 0};
    for (int i = 0; i < 8; i++) {
        node *ch = n->child[i];
        if (!ch) continue;
        summarise(ch);
        n->mass += ch->mass;
        for (int k = 0; k < 3; k++) c[k] += ch->mass * ch->com[k];
    }
    for (int k = 0; k < 3; k++) n->com[k] = n->mass > 0 ? c[k] / n->mass : n->centre[k];
}

static void force(const node *n, int b, double a[3]) {
    if (n->mass == 0 || n->body == b) return;
    double d[3], r2 = EPS2;
    for (int k = 0; k < 3; k++) {
        d[k] = n->com[k] - pos[b][k];
        r2 += d[k] * d[k];
    }
    double size = 2 * n->half;
    if (n->body >= 0 || size * size < THETA2 * r2) {
        double inv = inv_sqrt(r2), f = n->mass * inv * inv * inv;
        for (int k = 0; k < 3; k++) a[k] += f * d[k];
        return;
    }
    for (int i = 0; i < 8; i++)
        if (n->child[i]) force(n->child[i], b, a);
}

static void free_tree(node *n) {
    for (int i = 0; i < 8; i++)
        if (n->child[i]) free_tree(n->child[i]);
    free(n);
}

static void step(void) {
    double lo[3], hi[3];
    for (int k = 0; k < 3; k++) lo[k] = hi[k] = pos[0][k];
    for (int b = 1; b < BODIES; b++)
        for (int k = 0; k < 3; k++) {
            if (pos[b][k] < lo[k]) lo[k] = pos[b][k];
            if (pos[b][k] > hi[k]) hi[k] = pos[b][k];
        }
    double centre[3], half = 0;
    for (int k = 0; k < 3; k++) {
        centre[k] = (lo[k] + hi[k]) / 2;
        if ((hi[k] - lo[k]) / 2 > half) half = (hi[k] - lo[k]) / 2;
    }
    node *root = new_node(centre, half * 1.0001 + 1e-9, 0);
    for (int b = 1; b < BODIES; b++) insert(root, b, 0);
    summarise(root);
    for (int b = 0; b < BODIES; b++) {
        acc[b][0] = acc[b][1] = acc[b][2] = 0;
        force(root, b, acc[b]);
    }
    free_tree(root);
    for (int b = 0; b < BODIES; b++)
        for (int k = 0; k < 3; k++) {
            vel[b][k] += DT * acc[b][k];
            pos[b][k] += DT * vel[b][k];
        }
}

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 40;
    /* a uniform ball of equal masses, slowly rotating */
    for (int b = 0; b < BODIES; b++) {
        double p[3], r2;
        do {
            r2 = 0;
            for (int k = 0; k < 3; k++) {
                p[k] = 2 * uniform() - 1;
                r2 += p[k] * p[k];
            }
        } while (r2 > 1);
        for (int k = 0; k < 3; k++) pos[b][k] = p[k];
        vel[b][0] = -0.3 * p[1];
        vel[b][1] = 0.3 * p[0];
        vel[b][2] = 0;
        mass[b] = 1.0 / BODIES;
    }
    for (long s = 0; s < steps; s++) step();
    double e = 0;
    for (int b = 0; b < BODIES; b++)
        e += 0.5 * mass[b] * (vel[b][0] * vel[b][0] + vel[b][1] * vel[b][1] + vel[b][2] * vel[b][2]);
    printf("barnes: %d bodies, %ld steps, %ld nodes, kinetic energy %.6f\n", BODIES, steps,
           nodes_made, e);
    return 0;
}
