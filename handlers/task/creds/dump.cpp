// Dump side of cr.task.creds. What the kernel shows in /proc is read there; what only the task
// can say (securebits, personality, parent death signal, limits, dumpable, subreaper) is asked
// through remote system calls; seccomp filters come through ptrace.
#include <fcntl.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "creds.hpp"

namespace cr::creds {

namespace {

// Seccomp filters of one thread, oldest first. Index 0 of PTRACE_SECCOMP_GET_FILTER is the
// newest filter.
Result<std::vector<FilterRecord>> dump_filters(pid_t pid, pid_t tid, int count) {
    std::vector<FilterRecord> out(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
        auto where = [&] {
            return strf("pid %d thread %d: seccomp filter %d of %d", pid, tid, i + 1, count);
        };
        long n = ::ptrace(PTRACE_SECCOMP_GET_FILTER, tid,
                          reinterpret_cast<void*>(static_cast<long>(i)), nullptr);
        if (n < 0)
            return Error::from_errno(
                where() +
                ": cannot be read (PTRACE_SECCOMP_GET_FILTER), so it could not be restored");
        FilterRecord& f = out[static_cast<size_t>(count - 1 - i)];
        f.program.resize(static_cast<size_t>(n) * k_bpf_insn_size);
        if (::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, reinterpret_cast<void*>(static_cast<long>(i)),
                     f.program.data()) != n)
            return Error::from_errno(
                where() +
                ": cannot be read (PTRACE_SECCOMP_GET_FILTER), so it could not be restored");
        __ptrace_seccomp_metadata meta{static_cast<uint64_t>(i), 0};
        if (::ptrace(PTRACE_SECCOMP_GET_METADATA, tid, reinterpret_cast<void*>(sizeof meta),
                     &meta) < 0)
            return Error::from_errno(where() +
                                     ": its flags cannot be read (PTRACE_SECCOMP_GET_METADATA)");
        f.flags = static_cast<uint32_t>(meta.flags);
        if (may_notify_user(f.program))
            return Error(
                where() +
                ": it can hand system calls to a user-space supervisor (SECCOMP_RET_USER_NOTIF), "
                "whose listener cannot be restored");
    }
    return out;
}

Result<ThreadRecord> dump_thread(sdk::Context& ctx, pid_t pid, pid_t tid, uint64_t scratch) {
    ThreadRecord t;
    t.tid = tid;
    std::string text = CR_TRY(read_text(strf("/proc/%d/task/%d/status", pid, tid)));
    t.status = CR_TRY_CTX(parse_status(text), strf("pid %d thread %d", pid, tid));
    t.securebits = static_cast<uint32_t>(
        CR_TRY(ctx.remote(tid, SYS_prctl, "prctl(PR_GET_SECUREBITS)", {PR_GET_SECUREBITS})));
    t.personality = CR_TRY(read_personality(pid, tid));
    CR_TRY(ctx.remote(tid, SYS_prctl, "prctl(PR_GET_PDEATHSIG)", {PR_GET_PDEATHSIG, scratch}));
    CR_TRY(ctx.mem_read(pid, scratch, &t.pdeathsig, sizeof t.pdeathsig));
    if (t.status.seccomp_mode == 2)
        t.filters = CR_TRY(dump_filters(pid, tid, t.status.seccomp_filters));
    else if (t.status.seccomp_mode != 0 && t.status.seccomp_mode != 1)
        return Error(
            strf("pid %d thread %d: unknown seccomp mode %d", pid, tid, t.status.seccomp_mode));
    return t;
}

// What cr itself has: a restore starts every process with cr's credentials and limits and
// can only lower them.
struct Own {
    StatusCreds status;
    rlimit limits[k_rlimit_count];
};

Result<Own> own_state() {
    Own o;
    std::string text = CR_TRY(read_text("/proc/self/status"));
    o.status = CR_TRY_CTX(parse_status(text), "cr itself");
    for (int r = 0; r < k_rlimit_count; ++r)
        if (::getrlimit(static_cast<__rlimit_resource>(r), &o.limits[r]) != 0)
            return Error::from_errno("getrlimit");
    return o;
}

Result<void> check_restorable(const TaskRecord& rec, const Own& own) {
    if (!(own.status.cap_effective >> CAP_SYS_RESOURCE & 1)) {
        for (const LimitRecord& l : rec.rlimits)
            if (l.hard > own.limits[l.resource].rlim_max)
                return Error(
                    strf("pid %d: %s: hard limit %s is above cr's own (%s), and without "
                         "CAP_SYS_RESOURCE a "
                         "restore cannot raise it",
                         rec.pid, rlimit_name(l.resource), limit_text(l.hard).c_str(),
                         limit_text(own.limits[l.resource].rlim_max).c_str()));
    }
    for (const ThreadRecord& t : rec.threads) {
        const StatusCreds& s = t.status;
        struct Check {
            const char* set;
            uint64_t missing;
        } checks[] = {
            {"permitted", missing_caps(s.cap_permitted, own.status.cap_permitted)},
            {"bounding", missing_caps(s.cap_bounding, own.status.cap_bounding)},
            {"inheritable",
             missing_caps(s.cap_inheritable, own.status.cap_bounding | own.status.cap_inheritable)},
        };
        for (const Check& c : checks)
            if (c.missing)
                return Error(
                    strf("pid %d thread %d: %s capability set holds %s, which cr itself lacks, so "
                         "a restore could "
                         "not give it back",
                         rec.pid, t.tid, c.set, cap_name(first_cap(c.missing)).c_str()));
    }
    if (rec.dumpable != 0 && rec.dumpable != 1)
        return Error(strf("pid %d: dumpable mode %d (set by suid_dumpable) cannot be set back",
                          rec.pid, rec.dumpable));
    return {};
}

}  // namespace

