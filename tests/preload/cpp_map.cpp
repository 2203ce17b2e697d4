// A C++ workload under the preload: std::map<std::string, std::string> and
// std::vector growth, then a look at /proc/self/smaps for the mapping that
// holds a map node, to show it is locked and dump-excluded.
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

int main() {
    std::map<std::string, std::string> m;
    for (int i = 0; i < 50000; i++) {
        m["key-" + std::to_string(i)] = std::string(20 + i % 50, 'a' + i % 26);
    }
    std::vector<std::string> v;
    for (auto &kv : m) v.push_back(kv.first);
    uintptr_t node = reinterpret_cast<uintptr_t>(&*m.begin());
    std::ifstream smaps("/proc/self/smaps");
    std::string line, flags, locked;
    bool inside = false;
    while (std::getline(smaps, line)) {
        uintptr_t lo, hi;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
            inside = node >= lo && node < hi;
            continue;
        }
        if (inside && line.rfind("VmFlags:", 0) == 0) flags = line;
        if (inside && line.rfind("Locked:", 0) == 0) locked = line;
    }
    std::printf("entries=%zu first=%s\n", m.size(), m.begin()->first.c_str());
    std::printf("node_mapping %s | %s\n", locked.c_str(), flags.c_str());
    return 0;
}
