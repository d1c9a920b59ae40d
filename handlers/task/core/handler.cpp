// cr.task.core: threads and what the kernel keeps per thread — registers, extended FPU state,
// TLS base (in the registers), clear-child-tid address, rseq registration, robust futex list
// and name. On restore it creates the threads with their original ids and hands the core each
// thread's entry registers, with interrupted system calls set up to restart.
#include "task_generated.h"

#include <cr/sdk/image.hpp>
#include <cr/sdk/kernel.h>

#include <elf.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cr::task {

namespace img = cr::image::v1;

namespace {

constexpr long k_erestartsys = 512;
constexpr long k_erestartnointr = 513;
constexpr long k_erestartnohand = 514;
constexpr long k_erestart_restartblock = 516;
constexpr size_t k_xstate_max = 64 * 1024;

struct ThreadRecord {
    pid_t tid = 0;
    user_regs_struct regs{};
    std::vector<uint8_t> xstate;
    uint64_t clear_tid = 0;
    cr_rseq_configuration rseq{};
    uint64_t robust_list = 0;
    uint64_t robust_len = 0;
    std::string comm;
};

struct TaskRecord {
    pid_t pid = 0;
    std::vector<ThreadRecord> threads;
};

std::string read_comm(pid_t pid, pid_t tid) {
    std::string path = strf("/proc/%d/task/%d/comm", pid, tid);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[64] = {};
    ssize_t n = fd ? ::read(fd.get(), buf, sizeof buf - 1) : -1;
    std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

Result<ThreadRecord> dump_thread(sdk::Context& ctx, pid_t pid, pid_t tid) {
    ThreadRecord t;
    t.tid = tid;
    if (::ptrace(PTRACE_GETREGS, tid, nullptr, &t.regs) != 0)
        return Error::from_errno(strf("pid %d thread %d: PTRACE_GETREGS", pid, tid));
    t.xstate.resize(k_xstate_max);
    iovec iov{t.xstate.data(), t.xstate.size()};
    if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
        return Error::from_errno(strf("pid %d thread %d: PTRACE_GETREGSET(NT_X86_XSTATE)", pid, tid));
    t.xstate.resize(iov.iov_len);
    auto scratch = CR_TRY(ctx.scratch(pid));
    CR_TRY(ctx.remote(tid, SYS_prctl, "prctl(PR_GET_TID_ADDRESS)", {PR_GET_TID_ADDRESS, scratch.addr}));
    CR_TRY(ctx.mem_read(pid, scratch.addr, &t.clear_tid, sizeof t.clear_tid));
    if (::ptrace(static_cast<__ptrace_request>(CR_PTRACE_GET_RSEQ_CONFIGURATION), tid,
                 reinterpret_cast<void*>(sizeof t.rseq), &t.rseq) < 0)
        return Error::from_errno(strf("pid %d thread %d: PTRACE_GET_RSEQ_CONFIGURATION", pid, tid));
    size_t len = 0;
    void* head = nullptr;
    if (::syscall(SYS_get_robust_list, tid, &head, &len) != 0)
        return Error::from_errno(strf("pid %d thread %d: get_robust_list", pid, tid));
    t.robust_list = reinterpret_cast<uint64_t>(head);
    t.robust_len = len;
    t.comm = read_comm(pid, tid);
    return t;
}

// A call the kernel would continue through its restart block (which lives in the kernel and is
// lost with the task), made again where its arguments say how: a relative sleep with a place for
// the remaining time sleeps for that remainder (the kernel wrote it there when the call was
// interrupted; reading the request from the same place is safe, it is copied in first), a poll
// without a timeout polls again. Anything else returns EINTR, as after a signal.
bool continue_restart_block(user_regs_struct& regs) {
    switch (regs.orig_rax) {
        case SYS_nanosleep:  // (req, rem)
            if (regs.rsi == 0) return false;
            regs.rdi = regs.rsi;
            return true;
        case SYS_clock_nanosleep:  // (clock, flags, req, rem); absolute sleeps never get here
            if (regs.r10 == 0) return false;
            regs.rdx = regs.r10;
            return true;
        case SYS_poll:  // (fds, nfds, timeout in ms)
            return static_cast<int>(regs.rdx) < 0;
        default:
            return false;
    }
}

// The registers a thread resumes with: a system call it was blocked in starts again (or
// returns EINTR where the kernel's restart block cannot be rebuilt).
user_regs_struct entry_regs(const img::Thread& t) {
    user_regs_struct regs{};
    std::memcpy(&regs, t.regs()->data(), sizeof regs);
    if (static_cast<int64_t>(regs.orig_rax) >= 0) {
        switch (-static_cast<int64_t>(regs.rax)) {
            case k_erestartsys:
            case k_erestartnointr:
            case k_erestartnohand:
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
                break;
            case k_erestart_restartblock:
                if (continue_restart_block(regs)) {
                    regs.rax = regs.orig_rax;
                    regs.rip -= 2;
                } else {
                    regs.rax = static_cast<uint64_t>(-EINTR);
                }
                break;
            default:
                break;
        }
    }
    regs.orig_rax = static_cast<uint64_t>(-1);
    return regs;
}

}  // namespace

class TaskHandler {
public:
    static constexpr const char* k_id = "cr.task.core";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary = "threads: registers, FPU/xstate, TLS, rseq, robust lists, names";
    static constexpr const char* k_claims[] = {"task:threads", nullptr};
    static constexpr const char* k_depends[] = {"cr.memory.vma", nullptr};
    static constexpr const char* k_schemas[] = {"CRTK", nullptr};

