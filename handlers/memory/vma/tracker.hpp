// Dirty tracking for incremental dumps, without soft-dirty bits: a userfaultfd in asynchronous
// write-protect mode (UFFD_FEATURE_WP_ASYNC), created by the task itself so that it watches the
// task's memory, and left open in the task between dumps (a registration lives only as long as
// its userfaultfd); PAGEMAP_SCAN then reports the pages written since the last scan and
// protects them again in the same step.
#pragma once

#include "maps.hpp"

#include <cr/sdk/handler.hpp>

#include <optional>

namespace cr::memory {

struct Span {
    uint64_t start;
    uint64_t end;
};

class Tracker {
public:
    // Whether this kernel has what tracking needs, tried once on cr's own memory; why not in why.
    static bool supported(std::string& why);
    // A new tracker inside the task, at a high fd number.
    static Result<Tracker> create(const sdk::Context& ctx, pid_t pid);
    // The tracker a pre-dump left in the task at fd, if it is still there (same inode).
    static std::optional<Tracker> find(pid_t pid, int fd, uint64_t ino);

    // Starts watching a mapping; false when the kernel will not watch it.
    bool watch(uint64_t start, uint64_t end) const;
    [[nodiscard]] int task_fd() const { return m_task_fd; }
    [[nodiscard]] uint64_t ino() const { return m_ino; }

private:
    Tracker(int task_fd, uint64_t ino, UniqueFd fd) : m_task_fd(task_fd), m_ino(ino), m_fd(std::move(fd)) {}
    int m_task_fd;
    uint64_t m_ino;
    UniqueFd m_fd;  // the same userfaultfd, inside cr
};

// The pages of [start, end) written since the last scan, protected again when rearm; nothing
// when the mapping is not watched (new since, moved, or never watchable).
Result<std::optional<std::vector<Span>>> written_since(int pagemap, uint64_t start, uint64_t end, bool rearm);

// The userfaultfds of task pid whose inode is one of inos (trackers, inherited ones included).
std::vector<int> tracker_fds(pid_t pid, const std::vector<uint64_t>& inos);

}  // namespace cr::memory
