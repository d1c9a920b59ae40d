// cr.files.regular: open regular files, directories and character devices, reopened by path at
// restore; files deleted while open, whose contents travel in the image; flock, OFD and POSIX
// locks; and each task's cwd, root and umask.
#include <fcntl.h>
#include <files_generated.h>
#include <linux/kcmp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "file_contents.hpp"
#include "file_rules.hpp"
#include "lock_rules.hpp"
#include "posix_locks.hpp"
#include "proc_text.hpp"

namespace {

namespace fb = cr::image::v1;
namespace contents = cr::file_contents;
using cr::Error;
using cr::Result;
using cr::strf;
using cr::UniqueFd;
using namespace cr::files_regular;
using InodeKey = std::pair<uint64_t, uint64_t>;  // (st_dev, st_ino)

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

struct DescLock {
    fb::LockKind kind = fb::LockKind::Flock;
    bool write = false;
    uint64_t start = 0;
    uint64_t length = 0;
};

struct FileRecord {
    uint64_t object_id = 0;
    std::string path;
    uint32_t flags = 0;
    uint64_t pos = 0;
    struct stat st {};
    pid_t pid = 0;
    int fd = 0;
    bool deleted = false;
    std::vector<DescLock> locks;
};

struct DeletedRecord {
    std::string path;
    struct stat st {};
    std::string image;
    std::vector<contents::Extent> extents;
};

struct FsRecord {
    pid_t pid = 0;
    std::string cwd;
    std::string root;
    uint32_t umask = 0;
};

// Why this description cannot be saved, or "" when it can.
std::string unsupported_reason(const cr_fd_info& fd, const struct stat& st, bool deleted) {
    std::string_view link = fd.link ? fd.link : "";
    if (deleted && !S_ISREG(st.st_mode))
        return strf("a deleted %s is not supported yet", type_name(st.st_mode));
    if (!deleted && is_deleted_link(link))
        return strf(
            "unlinked at this path but still linked elsewhere (%lu links), which cr cannot find: "
            "not "
            "supported",
            static_cast<unsigned long>(st.st_nlink));
    if (!link.starts_with("/")) return "not reachable by a path";
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISCHR(st.st_mode))
        return strf("%s not supported by cr.files.regular", type_name(st.st_mode));
    // O_PATH opens no device, so any device node reopens the same way.
    if (S_ISCHR(st.st_mode) && !(fd.flags & O_PATH) && !reopenable_chr(st.st_rdev))
        return strf(
            "character device %u:%u is not supported yet (reopening it would not give the same "
            "state)",
            major(st.st_rdev), minor(st.st_rdev));
    return {};
}

// flock and OFD locks belong to the open file description; fdinfo lists them. POSIX locks
// there are the first holder's, and are saved per task instead.
Result<std::vector<DescLock>> description_locks(pid_t pid, int fd) {
    std::string where = strf("/proc/%d/fdinfo/%d", pid, fd);
    std::string text = CR_TRY(read_text(where));
    std::vector<DescLock> out;
    for (const LockLine& l : CR_TRY_CTX(parse_locks(text), where)) {
        if (l.cls == "POSIX") continue;
        if (l.cls != "FLOCK" && l.cls != "OFDLCK")
            return Error(strf("a file lease (%s %s %s) is not supported yet", l.cls.c_str(),
                              l.mode.c_str(), l.type.c_str()));
        out.push_back({l.cls == "FLOCK" ? fb::LockKind::Flock : fb::LockKind::Ofd,
                       l.type == "WRITE", l.start, l.length});
    }
    return out;
}

