// A correct program that replaces the six global operators cppreference's
// example replaces (new, new[], delete, delete[], sized delete, sized
// delete[]) with a header-prefixed tracking allocator, and leaves the nothrow
// forms to the default, which C++17 [new.delete.single]/[new.delete.array]
// says call the (replaced) throwing operator. std::stable_sort takes its
// temporary buffer with nothrow new and returns it with the sized delete.
// Under the preload the nothrow new is the preload's (no header), and the
// program's delete then reads a header that is not there.
// Build: g++ -O2 -std=c++17 -o repl_six_header repl_six_header.cpp
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>
struct Header { std::size_t size; std::size_t magic; };
static long live_bytes;
static void *track(std::size_t n) {
    Header *h = static_cast<Header *>(std::malloc(sizeof(Header) + n));
    if (!h) throw std::bad_alloc();
    h->size = n;
    h->magic = 0x5ec5ec;
    live_bytes += n;
    return h + 1;
}
static void untrack(void *p) {
    if (!p) return;
    Header *h = static_cast<Header *>(p) - 1;
    if (h->magic != 0x5ec5ec) { std::fprintf(stderr, "tracker: no header at %p\n", p); std::abort(); }
    live_bytes -= h->size;
    std::free(h);
}
void *operator new(std::size_t n) { return track(n); }
void *operator new[](std::size_t n) { return track(n); }
void operator delete(void *p) noexcept { untrack(p); }
void operator delete[](void *p) noexcept { untrack(p); }
void operator delete(void *p, std::size_t) noexcept { untrack(p); }
void operator delete[](void *p, std::size_t) noexcept { untrack(p); }
struct Obj { char c[40]; };
int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "nothrow";
    if (!strcmp(which, "nothrow")) {
        Obj *o = new (std::nothrow) Obj;
        delete o;
    } else if (!strcmp(which, "stable_sort")) {
        std::vector<std::string> v;
        for (int i = 0; i < 1000; i++) v.push_back(std::to_string(i * 7919 % 1000));
        std::stable_sort(v.begin(), v.end());
    }
    std::printf("ok %s, live bytes %ld\n", which, live_bytes);
    return 0;
}
