/* Shared frame of the fd-family workloads (wl_files, wl_fifo, wl_event, wl_memfd, wl_shared):
 * usage "NAME DIR | NAME --self-test DIR | NAME --self-test-corrupt DIR", readiness and go
 * files, counting and printing differences, the verdict in DIR/result. Header-only, like
 * wl_common.h. --self-test runs the checks on an untouched process (they must pass);
 * --self-test-corrupt first spoils one byte or count of the state (they must fail). */
#ifndef CR_WL_VERIFY_H
#define CR_WL_VERIFY_H

#include "wl_common.h"

#include <sys/stat.h>
#include <sys/wait.h>

static const char* g_wl_name = "workload";
static const char* g_wl_dir;
static unsigned g_wl_fails;
static int g_wl_corrupt; /* --self-test-corrupt: the workload spoils its state after go */

static void wl_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void wl_fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_wl_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_wl_fails++;
}

#define WL_CHECK(cond, ...) \
    do {                    \
        if (!(cond)) wl_fail(__VA_ARGS__); \
    } while (0)

/* DIR/name as a path (static buffer per call site is not needed: callers copy). */
static inline const char* wl_at(char* buf, size_t size, const char* name) {
    wl_path(buf, size, g_wl_dir, name);
    return buf;
}

/* Parses "NAME DIR", "NAME --self-test DIR" or "NAME --self-test-corrupt DIR"; returns 1 in
 * either self-test mode. */
static inline int wl_start(int argc, char** argv, const char* name) {
    g_wl_name = name;
    g_wl_corrupt = argc == 3 && strcmp(argv[1], "--self-test-corrupt") == 0;
    int self_test = g_wl_corrupt || (argc == 3 && strcmp(argv[1], "--self-test") == 0);
    if (argc != 2 + self_test) {
        fprintf(stderr, "usage: %s DIR | %s --self-test DIR | %s --self-test-corrupt DIR\n", name, name, name);
        exit(2);
    }
    g_wl_dir = argv[1 + self_test];
    if (self_test) mkdir(g_wl_dir, 0700);
    return self_test;
}

/* Polls for DIR/name; exits when DIR disappears (the test that started us is gone). */
static inline void wl_wait_for(const char* name) {
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_wl_dir, name);
    while (!wl_exists(path)) {
        if (!wl_exists(g_wl_dir)) {
            fprintf(stderr, "%s: %s vanished, exiting\n", g_wl_name, g_wl_dir);
            exit(3);
        }
        wl_sleep_ms(5);
    }
}

/* Writes DIR/ready ("PID\n") and waits for DIR/go (made at once in self-test mode). */
static inline void wl_ready_then_wait(int self_test) {
    char text[32];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_wl_dir, "ready", text) != 0) wl_die(g_wl_name, "write ready");
    printf("%s: ready, pid %d\n", g_wl_name, (int)getpid());
    fflush(stdout);
    if (self_test && wl_write_file(g_wl_dir, "go", "") != 0) wl_die(g_wl_name, "write go");
    wl_wait_for("go");
}

/* Writes DIR/result, prints the verdict and returns the exit status. */
static inline int wl_verdict(void) {
    if (wl_write_file(g_wl_dir, "result", g_wl_fails == 0 ? "ok\n" : "fail\n") != 0) {
        fprintf(stderr, "%s: cannot write %s/result: %s\n", g_wl_name, g_wl_dir, strerror(errno));
        g_wl_fails++;
    }
    if (g_wl_fails == 0)
        printf("%s: ok\n", g_wl_name);
    else
        fprintf(stderr, "%s: FAILED, %u difference(s)\n", g_wl_name, g_wl_fails);
    fflush(stdout);
    return g_wl_fails == 0 ? 0 : 1;
}

/* Compares len bytes at offset of fd with the pattern (seed, base + i); reports the first
 * difference. Returns 1 when equal. */
static inline int wl_check_pattern(int fd, uint64_t offset, size_t len, uint64_t seed, uint64_t base,
                                   const char* what) {
    uint8_t* buf = malloc(len ? len : 1);
    if (!buf) wl_die(g_wl_name, "malloc");
    ssize_t n = pread(fd, buf, len, (off_t)offset);
    int ok = 1;
    if (n != (ssize_t)len) {
        wl_fail("%s: read of %zu bytes at %llu gave %zd (%s)", what, len, (unsigned long long)offset, n,
                n < 0 ? strerror(errno) : "short");
        ok = 0;
    }
    for (size_t i = 0; ok && i < len; ++i) {
        uint8_t want = seed ? wl_pattern_byte(seed, base + i) : 0;
        if (buf[i] != want) {
            wl_fail("%s: byte at offset %llu: expected 0x%02x, found 0x%02x", what,
                    (unsigned long long)(offset + i), want, buf[i]);
            ok = 0;
        }
    }
    free(buf);
    return ok;
}

static inline void wl_write_pattern(int fd, uint64_t offset, size_t len, uint64_t seed) {
    uint8_t* buf = malloc(len ? len : 1);
    if (!buf) wl_die(g_wl_name, "malloc");
    wl_fill_bytes(buf, len, seed, offset);
    if (pwrite(fd, buf, len, (off_t)offset) != (ssize_t)len) wl_die(g_wl_name, "pwrite of a pattern");
    free(buf);
}

static inline off_t wl_pos(int fd) { return lseek(fd, 0, SEEK_CUR); }

/* Waits for a child of ours and reports anything but a clean exit. */
static inline void wl_reap(pid_t child, const char* what) {
    int status = 0;
    pid_t r;
    while ((r = waitpid(child, &status, 0)) < 0 && errno == EINTR) {}
    if (r != child)
        wl_fail("%s: waitpid %d: %s", what, (int)child, strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        wl_fail("%s: pid %d: expected exit 0, found status %#x", what, (int)child, status);
}

/* "NAME --unsupported KIND DIR": returns KIND and sets the directory, or NULL for the other
 * forms. Such a run sets up one thing cr must refuse, then calls wl_hold. */
static inline const char* wl_unsupported_kind(int argc, char** argv, const char* name) {
    if (argc != 4 || strcmp(argv[1], "--unsupported") != 0) return NULL;
    g_wl_name = name;
    g_wl_dir = argv[3];
    return argv[2];
}

/* Ready, then go: still alive after the refused dump, the caller checks its state and says so
 * in DIR/result (wl_verdict). */
static inline void wl_hold(void) { wl_ready_then_wait(0); }

#endif /* CR_WL_VERIFY_H */
