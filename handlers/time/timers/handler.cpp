// cr.time.timers: POSIX timers with their ids, clocks, targets, remaining times, intervals,
// overruns and queued signals, and the interval timers (alarm, virtual, profiling).
//
// What comes back exactly, and what does not:
//  - ids, clocks, notification (signal, none, thread; the target thread of SIGEV_THREAD_ID),
//    signal numbers and sigev_value, intervals, the PR_TIMER_CREATE_RESTORE_IDS mode: exact;
//  - remaining time: the value at dump time, counted from the restore, as for every clock a
//    frozen process sees (an absolute CLOCK_REALTIME expiry becomes relative). A next expiry
//    closer than 1 ms moves to 1 ms when an overrun has to be rebuilt (see restore.cpp);
//  - overrun (timer_getoverrun, the expiries missed before the last delivered one): exact for
//    timers on CLOCK_REALTIME, MONOTONIC, BOOTTIME, TAI and the alarm clocks; for CPU-time
//    clocks it reads 0 until the next delivery (the dump says so). Exact also needs the queue
//    of its signal free of other instances when it is rebuilt, and an interval long enough to
//    be hit between two remote calls; otherwise restore warns and it reads 0;
//  - a signal of the timer queued at dump time: queued again by the timer itself, once. Its
//    delivery rearms the timer as before; the overrun it reports counts the expiries missed
//    since the restore, not those missed before the dump. A periodic timer keeps its phase,
//    except when its overrun had to be rebuilt as well: then the signal comes 20 ms after the
//    restore and the following expiries follow from there;
//  - the next id a new timer_create returns: one above the highest restored id;
//  - itimers: intervals exact; remaining time as above (for ITIMER_VIRTUAL and ITIMER_PROF
//    the tick setitimer adds is taken off again).
#include <cr/sdk/proc.hpp>
#include <cr/sdk/kernel.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cr/sdk/image.hpp>
#include <map>

#include "timers.hpp"

