// The C++ cases of the suite in suite.c (built once, -std=c++17
// -fsized-deallocation, as such suites build them); same verdict: a case
// that prints NOT_CAUGHT was missed.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

static void not_caught() {
    std::puts("NOT_CAUGHT");
    std::fflush(stdout);
}

// Nine words: deleting a one-byte block through this type passes the sized
// delete 72 bytes.
struct nine_words {
    std::size_t w[9];
};

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!std::strcmp(c, "delete_type_size_mismatch")) {
        void *p = new char;
        delete static_cast<nine_words *>(p);
    } else if (!std::strcmp(c, "invalid_array_delete_char")) {
        char *p = new char;
        delete[] p;
    } else if (!std::strcmp(c, "invalid_array_delete_string")) {
        std::string *p = new std::string;
        delete[] p;
    } else if (!std::strcmp(c, "invalid_delete_array_char")) {
        char *p = new char[4096];
        delete p;
    } else if (!std::strcmp(c, "invalid_delete_array_string")) {
        std::string *p = new std::string[4096];
        delete p;
    } else {
        return 4;
    }
    not_caught();
    return 0;
}
