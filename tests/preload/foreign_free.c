/* Frees memory the preload never allocated: must abort with a message. */
#include <stdlib.h>
#include <sys/mman.h>
int main(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free((char *)p + 64);
    return 0;
}
