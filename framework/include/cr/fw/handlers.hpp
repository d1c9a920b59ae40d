// Which handlers a run uses: everything installed, or what --plugins names.
#pragma once

#include <cr/fw/loader.hpp>

namespace cr::fw {

// Loads the installed handlers plus any .so paths in plugins; keeps those the other entries
// select (all when there are none).
Result<Registry> load_registry(const std::vector<std::string>& plugins);

}  // namespace cr::fw
