// Parsers for /proc. Every function names the file it failed on.
#pragma once

#include <cr/sdk/result.hpp>

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cr::fw::proc {

struct MapEntry {
    uint64_t start = 0;
    uint64_t end = 0;
    bool read = false;
    bool write = false;
    bool exec = false;
    bool shared = false;
    uint64_t offset = 0;
    uint32_t dev_major = 0;
    uint32_t dev_minor = 0;
    uint64_t ino = 0;
    std::string path;  // "" for anonymous, "[heap]", "[stack]", "[vdso]", "/x (deleted)" ...
};

// /proc/PID/maps
Result<std::vector<MapEntry>> read_maps(pid_t pid);
// Parses the text of a maps file (exposed for tests).
Result<std::vector<MapEntry>> parse_maps(const std::string& text);

// VmFlags of each mapping from /proc/PID/smaps, keyed by start address ("rd", "gd", "mw" ...).
Result<std::map<uint64_t, std::vector<std::string>>> read_vmflags(pid_t pid);

struct Stat {
    pid_t pid = 0;
    std::string comm;
    char state = '?';
    pid_t ppid = 0;
    pid_t pgrp = 0;
    pid_t session = 0;
    uint64_t flags = 0;
    int64_t num_threads = 0;
    uint64_t starttime = 0;
    uint64_t start_code = 0;
    uint64_t end_code = 0;
    uint64_t start_stack = 0;
    int processor = 0;
    uint64_t start_data = 0;
    uint64_t end_data = 0;
    uint64_t start_brk = 0;
    uint64_t arg_start = 0;
    uint64_t arg_end = 0;
    uint64_t env_start = 0;
    uint64_t env_end = 0;
    int exit_code = 0;
};

// /proc/PID/stat, or /proc/PID/task/TID/stat when tid != 0. comm may hold spaces and ')'.
Result<Stat> read_stat(pid_t pid, pid_t tid = 0);
Result<Stat> parse_stat(const std::string& text);

struct Status {
    uint32_t umask = 0;
    uint64_t sig_pnd = 0;
    uint64_t shd_pnd = 0;
    uint64_t sig_blk = 0;
    uint64_t sig_ign = 0;
    uint64_t sig_cgt = 0;
    uint32_t uid[4] = {};  // real, effective, saved, fs
    uint32_t gid[4] = {};
    std::vector<uint32_t> groups;
    int64_t tracer_pid = 0;
    std::string state;  // "S (sleeping)"
    int seccomp = 0;
    int no_new_privs = 0;
};
Result<Status> read_status(pid_t pid, pid_t tid = 0);
Result<Status> parse_status(const std::string& text);

Result<std::vector<pid_t>> list_threads(pid_t pid);              // /proc/PID/task, sorted
Result<std::vector<pid_t>> list_children(pid_t pid, pid_t tid);  // /proc/PID/task/TID/children
Result<std::vector<int>> list_fds(pid_t pid);                    // /proc/PID/fd, sorted

struct FdInfo {
    uint64_t pos = 0;
    uint32_t flags = 0;  // octal "flags:" field
    uint32_t mnt_id = 0;
    uint64_t ino = 0;
    std::map<std::string, std::string> fields;  // every "key: value" line, raw
    std::vector<std::string> lines;             // every line, raw (epoll/inotify entries repeat keys)
};
Result<FdInfo> read_fdinfo(pid_t pid, int fd);
Result<FdInfo> parse_fdinfo(const std::string& text);

Result<std::vector<uint64_t>> read_auxv(pid_t pid);  // pairs, up to and including AT_NULL

Result<std::string> read_link(const std::string& path);
Result<std::string> read_file(const std::string& path);  // whole file, any size

// Whether a pid exists now in any role: as a task, or as a process group or session id of
// some task. Returns a description of the holder ("pid 42 (sleep), as its process group"),
// or "" when free.
Result<std::string> pid_holder(pid_t pid);

}  // namespace cr::fw::proc
