// The core side of the handler ABI: one cr_context per handler, the host API table, and
// running a phase over every handler in order.
#pragma once

#include <cr/fw/image.hpp>
#include <cr/fw/loader.hpp>
#include <cr/fw/log.hpp>
#include <cr/fw/ptrace.hpp>
#include <cr/sdk/abi.h>

#include <cstddef>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

namespace cr::fw {

inline constexpr uint64_t k_stub_size = 16 * 4096;  // trampoline page + scratch

// A task of the tree as the manifest records it: the core keeps tasks in that form from the
// moment it reads them in /proc (dump) or in the manifest (restore).
using TaskRecord = ManifestTask;

class Host;

struct HandlerSlot {
    const LoadedHandler* handler = nullptr;
    cr_context ctx{};
    void* self = nullptr;
    std::string last_error;
    Host* host = nullptr;

    // An op the handler has (inside its struct_size and non-NULL), or nullptr.
    template <typename Fn>
    Fn op(Fn cr_handler_ops::*member) const {
        const cr_handler_ops* ops = handler->info->ops;
        auto offset = reinterpret_cast<size_t>(&(static_cast<cr_handler_ops*>(nullptr)->*member));
        if (offset + sizeof(Fn) > ops->struct_size) return nullptr;
        return ops->*member;
    }
};

class Host {
public:
    Host(Log& log, Tracer& tracer, std::map<std::string, std::string> options);
    ~Host();
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

    // create() every handler, in order.
    Result<void> instantiate(const std::vector<const LoadedHandler*>& order);

    // Runs fn on every handler (reverse order when asked). stop_early: first failure ends the
    // phase; otherwise every handler runs and the failures are reported together.
    Result<void> run_phase(const char* phase, const std::function<int(HandlerSlot&)>& fn,
                           bool reverse = false, bool stop_early = true);

    [[nodiscard]] std::vector<std::unique_ptr<HandlerSlot>>& slots() { return m_slots; }
    HandlerSlot* slot_for(const LoadedHandler* h);

    Log& log() { return m_log; }
    Tracer& tracer() { return m_tracer; }

    std::vector<TaskRecord> tasks;    // live tasks: what handlers see
    std::vector<TaskRecord> zombies;  // CR_TASK_ZOMBIE: only the core deals with them
    ImageWriter* writer = nullptr;
    ImageReader* reader = nullptr;
    std::string image_dir;
    std::map<uint64_t, int> object_fds;  // restore: open file description id -> fd in cr
    std::vector<ImageReader*> parents;  // incremental images: the chain above, parent first
    std::set<std::pair<pid_t, int>> forgotten_fds;  // dump: fds handlers left out of the image
    std::function<Result<uint64_t>(int fd)> adopt;   // dump: object id of a file held by no task

    [[nodiscard]] const TaskRecord* find_task(pid_t pid) const;
    [[nodiscard]] const char* option(const char* key) const;

private:
    static const cr_host_api k_api;
    Log& m_log;
    Tracer& m_tracer;
    std::map<std::string, std::string> m_options;
    std::vector<std::unique_ptr<HandlerSlot>> m_slots;
};

}  // namespace cr::fw
