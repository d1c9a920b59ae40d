// inotify watches: fdinfo names the watched inode by file handle, not by path. Dump finds the
// path again through open_by_handle_at; restore adds the watches in descriptor order so that
// every watch gets its old descriptor back.
#pragma once

#include <cr/sdk/fd.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "event_fdinfo.hpp"

namespace cr::files_event {

struct Watch {
    int wd = 0;
    uint32_t mask = 0;
    std::string path;
    uint64_t dev = 0;  // user-space dev_t
    uint64_t ino = 0;
};

// The path of the watched inode as cr sees it, checked to lead to that very inode.
Result<Watch> locate_watch(const InotifyLine& line);

// Adds the watches to a new inotify instance, each with its saved descriptor; with
// check_inodes, a path that leads to another inode than at dump time is an error. Returns how
// many bytes of placeholder events (IN_IGNORED) were drained from the queue.
Result<size_t> add_watches(int fd, std::vector<Watch> watches, bool check_inodes);

}  // namespace cr::files_event
