// A correct program that replaces only the global operator new (malloc-based,
// counting) and keeps the default operator delete (libstdc++: free). Scalar
// new blocks then come from malloc, whose slots keep a stale new[] mark from
// their previous life; the preload's delete checks that stale mark.
// Build: g++ -O2 -o repl_new_only repl_new_only.cpp
#include <cstdio>
#include <cstdlib>
#include <new>
static unsigned long scalars;
void *operator new(std::size_t n) {
    scalars++;
    if (void *p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
struct Obj { char c[100]; };
__attribute__((noinline)) void *opaque(void *p) { __asm__ volatile("" : "+r"(p)); return p; }
int main() {
    // A slot of the 112-byte class used by new[] (the preload's, not replaced)
    // and given back...
    char *a = new char[100];
    delete[] a;
    // ...is the next block malloc hands out for the same class.
    Obj *o = new Obj;                      // replaced: malloc(100)
    printf("new[] block %p, new block %p\n", (void *)a, (void *)o);
    fflush(stdout);
    delete static_cast<Obj *>(opaque(o));  // default delete (sized: operator delete(void*, size_t))
    printf("ok, %lu scalar allocations\n", scalars);
    return 0;
}