    explicit TaskHandler(sdk::Context&) {}

    Result<void> dump_task(sdk::Context& ctx, pid_t pid) {
        auto task = CR_TRY(ctx.task(pid));
        TaskRecord rec;
        rec.pid = pid;
        for (pid_t tid : task.tids) rec.threads.push_back(CR_TRY(dump_thread(ctx, pid, tid)));
        ctx.debug(strf("pid %d: %zu thread(s)", pid, rec.threads.size()));
        m_tasks.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_finish(sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb(1 << 14);
        std::vector<flatbuffers::Offset<img::TaskThreads>> tasks;
        for (const TaskRecord& t : m_tasks) {
            std::vector<flatbuffers::Offset<img::Thread>> threads;
            for (const ThreadRecord& th : t.threads) {
                auto regs = fbb.CreateVector(reinterpret_cast<const uint8_t*>(&th.regs), sizeof th.regs);
                threads.push_back(img::CreateThread(fbb, th.tid, regs, fbb.CreateVector(th.xstate), th.clear_tid,
                                                    th.rseq.rseq_abi_pointer, th.rseq.rseq_abi_size, th.rseq.flags,
                                                    th.rseq.signature, th.robust_list, th.robust_len,
                                                    fbb.CreateString(th.comm)));
            }
            tasks.push_back(img::CreateTaskThreads(fbb, t.pid, fbb.CreateVector(threads)));
        }
        fbb.Finish(img::CreateTaskImage(fbb, fbb.CreateVector(tasks)), img::TaskImageIdentifier());
        return sdk::write_section(ctx, "task.cr", fbb);
    }

    Result<void> prepare(sdk::Context& ctx) {
        m_image = CR_TRY(sdk::read_section_as<img::TaskImage>(ctx, "task.cr", img::TaskImageIdentifier(),
                                                             &img::VerifyTaskImageBuffer));
        if (!m_image->tasks()) return Error("task.cr: no tasks");
        for (const img::TaskThreads* t : *m_image->tasks()) {
            if (!t->threads() || t->threads()->size() == 0 || t->threads()->Get(0)->tid() != t->pid())
                return Error(strf("task.cr: pid %d: the main thread must come first", t->pid()));
            for (const img::Thread* th : *t->threads()) {
                if (!th->regs() || th->regs()->size() != sizeof(user_regs_struct))
                    return Error(strf("task.cr: thread %d: register set has the wrong size", th->tid()));
                if (th->xstate() && th->xstate()->size() > k_xstate_max)
                    return Error(strf("task.cr: thread %d: xstate too large", th->tid()));
                if (th->comm() && th->comm()->size() > 15)
                    return Error(strf("task.cr: thread %d: name too long", th->tid()));
            }
        }
        return {};
    }

    Result<void> restore_task(sdk::Context& ctx, pid_t pid) {
        const img::TaskThreads* rec = nullptr;
        for (const img::TaskThreads* t : *m_image->tasks())
            if (t->pid() == pid) rec = t;
        if (!rec) return Error(strf("task.cr: no record of pid %d", pid));
        auto scratch = CR_TRY(ctx.scratch(pid));
        for (const img::Thread* th : *rec->threads()) {
            pid_t tid = th->tid();
            if (tid != pid) CR_TRY(ctx.create_thread(pid, tid));
            CR_TRY(ctx.remote(tid, SYS_set_tid_address, "set_tid_address", {th->clear_tid_address()}));
            if (th->robust_list())
                CR_TRY(ctx.remote(tid, SYS_set_robust_list, "set_robust_list", {th->robust_list(), th->robust_list_length()}));
            if (th->rseq_address())
                CR_TRY(ctx.remote(tid, SYS_rseq, "rseq", {th->rseq_address(), th->rseq_length(), 0, th->rseq_signature()}));
            std::string comm = th->comm() ? th->comm()->str() : "";
            CR_TRY(ctx.mem_write(pid, scratch.addr, comm.c_str(), comm.size() + 1));
            CR_TRY(ctx.remote(tid, SYS_prctl, "prctl(PR_SET_NAME)", {PR_SET_NAME, scratch.addr}));
            user_regs_struct regs = entry_regs(*th);
            cr_thread_entry e{};
            e.struct_size = sizeof e;
            e.regs = &regs;
            e.regs_size = sizeof regs;
            if (th->xstate() && th->xstate()->size() > 0) {
                e.xstate = th->xstate()->data();
                e.xstate_size = th->xstate()->size();
            }
            CR_TRY(ctx.set_thread_entry(tid, e));
        }
        ctx.debug(strf("pid %d: %u thread(s) ready", pid, rec->threads()->size()));
        return {};
    }

private:
    std::vector<TaskRecord> m_tasks;
    const img::TaskImage* m_image = nullptr;
};

}  // namespace cr::task

CR_DECLARE_HANDLER(cr::task::TaskHandler)
