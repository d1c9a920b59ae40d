// Restore of a task's POSIX timers. The ids come back through PR_TIMER_CREATE_RESTORE_IDS.
// The overrun of the last delivered expiry cannot be written; it is made again: the timer is
// armed with its first expiry overrun + 1 intervals before the wanted next one, so it fires at
// once, and the task itself takes the signal (rt_sigtimedwait), on which the kernel forwards
// the timer to the wanted expiry and records the missed ones as the overrun. A signal that was
// queued at dump time is queued again by the timer itself, not as a copy, so that its delivery
// rearms the timer as before: cr.signal.signals' copy is taken out first.
#include <cr/sdk/kernel.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "timers.hpp"

namespace cr::timers {

namespace {

constexpr int64_t k_min_lead_ns = 1'000'000;       // a next expiry closer than this is moved
constexpr int64_t k_pending_lead_ns = 20'000'000;  // a queued signal comes back this late
constexpr int k_attempts = 3;

// A signal queue: the process's shared one (tid = main thread), or one thread's own. Shared
// queues sort first: they are restored while the threads' own queues are still empty.
struct QueueKey {
    bool thread = false;
    pid_t tid = 0;
    int signo = 0;
    auto operator<=>(const QueueKey&) const = default;
};

class PosixRestore {
public:
    PosixRestore(sdk::Context& ctx, const img::TaskTimers& rec, const sdk::Task& task,
                 uint64_t scratch)
        : m_ctx(ctx),
          m_rec(rec),
          m_pid(task.pid),
          m_main(task.tids.at(0)),
          m_tids(task.tids),
          m_scratch(scratch) {}

    Result<void> run() {
        if (!m_rec.posix() || m_rec.posix()->size() == 0) return {};
        CR_TRY(create_all());
        for (const img::PosixTimer* t : *m_rec.posix())
            if (needs_queue_work(*t)) m_groups[key_of(*t)].push_back(t);
        CR_TRY(drain_all());
        for (auto& [key, timers] : m_groups)
            CR_TRY(restore_group(key, timers));  // shared queues sort first
        for (const img::PosixTimer* t : *m_rec.posix())
            if (!needs_queue_work(*t))
                CR_TRY(arm_relative(*t, t->value()->sec(), t->value()->nsec()));
        return {};
    }

private:
    static bool signals(const img::PosixTimer& t) {
        return (t.notify() & ~k_sigev_thread_id) != SIGEV_NONE;
    }
    static int64_t interval_ns(const img::PosixTimer& t) {
        return t.interval()->sec() * k_nsec_per_sec + t.interval()->nsec();
    }
    static int64_t value_ns(const img::PosixTimer& t) {
        return t.value()->sec() * k_nsec_per_sec + t.value()->nsec();
    }
    static bool wants_overrun(const img::PosixTimer& t) {
        return signals(t) && t.overrun() > 0 && is_wall_clock(t.clock()) && interval_ns(t) > 0;
    }
    static bool needs_queue_work(const img::PosixTimer& t) {
        return signals(t) && (t.pending() || wants_overrun(t));
    }
    QueueKey key_of(const img::PosixTimer& t) const {
        bool thread = t.notify() & k_sigev_thread_id;
        return {thread, thread ? t.tid() : m_main, t.signo()};
    }
    std::string name(const img::PosixTimer& t) const {
        return strf("pid %d: timer %d", m_pid, t.id());
    }

    Result<int64_t> call(pid_t tid, long nr, const char* what, Args args) {
        return m_ctx.remote(tid, nr, what, args);
    }

    Result<void> create_all() {
        CR_TRY(call(m_main, SYS_prctl, "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
                    {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON}));
        auto created = create_each();
        // Off again whatever happened: the task's own timer_create must not read its argument.
        auto off = call(m_main, SYS_prctl, "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
                        {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF});
        CR_TRY(std::move(created));
        return off.ok() ? Result<void>() : Result<void>(std::move(off).error());
    }

