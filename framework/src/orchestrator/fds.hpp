// Open file descriptors of a frozen tree: what kind each is, and which ones share one open
// file description.
#pragma once

#include "orchestrator/host.hpp"

#include <cr/fw/proc.hpp>

#include <deque>

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
    bool adopted = false;  // held by no task (in flight): pid is cr's, fd is cr_fd
};

struct FdEntry {
    pid_t pid = 0;
    int fd = 0;
    uint64_t object_id = 0;
    bool cloexec = false;
};

struct FdTable {
    std::deque<FdObject> objects;  // a deque: objects adopted during dump_fd leave the others in place
    std::vector<FdEntry> entries;
};

Result<FdTable> collect_fds(const std::vector<TaskRecord>& tasks, Log& log);

// The object an open file description held by no task (fd, inside cr) is: one of the table's
// when a task holds it too (second: false), else a new adopted object (second: true).
Result<std::pair<uint64_t, bool>> adopt_fd(FdTable& table, int fd, Log& log);

// Claim kind and a human description of an fd from its /proc link and a duplicate of it.
std::pair<std::string, std::string> classify_fd(const std::string& link, int fd);

}  // namespace cr::fw
