// The ptrace engine: seize and freeze threads, run system calls inside them, let them go.
//
// A remote system call points a stopped thread at an existing `syscall` instruction (in the
// vdso of a dumped task, in the trampoline page of a restore stub) and steps it through
// PTRACE_SYSCALL's entry and exit stops. No code is written into a dumped task. Between calls
// every thread shows its original registers and signal mask, so handlers can read them with
// plain ptrace requests.
#pragma once

#include <cr/fw/log.hpp>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/result.hpp>

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace cr::fw {

struct ThreadState {
    pid_t tid = 0;
    pid_t pid = 0;
    user_regs_struct regs{};  // original registers
    uint64_t sigmask = 0;     // original blocked mask
    bool group_stopped = false;
    bool touched = false;  // left in a syscall stop by remote calls: cure before detach
    std::optional<user_regs_struct> entry_regs;
    std::vector<uint8_t> entry_xstate;
    std::optional<uint64_t> entry_sigmask;
};

struct TaskState {
    pid_t pid = 0;
    std::vector<pid_t> tids;
    uint64_t syscall_ip = 0;
    uint64_t scratch = 0;
    uint64_t scratch_size = 0;
    bool scratch_mapped_by_us = false;
    UniqueFd mem;
};

class Tracer {
public:
    enum class Mode { Dump, Restore };
    static constexpr uint64_t k_dump_scratch_size = 4 * 4096;

    Tracer(Log& log, Mode mode);
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;
    // Dump: cures and detaches whatever is still attached. Restore: kills every stub.
    ~Tracer();

    // Seizes and stops one thread. Returns false when the thread no longer exists.
    Result<bool> seize(pid_t pid, pid_t tid);
    [[nodiscard]] bool seized(pid_t tid) const { return m_threads.count(tid) != 0; }
    ThreadState* thread(pid_t tid);
    TaskState* task(pid_t pid);

    Result<int64_t> syscall(pid_t tid, long nr, std::array<uint64_t, 6> args);
    // As syscall, with a negative result turned into an Error naming what.
    Result<int64_t> syscall_checked(pid_t tid, long nr, const char* what, std::array<uint64_t, 6> args);
    struct Scratch {
        uint64_t addr;
        uint64_t size;
    };
    Result<Scratch> scratch(pid_t pid);
    Result<void> mem_read(pid_t pid, uint64_t addr, void* buf, size_t size);
    Result<void> mem_write(pid_t pid, uint64_t addr, const void* buf, size_t size);

    // Restore: where the stub's trampoline instruction and scratch memory are.
    void set_stub(pid_t pid, uint64_t syscall_ip, uint64_t scratch, uint64_t scratch_size);
    // Restore: clone3 a thread with the given tid in task pid; it is seized and stopped.
    Result<void> create_thread(pid_t pid, pid_t tid);

    // Restore: end a seized single-threaded stub so that it leaves this wait status for its
    // parent (WIFEXITED: exit_group in the task; WIFSIGNALED: killed by that signal).
    Result<void> end_task(pid_t pid, int status);
    // Dump: undo remote-call state, unmap scratch memory, detach; the tree runs on unchanged.
    Result<void> cure_and_detach();
    // Dump: kill every seized task and collect the exit of every traced thread.
    void kill_all();
    // Restore: set each thread's entry state and let every thread go.
    Result<void> release(const std::set<pid_t>& stopped = {});
    // Restore: dump: whether threads may still be attached.
    [[nodiscard]] bool empty() const { return m_threads.empty(); }

private:
    Result<void> wait_stop(pid_t tid, int& status);
    Result<void> find_syscall_ip(TaskState& task);
    Result<int64_t> step_syscall(ThreadState& t, TaskState& task, const user_regs_struct& regs);
    Result<void> cure_thread(ThreadState& t);
    void pin_to(pid_t tid);
    void forget(pid_t pid);
    Result<int> mem_fd(TaskState& task);

    Log& m_log;
    Mode m_mode;
    std::map<pid_t, ThreadState> m_threads;
    std::map<pid_t, TaskState> m_tasks;
    pid_t m_pinned_tid = 0;
    bool m_affinity_saved = false;
    std::vector<uint8_t> m_saved_affinity;
};

}  // namespace cr::fw
