// cr.task.creds: uids, gids and groups, the five capability sets and securebits,
// no_new_privs, seccomp (strict mode and filters), personality, resource limits, dumpable,
// parent death signal and child subreaper. It depends on every other task-level handler so
// that it runs last: lowering credentials and installing filters come after everything else.
#include <cr/sdk/image.hpp>
#include <map>

#include "creds.hpp"

namespace cr::creds {

class CredsHandler {
public:
    static constexpr const char* k_id = "cr.task.creds";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "uids/gids, groups, capabilities, securebits, no_new_privs, seccomp, personality, rlimits, "
        "dumpable, parent death signal, child subreaper";
    static constexpr const char* k_claims[] = {"task:creds", nullptr};
    static constexpr const char* k_depends[] = {"cr.signal.signals", "cr.time.timers",
                                                "cr.task.core", "cr.memory.vma", nullptr};
    static constexpr const char* k_schemas[] = {"CRCD", nullptr};

    explicit CredsHandler(sdk::Context&) {}

    Result<void> dump_task(sdk::Context& ctx, pid_t pid) {
        m_tasks.push_back(CR_TRY(dump_creds(ctx, pid)));
        return {};
    }

    Result<void> dump_finish(sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<img::TaskCreds>> tasks;
        for (const TaskRecord& t : m_tasks) {
            std::vector<flatbuffers::Offset<img::ThreadCreds>> threads;
            for (const ThreadRecord& th : t.threads) {
                const StatusCreds& s = th.status;
                std::vector<uint32_t> uids(s.uids, s.uids + 4), gids(s.gids, s.gids + 4);
                std::vector<flatbuffers::Offset<img::SeccompFilter>> filters;
                for (const FilterRecord& f : th.filters)
                    filters.push_back(img::CreateSeccompFilterDirect(fbb, f.flags, &f.program));
                threads.push_back(img::CreateThreadCredsDirect(
                    fbb, th.tid, &uids, &gids, &s.groups, s.cap_inheritable, s.cap_permitted,
                    s.cap_effective, s.cap_bounding, s.cap_ambient, th.securebits, s.no_new_privs,
                    s.seccomp_mode, &filters, th.personality, th.pdeathsig));
            }
            std::vector<flatbuffers::Offset<img::RLimit>> limits;
            for (const LimitRecord& l : t.rlimits)
                limits.push_back(img::CreateRLimit(fbb, l.resource, l.soft, l.hard));
            tasks.push_back(img::CreateTaskCredsDirect(fbb, t.pid, &threads, &limits, t.dumpable,
                                                       t.child_subreaper));
        }
        fbb.Finish(img::CreateCredsImageDirect(fbb, &tasks), img::CredsImageIdentifier());
        return sdk::write_section(ctx, "creds.cr", fbb);
    }

    Result<void> prepare(sdk::Context& ctx) {
        const img::CredsImage* image = CR_TRY(sdk::read_section_as<img::CredsImage>(
            ctx, "creds.cr", img::CredsImageIdentifier(), &img::VerifyCredsImageBuffer));
        if (image->tasks())
            for (const img::TaskCreds* t : *image->tasks()) m_restore[t->pid()] = t;
        return {};
    }

    Result<void> restore_task(sdk::Context& ctx, pid_t pid) {
        auto it = m_restore.find(pid);
        if (it == m_restore.end()) return Error(strf("creds.cr: no record of pid %d", pid));
        sdk::Task task = CR_TRY(ctx.task(pid));
        return restore_creds(ctx, *it->second, task);
    }

private:
    std::vector<TaskRecord> m_tasks;
    std::map<pid_t, const img::TaskCreds*> m_restore;
};

}  // namespace cr::creds

CR_DECLARE_HANDLER(cr::creds::CredsHandler)
