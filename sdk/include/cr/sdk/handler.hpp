// C++ side of the handler ABI: a typed Context over the host API and CR_DECLARE_HANDLER,
// which builds the C descriptor from a class and keeps every exception inside the handler.
//
//   struct MyHandler {
//       static constexpr const char* k_id = "cr.example.thing";
//       static constexpr const char* k_version = "1.0.0";
//       static constexpr const char* k_summary = "what it saves";
//       static constexpr const char* k_claims[] = {"fd:thing", nullptr};
//       static constexpr const char* k_depends[] = {nullptr};
//       static constexpr const char* k_schemas[] = {"CRTH", nullptr};
//       explicit MyHandler(cr::sdk::Context&) {}
//       cr::Result<void> dump_task(cr::sdk::Context&, pid_t);   // any subset of the ops
//   };
//   CR_DECLARE_HANDLER(MyHandler)
#pragma once

#include <cr/sdk/abi.h>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cr::sdk {

struct Task {
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t pgid = 0;
    pid_t sid = 0;
    std::vector<pid_t> tids;
    uint32_t flags = 0;
};

class Context {
public:
    explicit Context(cr_context* raw) : m_raw(raw) {}

    [[nodiscard]] cr_context* raw() const { return m_raw; }

    void log(int level, const std::string& message) const { api()->log(m_raw, level, message.c_str()); }
    void info(const std::string& m) const { log(CR_LOG_INFO, m); }
    void debug(const std::string& m) const { log(CR_LOG_DEBUG, m); }
    void warn(const std::string& m) const { log(CR_LOG_WARN, m); }

    [[nodiscard]] const char* option(const char* key) const { return api()->option(m_raw, key); }
    [[nodiscard]] bool flag(const char* key) const { return option(key) != nullptr; }
    [[nodiscard]] std::string image_dir() const { return api()->image_dir(m_raw); }

    Result<void> write_section(const std::string& name, std::span<const uint8_t> bytes) const {
        return status(api()->section_write(m_raw, name.c_str(), bytes.data(), bytes.size()));
    }
    Result<std::span<const uint8_t>> read_section(const std::string& name) const {
        const void* data = nullptr;
        size_t size = 0;
        if (api()->section_read(m_raw, name.c_str(), &data, &size) != CR_OK) return last_error();
        return std::span<const uint8_t>(static_cast<const uint8_t*>(data), size);
    }
    Result<UniqueFd> open_image_file(const std::string& name, bool for_write) const {
        int fd = api()->image_file_open(m_raw, name.c_str(), for_write ? 1 : 0);
        if (fd < 0) return last_error();
        return UniqueFd(fd);
    }

    [[nodiscard]] std::vector<Task> tasks() const {
        std::vector<Task> out;
        size_t n = api()->task_count(m_raw);
        for (size_t i = 0; i < n; ++i) {
            cr_task_info info{};
            info.struct_size = sizeof info;
            if (api()->task_at(m_raw, i, &info) == CR_OK) out.push_back(convert(info));
        }
        return out;
    }
    Result<Task> task(pid_t pid) const {
        cr_task_info info{};
        info.struct_size = sizeof info;
        if (api()->task_find(m_raw, pid, &info) != CR_OK) return last_error();
        return convert(info);
    }

    // Raw result of a system call made by thread tid (negative errno on failure).
    Result<int64_t> remote_raw(pid_t tid, long nr, std::array<uint64_t, 6> args = {}) const {
        int64_t ret = 0;
        if (api()->remote_syscall(m_raw, tid, nr, args.data(), &ret) != CR_OK) return last_error();
        return ret;
    }
    // As remote_raw, with a negative result turned into an Error naming the call.
    Result<int64_t> remote(pid_t tid, long nr, const char* what, std::array<uint64_t, 6> args = {}) const {
        int64_t ret = CR_TRY(remote_raw(tid, nr, args));
        if (ret < 0 && ret > -4096) return Error::from_errno(strf("pid %d: remote %s", tid, what), {}, static_cast<int>(-ret));
        return ret;
    }
    struct Scratch {
        uint64_t addr;
        uint64_t size;
    };
    Result<Scratch> scratch(pid_t pid) const {
        Scratch s{};
        if (api()->remote_scratch(m_raw, pid, &s.addr, &s.size) != CR_OK) return last_error();
        return s;
    }
    Result<void> mem_read(pid_t pid, uint64_t addr, void* buf, size_t size) const {
        return status(api()->mem_read(m_raw, pid, addr, buf, size));
    }
    Result<void> mem_write(pid_t pid, uint64_t addr, const void* buf, size_t size) const {
        return status(api()->mem_write(m_raw, pid, addr, buf, size));
    }
    Result<void> set_object_fd(uint64_t object_id, int fd) const {
        return status(api()->object_fd_set(m_raw, object_id, fd));
    }
    Result<void> create_thread(pid_t pid, pid_t tid) const {
        return status(api()->thread_create(m_raw, pid, tid));
    }
    Result<void> set_thread_entry(pid_t tid, const cr_thread_entry& e) const {
        return status(api()->thread_set_entry(m_raw, tid, &e));
    }
    struct Range {
        uint64_t start;
        uint64_t end;
    };
    Result<Range> stub_reserved(pid_t pid) const {
        Range r{};
        if (api()->stub_reserved(m_raw, pid, &r.start, &r.end) != CR_OK) return last_error();
        return r;
    }

