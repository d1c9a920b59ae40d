// example.statefile: saves the file a process publishes its state in (named by the variable
// EXAMPLE_STATE_FILE of its environment) and puts it back before the process runs again, for
// instance on a machine where that file never existed. Nothing of this is an open file of the
// process, so no built-in handler sees it.
#include <statefile_generated.h>

#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <span>
#include <string>
#include <vector>

namespace {

namespace fb = example::statefile::v1;
using cr::Error;
using cr::Result;
using cr::strf;

constexpr const char* k_variable = "EXAMPLE_STATE_FILE";
constexpr const char* k_section = "example.statefile.cr";
constexpr size_t k_max_size = 1 << 20;  // state, not bulk data

struct Published {
    pid_t pid = 0;
    std::string path;
    uint32_t mode = 0;
    std::vector<uint8_t> data;
};

Result<std::vector<uint8_t>> read_all(const std::string& path, size_t limit) {
    cr::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return Error::from_errno("open", path);
    std::vector<uint8_t> out;
    uint8_t buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read", path);
        if (n == 0) return out;
        out.insert(out.end(), buf, buf + n);
        if (out.size() > limit) return Error(strf("%s: larger than %zu bytes", path.c_str(), limit));
    }
}

// The value of one variable in /proc/PID/environ, "" when unset.
Result<std::string> environment_value(pid_t pid, const char* name) {
    auto env = CR_TRY(read_all(strf("/proc/%d/environ", pid), 4 << 20));
    std::string prefix = std::string(name) + "=";
    for (size_t pos = 0; pos < env.size();) {
        size_t end = pos;
        while (end < env.size() && env[end] != 0) ++end;
        std::string entry(env.begin() + static_cast<long>(pos), env.begin() + static_cast<long>(end));
        if (entry.starts_with(prefix)) return entry.substr(prefix.size());
        pos = end + 1;
    }
    return std::string();
}

Result<void> write_atomically(const std::string& path, uint32_t mode, std::span<const uint8_t> data) {
    auto slash = path.rfind('/');
    std::string dir = path.substr(0, slash);
    // The directory may be gone too (a fresh machine, a cleaned /run): make it as mkdir -p would.
    for (size_t p = 1; p <= dir.size(); ++p) {
        if (p != dir.size() && dir[p] != '/') continue;
        std::string part = dir.substr(0, p);
        if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return Error::from_errno("mkdir", part);
    }
    std::string tmp = path + ".cr-restore";
    cr::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Error::from_errno("open", tmp);
    if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
        ::fchmod(fd.get(), mode) != 0 || ::close(fd.release()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        Error e = Error::from_errno("write", path);
        ::unlink(tmp.c_str());
        return e;
    }
    return {};
}

class StateFileHandler {
public:
    static constexpr const char* k_id = "example.statefile";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary = "the file an application publishes its state in ($EXAMPLE_STATE_FILE)";
    static constexpr const char* k_claims[] = {nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"EXSF", nullptr};

    explicit StateFileHandler(cr::sdk::Context&) {}

    Result<void> dump_task(cr::sdk::Context& ctx, pid_t pid) {
        std::string path = CR_TRY(environment_value(pid, k_variable));
        if (path.empty()) return {};
        if (path.front() != '/') return Error(strf("pid %d: %s=%s is not an absolute path", pid, k_variable, path.c_str()));
        struct stat st{};
        if (::lstat(path.c_str(), &st) != 0) return Error::from_errno(strf("pid %d: %s: stat", pid, k_variable), path);
        if (!S_ISREG(st.st_mode)) return Error(strf("pid %d: %s: %s is not a regular file", pid, k_variable, path.c_str()));
        Published p{pid, path, static_cast<uint32_t>(st.st_mode & 07777), CR_TRY(read_all(path, k_max_size))};
        ctx.info(strf("pid %d: %s: %zu bytes, mode %04o", pid, path.c_str(), p.data.size(), p.mode));
        m_files.push_back(std::move(p));
        return {};
    }

    // Always a section, empty or not: restore reads it back unconditionally.
    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::PublishedFile>> files;
        for (const Published& p : m_files)
            files.push_back(fb::CreatePublishedFileDirect(fbb, p.pid, k_variable, p.path.c_str(), p.mode, &p.data));
        fbb.Finish(fb::CreateStateImageDirect(fbb, &files), fb::StateImageIdentifier());
        return cr::sdk::write_section(ctx, k_section, fbb);
    }

    // Before the tree exists, so the file is there when the process looks again.
    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::StateImage* image = CR_TRY(cr::sdk::read_section_as<fb::StateImage>(
            ctx, k_section, fb::StateImageIdentifier(), &fb::VerifyStateImageBuffer));
        if (!image->files()) return {};
        for (const fb::PublishedFile* f : *image->files()) {
            if (!f->path() || f->path()->size() == 0 || f->path()->c_str()[0] != '/')
                return Error(strf("%s: pid %d: no absolute path", k_section, f->pid()));
            std::string path = f->path()->str();
            std::span<const uint8_t> data;
            if (f->data()) data = {f->data()->data(), f->data()->size()};
            auto now = read_all(path, k_max_size);
            if (now && std::equal(now->begin(), now->end(), data.begin(), data.end())) {
                ::chmod(path.c_str(), f->mode() & 07777);
                ctx.info(strf("pid %d: %s: unchanged", f->pid(), path.c_str()));
                continue;
            }
            CR_TRY_CTX(write_atomically(path, f->mode() & 07777, data), strf("pid %d", f->pid()));
            ctx.info(strf("pid %d: %s: %zu bytes put back", f->pid(), path.c_str(), data.size()));
        }
        return {};
    }

private:
    std::vector<Published> m_files;
};

}  // namespace

CR_DECLARE_HANDLER(StateFileHandler)
