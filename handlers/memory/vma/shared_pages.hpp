// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, shared /dev/zero, System V shm) holds
// pages that no task has in its page tables: pages a task never touched, dropped with
// MADV_DONTNEED, or written by a task that has exited. pagemap does not show them; the shared
// object does. Its data ranges are found through /proc/PID/map_files with SEEK_DATA, and each
// page is copied once per dump, by the first task mapping it (the restore fills the object
// from every task's runs).
#pragma once

#include <set>
#include <utility>

#include "memory.hpp"
#include "pages.hpp"
#include "tracker.hpp"

namespace cr::memory {

using SharedPagesSeen =
    std::set<std::pair<uint64_t, uint64_t>>;  // (shared object inode, page index)

// Adds the pages of the spans of shared mapping r that hold data and were not copied yet.
Result<void> plan_shared_pages(pid_t pid, const VmaRecord& r, const std::vector<Span>& spans,
                               SharedPagesSeen& seen, std::vector<CopyRange>& out);

}  // namespace cr::memory
