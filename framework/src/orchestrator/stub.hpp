// Restore stubs: the processes that become the restored tree. Each is forked by its parent
// stub with its original pid (clone3 set_tid), rebuilds its session, process group and fd table
// in plain C++, maps the trampoline and waits to be transplanted by the controller.
#pragma once

#include "orchestrator/host.hpp"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cr::fw {

struct StubFd {
    int fd = 0;    // number in the restored task
    int from = 0;  // inherited descriptor holding the open file description
    bool cloexec = false;
};

// Helpers exist only during the restore: they hold the pid of a process group or session
// whose leader is gone, so that the members can be put back into it.
enum class StubRole { Task, Zombie, GroupHelper, SessionHelper };

struct StubTask {
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t pgid = 0;
    pid_t sid = 0;
    uint64_t stub_area = 0;
    std::vector<size_t> children;
    std::vector<StubFd> fds;
    StubRole role = StubRole::Task;
    int exit_status = 0;        // zombies
    bool clone_parent = false;  // forked by a session helper on behalf of the real parent
    size_t parent = 0;          // index of the stub that forks this one
};

struct StubReport {
    pid_t pid;
    int32_t ok;  // 1: ready, 0: failed
    char message[400];
};

struct StubPlan {
    std::vector<StubTask> tasks;  // [0] is the root
    int report_fd = -1;           // write end of the controller's report pipe
    int log_fd = -1;              // the run log
    int min_private_fd = 0;       // fds cr keeps in a stub are at or above this
    Host* host = nullptr;
};

// clone3 with set_tid, like fork (or with CLONE_PARENT: a sibling). Returns the child's pid
// in the parent, 0 in the child.
Result<pid_t> fork_with_pid(pid_t pid, bool clone_parent = false);

// Runs in the new process; never returns.
[[noreturn]] void stub_main(const StubPlan& plan, size_t index);

}  // namespace cr::fw
