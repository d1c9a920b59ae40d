// The set of loaded handlers: selection, claims, and the dependency order phases run in.
#include <algorithm>
#include <cr/fw/loader.hpp>
#include <cr/sdk/log.hpp>
#include <map>
#include <set>

namespace cr::fw {

namespace {

struct KindPackage {
    std::string_view kind;  // a trailing '*' matches any suffix
    std::string_view handler;
};

constexpr KindPackage k_builtin_kinds[] = {
    {"task:memory", "cr.memory.vma"},      {"task:threads", "cr.task.core"},
    {"task:signals", "cr.signal.signals"}, {"task:fs", "cr.files.regular"},
    {"fd:file", "cr.files.regular"},       {"fd:dir", "cr.files.regular"},
    {"fd:chr", "cr.files.regular"},        {"fd:pipe", "cr.files.pipe"},
    {"fd:fifo", "cr.files.pipe"},          {"fd:socket:unix-stream", "cr.net.unix"},
    {"fd:socket:unix-dgram", "cr.net.unix"}, {"fd:socket:unix-seqpacket", "cr.net.unix"},
    {"fd:socket:inet*", "cr.net.inet"},    {"fd:eventfd", "cr.files.event"},
    {"fd:signalfd", "cr.files.event"},     {"fd:timerfd", "cr.files.event"},
    {"fd:eventpoll", "cr.files.event"},    {"fd:inotify", "cr.files.event"},
    {"fd:memfd", "cr.memory.memfd"},       {"task:timers", "cr.time.timers"},
    {"task:creds", "cr.task.creds"},       {"fd:userfaultfd", "cr.memory.vma"},
};

bool kind_matches(std::string_view pattern, std::string_view kind) {
    if (pattern.ends_with('*')) return kind.starts_with(pattern.substr(0, pattern.size() - 1));
    return pattern == kind;
}

bool is_dotted_prefix(std::string_view prefix, std::string_view id) {
    return id == prefix ||
           (id.size() > prefix.size() && id.starts_with(prefix) && id[prefix.size()] == '.');
}

// "files" selects cr.files.*, "files.pipe" and "cr.files.pipe" select cr.files.pipe.
bool pattern_matches(std::string_view pattern, std::string_view id) {
    if (is_dotted_prefix(pattern, id)) return true;
    return id.starts_with("cr.") && is_dotted_prefix(pattern, id.substr(3));
}

std::string join(const std::vector<std::string>& items, const char* sep) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += sep;
        out += item;
    }
    return out;
}

}  // namespace

std::string package_for_handler(std::string_view id) {
    if (id.starts_with("cr.")) id.remove_prefix(3);
    std::string out = "cr-handler-";
    for (char c : id) out += c == '.' ? '-' : c;
    return out;
}

std::string package_for_kind(std::string_view kind) {
    for (const auto& entry : k_builtin_kinds)
        if (kind_matches(entry.kind, kind)) return package_for_handler(entry.handler);
    return {};
}

Result<void> Registry::add(LoadedHandler h) {
    if (const LoadedHandler* old = find(h.id); old != nullptr)
        return Error(strf("handler %s is in both %s and %s", h.id.c_str(), old->path.c_str(),
                          h.path.c_str()));
    m_handlers.push_back(std::move(h));
    return {};
}

Result<void> Registry::select(const std::vector<std::string>& patterns) {
    std::vector<bool> keep(m_handlers.size(), false);
    for (const auto& pattern : patterns) {
        if (pattern.empty()) continue;
        bool any = false;
        for (size_t i = 0; i < m_handlers.size(); ++i) {
            if (pattern_matches(pattern, m_handlers[i].id)) keep[i] = any = true;
        }
        if (!any) {
            std::vector<std::string> installed;
            for (const auto& h : m_handlers) installed.push_back(h.id);
            std::sort(installed.begin(), installed.end());
            return Error(strf("--plugins: '%s' matches no installed handler (installed: %s)",
                              pattern.c_str(),
                              installed.empty() ? "none" : join(installed, ", ").c_str()));
        }
    }
    if (std::none_of(patterns.begin(), patterns.end(), [](const auto& p) { return !p.empty(); }))
        return {};
    std::vector<LoadedHandler> kept;
    for (size_t i = 0; i < m_handlers.size(); ++i)
        if (keep[i]) kept.push_back(std::move(m_handlers[i]));
    m_handlers = std::move(kept);
    return {};
}

