// Text parsers for /proc files. They take the text only, so tests can feed them literal samples.
#include <charconv>
#include <cr/fw/proc.hpp>
#include <string_view>

#include "proc/text.hpp"

namespace cr::fw::proc {

namespace text {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

std::string_view next_word(std::string_view& s) {
    size_t b = s.find_first_not_of(" \t\n");
    if (b == std::string_view::npos) {
        s = {};
        return {};
    }
    size_t e = s.find_first_of(" \t\n", b);
    std::string_view w = s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
    s = e == std::string_view::npos ? std::string_view{} : s.substr(e);
    return w;
}

std::vector<std::string_view> split_lines(std::string_view s) {
    std::vector<std::string_view> out;
    while (!s.empty()) {
        size_t nl = s.find('\n');
        out.push_back(s.substr(0, nl));
        if (nl == std::string_view::npos) break;
        s.remove_prefix(nl + 1);
    }
    return out;
}

}  // namespace text

namespace {

using text::next_word;
using text::parse_num;
using text::split_lines;
using text::trim;

Error bad(std::string_view what, std::string_view line) {
    std::string m(what);
    m += ": \"";
    m += line.substr(0, 120);
    m += '"';
    return Error(std::move(m));
}

// "start-end perms offset major:minor ino" and the rest of the line is the path.
bool parse_map_line(std::string_view line, MapEntry& e) {
    std::string_view rest = line;
    std::string_view range = next_word(rest);
    std::string_view perms = next_word(rest);
    std::string_view offset = next_word(rest);
    std::string_view dev = next_word(rest);
    std::string_view ino = next_word(rest);
    size_t dash = range.find('-');
    size_t colon = dev.find(':');
    if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4)
        return false;
    if (!parse_num(range.substr(0, dash), e.start, 16) ||
        !parse_num(range.substr(dash + 1), e.end, 16) || !parse_num(offset, e.offset, 16) ||
        !parse_num(dev.substr(0, colon), e.dev_major, 16) ||
        !parse_num(dev.substr(colon + 1), e.dev_minor, 16) || !parse_num(ino, e.ino, 10))
        return false;
    e.read = perms[0] == 'r';
    e.write = perms[1] == 'w';
    e.exec = perms[2] == 'x';
    e.shared = perms[3] == 's';
    // The kernel pads before the path; the path itself may hold spaces (and " (deleted)").
    size_t b = rest.find_first_not_of(' ');
    e.path = b == std::string_view::npos ? std::string() : std::string(rest.substr(b));
    return true;
}

}  // namespace

Result<std::vector<MapEntry>> parse_maps(const std::string& text) {
    std::vector<MapEntry> out;
    for (std::string_view line : split_lines(text)) {
        if (line.empty()) continue;
        MapEntry e;
        if (!parse_map_line(line, e)) return bad("malformed maps line", line);
        out.push_back(std::move(e));
    }
    return out;
}

namespace detail {

// smaps: a maps-format header per mapping, then "Key: value" lines including "VmFlags:".
Result<std::map<uint64_t, std::vector<std::string>>> parse_vmflags(const std::string& text) {
    std::map<uint64_t, std::vector<std::string>> out;
    bool have = false;
    uint64_t current = 0;
    for (std::string_view line : split_lines(text)) {
        if (line.empty()) continue;
        if (line.starts_with("VmFlags:")) {
            if (!have) return bad("vmflags before any mapping", line);
            std::string_view rest = line.substr(8);
            auto& flags = out[current];
            for (std::string_view w = next_word(rest); !w.empty(); w = next_word(rest))
                flags.emplace_back(w);
            continue;
        }
        size_t colon = line.find(':');
        size_t space = line.find(' ');
        // Header lines have "lo-hi" before the first space; field lines end their key with ':'.
        if (colon != std::string_view::npos && (space == std::string_view::npos || colon < space))
            continue;
        MapEntry e;
        if (!parse_map_line(line, e)) return bad("malformed smaps line", line);
        current = e.start;
        out[current];
        have = true;
    }
    return out;
}

}  // namespace detail

