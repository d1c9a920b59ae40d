// Restore side of cr.task.creds. A stub starts with cr's own credentials (root, all of cr's
// capabilities); every thread lowers its own (credentials are per thread, and the raw system
// calls change only the calling thread). The order matters:
//  - SECBIT_NO_SETUID_FIXUP first, so that changing uids leaves the capabilities alone and the
//    privileged steps after it still work;
//  - the inheritable set before ambient raises (they need it) and before the bounding set is
//    cut (an inheritable capability may be outside the bounding set);
//  - securebits and the final capability sets late, since both need CAP_SETPCAP;
//  - seccomp filters last where the task may install them itself (no_new_privs or
//    CAP_SYS_ADMIN), otherwise just before the final capset, while CAP_SYS_ADMIN is still
//    there. The core traces with PTRACE_O_SUSPEND_SECCOMP, so no filter blocks its calls;
//  - dumpable and the parent death signal at the very end: any uid change resets both.
// Limits come first, set from cr itself while the stub still has cr's ids; a thread whose
// credentials already are what the stub has (cr's) is left alone.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "creds.hpp"

namespace cr::creds {

namespace {

constexpr uint64_t k_off_data = 64;  // the header, an fprog or a limit pair sit below

int cap_last() {
    UniqueFd fd(::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC));
    char buf[16] = {};
    if (!fd || ::read(fd.get(), buf, sizeof buf - 1) <= 0) return CAP_LAST_CAP;
    return std::atoi(buf);
}

class CredsRestore {
public:
    CredsRestore(sdk::Context& ctx, const img::TaskCreds& rec, const sdk::Task& task,
                 sdk::Context::Scratch scratch)
        : m_ctx(ctx),
          m_rec(rec),
          m_task(task),
          m_pid(task.pid),
          m_scratch(scratch),
          m_own_securebits(static_cast<uint32_t>(::prctl(PR_GET_SECUREBITS))),
          m_last_cap(cap_last()) {}

    Result<void> run() {
        CR_TRY(check_threads());
        CR_TRY(restore_limits());
        bool changed = false;
        for (const img::ThreadCreds* t : *m_rec.threads()) {
            if (CR_TRY(same_as_stub(*t))) continue;
            CR_TRY(restore_thread(*t));
            changed = true;
        }
        pid_t main_tid = m_task.tids.at(0);
        // A uid change resets dumpable; the stubs start with cr's own.
        if (changed || m_rec.dumpable() != ::prctl(PR_GET_DUMPABLE))
            CR_TRY(call(main_tid, SYS_prctl, "prctl(PR_SET_DUMPABLE)",
                        {PR_SET_DUMPABLE, u64(m_rec.dumpable())}));
        if (m_rec.child_subreaper())
            CR_TRY(call(main_tid, SYS_prctl, "prctl(PR_SET_CHILD_SUBREAPER)",
                        {PR_SET_CHILD_SUBREAPER, 1}));
        for (const img::ThreadCreds* t : *m_rec.threads()) {
            if (t->pdeathsig() != 0) {
                if (m_task.ppid != 0)
                    CR_TRY(call(t->tid(), SYS_prctl, "prctl(PR_SET_PDEATHSIG)",
                                {PR_SET_PDEATHSIG, u64(t->pdeathsig())}));
                else
                    m_ctx.warn(
                        strf("pid %d thread %d: parent death signal %d not restored: the "
                             "parent is outside the restored tree (cr restore is the "
                             "parent now)",
                             m_pid, t->tid(), t->pdeathsig()));
            }
            if (t->seccomp_mode() == 1)
                CR_TRY(call(t->tid(), SYS_seccomp, "seccomp(SECCOMP_SET_MODE_STRICT)",
                            {SECCOMP_SET_MODE_STRICT, 0, 0}));
        }
        return {};
    }

private:
    Result<int64_t> call(pid_t tid, long nr, const char* what, Args args) {
        return m_ctx.remote(tid, nr, what, args);
    }

    Result<void> check_threads() {
        if (!m_rec.threads() || m_rec.threads()->size() != m_task.tids.size())
            return Error(strf("creds.cr: pid %d: %u thread(s) recorded, %zu restored", m_pid,
                              m_rec.threads() ? m_rec.threads()->size() : 0, m_task.tids.size()));
        for (const img::ThreadCreds* t : *m_rec.threads()) {
            if (std::find(m_task.tids.begin(), m_task.tids.end(), t->tid()) == m_task.tids.end())
                return Error(strf("creds.cr: pid %d: thread %d was not restored", m_pid, t->tid()));
            if (!t->uids() || t->uids()->size() != 4 || !t->gids() || t->gids()->size() != 4)
                return Error(
                    strf("creds.cr: pid %d thread %d: uids or gids incomplete", m_pid, t->tid()));
            size_t groups = t->groups() ? t->groups()->size() * 4 : 0;
            size_t largest = groups;
            if (t->seccomp_filters())
                for (const img::SeccompFilter* f : *t->seccomp_filters())
                    largest = std::max<size_t>(largest, f->program() ? f->program()->size() : 0);
            if (largest + k_off_data > m_scratch.size)
                return Error(
                    strf("pid %d thread %d: %zu bytes of groups or seccomp filter do not fit in "
                         "the scratch memory",
                         m_pid, t->tid(), largest));
        }
        return {};
    }

