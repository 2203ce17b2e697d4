// A correct program that replaces the global pair operator new(size_t) /
// operator delete(void*) with a header-prefixed tracking allocator (the
// classic leak tracker). C++17 [new.delete.single]: the default sized delete
// and the default nothrow new forward to these. Under the preload, the
// preload's sized delete and nothrow new are used instead of forwarding.
// Build: g++ -O2 -std=c++17 -o repl_pair_header repl_pair_header.cpp
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>
struct Header { std::size_t size; std::size_t magic; };
static long live_bytes;
void *operator new(std::size_t n) {
    Header *h = static_cast<Header *>(std::malloc(sizeof(Header) + n));
    if (!h) throw std::bad_alloc();
    h->size = n;
    h->magic = 0x5ec5ec;
    live_bytes += n;
    return h + 1;
}
void operator delete(void *p) noexcept {
    if (!p) return;
    Header *h = static_cast<Header *>(p) - 1;
    if (h->magic != 0x5ec5ec) { std::fprintf(stderr, "tracker: bad magic\n"); std::abort(); }
    live_bytes -= h->size;
    std::free(h);
}
struct Obj { char c[40]; };
int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "sized";
    if (!strcmp(which, "sized")) {
        Obj *o = new Obj;          // replaced new (header)
        delete o;                  // -fsized-deallocation: operator delete(void*, size_t)
    } else if (!strcmp(which, "nothrow")) {
        Obj *o = new (std::nothrow) Obj;  // default nothrow new must call the replaced new
        delete o;                          // replaced (sized->unsized) delete reads the header
    } else if (!strcmp(which, "vector")) {
        std::vector<std::string> v(100, std::string(100, 'x'));
    }
    std::printf("ok %s, live bytes %ld\n", which, live_bytes);
    return 0;
}
