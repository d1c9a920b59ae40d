#include "orchestrator/fds.hpp"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>

namespace cr::fw {

namespace {

std::string socket_kind(int fd, std::string& description) {
    int domain = 0;
    int type = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return "fd:socket";
    len = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    const char* t = type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram"
                  : type == SOCK_SEQPACKET ? "seqpacket" : type == SOCK_RAW ? "raw" : "other";
    const char* d = domain == AF_UNIX ? "unix" : domain == AF_INET ? "inet" : domain == AF_INET6 ? "inet6"
                  : domain == AF_NETLINK ? "netlink" : domain == AF_PACKET ? "packet" : "other";
    description = strf("%s %s socket", d, t);
    return strf("fd:socket:%s-%s", d, t);
}

}  // namespace

std::pair<std::string, std::string> classify_fd(const std::string& link, int fd) {
    std::string description;
    if (link.rfind("pipe:", 0) == 0) return {"fd:pipe", "pipe"};
    if (link.rfind("socket:", 0) == 0) {
        std::string kind = socket_kind(fd, description);
        return {kind, description.empty() ? "socket" : description};
    }
    if (link.rfind("anon_inode:", 0) == 0) {
        std::string name = link.substr(11);
        if (!name.empty() && name.front() == '[') name = name.substr(1, name.size() - 2);
        if (name == "eventfd" || name == "signalfd" || name == "timerfd" || name == "eventpoll" ||
            name == "inotify" || name == "pidfd" || name == "userfaultfd" || name == "io_uring" ||
            name == "fanotify" || name == "bpf-map" || name == "bpf-prog" || name == "perf_event")
            return {"fd:" + name, name};
        return {"fd:anon:" + name, "anonymous inode " + name};
    }
    if (link.rfind("/memfd:", 0) == 0) return {"fd:memfd", "memfd"};
    struct stat st{};
    if (fstat(fd, &st) != 0) return {"fd:unknown", "unknown file"};
    switch (st.st_mode & S_IFMT) {
        case S_IFREG: return {"fd:file", "regular file"};
        case S_IFDIR: return {"fd:dir", "directory"};
        case S_IFCHR: return {"fd:chr", "character device"};
        case S_IFBLK: return {"fd:blk", "block device"};
        case S_IFIFO: return {"fd:fifo", "fifo"};
        case S_IFSOCK: return {"fd:socket", "socket"};
        default: return {"fd:unknown", "unknown file"};
    }
}

Result<FdTable> collect_fds(const std::vector<TaskRecord>& tasks, Log& log) {
    FdTable table;
    std::multimap<std::string, size_t> by_link;  // link -> object index
    for (const TaskRecord& t : tasks) {
        UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, t.pid, 0)));
        if (!pidfd) return Error::from_errno(strf("pid %d: pidfd_open", t.pid));
        auto fds = CR_TRY(proc::list_fds(t.pid));
        for (int fd : fds) {
            std::string where = strf("pid %d fd %d", t.pid, fd);
            auto link = CR_TRY_CTX(proc::read_link(strf("/proc/%d/fd/%d", t.pid, fd)), where);
            auto info = CR_TRY_CTX(proc::read_fdinfo(t.pid, fd), where);
            UniqueFd dup(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
            if (!dup) return Error::from_errno(where + ": pidfd_getfd");
            FdEntry entry{t.pid, fd, 0, (info.flags & O_CLOEXEC) != 0};
            // Same open file description as one seen before? (dup, fork, SCM_RIGHTS)
            bool found = false;
            auto range = by_link.equal_range(link);
            for (auto it = range.first; it != range.second && !found; ++it) {
                const FdObject& o = table.objects[it->second];
                if (::syscall(SYS_kcmp, o.pid, t.pid, KCMP_FILE, o.fd, fd) == 0) {
                    entry.object_id = o.id;
                    found = true;
                }
            }
            if (!found) {
                FdObject o;
                o.id = table.objects.size() + 1;
                o.pid = t.pid;
                o.fd = fd;
                auto [kind, description] = classify_fd(link, dup.get());
                o.kind = kind;
                o.description = description;
                o.link = link;
                o.info = std::move(info);
                o.cr_fd = std::move(dup);
                entry.object_id = o.id;
                by_link.emplace(link, table.objects.size());
                log.debug("fds", strf("%s: %s (%s), object %lu", where.c_str(), o.description.c_str(),
                                      link.c_str(), o.id));
                table.objects.push_back(std::move(o));
            }
            table.entries.push_back(entry);
        }
    }
    return table;
}

Result<std::pair<uint64_t, bool>> adopt_fd(FdTable& table, int fd, Log& log) {
    pid_t self = ::getpid();
    for (const FdObject& o : table.objects)
        if (::syscall(SYS_kcmp, self, o.pid, KCMP_FILE, fd, o.fd) == 0) return std::pair{o.id, false};
    UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!dup) return Error::from_errno("fcntl(F_DUPFD_CLOEXEC) of a file held by no task");
    FdObject o;
    o.link = CR_TRY(proc::read_link(strf("/proc/self/fd/%d", dup.get())));
    o.info = CR_TRY(proc::read_fdinfo(self, dup.get()));
    auto [kind, description] = classify_fd(o.link, dup.get());
    o.id = table.objects.size() + 1;
    o.pid = self;
    o.fd = dup.get();
    o.kind = kind;
    o.description = description;
    o.cr_fd = std::move(dup);
    o.adopted = true;
    log.debug("fds", strf("held by no task: %s (%s), object %lu", o.description.c_str(), o.link.c_str(), o.id));
    table.objects.push_back(std::move(o));
    return std::pair{table.objects.back().id, true};
}

}  // namespace cr::fw
