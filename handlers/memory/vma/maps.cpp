#include "maps.hpp"

#include <cr/sdk/log.hpp>
#include <cr/sdk/fd.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace cr::memory {

bool Mapping::has_flag(const char* f) const {
    std::istringstream in(vmflags);
    std::string word;
    while (in >> word)
        if (word == f) return true;
    return false;
}

Result<std::vector<Mapping>> parse_maps(const std::string& text) {
    std::vector<Mapping> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        Mapping m;
        char perms[5] = {};
        unsigned maj = 0, min = 0;
        int consumed = 0;
        if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n", &m.start,
                        &m.end, perms, &m.offset, &maj, &min, &m.ino, &consumed) < 7)
            return Error(strf("maps: cannot parse line '%s'", line.c_str()));
        m.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                 (perms[2] == 'x' ? PROT_EXEC : 0);
        m.shared = perms[3] == 's';
        m.dev = makedev(maj, min);
        if (consumed > 0 && static_cast<size_t>(consumed) <= line.size()) m.path = line.substr(static_cast<size_t>(consumed));
        out.push_back(std::move(m));
    }
    return out;
}

Result<std::vector<Mapping>> read_mappings(pid_t pid, bool with_vmflags) {
    if (!with_vmflags) return parse_maps(CR_TRY(read_text(strf("/proc/%d/maps", pid))));
    // smaps holds the maps lines plus per-mapping detail; pick the headers and VmFlags.
    std::string smaps = CR_TRY(read_text(strf("/proc/%d/smaps", pid)));
    std::string headers;
    std::vector<std::string> flags;
    std::istringstream in(smaps);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmFlags:", 0) == 0) {
            flags.push_back(line.substr(8));
            continue;
        }
        size_t colon = line.find(':');
        size_t space = line.find(' ');
        // Header lines start with "start-end "; detail lines with "Key:".
        if (colon != std::string::npos && (space == std::string::npos || colon < space)) continue;
        headers += line;
        headers += '\n';
    }
    auto maps = CR_TRY(parse_maps(headers));
    if (flags.size() == maps.size())
        for (size_t i = 0; i < maps.size(); ++i) maps[i].vmflags = flags[i];
    return maps;
}

}  // namespace cr::memory