    // Host API 1.1; an older core has none of these (has_api_1_1() is false).
    [[nodiscard]] bool has_api_1_1() const {
        return api()->struct_size >= offsetof(cr_host_api, fd_forget) + sizeof(api()->fd_forget);
    }
    Result<void> hash_image_file(const std::string& name, const void* data, size_t size) const {
        return status(api()->image_file_hash(m_raw, name.c_str(), data, size));
    }
    [[nodiscard]] size_t parent_count() const { return has_api_1_1() ? api()->parent_count(m_raw) : 0; }
    Result<std::span<const uint8_t>> read_parent_section(uint32_t depth, const std::string& name) const {
        const void* data = nullptr;
        size_t size = 0;
        if (api()->parent_section_read(m_raw, depth, name.c_str(), &data, &size) != CR_OK) return last_error();
        return std::span<const uint8_t>(static_cast<const uint8_t*>(data), size);
    }
    Result<UniqueFd> open_parent_file(uint32_t depth, const std::string& name) const {
        int fd = api()->parent_file_open(m_raw, depth, name.c_str());
        if (fd < 0) return last_error();
        return UniqueFd(fd);
    }
    Result<void> forget_fd(pid_t pid, int fd) const { return status(api()->fd_forget(m_raw, pid, fd)); }

    [[nodiscard]] bool has_api_1_2() const {
        return api()->struct_size >= offsetof(cr_host_api, object_fd_get) + sizeof(api()->object_fd_get);
    }
    // The object id of an open file description held by no task (a file in flight).
    Result<uint64_t> adopt_fd(int fd) const {
        if (!has_api_1_2()) return Error("this cr cannot save files held by no task (handler ABI 1.2 needed)");
        uint64_t id = 0;
        if (api()->fd_adopt(m_raw, fd, &id) != CR_OK) return last_error();
        return id;
    }
    // A descriptor of the open file description another handler restored for object_id.
    Result<UniqueFd> object_fd(uint64_t object_id) const {
        if (!has_api_1_2()) return Error("this cr cannot lend restored objects (handler ABI 1.2 needed)");
        int fd = api()->object_fd_get(m_raw, object_id);
        if (fd < 0) return last_error();
        return UniqueFd(fd);
    }

private:
    [[nodiscard]] const cr_host_api* api() const { return m_raw->api; }
    [[nodiscard]] Error last_error() const { return Error(api()->last_error(m_raw)); }
    Result<void> status(int rc) const {
        if (rc != CR_OK) return last_error();
        return {};
    }
    static Task convert(const cr_task_info& i) {
        Task t{i.pid, i.ppid, i.pgid, i.sid, {}, i.flags};
        t.tids.assign(i.tids, i.tids + i.thread_count);
        return t;
    }

    cr_context* m_raw;
};

namespace detail {

inline int report(cr_context* c, const Result<void>& r) {
    if (r.ok()) return CR_OK;
    c->api->set_error(c, r.error().message().c_str());
    return CR_FAIL;
}

template <typename F>
int guarded(cr_context* c, F&& f) noexcept {
    try {
        return report(c, f());
    } catch (const std::exception& e) {
        c->api->set_error(c, (std::string("unexpected exception: ") + e.what()).c_str());
    } catch (...) {
        c->api->set_error(c, "unexpected exception");
    }
    return CR_FAIL;
}

template <typename H>
const cr_handler_info* info_for() {
    static const cr_handler_ops ops = [] {
        cr_handler_ops o{};
        o.struct_size = sizeof o;
        o.create = [](cr_context* c) noexcept -> void* {
            try {
                Context ctx(c);
                return new H(ctx);
            } catch (const std::exception& e) {
                c->api->set_error(c, e.what());
                return nullptr;
            }
        };
        o.destroy = [](void* self) noexcept { delete static_cast<H*>(self); };
#define CR_SDK_OP0(name)                                                              \
    if constexpr (requires(H h, Context& ctx) { h.name(ctx); }) {                     \
        o.name = [](void* self, cr_context* c) noexcept {                             \
            return guarded(c, [&] { Context ctx(c); return static_cast<H*>(self)->name(ctx); }); \
        };                                                                            \
    }
#define CR_SDK_OP1(name, T)                                                           \
    if constexpr (requires(H h, Context& ctx, T a) { h.name(ctx, a); }) {             \
        o.name = [](void* self, cr_context* c, T a) noexcept {                        \
            return guarded(c, [&] { Context ctx(c); return static_cast<H*>(self)->name(ctx, a); }); \
        };                                                                            \
    }
        CR_SDK_OP0(pre_dump)
        CR_SDK_OP1(dump_task, pid_t)
        CR_SDK_OP1(dump_fd, const cr_fd_info*)
        CR_SDK_OP0(dump_finish)
        CR_SDK_OP0(post_dump)
        CR_SDK_OP0(prepare)
        CR_SDK_OP1(restore_stub, pid_t)
        CR_SDK_OP1(restore_task, pid_t)
        CR_SDK_OP0(post_restore)
#undef CR_SDK_OP0
#undef CR_SDK_OP1
        return o;
    }();
    static const cr_handler_info info = {
        sizeof(cr_handler_info), CR_ABI_MAJOR, CR_ABI_MINOR, H::k_id, H::k_version, H::k_summary,
        H::k_claims, H::k_depends, H::k_schemas, &ops,
    };
    return &info;
}

}  // namespace detail
}  // namespace cr::sdk

#define CR_DECLARE_HANDLER(Class)                                                 \
    extern "C" CR_EXPORT const cr_handler_info* cr_handler_get_info(void) {      \
        return ::cr::sdk::detail::info_for<Class>();                             \
    }