    Result<void> create_each() {
        for (const img::PosixTimer* t : *m_rec.posix()) {
            KernelSigevent ev;
            ev.value = t->sigval();
            ev.signo = t->signo();
            ev.notify = t->notify();
            ev.tid = t->tid();
            int32_t id = t->id();
            CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_sigevent, &ev, sizeof ev));
            CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_timer_id, &id, sizeof id));
            int64_t r = CR_TRY(m_ctx.remote_raw(
                m_main, SYS_timer_create,
                {u64(t->clock()), m_scratch + k_off_sigevent, m_scratch + k_off_timer_id}));
            if (r == -EBUSY) return Error(strf("%s: the id is taken", name(*t).c_str()));
            if (r < 0)
                return Error::from_errno(
                    strf("%s: remote timer_create with clock %d", name(*t).c_str(), t->clock()), {},
                    static_cast<int>(-r));
            int32_t got = -1;
            CR_TRY(m_ctx.mem_read(m_pid, m_scratch + k_off_timer_id, &got, sizeof got));
            if (got != id) return Error(strf("%s: timer_create gave id %d", name(*t).c_str(), got));
        }
        return {};
    }

    // Instances of signo in one queue right now.
    Result<size_t> count_in(pid_t tid, bool shared, int signo) {
        auto q = CR_TRY(peek_queue(tid, shared));
        size_t n = 0;
        for (size_t at = 0; at + k_siginfo_size <= q.size(); at += k_siginfo_size)
            n += view_siginfo(q.data() + at).signo == signo;
        return n;
    }

    // Takes `count` instances of signo out of the queues of thread tid: its own first, then the
    // shared queue (that is the order the kernel dequeues in).
    Result<std::vector<std::vector<uint8_t>>> take(pid_t tid, int signo, size_t count) {
        std::vector<std::vector<uint8_t>> out;
        uint64_t set = 1ull << (signo - 1);
        KernelTimespec zero;
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_sigset, &set, sizeof set));
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_timeout, &zero, sizeof zero));
        for (size_t i = 0; i < count; ++i) {
            int64_t r = CR_TRY(call(tid, SYS_rt_sigtimedwait, "rt_sigtimedwait",
                                    {m_scratch + k_off_sigset, m_scratch + k_off_siginfo,
                                     m_scratch + k_off_timeout, 8}));
            if (r != signo)
                return Error(strf("pid %d thread %d: signal %d was queued but could not be taken",
                                  m_pid, tid, signo));
            std::vector<uint8_t> info(k_siginfo_size);
            CR_TRY(m_ctx.mem_read(m_pid, m_scratch + k_off_siginfo, info.data(), info.size()));
            out.push_back(std::move(info));
        }
        return out;
    }

    // Empties every queue of the signals the groups use, keeping what was there, then drops
    // cr.signal.signals' copies of the timers' own queued signals.
    Result<void> drain_all() {
        std::map<int, bool> signos;
        for (auto& [key, timers] : m_groups) signos[key.signo] = true;
        for (auto& [signo, unused] : signos) {
            for (pid_t tid : m_tids) {
                size_t n = CR_TRY(count_in(tid, false, signo));
                if (n) m_stash[{true, tid, signo}] = CR_TRY(take(tid, signo, n));
            }
            size_t n = CR_TRY(count_in(m_main, true, signo));
            if (n) m_stash[{false, m_main, signo}] = CR_TRY(take(m_main, signo, n));
        }
        for (auto& [key, timers] : m_groups)
            for (const img::PosixTimer* t : timers) {
                if (!t->pending()) continue;
                auto& infos = m_stash[key];
                auto copy =
                    std::find_if(infos.begin(), infos.end(), [&](const std::vector<uint8_t>& i) {
                        return is_signal_of_timer(i.data(), t->signo(), t->id());
                    });
                if (copy != infos.end()) infos.erase(copy);
            }
        for (auto& [key, infos] : m_stash)
            m_groups[key];  // every stash goes back in its group's turn
        return {};
    }

    Result<void> requeue(const QueueKey& key) {
        auto it = m_stash.find(key);
        if (it == m_stash.end()) return {};
        for (const auto& info : it->second) {
            CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_siginfo, info.data(), info.size()));
            if (!key.thread)
                CR_TRY(call(m_main, SYS_rt_sigqueueinfo, "rt_sigqueueinfo",
                            {u64(m_pid), u64(key.signo), m_scratch + k_off_siginfo}));
            else
                CR_TRY(call(key.tid, SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo",
                            {u64(m_pid), u64(key.tid), u64(key.signo), m_scratch + k_off_siginfo}));
        }
        return {};
    }

    Result<void> restore_group(const QueueKey& key,
                               const std::vector<const img::PosixTimer*>& timers) {
        for (bool pending : {false, true})
            for (const img::PosixTimer* t : timers)
                if (t->pending() == pending && wants_overrun(*t) &&
                    !CR_TRY(arm_with_overrun(*t, key))) {
                    m_ctx.warn(strf(
                        "%s: overrun %d could not be made again; it reads 0 until the next expiry",
                        name(*t).c_str(), t->overrun()));
                    if (!pending)
                        CR_TRY(arm_relative(*t, t->value()->sec(), t->value()->nsec()));
                    else
                        CR_TRY(arm_expired(*t));
                }
        CR_TRY(requeue(key));
        for (const img::PosixTimer* t : timers)
            if (t->pending() && !wants_overrun(*t)) CR_TRY(arm_expired(*t));
        for (const img::PosixTimer* t : timers)
            if (t->pending() && is_wall_clock(t->clock())) CR_TRY(wait_queued(*t, key));
        return {};
    }

    Result<int64_t> now(int clock) {
        CR_TRY(
            call(m_main, SYS_clock_gettime, "clock_gettime", {u64(clock), m_scratch + k_off_now}));
        KernelTimespec ts;
        CR_TRY(m_ctx.mem_read(m_pid, m_scratch + k_off_now, &ts, sizeof ts));
        return to_ns(ts);
    }

    Result<void> settime(const img::PosixTimer& t, int flags, KernelTimespec value,
                         KernelTimespec interval) {
        KernelItimerspec spec{interval, value};
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch + k_off_itimerspec, &spec, sizeof spec));
        std::string what = strf("timer_settime of timer %d", t.id());
        CR_TRY(call(m_main, SYS_timer_settime, what.c_str(),
                    {u64(t.id()), u64(flags), m_scratch + k_off_itimerspec, 0}));
        return {};
    }

    Result<void> arm_relative(const img::PosixTimer& t, int64_t sec, int64_t nsec) {
        if (sec == 0 && nsec == 0) return {};  // created disarmed
        return settime(t, 0, {sec, nsec}, {t.interval()->sec(), t.interval()->nsec()});
    }

    // Queues the timer's own signal now, as at dump time; a periodic timer keeps its phase.
    Result<void> arm_expired(const img::PosixTimer& t) {
        KernelTimespec interval{t.interval()->sec(), t.interval()->nsec()};
        if (!is_wall_clock(t.clock()))
            return settime(t, 0, {0, 1}, interval);  // fires once it runs
        int64_t n = CR_TRY(now(t.clock()));
        int64_t at = std::min(n, n + value_ns(t) - interval_ns(t));
        return settime(t, TIMER_ABSTIME, from_ns(std::max<int64_t>(at, 1)), interval);
    }

    // False when the overrun cannot be made again (the caller arms the timer plainly).
    Result<bool> arm_with_overrun(const img::PosixTimer& t, const QueueKey& key) {
        int64_t iv = interval_ns(t);
        int64_t lead = t.pending()
                           ? std::min(k_pending_lead_ns, iv)
                           : std::min(std::max(value_ns(t), std::min(k_min_lead_ns, iv)), iv);
        for (int attempt = 0; attempt < k_attempts; ++attempt) {
            // The signal taken must be the timer's own: the thread's queue comes first, then
            // the shared one, and in each the oldest instance.
            if (CR_TRY(count_in(key.tid, false, t.signo())) ||
                (!key.thread && CR_TRY(count_in(m_main, true, t.signo()))))
                return false;
            int64_t first = overrun_first_expiry(CR_TRY(now(t.clock())) + lead, iv, t.overrun());
            if (first < 0) return false;
            CR_TRY(settime(t, TIMER_ABSTIME, from_ns(first), from_ns(iv)));
            CR_TRY(wait_queued(t, key));
            auto info = CR_TRY(take(key.tid, t.signo(), 1));
            if (!is_signal_of_timer(info.front().data(), t.signo(), t.id()))
                return Error(strf("%s: took a signal %d that is not the timer's", name(t).c_str(),
                                  t.signo()));
            std::string what = strf("timer_getoverrun of timer %d", t.id());
            int64_t got = CR_TRY(call(m_main, SYS_timer_getoverrun, what.c_str(), {u64(t.id())}));
            if (got == t.overrun()) return true;
            m_ctx.debug(strf("%s: overrun came out %lld, wanted %d; again", name(t).c_str(),
                             static_cast<long long>(got), t.overrun()));
        }
        return false;
    }

    Result<void> wait_queued(const img::PosixTimer& t, const QueueKey& key) {
        for (int i = 0; i < 2000; ++i) {
            auto q = CR_TRY(peek_queue(key.tid, !key.thread));
            for (size_t at = 0; at + k_siginfo_size <= q.size(); at += k_siginfo_size)
                if (is_signal_of_timer(q.data() + at, t.signo(), t.id())) return {};
            ::usleep(1000);
        }
        return Error(strf("%s: its queued signal %d did not come back within 2 s", name(t).c_str(),
                          t.signo()));
    }

    sdk::Context& m_ctx;
    const img::TaskTimers& m_rec;
    pid_t m_pid;
    pid_t m_main;
    std::vector<pid_t> m_tids;
    uint64_t m_scratch;
    std::map<QueueKey, std::vector<const img::PosixTimer*>> m_groups;
    std::map<QueueKey, std::vector<std::vector<uint8_t>>> m_stash;
};

}  // namespace

Result<void> restore_posix_timers(sdk::Context& ctx, const img::TaskTimers& rec,
                                  const sdk::Task& task) {
    auto scratch = CR_TRY(ctx.scratch(task.pid));
    PosixRestore r(ctx, rec, task, scratch.addr);
    return r.run();
}

}  // namespace cr::timers
