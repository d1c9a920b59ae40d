// Open file descriptors of a frozen tree: what kind each is, and which ones share one open
// file description.
#pragma once

#include "orchestrator/host.hpp"

#include <cr/fw/proc.hpp>

namespace cr::fw {

struct FdObject {
    uint64_t id = 0;
    pid_t pid = 0;  // first holder
    int fd = 0;
    UniqueFd cr_fd;  // a duplicate inside cr
    std::string kind;
    std::string description;  // "unix stream socket", "regular file" ...
    std::string link;
    proc::FdInfo info;
};

struct FdEntry {
    pid_t pid = 0;
    int fd = 0;
    uint64_t object_id = 0;
    bool cloexec = false;
};

struct FdTable {
    std::vector<FdObject> objects;
    std::vector<FdEntry> entries;
};

Result<FdTable> collect_fds(const std::vector<TaskRecord>& tasks, Log& log);

// Claim kind and a human description of an fd from its /proc link and a duplicate of it.
std::pair<std::string, std::string> classify_fd(const std::string& link, int fd);

}  // namespace cr::fw
