#include "tracker.hpp"

#include <cr/sdk/kernel.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace cr::memory {

namespace {

// Trackers sit high in the fd table, out of the way of programs that expect the lowest free
// number from open().
constexpr uint64_t k_task_fd_min = 900;
constexpr uint64_t k_features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
constexpr size_t k_regions = 512;

bool api(int fd) {
    uffdio_api a{};
    a.api = UFFD_API;
    a.features = k_features;
    return ::ioctl(fd, UFFDIO_API, &a) == 0 && (a.features & k_features) == k_features;
}

bool register_wp(int fd, uint64_t start, uint64_t end) {
    uffdio_register r{};
    r.range.start = start;
    r.range.len = end - start;
    r.mode = UFFDIO_REGISTER_MODE_WP;
    return ::ioctl(fd, UFFDIO_REGISTER, &r) == 0;
}

std::string probe() {
    UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
    if (!fd) return strf("userfaultfd: %s", std::strerror(errno));
    if (!api(fd.get())) return "userfaultfd has no asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC)";
    void* page = ::mmap(nullptr, k_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return strf("mmap: %s", std::strerror(errno));
    auto start = reinterpret_cast<uint64_t>(page);
    std::string why;
    UniqueFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!register_wp(fd.get(), start, start + k_page)) {
        why = strf("userfaultfd write-protect registration: %s", std::strerror(errno));
    } else if (!pagemap) {
        why = strf("/proc/self/pagemap: %s", std::strerror(errno));
    } else {
        auto r = written_since(pagemap.get(), start, start + k_page, true);
        if (!r) why = r.error().message();
        else if (!*r) why = "PAGEMAP_SCAN does not see the write-protected page";
    }
    ::munmap(page, k_page);
    return why;
}

}  // namespace

bool Tracker::supported(std::string& why) {
    static std::once_flag once;
    static std::string reason;
    std::call_once(once, [] { reason = probe(); });
    why = reason;
    return reason.empty();
}

Result<Tracker> Tracker::create(const sdk::Context& ctx, pid_t pid) {
    auto u64 = [](long v) { return static_cast<uint64_t>(v); };
    int64_t fd = CR_TRY(ctx.remote(pid, SYS_userfaultfd, "userfaultfd",
                                   {u64(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)}));
    int64_t high = CR_TRY(ctx.remote_raw(pid, SYS_fcntl, {u64(fd), F_DUPFD_CLOEXEC, k_task_fd_min}));
    if (high >= 0) {
        CR_TRY(ctx.remote(pid, SYS_close, "close", {u64(fd)}));
        fd = high;
    }
    auto close_remote = [&] { (void)ctx.remote_raw(pid, SYS_close, {u64(fd)}); };
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    UniqueFd mine(pidfd ? static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), static_cast<int>(fd), 0)) : -1);
    if (!mine) {
        int e = errno;
        close_remote();
        return Error::from_errno(strf("pid %d: pidfd_getfd of its userfaultfd", pid), {}, e);
    }
    struct stat st{};
    if (!api(mine.get()) || ::fstat(mine.get(), &st) != 0) {
        int e = errno;
        close_remote();
        return Error::from_errno(strf("pid %d: userfaultfd UFFDIO_API (WP_ASYNC)", pid), {}, e);
    }
    return Tracker(static_cast<int>(fd), static_cast<uint64_t>(st.st_ino), std::move(mine));
}

std::optional<Tracker> Tracker::find(pid_t pid, int fd, uint64_t ino) {
    if (fd < 0 || ino == 0) return std::nullopt;
    std::vector<int> fds = tracker_fds(pid, {ino});
    if (std::find(fds.begin(), fds.end(), fd) == fds.end()) return std::nullopt;
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    UniqueFd mine(pidfd ? static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)) : -1);
    if (!mine) return std::nullopt;
    return Tracker(fd, ino, std::move(mine));
}

bool Tracker::watch(uint64_t start, uint64_t end) const { return register_wp(m_fd.get(), start, end); }

Result<std::optional<std::vector<Span>>> written_since(int pagemap, uint64_t start, uint64_t end, bool rearm) {
    // category and return mask exactly PAGE_IS_WRITTEN: the kernel's fast path, which also
    // reports (and protects) never-populated pages as written.
    page_region regions[k_regions];
    pm_scan_arg arg{};
    arg.size = sizeof arg;
    arg.flags = PM_SCAN_CHECK_WPASYNC | (rearm ? PM_SCAN_WP_MATCHING : 0);
    arg.start = start;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions);
    arg.vec_len = k_regions;
    arg.category_mask = PAGE_IS_WRITTEN;
    arg.return_mask = PAGE_IS_WRITTEN;
    std::vector<Span> out;
    for (;;) {
        long n = ::ioctl(pagemap, PAGEMAP_SCAN, &arg);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EPERM) return std::optional<std::vector<Span>>();
        if (n < 0) return Error::from_errno(strf("PAGEMAP_SCAN of 0x%lx-0x%lx", start, end));
        for (long i = 0; i < n; ++i) {
            if (!out.empty() && out.back().end == regions[i].start) out.back().end = regions[i].end;
            else out.push_back({regions[i].start, regions[i].end});
        }
        if (arg.walk_end >= end || arg.walk_end <= arg.start) break;
        arg.start = arg.walk_end;
    }
    return std::optional<std::vector<Span>>(std::move(out));
}

std::vector<int> tracker_fds(pid_t pid, const std::vector<uint64_t>& inos) {
    std::vector<int> out;
    std::string dir = strf("/proc/%d/fd", pid);
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        std::string path = dir + "/" + e->d_name;
        char link[64];
        ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = 0;
        if (std::strcmp(link, "anon_inode:[userfaultfd]") != 0) continue;
        struct stat st{};
        if (::stat(path.c_str(), &st) != 0) continue;
        for (uint64_t ino : inos)
            if (static_cast<uint64_t>(st.st_ino) == ino) out.push_back(std::atoi(e->d_name));
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace cr::memory
