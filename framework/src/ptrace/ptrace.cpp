#include <cr/fw/proc.hpp>
#include <cr/fw/ptrace.hpp>

#include <elf.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace cr::fw {

namespace {

constexpr std::string_view k_tag = "ptrace";
constexpr int k_syscall_stop = SIGTRAP | 0x80;

bool is_event(int status, int event) { return (status >> 8) == (SIGTRAP | (event << 8)); }

Result<void> ptrace_req(long req, pid_t tid, void* addr, void* data, const char* what) {
    if (::ptrace(static_cast<__ptrace_request>(req), tid, addr, data) == -1)
        return Error::from_errno(strf("thread %d: %s", tid, what));
    return {};
}

Result<user_regs_struct> get_regs(pid_t tid) {
    user_regs_struct regs{};
    CR_TRY(ptrace_req(PTRACE_GETREGS, tid, nullptr, &regs, "PTRACE_GETREGS"));
    return regs;
}

Result<void> set_regs(pid_t tid, const user_regs_struct& regs) {
    return ptrace_req(PTRACE_SETREGS, tid, nullptr, const_cast<user_regs_struct*>(&regs),
                      "PTRACE_SETREGS");
}

Result<uint64_t> get_sigmask(pid_t tid) {
    uint64_t mask = 0;
    CR_TRY(ptrace_req(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask,
                      "PTRACE_GETSIGMASK"));
    return mask;
}

Result<void> set_sigmask(pid_t tid, uint64_t mask) {
    return ptrace_req(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask,
                      "PTRACE_SETSIGMASK");
}

bool stop_signal_is_group_stop(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

}  // namespace

Tracer::Tracer(Log& log, Mode mode) : m_log(log), m_mode(mode) {}

Tracer::~Tracer() {
    if (m_threads.empty()) return;
    if (m_mode == Mode::Dump) {
        auto r = cure_and_detach();
        if (!r) m_log.error(k_tag, "detach: " + r.error().message());
    } else {
        kill_all();
    }
    if (m_affinity_saved)
        sched_setaffinity(0, m_saved_affinity.size(), reinterpret_cast<cpu_set_t*>(m_saved_affinity.data()));
}

ThreadState* Tracer::thread(pid_t tid) {
    auto it = m_threads.find(tid);
    return it == m_threads.end() ? nullptr : &it->second;
}

TaskState* Tracer::task(pid_t pid) {
    auto it = m_tasks.find(pid);
    return it == m_tasks.end() ? nullptr : &it->second;
}

Result<void> Tracer::wait_stop(pid_t tid, int& status) {
    for (;;) {
        pid_t r = ::waitpid(tid, &status, __WALL);
        if (r == tid) break;
        if (r == -1 && errno == EINTR) continue;
        return Error::from_errno(strf("thread %d: waitpid", tid));
    }
    if (WIFEXITED(status) || WIFSIGNALED(status))
        return Error(strf("thread %d exited while frozen (%s %d)", tid,
                          WIFEXITED(status) ? "status" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)),
                     ESRCH);
    return {};
}

Result<bool> Tracer::seize(pid_t pid, pid_t tid) {
    long options = PTRACE_O_TRACESYSGOOD;
    if (m_mode == Mode::Restore) options |= PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE | PTRACE_O_SUSPEND_SECCOMP;
    else options |= PTRACE_O_SUSPEND_SECCOMP;
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options)) == -1) {
        if (errno == ESRCH) return false;
        return Error::from_errno(strf("pid %d: PTRACE_SEIZE of thread %d", pid, tid));
    }
    ThreadState t;
    t.tid = tid;
    t.pid = pid;
    m_threads[tid] = t;
    ThreadState& ts = m_threads[tid];
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == -1)
        return Error::from_errno(strf("pid %d: PTRACE_INTERRUPT of thread %d", pid, tid));
    for (;;) {
        int status = 0;
        auto w = wait_stop(tid, status);
        if (!w) {
            m_threads.erase(tid);
            if (w.error().code() == ESRCH) return false;
            return std::move(w).error();
        }
        int sig = WSTOPSIG(status);
        if (status >> 16 == PTRACE_EVENT_STOP) {
            ts.group_stopped = stop_signal_is_group_stop(sig);
            break;
        }
        // A signal arrived first: deliver it as the task would have, the interrupt stays pending.
        int deliver = (sig == SIGTRAP || sig == k_syscall_stop) ? 0 : sig;
        if (::ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver))) == -1)
            return Error::from_errno(strf("pid %d: PTRACE_CONT of thread %d", pid, tid));
    }
    ts.regs = CR_TRY(get_regs(tid));
    ts.sigmask = CR_TRY(get_sigmask(tid));
    TaskState& task = m_tasks[pid];
    task.pid = pid;
    if (std::find(task.tids.begin(), task.tids.end(), tid) == task.tids.end()) task.tids.push_back(tid);
    m_log.debug(k_tag, strf("pid %d thread %d seized%s", pid, tid, ts.group_stopped ? " (stopped)" : ""));
    return true;
}