Result<void> Registry::select_exact(const std::vector<std::string>& ids) {
    std::vector<std::string> missing;
    for (const auto& id : ids) {
        if (find(id) == nullptr)
            missing.push_back(strf("image needs handler %s, which is not installed (install %s)",
                                   id.c_str(), package_for_handler(id).c_str()));
    }
    if (!missing.empty()) return Error(join(missing, "\n"));
    std::set<std::string_view> wanted(ids.begin(), ids.end());
    std::vector<LoadedHandler> kept;
    for (auto& h : m_handlers)
        if (wanted.count(h.id) != 0) kept.push_back(std::move(h));
    m_handlers = std::move(kept);
    return {};
}

Result<std::vector<const LoadedHandler*>> Registry::order() const {
    std::map<std::string_view, const LoadedHandler*> by_id;
    for (const auto& h : m_handlers) by_id.emplace(h.id, &h);

    std::map<std::string_view, const LoadedHandler*> claimed;
    for (const auto& [id, h] : by_id) {
        for (const auto& kind : h->claims) {
            auto [it, fresh] = claimed.emplace(kind, h);
            if (!fresh)
                return Error(strf("claim %s is made by both %s (%s) and %s (%s)", kind.c_str(),
                                  it->second->id.c_str(), it->second->path.c_str(), h->id.c_str(),
                                  h->path.c_str()));
        }
    }

    // Unresolved dependencies of each handler; Kahn's algorithm with the smallest ready id first.
    std::map<std::string_view, std::set<std::string_view>> pending;
    std::map<std::string_view, std::vector<std::string_view>> dependents;
    for (const auto& [id, h] : by_id) {
        auto& deps = pending[id];
        for (const auto& dep : h->depends) {
            if (by_id.count(dep) == 0)
                return Error(strf("handler %s depends on %s, which is not loaded", h->id.c_str(),
                                  dep.c_str()));
            if (deps.insert(dep).second) dependents[dep].push_back(id);
        }
    }
    std::set<std::string_view> ready;
    for (const auto& [id, deps] : pending)
        if (deps.empty()) ready.insert(id);
    std::vector<const LoadedHandler*> out;
    while (!ready.empty()) {
        std::string_view id = *ready.begin();
        ready.erase(ready.begin());
        out.push_back(by_id.at(id));
        for (auto dependent : dependents[id]) {
            auto& deps = pending[dependent];
            deps.erase(id);
            if (deps.empty()) ready.insert(dependent);
        }
        pending.erase(id);
    }
    if (pending.empty()) return out;

    // Every handler left waits on another one left: follow the smallest such edge until a repeat.
    std::vector<std::string_view> path;
    std::string_view at = pending.begin()->first;
    while (std::find(path.begin(), path.end(), at) == path.end()) {
        path.push_back(at);
        at = *pending.at(at).begin();
    }
    std::vector<std::string> cycle(std::find(path.begin(), path.end(), at), path.end());
    cycle.emplace_back(at);
    return Error("handlers depend on each other in a cycle: " + join(cycle, " -> "));
}

const LoadedHandler* Registry::claimer(std::string_view kind) const {
    const LoadedHandler* best = nullptr;
    size_t best_len = 0;
    for (const auto& h : m_handlers) {
        for (const auto& claim : h.claims) {
            if (claim == kind) return &h;
            // A wildcard claim ("fd:socket:unix*") loses to an exact one and to a longer prefix.
            if (claim.ends_with('*') && kind_matches(claim, kind) && claim.size() > best_len) {
                best = &h;
                best_len = claim.size();
            }
        }
    }
    return best;
}

const LoadedHandler* Registry::find(std::string_view id) const {
    for (const auto& h : m_handlers)
        if (h.id == id) return &h;
    return nullptr;
}

}  // namespace cr::fw