namespace cr::timers {

namespace {

using cr::sdk::read_text;

struct PosixRecord {
    ProcTimer proc;
    KernelItimerspec setting;
    int overrun = 0;
    bool pending = false;
};

struct ItimerRecord {
    int which = 0;
    KernelItimerval value;
};

struct TaskRecord {
    pid_t pid = 0;
    std::vector<PosixRecord> posix;
    std::vector<ItimerRecord> itimers;
    bool restore_ids_mode = false;
};

// Marks the timers whose own signal sits in a queue now.
void mark_pending(std::vector<PosixRecord>& timers, const std::vector<uint8_t>& queue, pid_t tid,
                  bool shared) {
    for (size_t at = 0; at + k_siginfo_size <= queue.size(); at += k_siginfo_size) {
        for (PosixRecord& t : timers) {
            bool thread_timer = t.proc.notify & k_sigev_thread_id;
            if (shared == thread_timer || (thread_timer && t.proc.target != tid)) continue;
            if (is_signal_of_timer(queue.data() + at, t.proc.signo, t.proc.id)) t.pending = true;
        }
    }
}

Result<TaskRecord> dump_timers(sdk::Context& ctx, pid_t pid) {
    sdk::Task task = CR_TRY(ctx.task(pid));
    TaskRecord rec;
    rec.pid = pid;
    std::string text = CR_TRY(read_text(strf("/proc/%d/timers", pid)));
    auto proc = CR_TRY_CTX(parse_proc_timers(text), strf("pid %d", pid));
    auto scratch = CR_TRY(ctx.scratch(pid));
    if (scratch.size < k_scratch_needed)
        return Error(strf("pid %d: scratch memory too small", pid));
    pid_t main_tid = task.tids.at(0);

    int64_t mode = CR_TRY(ctx.remote_raw(
        main_tid, SYS_prctl, {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET}));
    rec.restore_ids_mode = mode == 1;
    for (const ProcTimer& p : proc) {
        PosixRecord t;
        t.proc = p;
        std::string what = strf("timer_gettime of timer %d", p.id);
        CR_TRY(ctx.remote(main_tid, SYS_timer_gettime, what.c_str(),
                          {u64(p.id), scratch.addr + k_off_itimerspec}));
        CR_TRY(ctx.mem_read(pid, scratch.addr + k_off_itimerspec, &t.setting, sizeof t.setting));
        what = strf("timer_getoverrun of timer %d", p.id);
        t.overrun = static_cast<int>(
            CR_TRY(ctx.remote(main_tid, SYS_timer_getoverrun, what.c_str(), {u64(p.id)})));
        if (t.overrun > 0 && !is_wall_clock(p.clock))
            ctx.warn(
                strf("pid %d: timer %d counts CPU time (clock %d): its overrun %d will read 0 "
                     "after a restore",
                     pid, p.id, p.clock, t.overrun));
        rec.posix.push_back(t);
    }
    if (!rec.posix.empty()) {
        // Sampled after timer_gettime, which forwards an expired periodic timer without touching
        // its queued signal.
        mark_pending(rec.posix, CR_TRY(peek_queue(main_tid, true)), main_tid, true);
        for (pid_t tid : task.tids)
            mark_pending(rec.posix, CR_TRY(peek_queue(tid, false)), tid, false);
    }
    std::sort(rec.posix.begin(), rec.posix.end(),
              [](const PosixRecord& a, const PosixRecord& b) { return a.proc.id < b.proc.id; });

    for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
        ItimerRecord it;
        it.which = which;
        CR_TRY(ctx.remote(main_tid, SYS_getitimer, "getitimer",
                          {u64(which), scratch.addr + k_off_itimerspec}));
        CR_TRY(ctx.mem_read(pid, scratch.addr + k_off_itimerspec, &it.value, sizeof it.value));
        if (!is_zero(it.value.value)) rec.itimers.push_back(it);
    }
    for (const PosixRecord& t : rec.posix)
        ctx.debug(
            strf("pid %d: timer %d clock %d notify %d/%d signal %d: next %lld ns, every %lld ns, "
                 "overrun %d%s",
                 pid, t.proc.id, t.proc.clock, t.proc.notify, t.proc.target, t.proc.signo,
                 static_cast<long long>(to_ns(t.setting.value)),
                 static_cast<long long>(to_ns(t.setting.interval)), t.overrun,
                 t.pending ? ", signal queued" : ""));
    ctx.debug(strf("pid %d: %zu POSIX timer(s), %zu interval timer(s) armed", pid, rec.posix.size(),
                   rec.itimers.size()));
    return rec;
}

Result<KernelItimerval> setitimer(sdk::Context& ctx, pid_t pid, pid_t tid, int which,
                                  const KernelItimerval& v, uint64_t scratch) {
    CR_TRY(ctx.mem_write(pid, scratch + k_off_itimerspec, &v, sizeof v));
    std::string what = strf("setitimer(%d)", which);
    CR_TRY(
        ctx.remote(tid, SYS_setitimer, what.c_str(), {u64(which), scratch + k_off_itimerspec, 0}));
    CR_TRY(ctx.remote(tid, SYS_getitimer, "getitimer", {u64(which), scratch + k_off_itimerspec}));
    KernelItimerval now;
    CR_TRY(ctx.mem_read(pid, scratch + k_off_itimerspec, &now, sizeof now));
    return now;
}

Result<void> restore_itimers(sdk::Context& ctx, pid_t pid, pid_t main_tid,
                             const img::TaskTimers& rec, uint64_t scratch) {
    if (!rec.itimers()) return {};
    for (const img::IntervalTimer* it : *rec.itimers()) {
        KernelItimerval v{{it->interval()->sec(), it->interval()->nsec() / 1000},
                          {it->value()->sec(), it->value()->nsec() / 1000}};
        KernelItimerval got = CR_TRY(setitimer(ctx, pid, main_tid, it->which(), v, scratch));
        // setitimer adds a scheduler tick to a CPU-time timer, which getitimer reports back:
        // set it once more, that much shorter.
        int64_t want_us = v.value.sec * 1000000 + v.value.nsec,
                got_us = got.value.sec * 1000000 + got.value.nsec;
        if (it->which() != ITIMER_REAL && got_us > want_us) {
            int64_t us = std::max<int64_t>(want_us - (got_us - want_us), 1);
            v.value = {us / 1000000, us % 1000000};
            CR_TRY(setitimer(ctx, pid, main_tid, it->which(), v, scratch));
        }
    }
    return {};
}

}  // namespace

Result<std::vector<uint8_t>> peek_queue(pid_t tid, bool shared) {
    constexpr int k_batch = 32;
    std::vector<uint8_t> out;
    uint8_t batch[k_batch * k_siginfo_size];
    __ptrace_peeksiginfo_args args{
        0, shared ? static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED) : 0u, k_batch};
    for (;;) {
        long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, batch);
        if (n < 0) return Error::from_errno(strf("thread %d: ptrace PEEKSIGINFO", tid));
        out.insert(out.end(), batch, batch + static_cast<size_t>(n) * k_siginfo_size);
        if (n < k_batch) return out;
        args.off += static_cast<uint64_t>(n);
    }
}

