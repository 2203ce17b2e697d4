/* Allocates 1 KiB blocks until malloc fails or argv[1] blocks are held;
 * prints how many it got and the errno of the failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long cap = argc > 1 ? atol(argv[1]) : 100000;
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        errno = 0;
        char *p = malloc(1024);
        if (!p) { err = errno; break; }
        memset(p, 1, 1024);
    }
    printf("count=%ld errno=%d\n", n, err);
    return 0;
}
