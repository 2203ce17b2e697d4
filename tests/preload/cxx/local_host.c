/* Loads argv[1] (a C++ library) RTLD_LOCAL and asks it for an allocation
 * no arena can serve; prints whether the library caught std::bad_alloc. */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("dlopen: %s\n", dlerror()); return 3; }
    int (*try_huge)(unsigned long) = (int (*)(unsigned long))dlsym(lib, "try_huge");
    if (!try_huge) return 4;
    printf("caught=%d\n", try_huge(1UL << 50));
    return 0;
}