void Tracer::set_stub(pid_t pid, uint64_t syscall_ip, uint64_t scratch, uint64_t scratch_size) {
    TaskState& task = m_tasks[pid];
    task.pid = pid;
    task.syscall_ip = syscall_ip;
    task.scratch = scratch;
    task.scratch_size = scratch_size;
}

Result<int> Tracer::mem_fd(TaskState& task) {
    if (!task.mem) {
        int fd = ::open(strf("/proc/%d/mem", task.pid).c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return Error::from_errno(strf("pid %d: open /proc/%d/mem", task.pid, task.pid));
        task.mem.reset(fd);
    }
    return task.mem.get();
}

Result<void> Tracer::mem_read(pid_t pid, uint64_t addr, void* buf, size_t size) {
    TaskState& task = m_tasks[pid];
    task.pid = pid;
    int fd = CR_TRY(mem_fd(task));
    auto* p = static_cast<uint8_t*>(buf);
    while (size > 0) {
        ssize_t n = ::pread(fd, p, size, static_cast<off_t>(addr));
        if (n <= 0) return Error::from_errno(strf("pid %d: read memory at 0x%lx", pid, addr), {}, n == 0 ? EIO : errno);
        p += n;
        addr += static_cast<uint64_t>(n);
        size -= static_cast<size_t>(n);
    }
    return {};
}

Result<void> Tracer::mem_write(pid_t pid, uint64_t addr, const void* buf, size_t size) {
    TaskState& task = m_tasks[pid];
    task.pid = pid;
    int fd = CR_TRY(mem_fd(task));
    const auto* p = static_cast<const uint8_t*>(buf);
    while (size > 0) {
        ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(addr));
        if (n <= 0) return Error::from_errno(strf("pid %d: write memory at 0x%lx", pid, addr), {}, n == 0 ? EIO : errno);
        p += n;
        addr += static_cast<uint64_t>(n);
        size -= static_cast<size_t>(n);
    }
    return {};
}

// Any `syscall` (0f 05) byte pair in executable memory will do, aligned or not: the vdso always
// has one, and reading it changes nothing in the task.
Result<void> Tracer::find_syscall_ip(TaskState& task) {
    auto maps = CR_TRY(proc::read_maps(task.pid));
    std::stable_partition(maps.begin(), maps.end(), [](const proc::MapEntry& m) { return m.path == "[vdso]"; });
    for (const auto& m : maps) {
        if (!m.exec || !m.read || m.path == "[vsyscall]") continue;
        size_t len = std::min<uint64_t>(m.end - m.start, 1 << 20);
        std::vector<uint8_t> code(len);
        if (!mem_read(task.pid, m.start, code.data(), len)) continue;
        for (size_t i = 0; i + 1 < len; ++i) {
            if (code[i] == 0x0f && code[i + 1] == 0x05) {
                task.syscall_ip = m.start + i;
                m_log.debug(k_tag, strf("pid %d: syscall instruction at 0x%lx (%s)", task.pid,
                                        task.syscall_ip, m.path.c_str()));
                return {};
            }
        }
    }
    return Error(strf("pid %d: no syscall instruction found in executable memory", task.pid));
}

