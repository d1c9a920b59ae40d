/* wl_event DIR | --self-test DIR | --unsupported epoll-stale|pidfd DIR
 *
 * Event descriptors as cr.files.event must bring them back:
 *   - eventfds: a counter holding 12345 (non-blocking) and a semaphore holding 3;
 *   - a signalfd for SIGUSR1 and SIGRTMIN+2 with SIGUSR1 pending;
 *   - timerfds: a relative monotonic one (1000 s left, 2.5 s interval), an absolute realtime
 *     one (an hour ahead, cancel-on-set), an expired one holding 42 unread expirations and a
 *     periodic 50 ms one;
 *   - an epoll instance watching an eventfd, a pipe (edge-triggered), a timerfd and a nested
 *     epoll that watches the semaphore eventfd (one-shot); a child that inherited the instance
 *     adds an eventfd of its own, at an fd number the parent does not use;
 *   - an inotify instance with watches 1, 2, 3 and 5 (4 was removed) on files of DIR.
 * Writes DIR/ready, waits for DIR/go, checks counts, masks, timers, registrations (as fdinfo
 * shows them and as epoll_wait reports them) and watch descriptors, writes DIR/result and
 * exits 0 ("wl_event: ok") or 1 with each difference on stderr. */
#include "wl_verify.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

#define COUNT 12345u
#define SEM_COUNT 3u
#define TICKS 42u
#define CHILD_FD 60 /* the child's eventfd, registered by the child in the shared epoll */

struct reg {
    int* fd;
    uint32_t events;
    uint64_t data;
};

static struct {
    int counter, sem, sig, t_rel, t_abs, t_ticks, t_periodic, ep, ep2, pipe_r, pipe_w, in;
    uint64_t ticks_expected;
    struct timespec abs_expiry;
    int wd[6];
    int child_fd;
    pid_t child;
} g;

static void setup_eventfds(void) {
    g.counter = eventfd(COUNT, EFD_NONBLOCK | EFD_CLOEXEC);
    g.sem = eventfd(SEM_COUNT, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    if (g.counter < 0 || g.sem < 0) wl_die("wl_event", "eventfd");
}

static void setup_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN + 2);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) wl_die("wl_event", "sigprocmask");
    g.sig = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (g.sig < 0) wl_die("wl_event", "signalfd");
    if (raise(SIGUSR1) != 0) wl_die("wl_event", "raise");
}

static void setup_timers(void) {
    g.t_rel = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec rel = {{2, 500000000}, {1000, 0}};
    if (g.t_rel < 0 || timerfd_settime(g.t_rel, 0, &rel, NULL) != 0) wl_die("wl_event", "timerfd relative");

    g.t_abs = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    clock_gettime(CLOCK_REALTIME, &g.abs_expiry);
    g.abs_expiry.tv_sec += 3600;
    struct itimerspec abs = {{0, 0}, g.abs_expiry};
    if (g.t_abs < 0 || timerfd_settime(g.t_abs, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &abs, NULL) != 0)
        wl_die("wl_event", "timerfd absolute");

    g.t_ticks = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec once = {{0, 0}, {0, 1000}};
    if (g.t_ticks < 0 || timerfd_settime(g.t_ticks, 0, &once, NULL) != 0) wl_die("wl_event", "timerfd one-shot");
    wl_sleep_ms(10);
    uint64_t ticks = TICKS;
    g.ticks_expected = ioctl(g.t_ticks, TFD_IOC_SET_TICKS, &ticks) == 0 ? TICKS : 1;

    g.t_periodic = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec per = {{0, 50000000}, {0, 50000000}};
    if (g.t_periodic < 0 || timerfd_settime(g.t_periodic, 0, &per, NULL) != 0) wl_die("wl_event", "timerfd periodic");
}

static struct reg k_regs[] = {
    {&g.counter, EPOLLIN, 0x1111},
    {&g.pipe_r, EPOLLIN | EPOLLET, 0x2222},
    {&g.t_ticks, EPOLLIN, 0xdeadbeefcafeull},
    {&g.ep2, EPOLLIN, 0x4444},
    {&g.child_fd, EPOLLIN, 0x7777},
};
static struct reg k_regs2[] = {{&g.sem, EPOLLIN | EPOLLONESHOT, 0x5555}};

