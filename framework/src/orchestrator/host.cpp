#include "orchestrator/host.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace cr::fw {

namespace {

HandlerSlot& slot(cr_context* ctx) { return *static_cast<HandlerSlot*>(ctx->host); }
Host& host(cr_context* ctx) { return *slot(ctx).host; }

int fail(cr_context* ctx, const Error& e) {
    slot(ctx).last_error = e.message();
    return CR_FAIL;
}

int from(cr_context* ctx, const Result<void>& r) { return r ? CR_OK : fail(ctx, r.error()); }

void api_log(cr_context* ctx, int level, const char* message) {
    host(ctx).log().write(level, slot(ctx).handler->id, message ? message : "");
}

void api_set_error(cr_context* ctx, const char* message) { slot(ctx).last_error = message ? message : ""; }

const char* api_last_error(cr_context* ctx) { return slot(ctx).last_error.c_str(); }

const char* api_option(cr_context* ctx, const char* key) { return host(ctx).option(key); }

const char* api_image_dir(cr_context* ctx) { return host(ctx).image_dir.c_str(); }

std::string schema_of(const void* data, size_t size) {
    if (size < 8) return {};
    const char* id = static_cast<const char*>(data) + 4;
    for (int i = 0; i < 4; ++i)
        if (id[i] < 0x20 || id[i] > 0x7e) return {};
    return std::string(id, 4);
}

int api_section_write(cr_context* ctx, const char* name, const void* data, size_t size) {
    Host& h = host(ctx);
    if (!h.writer) return fail(ctx, Error("sections can be written only while dumping"));
    const LoadedHandler* lh = slot(ctx).handler;
    return from(ctx, h.writer->write_section(lh->id, lh->version, schema_of(data, size), name,
                                             {static_cast<const uint8_t*>(data), size}));
}

int api_section_read(cr_context* ctx, const char* name, const void** data, size_t* size) {
    Host& h = host(ctx);
    if (!h.reader) return fail(ctx, Error("sections can be read only while restoring"));
    auto r = h.reader->section(name);
    if (!r) return fail(ctx, r.error());
    *data = r->data();
    *size = r->size();
    return CR_OK;
}

int api_image_file_open(cr_context* ctx, const char* name, int for_write) {
    Host& h = host(ctx);
    const LoadedHandler* lh = slot(ctx).handler;
    if (for_write) {
        if (!h.writer) return fail(ctx, Error("image files can be created only while dumping")), -1;
        auto r = h.writer->create_raw(lh->id, lh->version, name);
        if (!r) return fail(ctx, r.error()), -1;
        return r->release();
    }
    if (!h.reader) return fail(ctx, Error("image files can be opened only while restoring")), -1;
    auto r = h.reader->open_raw(name);
    if (!r) return fail(ctx, r.error()), -1;
    return r->release();
}

void fill(const TaskRecord& t, cr_task_info* out) {
    out->pid = t.pid;
    out->ppid = t.ppid;
    out->pgid = t.pgid;
    out->sid = t.sid;
    out->thread_count = static_cast<uint32_t>(t.tids.size());
    out->tids = t.tids.data();
    out->flags = t.flags;
}

size_t api_task_count(cr_context* ctx) { return host(ctx).tasks.size(); }

int api_task_at(cr_context* ctx, size_t index, cr_task_info* out) {
    Host& h = host(ctx);
    if (index >= h.tasks.size()) return fail(ctx, Error(strf("task index %zu out of range", index)));
    fill(h.tasks[index], out);
    return CR_OK;
}

int api_task_find(cr_context* ctx, pid_t pid, cr_task_info* out) {
    const TaskRecord* t = host(ctx).find_task(pid);
    if (!t) return fail(ctx, Error(strf("pid %d is not in the tree", pid)));
    fill(*t, out);
    return CR_OK;
}

int api_remote_syscall(cr_context* ctx, pid_t tid, long nr, const uint64_t args[6], int64_t* ret) {
    std::array<uint64_t, 6> a{};
    std::copy(args, args + 6, a.begin());
    auto r = host(ctx).tracer().syscall(tid, nr, a);
    if (!r) return fail(ctx, r.error());
    *ret = *r;
    return CR_OK;
}

int api_remote_scratch(cr_context* ctx, pid_t pid, uint64_t* addr, uint64_t* size) {
    auto r = host(ctx).tracer().scratch(pid);
    if (!r) return fail(ctx, r.error());
    *addr = r->addr;
    *size = r->size;
    return CR_OK;
}

int api_mem_read(cr_context* ctx, pid_t pid, uint64_t addr, void* buf, size_t size) {
    return from(ctx, host(ctx).tracer().mem_read(pid, addr, buf, size));
}

int api_mem_write(cr_context* ctx, pid_t pid, uint64_t addr, const void* buf, size_t size) {
    return from(ctx, host(ctx).tracer().mem_write(pid, addr, buf, size));
}

int api_object_fd_set(cr_context* ctx, uint64_t object_id, int fd) {
    Host& h = host(ctx);
    if (fd < 0) return fail(ctx, Error(strf("object %lu: invalid fd", object_id)));
    auto [it, inserted] = h.object_fds.emplace(object_id, fd);
    if (!inserted) {
        ::close(fd);
        return fail(ctx, Error(strf("object %lu was restored twice", object_id)));
    }
    return CR_OK;
}

int api_thread_create(cr_context* ctx, pid_t pid, pid_t tid) {
    return from(ctx, host(ctx).tracer().create_thread(pid, tid));
}

int api_thread_set_entry(cr_context* ctx, pid_t tid, const cr_thread_entry* e) {
    ThreadState* t = host(ctx).tracer().thread(tid);
    if (!t) return fail(ctx, Error(strf("thread %d is not seized", tid)));
    if (e->regs) {
        if (e->regs_size != sizeof(user_regs_struct))
            return fail(ctx, Error(strf("thread %d: register set of %zu bytes, expected %zu", tid,
                                        e->regs_size, sizeof(user_regs_struct))));
        user_regs_struct regs;
        std::memcpy(&regs, e->regs, sizeof regs);
        t->entry_regs = regs;
    }
    if (e->xstate) {
        const auto* p = static_cast<const uint8_t*>(e->xstate);
        t->entry_xstate.assign(p, p + e->xstate_size);
    }
    if (e->has_sigmask) t->entry_sigmask = e->sigmask;
    return CR_OK;
}

int api_stub_reserved(cr_context* ctx, pid_t pid, uint64_t* start, uint64_t* end) {
    Host& h = host(ctx);
    if (h.reader) {
        const TaskRecord* t = h.find_task(pid);
        if (!t) return fail(ctx, Error(strf("pid %d is not in the tree", pid)));
        *start = t->stub_area;
        *end = t->stub_area + k_stub_size;
        return CR_OK;
    }
    // Dump: the scratch memory the core mapped into the task, if any.
    TaskState* ts = h.tracer().task(pid);
    *start = ts && ts->scratch_mapped_by_us ? ts->scratch : 0;
    *end = ts && ts->scratch_mapped_by_us ? ts->scratch + ts->scratch_size : 0;
    return CR_OK;
}

int api_image_file_hash(cr_context* ctx, const char* name, const void* data, size_t size) {
    Host& h = host(ctx);
    if (!h.writer) return fail(ctx, Error("image files can be hashed only while dumping"));
    return from(ctx, h.writer->hash_raw(name ? name : "", data, size));
}

size_t api_parent_count(cr_context* ctx) { return host(ctx).parents.size(); }

Result<ImageReader*> parent_at(Host& h, uint32_t depth) {
    if (depth == 0 || depth > h.parents.size())
        return Error(strf("no parent image at depth %u (the chain has %zu)", depth, h.parents.size()));
    return h.parents[depth - 1];
}

int api_parent_section_read(cr_context* ctx, uint32_t depth, const char* name, const void** data, size_t* size) {
    auto p = parent_at(host(ctx), depth);
    if (!p) return fail(ctx, p.error());
    auto r = (*p)->section(name ? name : "");
    if (!r) return fail(ctx, r.error());
    *data = r->data();
    *size = r->size();
    return CR_OK;
}

int api_parent_file_open(cr_context* ctx, uint32_t depth, const char* name) {
    auto p = parent_at(host(ctx), depth);
    if (!p) return fail(ctx, p.error()), -1;
    auto r = (*p)->open_raw(name ? name : "");
    if (!r) return fail(ctx, r.error()), -1;
    return r->release();
}

int api_fd_forget(cr_context* ctx, pid_t pid, int fd) {
    Host& h = host(ctx);
    if (!h.writer) return fail(ctx, Error("fds can be left out only while dumping"));
    h.forgotten_fds.emplace(pid, fd);
    return CR_OK;
}

int api_fd_adopt(cr_context* ctx, int fd, uint64_t* object_id) {
    Host& h = host(ctx);
    if (!h.writer || !h.adopt) return fail(ctx, Error("files held by no task can be saved only while dumping"));
    if (fd < 0 || !object_id) return fail(ctx, Error("fd_adopt: invalid arguments"));
    auto r = h.adopt(fd);
    if (!r) return fail(ctx, r.error());
    *object_id = *r;
    return CR_OK;
}

int api_object_fd_get(cr_context* ctx, uint64_t object_id) {
    Host& h = host(ctx);
    if (!h.reader) return fail(ctx, Error("restored objects can be lent only while restoring")), -1;
    auto it = h.object_fds.find(object_id);
    if (it == h.object_fds.end()) return fail(ctx, Error(strf("object %lu: no handler restored it", object_id))), -1;
    int fd = ::fcntl(it->second, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return fail(ctx, Error::from_errno(strf("object %lu: fcntl(F_DUPFD_CLOEXEC)", object_id))), -1;
    return fd;
}

}  // namespace

const cr_host_api Host::k_api = {
    sizeof(cr_host_api), api_log, api_set_error, api_last_error, api_option, api_image_dir,
    api_section_write, api_section_read, api_image_file_open, api_task_count, api_task_at,
    api_task_find, api_remote_syscall, api_remote_scratch, api_mem_read, api_mem_write,
    api_object_fd_set, api_thread_create, api_thread_set_entry, api_stub_reserved,
    api_image_file_hash, api_parent_count, api_parent_section_read, api_parent_file_open,
    api_fd_forget, api_fd_adopt, api_object_fd_get,
};

Host::Host(Log& log, Tracer& tracer, std::map<std::string, std::string> options)
    : m_log(log), m_tracer(tracer), m_options(std::move(options)) {}

Host::~Host() {
    for (auto& s : m_slots) {
        auto destroy = s->op(&cr_handler_ops::destroy);
        if (s->self && destroy) destroy(s->self);
    }
    for (auto& [id, fd] : object_fds) ::close(fd);
}

const TaskRecord* Host::find_task(pid_t pid) const {
    for (const auto& t : tasks)
        if (t.pid == pid) return &t;
    return nullptr;
}

const char* Host::option(const char* key) const {
    auto it = m_options.find(key ? key : "");
    return it == m_options.end() ? nullptr : it->second.c_str();
}

HandlerSlot* Host::slot_for(const LoadedHandler* h) {
    for (auto& s : m_slots)
        if (s->handler == h) return s.get();
    return nullptr;
}

Result<void> Host::instantiate(const std::vector<const LoadedHandler*>& order) {
    for (const LoadedHandler* h : order) {
        auto s = std::make_unique<HandlerSlot>();
        s->handler = h;
        s->host = this;
        s->ctx.struct_size = sizeof(cr_context);
        s->ctx.api = &k_api;
        s->ctx.host = s.get();
        HandlerSlot& ref = *s;
        m_slots.push_back(std::move(s));
        if (auto create = ref.op(&cr_handler_ops::create)) {
            ref.self = create(&ref.ctx);
            if (!ref.self)
                return Error(strf("%s: could not start: %s", h->id.c_str(),
                                  ref.last_error.empty() ? "create failed" : ref.last_error.c_str()));
        }
    }
    return {};
}

Result<void> Host::run_phase(const char* phase, const std::function<int(HandlerSlot&)>& fn,
                             bool reverse, bool stop_early) {
    std::vector<HandlerSlot*> order;
    for (auto& s : m_slots) order.push_back(s.get());
    if (reverse) std::reverse(order.begin(), order.end());
    std::string failures;
    for (HandlerSlot* s : order) {
        s->last_error.clear();
        if (fn(*s) == CR_OK) continue;
        std::string msg = s->handler->id + ": " + (s->last_error.empty() ? "failed" : s->last_error);
        m_log.error(phase, msg);
        if (stop_early) return Error(msg);
        failures += (failures.empty() ? "" : "; ") + msg;
    }
    if (!failures.empty()) return Error(failures);
    return {};
}

}  // namespace cr::fw