void Tracer::pin_to(pid_t tid) {
    if (m_pinned_tid == tid) return;
    auto st = proc::read_stat(m_threads[tid].pid, tid);
    if (!st) return;
    if (!m_affinity_saved) {
        m_saved_affinity.resize(sizeof(cpu_set_t));
        if (sched_getaffinity(0, m_saved_affinity.size(), reinterpret_cast<cpu_set_t*>(m_saved_affinity.data())) == 0)
            m_affinity_saved = true;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(st->processor, &set);
    // Same CPU as the tracee: each stop/resume round trip stays on one core's run queue.
    if (sched_setaffinity(0, sizeof set, &set) == 0) m_pinned_tid = tid;
}

Result<int64_t> Tracer::step_syscall(ThreadState& t, TaskState& task, const user_regs_struct& regs) {
    (void)task;
    CR_TRY(set_regs(t.tid, regs));
    int exits_seen = 0;
    for (int stops = 0; exits_seen < 2; ++stops) {
        CR_TRY(ptrace_req(PTRACE_SYSCALL, t.tid, nullptr, nullptr, "PTRACE_SYSCALL"));
        int status = 0;
        CR_TRY(wait_stop(t.tid, status));
        int sig = WSTOPSIG(status);
        if (sig == k_syscall_stop) {
            ++exits_seen;  // entry, then exit
        } else if (is_event(status, PTRACE_EVENT_CLONE)) {
            // clone3 of a thread: the child is reported separately; go on to the exit stop.
        } else if (status >> 16 == PTRACE_EVENT_STOP) {
            // A leftover interrupt trap; keep going.
        } else {
            return Error(strf("thread %d: unexpected stop (signal %d) during remote syscall %ld",
                              t.tid, sig, static_cast<long>(regs.rax)));
        }
        if (stops > 16) return Error(strf("thread %d: remote syscall did not complete", t.tid));
    }
    auto after = CR_TRY(get_regs(t.tid));
    return static_cast<int64_t>(after.rax);
}

Result<int64_t> Tracer::syscall(pid_t tid, long nr, std::array<uint64_t, 6> args) {
    ThreadState* t = thread(tid);
    if (!t) return Error(strf("thread %d is not seized", tid));
    TaskState& task = m_tasks[t->pid];
    if (!task.syscall_ip) CR_TRY(find_syscall_ip(task));
    pin_to(tid);

    user_regs_struct regs = t->regs;
    regs.rax = static_cast<uint64_t>(nr);
    regs.orig_rax = static_cast<uint64_t>(-1);  // resuming must not restart an interrupted call
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    regs.rip = task.syscall_ip;
    CR_TRY(set_sigmask(tid, ~0ULL));  // nothing may be delivered while we borrow the thread
    t->touched = true;
    auto ret = step_syscall(*t, task, regs);
    // Put the thread back as it was, whatever happened.
    auto r1 = set_regs(tid, t->regs);
    auto r2 = set_sigmask(tid, t->sigmask);
    if (!ret) return ret;
    if (!r1) return std::move(r1).error();
    if (!r2) return std::move(r2).error();
    return ret;
}

Result<int64_t> Tracer::syscall_checked(pid_t tid, long nr, const char* what, std::array<uint64_t, 6> args) {
    int64_t ret = CR_TRY(syscall(tid, nr, args));
    if (ret < 0 && ret > -4096)
        return Error::from_errno(strf("pid %d: remote %s", tid, what), {}, static_cast<int>(-ret));
    return ret;
}

Result<Tracer::Scratch> Tracer::scratch(pid_t pid) {
    TaskState* task = this->task(pid);
    if (!task || task->tids.empty()) return Error(strf("pid %d is not seized", pid));
    if (!task->scratch) {
        int64_t addr = CR_TRY(syscall_checked(task->tids[0], SYS_mmap, "mmap of scratch memory",
                                              {0, k_dump_scratch_size, PROT_READ | PROT_WRITE,
                                               MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0}));
        task->scratch = static_cast<uint64_t>(addr);
        task->scratch_size = k_dump_scratch_size;
        task->scratch_mapped_by_us = true;
        m_log.debug(k_tag, strf("pid %d: scratch memory at 0x%lx", pid, task->scratch));
    }
    return Scratch{task->scratch, task->scratch_size};
}

Result<void> Tracer::create_thread(pid_t pid, pid_t tid) {
    TaskState* task = this->task(pid);
    if (!task || task->tids.empty()) return Error(strf("pid %d is not seized", pid));
    auto sc = CR_TRY(scratch(pid));
    clone_args args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    uint64_t set_tid_addr = sc.addr + sizeof args;
    pid_t want = tid;
    args.set_tid = set_tid_addr;
    args.set_tid_size = 1;
    CR_TRY(mem_write(pid, sc.addr, &args, sizeof args));
    CR_TRY(mem_write(pid, set_tid_addr, &want, sizeof want));
    int64_t got = CR_TRY(syscall(task->tids[0], SYS_clone3, {sc.addr, sizeof args, 0, 0, 0, 0}));
    if (got < 0) {
        if (got == -EEXIST) return Error(strf("pid %d: thread id %d is in use", pid, tid), EEXIST);
        return Error::from_errno(strf("pid %d: remote clone3 of thread %d", pid, tid), {}, static_cast<int>(-got));
    }
    if (got != tid) return Error(strf("pid %d: clone3 made thread %ld, wanted %d", pid, static_cast<long>(got), tid));
    // The new thread is traced from birth and reports an initial stop.
    int status = 0;
    CR_TRY(wait_stop(tid, status));
    ThreadState t;
    t.tid = tid;
    t.pid = pid;
    t.regs = CR_TRY(get_regs(tid));
    t.sigmask = CR_TRY(get_sigmask(tid));
    m_threads[tid] = t;
    task = this->task(pid);
    task->tids.push_back(tid);
    m_log.debug(k_tag, strf("pid %d: thread %d created", pid, tid));
    return {};
}

void Tracer::forget(pid_t pid) {
    if (TaskState* task = this->task(pid))
        for (pid_t tid : task->tids) m_threads.erase(tid);
    m_tasks.erase(pid);
    if (m_pinned_tid == pid) m_pinned_tid = 0;
}

Result<void> Tracer::end_task(pid_t pid, int status) {
    ThreadState* t = thread(pid);
    TaskState* task = this->task(pid);
    if (!t || !task) return Error(strf("pid %d is not seized", pid));
    if (WIFSIGNALED(status)) {
        // Killed by the signal itself, untraced, so the parent sees exactly that; no core file.
        rlimit none{0, 0};
        ::prlimit(pid, RLIMIT_CORE, &none, nullptr);
        CR_TRY(set_sigmask(pid, 0));
        forget(pid);
        if (::ptrace(PTRACE_DETACH, pid, nullptr, nullptr) == -1)
            return Error::from_errno(strf("pid %d: PTRACE_DETACH", pid));
        if (::kill(pid, WTERMSIG(status)) != 0) return Error::from_errno(strf("pid %d: kill", pid));
        for (int i = 0; i < 2000; ++i) {
            auto st = proc::read_stat(pid);
            if (!st || st->state == 'Z') return {};
            ::usleep(1000);
        }
        return Error(strf("pid %d did not die of signal %d", pid, WTERMSIG(status)));
    }
    user_regs_struct regs = t->regs;
    regs.rax = SYS_exit_group;
    regs.orig_rax = static_cast<uint64_t>(-1);
    regs.rdi = static_cast<uint64_t>(WEXITSTATUS(status));
    regs.rip = task->syscall_ip;
    CR_TRY(set_regs(pid, regs));
    CR_TRY(ptrace_req(PTRACE_CONT, pid, nullptr, nullptr, "PTRACE_CONT"));
    forget(pid);
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(pid, &st, __WALL);
        if (r == -1 && errno == EINTR) continue;
        if (r == -1) return Error::from_errno(strf("pid %d: waitpid", pid));
        if (WIFEXITED(st) || WIFSIGNALED(st)) return {};
        ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
    }
}

