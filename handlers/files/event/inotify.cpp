#include "inotify.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cr/sdk/log.hpp>
#include <cstring>
#include <fstream>
#include <sstream>

namespace cr::files_event {

namespace {

std::string dev_name(uint64_t dev) {
    return strf("%u:%u", major(dev), minor(dev));
}

// A mount of the filesystem on device `dev`, from cr's mountinfo: open_by_handle_at needs one.
Result<UniqueFd> mount_of(uint64_t dev) {
    std::ifstream in("/proc/self/mountinfo");
    if (!in) return Error::from_errno("open", "/proc/self/mountinfo");
    std::string line;
    std::string want = dev_name(dev);
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string id, parent, majmin, root, point;
        if (!(words >> id >> parent >> majmin >> root >> point)) continue;
        if (majmin != want) continue;
        UniqueFd fd(::open(point.c_str(),
                           O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // not O_PATH: refused there
        if (fd) return fd;
    }
    return Error(strf("no mount of device %s in cr's mount namespace", want.c_str()));
}

}  // namespace

Result<Watch> locate_watch(const InotifyLine& line) {
    Watch w;
    w.wd = line.wd;
    w.mask = line.mask;
    w.ino = line.ino;
    w.dev =
        makedev(static_cast<unsigned>(line.sdev >> 20), static_cast<unsigned>(line.sdev & 0xfffff));
    std::string what = strf("watch %d on inode %llu of device %s", line.wd,
                            static_cast<unsigned long long>(line.ino), dev_name(w.dev).c_str());
    if (line.ignored_mask != 0) return Error(what + ": an ignored mask is not supported");
    if (line.handle.empty())
        return Error(what + ": its filesystem gives no file handle, so cr cannot find its path");
    UniqueFd mount = CR_TRY_CTX(mount_of(w.dev), what);
    std::vector<uint8_t> buf(sizeof(file_handle) + line.handle.size());
    auto* fh = reinterpret_cast<file_handle*>(buf.data());
    fh->handle_bytes = static_cast<unsigned>(line.handle.size());
    fh->handle_type = line.handle_type;
    std::memcpy(fh->f_handle, line.handle.data(), line.handle.size());
    UniqueFd file(::open_by_handle_at(mount.get(), fh, O_PATH | O_CLOEXEC));
    if (!file) return Error::from_errno(what + ": open_by_handle_at");
    char path[4096];
    ssize_t n = ::readlink(strf("/proc/self/fd/%d", file.get()).c_str(), path, sizeof path - 1);
    if (n <= 0) return Error::from_errno(what + ": readlink");
    w.path.assign(path, static_cast<size_t>(n));
    if (w.path.ends_with(" (deleted)"))
        return Error(what + ": the file was deleted: not supported");
    struct stat st {};
    if (w.path.empty() || w.path[0] != '/' || ::stat(w.path.c_str(), &st) != 0 ||
        static_cast<uint64_t>(st.st_dev) != w.dev || static_cast<uint64_t>(st.st_ino) != w.ino)
        return Error(what +
                     strf(": no path in cr's view leads to it (found '%s')", w.path.c_str()));
    return w;
}

Result<size_t> add_watches(int fd, std::vector<Watch> watches, bool check_inodes) {
    std::sort(watches.begin(), watches.end(),
              [](const Watch& a, const Watch& b) { return a.wd < b.wd; });
    // Descriptors are handed out one after the other from the last one given; a gap in the
    // saved ones is made by adding a watch and removing it again.
    bool placeholders = false;
    for (const Watch& w : watches) {
        for (;;) {
            int got = ::inotify_add_watch(fd, w.path.c_str(), w.mask);
            if (got < 0)
                return Error::from_errno(strf("inotify_add_watch for watch %d", w.wd), w.path);
            if (got == w.wd) break;
            if (got > w.wd)
                return Error(strf("inotify_add_watch for watch %d on %s gave watch %d", w.wd,
                                  w.path.c_str(), got));
            if (::inotify_rm_watch(fd, got) != 0) return Error::from_errno("inotify_rm_watch");
            placeholders = true;
        }
        struct stat st {};
        if (check_inodes && ::stat(w.path.c_str(), &st) == 0 &&
            static_cast<uint64_t>(st.st_ino) != w.ino)
            return Error(
                strf("watch %d: %s is another file than at dump time (inode %llu -> %llu); use "
                     "--skip-file-check to restore anyway",
                     w.wd, w.path.c_str(), static_cast<unsigned long long>(w.ino),
                     static_cast<unsigned long long>(st.st_ino)));
    }
    if (!placeholders) return size_t{0};
    // Each removed placeholder queued an IN_IGNORED event nobody expects.
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    size_t drained = 0;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        drained += static_cast<size_t>(n);
    }
    ::fcntl(fd, F_SETFL, flags);
    return drained;
}

}  // namespace cr::files_event
