/* glibc-simple equivalent: one thread, many small malloc/free pairs with a
 * small live set (the allocator's fast path). */
#include <stdio.h>
#include <stdlib.h>
#include "churn_loop.h"

int main(int argc, char **argv) {
    churn(argc > 1 ? atol(argv[1]) : 20000000, 12345u);
    puts("ok");
    return 0;
}
