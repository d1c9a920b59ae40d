// What cr.task.creds reads from /proc/PID/task/TID/status, the kernel layouts it hands to
// remote system calls (x86-64), and the rules on them. Header-only so that unit tests can
// check them.
#pragma once

#include <algorithm>
#include <charconv>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cr::creds {

struct StatusCreds {
    uint32_t uids[4] = {};  // real, effective, saved, filesystem
    uint32_t gids[4] = {};
    std::vector<uint32_t> groups;
    uint64_t cap_inheritable = 0;
    uint64_t cap_permitted = 0;
    uint64_t cap_effective = 0;
    uint64_t cap_bounding = 0;
    uint64_t cap_ambient = 0;
    bool no_new_privs = false;
    int seccomp_mode = 0;
    int seccomp_filters = 0;
};

namespace detail {

template <typename T>
bool number(std::string_view s, T& out, int base = 10) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

template <typename T>
bool numbers(std::string_view s, std::vector<T>& out) {
    out.clear();
    while (!s.empty()) {
        size_t start = s.find_first_not_of(" \t");
        if (start == std::string_view::npos) break;
        s.remove_prefix(start);
        size_t end = s.find_first_of(" \t");
        T v{};
        if (!number(s.substr(0, end), v)) return false;
        out.push_back(v);
        s = end == std::string_view::npos ? std::string_view() : s.substr(end);
    }
    return true;
}

}  // namespace detail

// Parses the credential lines of a status file; every one of them must be there.
inline Result<StatusCreds> parse_status(std::string_view text) {
    StatusCreds c;
    unsigned seen = 0;
    auto bad = [](std::string_view key, std::string_view v) {
        return Error("status: bad " + std::string(key) + " line '" + std::string(v) + "'");
    };
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon), v = line.substr(colon + 1);
        if (key == "Uid" || key == "Gid") {
            std::vector<uint32_t> ids;
            if (!detail::numbers(v, ids) || ids.size() != 4) return bad(key, v);
            std::copy(ids.begin(), ids.end(), key == "Uid" ? c.uids : c.gids);
            seen |= key == "Uid" ? 1u : 2u;
        } else if (key == "Groups") {
            if (!detail::numbers(v, c.groups)) return bad(key, v);
            seen |= 4u;
        } else if (key == "CapInh" || key == "CapPrm" || key == "CapEff" || key == "CapBnd" ||
                   key == "CapAmb") {
            uint64_t* field = key == "CapInh"   ? &c.cap_inheritable
                              : key == "CapPrm" ? &c.cap_permitted
                              : key == "CapEff" ? &c.cap_effective
                              : key == "CapBnd" ? &c.cap_bounding
                                                : &c.cap_ambient;
            if (!detail::number(v, *field, 16)) return bad(key, v);
            seen |= key == "CapInh"   ? 8u
                    : key == "CapPrm" ? 16u
                    : key == "CapEff" ? 32u
                    : key == "CapBnd" ? 64u
                                      : 128u;
        } else if (key == "NoNewPrivs") {
            int nnp = 0;
            if (!detail::number(v, nnp)) return bad(key, v);
            c.no_new_privs = nnp != 0;
            seen |= 256u;
        } else if (key == "Seccomp") {
            if (!detail::number(v, c.seccomp_mode)) return bad(key, v);
            seen |= 512u;
        } else if (key == "Seccomp_filters") {
            if (!detail::number(v, c.seccomp_filters)) return bad(key, v);
            seen |= 1024u;
        }
    }
    if (seen != 2047u) return Error("status: credential lines missing");
    return c;
}

// Capability bits of `have` that `allowed` lacks.
[[nodiscard]] inline constexpr uint64_t missing_caps(uint64_t have, uint64_t allowed) {
    return have & ~allowed;
}

// Lowest capability number set in a mask (the one an error names), or -1.
[[nodiscard]] inline int first_cap(uint64_t mask) {
    for (int i = 0; i < 64; ++i)
        if (mask >> i & 1) return i;
    return -1;
}

// capget/capset, _LINUX_CAPABILITY_VERSION_3: a header and two 32-bit halves.
inline constexpr uint32_t k_cap_version_3 = 0x20080522;
struct CapHeader {
    uint32_t version = k_cap_version_3;
    int32_t pid = 0;
};
struct CapData {
    uint32_t effective = 0;
    uint32_t permitted = 0;
    uint32_t inheritable = 0;
};
struct CapSets {
    CapData half[2];
};

inline CapSets cap_sets(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    CapSets s;
    for (int i = 0; i < 2; ++i)
        s.half[i] = {static_cast<uint32_t>(effective >> (32 * i)),
                     static_cast<uint32_t>(permitted >> (32 * i)),
                     static_cast<uint32_t>(inheritable >> (32 * i))};
    return s;
}
inline uint64_t effective_of(const CapSets& s) {
    return s.half[0].effective | uint64_t{s.half[1].effective} << 32;
}
inline uint64_t permitted_of(const CapSets& s) {
    return s.half[0].permitted | uint64_t{s.half[1].permitted} << 32;
}

// seccomp's struct sock_fprog: the length, then a pointer to the instructions.
struct KernelFprog {
    uint16_t len = 0;
    uint16_t pad[3] = {};
    uint64_t filter = 0;
};
static_assert(sizeof(KernelFprog) == 16);

inline constexpr size_t k_bpf_insn_size = 8;
inline constexpr uint32_t k_seccomp_ret_user_notif = 0x7fc00000u;
inline constexpr uint32_t k_seccomp_ret_action_full = 0xffff0000u;

// Whether a classic BPF program can answer SECCOMP_RET_USER_NOTIF: some BPF_RET|BPF_K
// instruction returns it (a return of the accumulator is taken to be able to, as well).
[[nodiscard]] inline bool may_notify_user(const std::vector<uint8_t>& program) {
    constexpr uint16_t k_bpf_ret = 0x06, k_bpf_k = 0x00, k_bpf_a = 0x10;
    for (size_t at = 0; at + k_bpf_insn_size <= program.size(); at += k_bpf_insn_size) {
        uint16_t code = static_cast<uint16_t>(program[at] | program[at + 1] << 8);
        uint32_t k = static_cast<uint32_t>(program[at + 4]) |
                     static_cast<uint32_t>(program[at + 5]) << 8 |
                     static_cast<uint32_t>(program[at + 6]) << 16 |
                     static_cast<uint32_t>(program[at + 7]) << 24;
        if ((code & 0x07) != k_bpf_ret) continue;
        if ((code & 0x18) == k_bpf_a) return true;
        if ((code & 0x18) == k_bpf_k && (k & k_seccomp_ret_action_full) == k_seccomp_ret_user_notif)
            return true;
    }
    return false;
}

inline const char* rlimit_name(int resource) {
    static const char* const k_names[] = {
        "RLIMIT_CPU",      "RLIMIT_FSIZE", "RLIMIT_DATA",   "RLIMIT_STACK",
        "RLIMIT_CORE",     "RLIMIT_RSS",   "RLIMIT_NPROC",  "RLIMIT_NOFILE",
        "RLIMIT_MEMLOCK",  "RLIMIT_AS",    "RLIMIT_LOCKS",  "RLIMIT_SIGPENDING",
        "RLIMIT_MSGQUEUE", "RLIMIT_NICE",  "RLIMIT_RTPRIO", "RLIMIT_RTTIME"};
    return resource >= 0 && resource < 16 ? k_names[resource] : "RLIMIT_?";
}

inline std::string limit_text(uint64_t v) {
    return v == ~uint64_t{0} ? std::string("unlimited") : std::to_string(v);
}

}  // namespace cr::creds
