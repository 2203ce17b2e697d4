/* cfrac equivalent: the continued-fraction expansion of sqrt(N) for many
 * composite N, in the manner of the CFRAC factoring method, over a tiny
 * bignum library whose every intermediate is a fresh heap number (a header
 * and a separately malloc'd digit array, both freed as soon as the value is
 * used). Each step computes P, Q and the partial quotient a by bignum
 * multiply/subtract/divide, keeps the convergent numerator p mod N, and
 * whenever Q at an even step is a perfect square r^2 (integer square root by
 * Newton's method) tries gcd(p - r, N) for a factor. Many short-lived small
 * allocations of varied sizes. argv[1]: how many N. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int len;      /* digits in use; 0 means the value 0 */
    uint16_t *d;  /* little-endian base-65536 digits, malloc'd */
} bn;

static void die(const char *what) {
    fprintf(stderr, "cfrac: %s\n", what);
    exit(1);
}

static bn *bn_new(int cap) {
    bn *r = malloc(sizeof *r);
    if (!r) die("out of memory");
    r->len = 0;
    r->d = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(uint16_t));
    if (!r->d) die("out of memory");
    return r;
}

static void bn_free(bn *a) {
    if (a) {
        free(a->d);
        free(a);
    }
}

static bn *bn_trim(bn *a) {
    while (a->len > 0 && a->d[a->len - 1] == 0) a->len--;
    return a;
}

static bn *bn_from(uint64_t v) {
    bn *r = bn_new(4);
    while (v) {
        r->d[r->len++] = (uint16_t)v;
        v >>= 16;
    }
    return r;
}

static bn *bn_copy(const bn *a) {
    bn *r = bn_new(a->len);
    memcpy(r->d, a->d, (size_t)a->len * sizeof(uint16_t));
    r->len = a->len;
    return r;
}

