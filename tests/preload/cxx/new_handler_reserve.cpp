// A correct program with the textbook new-handler: keep a reserve, release it
// when operator new runs out, and let the allocation be retried. Run
// unprivileged under a lock limit so that the arena refuses:
//   setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock prlimit --memlock=8388608 \
//     env LD_PRELOAD=.../libsecalloc_preload.so ./new_handler_reserve <aligned|plain|array|nothrow> [size]
// The allocation that triggered the handler is the C++ runtime's retry (the
// preload hands refusals to it); its block is then deleted with the sized,
// matching form of delete, as the compiler does.
// Build: g++ -O2 -std=c++17 -o new_handler_reserve new_handler_reserve.cpp
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>
static void *reserve;
static int handler_runs;
static void release_reserve() {
    handler_runs++;
    std::free(reserve);
    reserve = nullptr;
    std::set_new_handler(nullptr);
}
int main(int argc, char **argv) {
    const char *kind = argc > 1 ? argv[1] : "aligned";
    size_t n = argc > 2 ? strtoul(argv[2], nullptr, 10) : 1000;
    reserve = std::malloc(1 << 20);
    if (!reserve) { puts("no reserve"); return 3; }
    memset(reserve, 1, 1 << 20);
    std::set_new_handler(release_reserve);
    std::vector<void *> blocks;
    blocks.reserve(1 << 15);
    try {
        for (;;) {
            void *p;
            if (!strcmp(kind, "aligned")) p = ::operator new(n, std::align_val_t(64));
            else if (!strcmp(kind, "array")) p = ::operator new[](n);
            else if (!strcmp(kind, "nothrow")) {
                // [new.delete.single]: the default nothrow new calls operator new(size),
                // which runs the new-handler before giving up.
                p = ::operator new(n, std::nothrow);
                if (!p) { printf("nothrow new returned null; handler ran %d times\n", handler_runs); break; }
            }
            else p = ::operator new(n);
            blocks.push_back(p);
            if (handler_runs) break;  // the block the handler made room for
        }
    } catch (const std::bad_alloc &) {
        printf("bad_alloc after %zu blocks, handler ran %d times\n", blocks.size(), handler_runs);
    }
    printf("%zu blocks, handler ran %d times; last block %p; deleting\n", blocks.size(), handler_runs, blocks.empty() ? nullptr : blocks.back());
    fflush(stdout);
    for (void *p : blocks) {
        if (!strcmp(kind, "aligned")) ::operator delete(p, n, std::align_val_t(64));
        else if (!strcmp(kind, "array")) ::operator delete[](p, n);
        else if (!strcmp(kind, "nothrow")) ::operator delete(p);
        else ::operator delete(p, n);
    }
    puts("ok");
    return 0;
}
