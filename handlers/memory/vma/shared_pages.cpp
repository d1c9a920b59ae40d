#include "shared_pages.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace cr::memory {

Result<void> plan_shared_pages(pid_t pid, const VmaRecord& r, const std::vector<Span>& spans,
                               SharedPagesSeen& seen, std::vector<CopyRange>& out) {
    const Mapping& m = r.map;
    std::string file = strf("/proc/%d/map_files/%lx-%lx", pid, m.start, m.end);
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return Error::from_errno(strf("pid %d: open of the shared memory at 0x%lx", pid, m.start),
                                 file);
    size_t first = out.size();  // ranges of this mapping start here: none crosses into another
    auto add = [&](uint64_t vaddr) {
        if (out.size() > first && out.back().start + out.back().pages * k_page == vaddr)
            ++out.back().pages;
        else
            out.push_back({vaddr, 1, false});
    };
    for (const Span& sp : spans) {
        uint64_t at = m.offset + (sp.start - m.start);
        uint64_t end = m.offset + (sp.end - m.start);
        while (at < end) {
            off_t data = ::lseek(fd.get(), static_cast<off_t>(at), SEEK_DATA);
            if (data < 0 && errno == ENXIO) break;
            if (data < 0)
                return Error::from_errno(strf("pid %d: lseek(SEEK_DATA) in %s", pid, file.c_str()));
            if (static_cast<uint64_t>(data) >= end) break;
            off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
            uint64_t stop = hole < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(hole), end);
            for (uint64_t page = static_cast<uint64_t>(data) / k_page; page * k_page < stop; ++page)
                if (seen.insert({m.ino, page}).second) add(m.start + (page * k_page - m.offset));
            at = std::max<uint64_t>(stop, static_cast<uint64_t>(data) + 1);
        }
    }
    return {};
}

}  // namespace cr::memory