Result<void> take_lock(int fd, const fb::FileLock& l) {
    if (l.kind() == fb::LockKind::Flock) {
        if (::flock(fd, (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return {};
        if (errno == EWOULDBLOCK) return Error("another process holds a conflicting flock now");
        return Error::from_errno("flock");
    }
    if (l.kind() != fb::LockKind::Ofd) return Error("not a lock of an open file description");
    struct flock fl {};
    fl.l_type = l.write() ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(l.start());
    fl.l_len = static_cast<off_t>(l.length());
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return {};
    if (errno == EAGAIN || errno == EACCES)
        return Error("another process holds a conflicting lock now");
    return Error::from_errno("fcntl F_OFD_SETLK");
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
        "regular files (also deleted ones), directories, character devices, file locks, cwd, root "
        "and umask";
    static constexpr const char* k_claims[] = {"fd:file", "fd:dir", "fd:chr", "task:fs", nullptr};
    // POSIX locks are taken after the address space is in place: the memory handler opens and
    // closes mapped files inside the task, and any close drops the task's locks on that file.
    static constexpr const char* k_depends[] = {"cr.memory.vma", nullptr};
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

        if (!m_locks_read) {
            m_proc_locks = CR_TRY_CTX(parse_locks(CR_TRY(read_text("/proc/locks"))), "/proc/locks");
            m_locks_read = true;
        }
        for (PosixLock& l : CR_TRY(posix_locks_of(pid, m_proc_locks))) {
            ctx.debug(strf("pid %d fd %d: POSIX %s", pid, l.fd,
                           describe_range(l.write, l.start, l.length).c_str()));
            m_posix.push_back(l);
        }
        return {};
    }

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string link = fd->link ? fd->link : "";
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, link.c_str());
        FileRecord rec;
        if (::fstat(fd->cr_fd, &rec.st) != 0) return Error::from_errno(where + ": fstat");
        rec.deleted = is_deleted_link(link) && rec.st.st_nlink == 0;
        if (std::string why = unsupported_reason(*fd, rec.st, rec.deleted); !why.empty())
            return Error(where + ": " + why);
        rec.locks = CR_TRY_CTX(description_locks(fd->pid, fd->fd), where);
        // After the locks: a lease sets O_ASYNC too, and is the better reason to give.
        if (fd->flags & O_ASYNC)
            return Error(where + ": signal-driven I/O (O_ASYNC) is not supported yet");

        if (rec.deleted) {
            link.resize(link.size() - k_deleted_suffix.size());
            CR_TRY_CTX(save_deleted(ctx, fd->cr_fd, link, rec.st), where);
        } else {
            // The path is what restore opens: it must lead to this very file from cr's root.
            struct stat by_path {};
            if (::stat(link.c_str(), &by_path) != 0) return Error::from_errno(where + ": stat");
            if (by_path.st_dev != rec.st.st_dev || by_path.st_ino != rec.st.st_ino)
                return Error(
                    where +
                    ": the path leads to another file in cr's view (another mount namespace, or "
                    "something mounted over it)");
        }

        rec.object_id = fd->object_id;
        rec.path = std::move(link);
        rec.flags = fd->flags;
        rec.pos = fd->pos;
        rec.pid = fd->pid;
        rec.fd = fd->fd;
        ctx.debug(strf("%s: %s%s, flags 0%o, pos %llu, %zu locks", where.c_str(),
                       rec.deleted ? "deleted " : "", type_name(rec.st.st_mode), rec.flags,
                       ull(rec.pos), rec.locks.size()));
        m_files.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::OpenFile>> files;
        for (const FileRecord& f : m_files) {
            FileIdentity id = identity_of(f.st);
            std::vector<flatbuffers::Offset<fb::FileLock>> locks;
            for (const DescLock& l : f.locks)
                locks.push_back(fb::CreateFileLock(fbb, l.kind, l.write, l.start, l.length));
            files.push_back(fb::CreateOpenFileDirect(
                fbb, f.object_id, f.path.c_str(), f.flags, f.pos, id.mode, id.size, id.mtime_ns,
                static_cast<uint64_t>(f.st.st_dev), static_cast<uint64_t>(f.st.st_ino), id.rdev,
                f.pid, f.fd, f.deleted, &locks));
        }
        std::vector<flatbuffers::Offset<fb::TaskFs>> tasks;
        for (const FsRecord& t : m_tasks)
            tasks.push_back(
                fb::CreateTaskFsDirect(fbb, t.pid, t.cwd.c_str(), t.root.c_str(), t.umask));
        std::vector<flatbuffers::Offset<fb::DeletedFile>> deleted;
        for (const auto& [key, d] : m_deleted) {
            std::vector<fb::Extent> extents;
            for (const auto& e : d.extents) extents.emplace_back(e.offset, e.length);
            deleted.push_back(fb::CreateDeletedFileDirect(
                fbb, key.first, key.second, d.path.c_str(), d.st.st_mode, d.st.st_uid, d.st.st_gid,
                static_cast<uint64_t>(d.st.st_size), d.image.c_str(), &extents));
        }
        std::vector<flatbuffers::Offset<fb::FileLock>> posix;
        for (const PosixLock& l : m_posix)
            posix.push_back(fb::CreateFileLock(fbb, fb::LockKind::Posix, l.write, l.start, l.length,
                                               l.pid, l.fd));
        fbb.Finish(fb::CreateFilesImageDirect(fbb, &files, &tasks, &deleted, &posix),
                   fb::FilesImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "files.cr", fbb));
        ctx.debug(strf("files.cr: %zu files (%zu deleted), %zu tasks, %zu POSIX locks",
                       m_files.size(), m_deleted.size(), m_tasks.size(), m_posix.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::FilesImage* image = CR_TRY(cr::sdk::read_section_as<fb::FilesImage>(
            ctx, "files.cr", "CRFL", &fb::VerifyFilesImageBuffer));
        bool skip_check = ctx.flag("skip-file-check");
        std::map<InodeKey, UniqueFd> remade;
        if (image->deleted())
            for (const fb::DeletedFile* d : *image->deleted())
                remade[{d->dev(), d->ino()}] = CR_TRY(remake_deleted(ctx, *d));
        if (image->files()) {
            for (const fb::OpenFile* f : *image->files()) {
                std::string where = strf("pid %d fd %d", f->pid(), f->fd());
                UniqueFd fd;
                if (f->deleted()) {
                    auto it = remade.find({f->dev(), f->ino()});
                    if (it == remade.end())
                        return Error(where + ": its deleted file is not in the image");
                    fd = CR_TRY_CTX(reopen_deleted(*f, it->second.get()), where);
                } else {
                    fd = CR_TRY_CTX(reopen(*f, skip_check), where);
                }
                CR_TRY_CTX(restore_state(*f, fd.get()), where);
                int raw = fd.get();
                CR_TRY(ctx.set_object_fd(f->object_id(), raw));
                fd.release();  // the core owns it now
                ctx.debug(strf("%s: object %llu: %s%s reopened, flags 0%o, pos %llu", where.c_str(),
                               ull(f->object_id()), f->deleted() ? "deleted " : "",
                               f->path()->c_str(), f->flags(), ull(f->pos())));
            }
        }
        if (image->tasks()) {
            for (const fb::TaskFs* t : *image->tasks()) {
                if (!t->cwd() || !t->root())
                    return Error(strf("files.cr: pid %d: no cwd or root", t->pid()));
                m_restore[t->pid()] =
                    FsRecord{t->pid(), t->cwd()->str(), t->root()->str(), t->umask()};
            }
        }
        if (image->posix_locks())
            for (const fb::FileLock* l : *image->posix_locks())
                m_posix.push_back({l->pid(), l->fd(), l->write(), l->start(), l->length()});
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

    // POSIX locks are the task's own: it takes them itself, through its restored fds.
    Result<void> restore_task(cr::sdk::Context& ctx, pid_t pid) {
        for (const PosixLock& l : m_posix) {
            if (l.pid != pid) continue;
            CR_TRY_CTX(retake_posix_lock(ctx, l), "files.cr");
            ctx.debug(strf("pid %d fd %d: POSIX %s taken", pid, l.fd,
                           describe_range(l.write, l.start, l.length).c_str()));
        }
        return {};
    }

private:
    Result<void> save_deleted(cr::sdk::Context& ctx, int cr_fd, const std::string& path,
                              const struct stat& st) {
        InodeKey key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
        if (m_deleted.count(key)) return {};  // another description of the same file
        DeletedRecord d;
        d.path = path;
        d.st = st;
        d.image = strf("deleted-%llu-%llu.img", ull(key.first), ull(key.second));
        UniqueFd out = CR_TRY(ctx.open_image_file(d.image, true));
        d.extents = CR_TRY_CTX(contents::save(cr_fd, static_cast<uint64_t>(st.st_size), out.get()),
                               "contents of the deleted file");
        uint64_t bytes = 0;
        for (const auto& e : d.extents) bytes += e.length;
        ctx.info(strf("deleted file %s: %llu bytes (%llu in data extents) saved to %s",
                      path.c_str(), ull(static_cast<uint64_t>(st.st_size)), ull(bytes),
                      d.image.c_str()));
        m_deleted.emplace(key, std::move(d));
        return {};
    }

    static Result<UniqueFd> remake_deleted(cr::sdk::Context& ctx, const fb::DeletedFile& d) {
        if (!d.path() || !d.contents() || !d.extents())
            return Error(strf("files.cr: deleted file %llu is incomplete", ull(d.ino())));
        std::string where = strf("files.cr: deleted file %s", d.path()->c_str());
        UniqueFd image = CR_TRY_CTX(ctx.open_image_file(d.contents()->str(), false), where);
        UniqueFd fd = CR_TRY_CTX(contents::make_unlinked(d.path()->str()), where);
        std::vector<contents::Extent> extents;
        for (const fb::Extent* e : *d.extents()) extents.push_back({e->offset(), e->length()});
        CR_TRY_CTX(contents::fill(fd.get(), image.get(), extents, d.size()), where);
        CR_TRY_CTX(contents::set_owner_mode(fd.get(), d.uid(), d.gid(), d.mode()), where);
        ctx.debug(strf("%s: %llu bytes, remade unlinked", where.c_str(), ull(d.size())));
        return fd;
    }

    // A description of its own on the remade file, with the saved access mode and flags.
    static Result<UniqueFd> reopen_deleted(const fb::OpenFile& f, int remade) {
        std::string self = strf("/proc/self/fd/%d", remade);
        int flags = reopen_flags(f.flags(), f.mode()) & ~O_NOFOLLOW;  // the /proc link is one
        UniqueFd fd(::open(self.c_str(), flags));
        if (!fd)
            return Error::from_errno("reopen of the remade deleted file",
                                     f.path() ? f.path()->str() : "");
        return fd;
    }

    static Result<UniqueFd> reopen(const fb::OpenFile& f, bool skip_check) {
        if (!f.path()) return Error(strf("object %llu has no path", ull(f.object_id())));
        std::string path = f.path()->str();
        UniqueFd fd(::open(path.c_str(), reopen_flags(f.flags(), f.mode())));
        if (!fd && errno == ENOENT)
            return Error(strf("%s no longer exists (it was there at dump time)", path.c_str()));
        if (!fd) return Error::from_errno("open", path);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return Error::from_errno("fstat", path);
        FileIdentity saved{f.mode(), f.size(), f.mtime_ns(), f.rdev(), f.ino()};
        FileIdentity now = identity_of(st);
        if (st.st_dev != f.dev()) now.ino = 0;  // another filesystem: inode numbers say nothing
        CR_TRY(check_unchanged(path, f.flags(), saved, now, skip_check));
        return fd;
    }

    static Result<void> restore_state(const fb::OpenFile& f, int fd) {
        if (restores_position(f.flags(), f.mode()) && f.pos() != 0) {
            off_t pos = static_cast<off_t>(f.pos());
            if (::lseek(fd, pos, SEEK_SET) != pos)
                return Error::from_errno(strf("lseek to %llu", ull(f.pos())));
        }
        if (f.locks())
            for (const fb::FileLock* l : *f.locks())
                CR_TRY_CTX(take_lock(fd, *l),
                           strf("%s %s", l->kind() == fb::LockKind::Flock ? "flock" : "OFD",
                                describe_range(l->write(), l->start(), l->length()).c_str()));
        return {};
    }

    std::vector<FileRecord> m_files;
    std::vector<FsRecord> m_tasks;
    std::map<InodeKey, DeletedRecord> m_deleted;
    std::vector<LockLine> m_proc_locks;
    bool m_locks_read = false;
    std::vector<PosixLock> m_posix;
    std::map<pid_t, FsRecord> m_restore;
};

}  // namespace

CR_DECLARE_HANDLER(FilesRegularHandler)
