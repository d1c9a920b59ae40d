// Reading file locks as /proc/locks and the "lock:" lines of fdinfo show them, header-only so
// that unit tests can check the parsing without loading the handler.
//
//   1: POSIX  ADVISORY  WRITE 4242 fe:00:1234 10 29
//   2: FLOCK  ADVISORY  READ  4242 fe:00:1235 0 EOF
//   3: OFDLCK ADVISORY  WRITE -1 fe:00:1236 0 EOF
//   3: -> POSIX  ADVISORY  WRITE 4243 fe:00:1234 10 29     (a waiter, not a holder)
#pragma once

#include <sys/sysmacros.h>
#include <sys/types.h>

#include <charconv>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cr::files_regular {

struct LockLine {
    std::string cls;       // POSIX, FLOCK, OFDLCK, LEASE, DELEG ...
    bool waiting = false;  // "->": blocked, waiting for the lock
    std::string mode;      // ADVISORY, MANDATORY, ACTIVE, BREAKING ...
    std::string type;      // READ, WRITE, UNLCK
    pid_t pid = 0;
    uint64_t dev = 0;  // makedev(major, minor)
    uint64_t ino = 0;
    uint64_t start = 0;
    uint64_t length = 0;  // 0: to the end of the file ("EOF")
};

namespace detail {

inline std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    size_t at = 0;
    while (at < line.size()) {
        while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
        size_t end = at;
        while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
        if (end > at) out.push_back(line.substr(at, end - at));
        at = end;
    }
    return out;
}

template <typename T>
bool number(std::string_view s, T& out, int base = 10) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

}  // namespace detail

// One line of /proc/locks, or the part after "lock:" of an fdinfo line.
inline Result<LockLine> parse_lock_line(std::string_view line) {
    auto w = detail::words(line);
    auto bad = [&] {
        return Error(
            strf("cannot parse lock line '%.*s'", static_cast<int>(line.size()), line.data()));
    };
    size_t i = 0;
    if (i < w.size() && w[i].ends_with(":")) ++i;  // ordinal
    LockLine out;
    if (i < w.size() && w[i] == "->") {
        out.waiting = true;
        ++i;
    }
    if (w.size() < i + 7) return bad();
    out.cls = w[i];
    out.mode = w[i + 1];
    out.type = w[i + 2];
    long long pid = 0;
    if (!detail::number(w[i + 3], pid)) return bad();
    out.pid = static_cast<pid_t>(pid);
    std::string_view dev = w[i + 4];
    size_t c1 = dev.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : dev.find(':', c1 + 1);
    unsigned maj = 0, min = 0;
    if (c2 == std::string_view::npos || !detail::number(dev.substr(0, c1), maj, 16) ||
        !detail::number(dev.substr(c1 + 1, c2 - c1 - 1), min, 16) ||
        !detail::number(dev.substr(c2 + 1), out.ino))
        return bad();
    out.dev = makedev(maj, min);
    uint64_t end = 0;
    if (!detail::number(w[i + 5], out.start)) return bad();
    if (w[i + 6] == "EOF") {
        out.length = 0;
    } else {
        if (!detail::number(w[i + 6], end) || end < out.start) return bad();
        out.length = end - out.start + 1;
    }
    return out;
}

// Every lock held (not waited for) in a /proc/locks text or the "lock:" lines of an fdinfo.
inline Result<std::vector<LockLine>> parse_locks(std::string_view text) {
    std::vector<LockLine> out;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(at, end - at);
        at = end + 1;
        bool fdinfo = line.starts_with("lock:");
        if (fdinfo)
            line.remove_prefix(5);
        else if (line.find(':') == std::string_view::npos || line.starts_with("pos:") ||
                 line.starts_with("flags:") || line.starts_with("mnt_id:") ||
                 line.starts_with("ino:"))
            continue;
        if (detail::words(line).empty()) continue;
        LockLine l = CR_TRY(parse_lock_line(line));
        if (!l.waiting) out.push_back(std::move(l));
    }
    return out;
}

}  // namespace cr::files_regular
