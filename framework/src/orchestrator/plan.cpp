// Who forks whom at restore. Tasks are forked by their parents; a process group or session
// whose leader is gone gets a short-lived helper holding its pid, so that its members can be
// put back into it: a session helper calls setsid and forks the members on behalf of their
// real parent (CLONE_PARENT); a group helper calls setpgid(0, 0) and the members join it.
#include "orchestrator/plan.hpp"

#include <map>
#include <set>

namespace cr::fw {

namespace {

constexpr uint64_t k_default_stub_area = 1ULL << 20;

StubTask stub_of(const ManifestTask& t) {
    StubTask s;
    s.pid = t.pid;
    s.ppid = t.ppid;
    s.pgid = t.pgid;
    s.sid = t.sid;
    s.stub_area = t.stub_area ? t.stub_area : k_default_stub_area;
    s.role = (t.flags & CR_TASK_ZOMBIE) ? StubRole::Zombie : StubRole::Task;
    s.exit_status = t.exit_status;
    return s;
}

StubTask helper(StubRole role, pid_t pid, const StubTask& member, size_t parent) {
    StubTask h;
    h.pid = pid;
    h.ppid = member.ppid;
    h.pgid = pid;
    h.sid = role == StubRole::SessionHelper ? pid : member.sid;
    h.stub_area = k_default_stub_area;
    h.role = role;
    h.parent = parent;
    return h;
}

}  // namespace

Result<TreePlan> plan_tree(const Manifest& m) {
    TreePlan plan;
    auto& stubs = plan.stubs;
    std::map<pid_t, size_t> index;
    for (const auto& t : m.tasks) {
        if (index.count(t.pid)) return Error(strf("manifest: pid %d appears twice", t.pid));
        index[t.pid] = stubs.size();
        stubs.push_back(stub_of(t));
    }
    if (stubs.empty() || stubs[0].pid != m.root_pid) return Error("manifest: the first task is not the root");
    if (stubs[0].role != StubRole::Task) return Error("manifest: the root is a zombie");
    const StubTask root = stubs[0];
    // The root's session and group may be outside the tree (a job started from a shell): the
    // restored tree then lives in cr's own session and group, as a shell job would.
    plan.outside_sid = root.sid != root.pid && !index.count(root.sid) ? root.sid : 0;
    plan.outside_pgid = root.pgid != root.pid && !index.count(root.pgid) ? root.pgid : 0;

    size_t task_count = stubs.size();
    std::map<pid_t, size_t> session_helpers, group_helpers;
    for (size_t i = 1; i < task_count; ++i) {
        auto p = index.find(stubs[i].ppid);
        // A parent outside the tree cannot be restored: the task comes back as a child of the root.
        size_t parent = p != index.end() && p->second < i ? p->second : 0;
        stubs[i].ppid = stubs[parent].pid;
        stubs[i].parent = parent;
        pid_t sid = stubs[i].sid;
        if (sid == plan.outside_sid || index.count(sid)) continue;
        auto h = session_helpers.find(sid);
        if (h == session_helpers.end()) {
            h = session_helpers.emplace(sid, stubs.size()).first;
            stubs.push_back(helper(StubRole::SessionHelper, sid, stubs[i], parent));
        } else if (stubs[h->second].parent != parent) {
            return Error(strf("session %d has no leader in the image and members with different parents "
                              "(pids %d and %d): not supported yet", sid, stubs[h->second].ppid, stubs[i].ppid));
        }
        stubs[i].parent = h->second;
        stubs[i].clone_parent = true;
    }
    for (size_t i = 0; i < task_count; ++i) {
        pid_t pgid = stubs[i].pgid;
        if (pgid == plan.outside_pgid || index.count(pgid) || session_helpers.count(pgid) || group_helpers.count(pgid))
            continue;
        group_helpers[pgid] = stubs.size();
        stubs.push_back(helper(StubRole::GroupHelper, pgid, stubs[i], stubs[i].parent));
    }
    for (size_t i = 1; i < stubs.size(); ++i) stubs[stubs[i].parent].children.push_back(i);
    return plan;
}

}  // namespace cr::fw
