// cr check: probe each kernel feature cr relies on, on this machine, right now.
#include "commands.hpp"
#include "options.hpp"

#include <cr/sdk/kernel.h>
#include <cr/sdk/log.hpp>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

namespace cr::cli {

namespace {

struct Feature {
    const char* name;
    const char* used_for;
    const char* if_missing;
    bool essential;
    std::function<bool()> probe;
};

bool has_cap(cap_value_t cap) {
    cap_t caps = cap_get_proc();
    if (!caps) return false;
    cap_flag_value_t v = CAP_CLEAR;
    cap_get_flag(caps, cap, CAP_EFFECTIVE, &v);
    cap_free(caps);
    return v == CAP_SET;
}

// Runs fn against a stopped, seized child; kills it afterwards.
bool with_traced_child(const std::function<bool(pid_t)>& fn) {
    pid_t child = fork();
    if (child < 0) return false;
    if (child == 0) {
        for (;;) pause();
    }
    bool ok = ptrace(PTRACE_SEIZE, child, nullptr, nullptr) == 0 &&
              ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) == 0;
    int status = 0;
    if (ok) ok = waitpid(child, &status, __WALL) == child && WIFSTOPPED(status);
    if (ok) ok = fn(child);
    kill(child, SIGKILL);
    waitpid(child, &status, __WALL);
    waitpid(child, &status, 0);
    return ok;
}

// A child under an allow-all seccomp filter, seized the way cr seizes every task (with
// PTRACE_O_SUSPEND_SECCOMP) and stopped; fn runs against it, then it is killed.
bool with_filtered_child(const std::function<bool(pid_t)>& fn) {
    int ready[2];
    if (pipe(ready) != 0) return false;
    pid_t child = fork();
    if (child < 0) return false;
    if (child == 0) {
        sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        sock_fprog prog = {1, &allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
            _exit(1);
        (void)!write(ready[1], "", 1);
        for (;;) pause();
    }
    close(ready[1]);
    char byte;
    bool filtered = read(ready[0], &byte, 1) == 1;
    close(ready[0]);
    bool ok = filtered && ptrace(PTRACE_SEIZE, child, nullptr, reinterpret_cast<void*>(PTRACE_O_SUSPEND_SECCOMP)) == 0 &&
              ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) == 0;
    int status = 0;
    if (ok) ok = waitpid(child, &status, __WALL) == child && WIFSTOPPED(status);
    if (ok) ok = fn(child);
    kill(child, SIGKILL);
    waitpid(child, &status, __WALL);
    waitpid(child, &status, 0);
    return ok;
}

bool probe_pidfd() {
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (pidfd < 0) return false;
    int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, 0, 0));
    close(pidfd);
    if (fd < 0) return false;
    close(fd);
    return true;
}

bool probe_uffd_wp_async() {
    int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (fd < 0) return false;
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_WP_ASYNC;
    bool ok = ioctl(fd, UFFDIO_API, &api) == 0;
    close(fd);
    return ok;
}

bool probe_pagemap_scan() {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    static char page[4096] __attribute__((aligned(4096)));
    page[0] = 1;
    page_region regions[4];
    pm_scan_arg arg{};
    arg.size = sizeof arg;
    arg.start = reinterpret_cast<uint64_t>(page);
    arg.end = arg.start + sizeof page;
    arg.vec = reinterpret_cast<uint64_t>(regions);
    arg.vec_len = 4;
    arg.category_anyof_mask = PAGE_IS_PRESENT;
    arg.return_mask = PAGE_IS_PRESENT;
    bool ok = ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
    close(fd);
    return ok;
}

// A dump of AF_UNIX sockets through NETLINK_SOCK_DIAG that answers.
bool probe_unix_diag() {
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return false;
    struct {
        nlmsghdr nlh;
        unix_diag_req req;
    } rq{};
    rq.nlh.nlmsg_len = sizeof rq;
    rq.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    rq.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    rq.req.sdiag_family = AF_UNIX;
    rq.req.udiag_states = ~0u;
    rq.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS;
    char buf[8192];
    bool ok = send(nl, &rq, sizeof rq, 0) == static_cast<ssize_t>(sizeof rq) && recv(nl, buf, sizeof buf, 0) > 0 &&
              reinterpret_cast<nlmsghdr*>(buf)->nlmsg_type != NLMSG_ERROR;
    close(nl);
    return ok;
}

// MSG_PEEK from an offset (SO_PEEK_OFF) on a unix stream socket.
bool probe_unix_peek_off() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    int off = 1;
    char c = 0;
    bool ok = send(sv[0], "ab", 2, 0) == 2 && setsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) == 0 &&
              recv(sv[1], &c, 1, MSG_PEEK) == 1 && c == 'b';
    close(sv[0]);
    close(sv[1]);
    return ok;
}

