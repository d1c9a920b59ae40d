// Helpers of the benchmarks: running cr, timing, a process to dump. Plain POSIX, no framework:
// a benchmark measures cr from the outside, as a user runs it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bench {

inline double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline std::string dir_of(const char* argv0) {
    std::string s = argv0;
    size_t slash = s.rfind('/');
    return slash == std::string::npos ? "." : s.substr(0, slash);
}

// cr next to the benchmark, or $CR_BIN.
inline std::string cr_path(const char* argv0) {
    const char* env = std::getenv("CR_BIN");
    return env ? env : dir_of(argv0) + "/cr";
}

// The process being measured, killed by die() so that a failed run leaves nothing behind.
inline pid_t g_workload = 0;

[[noreturn]] inline void die(const std::string& what) {
    std::fprintf(stderr, "bench: %s\n", what.c_str());
    if (g_workload > 0) kill(g_workload, SIGKILL);
    std::exit(1);
}

struct Ran {
    int status = 0;
    double seconds = 0;
    std::string err;  // stderr
};

// Runs argv, waits for it; stderr captured.
inline Ran run(const std::vector<std::string>& args) {
    char path[] = "/tmp/cr-bench-err.XXXXXX";
    int errfd = mkstemp(path);
    if (errfd < 0) die("mkstemp");
    unlink(path);
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        std::vector<char*> av;
        for (const auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        dup2(errfd, 2);
        execv(av[0], av.data());
        _exit(127);
    }
    Ran r;
    if (waitpid(pid, &r.status, 0) < 0) die("waitpid");
    r.seconds = now() - t0;
    char buf[4096];
    ssize_t n;
    lseek(errfd, 0, SEEK_SET);
    while ((n = read(errfd, buf, sizeof buf)) > 0) r.err.append(buf, size_t(n));
    close(errfd);
    return r;
}

inline Ran run_ok(const std::vector<std::string>& args) {
    Ran r = run(args);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        std::string cmd;
        for (const auto& a : args) cmd += a + " ";
        std::string how = WIFSIGNALED(r.status) ? "killed by signal " + std::to_string(WTERMSIG(r.status))
                                                : "exit status " + std::to_string(WEXITSTATUS(r.status));
        die(cmd + "failed (" + how + "): " + r.err);
    }
    return r;
}

// Reaps whatever children (restored processes come back to us, the subreaper) have exited.
inline void reap() {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

inline void kill_and_reap(pid_t pid) {
    kill(pid, SIGKILL);
    for (int i = 0; i < 1000; ++i) {
        reap();
        if (kill(pid, 0) != 0) return;
        usleep(5000);
    }
    die("pid " + std::to_string(pid) + " does not go away");
}

inline void wait_gone(pid_t pid) {
    for (int i = 0; i < 2000; ++i) {
        reap();
        if (kill(pid, 0) != 0) return;
        usleep(5000);
    }
    die("pid " + std::to_string(pid) + " is still there");
}

// Page p of the pattern: every word differs, no page is zero.
inline void fill(uint8_t* mem, size_t bytes) {
    auto* w = reinterpret_cast<uint64_t*>(mem);
    for (size_t i = 0; i < bytes / 8; ++i) w[i] = (i + 1) * 0x9E3779B97F4A7C15ull;
}

inline void remove_tree(const std::string& dir) {
    run({"/bin/rm", "-rf", dir});
}

// "frozen 0.123 s" from cr's -v summary line.
inline double frozen_of(const std::string& err) {
    size_t at = err.rfind("frozen ");
    if (at == std::string::npos) die("no frozen time in: " + err);
    return std::strtod(err.c_str() + at + 7, nullptr);
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace bench