Result<uint32_t> read_personality(pid_t pid, pid_t tid) {
    std::string path = strf("/proc/%d/task/%d/personality", pid, tid);
    std::string text = CR_TRY(read_text(path));
    uint32_t v = 0;
    if (!detail::number(text.substr(0, text.find('\n')), v, 16))
        return Error(path + ": bad personality '" + text + "'");
    return v;
}

std::string cap_name(int cap) {
    char* n = cap < 0 ? nullptr : cap_to_name(static_cast<cap_value_t>(cap));
    std::string out = n ? n : strf("capability %d", cap);
    if (n) cap_free(n);
    return out;
}

Result<TaskRecord> dump_creds(sdk::Context& ctx, pid_t pid) {
    sdk::Task task = CR_TRY(ctx.task(pid));
    auto scratch = CR_TRY(ctx.scratch(pid));
    if (scratch.size < 64) return Error(strf("pid %d: scratch memory too small", pid));
    pid_t main_tid = task.tids.at(0);
    TaskRecord rec;
    rec.pid = pid;
    for (pid_t tid : task.tids)
        rec.threads.push_back(CR_TRY(dump_thread(ctx, pid, tid, scratch.addr)));
    for (int r = 0; r < k_rlimit_count; ++r) {
        // From here when the kernel lets cr (same ids, or CAP_SYS_RESOURCE), else from the task.
        rlimit l{};
        if (::prlimit(pid, static_cast<__rlimit_resource>(r), nullptr, &l) == 0) {
            rec.rlimits.push_back({r, l.rlim_cur, l.rlim_max});
            continue;
        }
        CR_TRY(ctx.remote(main_tid, SYS_prlimit64, "prlimit64", {0, u64(r), 0, scratch.addr}));
        uint64_t lim[2];
        CR_TRY(ctx.mem_read(pid, scratch.addr, lim, sizeof lim));
        rec.rlimits.push_back({r, lim[0], lim[1]});
    }
    rec.dumpable = static_cast<int>(
        CR_TRY(ctx.remote(main_tid, SYS_prctl, "prctl(PR_GET_DUMPABLE)", {PR_GET_DUMPABLE})));
    CR_TRY(ctx.remote(main_tid, SYS_prctl, "prctl(PR_GET_CHILD_SUBREAPER)",
                      {PR_GET_CHILD_SUBREAPER, scratch.addr}));
    int subreaper = 0;
    CR_TRY(ctx.mem_read(pid, scratch.addr, &subreaper, sizeof subreaper));
    rec.child_subreaper = subreaper != 0;
    CR_TRY(check_restorable(rec, CR_TRY(own_state())));
    for (const ThreadRecord& t : rec.threads)
        ctx.debug(
            strf("pid %d thread %d: uid %u/%u/%u/%u gid %u/%u/%u/%u, %zu group(s), caps eff %#llx "
                 "prm %#llx "
                 "bnd %#llx, securebits %#x, seccomp %d (%zu filter(s))%s",
                 pid, t.tid, t.status.uids[0], t.status.uids[1], t.status.uids[2], t.status.uids[3],
                 t.status.gids[0], t.status.gids[1], t.status.gids[2], t.status.gids[3],
                 t.status.groups.size(), static_cast<unsigned long long>(t.status.cap_effective),
                 static_cast<unsigned long long>(t.status.cap_permitted),
                 static_cast<unsigned long long>(t.status.cap_bounding), t.securebits,
                 t.status.seccomp_mode, t.filters.size(),
                 t.status.no_new_privs ? ", no_new_privs" : ""));
    return rec;
}

}  // namespace cr::creds
