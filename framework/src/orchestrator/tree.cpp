#include "orchestrator/tree.hpp"

#include <cr/fw/proc.hpp>

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <set>

namespace cr::fw {

namespace {

// Seizes threads of pid until a listing shows none new (threads may be cloned meanwhile).
Result<std::vector<pid_t>> seize_threads(Tracer& tracer, pid_t pid) {
    std::vector<pid_t> seized;
    for (int round = 0; round < 100; ++round) {
        auto tids = proc::list_threads(pid);
        if (!tids) return Error(strf("pid %d: no such process", pid), ESRCH);
        bool fresh = false;
        for (pid_t tid : *tids) {
            if (tracer.seized(tid)) continue;
            bool ok = CR_TRY(tracer.seize(pid, tid));
            if (ok) {
                seized.push_back(tid);
                fresh = true;
            }
        }
        if (!fresh) {
            // Keep the main thread first, the rest in tid order.
            std::vector<pid_t> live;
            for (pid_t t : *tids)
                if (tracer.seized(t)) live.push_back(t);
            std::sort(live.begin(), live.end(), [pid](pid_t a, pid_t b) {
                return (a == pid) != (b == pid) ? a == pid : a < b;
            });
            return live;
        }
    }
    return Error(strf("pid %d: threads keep appearing; cannot freeze", pid));
}

}  // namespace

bool is_self_or_ancestor(pid_t pid) {
    for (pid_t p = getpid(); p > 0;) {
        if (p == pid) return true;
        auto st = proc::read_stat(p);
        if (!st) return false;
        p = st->ppid;
    }
    return false;
}

Result<std::vector<TaskRecord>> freeze_tree(Tracer& tracer, Log& log, pid_t root) {
    std::vector<TaskRecord> tasks;
    std::deque<pid_t> queue{root};
    std::set<pid_t> seen{root};
    while (!queue.empty()) {
        pid_t pid = queue.front();
        queue.pop_front();
        auto st0 = proc::read_stat(pid);
        if (!st0) return Error(strf("pid %d: no such process", pid), ESRCH);
        if (st0->state == 'Z') {
            // Dead and not reaped: nothing to seize, it comes back as a zombie with its status.
            if (pid == root) return Error(strf("pid %d (%s) is a zombie; there is nothing to dump", pid, st0->comm.c_str()));
            TaskRecord z{pid, st0->ppid, st0->pgrp, st0->session, {}, CR_TASK_ZOMBIE, st0->comm, 0, st0->exit_code};
            log.info("tree", strf("pid %d (%s): zombie, exit status 0x%x", pid, z.comm.c_str(), z.exit_status));
            tasks.push_back(std::move(z));
            continue;
        }
        TaskRecord t;
        t.pid = pid;
        t.tids = CR_TRY(seize_threads(tracer, pid));
        // Read identity after the freeze: it cannot change any more.
        auto st = CR_TRY(proc::read_stat(pid));
        t.ppid = pid == root ? 0 : st.ppid;
        t.pgid = st.pgrp;
        t.sid = st.session;
        t.comm = st.comm;
        if (ThreadState* ts = tracer.thread(pid); ts && ts->group_stopped) t.flags |= CR_TASK_STOPPED;
        t.stub_area = CR_TRY(find_stub_area(pid));
        for (pid_t tid : t.tids) {
            auto children = CR_TRY(proc::list_children(pid, tid));
            for (pid_t c : children)
                if (seen.insert(c).second) queue.push_back(c);
        }
        log.info("tree", strf("pid %d (%s): ppid %d pgid %d sid %d, %zu thread(s)", pid, t.comm.c_str(),
                              t.ppid, t.pgid, t.sid, t.tids.size()));
        tasks.push_back(std::move(t));
    }
    return tasks;
}

Result<uint64_t> find_stub_area(pid_t pid) {
    auto maps = CR_TRY(proc::read_maps(pid));
    uint64_t candidate = 1ULL << 20;
    const uint64_t limit = 1ULL << 47;
    for (const auto& m : maps) {
        if (m.start >= limit) break;
        if (m.start >= candidate + k_stub_size) break;
        if (m.end > candidate) candidate = (m.end + k_stub_size - 1) & ~(k_stub_size - 1);
    }
    if (candidate + k_stub_size > limit) return Error(strf("pid %d: no free address range for the restore trampoline", pid));
    return candidate;
}

}  // namespace cr::fw
