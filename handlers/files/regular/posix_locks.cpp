#include "posix_locks.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include <cr/sdk/log.hpp>
#include <memory>

#include "proc_text.hpp"

namespace cr::files_regular {

namespace {

struct OpenFd {
    int fd = 0;
    uint64_t dev = 0;
    uint64_t ino = 0;
    uint32_t flags = 0;
};

Result<std::vector<OpenFd>> open_fds(pid_t pid) {
    std::vector<OpenFd> out;
    std::string dir = strf("/proc/%d/fd", pid);
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
    if (!d) return Error::from_errno("opendir", dir);
    while (const dirent* e = ::readdir(d.get())) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int fd = std::atoi(e->d_name);
        struct stat st {};
        if (::stat(strf("%s/%d", dir.c_str(), fd).c_str(), &st) != 0)
            continue;  // not a file any more
        std::string where = strf("/proc/%d/fdinfo/%d", pid, fd);
        uint32_t flags = CR_TRY_CTX(fdinfo_flags(CR_TRY(read_text(where))), where);
        out.push_back(
            {fd, static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), flags});
    }
    return out;
}

bool can_take(uint32_t flags, bool write) {
    if (flags & O_PATH) return false;
    uint32_t acc = flags & O_ACCMODE;
    return write ? acc != O_RDONLY : acc != O_WRONLY;
}

}  // namespace

std::string describe_range(bool write, uint64_t start, uint64_t length) {
    if (length == 0)
        return strf("%s lock on bytes %llu to the end", write ? "write" : "read",
                    static_cast<unsigned long long>(start));
    return strf("%s lock on bytes %llu-%llu", write ? "write" : "read",
                static_cast<unsigned long long>(start),
                static_cast<unsigned long long>(start + length - 1));
}

Result<std::vector<PosixLock>> posix_locks_of(pid_t pid, const std::vector<LockLine>& all) {
    std::vector<PosixLock> out;
    std::vector<OpenFd> fds;
    bool listed = false;
    for (const LockLine& l : all) {
        if (l.cls != "POSIX" || l.pid != pid) continue;
        if (!listed) {
            fds = CR_TRY(open_fds(pid));
            listed = true;
        }
        bool write = l.type == "WRITE";
        const OpenFd* via = nullptr;
        for (const OpenFd& f : fds)
            if (f.dev == l.dev && f.ino == l.ino && can_take(f.flags, write)) {
                via = &f;
                break;
            }
        if (!via)
            return Error(
                strf("pid %d: POSIX %s of inode %llu on device %u:%u: no fd of the task can take "
                     "it again (the fds it was taken through are closed)",
                     pid, describe_range(write, l.start, l.length).c_str(),
                     static_cast<unsigned long long>(l.ino), major(l.dev), minor(l.dev)));
        out.push_back({pid, via->fd, write, l.start, l.length});
    }
    return out;
}

Result<void> retake_posix_lock(sdk::Context& ctx, const PosixLock& lock) {
    struct flock fl {};
    fl.l_type = lock.write ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(lock.start);
    fl.l_len = static_cast<off_t>(lock.length);
    auto scratch = CR_TRY(ctx.scratch(lock.pid));
    CR_TRY(ctx.mem_write(lock.pid, scratch.addr, &fl, sizeof fl));
    int64_t r = CR_TRY(ctx.remote_raw(lock.pid, SYS_fcntl,
                                      {static_cast<uint64_t>(lock.fd), F_SETLK, scratch.addr}));
    std::string what = strf("pid %d fd %d: POSIX %s", lock.pid, lock.fd,
                            describe_range(lock.write, lock.start, lock.length).c_str());
    if (r == -EAGAIN || r == -EACCES)
        return Error(what + ": another process holds a conflicting lock now");
    if (r < 0) return Error::from_errno(what + ": fcntl F_SETLK", {}, static_cast<int>(-r));
    return {};
}

}  // namespace cr::files_regular