bool probe_soft_dirty() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    static_cast<char*>(p)[0] = 1;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint64_t entry = 0;
    bool ok = fd >= 0 && pread(fd, &entry, sizeof entry, static_cast<off_t>(reinterpret_cast<uint64_t>(p) / 4096 * 8)) == 8;
    if (fd >= 0) close(fd);
    munmap(p, 4096);
    return ok && (entry >> 55 & 1);
}

const Feature k_features[] = {
    {"ptrace seize/interrupt", "freezing the tree without signals", "dump and restore", true,
     [] { return with_traced_child([](pid_t) { return true; }); }},
    {"pidfd_open/pidfd_getfd", "pulling a task's open files into cr", "dump of any open file", true, probe_pidfd},
    {"kcmp", "finding fds that share one open file description", "dump of shared files", true,
     [] { return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 0, 0) == 0; }},
    {"clone3 with set_tid", "restoring tasks with their original pids", "restore", true,
     [] { return syscall(SYS_clone3, nullptr, 0) < 0 && errno != ENOSYS; }},
    {"PR_SET_MM_MAP", "restoring mm fields, command line and /proc/PID/exe", "restore", true,
     [] {
         unsigned int size = 0;
         return prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) == 0 && size > 0;
     }},
    {"PTRACE_GET_RSEQ_CONFIGURATION", "saving and restoring rseq registrations", "dump of rseq users (every glibc program)", true,
     [] {
         return with_traced_child([](pid_t c) {
             cr_rseq_configuration conf{};
             return ptrace(static_cast<__ptrace_request>(CR_PTRACE_GET_RSEQ_CONFIGURATION), c,
                           reinterpret_cast<void*>(sizeof conf), &conf) > 0;
         });
     }},
    {"vdso", "running remote system calls in a dumped task", "dump", true,
     [] { return getauxval(AT_SYSINFO_EHDR) != 0; }},
    {"CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE", "set_tid, /proc/PID/exe and mm fields", "restore", true,
     [] { return has_cap(CAP_SYS_ADMIN) || has_cap(static_cast<cap_value_t>(40)); }},
    {"PTRACE_O_SUSPEND_SECCOMP", "remote system calls in tasks under seccomp", "dump and restore", true,
     [] { return with_filtered_child([](pid_t) { return true; }); }},
    {"PTRACE_SECCOMP_GET_FILTER", "saving seccomp filters", "dump of tasks with seccomp filters", false,
     [] {
         return with_filtered_child([](pid_t c) {
             return ptrace(PTRACE_SECCOMP_GET_FILTER, c, reinterpret_cast<void*>(0L), nullptr) == 1;
         });
     }},
    {"PR_TIMER_CREATE_RESTORE_IDS", "POSIX timers with their original ids", "restore of POSIX timers", false,
     [] { return prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0) >= 0; }},
    {"userfaultfd WP_ASYNC", "dirty tracking for incremental pre-dump", "pre-dump", false, probe_uffd_wp_async},
    {"PAGEMAP_SCAN", "finding written pages quickly", "pre-dump", false, probe_pagemap_scan},
    {"soft-dirty bits", "another dirty tracker (cr does not need it)", "nothing: cr uses PAGEMAP_SCAN", false, probe_soft_dirty},
    {"CAP_SYS_RESOURCE", "raising rlimits above the hard limit", "restore of such limits (a clear error)", false,
     [] { return has_cap(CAP_SYS_RESOURCE); }},
    {"time namespaces", "keeping monotonic clocks across hosts", "restore of time namespaces", false,
     [] { return access("/proc/self/ns/time", F_OK) == 0; }},
    {"sock_diag for unix sockets", "finding unix sockets' peers and pending connections", "dump of unix sockets", false,
     probe_unix_diag},
    {"SO_PEEK_OFF on unix sockets", "reading socket queues without taking them", "dump of unix sockets with queued data",
     false, probe_unix_peek_off},
};

}  // namespace

int check_main(int argc, char** argv) {
    po::options_description desc("options");
    desc.add_options()("help,h", "show this help");
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm, "usage: cr check\n\nProbes each kernel feature cr uses and says what a missing one disables.")) return 0;
    bool essential_missing = false;
    for (const Feature& f : k_features) {
        bool ok = f.probe();
        if (ok) {
            std::printf("ok       %-40s %s\n", f.name, f.used_for);
        } else {
            std::printf("missing  %-40s disables: %s\n", f.name, f.if_missing);
            essential_missing |= f.essential;
        }
    }
    std::printf(essential_missing ? "cr cannot work fully on this machine\n" : "cr can dump and restore on this machine\n");
    return essential_missing ? 1 : 0;
}

}  // namespace cr::cli
