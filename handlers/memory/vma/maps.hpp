// The handler's own reading of /proc/PID/maps and smaps (handlers use only the SDK).
#pragma once

#include <cr/sdk/proc.hpp>
#include <cr/sdk/result.hpp>

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cr::memory {

inline constexpr uint64_t k_page = 4096;

struct Mapping {
    uint64_t start = 0;
    uint64_t end = 0;
    int prot = 0;  // PROT_*
    bool shared = false;
    uint64_t offset = 0;
    uint64_t dev = 0;
    uint64_t ino = 0;
    std::string path;
    std::string vmflags;  // "rd wr mr mw me ac" ...

    [[nodiscard]] uint64_t pages() const { return (end - start) / k_page; }
    [[nodiscard]] bool has_flag(const char* f) const;
};

Result<std::vector<Mapping>> read_mappings(pid_t pid, bool with_vmflags);
Result<std::vector<Mapping>> parse_maps(const std::string& text);
using cr::sdk::read_text;

}  // namespace cr::memory
