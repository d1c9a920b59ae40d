// What /proc/PID/fdinfo shows of eventfd, signalfd, timerfd, epoll and inotify descriptors,
// parsed. Header-only so that unit tests check it on real fdinfo texts.
#pragma once

#include <charconv>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cr::files_event {

namespace detail {

inline std::vector<std::string_view> lines(std::string_view text) {
    std::vector<std::string_view> out;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string_view::npos) end = text.size();
        out.push_back(text.substr(at, end - at));
        at = end + 1;
    }
    return out;
}

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

template <typename T>
bool number(std::string_view s, T& out, int base) {
    s = trim(s);
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

// "key: value" lines, first occurrence of each key.
inline std::optional<std::string_view> field(std::string_view text, std::string_view key) {
    for (std::string_view line : lines(text)) {
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':')
            return trim(line.substr(key.size() + 1));
    }
    return std::nullopt;
}

template <typename T>
Result<T> number_field(std::string_view text, std::string_view key, int base) {
    auto v = field(text, key);
    T out{};
    if (!v) return Error(strf("no %.*s: line", static_cast<int>(key.size()), key.data()));
    if (!number(*v, out, base))
        return Error(strf("%.*s: '%.*s' is not a number", static_cast<int>(key.size()), key.data(),
                          static_cast<int>(v->size()), v->data()));
    return out;
}

// "tfd:        5 events:       1c data: 7  pos:0" -> {tfd: 5, events: 1c, data: 7, pos: 0}
inline std::map<std::string_view, std::string_view> pairs(std::string_view line) {
    std::map<std::string_view, std::string_view> out;
    std::vector<std::string_view> words;
    size_t at = 0;
    while (at < line.size()) {
        while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
        size_t end = at;
        while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
        if (end > at) words.push_back(line.substr(at, end - at));
        at = end;
    }
    for (size_t i = 0; i < words.size(); ++i) {
        size_t colon = words[i].find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = words[i].substr(0, colon);
        std::string_view value = words[i].substr(colon + 1);
        if (value.empty() && i + 1 < words.size()) value = words[++i];
        out[key] = value;
    }
    return out;
}

template <typename T>
bool pair_number(const std::map<std::string_view, std::string_view>& p, std::string_view key,
                 T& out, int base) {
    auto it = p.find(key);
    return it != p.end() && number(it->second, out, base);
}

// "(12, 500)" -> nanoseconds
inline std::optional<uint64_t> timespec_ns(std::string_view v) {
    v = trim(v);
    if (v.size() < 5 || v.front() != '(' || v.back() != ')') return std::nullopt;
    v = v.substr(1, v.size() - 2);
    size_t comma = v.find(',');
    uint64_t sec = 0, nsec = 0;
    if (comma == std::string_view::npos || !number(v.substr(0, comma), sec, 10) ||
        !number(v.substr(comma + 1), nsec, 10) || nsec >= 1000000000u)
        return std::nullopt;
    return sec * 1000000000u + nsec;
}

}  // namespace detail

struct EventFdState {
    uint64_t count = 0;
    bool semaphore = false;
    bool semaphore_known = false;  // kernels before 6.6 do not show it
};

inline Result<EventFdState> parse_eventfd(std::string_view text) {
    EventFdState s;
    s.count = CR_TRY(detail::number_field<uint64_t>(text, "eventfd-count", 16));
    if (detail::field(text, "eventfd-semaphore")) {
        s.semaphore = CR_TRY(detail::number_field<int>(text, "eventfd-semaphore", 10)) != 0;
        s.semaphore_known = true;
    }
    return s;
}

inline Result<uint64_t> parse_signalfd(std::string_view text) {
    return detail::number_field<uint64_t>(text, "sigmask", 16);
}

struct TimerFdState {
    int clockid = 0;
    uint64_t ticks = 0;
    uint32_t settime_flags = 0;
    uint64_t value_ns = 0;  // time left
    uint64_t interval_ns = 0;
};

inline Result<TimerFdState> parse_timerfd(std::string_view text) {
    TimerFdState s;
    s.clockid = CR_TRY(detail::number_field<int>(text, "clockid", 10));
    s.ticks = CR_TRY(detail::number_field<uint64_t>(text, "ticks", 10));
    s.settime_flags = CR_TRY(detail::number_field<uint32_t>(text, "settime flags", 8));
    auto value = detail::field(text, "it_value");
    auto interval = detail::field(text, "it_interval");
    auto v = value ? detail::timespec_ns(*value) : std::nullopt;
    auto i = interval ? detail::timespec_ns(*interval) : std::nullopt;
    if (!v || !i) return Error("cannot parse it_value or it_interval");
    s.value_ns = *v;
    s.interval_ns = *i;
    return s;
}

struct EpollLine {
    int tfd = 0;
    uint32_t events = 0;
    uint64_t data = 0;
    uint64_t ino = 0;
};

inline Result<std::vector<EpollLine>> parse_epoll(std::string_view text) {
    std::vector<EpollLine> out;
    for (std::string_view line : detail::lines(text)) {
        if (!line.starts_with("tfd:")) continue;
        auto p = detail::pairs(line);
        EpollLine e;
        if (!detail::pair_number(p, "tfd", e.tfd, 10) ||
            !detail::pair_number(p, "events", e.events, 16) ||
            !detail::pair_number(p, "data", e.data, 16))
            return Error(strf("cannot parse epoll entry '%.*s'", static_cast<int>(line.size()),
                              line.data()));
        detail::pair_number(p, "ino", e.ino, 16);
        out.push_back(e);
    }
    return out;
}

struct InotifyLine {
    int wd = 0;
    uint64_t ino = 0;
    uint64_t sdev = 0;  // the kernel's own encoding: major << 20 | minor
    uint32_t mask = 0;
    uint32_t ignored_mask = 0;
    int handle_type = 0;
    std::vector<uint8_t> handle;  // empty when the filesystem gives none
};

inline Result<std::vector<InotifyLine>> parse_inotify(std::string_view text) {
    std::vector<InotifyLine> out;
    for (std::string_view line : detail::lines(text)) {
        if (!line.starts_with("inotify ")) continue;
        auto p = detail::pairs(line.substr(8));
        InotifyLine w;
        auto bad = [&] {
            return Error(strf("cannot parse inotify watch '%.*s'", static_cast<int>(line.size()),
                              line.data()));
        };
        if (!detail::pair_number(p, "wd", w.wd, 16) || !detail::pair_number(p, "ino", w.ino, 16) ||
            !detail::pair_number(p, "sdev", w.sdev, 16) ||
            !detail::pair_number(p, "mask", w.mask, 16))
            return bad();
        detail::pair_number(p, "ignored_mask", w.ignored_mask, 16);
        unsigned bytes = 0;
        auto h = p.find("f_handle");
        if (detail::pair_number(p, "fhandle-bytes", bytes, 16) && h != p.end()) {
            if (!detail::pair_number(p, "fhandle-type", w.handle_type, 16) ||
                h->second.size() != bytes * 2u)
                return bad();
            for (size_t i = 0; i < bytes; ++i) {
                uint8_t b = 0;
                if (!detail::number(h->second.substr(i * 2, 2), b, 16)) return bad();
                w.handle.push_back(b);
            }
        }
        out.push_back(std::move(w));
    }
    return out;
}

}  // namespace cr::files_event
