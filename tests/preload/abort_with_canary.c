/* Puts a canary (argv[1], hex) in malloc'd memory, a control canary
 * (argv[2]) on a plain mmap, raises RLIMIT_CORE, and aborts. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static void unhex(const char *h, unsigned char *out, int n) {
    for (int i = 0; i < n; i++) {
        unsigned v; char b[3] = {h[2 * i], h[2 * i + 1], 0};
        v = (unsigned)strtoul(b, NULL, 16);
        out[i] = (unsigned char)v;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    for (int i = 0; i < 64; i++) {
        unsigned char *p = malloc(32 + i);
        unhex(argv[1], p, 32);
    }
    unsigned char *big = malloc(1 << 20);
    unhex(argv[1], big + 5000, 32);
    unsigned char *control = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unhex(argv[2], control, 32);
    /* Wipe argv copies of the canary text is unnecessary: hex text differs
       from the raw bytes searched for. */
    struct rlimit lim = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_CORE, &lim) != 0) {
        getrlimit(RLIMIT_CORE, &lim);
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_CORE, &lim);
    }
    abort();
}
