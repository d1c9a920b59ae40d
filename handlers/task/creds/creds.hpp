// cr.task.creds: what dump and restore share.
#pragma once

#include <cr/sdk/proc.hpp>
#include <creds_generated.h>

#include <array>
#include <cr/sdk/handler.hpp>
#include <cstdint>
#include <vector>

#include "creds_records.hpp"

namespace cr::creds {

namespace img = cr::image::v1;
using Args = std::array<uint64_t, 6>;

inline uint64_t u64(int64_t v) {
    return static_cast<uint64_t>(v);
}

inline constexpr int k_rlimit_count = 16;

struct FilterRecord {
    uint32_t flags = 0;
    std::vector<uint8_t> program;
};

struct ThreadRecord {
    pid_t tid = 0;
    StatusCreds status;
    uint32_t securebits = 0;
    uint32_t personality = 0;
    int pdeathsig = 0;
    std::vector<FilterRecord> filters;  // oldest first
};

struct LimitRecord {
    int resource = 0;
    uint64_t soft = 0;
    uint64_t hard = 0;
};

struct TaskRecord {
    pid_t pid = 0;
    std::vector<ThreadRecord> threads;
    std::vector<LimitRecord> rlimits;
    int dumpable = 0;
    bool child_subreaper = false;
};

// Reads a task's credentials and attributes; fails, naming the process and the part, when a
// restore could not give them back exactly.
Result<TaskRecord> dump_creds(sdk::Context& ctx, pid_t pid);

// Gives a stopped, transplanted task its credentials back (every thread), seccomp last.
Result<void> restore_creds(sdk::Context& ctx, const img::TaskCreds& rec, const sdk::Task& task);

// "cap_sys_admin" (libcap's name) for an error message.
std::string cap_name(int cap);

using cr::sdk::read_text;

// The personality of a thread, from /proc/PID/task/TID/personality.
Result<uint32_t> read_personality(pid_t pid, pid_t tid);

}  // namespace cr::creds