static void add_all(int ep, struct reg* regs, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        struct epoll_event ev = {.events = regs[i].events, .data.u64 = regs[i].data};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, *regs[i].fd, &ev) != 0) wl_die("wl_event", "epoll_ctl");
    }
}

static void setup_epoll(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) wl_die("wl_event", "pipe");
    g.pipe_r = p[0];
    g.pipe_w = p[1];
    if (write(g.pipe_w, "hello", 5) != 5) wl_die("wl_event", "pipe write");
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.ep2 = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0 || g.ep2 < 0) wl_die("wl_event", "epoll_create1");
    add_all(g.ep2, k_regs2, 1);
    add_all(g.ep, k_regs, sizeof k_regs / sizeof k_regs[0] - 1);
    g.child_fd = CHILD_FD;
    g.child = fork();
    if (g.child < 0) wl_die("wl_event", "fork");
    if (g.child == 0) {
        int e = eventfd(1, EFD_CLOEXEC);
        if (e < 0 || dup2(e, CHILD_FD) != CHILD_FD) _exit(2);
        close(e);
        struct reg* mine = &k_regs[sizeof k_regs / sizeof k_regs[0] - 1];
        struct epoll_event ev = {.events = mine->events, .data.u64 = mine->data};
        if (epoll_ctl(g.ep, EPOLL_CTL_ADD, CHILD_FD, &ev) != 0) _exit(3);
        if (wl_write_file(g_wl_dir, "child-ready", "") != 0) _exit(4);
        wl_wait_for("checked"); /* the registration lives as long as the child's eventfd */
        _exit(0);
    }
    wl_wait_for("child-ready");
}

static const char* const k_watched[] = {"w1", "w2", "w3", "w4", "w5"};
static const uint32_t k_masks[] = {IN_CREATE | IN_DELETE, IN_MODIFY, IN_ATTRIB | IN_ONESHOT, IN_OPEN, IN_CLOSE_WRITE};

