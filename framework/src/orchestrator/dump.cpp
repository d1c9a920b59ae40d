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
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>

namespace cr::fw {

namespace {

constexpr const char* k_task_claims[] = {"task:memory", "task:threads", "task:signals",
                                         "task:fs",     "task:timers",  "task:creds"};

std::string missing_handler(std::string_view kind) {
    std::string package = package_for_kind(kind);
    if (package.empty()) return "no handler supports it";
    return strf("no handler loaded (install %s or add it to --plugins)", package.c_str());
}

// The namespaces a task does not share with cr: each one is a resource of kind task:ns:NAME,
// which a namespace handler has to claim (cr would otherwise restore the task into cr's own).
constexpr const char* k_namespaces[] = {"pid", "mnt", "net", "ipc", "uts", "user", "cgroup", "time"};

struct Namespace {
    const char* name;
    dev_t dev;
    ino_t ino;
};

// cr's own namespaces, those this kernel has.
std::vector<Namespace> own_namespaces() {
    std::vector<Namespace> out;
    for (const char* ns : k_namespaces) {
        struct stat st {};
        if (::stat(strf("/proc/self/ns/%s", ns).c_str(), &st) == 0) out.push_back({ns, st.st_dev, st.st_ino});
    }
    return out;
}

Result<std::vector<std::string>> foreign_namespaces(pid_t pid, const std::vector<Namespace>& own) {
    std::vector<std::string> out;
    for (const Namespace& ns : own) {
        struct stat theirs {};
        if (::stat(strf("/proc/%d/ns/%s", pid, ns.name).c_str(), &theirs) != 0)
            return Error::from_errno(strf("pid %d: stat of /proc/%d/ns/%s", pid, pid, ns.name));
        if (ns.ino != theirs.st_ino || ns.dev != theirs.st_dev) out.push_back(ns.name);
    }
    return out;
}

// Every resource has exactly one handler, checked before anything is written.
Result<void> check_claims(const Registry& registry, const std::vector<TaskRecord>& tasks, const FdTable& fds) {
    for (const char* kind : k_task_claims)
        if (!registry.claimer(kind))
            return Error(strf("pid %d: %s: %s", tasks.front().pid, kind, missing_handler(kind).c_str()));
    const std::vector<Namespace> own = own_namespaces();
    for (const TaskRecord& t : tasks) {
        for (const std::string& ns : CR_TRY(foreign_namespaces(t.pid, own))) {
            std::string kind = "task:ns:" + ns;
            if (!registry.claimer(kind))
                return Error(strf("pid %d: runs in a %s namespace other than cr's (%s): %s", t.pid, ns.c_str(),
                                  kind.c_str(), missing_handler(kind).c_str()));
        }
    }
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

// Every fd of the open file description was left out by the handler that owns it.
bool forgotten(const Host& host, const FdTable& fds, uint64_t object_id) {
    if (host.forgotten_fds.empty()) return false;
    for (const FdEntry& e : fds.entries)
        if (e.object_id == object_id && !host.forgotten_fds.count({e.pid, e.fd})) return false;
    return true;
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
    // Parents come before their children: live tasks in tree order, then zombies (no children).
    for (const auto* list : {&host.tasks, &host.zombies}) m.tasks.insert(m.tasks.end(), list->begin(), list->end());
    for (const LoadedHandler* h : order) m.handlers.push_back({h->id, h->version});
    for (const FdEntry& e : fds.entries) {
        if (host.forgotten_fds.count({e.pid, e.fd})) continue;
        const FdObject& o = fds.objects[e.object_id - 1];
        m.fds.push_back({e.pid, e.fd, e.object_id, e.cloexec, o.kind, registry.claimer(o.kind)->id});
    }
    return m;
}

// A pre-dump copies memory only: the handler that owns task memory, nothing else.
Result<std::vector<const LoadedHandler*>> pre_dump_order(const Registry& registry,
                                                         const std::vector<const LoadedHandler*>& order) {
    const LoadedHandler* memory = registry.claimer("task:memory");
    if (!memory) return Error(strf("task:memory: %s", missing_handler("task:memory").c_str()));
    for (const LoadedHandler* h : order)
        if (h == memory) return std::vector<const LoadedHandler*>{h};
    return Error("task:memory: its handler is not selected");
}

// The image given with --prev-images-dir and the chain above it, every manifest and section
// checked now, before anything is frozen.
Result<std::vector<std::unique_ptr<ImageReader>>> open_prev(const DumpOptions& opt, Log& log) {
    std::vector<std::unique_ptr<ImageReader>> chain;
    if (opt.prev_dir.empty()) return chain;
    auto prev = CR_TRY(ImageReader::open(opt.prev_dir));
    if (prev.manifest().root_pid != opt.pid)
        return Error(strf("image %s: made of the tree of pid %d, not %d", opt.prev_dir.c_str(),
                          prev.manifest().root_pid, opt.pid));
    CR_TRY(prev.verify_sections());
    prev.defer_raw_checks();
    auto above = CR_TRY(open_parents(prev));
    chain.push_back(std::make_unique<ImageReader>(std::move(prev)));
    for (auto& p : above) chain.push_back(std::move(p));
    log.info("dump", strf("incremental: %zu image(s) below this one, parent %s", chain.size(), opt.prev_dir.c_str()));
    return chain;
}

// Frozen only while the dirty pages are found and tracking is armed again; the pages are
// copied after the tree runs on (a page written meanwhile is caught by the next dump).
Result<DumpReport> run_pre_dump(const DumpOptions& opt, Log& log, Host& host, Tracer& tracer,
                                ImageWriter& writer, const std::vector<const LoadedHandler*>& order) {
    DumpReport report;
    double t_freeze = log.elapsed();
    for (TaskRecord& t : CR_TRY(freeze_tree(tracer, log, opt.pid)))
        (t.flags & CR_TASK_ZOMBIE ? host.zombies : host.tasks).push_back(std::move(t));
    for (const auto& t : host.tasks) report.threads += t.tids.size();
    report.tasks = host.tasks.size();
    CR_TRY(host.instantiate(order));
    for (const TaskRecord& t : host.tasks) {
        CR_TRY(host.run_phase("dump_task", [&](HandlerSlot& s) {
            auto f = s.op(&cr_handler_ops::dump_task);
            return f ? f(s.self, &s.ctx, t.pid) : CR_OK;
        }));
    }
    CR_TRY(tracer.cure_and_detach());
    report.frozen_seconds = log.elapsed() - t_freeze;
    log.info("dump", strf("tree running again after %.3f s; copying pages", report.frozen_seconds));
    CR_TRY(host.run_phase("dump_finish", [](HandlerSlot& s) {
        auto f = s.op(&cr_handler_ops::dump_finish);
        return f ? f(s.self, &s.ctx) : CR_OK;
    }));
    Registry none;
    Manifest m = make_manifest(host, order, FdTable{}, none, opt.pid);
    m.pre_dump = true;
    if (!opt.prev_dir.empty()) m.parent_dir = parent_dir_for(opt.dir, opt.prev_dir);
    CR_TRY(writer.finish(std::move(m)));
    report.total_seconds = log.elapsed();
    log.info("dump", strf("pre-dump done: %zu task(s), frozen %.3f s, total %.3f s", report.tasks,
                          report.frozen_seconds, report.total_seconds));
    return report;
}

Result<DumpReport> run_dump(const DumpOptions& opt, Log& log) {
    DumpReport report;
    auto registry = CR_TRY(load_registry(opt.plugins));
    auto order = CR_TRY(registry.order());
    if (opt.pre_dump) order = CR_TRY(pre_dump_order(registry, order));
    auto writer = CR_TRY(ImageWriter::create(opt.dir));
    log.set_file(CR_TRY(writer.open_log("dump.log")));
    log.info("dump", strf("cr %s: dumping pid %d into %s", CR_VERSION, opt.pid, opt.dir.c_str()));
    for (const LoadedHandler* h : order) log.debug("dump", strf("handler %s %s (%s)", h->id.c_str(), h->version.c_str(), h->path.c_str()));

    auto options = opt.handler_options;
    if (opt.leave_running) options["leave-running"] = "1";
    if (opt.verbosity > 0) options["verbose"] = std::to_string(opt.verbosity);
    if (opt.pre_dump) options["pre-dump"] = "1";
    auto chain = CR_TRY(open_prev(opt, log));
    Tracer tracer(log, Tracer::Mode::Dump);
    Host host(log, tracer, options);
    host.writer = &writer;
    host.image_dir = opt.dir;
    for (auto& p : chain) host.parents.push_back(p.get());
    if (opt.pre_dump) return run_pre_dump(opt, log, host, tracer, writer, order);

    double t_freeze = log.elapsed();
    for (TaskRecord& t : CR_TRY(freeze_tree(tracer, log, opt.pid)))
        (t.flags & CR_TASK_ZOMBIE ? host.zombies : host.tasks).push_back(std::move(t));
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
    host.adopt = [&](int fd) -> Result<uint64_t> {
        auto [id, fresh] = CR_TRY(adopt_fd(fds, fd, log));
        const FdObject& o = fds.objects[id - 1];
        if (fresh && !registry.claimer(o.kind))
            return Error(strf("%s (%s) held by no task: %s", o.description.c_str(), o.link.c_str(),
                              missing_handler(o.kind).c_str()));
        return id;
    };
    // Objects adopted while this runs (files in flight) join the end of the table.
    for (size_t i = 0; i < fds.objects.size(); ++i) {
        const FdObject& o = fds.objects[i];
        if (!o.adopted && forgotten(host, fds, o.id)) continue;
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
    Manifest manifest = make_manifest(host, order, fds, registry, opt.pid);
    if (!opt.prev_dir.empty()) manifest.parent_dir = parent_dir_for(opt.dir, opt.prev_dir);
    CR_TRY(writer.finish(std::move(manifest)));
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
