// Reading /proc: whole files, directory listings, and the pid-holder search.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cr/fw/proc.hpp>
#include <cr/sdk/fd.hpp>
#include <cstring>
#include <memory>

#include "proc/text.hpp"

namespace cr::fw::proc {
namespace {

std::string pid_path(pid_t pid, pid_t tid, const char* file) {
    std::string p = "/proc/" + std::to_string(pid);
    if (tid != 0) p += "/task/" + std::to_string(tid);
    p += '/';
    p += file;
    return p;
}

struct DirCloser {
    void operator()(DIR* d) const { ::closedir(d); }
};

// Numeric entries of a directory, sorted.
template <typename T>
Result<std::vector<T>> list_numeric(const std::string& path) {
    std::unique_ptr<DIR, DirCloser> dir(::opendir(path.c_str()));
    if (!dir) return Error::from_errno("opendir", path);
    std::vector<T> out;
    errno = 0;
    while (dirent* de = ::readdir(dir.get())) {
        T n{};
        if (text::parse_num(de->d_name, n, 10)) out.push_back(n);
        errno = 0;
    }
    if (errno != 0) return Error::from_errno("readdir", path);
    std::sort(out.begin(), out.end());
    return out;
}

// Parses the text of a file with parser; a parse error names the file.
template <typename F>
auto read_parsed(const std::string& path, F parser) -> decltype(parser(std::string())) {
    std::string t = CR_TRY(read_file(path));
    return CR_TRY_CTX(parser(t), path);
}

}  // namespace

Result<std::string> read_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno("open", path);
    std::string out;
    size_t used = 0;
    for (;;) {
        if (out.size() - used < 4096) out.resize(std::max<size_t>(8192, out.size() * 2));
        ssize_t n = ::read(fd.get(), out.data() + used, out.size() - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read", path);
        if (n == 0) break;
        used += size_t(n);
    }
    out.resize(used);
    return out;
}

Result<std::string> read_link(const std::string& path) {
    std::string buf(256, '\0');
    for (;;) {
        ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
        if (n < 0) return Error::from_errno("readlink", path);
        if (size_t(n) < buf.size()) {
            buf.resize(size_t(n));
            return buf;
        }
        buf.resize(buf.size() * 2);  // possibly truncated: try again with more room
    }
}

Result<std::vector<MapEntry>> read_maps(pid_t pid) {
    return read_parsed(pid_path(pid, 0, "maps"), parse_maps);
}

Result<std::map<uint64_t, std::vector<std::string>>> read_vmflags(pid_t pid) {
    return read_parsed(pid_path(pid, 0, "smaps"), detail::parse_vmflags);
}

Result<Stat> read_stat(pid_t pid, pid_t tid) {
    return read_parsed(pid_path(pid, tid, "stat"), parse_stat);
}

Result<Status> read_status(pid_t pid, pid_t tid) {
    return read_parsed(pid_path(pid, tid, "status"), parse_status);
}

Result<std::vector<pid_t>> list_threads(pid_t pid) {
    return list_numeric<pid_t>(pid_path(pid, 0, "task"));
}

Result<std::vector<pid_t>> list_children(pid_t pid, pid_t tid) {
    std::string path = pid_path(pid, tid, "children");
    std::string t = CR_TRY(read_file(path));
    std::vector<pid_t> out;
    std::string_view rest = t;
    for (std::string_view w = text::next_word(rest); !w.empty(); w = text::next_word(rest)) {
        pid_t c = 0;
        if (!text::parse_num(text::trim(w), c, 10))
            return Error(path + ": malformed (\"" + std::string(w) + "\" is not a pid)");
        out.push_back(c);
    }
    return out;
}

Result<std::vector<int>> list_fds(pid_t pid) {
    return list_numeric<int>(pid_path(pid, 0, "fd"));
}

Result<FdInfo> read_fdinfo(pid_t pid, int fd) {
    return read_parsed(pid_path(pid, 0, "fdinfo/") + std::to_string(fd), parse_fdinfo);
}

Result<std::vector<uint64_t>> read_auxv(pid_t pid) {
    std::string path = pid_path(pid, 0, "auxv");
    std::string raw = CR_TRY(read_file(path));
    std::vector<uint64_t> out;
    for (size_t i = 0; i + 16 <= raw.size(); i += 16) {
        uint64_t pair[2];
        std::memcpy(pair, raw.data() + i, sizeof pair);
        out.push_back(pair[0]);
        out.push_back(pair[1]);
        if (pair[0] == 0) return out;  // AT_NULL
    }
    return Error(path + ": malformed (no AT_NULL entry)");
}

namespace {

std::string describe_task(const Stat& st) {
    std::string d = "pid " + std::to_string(st.pid) + " (" + st.comm;
    if (st.state == 'Z') d += ", zombie";
    return d + ")";
}

// The thread group of a task, from its status; 0 when unknown.
pid_t thread_group_of(pid_t tid) {
    auto t = read_file(pid_path(tid, 0, "status"));
    if (!t) return 0;
    for (std::string_view line : text::split_lines(*t)) {
        if (!line.starts_with("Tgid:")) continue;
        pid_t tgid = 0;
        return text::parse_num(text::trim(line.substr(5)), tgid, 10) ? tgid : 0;
    }
    return 0;
}

}  // namespace

Result<std::string> pid_holder(pid_t pid) {
    if (pid <= 0) return Error("pid_holder: invalid pid " + std::to_string(pid));
    // Threads are not listed in /proc but their directories answer: look the pid up first.
    if (auto own = read_file(pid_path(pid, 0, "stat")); own.ok()) {
        if (auto st = parse_stat(*own); st.ok()) {
            pid_t tgid = thread_group_of(pid);
            if (tgid != 0 && tgid != pid) {
                std::string d = "thread " + std::to_string(pid) + " of pid " + std::to_string(tgid);
                d += " (" + st->comm + (st->state == 'Z' ? ", zombie)" : ")");
                return d;
            }
            return describe_task(*st);
        }
    }
    // Process group and session ids are per process, so thread group leaders are enough.
    std::vector<pid_t> pids = CR_TRY(list_numeric<pid_t>("/proc"));
    for (pid_t p : pids) {
        auto t = read_file(pid_path(p, 0, "stat"));
        if (!t) continue;  // gone meanwhile
        auto st = parse_stat(*t);
        if (!st) continue;
        if (st->pid == pid) return describe_task(*st);  // appeared meanwhile
        bool pgrp = st->pgrp == pid;
        bool session = st->session == pid;
        if (!pgrp && !session) continue;
        std::string d = describe_task(*st) + ", which uses it as its ";
        d += pgrp && session ? "process group and session" : pgrp ? "process group" : "session";
        return d;
    }
    return std::string();
}

}  // namespace cr::fw::proc
