// cr.files.regular: open regular files, directories and character devices, reopened by path at
// restore; and each task's cwd, root and umask.
#include <fcntl.h>
#include <files_generated.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <string>
#include <vector>

#include "file_rules.hpp"

namespace {

namespace fb = cr::image::v1;
using cr::Error;
using cr::Result;
using cr::strf;
using cr::UniqueFd;
using namespace cr::files_regular;

Result<std::string> read_link(const std::string& path) {
    std::string buf(256, '\0');
    for (;;) {
        ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
        if (n < 0) return Error::from_errno("readlink", path);
        if (static_cast<size_t>(n) < buf.size()) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        buf.resize(buf.size() * 2);
    }
}

Result<std::string> read_text(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno("open", path);
    std::string out;
    char chunk[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read", path);
        if (n == 0) return out;
        out.append(chunk, static_cast<size_t>(n));
    }
}

struct FileRecord {
    uint64_t object_id = 0;
    std::string path;
    uint32_t flags = 0;
    uint64_t pos = 0;
    struct stat st {};
};

struct FsRecord {
    pid_t pid = 0;
    std::string cwd;
    std::string root;
    uint32_t umask = 0;
};

// Why this description cannot be saved by reopening its path, or "" when it can.
std::string unsupported_reason(const cr_fd_info& fd, const struct stat& st) {
    std::string_view link = fd.link ? fd.link : "";
    if (is_deleted_link(link)) return "deleted files are not supported yet";
    if (!link.starts_with("/")) return "not reachable by a path";
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISCHR(st.st_mode))
        return strf("%s not supported by cr.files.regular", type_name(st.st_mode));
    if (S_ISCHR(st.st_mode) && !reopenable_chr(st.st_rdev))
        return strf(
            "character device %u:%u is not supported yet (reopening it would not give the same "
            "state)",
            major(st.st_rdev), minor(st.st_rdev));
    if (fd.flags & O_ASYNC) return "signal-driven I/O (O_ASYNC) is not supported yet";
    return {};
}

// Locks live outside the open file description and would be silently dropped.
Result<bool> holds_locks(pid_t pid, int fd) {
    std::string text = CR_TRY(read_text(strf("/proc/%d/fdinfo/%d", pid, fd)));
    return text.starts_with("lock:") || text.find("\nlock:") != std::string::npos;
}

// Threads that unshared CLONE_FS have a cwd, root and umask of their own, which one TaskFs
// record cannot hold.
Result<bool> shares_fs(pid_t pid, pid_t tid) {
    long r = ::syscall(SYS_kcmp, pid, tid, KCMP_FS, 0, 0);
    if (r >= 0) return r == 0;
    if (errno != ENOSYS) return Error::from_errno(strf("kcmp pid %d tid %d", pid, tid));
    // Without kcmp, equal values are the best evidence there is.
    for (const char* what : {"cwd", "root"}) {
        std::string a = CR_TRY(read_link(strf("/proc/%d/%s", pid, what)));
        std::string b = CR_TRY(read_link(strf("/proc/%d/task/%d/%s", pid, tid, what)));
        if (a != b) return false;
    }
    return true;
}

