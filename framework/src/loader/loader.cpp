// Loading handler shared objects: path safety, the one exported symbol, ABI and descriptor checks.
#define BOOST_DLL_USE_STD_FS
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cr/fw/loader.hpp>
#include <cr/sdk/log.hpp>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <system_error>

namespace cr::fw {

namespace fs = std::filesystem;

namespace {

const char* const k_refuse_hint = "refusing to load; fix its mode or name the file with --plugins";

std::string directory_of(const std::string& path) {
    auto dir = fs::path(path).parent_path();
    return dir.empty() ? std::string(".") : dir.string();
}

bool is_lower_part_char(char c, bool allow_dash) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (allow_dash && c == '-');
}

// Dotted parts, none empty, at least min_parts of them.
bool is_dotted(std::string_view s, size_t min_parts, bool allow_dash) {
    size_t parts = 0;
    size_t len = 0;
    for (char c : s) {
        if (c == '.') {
            if (len == 0) return false;
            ++parts;
            len = 0;
        } else if (is_lower_part_char(c, allow_dash)) {
            ++len;
        } else {
            return false;
        }
    }
    if (len == 0) return false;
    return parts + 1 >= min_parts;
}

// Built-in ids: cr.<category>.<name>[.<more>]; third-party ids: any dotted lowercase name.
bool valid_id(std::string_view id) {
    if (id.starts_with("cr.")) return is_dotted(id.substr(3), 2, false);
    return is_dotted(id, 2, true);
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// MAJOR.MINOR.PATCH, optionally followed by a semver pre-release or build suffix.
bool valid_version(std::string_view v) {
    auto suffix = v.find_first_of("-+");
    std::string_view core = v.substr(0, suffix);
    if (suffix != std::string_view::npos) {
        std::string_view rest = v.substr(suffix + 1);
        if (rest.empty()) return false;
        for (char c : rest) {
            bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      c == '.' || c == '-' || c == '+';
            if (!ok) return false;
        }
    }
    auto d1 = core.find('.');
    if (d1 == std::string_view::npos) return false;
    auto d2 = core.find('.', d1 + 1);
    if (d2 == std::string_view::npos) return false;
    return all_digits(core.substr(0, d1)) && all_digits(core.substr(d1 + 1, d2 - d1 - 1)) &&
           all_digits(core.substr(d2 + 1));
}

std::vector<std::string> copy_list(const char* const* list) {
    std::vector<std::string> out;
    if (list == nullptr) return out;
    for (; *list != nullptr; ++list) out.emplace_back(*list);
    return out;
}

Result<void> check_handler_paths(const std::string& path) {
    auto refuse = [&](Error e) {
        return Error(strf("handler %s: %s (%s)", path.c_str(), e.message().c_str(), k_refuse_hint));
    };
    if (auto r = check_path_safe(directory_of(path)); !r) return refuse(std::move(r).error());
    if (auto r = check_path_safe(path); !r) return refuse(std::move(r).error());
    // A symlink is only as safe as where it leads.
    std::error_code ec;
    auto real = fs::canonical(path, ec);
    if (ec) return Error::from_errno("handler", path, ec.value());
    if (real.string() != fs::absolute(path, ec).lexically_normal().string()) {
        if (auto r = check_path_safe(directory_of(real.string())); !r)
            return refuse(std::move(r).error());
        if (auto r = check_path_safe(real.string()); !r) return refuse(std::move(r).error());
    }
    return {};
}

Result<std::shared_ptr<boost::dll::shared_library>> open_library(const std::string& path) {
    auto lib = std::make_shared<boost::dll::shared_library>();
    boost::dll::fs::error_code ec;
    // RTLD_NODELETE: descriptors and ops point into the object, so it stays mapped for good.
    auto mode = boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now |
                static_cast<boost::dll::load_mode::type>(RTLD_NODELETE);
    dlerror();
    lib->load(fs::path(path), ec, mode);
    if (ec || !lib->is_loaded()) {
        const char* why = dlerror();
        std::string reason = why != nullptr ? why : ec.message();
        return Error(strf("handler %s: dlopen failed: %s", path.c_str(), reason.c_str()));
    }
    return lib;
}

Result<void> check_descriptor(const std::string& path, const cr_handler_info* info) {
    if (info == nullptr)
        return Error(strf("handler %s: %s returned NULL", path.c_str(), CR_HANDLER_SYMBOL));
    constexpr size_t k_header = offsetof(cr_handler_info, abi_minor) + sizeof(info->abi_minor);
    if (info->struct_size < k_header)
        return Error(
            strf("handler %s: cr_handler_info is %u bytes, too small to hold its ABI version",
                 path.c_str(), info->struct_size));
    if (info->abi_major != CR_ABI_MAJOR)
        return Error(
            strf("handler %s: built for handler ABI %u.%u, this cr speaks %d.%d "
                 "(rebuild it against this cr's SDK)",
                 path.c_str(), info->abi_major, info->abi_minor, CR_ABI_MAJOR, CR_ABI_MINOR));
    // Every field of this minor is read; a newer minor only appends fields we ignore.
    if (info->struct_size < sizeof(cr_handler_info))
        return Error(strf("handler %s: cr_handler_info is %u bytes, this cr reads %zu (ABI %u.%u)",
                          path.c_str(), info->struct_size, sizeof(cr_handler_info), info->abi_major,
                          info->abi_minor));
    if (info->id == nullptr) return Error(strf("handler %s: descriptor has no id", path.c_str()));
    if (!valid_id(info->id))
        return Error(
            strf("handler %s: id '%s' is not a handler id (cr.<category>.<name>, or a dotted "
                 "lowercase id for third parties)",
                 path.c_str(), info->id));
    if (info->version == nullptr)
        return Error(strf("handler %s (%s): descriptor has no version", path.c_str(), info->id));
    if (!valid_version(info->version))
        return Error(strf("handler %s (%s): version '%s' is not MAJOR.MINOR.PATCH", path.c_str(),
                          info->id, info->version));
    if (info->ops == nullptr)
        return Error(strf("handler %s (%s): descriptor has no ops table", path.c_str(), info->id));
    if (info->ops->struct_size < sizeof(cr_handler_ops))
        return Error(strf("handler %s (%s): cr_handler_ops is %u bytes, this cr reads %zu",
                          path.c_str(), info->id, info->ops->struct_size, sizeof(cr_handler_ops)));
    return {};
}

}  // namespace

std::vector<std::string> default_search_path() {
    std::vector<std::string> out;
    if (const char* env = std::getenv("CR_PLUGIN_PATH"); env != nullptr) {
        std::string_view rest(env);
        while (!rest.empty()) {
            auto colon = rest.find(':');
            std::string_view entry = rest.substr(0, colon);
            if (!entry.empty()) out.emplace_back(entry);
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    std::error_code ec;
    auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return out;
    std::vector<fs::path> candidates{exe.parent_path() / ".." / "lib" / "cr" / "handlers"};
#ifdef CR_HANDLER_RELDIR
    // The install prefix may use a multiarch libdir (lib/x86_64-linux-gnu/cr/handlers).
    auto installed = exe.parent_path() / ".." / CR_HANDLER_RELDIR;
    if (installed.lexically_normal() != candidates.front().lexically_normal())
        candidates.push_back(installed);
#endif
    for (const auto& dir : candidates) {
        auto real = fs::canonical(dir, ec);
        std::string entry = ec ? dir.lexically_normal().string() : real.string();
        if (std::find(out.begin(), out.end(), entry) == out.end()) out.push_back(entry);
    }
    return out;
}

Result<void> check_path_safe(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Error::from_errno("stat", path);
    const char* what = S_ISDIR(st.st_mode) ? "directory" : "file";
    if (::geteuid() == 0 && st.st_uid != 0)
        return Error(strf("%s %s is owned by uid %u, not root", what, path.c_str(), st.st_uid));
    if ((st.st_mode & S_IWOTH) != 0)
        return Error(strf("%s %s is world-writable", what, path.c_str()));
    if ((st.st_mode & S_IWGRP) != 0)
        return Error(strf("%s %s is group-writable", what, path.c_str()));
    return {};
}

Result<LoadedHandler> load_handler(const std::string& path, bool trusted) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Error::from_errno("handler", path);
    if (!S_ISREG(st.st_mode)) return Error(strf("handler %s: not a regular file", path.c_str()));
    if (!trusted) CR_TRY(check_handler_paths(path));

    auto lib = CR_TRY(open_library(path));
    if (!lib->has(CR_HANDLER_SYMBOL))
        return Error(strf("handler %s: symbol %s not found (not a cr handler)", path.c_str(),
                          CR_HANDLER_SYMBOL));
    auto& get_info = lib->get<const cr_handler_info*()>(CR_HANDLER_SYMBOL);
    const cr_handler_info* info = get_info();
    CR_TRY(check_descriptor(path, info));

    LoadedHandler h;
    h.path = path;
    h.id = info->id;
    h.version = info->version;
    h.summary = info->summary != nullptr ? info->summary : "";
    h.claims = copy_list(info->claims);
    h.depends = copy_list(info->depends);
    h.schema_ids = copy_list(info->schema_ids);
    h.info = info;
    h.library = std::move(lib);
    return h;
}

Result<std::vector<LoadedHandler>> load_directories(const std::vector<std::string>& dirs) {
    std::vector<LoadedHandler> out;
    std::set<std::string> seen;
    std::string errors;
    auto fail = [&](const std::string& message) {
        if (!errors.empty()) errors += '\n';
        errors += message;
    };
    for (const auto& dir : dirs) {
        std::error_code ec;
        if (!fs::exists(dir, ec)) continue;
        if (!fs::is_directory(dir, ec)) {
            fail(strf("handler directory %s: not a directory", dir.c_str()));
            continue;
        }
        if (auto r = check_path_safe(dir); !r) {
            fail(
                strf("handler search path: %s (refusing to load handlers from it; fix its mode or "
                     "name the files with --plugins)",
                     r.error().message().c_str()));
            continue;
        }
        std::vector<std::string> files;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const auto& p = it->path();
            std::error_code type_ec;
            if (p.extension() == ".so" && it->is_regular_file(type_ec)) files.push_back(p.string());
        }
        if (ec) {
            fail(Error::from_errno("handler directory", dir, ec.value()).message());
            continue;
        }
        std::sort(files.begin(), files.end());
        for (const auto& file : files) {
            auto h = load_handler(file, false);
            if (!h) {
                fail(h.error().message());
                continue;
            }
            // The first directory in the search path wins, as with PATH.
            if (seen.insert(h->id).second) out.push_back(std::move(h).value());
        }
    }
    if (!errors.empty()) return Error(errors);
    return out;
}

}  // namespace cr::fw