// A thread left in a syscall-exit stop would return to user space with our registers' kernel
// state. Trapping it once more inside signal handling makes the kernel's own syscall-restart
// logic run on the original registers when it resumes.
Result<void> Tracer::cure_thread(ThreadState& t) {
    if (!t.touched) return {};
    CR_TRY(set_regs(t.tid, t.regs));
    CR_TRY(set_sigmask(t.tid, t.sigmask));
    CR_TRY(ptrace_req(PTRACE_INTERRUPT, t.tid, nullptr, nullptr, "PTRACE_INTERRUPT"));
    CR_TRY(ptrace_req(PTRACE_CONT, t.tid, nullptr, nullptr, "PTRACE_CONT"));
    for (int i = 0; i < 16; ++i) {
        int status = 0;
        CR_TRY(wait_stop(t.tid, status));
        if (status >> 16 == PTRACE_EVENT_STOP) {
            t.touched = false;
            return {};
        }
        int sig = WSTOPSIG(status);
        int deliver = (sig == SIGTRAP || sig == k_syscall_stop) ? 0 : sig;
        CR_TRY(ptrace_req(PTRACE_CONT, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver)), "PTRACE_CONT"));
    }
    return Error(strf("thread %d: could not be brought back to a clean stop", t.tid));
}

