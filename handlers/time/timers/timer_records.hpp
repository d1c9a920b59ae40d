// Kernel layouts cr.time.timers hands to remote system calls (x86-64), the parser of
// /proc/PID/timers and the arithmetic of the overrun restore. Header-only for unit tests.
#pragma once

#include <signal.h>

#include <charconv>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace cr::timers {

// struct sigevent as timer_create reads it.
struct KernelSigevent {
    uint64_t value = 0;
    int32_t signo = 0;
    int32_t notify = 0;
    int32_t tid = 0;
    int32_t pad[11] = {};
};
static_assert(sizeof(KernelSigevent) == 64);

struct KernelTimespec {
    int64_t sec = 0;
    int64_t nsec = 0;
};

struct KernelItimerspec {
    KernelTimespec interval;
    KernelTimespec value;
};
static_assert(sizeof(KernelItimerspec) == 32);

// struct itimerval: timevals, microseconds in the second word.
struct KernelItimerval {
    KernelTimespec interval;
    KernelTimespec value;
};

inline constexpr int k_sigev_thread_id = 4;
inline constexpr int k_si_timer = -2;
inline constexpr size_t k_siginfo_size = 128;
inline constexpr int64_t k_nsec_per_sec = 1000000000;

// A /proc/PID/timers entry.
struct ProcTimer {
    int id = 0;
    int signo = 0;
    uint64_t sigval = 0;
    int notify = 0;  // SIGEV_* with SIGEV_THREAD_ID or'ed in
    pid_t target = 0;
    int clock = 0;
};

namespace detail {

template <typename T>
bool number(std::string_view s, T& out, int base = 10) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

inline Result<void> parse_notify(std::string_view v, ProcTimer& t) {
    // "signal/pid.42", "none/pid.42", "thread/pid.42", "signal/tid.43"
    size_t slash = v.find('/');
    size_t dot = v.find('.', slash == std::string_view::npos ? 0 : slash);
    if (slash == std::string_view::npos || dot == std::string_view::npos)
        return Error(std::string("bad notify field '") + std::string(v) + "'");
    std::string_view how = v.substr(0, slash), kind = v.substr(slash + 1, dot - slash - 1);
    if (how == "signal")
        t.notify = SIGEV_SIGNAL;
    else if (how == "none")
        t.notify = SIGEV_NONE;
    else if (how == "thread")
        t.notify = SIGEV_THREAD;
    else
        return Error(std::string("unknown notify kind '") + std::string(how) + "'");
    if (kind == "tid")
        t.notify |= k_sigev_thread_id;
    else if (kind != "pid")
        return Error(std::string("bad notify target '") + std::string(kind) + "'");
    if (!number(v.substr(dot + 1), t.target))
        return Error(std::string("bad notify pid in '") + std::string(v) + "'");
    return {};
}

}  // namespace detail

// Parses the text of /proc/PID/timers: blocks of "ID:", "signal:", "notify:", "ClockID:".
inline Result<std::vector<ProcTimer>> parse_proc_timers(std::string_view text) {
    std::vector<ProcTimer> out;
    unsigned seen = 0;  // fields of the current entry
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (line.empty()) continue;
        size_t colon = line.find(": ");
        if (colon == std::string_view::npos)
            return Error("timers: bad line '" + std::string(line) + "'");
        std::string_view key = line.substr(0, colon), v = line.substr(colon + 2);
        if (key == "ID") {
            if (!out.empty() && seen != 0xf)
                return Error("timers: incomplete entry before '" + std::string(line) + "'");
            out.emplace_back();
            seen = 1;
            if (!detail::number(v, out.back().id))
                return Error("timers: bad id '" + std::string(v) + "'");
            continue;
        }
        if (out.empty()) return Error("timers: '" + std::string(line) + "' before any ID");
        ProcTimer& t = out.back();
        if (key == "signal") {
            size_t slash = v.find('/');
            std::string_view ptr =
                slash == std::string_view::npos ? std::string_view() : v.substr(slash + 1);
            if (ptr.starts_with("0x")) ptr.remove_prefix(2);
            if (slash == std::string_view::npos || !detail::number(v.substr(0, slash), t.signo) ||
                !detail::number(ptr, t.sigval, 16))
                return Error("timers: bad signal field '" + std::string(v) + "'");
            seen |= 2;
        } else if (key == "notify") {
            CR_TRY(detail::parse_notify(v, t));
            seen |= 4;
        } else if (key == "ClockID") {
            if (!detail::number(v, t.clock))
                return Error("timers: bad clock '" + std::string(v) + "'");
            seen |= 8;
        }
    }
    if (!out.empty() && seen != 0xf) return Error("timers: incomplete last entry");
    return out;
}

inline int64_t to_ns(const KernelTimespec& t) {
    return t.sec * k_nsec_per_sec + t.nsec;
}
inline KernelTimespec from_ns(int64_t ns) {
    return {ns / k_nsec_per_sec, ns % k_nsec_per_sec};
}
inline bool is_zero(const KernelTimespec& t) {
    return t.sec == 0 && t.nsec == 0;
}

// Clocks whose timers are hrtimers (or alarm timers) that fire while the task is stopped and
// are forwarded by their interval on delivery; CPU-time clocks (negative ids, 2 and 3) are not.
inline bool is_wall_clock(int clock) {
    return clock == 0 || clock == 1 || clock == 7 || clock == 8 || clock == 9 || clock == 11;
}

// The overrun restore: armed with an absolute first expiry `overrun + 1` intervals before
// `next`, the timer fires at once; taking its signal makes the kernel forward it to `next`
// and record `overrun` missed expiries. Needs next - interval <= the time of taking the
// signal < next. Returns the first expiry in ns, or -1 when it would be before the epoch of
// the clock (the kernel refuses negative times).
inline int64_t overrun_first_expiry(int64_t next_ns, int64_t interval_ns, int overrun) {
    if (interval_ns <= 0 || overrun < 0) return -1;
    __int128 back = static_cast<__int128>(interval_ns) * (static_cast<__int128>(overrun) + 1);
    __int128 first = static_cast<__int128>(next_ns) - back;
    return first <= 0 ? -1 : static_cast<int64_t>(first);
}

// Fields of a siginfo record the timer restore looks at.
struct SiginfoView {
    int signo = 0;
    int code = 0;
    int timer_id = 0;
};

inline SiginfoView view_siginfo(const uint8_t* p) {
    SiginfoView v;
    std::memcpy(&v.signo, p, 4);
    std::memcpy(&v.code, p + 8, 4);
    std::memcpy(&v.timer_id, p + 16, 4);  // si_timerid: first word of the union
    return v;
}

inline bool is_signal_of_timer(const uint8_t* p, int signo, int timer_id) {
    SiginfoView v = view_siginfo(p);
    return v.signo == signo && v.code == k_si_timer && v.timer_id == timer_id;
}

}  // namespace cr::timers
