#include "orchestrator/stub.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cr::fw {

namespace {

// Everything in here runs in a raw clone3 child: no glibc call that trusts the cached thread id.
void report(const StubPlan& plan, pid_t pid, bool ok, const std::string& message) {
    StubReport r{};
    r.pid = pid;
    r.ok = ok ? 1 : 0;
    std::strncpy(r.message, message.c_str(), sizeof r.message - 1);
    (void)!::write(plan.report_fd, &r, sizeof r);  // < PIPE_BUF: atomic
}

[[noreturn]] void die(const StubPlan& plan, pid_t pid, const std::string& message) {
    report(plan, pid, false, message);
    ::_exit(1);
}

Result<void> set_session(const StubTask& t) {
    if (t.role == StubRole::SessionHelper) {
        if (::setsid() < 0) return Error::from_errno("setsid");
    } else if (t.role == StubRole::GroupHelper) {
        if (::setpgid(0, 0) < 0) return Error::from_errno("setpgid");
    } else if (t.sid == t.pid) {
        if (::setsid() < 0) return Error::from_errno("setsid");
    } else if (t.pgid == t.pid) {
        if (::setpgid(0, 0) < 0) return Error::from_errno("setpgid");
    }
    // Joining a group led by another task waits until every stub exists (done remotely).
    return {};
}

Result<void> install_fds(const StubPlan& plan, const StubTask& t) {
    for (const StubFd& f : t.fds) {
        if (::dup3(f.from, f.fd, f.cloexec ? O_CLOEXEC : 0) < 0)
            return Error::from_errno(strf("dup3 to fd %d", f.fd));
    }
    // Close everything else but cr's report pipe and log: the open file descriptions handed
    // down from the controller, and whatever else the controller held when it forked (handlers
    // may keep descriptors until post_restore, at any number), must not live on in the task.
    std::vector<int> keep;
    for (const StubFd& f : t.fds) keep.push_back(f.fd);
    keep.push_back(plan.report_fd);
    if (plan.log_fd >= 0) keep.push_back(plan.log_fd);
    std::sort(keep.begin(), keep.end());
    int next = 0;
    for (int k : keep) {
        if (k > next) ::syscall(SYS_close_range, next, k - 1, 0);
        next = std::max(next, k + 1);
    }
    ::syscall(SYS_close_range, next, ~0U, 0);
    return {};
}

Result<void> map_trampoline(const StubTask& t) {
    void* want = reinterpret_cast<void*>(t.stub_area);
    void* got = ::mmap(want, k_stub_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (got == MAP_FAILED) return Error::from_errno(strf("mmap of the trampoline at 0x%lx", t.stub_area));
    if (got != want) return Error(strf("trampoline landed at %p instead of 0x%lx", got, t.stub_area));
    auto* code = static_cast<uint8_t*>(got);
    std::memset(code, 0xcc, 4096);  // int3 everywhere but the one syscall instruction
    code[0] = 0x0f;
    code[1] = 0x05;
    if (::mprotect(got, 4096, PROT_READ | PROT_EXEC) != 0) return Error::from_errno("mprotect of the trampoline");
    return {};
}

}  // namespace

Result<pid_t> fork_with_pid(pid_t pid, bool clone_parent) {
    clone_args args{};
    // With CLONE_PARENT the kernel takes the exit signal from the caller and wants 0 here.
    args.flags = clone_parent ? CLONE_PARENT : 0;
    args.exit_signal = clone_parent ? 0 : SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(&pid);
    args.set_tid_size = 1;
    long r = ::syscall(SYS_clone3, &args, sizeof args);
    if (r < 0) {
        if (errno == EEXIST) return Error(strf("pid %d is in use", pid), EEXIST);
        return Error::from_errno(strf("clone3 with pid %d", pid));
    }
    return static_cast<pid_t>(r);
}

void stub_main(const StubPlan& plan, size_t index) {
    const StubTask& t = plan.tasks[index];
    // If our parent dies before the transplant, so do we: no half-made process is left behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() == 1) ::_exit(1);
    if (auto r = set_session(t); !r) die(plan, t.pid, r.error().message());
    for (size_t c : t.children) {
        auto child = fork_with_pid(plan.tasks[c].pid, plan.tasks[c].clone_parent);
        if (!child) die(plan, t.pid, child.error().message());
        if (*child == 0) stub_main(plan, c);
    }
    if (auto r = install_fds(plan, t); !r) die(plan, t.pid, r.error().message());
    Host& host = *plan.host;
    if (t.role == StubRole::Task) {
        auto r = host.run_phase("restore_stub", [&](HandlerSlot& s) {
            auto f = s.op(&cr_handler_ops::restore_stub);
            return f ? f(s.self, &s.ctx, t.pid) : CR_OK;
        });
        if (!r) die(plan, t.pid, r.error().message());
    }
    if (auto m = map_trampoline(t); !m) die(plan, t.pid, m.error().message());
    host.log().drop_file();
    report(plan, t.pid, true, "");
    // The report pipe is closed by cr once it has seized this stub (prepare_stub): closing it
    // here could come after the seize, and the task would keep it.
    for (;;) ::syscall(SYS_pause);
}

}  // namespace cr::fw