static void setup_inotify(void) {
    char path[PATH_MAX];
    mkdir(wl_at(path, sizeof path, "w1"), 0755);
    for (int i = 1; i < 5; ++i) close(open(wl_at(path, sizeof path, k_watched[i]), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    g.in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (g.in < 0) wl_die("wl_event", "inotify_init1");
    for (int i = 0; i < 5; ++i) {
        g.wd[i + 1] = inotify_add_watch(g.in, wl_at(path, sizeof path, k_watched[i]), k_masks[i]);
        if (g.wd[i + 1] != i + 1) wl_die("wl_event", "inotify_add_watch gave an unexpected descriptor");
    }
    if (inotify_rm_watch(g.in, 4) != 0) wl_die("wl_event", "inotify_rm_watch");
    char buf[4096];
    while (read(g.in, buf, sizeof buf) > 0) {} /* the IN_IGNORED of watch 4 */
}

static void check_eventfds(void) {
    uint64_t v = 0;
    WL_CHECK(read(g.counter, &v, 8) == 8 && v == COUNT, "eventfd counter: read %llu, expected %u", (unsigned long long)v, COUNT);
    WL_CHECK(read(g.counter, &v, 8) < 0 && errno == EAGAIN, "eventfd counter: not empty after one read (or blocking)");
    for (unsigned i = 0; i < SEM_COUNT; ++i)
        WL_CHECK(read(g.sem, &v, 8) == 8 && v == 1, "eventfd semaphore: read %u gave %llu, expected 1", i, (unsigned long long)v);
    WL_CHECK(read(g.sem, &v, 8) < 0 && errno == EAGAIN, "eventfd semaphore: more than %u", SEM_COUNT);
}

static void check_signalfd(void) {
    struct signalfd_siginfo si;
    WL_CHECK(read(g.sig, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "signalfd: pending SIGUSR1 not read");
    WL_CHECK(read(g.sig, &si, sizeof si) < 0 && errno == EAGAIN, "signalfd: not empty or blocking");
    raise(SIGRTMIN + 2);
    WL_CHECK(read(g.sig, &si, sizeof si) == sizeof si && si.ssi_signo == (uint32_t)(SIGRTMIN + 2),
             "signalfd: SIGRTMIN+2 is not in the mask any more");
}

static double ts_s(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

static void check_timers(void) {
    struct itimerspec cur;
    timerfd_gettime(g.t_rel, &cur);
    WL_CHECK(cur.it_interval.tv_sec == 2 && cur.it_interval.tv_nsec == 500000000, "relative timer: interval %.9f",
             ts_s(cur.it_interval));
    WL_CHECK(ts_s(cur.it_value) > 900 && ts_s(cur.it_value) <= 1000, "relative timer: %.3f s left", ts_s(cur.it_value));

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    timerfd_gettime(g.t_abs, &cur);
    double want = ts_s(g.abs_expiry) - ts_s(now);
    WL_CHECK(cur.it_value.tv_sec > 0 && ts_s(cur.it_value) - want < 1 && want - ts_s(cur.it_value) < 1,
             "absolute timer: %.3f s left, expected %.3f", ts_s(cur.it_value), want);

    uint64_t ticks = 0;
    WL_CHECK(read(g.t_ticks, &ticks, 8) == 8 && ticks == g.ticks_expected, "expired timer: %llu ticks, expected %llu",
             (unsigned long long)ticks, (unsigned long long)g.ticks_expected);
    ticks = 0;
    WL_CHECK(read(g.t_periodic, &ticks, 8) == 8 && ticks >= 1, "periodic timer: read %llu", (unsigned long long)ticks);
    timerfd_gettime(g.t_periodic, &cur);
    WL_CHECK(cur.it_interval.tv_nsec == 50000000 && cur.it_interval.tv_sec == 0, "periodic timer: interval %.9f",
             ts_s(cur.it_interval));
}

/* The registrations as fdinfo shows them: "tfd: N events: X data: Y". */
static void check_registrations(int ep, struct reg* regs, size_t n, const char* what) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE* f = fopen(path, "re");
    if (!f) {
        wl_fail("%s: open %s: %s", what, path, strerror(errno));
        return;
    }
    size_t found = 0, lines = 0;
    while (fgets(line, sizeof line, f)) {
        int tfd;
        unsigned events;
        unsigned long long data;
        if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3) continue;
        lines++;
        for (size_t i = 0; i < n; ++i)
            if (*regs[i].fd == tfd && data == regs[i].data && (events & ~(unsigned)(EPOLLERR | EPOLLHUP)) == regs[i].events)
                found++;
    }
    fclose(f);
    WL_CHECK(found == n && lines == n, "%s: %zu of %zu registrations found, %zu in all", what, found, n, lines);
}

static void check_epoll(void) {
    check_registrations(g.ep, k_regs, sizeof k_regs / sizeof k_regs[0], "epoll");
    check_registrations(g.ep2, k_regs2, 1, "nested epoll");
    /* Ready now: the pipe and the nested epoll (the semaphore was not read yet in this order). */
    struct epoll_event ev[8];
    int n = epoll_wait(g.ep, ev, 8, 1000);
    uint64_t seen = 0;
    for (int i = 0; i < n; ++i) {
        if (ev[i].data.u64 == 0x2222) seen |= 1;
        if (ev[i].data.u64 == 0x4444) seen |= 2;
        if (ev[i].data.u64 == 0x7777) seen |= 4;
    }
    WL_CHECK(seen == 7, "epoll_wait: %d events, pipe %s, nested epoll %s, the child's eventfd %s", n,
             seen & 1 ? "ready" : "missing", seen & 2 ? "ready" : "missing", seen & 4 ? "ready" : "missing");
    struct epoll_event inner;
    WL_CHECK(epoll_wait(g.ep2, &inner, 1, 0) == 1 && inner.data.u64 == 0x5555, "nested epoll: the semaphore is not ready");
}

static void check_inotify(void) {
    char path[PATH_MAX], name[PATH_MAX];
    FILE* f;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", g.in);
    f = fopen(path, "re");
    unsigned seen = 0;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        unsigned wd, mask;
        unsigned long ino;
        if (sscanf(line, "inotify wd:%x ino:%lx sdev:%*x mask:%x", &wd, &ino, &mask) != 3) continue;
        if (wd < 1 || wd > 5 || wd == 4) {
            wl_fail("inotify: unexpected watch %u", wd);
            continue;
        }
        struct stat st;
        stat(wl_at(name, sizeof name, k_watched[wd - 1]), &st);
        WL_CHECK(mask == k_masks[wd - 1] && ino == st.st_ino, "inotify: watch %u: mask %#x inode %lu, expected %#x %lu", wd,
                 mask, ino, k_masks[wd - 1], (unsigned long)st.st_ino);
        seen |= 1u << wd;
    }
    if (f) fclose(f);
    WL_CHECK(seen == ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 5)), "inotify: watches seen %#x", seen);
    int fl = fcntl(g.in, F_GETFL);
    WL_CHECK(fl & O_NONBLOCK, "inotify: lost O_NONBLOCK");

    close(open(wl_at(name, sizeof name, "w1/new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    int fd = open(wl_at(name, sizeof name, "w2"), O_WRONLY | O_CLOEXEC);
    if (write(fd, "x", 1) != 1) wl_fail("write w2: %s", strerror(errno));
    close(fd);
    char buf[4096] __attribute__((aligned(8)));
    wl_sleep_ms(10);
    ssize_t n = read(g.in, buf, sizeof buf);
    unsigned got = 0;
    for (ssize_t at = 0; at < n;) {
        struct inotify_event* e = (struct inotify_event*)(buf + at);
        if (e->wd == 1 && (e->mask & IN_CREATE) && strcmp(e->name, "new") == 0) got |= 1;
        if (e->wd == 2 && (e->mask & IN_MODIFY)) got |= 2;
        if (e->wd == 4 || e->wd > 5) wl_fail("inotify: event for watch %d", e->wd);
        at += (ssize_t)sizeof *e + e->len;
    }
    WL_CHECK(got == 3, "inotify: events seen %#x (1: create in w1, 2: modify w2)", got);
    int next = inotify_add_watch(g.in, g_wl_dir, IN_DELETE_SELF);
    WL_CHECK(next == 6, "inotify: a new watch got descriptor %d, expected 6", next);
}

/* Things cr must refuse: an epoll registration whose fd number no longer holds its file, and
 * a pidfd (no handler claims it). */
static int unsupported(const char* kind) {
    mkdir(g_wl_dir, 0700);
    if (strcmp(kind, "epoll-stale") == 0) {
        int e = eventfd(1, EFD_CLOEXEC);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
        if (e < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != 0) wl_die("wl_event", "epoll");
        int keep = fcntl(e, F_DUPFD_CLOEXEC, 40);
        close(e); /* the registration stays, under a number that is now free */
        wl_hold();
        WL_CHECK(epoll_wait(ep, &ev, 1, 0) == 1 && ev.data.u64 == 7, "epoll: registration lost after the refused dump");
        close(keep);
        return wl_verdict();
    }
    if (strcmp(kind, "pidfd") == 0) {
        if (syscall(SYS_pidfd_open, getpid(), 0) < 0) wl_die("wl_event", "pidfd_open");
        wl_hold();
        return wl_verdict();
    }
    fprintf(stderr, "wl_event: unknown --unsupported kind %s\n", kind);
    return 2;
}

int main(int argc, char** argv) {
    const char* bad = wl_unsupported_kind(argc, argv, "wl_event");
    if (bad) return unsupported(bad);
    int self_test = wl_start(argc, argv, "wl_event");
    setup_eventfds();
    setup_signalfd();
    setup_timers();
    setup_epoll();
    setup_inotify();
    wl_ready_then_wait(self_test);
    if (g_wl_corrupt && eventfd_write(g.counter, 1) != 0) wl_die("wl_event", "eventfd_write");
    check_epoll(); /* first: it looks at readiness before anything is read */
    check_eventfds();
    check_signalfd();
    check_timers();
    check_inotify();
    wl_write_file(g_wl_dir, "checked", "");
    wl_reap(g.child, "child");
    return wl_verdict();
}
