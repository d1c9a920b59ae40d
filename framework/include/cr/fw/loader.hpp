// Finding and loading handler shared objects (Boost.DLL), and the registry that orders them.
#pragma once

#include <cr/sdk/abi.h>
#include <cr/sdk/result.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cr::fw {

struct LoadedHandler {
    std::string path;
    std::string id;
    std::string version;
    std::string summary;
    std::vector<std::string> claims;
    std::vector<std::string> depends;
    std::vector<std::string> schema_ids;
    const cr_handler_info* info = nullptr;
    std::shared_ptr<void> library;  // keeps the shared object mapped; never unloaded
};

// CR_PLUGIN_PATH entries (colon separated), then <dir of cr>/../lib/cr/handlers.
std::vector<std::string> default_search_path();

// Root-owned and not group/world-writable (when running as root); error names the path.
Result<void> check_path_safe(const std::string& path);

// Loads one file. Checks the symbol, ABI major/minor, struct sizes and required fields;
// every error names the file, the symbol and the reason. trusted skips check_path_safe
// (the user named the path).
Result<LoadedHandler> load_handler(const std::string& path, bool trusted);

// Every *.so in the directories (missing directories are skipped; unsafe ones refused).
// A later directory does not override an id found earlier.
Result<std::vector<LoadedHandler>> load_directories(const std::vector<std::string>& dirs);

// "fd:pipe" -> "cr-handler-files-pipe"; "" when no built-in handler owns the kind.
std::string package_for_kind(std::string_view kind);
// "cr.files.pipe" -> "cr-handler-files-pipe"
std::string package_for_handler(std::string_view id);

class Registry {
public:
    // Duplicate ids are an error naming both files.
    Result<void> add(LoadedHandler h);
    // Keeps only handlers matching a pattern: an id ("cr.files.pipe"), an id without "cr."
    // ("files.pipe"), or a prefix of dotted parts ("files", "cr.files"). A pattern matching
    // nothing is an error.
    Result<void> select(const std::vector<std::string>& patterns);
    // Keeps only the handlers with these exact ids (restore: what the manifest names).
    Result<void> select_exact(const std::vector<std::string>& ids);
    // Dependency order. A missing dependency or a cycle is an error naming the handlers;
    // two handlers claiming the same kind is an error naming both.
    Result<std::vector<const LoadedHandler*>> order() const;
    // The one handler claiming kind, or nullptr.
    [[nodiscard]] const LoadedHandler* claimer(std::string_view kind) const;
    [[nodiscard]] const std::vector<LoadedHandler>& handlers() const { return m_handlers; }
    [[nodiscard]] const LoadedHandler* find(std::string_view id) const;

private:
    std::vector<LoadedHandler> m_handlers;
};

}  // namespace cr::fw
