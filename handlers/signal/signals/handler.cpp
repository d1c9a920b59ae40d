// cr.signal.signals: signal actions, blocked masks, pending signals and alternate stacks.
#include <signals_generated.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <string>
#include <vector>

#include "signal_records.hpp"

namespace {

namespace fb = cr::image::v1;
using cr::Error;
using cr::Result;
using cr::strf;
using namespace cr::signals;

using Args = std::array<uint64_t, 6>;

[[nodiscard]] uint64_t u64(long v) {
    return static_cast<uint64_t>(v);
}

// Pending siginfo records of one queue, oldest first, read without dequeuing them.
Result<std::vector<uint8_t>> peek_pending(pid_t tid, bool shared) {
    constexpr int k_batch = 32;
    std::vector<uint8_t> out;
    siginfo_t batch[k_batch];
    __ptrace_peeksiginfo_args args{
        0, shared ? static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED) : 0u, k_batch};
    for (;;) {
        long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, batch);
        if (n < 0) return Error::from_errno(strf("tid %d: ptrace PEEKSIGINFO", tid));
        auto* bytes = reinterpret_cast<const uint8_t*>(batch);
        out.insert(out.end(), bytes, bytes + static_cast<size_t>(n) * k_siginfo_size);
        if (n < k_batch) return out;
        args.off += static_cast<uint64_t>(n);
    }
}

std::string describe(const KernelStack& st) {
    if (st.flags & SS_DISABLE) return "none";
    return strf("%#llx+%llu", static_cast<unsigned long long>(st.sp),
                static_cast<unsigned long long>(st.size));
}

struct ThreadRecord {
    pid_t tid = 0;
    uint64_t blocked = 0;
    std::vector<uint8_t> pending;
    KernelStack altstack;
};

struct ActionRecord {
    int signo = 0;
    KernelSigaction action;
};

struct TaskRecord {
    pid_t pid = 0;
    std::vector<ActionRecord> actions;
    std::vector<uint8_t> shared_pending;
    std::vector<ThreadRecord> threads;
};

class SignalsHandler {
public:
    static constexpr const char* k_id = "cr.signal.signals";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "signal actions, blocked masks, pending signals, alternate stacks";
    static constexpr const char* k_claims[] = {"task:signals", nullptr};
    static constexpr const char* k_depends[] = {"cr.task.core", nullptr};
    static constexpr const char* k_schemas[] = {"CRSG", nullptr};

    explicit SignalsHandler(cr::sdk::Context&) {}

