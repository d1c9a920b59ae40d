// Pure rules of cr.files.regular (what can be saved, how to reopen, when a file has changed),
// header-only so that unit tests can check them without loading the handler.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cinttypes>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace cr::files_regular {

inline constexpr std::string_view k_deleted_suffix = " (deleted)";

// Kernel values of bits glibc hides or folds into others on x86-64.
inline constexpr uint32_t k_o_largefile = 0100000;
inline constexpr uint32_t k_o_tmpfile_bit = 020000000;

// Open flags that a reopen by path carries over; everything else in fdinfo's flags is either
// per fd (O_CLOEXEC, the core's business) or only meaningful at creation time.
inline constexpr uint32_t k_reopen_kept = O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC |
                                          O_DIRECT | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_PATH |
                                          k_o_largefile;

[[nodiscard]] inline bool is_deleted_link(std::string_view link) {
    return link.size() > k_deleted_suffix.size() && link.ends_with(k_deleted_suffix);
}

// What identifies a file well enough to notice that it changed between dump and restore.
struct FileIdentity {
    uint32_t mode = 0;
    uint64_t size = 0;
    uint64_t mtime_ns = 0;
    uint64_t rdev = 0;
    uint64_t ino = 0;  // 0: unknown, not compared
};

[[nodiscard]] inline uint64_t mtime_ns_of(const struct stat& st) {
    return static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ull +
           static_cast<uint64_t>(st.st_mtim.tv_nsec);
}

[[nodiscard]] inline FileIdentity identity_of(const struct stat& st) {
    return {st.st_mode, static_cast<uint64_t>(st.st_size), mtime_ns_of(st),
            static_cast<uint64_t>(st.st_rdev), static_cast<uint64_t>(st.st_ino)};
}

[[nodiscard]] inline const char* type_name(uint32_t mode) {
    switch (mode & S_IFMT) {
        case S_IFREG:
            return "regular file";
        case S_IFDIR:
            return "directory";
        case S_IFCHR:
            return "character device";
        case S_IFBLK:
            return "block device";
        case S_IFIFO:
            return "fifo";
        case S_IFSOCK:
            return "socket";
        case S_IFLNK:
            return "symlink";
        default:
            return "file of unknown type";
    }
}

// Character devices whose open file description holds nothing but its flags, so that opening
// the same path again gives an equivalent one: memory devices and terminals. Others (ptmx
// opens a new pty, tun/kvm/fuse/gpu devices keep per-open state) need a handler of their own.
[[nodiscard]] inline bool reopenable_chr(uint64_t rdev) {
    unsigned maj = major(rdev);
    unsigned min = minor(rdev);
    if (maj == 1)
        return min == 3 || min == 5 || min == 7 || min == 8 ||
               min == 9;                        // null zero full random urandom
    if (maj == 4) return true;                  // virtual consoles, serial
    if (maj == 5) return min == 0 || min == 1;  // /dev/tty, /dev/console
    return maj >= 136 && maj <= 143;            // pty slaves
}

// Flags to open a saved file description with again.
[[nodiscard]] inline int reopen_flags(uint32_t saved, uint32_t mode) {
    uint32_t f = saved & k_reopen_kept;
    if (S_ISDIR(mode))
        f |= O_DIRECTORY;  // never open a file that took a directory's place
    else
        f &= ~static_cast<uint32_t>(O_DIRECTORY | k_o_tmpfile_bit);
    return static_cast<int>(f) | O_CLOEXEC | O_NOCTTY;
}

// Positions of character devices and O_PATH descriptions mean nothing.
[[nodiscard]] inline bool restores_position(uint32_t flags, uint32_t mode) {
    return (flags & O_PATH) == 0 && (S_ISREG(mode) || S_ISDIR(mode));
}

[[nodiscard]] inline std::string format_mtime(uint64_t ns) {
    return strf("%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

// A description that only appends (a log) never reads nor positions, so the file growing
// after the dump (a --leave-running original writing on) loses it nothing.
[[nodiscard]] inline bool append_only(uint32_t flags) {
    return (flags & O_ACCMODE) == O_WRONLY && (flags & O_APPEND) != 0;
}

// The file found at restore against the one saved at dump. A different type is always an
// error; content changes are errors unless the user asked to skip file checks.
inline Result<void> check_unchanged(const std::string& path, uint32_t flags,
                                    const FileIdentity& saved, const FileIdentity& now,
                                    bool skip_check) {
    if ((saved.mode & S_IFMT) != (now.mode & S_IFMT))
        return Error(strf("files.cr: %s was a %s at dump time and is a %s now", path.c_str(),
                          type_name(saved.mode), type_name(now.mode)));
    if (skip_check || (S_ISREG(saved.mode) && append_only(flags))) return {};
    std::string what;
    bool replaceable = S_ISREG(saved.mode) || S_ISDIR(saved.mode);
    if (replaceable && saved.ino != 0 && now.ino != 0 && saved.ino != now.ino)
        what = strf("inode %" PRIu64 " -> %" PRIu64 ", replaced by another file", saved.ino,
                    now.ino);
    else if (S_ISREG(saved.mode) && saved.size != now.size)
        what = strf("size %" PRIu64 " -> %" PRIu64, saved.size, now.size);
    else if (S_ISREG(saved.mode) && saved.mtime_ns != now.mtime_ns)
        what = "mtime " + format_mtime(saved.mtime_ns) + " -> " + format_mtime(now.mtime_ns);
    else if (S_ISCHR(saved.mode) && saved.rdev != now.rdev)
        what = strf("device %u:%u -> %u:%u", major(saved.rdev), minor(saved.rdev), major(now.rdev),
                    minor(now.rdev));
    if (what.empty()) return {};
    return Error(
        strf("files.cr: %s changed since the dump (%s); use --skip-file-check to restore anyway",
             path.c_str(), what.c_str()));
}

// The "Umask:" line of /proc/PID/status (octal).
inline Result<uint32_t> parse_umask(std::string_view status) {
    constexpr std::string_view key = "Umask:";
    size_t at = 0;
    while (at < status.size()) {
        size_t end = status.find('\n', at);
        if (end == std::string_view::npos) end = status.size();
        std::string_view line = status.substr(at, end - at);
        if (line.starts_with(key)) {
            uint32_t value = 0;
            bool digits = false;
            for (char c : line.substr(key.size())) {
                if (c == ' ' || c == '\t') continue;
                if (c < '0' || c > '7') return Error("Umask: not an octal number");
                value = value * 8 + static_cast<uint32_t>(c - '0');
                digits = true;
            }
            if (!digits || value > 0777) return Error("Umask: not an octal number");
            return value;
        }
        at = end + 1;
    }
    return Error("no Umask: line");
}

}  // namespace cr::files_regular
