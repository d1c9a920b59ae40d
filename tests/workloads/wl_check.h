/* Helpers for the process-fidelity workloads (wl_tree, wl_threads, wl_signals): a report that
 * collects every difference as a line of text, /proc readers for one task or thread, raw
 * signal masks and the monotonic clock. Header-only, like wl_common.h. */
#ifndef CR_WL_CHECK_H
#define CR_WL_CHECK_H

#include "wl_common.h"

#include <signal.h>
#include <sys/syscall.h>

/* Differences found by one checker (a task or a thread): counted, and kept as text so that the
 * one who decides (the root, the main thread) can print them all. */
struct wl_report {
    char text[4096];
    size_t len;
    unsigned count;
};

static inline void wl_report_add(struct wl_report* r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void wl_report_add(struct wl_report* r, const char* fmt, ...) {
    r->count++;
    if (r->len + 2 >= sizeof r->text) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, sizeof r->text - r->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    r->len += (size_t)n < sizeof r->text - r->len - 1 ? (size_t)n : sizeof r->text - r->len - 2;
    r->text[r->len++] = '\n';
    r->text[r->len] = '\0';
}

/* Prints every line of a report on stderr, each prefixed with WHO. */
static inline void wl_report_print(const char* who, const struct wl_report* r) {
    const char* p = r->text;
    while (*p) {
        const char* nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "%s: %.*s\n", who, (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    if (r->count > 0 && r->len + 2 >= sizeof r->text)
        fprintf(stderr, "%s: (report truncated; %u difference(s) in all)\n", who, r->count);
}

static inline int64_t wl_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline pid_t wl_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/* The kernel's view of the calling thread's blocked mask, all 64 signals (glibc hides 32, 33). */
static inline uint64_t wl_raw_sigmask(void) {
    uint64_t mask = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, sizeof mask);
    return mask;
}

static inline uint64_t wl_sigbit(int sig) { return 1ull << (sig - 1); }

/* "HUP,USR1,RT40" style, for messages. */
static inline const char* wl_sigset_str(uint64_t set, char* out, size_t size) {
    static const char* const names[32] = {
        "0",    "HUP",  "INT",  "QUIT", "ILL",  "TRAP", "ABRT",   "BUS",  "FPE",  "KILL", "USR1",
        "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN",
        "TTOU", "URG",  "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",  "PWR",  "SYS"};
    size_t len = 0;
    out[0] = '\0';
    for (int sig = 1; sig <= 64; ++sig) {
        if (!(set & wl_sigbit(sig))) continue;
        int n = sig < 32 ? snprintf(out + len, size - len, "%s%s", len ? "," : "", names[sig])
                         : snprintf(out + len, size - len, "%sRT%d", len ? "," : "", sig);
        if (n < 0 || (size_t)n >= size - len) break;
        len += (size_t)n;
    }
    if (len == 0) snprintf(out, size, "(none)");
    return out;
}

/* Fields of /proc/PID/stat (or /proc/PID/task/TID/stat when tid > 0). 0 on success. */
struct wl_stat {
    char state;
    pid_t ppid, pgrp, session;
};

static inline int wl_read_stat(pid_t pid, pid_t tid, struct wl_stat* st) {
    char path[64], line[1024];
    if (tid > 0) snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    else snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE* f = fopen(path, "re");
    if (!f) return -1;
    char* ok = fgets(line, sizeof line, f);
    fclose(f);
    if (!ok) return -1;
    const char* rest = strrchr(line, ')'); /* comm may hold spaces and parentheses */
    if (!rest) return -1;
    int ppid, pgrp, session;
    if (sscanf(rest + 1, " %c %d %d %d", &st->state, &ppid, &pgrp, &session) != 4) return -1;
    st->ppid = ppid;
    st->pgrp = pgrp;
    st->session = session;
    return 0;
}

/* The hex value of a "Key:\t%llx" line of /proc/self/task/TID/status (SigPnd, ShdPnd, SigBlk). */
static inline int wl_status_hex(pid_t tid, const char* key, uint64_t* value) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE* f = fopen(path, "re");
    if (!f) return -1;
    size_t klen = strlen(key);
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            unsigned long long v;
            if (sscanf(line + klen + 1, " %llx", &v) == 1) {
                *value = v;
                found = 0;
            }
            break;
        }
    }
    fclose(f);
    return found;
}

/* The syscall a thread of this process is blocked in, from /proc/self/task/TID/syscall:
 * its number, -1 while the thread runs, -2 when the file cannot be read. */
static inline long wl_blocked_syscall(pid_t tid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE* f = fopen(path, "re");
    if (!f) return -2;
    char* ok = fgets(line, sizeof line, f);
    fclose(f);
    if (!ok) return -2;
    long nr;
    if (sscanf(line, "%ld", &nr) != 1) return -1; /* "running" */
    return nr;
}

/* Waits for DIR/go, polling every INTERVAL ms; exits 3 if DIR disappears (the test that started
 * us is gone). An EINTR from the sleep (a restore) only makes a poll come sooner. */
static inline void wl_wait_go(const char* dir, const char* who, long interval_ms) {
    char go[PATH_MAX];
    wl_path(go, sizeof go, dir, "go");
    while (!wl_exists(go)) {
        if (!wl_exists(dir)) {
            fprintf(stderr, "%s: %s vanished, exiting\n", who, dir);
            _exit(3);
        }
        wl_sleep_ms(interval_ms);
    }
}

/* Writes DIR/result and the verdict line; returns the exit status (0 ok, 1 differences). */
static inline int wl_verdict(const char* dir, const char* who, unsigned differences) {
    if (wl_write_file(dir, "result", differences == 0 ? "ok\n" : "fail\n") != 0) {
        fprintf(stderr, "%s: cannot write %s/result: %s\n", who, dir, strerror(errno));
        differences++;
    }
    if (differences == 0) printf("%s: ok\n", who);
    else fprintf(stderr, "%s: FAILED, %u difference(s)\n", who, differences);
    fflush(stdout);
    fflush(stderr);
    return differences == 0 ? 0 : 1;
}

/* Self-tests: removes the control files a workload and its test leave in DIR (ready, go, result
 * and any EXTRA, NULL-terminated), then DIR itself. */
static inline void wl_remove_dir(const char* dir, const char* const* extra) {
    static const char* const k_names[] = {"ready", "go", "result"};
    char path[PATH_MAX];
    for (int i = 0; i < 3; ++i) wl_path(path, sizeof path, dir, k_names[i]), unlink(path);
    for (; extra && *extra; ++extra) wl_path(path, sizeof path, dir, *extra), unlink(path);
    rmdir(dir);
}

#endif /* CR_WL_CHECK_H */
