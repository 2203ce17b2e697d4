// A correct program that replaces only the global operator new[] (malloc-based,
// e.g. to count array allocations) and keeps the default operator delete[],
// which in libstdc++ forwards to operator delete -> free. Under the preload,
// delete[] goes to the preload's operator, which finds no "new[]" record.
// Build: g++ -O2 -o repl_new_array_only repl_new_array_only.cpp
#include <cstdio>
#include <cstdlib>
#include <new>
static unsigned long arrays;
void *operator new[](std::size_t n) {
    arrays++;
    if (void *p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
int main() {
    for (int i = 0; i < 3; i++) {
        char *p = new char[100];
        p[0] = 1;
        delete[] p;
    }
    printf("ok, %lu array allocations\n", arrays);
    return 0;
}