Result<Stat> parse_stat(const std::string& text) {
    std::string_view s = text;
    // comm is whatever lies between the first '(' and the last ')': it may hold both.
    size_t open = s.find('(');
    size_t close = s.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open)
        return bad("malformed stat (no comm in parentheses)", s);
    Stat st;
    if (!parse_num(trim(s.substr(0, open)), st.pid, 10)) return bad("malformed stat (pid)", s);
    st.comm = std::string(s.substr(open + 1, close - open - 1));

    std::string_view rest = s.substr(close + 1);
    std::vector<std::string_view> f;  // f[0] is field 3 (state) in proc(5) numbering
    for (std::string_view w = next_word(rest); !w.empty(); w = next_word(rest)) f.push_back(w);
    // Fields up to starttime (22) exist on every kernel we run on; later ones are optional.
    if (f.size() < 20 || f[0].size() != 1) return bad("malformed stat (too few fields)", s);
    st.state = f[0][0];
    auto field = [&](int n, auto& out) {
        size_t i = size_t(n - 3);
        return i >= f.size() || parse_num(f[i], out, 10);
    };
    bool ok = field(4, st.ppid) && field(5, st.pgrp) && field(6, st.session) &&
              field(9, st.flags) && field(20, st.num_threads) && field(22, st.starttime) &&
              field(26, st.start_code) && field(27, st.end_code) && field(28, st.start_stack) &&
              field(39, st.processor) && field(45, st.start_data) && field(46, st.end_data) &&
              field(47, st.start_brk) && field(48, st.arg_start) && field(49, st.arg_end) &&
              field(50, st.env_start) && field(51, st.env_end) && field(52, st.exit_code);
    if (!ok) return bad("malformed stat (bad number)", s);
    return st;
}

Result<Status> parse_status(const std::string& text) {
    Status st;
    for (std::string_view line : split_lines(text)) {
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view key = line.substr(0, colon);
        std::string_view value = trim(line.substr(colon + 1));
        bool ok = true;
        if (key == "Umask")
            ok = parse_num(value, st.umask, 8);
        else if (key == "SigPnd")
            ok = parse_num(value, st.sig_pnd, 16);
        else if (key == "ShdPnd")
            ok = parse_num(value, st.shd_pnd, 16);
        else if (key == "SigBlk")
            ok = parse_num(value, st.sig_blk, 16);
        else if (key == "SigIgn")
            ok = parse_num(value, st.sig_ign, 16);
        else if (key == "SigCgt")
            ok = parse_num(value, st.sig_cgt, 16);
        else if (key == "TracerPid")
            ok = parse_num(value, st.tracer_pid, 10);
        else if (key == "Seccomp")
            ok = parse_num(value, st.seccomp, 10);
        else if (key == "NoNewPrivs")
            ok = parse_num(value, st.no_new_privs, 10);
        else if (key == "State")
            st.state = std::string(value);
        else if (key == "Uid" || key == "Gid") {
            uint32_t* ids = key == "Uid" ? st.uid : st.gid;
            std::string_view rest = value;
            for (int i = 0; i < 4 && ok; ++i) ok = parse_num(next_word(rest), ids[i], 10);
        } else if (key == "Groups") {
            std::string_view rest = value;
            for (std::string_view w = next_word(rest); !w.empty() && ok; w = next_word(rest)) {
                uint32_t g = 0;
                ok = parse_num(w, g, 10);
                st.groups.push_back(g);
            }
        }
        if (!ok) return bad("malformed status line", line);
    }
    return st;
}

Result<FdInfo> parse_fdinfo(const std::string& text) {
    FdInfo info;
    for (std::string_view line : split_lines(text)) {
        if (line.empty()) continue;
        info.lines.emplace_back(line);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string key(trim(line.substr(0, colon)));
        std::string_view value = trim(line.substr(colon + 1));
        bool ok = true;
        if (key == "pos")
            ok = parse_num(value, info.pos, 10);
        else if (key == "flags")
            ok = parse_num(value, info.flags, 8);
        else if (key == "mnt_id")
            ok = parse_num(value, info.mnt_id, 10);
        else if (key == "ino")
            ok = parse_num(value, info.ino, 10);
        if (!ok) return bad("malformed fdinfo line", line);
        // Repeated keys (one line per epoll target, inotify watch ...) keep their first value
        // here; lines has them all.
        info.fields.emplace(std::move(key), std::string(value));
    }
    return info;
}

}  // namespace cr::fw::proc