Result<void> Tracer::cure_and_detach() {
    std::string first_error;
    for (auto& [pid, task] : m_tasks) {
        if (task.scratch_mapped_by_us && !task.tids.empty() && m_threads.count(task.tids[0])) {
            auto r = syscall_checked(task.tids[0], SYS_munmap, "munmap of scratch memory",
                                     {task.scratch, task.scratch_size, 0, 0, 0, 0});
            if (!r && first_error.empty()) first_error = r.error().message();
            task.scratch = 0;
            task.scratch_mapped_by_us = false;
        }
    }
    for (auto& [tid, t] : m_threads) {
        auto r = cure_thread(t);
        if (!r && first_error.empty()) first_error = r.error().message();
        if (::ptrace(PTRACE_DETACH, tid, nullptr, nullptr) == -1 && errno != ESRCH && first_error.empty())
            first_error = Error::from_errno(strf("thread %d: PTRACE_DETACH", tid)).message();
    }
    m_threads.clear();
    m_tasks.clear();
    if (!first_error.empty()) return Error(first_error);
    return {};
}

void Tracer::kill_all() {
    for (auto& [pid, task] : m_tasks) ::kill(pid, SIGKILL);
    // Every traced thread reports its exit to us; collect them all so none is left half-dead.
    size_t remaining = m_threads.size();
    while (remaining > 0) {
        int status = 0;
        pid_t r = ::waitpid(-1, &status, __WALL);
        if (r == -1) {
            if (errno == EINTR) continue;
            break;
        }
        if ((WIFEXITED(status) || WIFSIGNALED(status)) && m_threads.erase(r)) --remaining;
    }
    m_threads.clear();
    m_tasks.clear();
}

Result<void> Tracer::release(const std::set<pid_t>& stopped) {
    for (auto& [tid, t] : m_threads) {
        if (t.entry_regs) CR_TRY(set_regs(tid, *t.entry_regs));
        if (!t.entry_xstate.empty()) {
            iovec iov{t.entry_xstate.data(), t.entry_xstate.size()};
            CR_TRY(ptrace_req(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov,
                              "PTRACE_SETREGSET(NT_X86_XSTATE)"));
        }
        CR_TRY(set_sigmask(tid, t.entry_sigmask.value_or(t.sigmask)));
    }
    // A task that was stopped gets SIGSTOP with its detach: the kernel sends it before the task
    // returns to user space, so it never runs a single instruction before stopping.
    for (pid_t pid : stopped) {
        if (!m_threads.count(pid)) continue;
        if (::ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(SIGSTOP))) == -1)
            return Error::from_errno(strf("thread %d: PTRACE_DETACH", pid));
        m_threads.erase(pid);
    }
    for (auto& [tid, t] : m_threads) {
        // A thread already released may have exited (its process ended) before we got to this
        // one: ESRCH then means there is nothing left to let go.
        if (::ptrace(PTRACE_DETACH, tid, nullptr, nullptr) == -1 && errno != ESRCH)
            return Error::from_errno(strf("thread %d: PTRACE_DETACH", tid));
    }
    m_threads.clear();
    m_tasks.clear();
    // The stop itself happens once the task is next scheduled: wait for it, so that whoever is
    // told "the tree runs" never sees a task that should be stopped in state R.
    for (pid_t pid : stopped) {
        for (int waited_ms = 0;; ++waited_ms) {
            auto st = proc::read_stat(pid);
            if (!st || st->state == 'T' || st->state == 'Z' || st->state == 'X') break;
            if (waited_ms == 5000) {
                m_log.warn(k_tag, strf("pid %d: not stopped 5 s after its SIGSTOP (state %c)", pid, st->state));
                break;
            }
            ::usleep(1000);
        }
    }
    return {};
}

}  // namespace cr::fw