    // From the controller: the stub still has cr's own ids, which lets prlimit reach it.
    Result<void> restore_limits() {
        if (!m_rec.rlimits()) return {};
        for (const img::RLimit* l : *m_rec.rlimits()) {
            auto resource = static_cast<__rlimit_resource>(l->resource());
            rlimit want{l->soft(), l->hard()}, have{};
            if (::prlimit(m_pid, resource, &want, nullptr) == 0) continue;
            int err = errno;
            if (err == EPERM && ::prlimit(m_pid, resource, nullptr, &have) == 0 &&
                l->hard() > have.rlim_max)
                return Error(
                    strf("pid %d: %s: hard limit %s is above the one this restore runs "
                         "with (%s); raising it needs CAP_SYS_RESOURCE",
                         m_pid, rlimit_name(l->resource()), limit_text(l->hard()).c_str(),
                         limit_text(have.rlim_max).c_str()));
            return Error::from_errno(
                strf("pid %d: prlimit of %s to %s/%s", m_pid, rlimit_name(l->resource()),
                     limit_text(l->soft()).c_str(), limit_text(l->hard()).c_str()),
                {}, err);
        }
        return {};
    }

    // Whether the thread has what it should have already: the stub's credentials are cr's.
    Result<bool> same_as_stub(const img::ThreadCreds& t) {
        if (t.seccomp_mode() != 0 || t.no_new_privs() || t.securebits() != m_own_securebits)
            return false;
        std::string text = CR_TRY(read_text(strf("/proc/%d/task/%d/status", m_pid, t.tid())));
        StatusCreds now = CR_TRY_CTX(parse_status(text), strf("pid %d thread %d", m_pid, t.tid()));
        for (int i = 0; i < 4; ++i)
            if (now.uids[i] != (*t.uids())[i] || now.gids[i] != (*t.gids())[i]) return false;
        std::vector<uint32_t> groups;
        if (t.groups()) groups.assign(t.groups()->begin(), t.groups()->end());
        if (now.groups != groups || now.cap_inheritable != t.cap_inheritable() ||
            now.cap_permitted != t.cap_permitted() || now.cap_effective != t.cap_effective() ||
            now.cap_bounding != t.cap_bounding() || now.cap_ambient != t.cap_ambient() ||
            now.no_new_privs || now.seccomp_mode != 0)
            return false;
        return CR_TRY(read_personality(m_pid, t.tid())) == t.personality();
    }

    Result<void> set_ids(pid_t tid, long res_nr, long fs_nr,
                         const flatbuffers::Vector<uint32_t>& ids, const char* what) {
        CR_TRY(call(tid, res_nr, what, {ids[0], ids[1], ids[2]}));
        CR_TRY(call(tid, fs_nr, what, {ids[3]}));
        // setfs[ug]id reports no error; an invalid id makes it only return the current one.
        int64_t now = CR_TRY(call(tid, fs_nr, what, {0xffffffffu}));
        if (static_cast<uint32_t>(now) != ids[3])
            return Error(strf("pid %d thread %d: filesystem id %u could not be set (it is %u)",
                              m_pid, tid, ids[3], static_cast<uint32_t>(now)));
        return {};
    }