class TimersHandler {
public:
    static constexpr const char* k_id = "cr.time.timers";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "POSIX timers with their ids, overruns and queued signals; alarm and interval timers";
    static constexpr const char* k_claims[] = {"task:timers", nullptr};
    static constexpr const char* k_depends[] = {"cr.signal.signals", nullptr};
    static constexpr const char* k_schemas[] = {"CRTM", nullptr};

    explicit TimersHandler(sdk::Context&) {}

    Result<void> dump_task(sdk::Context& ctx, pid_t pid) {
        m_tasks.push_back(CR_TRY(dump_timers(ctx, pid)));
        return {};
    }

    Result<void> dump_finish(sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        auto ts = [](const KernelTimespec& t) { return img::TimeSpec(t.sec, t.nsec); };
        std::vector<flatbuffers::Offset<img::TaskTimers>> tasks;
        for (const TaskRecord& t : m_tasks) {
            std::vector<flatbuffers::Offset<img::PosixTimer>> posix;
            for (const PosixRecord& p : t.posix) {
                img::TimeSpec value = ts(p.setting.value), interval = ts(p.setting.interval);
                posix.push_back(img::CreatePosixTimer(
                    fbb, p.proc.id, p.proc.clock, p.proc.notify, p.proc.signo, p.proc.sigval,
                    (p.proc.notify & k_sigev_thread_id) ? p.proc.target : 0, &value, &interval,
                    p.overrun, p.pending));
            }
            std::vector<flatbuffers::Offset<img::IntervalTimer>> itimers;
            for (const ItimerRecord& it : t.itimers) {
                img::TimeSpec value(it.value.value.sec, it.value.value.nsec * 1000);
                img::TimeSpec interval(it.value.interval.sec, it.value.interval.nsec * 1000);
                itimers.push_back(img::CreateIntervalTimer(fbb, it.which, &value, &interval));
            }
            tasks.push_back(
                img::CreateTaskTimersDirect(fbb, t.pid, &posix, &itimers, t.restore_ids_mode));
        }
        fbb.Finish(img::CreateTimerImageDirect(fbb, &tasks), img::TimerImageIdentifier());
        return sdk::write_section(ctx, "timers.cr", fbb);
    }

    Result<void> prepare(sdk::Context& ctx) {
        const img::TimerImage* image = CR_TRY(sdk::read_section_as<img::TimerImage>(
            ctx, "timers.cr", img::TimerImageIdentifier(), &img::VerifyTimerImageBuffer));
        if (image->tasks())
            for (const img::TaskTimers* t : *image->tasks()) {
                if (t->posix())
                    for (const img::PosixTimer* p : *t->posix())
                        if (!p->value() || !p->interval() || p->id() < 0 ||
                            (p->notify() != SIGEV_NONE && (p->signo() < 1 || p->signo() > 64)))
                            return Error(strf("timers.cr: pid %d: timer %d is incomplete", t->pid(),
                                              p->id()));
                if (t->itimers())
                    for (const img::IntervalTimer* it : *t->itimers())
                        if (!it->value() || !it->interval())
                            return Error(strf("timers.cr: pid %d: interval timer %d is incomplete",
                                              t->pid(), it->which()));
                m_restore[t->pid()] = t;
            }
        return {};
    }

    Result<void> restore_task(sdk::Context& ctx, pid_t pid) {
        auto it = m_restore.find(pid);
        if (it == m_restore.end()) return Error(strf("timers.cr: no record of pid %d", pid));
        const img::TaskTimers& rec = *it->second;
        sdk::Task task = CR_TRY(ctx.task(pid));
        auto scratch = CR_TRY(ctx.scratch(pid));
        if (scratch.size < k_scratch_needed)
            return Error(strf("pid %d: scratch memory too small", pid));
        CR_TRY(restore_posix_timers(ctx, rec, task));
        CR_TRY(restore_itimers(ctx, pid, task.tids.at(0), rec, scratch.addr));
        if (rec.restore_ids_mode())
            CR_TRY(ctx.remote(task.tids.at(0), SYS_prctl, "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
                              {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON}));
        ctx.debug(strf("pid %d: %u POSIX timer(s), %u interval timer(s)", pid,
                       rec.posix() ? rec.posix()->size() : 0,
                       rec.itimers() ? rec.itimers()->size() : 0));
        return {};
    }

private:
    std::vector<TaskRecord> m_tasks;
    std::map<pid_t, const img::TaskTimers*> m_restore;
};

}  // namespace cr::timers

CR_DECLARE_HANDLER(cr::timers::TimersHandler)