class FilesRegularHandler {
public:
    static constexpr const char* k_id = "cr.files.regular";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "regular files, directories, character devices, cwd, root and umask";
    static constexpr const char* k_claims[] = {"fd:file", "fd:dir", "fd:chr", "task:fs", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRFL", nullptr};

    explicit FilesRegularHandler(cr::sdk::Context&) {}

    Result<void> dump_task(cr::sdk::Context& ctx, pid_t pid) {
        FsRecord rec;
        rec.pid = pid;
        rec.cwd = CR_TRY(read_link(strf("/proc/%d/cwd", pid)));
        rec.root = CR_TRY(read_link(strf("/proc/%d/root", pid)));
        if (is_deleted_link(rec.cwd))
            return Error(strf("pid %d: cwd %s: deleted directories are not supported yet", pid,
                              rec.cwd.c_str()));
        if (is_deleted_link(rec.root))
            return Error(strf("pid %d: root %s: deleted directories are not supported yet", pid,
                              rec.root.c_str()));
        std::string status = CR_TRY(read_text(strf("/proc/%d/status", pid)));
        rec.umask = CR_TRY_CTX(parse_umask(status), strf("/proc/%d/status", pid));

        cr::sdk::Task task = CR_TRY(ctx.task(pid));
        for (pid_t tid : task.tids) {
            if (tid == pid) continue;
            if (!CR_TRY(shares_fs(pid, tid)))
                return Error(strf(
                    "pid %d: thread %d has a cwd, root and umask of its own (unshare(CLONE_FS)): "
                    "not supported yet",
                    pid, tid));
        }
        ctx.debug(strf("pid %d: cwd %s, root %s, umask %03o", pid, rec.cwd.c_str(),
                       rec.root.c_str(), rec.umask));
        m_tasks.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string link = fd->link ? fd->link : "";
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, link.c_str());
        FileRecord rec;
        if (::fstat(fd->cr_fd, &rec.st) != 0) return Error::from_errno(where + ": fstat");
        if (std::string why = unsupported_reason(*fd, rec.st); !why.empty())
            return Error(where + ": " + why);
        if (CR_TRY_CTX(holds_locks(fd->pid, fd->fd), where))
            return Error(where + ": file locks are not supported yet");

        // The path is what restore opens: it must lead to this very file from cr's root.
        struct stat by_path {};
        if (::stat(link.c_str(), &by_path) != 0) return Error::from_errno(where + ": stat");
        if (by_path.st_dev != rec.st.st_dev || by_path.st_ino != rec.st.st_ino)
            return Error(
                where +
                ": the path leads to another file in cr's view (another mount namespace, or "
                "something mounted over it)");

        rec.object_id = fd->object_id;
        rec.path = std::move(link);
        rec.flags = fd->flags;
        rec.pos = fd->pos;
        ctx.debug(strf("%s: %s, flags 0%o, pos %llu", where.c_str(), type_name(rec.st.st_mode),
                       rec.flags, static_cast<unsigned long long>(rec.pos)));
        m_files.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::OpenFile>> files;
        for (const FileRecord& f : m_files) {
            FileIdentity id = identity_of(f.st);
            files.push_back(fb::CreateOpenFileDirect(
                fbb, f.object_id, f.path.c_str(), f.flags, f.pos, id.mode, id.size, id.mtime_ns,
                static_cast<uint64_t>(f.st.st_dev), static_cast<uint64_t>(f.st.st_ino), id.rdev));
        }
        std::vector<flatbuffers::Offset<fb::TaskFs>> tasks;
        for (const FsRecord& t : m_tasks)
            tasks.push_back(
                fb::CreateTaskFsDirect(fbb, t.pid, t.cwd.c_str(), t.root.c_str(), t.umask));
        fbb.Finish(fb::CreateFilesImageDirect(fbb, &files, &tasks), fb::FilesImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "files.cr", fbb));
        ctx.debug(strf("files.cr: %zu files, %zu tasks", m_files.size(), m_tasks.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::FilesImage* image = CR_TRY(cr::sdk::read_section_as<fb::FilesImage>(
            ctx, "files.cr", "CRFL", &fb::VerifyFilesImageBuffer));
        bool skip_check = ctx.flag("skip-file-check");
        if (image->files())
            for (const fb::OpenFile* f : *image->files()) CR_TRY(reopen(ctx, *f, skip_check));
        if (image->tasks()) {
            for (const fb::TaskFs* t : *image->tasks()) {
                if (!t->cwd() || !t->root())
                    return Error(strf("files.cr: pid %d: no cwd or root", t->pid()));
                m_restore[t->pid()] =
                    FsRecord{t->pid(), t->cwd()->str(), t->root()->str(), t->umask()};
            }
        }
        return {};
    }

    // Runs in the new process: plain system calls only.
    Result<void> restore_stub(cr::sdk::Context&, pid_t pid) {
        auto it = m_restore.find(pid);
        if (it == m_restore.end())
            return Error(strf("files.cr: no cwd and root recorded for pid %d", pid));
        const FsRecord& rec = it->second;
        // chdir first: both paths are as cr sees them, from its own root.
        if (::chdir(rec.cwd.c_str()) != 0)
            return Error::from_errno(strf("pid %d: chdir", pid), rec.cwd);
        if (rec.root != "/" && ::chroot(rec.root.c_str()) != 0)
            return Error::from_errno(strf("pid %d: chroot", pid), rec.root);
        ::umask(static_cast<mode_t>(rec.umask));
        return {};
    }

private:
    static Result<void> reopen(cr::sdk::Context& ctx, const fb::OpenFile& f, bool skip_check) {
        if (!f.path())
            return Error(strf("files.cr: object %llu has no path",
                              static_cast<unsigned long long>(f.object_id())));
        std::string path = f.path()->str();
        UniqueFd fd(::open(path.c_str(), reopen_flags(f.flags(), f.mode())));
        if (!fd) return Error::from_errno("files.cr: open", path);

        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return Error::from_errno("files.cr: fstat", path);
        FileIdentity saved{f.mode(), f.size(), f.mtime_ns(), f.rdev()};
        CR_TRY(check_unchanged(path, f.flags(), saved, identity_of(st), skip_check));

        if (restores_position(f.flags(), f.mode()) && f.pos() != 0) {
            off_t pos = static_cast<off_t>(f.pos());
            if (::lseek(fd.get(), pos, SEEK_SET) != pos)
                return Error::from_errno(strf("files.cr: %s: lseek to %llu", path.c_str(),
                                              static_cast<unsigned long long>(f.pos())));
        }
        int raw = fd.get();
        CR_TRY(ctx.set_object_fd(f.object_id(), raw));
        fd.release();  // the core owns it now
        ctx.debug(strf("object %llu: %s reopened, flags 0%o, pos %llu",
                       static_cast<unsigned long long>(f.object_id()), path.c_str(), f.flags(),
                       static_cast<unsigned long long>(f.pos())));
        return {};
    }

    std::vector<FileRecord> m_files;
    std::vector<FsRecord> m_tasks;
    std::map<pid_t, FsRecord> m_restore;
};

}  // namespace

CR_DECLARE_HANDLER(FilesRegularHandler)