static int bn_cmp(const bn *a, const bn *b) {
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    for (int i = a->len - 1; i >= 0; i--)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static bn *bn_add(const bn *a, const bn *b) {
    int n = a->len > b->len ? a->len : b->len;
    bn *r = bn_new(n + 1);
    uint32_t carry = 0;
    for (int i = 0; i < n; i++) {
        uint32_t s = carry + (i < a->len ? a->d[i] : 0) + (i < b->len ? b->d[i] : 0);
        r->d[i] = (uint16_t)s;
        carry = s >> 16;
    }
    r->d[n] = (uint16_t)carry;
    r->len = n + 1;
    return bn_trim(r);
}

/* a - b, requires a >= b */
static bn *bn_sub(const bn *a, const bn *b) {
    bn *r = bn_new(a->len);
    int32_t borrow = 0;
    for (int i = 0; i < a->len; i++) {
        int32_t s = (int32_t)a->d[i] - (i < b->len ? b->d[i] : 0) - borrow;
        borrow = s < 0;
        r->d[i] = (uint16_t)(s + (borrow << 16));
    }
    r->len = a->len;
    return bn_trim(r);
}

static bn *bn_mul(const bn *a, const bn *b) {
    bn *r = bn_new(a->len + b->len);
    memset(r->d, 0, (size_t)(a->len + b->len) * sizeof(uint16_t));
    for (int i = 0; i < a->len; i++) {
        uint32_t carry = 0;
        for (int j = 0; j < b->len; j++) {
            uint32_t t = (uint32_t)a->d[i] * b->d[j] + r->d[i + j] + carry;
            r->d[i + j] = (uint16_t)t;
            carry = t >> 16;
        }
        r->d[i + b->len] = (uint16_t)carry;
    }
    r->len = a->len + b->len;
    return bn_trim(r);
}

static bn *bn_shr1(const bn *a) {
    bn *r = bn_new(a->len);
    for (int i = 0; i < a->len; i++)
        r->d[i] = (uint16_t)((a->d[i] >> 1) | (i + 1 < a->len ? (a->d[i + 1] << 15) : 0));
    r->len = a->len;
    return bn_trim(r);
}

/* Knuth's algorithm D: *q = a / b, *rem = a % b (either may be NULL). */
static void bn_divmod(const bn *a, const bn *b, bn **q, bn **rem) {
    if (b->len == 0) die("division by zero");
    if (bn_cmp(a, b) < 0) {
        if (q) *q = bn_from(0);
        if (rem) *rem = bn_copy(a);
        return;
    }
    int n = b->len, m = a->len - b->len;
    if (n == 1) {
        bn *qq = bn_new(a->len);
        uint32_t r = 0;
        for (int i = a->len - 1; i >= 0; i--) {
            uint32_t cur = (r << 16) | a->d[i];
            qq->d[i] = (uint16_t)(cur / b->d[0]);
            r = cur % b->d[0];
        }
        qq->len = a->len;
        bn_trim(qq);
        if (q) *q = qq; else bn_free(qq);
        if (rem) *rem = bn_from(r);
        return;
    }
    int s = 0;
    while (!((b->d[n - 1] << s) & 0x8000)) s++;
    uint16_t *v = malloc((size_t)n * sizeof *v);
    uint16_t *u = malloc((size_t)(a->len + 1) * sizeof *u);
    if (!u || !v) die("out of memory");
    for (int i = n - 1; i > 0; i--)
        v[i] = (uint16_t)((b->d[i] << s) | (s ? b->d[i - 1] >> (16 - s) : 0));
    v[0] = (uint16_t)(b->d[0] << s);
    u[a->len] = (uint16_t)(s ? a->d[a->len - 1] >> (16 - s) : 0);
    for (int i = a->len - 1; i > 0; i--)
        u[i] = (uint16_t)((a->d[i] << s) | (s ? a->d[i - 1] >> (16 - s) : 0));
    u[0] = (uint16_t)(a->d[0] << s);
    bn *qq = bn_new(m + 1);
    for (int j = m; j >= 0; j--) {
        uint32_t num = ((uint32_t)u[j + n] << 16) | u[j + n - 1];
        uint32_t qhat = num / v[n - 1], rhat = num % v[n - 1];
        while (qhat >= 0x10000 ||
               qhat * v[n - 2] > ((rhat << 16) | u[j + n - 2])) {
            qhat--;
            rhat += v[n - 1];
            if (rhat >= 0x10000) break;
        }
        int64_t borrow = 0;
        uint32_t carry = 0;
        for (int i = 0; i < n; i++) {
            uint32_t p = qhat * v[i] + carry;
            carry = p >> 16;
            int64_t t = (int64_t)u[i + j] - (p & 0xffff) - borrow;
            u[i + j] = (uint16_t)t;
            borrow = t < 0;
        }
        int64_t t = (int64_t)u[j + n] - carry - borrow;
        u[j + n] = (uint16_t)t;
        if (t < 0) { /* qhat was one too large: add back */
            qhat--;
            uint32_t c = 0;
            for (int i = 0; i < n; i++) {
                uint32_t sum = (uint32_t)u[i + j] + v[i] + c;
                u[i + j] = (uint16_t)sum;
                c = sum >> 16;
            }
            u[j + n] = (uint16_t)(u[j + n] + c);
        }
        qq->d[j] = (uint16_t)qhat;
    }
    qq->len = m + 1;
    bn_trim(qq);
    if (q) *q = qq; else bn_free(qq);
    if (rem) {
        bn *r = bn_new(n);
        for (int i = 0; i < n; i++)
            r->d[i] = (uint16_t)((u[i] >> s) | (s && i + 1 < n + 1 ? (uint32_t)u[i + 1] << (16 - s) : 0));
        r->len = n;
        *rem = bn_trim(r);
    }
    free(u);
    free(v);
}

static int bn_bits(const bn *a) {
    if (a->len == 0) return 0;
    int b = (a->len - 1) * 16;
    for (uint16_t top = a->d[a->len - 1]; top; top >>= 1) b++;
    return b;
}

/* floor(sqrt(a)) by Newton's method from above */
static bn *bn_isqrt(const bn *a) {
    if (a->len == 0) return bn_from(0);
    int bits = (bn_bits(a) + 1) / 2 + 1;
    bn *x = bn_new(bits / 16 + 1);
    memset(x->d, 0, (size_t)(bits / 16 + 1) * sizeof(uint16_t));
    x->d[bits / 16] = (uint16_t)(1u << (bits % 16));
    x->len = bits / 16 + 1;
    for (;;) {
        bn *q;
        bn_divmod(a, x, &q, NULL);
        bn *s = bn_add(x, q);
        bn *y = bn_shr1(s);
        bn_free(q);
        bn_free(s);
        if (bn_cmp(y, x) >= 0) {
            bn_free(y);
            return x;
        }
        bn_free(x);
        x = y;
    }
}

static bn *bn_gcd(const bn *a, const bn *b) {
    bn *x = bn_copy(a), *y = bn_copy(b);
    while (y->len) {
        bn *r;
        bn_divmod(x, y, NULL, &r);
        bn_free(x);
        x = y;
        y = r;
    }
    bn_free(y);
    return x;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static bn *random_odd(int bits) {
    int len = (bits + 15) / 16;
    bn *r = bn_new(len);
    for (int i = 0; i < len; i++) r->d[i] = (uint16_t)next();
    int top = bits - (len - 1) * 16; /* 1..16 bits in the top digit */
    r->d[len - 1] &= (uint16_t)((1u << top) - 1);
    r->d[len - 1] |= (uint16_t)(1u << (top - 1));
    r->d[0] |= 1;
    r->len = len;
    return bn_trim(r);
}

#define STEPS 600

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 2000;
    long factored = 0, squares = 0;
    uint64_t check = 0;
    for (long c = 0; c < count; c++) {
        int bits = 24 + (int)(next() % 60);
        bn *f1 = random_odd(bits), *f2 = random_odd(bits + (int)(next() % 24));
        bn *N = bn_mul(f1, f2);
        bn_free(f1);
        bn_free(f2);
        bn *a0 = bn_isqrt(N);
        bn *sq = bn_mul(a0, a0);
        int is_square = bn_cmp(sq, N) == 0;
        bn_free(sq);
        if (is_square) {
            bn_free(a0);
            bn_free(N);
            continue;
        }
        /* P_0 = 0, Q_0 = 1, a_0; p_{-1} = 1, p_0 = a_0 mod N */
        bn *P = bn_from(0), *Q = bn_from(1), *a = bn_copy(a0);
        bn *p_prev = bn_from(1), *p = bn_copy(a0);
        for (int k = 1; k <= STEPS; k++) {
            /* P_k = a_{k-1} Q_{k-1} - P_{k-1} */
            bn *aQ = bn_mul(a, Q);
            bn *Pk = bn_sub(aQ, P);
            bn_free(aQ);
            /* Q_k = (N - P_k^2) / Q_{k-1} */
            bn *P2 = bn_mul(Pk, Pk);
            bn *diff = bn_sub(N, P2);
            bn *Qk;
            bn_divmod(diff, Q, &Qk, NULL);
            bn_free(P2);
            bn_free(diff);
            /* a_k = (a_0 + P_k) / Q_k */
            bn *num = bn_add(a0, Pk);
            bn *ak;
            bn_divmod(num, Qk, &ak, NULL);
            bn_free(num);
            if (k % 2 == 0) {
                /* p_{k-1}^2 = Q_k (mod N): a square Q_k may split N */
                bn *r = bn_isqrt(Qk);
                bn *r2 = bn_mul(r, r);
                if (bn_cmp(r2, Qk) == 0) {
                    squares++;
                    bn *t = bn_cmp(p, r) >= 0 ? bn_sub(p, r) : NULL;
                    if (!t) {
                        bn *pn = bn_add(p, N);
                        t = bn_sub(pn, r);
                        bn_free(pn);
                    }
                    bn *g = bn_gcd(t, N);
                    bn *one = bn_from(1);
                    if (bn_cmp(g, one) > 0 && bn_cmp(g, N) < 0) {
                        factored++;
                        check = check * 31 + g->d[0];
                        k = STEPS; /* found a factor: next N */
                    }
                    bn_free(one);
                    bn_free(g);
                    bn_free(t);
                }
                bn_free(r);
                bn_free(r2);
            }
            /* p_k = a_k p_{k-1} + p_{k-2} (mod N) */
            bn *ap = bn_mul(ak, p);
            bn *sum = bn_add(ap, p_prev);
            bn *pk;
            bn_divmod(sum, N, NULL, &pk);
            bn_free(ap);
            bn_free(sum);
            bn_free(p_prev);
            p_prev = p;
            p = pk;
            bn_free(P);
            bn_free(Q);
            bn_free(a);
            P = Pk;
            Q = Qk;
            a = ak;
            check += a->len ? a->d[0] : 0;
        }
        bn_free(P);
        bn_free(Q);
        bn_free(a);
        bn_free(p_prev);
        bn_free(p);
        bn_free(a0);
        bn_free(N);
    }
    printf("cfrac: %ld numbers, %ld square forms, %ld factored, check %llx\n", count,
           squares, factored, (unsigned long long)check);
    return 0;
}
