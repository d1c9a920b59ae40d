#include <cr/fw/handlers.hpp>

namespace cr::fw {

Result<Registry> load_registry(const std::vector<std::string>& plugins) {
    Registry registry;
    std::vector<std::string> patterns;
    for (const auto& p : plugins) {
        if (p.find('/') == std::string::npos) {
            patterns.push_back(p);
            continue;
        }
        auto h = CR_TRY(load_handler(p, /*trusted=*/true));
        patterns.push_back(h.id);
        CR_TRY(registry.add(std::move(h)));
    }
    auto installed = CR_TRY(load_directories(default_search_path()));
    for (auto& h : installed) {
        if (registry.find(h.id)) continue;  // a path the user named wins
        CR_TRY(registry.add(std::move(h)));
    }
    if (!patterns.empty()) CR_TRY(registry.select(patterns));
    return registry;
}

}  // namespace cr::fw
