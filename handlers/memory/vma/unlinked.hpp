// Mappings of files no path leads to: files deleted while mapped, and memfds ("/memfd:NAME
// (deleted)"). When some task of the tree still has the file open, the restore maps it through
// that fd (which cr.files.regular or cr.memory.memfd restored before any mapping is made), so
// that descriptor and mapping stay one file. Otherwise the contents go into the image once per
// file, and the restore makes an unlinked file (or a memfd) with them for every mapping of it.
#pragma once

#include <cr/sdk/handler.hpp>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "../../files/regular/file_contents.hpp"
#include "maps.hpp"
#include "memory_generated.h"

namespace cr::memory {

namespace img = cr::image::v1;

// Where the restore finds the file of one mapping.
struct UnlinkedRef {
    pid_t holder_pid = 0;
    int holder_fd = -1;
    uint64_t unlinked = 0;  // 1-based index into the image's unlinked files; 0: none
};

[[nodiscard]] bool is_unlinked(const Mapping& m);

class UnlinkedFiles {
public:
    // Dump: how the mapping m of task pid will find its file again.
    Result<UnlinkedRef> describe(sdk::Context& ctx, pid_t pid, const Mapping& m);
    [[nodiscard]] flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<img::UnlinkedFile>>>
    build(flatbuffers::FlatBufferBuilder& fbb) const;

    // Restore: makes every saved file again.
    Result<void> prepare(sdk::Context& ctx, const img::MemoryImage& image);
    // The path a task opens to map v: its own path for an ordinary file.
    Result<std::string> path_for(const img::Vma& v) const;
    // The path a task opens to name its executable: a deleted one is the file of a mapping of it.
    [[nodiscard]] std::string exe_path_for(const img::TaskMemory& tm) const;
    [[nodiscard]] static bool is_unlinked(const img::Vma& v) {
        return v.holder_pid() != 0 || v.unlinked() != 0;
    }

private:
    using Key = std::pair<uint64_t, uint64_t>;  // (dev, ino)
    struct Saved {
        uint64_t index = 0;  // 1-based
        std::string path;
        bool memfd = false;
        uint64_t size = 0;
        uint32_t mode = 0;
        std::string image;
        std::vector<file_contents::Extent> extents;
    };

    Result<void> find_holders(sdk::Context& ctx);

    bool m_holders_found = false;
    std::map<Key, std::pair<pid_t, int>> m_holders;
    std::map<Key, Saved> m_saved;
    std::map<uint64_t, UniqueFd> m_made;  // restore: by index
};

}  // namespace cr::memory