    Result<void> capset(pid_t tid, uint64_t effective, uint64_t permitted, uint64_t inheritable) {
        CapHeader h;
        CapSets s = cap_sets(effective, permitted, inheritable);
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr, &h, sizeof h));
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr + k_off_data, &s, sizeof s));
        CR_TRY(call(tid, SYS_capset, "capset", {m_scratch.addr, m_scratch.addr + k_off_data}));
        return {};
    }

    Result<CapSets> capget(pid_t tid) {
        CapHeader h;
        CapSets s;
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr, &h, sizeof h));
        CR_TRY(call(tid, SYS_capget, "capget", {m_scratch.addr, m_scratch.addr + k_off_data}));
        CR_TRY(m_ctx.mem_read(m_pid, m_scratch.addr + k_off_data, &s, sizeof s));
        return s;
    }

    Result<void> install_filters(const img::ThreadCreds& t) {
        if (!t.seccomp_filters()) return {};
        for (const img::SeccompFilter* f : *t.seccomp_filters()) {
            if (!f->program() || f->program()->size() % k_bpf_insn_size != 0 ||
                f->program()->size() == 0)
                return Error(
                    strf("creds.cr: pid %d thread %d: malformed seccomp filter", m_pid, t.tid()));
            KernelFprog prog;
            prog.len = static_cast<uint16_t>(f->program()->size() / k_bpf_insn_size);
            prog.filter = m_scratch.addr + k_off_data;
            CR_TRY(m_ctx.mem_write(m_pid, prog.filter, f->program()->data(), f->program()->size()));
            CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr, &prog, sizeof prog));
            CR_TRY(call(t.tid(), SYS_seccomp, "seccomp(SECCOMP_SET_MODE_FILTER)",
                        {SECCOMP_SET_MODE_FILTER, f->flags(), m_scratch.addr}));
        }
        return {};
    }

    Result<void> restore_thread(const img::ThreadCreds& t) {
        pid_t tid = t.tid();
        CR_TRY(call(tid, SYS_prctl, "prctl(PR_SET_SECUREBITS)",
                    {PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP}));
        CR_TRY(call(tid, SYS_personality, "personality", {t.personality()}));
        std::vector<uint32_t> groups;
        if (t.groups()) groups.assign(t.groups()->begin(), t.groups()->end());
        if (!groups.empty())
            CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr + k_off_data, groups.data(),
                                   groups.size() * 4));
        CR_TRY(call(tid, SYS_setgroups, "setgroups", {groups.size(), m_scratch.addr + k_off_data}));
        CR_TRY(set_ids(tid, SYS_setresgid, SYS_setfsgid, *t.gids(), "setresgid"));
        CR_TRY(set_ids(tid, SYS_setresuid, SYS_setfsuid, *t.uids(), "setresuid"));

        CapSets cur = CR_TRY(capget(tid));
        CR_TRY(capset(tid, effective_of(cur), permitted_of(cur), t.cap_inheritable()));
        CR_TRY(call(tid, SYS_prctl, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
                    {PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0}));
        for (int cap = 0; cap < 64; ++cap)
            if (t.cap_ambient() >> cap & 1)
                CR_TRY_CTX(call(tid, SYS_prctl, "prctl(PR_CAP_AMBIENT_RAISE)",
                                {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, u64(cap), 0, 0}),
                           cap_name(cap));
        for (int cap = 0; cap <= m_last_cap && cap < 64; ++cap)
            if (!(t.cap_bounding() >> cap & 1))
                CR_TRY_CTX(
                    call(tid, SYS_prctl, "prctl(PR_CAPBSET_DROP)", {PR_CAPBSET_DROP, u64(cap)}),
                    cap_name(cap));
        if (t.no_new_privs())
            CR_TRY(call(tid, SYS_prctl, "prctl(PR_SET_NO_NEW_PRIVS)",
                        {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}));

        bool filters_last = t.no_new_privs() || (t.cap_effective() >> CAP_SYS_ADMIN & 1);
        if (!filters_last) CR_TRY(install_filters(t));
        CR_TRY(
            call(tid, SYS_prctl, "prctl(PR_SET_SECUREBITS)", {PR_SET_SECUREBITS, t.securebits()}));
        CR_TRY_CTX(capset(tid, t.cap_effective(), t.cap_permitted(), t.cap_inheritable()),
                   strf("pid %d thread %d: capabilities effective %#llx permitted %#llx "
                        "inheritable %#llx",
                        m_pid, tid, static_cast<unsigned long long>(t.cap_effective()),
                        static_cast<unsigned long long>(t.cap_permitted()),
                        static_cast<unsigned long long>(t.cap_inheritable())));
        if (filters_last) CR_TRY(install_filters(t));
        m_ctx.debug(strf("pid %d thread %d: uid %u gid %u, %zu group(s), %u seccomp filter(s)",
                         m_pid, tid, (*t.uids())[0], (*t.gids())[0], groups.size(),
                         t.seccomp_filters() ? t.seccomp_filters()->size() : 0));
        return {};
    }

    sdk::Context& m_ctx;
    const img::TaskCreds& m_rec;
    const sdk::Task& m_task;
    pid_t m_pid;
    sdk::Context::Scratch m_scratch;
    uint32_t m_own_securebits;
    int m_last_cap;
};

}  // namespace

Result<void> restore_creds(sdk::Context& ctx, const img::TaskCreds& rec, const sdk::Task& task) {
    auto scratch = CR_TRY(ctx.scratch(task.pid));
    CredsRestore r(ctx, rec, task, scratch);
    return r.run();
}

}  // namespace cr::creds