    Result<void> dump_task(cr::sdk::Context& ctx, pid_t pid) {
        cr::sdk::Task task = CR_TRY(ctx.task(pid));
        if (task.tids.empty()) return Error(strf("pid %d: no threads", pid));
        auto scratch = CR_TRY(ctx.scratch(pid));
        if (scratch.size < k_siginfo_size)
            return Error(strf("pid %d: scratch memory too small", pid));
        pid_t main_tid = task.tids[0];

        TaskRecord rec;
        rec.pid = pid;
        for (int sig = 1; sig <= k_max_signal; ++sig) {
            if (!has_action(sig)) continue;
            CR_TRY(ctx.remote(main_tid, SYS_rt_sigaction, "rt_sigaction",
                              Args{u64(sig), 0, scratch.addr, 8}));
            KernelSigaction a;
            CR_TRY(ctx.mem_read(pid, scratch.addr, &a, sizeof a));
            if (!is_default(a)) rec.actions.push_back({sig, a});
        }
        rec.shared_pending = CR_TRY(peek_pending(main_tid, true));

        size_t pending = rec.shared_pending.size() / k_siginfo_size;
        for (pid_t tid : task.tids) {
            ThreadRecord t;
            t.tid = tid;
            if (::ptrace(PTRACE_GETSIGMASK, tid, sizeof t.blocked, &t.blocked) != 0)
                return Error::from_errno(strf("tid %d: ptrace GETSIGMASK", tid));
            t.pending = CR_TRY(peek_pending(tid, false));
            CR_TRY(ctx.remote(tid, SYS_sigaltstack, "sigaltstack", Args{0, scratch.addr}));
            CR_TRY(ctx.mem_read(pid, scratch.addr, &t.altstack, sizeof t.altstack));
            pending += t.pending.size() / k_siginfo_size;
            ctx.debug(strf("pid %d tid %d: blocked %#llx, %zu pending, altstack %s", pid, tid,
                           static_cast<unsigned long long>(t.blocked),
                           t.pending.size() / k_siginfo_size, describe(t.altstack).c_str()));
            rec.threads.push_back(std::move(t));
        }
        ctx.debug(strf("pid %d: %zu actions, %zu pending", pid, rec.actions.size(), pending));
        m_tasks.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::TaskSignals>> tasks;
        for (const TaskRecord& t : m_tasks) {
            std::vector<flatbuffers::Offset<fb::SigAction>> actions;
            for (const ActionRecord& a : t.actions)
                actions.push_back(fb::CreateSigAction(fbb, a.signo, a.action.handler,
                                                      a.action.flags, a.action.restorer,
                                                      a.action.mask));
            std::vector<flatbuffers::Offset<fb::ThreadSignals>> threads;
            for (const ThreadRecord& th : t.threads)
                threads.push_back(fb::CreateThreadSignalsDirect(
                    fbb, th.tid, th.blocked, &th.pending, th.altstack.sp, th.altstack.size,
                    th.altstack.flags));
            tasks.push_back(
                fb::CreateTaskSignalsDirect(fbb, t.pid, &actions, &t.shared_pending, &threads));
        }
        fbb.Finish(fb::CreateSignalImageDirect(fbb, &tasks), fb::SignalImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "signals.cr", fbb));
        ctx.debug(strf("signals.cr: %zu tasks", m_tasks.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::SignalImage* image = CR_TRY(cr::sdk::read_section_as<fb::SignalImage>(
            ctx, "signals.cr", "CRSG", &fb::VerifySignalImageBuffer));
        if (image->tasks())
            for (const fb::TaskSignals* t : *image->tasks()) m_restore[t->pid()] = t;
        return {};
    }

    Result<void> restore_task(cr::sdk::Context& ctx, pid_t pid) {
        auto it = m_restore.find(pid);
        if (it == m_restore.end()) return Error(strf("signals.cr: no record for pid %d", pid));
        const fb::TaskSignals& rec = *it->second;
        cr::sdk::Task task = CR_TRY(ctx.task(pid));
        CR_TRY(check_threads(rec, task));
        auto scratch = CR_TRY(ctx.scratch(pid));
        if (scratch.size < k_siginfo_size)
            return Error(strf("pid %d: scratch memory too small", pid));
        pid_t main_tid = task.tids[0];

        size_t actions = 0;
        if (rec.actions()) {
            for (const fb::SigAction* a : *rec.actions()) {
                KernelSigaction k{a->handler(), a->flags(), a->restorer(), a->mask()};
                CR_TRY(ctx.mem_write(pid, scratch.addr, &k, sizeof k));
                CR_TRY_CTX(ctx.remote(main_tid, SYS_rt_sigaction, "rt_sigaction",
                                      Args{u64(a->signo()), scratch.addr, 0, 8}),
                           strf("signal %d", a->signo()));
                ++actions;
            }
        }
        for (const fb::ThreadSignals* t : *rec.threads()) {
            if (t->altstack_flags() & SS_DISABLE) continue;
            KernelStack st =
                restorable_stack(t->altstack_sp(), t->altstack_size(), t->altstack_flags());
            CR_TRY(ctx.mem_write(pid, scratch.addr, &st, sizeof st));
            CR_TRY(ctx.remote(t->tid(), SYS_sigaltstack, "sigaltstack", Args{scratch.addr, 0}));
            ctx.debug(strf("pid %d tid %d: altstack %s", pid, t->tid(), describe(st).c_str()));
        }
        size_t pending = CR_TRY(queue_pending(ctx, pid, rec, scratch.addr));
        for (const fb::ThreadSignals* t : *rec.threads()) {
            cr_thread_entry e{};
            e.struct_size = sizeof e;
            e.regs = nullptr;
            e.has_sigmask = 1;
            e.sigmask = t->blocked();
            CR_TRY(ctx.set_thread_entry(t->tid(), e));
        }
        ctx.debug(strf("pid %d: %zu actions, %zu pending", pid, actions, pending));
        return {};
    }

private:
    static Result<void> check_threads(const fb::TaskSignals& rec, const cr::sdk::Task& task) {
        if (!rec.threads() || rec.threads()->size() == 0)
            return Error(strf("signals.cr: pid %d: no threads recorded", task.pid));
        if (task.tids.empty() || rec.threads()->size() != task.tids.size())
            return Error(strf("signals.cr: pid %d: %u threads recorded, %zu restored", task.pid,
                              rec.threads()->size(), task.tids.size()));
        for (const fb::ThreadSignals* t : *rec.threads())
            if (std::find(task.tids.begin(), task.tids.end(), t->tid()) == task.tids.end())
                return Error(
                    strf("signals.cr: pid %d: thread %d was not restored", task.pid, t->tid()));
        return {};
    }

    // The kernel accepts a siginfo with si_code >= 0 (kill, kernel-sent) only from the target
    // itself: rt_sigqueueinfo from the main thread for the shared queue, rt_tgsigqueueinfo from
    // each thread for its own queue.
    static Result<size_t> queue_pending(cr::sdk::Context& ctx, pid_t pid,
                                        const fb::TaskSignals& rec, uint64_t scratch) {
        size_t count = rec.shared_pending() ? rec.shared_pending()->size() / k_siginfo_size : 0;
        for (const fb::ThreadSignals* t : *rec.threads())
            count += t->pending() ? t->pending()->size() / k_siginfo_size : 0;
        if (count == 0) return count;

        // Signals queued now must wait for the thread's final mask: blocked, nothing gets
        // delivered at the end of a later remote call.
        for (const fb::ThreadSignals* t : *rec.threads())
            if (::ptrace(PTRACE_SETSIGMASK, t->tid(), sizeof k_block_all, &k_block_all) != 0)
                return Error::from_errno(strf("tid %d: ptrace SETSIGMASK", t->tid()));

        auto queue = [&](pid_t from, const flatbuffers::Vector<uint8_t>* records,
                         bool shared) -> Result<void> {
            if (!records) return {};
            for (size_t at = 0; at + k_siginfo_size <= records->size(); at += k_siginfo_size) {
                const uint8_t* info = records->data() + at;
                int signo = record_signals({info, k_siginfo_size}).front();
                CR_TRY(ctx.mem_write(pid, scratch, info, k_siginfo_size));
                if (shared)
                    CR_TRY_CTX(ctx.remote(from, SYS_rt_sigqueueinfo, "rt_sigqueueinfo",
                                          Args{u64(pid), u64(signo), scratch}),
                               strf("signal %d", signo));
                else
                    CR_TRY_CTX(ctx.remote(from, SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo",
                                          Args{u64(pid), u64(from), u64(signo), scratch}),
                               strf("signal %d", signo));
            }
            return {};
        };
        for (const fb::ThreadSignals* t : *rec.threads())
            CR_TRY(queue(t->tid(), t->pending(), false));
        CR_TRY(queue(pid, rec.shared_pending(), true));
        return count;
    }

    std::vector<TaskRecord> m_tasks;
    std::map<pid_t, const fb::TaskSignals*> m_restore;
};

}  // namespace

CR_DECLARE_HANDLER(SignalsHandler)
