// cr restore: check the image, let handlers prepare, fork the tree of stubs with the original
// pids, transplant each through its handlers, then let every thread go. Any failure kills every
// stub (each one dies with its parent, and cr is their subreaper), so nothing is left behind.
#include "orchestrator/host.hpp"
#include "orchestrator/plan.hpp"
#include "orchestrator/stub.hpp"

#include <cr/fw/handlers.hpp>
#include <cr/fw/orchestrator.hpp>
#include <cr/fw/proc.hpp>
#include <cr/sdk/kernel.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>

namespace cr::fw {

namespace {

constexpr const char* k_tag = "restore";

std::string major_of(const std::string& version) { return version.substr(0, version.find('.')); }

Result<std::vector<const LoadedHandler*>> handlers_for(const Manifest& m, Registry& registry,
                                                       const std::vector<std::string>& plugins) {
    std::vector<std::string> ids;
    for (const auto& h : m.handlers) ids.push_back(h.id);
    // Paths in --plugins may bring handlers that are not installed.
    std::vector<std::string> paths;
    for (const auto& p : plugins)
        if (p.find('/') != std::string::npos) paths.push_back(p);
    if (!paths.empty()) {
        for (const auto& p : paths) {
            auto h = CR_TRY(load_handler(p, true));
            if (!registry.find(h.id)) CR_TRY(registry.add(std::move(h)));
        }
    }
    CR_TRY(registry.select_exact(ids));
    for (const auto& mh : m.handlers) {
        const LoadedHandler* h = registry.find(mh.id);
        if (major_of(h->version) != major_of(mh.version))
            return Error(strf("image was written by %s %s; the installed %s %s (%s) cannot read it",
                              mh.id.c_str(), mh.version.c_str(), h->id.c_str(), h->version.c_str(),
                              h->path.c_str()));
    }
    return registry.order();
}

Result<void> check_pids_free(const Manifest& m, const TreePlan& tree) {
    std::vector<pid_t> pids;
    for (const auto& t : m.tasks) pids.insert(pids.end(), t.tids.begin(), t.tids.end());
    for (const auto& s : tree.stubs) pids.push_back(s.pid);
    for (pid_t pid : pids) {
        auto holder = CR_TRY(proc::pid_holder(pid));
        if (!holder.empty())
            return Error(strf("pid %d is in use by %s; wait until it is free, then restore again", pid,
                              holder.c_str()));
    }
    return {};
}

std::vector<TaskRecord> records_of(const Manifest& m) {
    std::vector<TaskRecord> out;
    std::copy_if(m.tasks.begin(), m.tasks.end(), std::back_inserter(out),
                 [](const TaskRecord& t) { return !(t.flags & CR_TASK_ZOMBIE); });
    return out;
}

// Moves every object descriptor above the fd numbers of the image, then builds the plan.
Result<StubPlan> make_plan(const Manifest& m, TreePlan tree, Host& host, int report_fd) {
    StubPlan plan;
    plan.host = &host;
    plan.tasks = std::move(tree.stubs);
    int max_fd = 2;
    for (const auto& f : m.fds) max_fd = std::max(max_fd, f.fd);
    plan.min_private_fd = max_fd + 1;
    plan.report_fd = ::fcntl(report_fd, F_DUPFD_CLOEXEC, plan.min_private_fd);
    if (plan.report_fd < 0) return Error::from_errno("fcntl(F_DUPFD)");
    plan.log_fd = host.log().relocate_file(plan.report_fd + 1);
    int above = std::max(plan.report_fd, plan.log_fd) + 1;
    for (auto& [id, fd] : host.object_fds) {
        int hi = ::fcntl(fd, F_DUPFD_CLOEXEC, above);
        if (hi < 0) return Error::from_errno("fcntl(F_DUPFD)");
        ::close(fd);
        fd = hi;
    }
    std::map<pid_t, size_t> index;
    for (size_t i = 0; i < plan.tasks.size(); ++i) index[plan.tasks[i].pid] = i;
    for (const auto& f : m.fds) {
        auto t = index.find(f.pid);
        if (t == index.end()) return Error(strf("manifest: fd %d of unknown pid %d", f.fd, f.pid));
        auto o = host.object_fds.find(f.object_id);
        if (o == host.object_fds.end())
            return Error(strf("pid %d fd %d: %s restored no open file for object %lu", f.pid, f.fd,
                              f.handler_id.c_str(), f.object_id));
        if (f.fd < 0) return Error(strf("manifest: pid %d has a negative fd", f.pid));
        plan.tasks[t->second].fds.push_back({f.fd, o->second, f.cloexec});
    }
    return plan;
}

// Reads one report per stub; a failure report, an early EOF or a silent minute ends it.
Result<void> wait_ready(int read_fd, size_t count, Log& log) {
    std::set<pid_t> ready;
    while (ready.size() < count) {
        pollfd p{read_fd, POLLIN, 0};
        int n = ::poll(&p, 1, 60000);
        if (n == 0) return Error("restore stubs did not report within 60 s");
        if (n < 0) {
            if (errno == EINTR) continue;
            return Error::from_errno("poll");
        }
        StubReport r{};
        ssize_t got = ::read(read_fd, &r, sizeof r);
        if (got == 0) return Error("restore stubs exited before they were ready");
        if (got != static_cast<ssize_t>(sizeof r)) return Error::from_errno("read of a stub report");
        r.message[sizeof r.message - 1] = 0;
        if (!r.ok) return Error(strf("pid %d: %s", r.pid, r.message));
        ready.insert(r.pid);
        log.debug(k_tag, strf("pid %d: stub ready", r.pid));
    }
    return {};
}

// Kills the stubs (children first die with their parents) and reaps what comes back to us.
void kill_stubs(pid_t root) {
    if (root > 0) ::kill(root, SIGKILL);
    for (int i = 0; i < 400; ++i) {
        int status = 0;
        pid_t r = ::waitpid(-1, &status, __WALL | WNOHANG);
        if (r < 0 && errno == ECHILD) return;
        if (r == 0) ::usleep(5000);
    }
}

Result<void> prepare_stub(Tracer& tracer, const StubPlan& plan, const StubTask& t, Log& log) {
    if (!CR_TRY(tracer.seize(t.pid, t.pid))) return Error(strf("pid %d: stub vanished", t.pid));
    tracer.set_stub(t.pid, t.stub_area, t.stub_area + 4096, k_stub_size - 4096);
    // The stub closes cr's report pipe and log after its report, but the seize may come first:
    // close them here, whichever happened (EBADF when the stub got there).
    for (int fd : {plan.report_fd, plan.log_fd})
        if (fd >= 0) CR_TRY(tracer.syscall(t.pid, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}));
    CR_TRY(tracer.syscall_checked(t.pid, SYS_prctl, "prctl(PR_SET_PDEATHSIG)", {PR_SET_PDEATHSIG, 0, 0, 0, 0, 0}));
    // The stub inherited cr's rseq registration; its memory is about to go away.
    cr_rseq_configuration rseq{};
    if (::ptrace(static_cast<__ptrace_request>(CR_PTRACE_GET_RSEQ_CONFIGURATION), t.pid,
                 reinterpret_cast<void*>(sizeof rseq), &rseq) > 0 && rseq.rseq_abi_pointer) {
        CR_TRY(tracer.syscall_checked(t.pid, SYS_rseq, "rseq unregister",
                                      {rseq.rseq_abi_pointer, rseq.rseq_abi_size, RSEQ_FLAG_UNREGISTER,
                                       rseq.signature, 0, 0}));
    }
    log.debug(k_tag, strf("pid %d: stub seized", t.pid));
    return {};
}

// Every stub exists now: members join groups led by others, helpers and zombies end.
Result<void> settle_tree(Tracer& tracer, const StubPlan& plan, const TreePlan& tree, Log& log) {
    for (const StubTask& s : plan.tasks) {
        if (s.role != StubRole::Task && s.role != StubRole::Zombie) continue;
        if (s.pgid == tree.outside_pgid) continue;  // stays in cr's group, as a shell job would
        auto st = CR_TRY(proc::read_stat(s.pid));
        if (st.pgrp == s.pgid) continue;
        CR_TRY_CTX(tracer.syscall_checked(s.pid, SYS_setpgid, "setpgid", {0, static_cast<uint64_t>(s.pgid)}),
                   strf("pid %d: joining process group %d", s.pid, s.pgid));
    }
    // Group helpers first: a session helper may be their parent and must reap them.
    for (StubRole role : {StubRole::GroupHelper, StubRole::SessionHelper}) {
        for (const StubTask& s : plan.tasks) {
            if (s.role != role) continue;
            CR_TRY(tracer.end_task(s.pid, 0));
            pid_t parent = plan.tasks[s.parent].pid;
            CR_TRY_CTX(tracer.syscall_checked(parent, SYS_wait4, "wait4", {static_cast<uint64_t>(s.pid), 0, __WALL, 0}),
                       strf("pid %d: reaping helper %d", parent, s.pid));
            log.debug(k_tag, strf("helper %d for %s %d done", s.pid, role == StubRole::GroupHelper ? "group" : "session", s.pid));
        }
    }
    for (const StubTask& s : plan.tasks) {
        if (s.role != StubRole::Zombie) continue;
        CR_TRY_CTX(tracer.end_task(s.pid, s.exit_status), strf("pid %d: becoming a zombie again", s.pid));
    }
    return {};
}

// Signals the stubs received while being built (SIGCHLD from zombies and helpers) are not the
// task's: drop them before the handlers queue the dumped ones.
Result<void> drain_signals(Tracer& tracer, pid_t pid) {
    auto scratch = CR_TRY(tracer.scratch(pid));
    struct {
        uint64_t set = ~0ULL;
        timespec zero{0, 0};
    } args;
    CR_TRY(tracer.mem_write(pid, scratch.addr, &args, sizeof args));
    for (int i = 0; i < 1024; ++i) {
        int64_t r = CR_TRY(tracer.syscall(pid, SYS_rt_sigtimedwait, {scratch.addr, 0, scratch.addr + 8, 8, 0, 0}));
        if (r < 0) return {};
    }
    return Error(strf("pid %d: pending signals keep coming", pid));
}

Result<RestoreReport> run_restore(const RestoreOptions& opt, Log& log) {
    RestoreReport report;
    auto reader = CR_TRY(ImageReader::open(opt.dir));
    const Manifest& m = reader.manifest();
    {
        auto w = ImageWriter::create(opt.dir);  // only to open the log; writes no image file
        if (w) log.set_file(CR_TRY(w->open_log("restore.log")));
    }
    log.info(k_tag, strf("cr %s: restoring %s (%zu task(s), written by cr %s on %s)", CR_VERSION,
                         opt.dir.c_str(), m.tasks.size(), m.cr_version.c_str(), m.kernel.c_str()));
    if (m.pre_dump)
        return Error(strf("image %s was made by cr pre-dump and holds memory only; restore the image of "
                          "the cr dump --prev-images-dir that ends its chain", opt.dir.c_str()));
    auto chain = CR_TRY(open_parents(reader));
    CR_TRY(reader.verify_sections());
    RawCheck raw_check(reader, chain);  // page files are hashed while the restore goes on
    auto registry = CR_TRY(load_registry({}));
    auto order = CR_TRY(handlers_for(m, registry, opt.plugins));
    auto tree = CR_TRY(plan_tree(m));
    CR_TRY(check_pids_free(m, tree));

    auto options = opt.handler_options;
    if (opt.verbosity > 0) options["verbose"] = std::to_string(opt.verbosity);
    Tracer tracer(log, Tracer::Mode::Restore);
    Host host(log, tracer, options);
    host.reader = &reader;
    host.image_dir = opt.dir;
    for (auto& p : chain) host.parents.push_back(p.get());
    host.tasks = records_of(m);
    CR_TRY(host.instantiate(order));
    CR_TRY(host.run_phase("prepare", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::prepare);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }));

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
    UniqueFd report_read(pipefd[0]);
    UniqueFd report_write(pipefd[1]);
    auto plan = CR_TRY(make_plan(m, tree, host, report_write.get()));
    UniqueFd plan_report(plan.report_fd);
    report_write.reset();

    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return Error::from_errno("prctl(PR_SET_CHILD_SUBREAPER)");
    double t_fork = log.elapsed();
    auto root = fork_with_pid(m.root_pid);
    if (!root) return std::move(root).error();
    if (*root == 0) stub_main(plan, 0);
    plan_report.reset();
    struct StubGuard {
        Tracer& tracer;
        pid_t root;
        bool armed = true;
        ~StubGuard() {
            if (!armed) return;
            tracer.kill_all();
            kill_stubs(root);
        }
    } guard{tracer, *root};

    CR_TRY(wait_ready(report_read.get(), plan.tasks.size(), log));
    log.info(k_tag, strf("%zu stub(s) ready in %.3f s", plan.tasks.size(), log.elapsed() - t_fork));
    for (const StubTask& s : plan.tasks) CR_TRY(prepare_stub(tracer, plan, s, log));
    CR_TRY(settle_tree(tracer, plan, tree, log));
    for (const TaskRecord& t : host.tasks) CR_TRY(drain_signals(tracer, t.pid));
    for (const TaskRecord& t : host.tasks) {
        CR_TRY(host.run_phase("restore_task", [&](HandlerSlot& s) {
            auto f = s.op(&cr_handler_ops::restore_task);
            return f ? f(s.self, &s.ctx, t.pid) : CR_OK;
        }));
        CR_TRY(tracer.syscall_checked(t.pid, SYS_munmap, "munmap of the trampoline",
                                      {t.stub_area, k_stub_size, 0, 0, 0, 0}));
    }
    CR_TRY(host.run_phase("post_restore", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::post_restore);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }, true, false));
    // Kept until now for handlers that send them (object_fd_get): files in flight.
    for (auto& [id, fd] : host.object_fds) ::close(fd);
    host.object_fds.clear();
    std::set<pid_t> stopped;
    for (const TaskRecord& t : host.tasks)
        if (t.flags & CR_TASK_STOPPED) stopped.insert(t.pid);
    CR_TRY(raw_check.wait());  // nothing of the tree has run yet: a bad file stops it here
    CR_TRY(tracer.release(stopped));
    guard.armed = false;
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    report.root = m.root_pid;
    report.total_seconds = log.elapsed();
    log.info(k_tag, strf("tree running again, root pid %d, %.3f s", m.root_pid, report.total_seconds));
    if (opt.detach) return report;

    int status = 0;
    while (::waitpid(m.root_pid, &status, 0) < 0) {
        if (errno != EINTR) return Error::from_errno(strf("waitpid for pid %d", m.root_pid));
    }
    report.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    log.info(k_tag, strf("pid %d exited with status %d", m.root_pid, report.exit_status));
    return report;
}

}  // namespace

Result<RestoreReport> restore(const RestoreOptions& opt) {
    Log log(opt.verbosity >= 2 ? CR_LOG_DEBUG : opt.verbosity == 1 ? CR_LOG_INFO : -1);
    auto r = run_restore(opt, log);
    if (!r) log.error(k_tag, r.error().message());
    return r;
}

}  // namespace cr::fw
