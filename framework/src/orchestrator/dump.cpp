// cr dump: seize the tree, let every handler save its part, write the manifest, then kill the
// tree or let it go. Until the manifest is written nothing is final: any failure detaches and
// the tree runs on unchanged, and the files written so far are removed.
#include "orchestrator/fds.hpp"
#include "orchestrator/host.hpp"
#include "orchestrator/tree.hpp"

#include <cr/fw/handlers.hpp>
#include <cr/fw/orchestrator.hpp>
#include <cr/fw/proc.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>

namespace cr::fw {

namespace {

constexpr const char* k_task_claims[] = {"task:memory", "task:threads", "task:signals", "task:fs"};

std::string missing_handler(std::string_view kind) {
    std::string package = package_for_kind(kind);
    if (package.empty()) return "no handler supports it";
    return strf("no handler loaded (install %s or add it to --plugins)", package.c_str());
}

// Every resource has exactly one handler, checked before anything is written.
Result<void> check_claims(const Registry& registry, const std::vector<TaskRecord>& tasks, const FdTable& fds) {
    for (const char* kind : k_task_claims)
        if (!registry.claimer(kind))
            return Error(strf("pid %d: %s: %s", tasks.front().pid, kind, missing_handler(kind).c_str()));
    for (const FdObject& o : fds.objects)
        if (!registry.claimer(o.kind))
            return Error(strf("pid %d fd %d: %s (%s): %s", o.pid, o.fd, o.description.c_str(),
                              o.link.c_str(), missing_handler(o.kind).c_str()));
    return {};
}

void raise_nofile_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

Manifest make_manifest(const Host& host, const std::vector<const LoadedHandler*>& order,
                       const FdTable& fds, const Registry& registry, pid_t root) {
    Manifest m;
    m.cr_version = CR_VERSION;
    utsname u{};
    uname(&u);
    m.kernel = u.release;
    m.arch = u.machine;
    m.created_unix = static_cast<uint64_t>(time(nullptr));
    m.root_pid = root;
    for (const TaskRecord& t : host.tasks)
        m.tasks.push_back({t.pid, t.ppid, t.pgid, t.sid, t.tids, t.flags, t.comm, t.stub_area});
    for (const LoadedHandler* h : order) m.handlers.push_back({h->id, h->version});
    for (const FdEntry& e : fds.entries) {
        const FdObject& o = fds.objects[e.object_id - 1];
        m.fds.push_back({e.pid, e.fd, e.object_id, e.cloexec, o.kind, registry.claimer(o.kind)->id});
    }
    return m;
}

Result<DumpReport> run_dump(const DumpOptions& opt, Log& log) {
    DumpReport report;
    auto registry = CR_TRY(load_registry(opt.plugins));
    auto order = CR_TRY(registry.order());
    auto writer = CR_TRY(ImageWriter::create(opt.dir));
    log.set_file(CR_TRY(writer.open_log("dump.log")));
    log.info("dump", strf("cr %s: dumping pid %d into %s", CR_VERSION, opt.pid, opt.dir.c_str()));
    for (const LoadedHandler* h : order) log.debug("dump", strf("handler %s %s (%s)", h->id.c_str(), h->version.c_str(), h->path.c_str()));

    auto options = opt.handler_options;
    if (opt.leave_running) options["leave-running"] = "1";
    if (opt.verbosity > 0) options["verbose"] = std::to_string(opt.verbosity);
    Tracer tracer(log, Tracer::Mode::Dump);
    Host host(log, tracer, options);
    host.writer = &writer;
    host.image_dir = opt.dir;

    double t_freeze = log.elapsed();
    host.tasks = CR_TRY(freeze_tree(tracer, log, opt.pid));
    for (const auto& t : host.tasks) report.threads += t.tids.size();
    report.tasks = host.tasks.size();
    auto fds = CR_TRY(collect_fds(host.tasks, log));
    CR_TRY(check_claims(registry, host.tasks, fds));
    CR_TRY(host.instantiate(order));

    CR_TRY(host.run_phase("pre_dump", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::pre_dump);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }, false, false));
    for (const TaskRecord& t : host.tasks) {
        CR_TRY(host.run_phase("dump_task", [&](HandlerSlot& s) {
            auto f = s.op(&cr_handler_ops::dump_task);
            return f ? f(s.self, &s.ctx, t.pid) : CR_OK;
        }));
    }
    for (const FdObject& o : fds.objects) {
        HandlerSlot* s = host.slot_for(registry.claimer(o.kind));
        auto f = s ? s->op(&cr_handler_ops::dump_fd) : nullptr;
        if (!f) return Error(strf("pid %d fd %d: %s claims %s but cannot dump it", o.pid, o.fd,
                                  s ? s->handler->id.c_str() : "?", o.kind.c_str()));
        cr_fd_info info{sizeof(cr_fd_info), o.id, o.pid, o.fd, o.cr_fd.get(), o.kind.c_str(),
                        o.link.c_str(), o.info.pos, o.info.flags, o.info.mnt_id};
        s->last_error.clear();
        if (f(s->self, &s->ctx, &info) != CR_OK)
            return Error(s->handler->id + ": " + s->last_error);
    }
    CR_TRY(host.run_phase("dump_finish", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::dump_finish);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }));
    CR_TRY(host.run_phase("post_dump", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::post_dump);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }, true, false));
    CR_TRY(writer.finish(make_manifest(host, order, fds, registry, opt.pid)));
    log.info("dump", "image written");

    if (opt.leave_running) {
        CR_TRY(tracer.cure_and_detach());
        log.info("dump", "tree left running");
    } else {
        tracer.kill_all();
        log.info("dump", "tree killed");
    }
    report.frozen_seconds = log.elapsed() - t_freeze;
    report.total_seconds = log.elapsed();
    log.info("dump", strf("done: %zu task(s), %zu thread(s), frozen %.3f s, total %.3f s", report.tasks,
                          report.threads, report.frozen_seconds, report.total_seconds));
    return report;
}

}  // namespace

Result<DumpReport> dump(const DumpOptions& opt) {
    Log log(opt.verbosity >= 2 ? CR_LOG_DEBUG : opt.verbosity == 1 ? CR_LOG_INFO : -1);
    if (opt.pid <= 0) return Error(strf("invalid pid %d", opt.pid));
    if (::kill(opt.pid, 0) != 0 && errno == ESRCH) return Error(strf("pid %d: no such process", opt.pid));
    if (auto st = proc::read_stat(opt.pid); !st) return Error(strf("pid %d: no such process", opt.pid));
    if (opt.pid == 1 || is_self_or_ancestor(opt.pid))
        return Error(strf("pid %d: refusing to dump init, cr itself or an ancestor of cr", opt.pid));
    raise_nofile_limit();
    auto r = run_dump(opt, log);
    if (!r) log.error("dump", r.error().message());
    return r;
}

}  // namespace cr::fw
