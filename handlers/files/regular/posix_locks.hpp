// POSIX record locks (fcntl F_SETLK) belong to a process, not to an open file description:
// they are found per task in /proc/locks and taken again by the restored task itself.
#pragma once

#include <sys/types.h>

#include <cr/sdk/handler.hpp>
#include <string>
#include <vector>

#include "lock_rules.hpp"

namespace cr::files_regular {

struct PosixLock {
    pid_t pid = 0;
    int fd = 0;  // an fd of the task on the locked file, open for the lock's access
    bool write = false;
    uint64_t start = 0;
    uint64_t length = 0;
};

// The POSIX locks task `pid` holds, among the held locks of /proc/locks.
Result<std::vector<PosixLock>> posix_locks_of(pid_t pid, const std::vector<LockLine>& all);

// Takes the lock again inside the restored task, through a remote fcntl(F_SETLK).
Result<void> retake_posix_lock(sdk::Context& ctx, const PosixLock& lock);

std::string describe_range(bool write, uint64_t start, uint64_t length);

}  // namespace cr::files_regular
