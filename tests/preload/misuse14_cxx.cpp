// C++ operator misuse for tests/issue14_misuse.rs, under the preload:
// argv[1] names the case, argv[2] the size. The misuse cases should abort
// with the allocator's message; "correct" and "bad_alloc" must succeed.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

// Out of line and opaque, so the compiler neither warns about nor drops the
// mismatched pairs.
__attribute__((noinline)) static void scalar_delete(char *p) {
    __asm__ volatile("" : "+r"(p));
    delete p;
}
__attribute__((noinline)) static void array_delete(char *p) {
    __asm__ volatile("" : "+r"(p));
    delete[] p;
}

__attribute__((noinline)) static char *opaque_ptr(char *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}

// A type with a destructor: `new Dtor[n]` keeps n in a cookie before the
// elements, so the pointer the program holds is 8 bytes into the block.
struct Dtor {
    char c[24];
    ~Dtor() { c[0] = 0; }
};
__attribute__((noinline)) static void scalar_delete_dtor(Dtor *p) {
    __asm__ volatile("" : "+r"(p));
    delete p;
}

// Over-aligned elements with a destructor: the cookie is alignof(T) bytes.
struct alignas(64) WideDtor {
    char c[64];
    ~WideDtor() { c[0] = 0; }
};
__attribute__((noinline)) static void scalar_delete_wide(WideDtor *p) {
    __asm__ volatile("" : "+r"(p));
    delete p;
}

struct alignas(64) Wide {
    char bytes[64];
};

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *c = argv[1];
    size_t n = strtoul(argv[2], nullptr, 10);
    if (!strcmp(c, "new_array_then_delete")) {
        char *p = new char[n];
        printf("block %p\n", (void *)p);
        fflush(stdout);
        scalar_delete(p);
    } else if (!strcmp(c, "new_dtor_array_then_delete")) {
        Dtor *d = new Dtor[n];
        printf("block %p\n", (void *)(reinterpret_cast<char *>(d) - sizeof(size_t)));
        fflush(stdout);
        scalar_delete_dtor(d);
    } else if (!strcmp(c, "new_wide_dtor_array_then_delete")) {
        WideDtor *d = new WideDtor[n];
        printf("block %p\n", (void *)(reinterpret_cast<char *>(d) - 64));
        fflush(stdout);
        scalar_delete_wide(d);
    } else if (!strcmp(c, "double_delete_beside_a_live_block")) {
        // Two neighbours of one class, the second deleted twice: a double
        // free, not a mismatch with the live first one.
        char *a = new char[n];
        char *b = new char[n];
        printf("block %p %p\n", (void *)a, (void *)b);
        fflush(stdout);
        delete[] b;
        delete[] opaque_ptr(b);
        delete[] a;
    } else if (!strcmp(c, "new_then_delete_array")) {
        char *p = static_cast<char *>(::operator new(n));
        printf("block %p\n", (void *)p);
        fflush(stdout);
        array_delete(p);
    } else if (!strcmp(c, "sized_delete_wrong_size")) {
        void *p = ::operator new(n);
        printf("block %p\n", p);
        fflush(stdout);
        ::operator delete(p, n + 16);
    } else if (!strcmp(c, "sized_array_delete_wrong_size")) {
        void *p = ::operator new[](n);
        printf("block %p\n", p);
        fflush(stdout);
        ::operator delete[](p, n / 2);
    } else if (!strcmp(c, "correct")) {
        // Every form, paired as the standard requires.
        char *a = new char[n];
        a[n - 1] = 1;
        delete[] a;
        void *s = ::operator new(n);
        ::operator delete(s, n);
        void *t = ::operator new[](n);
        ::operator delete[](t, n);
        Wide *w = new Wide[3];
        delete[] w;
        Wide *x = new Wide;
        if (reinterpret_cast<uintptr_t>(x) % 64) return 6;
        delete x;
        void *y = ::operator new(n, std::align_val_t(256));
        if (reinterpret_cast<uintptr_t>(y) % 256) return 7;
        ::operator delete(y, n, std::align_val_t(256));
        char *z = new (std::nothrow) char[n];
        delete[] z;
        auto u = std::make_unique<std::string>(n < 64 ? n : 64, 'x');
        std::map<int, std::vector<std::string>> m;
        for (int i = 0; i < 20000; i++) m[i % 977].push_back(std::to_string(i) + *u);
        for (int i = 0; i < 20000; i += 3) m.erase(i % 977);
        char *zero = new char[0];
        delete[] zero;
        puts("correct");
        return 0;
    } else if (!strcmp(c, "bad_alloc")) {
        // Refused by the arena (no mapping or budget for this much), so the
        // C++ runtime's operator runs and throws, as the standard requires.
        try {
            char *p = new char[n];
            printf("allocated %p\n", (void *)p);
            return 8;
        } catch (const std::bad_alloc &) {
            puts("caught bad_alloc");
        }
        char *q = new (std::nothrow) char[n];
        puts(q ? "nothrow returned a block" : "nothrow returned null");
        return 0;
    } else {
        return 4;
    }
    puts("survived");
    return 0;
}
