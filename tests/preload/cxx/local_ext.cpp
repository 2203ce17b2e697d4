// A C++ library a C host loads with RTLD_LOCAL (as Python loads its
// extensions): its C++ runtime is then not in the global scope. A `new`
// the arena refuses must still throw std::bad_alloc, which it catches.
#include <new>
char *volatile kept;  // so the compiler cannot elide the allocation
extern "C" int try_huge(unsigned long size) {
    try {
        kept = new char[size];
        delete[] kept;
        return 0;  // allocated: not what the test asks for
    } catch (const std::bad_alloc &) {
        return 1;
    }
}
