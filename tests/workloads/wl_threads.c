/* wl_threads DIR [N] | --self-test [DIR] | --self-test-corrupt [DIR]
 *
 * One process with N threads (default 510), each with a distinct name ("wt-INDEX") and a
 * distinct blocked mask, each blocked in one syscall when DIR/ready is written (the main thread
 * sees it in /proc/self/task/TID/syscall):
 *   robust holder (1)       holds a robust mutex, waits on a condition variable (futex)
 *   read (16)               read of 8 bytes from its own pipe
 *   poll (8), ppoll (8)     poll / ppoll of its own pipe, no timeout
 *   epoll_wait (16)         epoll_wait on its own epoll instance (a pipe tagged with its index)
 *   wait4 (8)               wait4 for its own child process, which exits with 20+k once the
 *                           main thread writes DIR/release
 *   nanosleep (16)          nanosleep of an hour
 *   clock_nanosleep (16)    absolute CLOCK_MONOTONIC sleep an hour ahead
 *   cond_timedwait (100)    pthread_cond_timedwait an hour ahead (CLOCK_MONOTONIC)
 *   cond_wait (the rest)    pthread_cond_wait
 * After DIR/go the main thread checks every thread is blocked in the same syscall again, then
 * wakes each one (broadcast, bytes in pipes, SIGRTMIN+20 to the sleepers; the children exit
 * by themselves); each thread checks that its syscall returned what the wake-up implies, then
 * its tid, name, blocked mask, robust list head (get_robust_list) and rseq registration (rseq()
 * with the same area, length and signature must say EBUSY, cpu_id of the area and
 * sched_getcpu() must be valid). Then the robust holder exits holding the mutex and the main
 * thread must get EOWNERDEAD: the kernel knew its robust list. DIR/result gets ok/fail, the
 * exit status is 0 (1 on any difference).
 *
 * EINTR: a checkpoint interrupts every blocked syscall. Those that Linux restarts by running
 * them again (-ERESTARTSYS, -ERESTARTNOHAND: read, ppoll without timeout, wait4, futex without
 * timeout, an absolute clock_nanosleep) must not return EINTR. Of those that go on through the
 * restart block (-ERESTART_RESTARTBLOCK), a relative nanosleep given a place for the remaining
 * time and a poll without a timeout must not either: cr makes them again (the sleep for what
 * was left). A thread stopped before (it goes on in restart_syscall, whose call cr cannot
 * tell) would get EINTR: the test dumps once. Should one return EINTR before the wake-up, the
 * difference is reported; a
 * nanosleep's remaining time must be right whenever it returns EINTR (between the request
 * less the time spent in the call, and the request). epoll_wait returns EINTR after any stop
 * even without a restore (signal(7)); it is called again. A futex wait with a timeout may see
 * EINTR inside glibc, which retries. Those counts are printed, not judged.
 * --self-test-corrupt expects a wrong mask in one thread: the check must fail. */
#include "wl_check.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/wait.h>

#define WL_THREADS_MAX 2000
#define WL_SIGWAKE (SIGRTMIN + 20)
#define WL_HOUR 3600

enum role { r_robust, r_read, r_poll, r_ppoll, r_epoll, r_wait4, r_sleep, r_abssleep, r_condtimed, r_cond, r_count };
static const char* const k_role_names[r_count] = {
    "robust holder", "read", "poll", "ppoll", "epoll_wait", "wait4", "nanosleep", "clock_nanosleep(ABSTIME)",
    "pthread_cond_timedwait", "pthread_cond_wait"};
static const int k_role_counts[r_count] = {1, 16, 8, 8, 16, 8, 16, 16, 100, 0 /* the rest */};
/* The syscalls a thread of each role may be blocked in (-1 ends a list: read is syscall 0).
 * poll, a relative nanosleep and a futex wait with a timeout continue in restart_syscall after
 * a stop. */
static const long k_role_syscalls[r_count][4] = {
    [r_robust] = {SYS_futex, -1}, [r_read] = {SYS_read, -1}, [r_poll] = {SYS_poll, SYS_restart_syscall, -1},
    [r_ppoll] = {SYS_ppoll, -1}, [r_epoll] = {SYS_epoll_wait, SYS_epoll_pwait, 441 /* epoll_pwait2 */, -1},
    [r_wait4] = {SYS_wait4, -1}, [r_sleep] = {SYS_nanosleep, SYS_clock_nanosleep, SYS_restart_syscall, -1},
    [r_abssleep] = {SYS_clock_nanosleep, -1}, [r_condtimed] = {SYS_futex, SYS_restart_syscall, -1}, [r_cond] = {SYS_futex, -1}};

struct slot {
    int index;
    enum role role;
    pthread_t thread;
    pid_t tid;
    uint64_t mask; /* expected blocked mask */
    char name[16];
    void* robust_head;
    size_t robust_len;
    unsigned rseq_len; /* length glibc registered rseq with; 0: not registered */
    int fds[2];        /* read, poll, epoll: its pipe */
    int epfd;
    pid_t child;
    unsigned eintr; /* EINTR returns judged harmless (see above) */
    _Atomic int started, done;
    struct wl_report report;
};

static struct slot* g_slots;
static int g_n;
static const char* g_dir;
static int g_corrupt;
static pthread_mutex_t g_m1 = PTHREAD_MUTEX_INITIALIZER, g_m2 = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_c1 = PTHREAD_COND_INITIALIZER, g_c2;
static int g_go1, g_go2;
static pthread_mutex_t g_robust;
static __thread volatile sig_atomic_t t_woken;

static void on_wake(int sig) {
    (void)sig;
    t_woken = 1;
}

/* Signals the masks are made of: 11 bits, so up to 2047 distinct masks. */
static uint64_t mask_for(int code) {
    const int sigs[11] = {SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGPIPE, SIGRTMIN + 2, SIGRTMIN + 3,
                          SIGRTMIN + 4, SIGRTMIN + 5, SIGRTMIN + 6, SIGRTMIN + 7};
    uint64_t mask = 0;
    for (int b = 0; b < 11; ++b)
        if (code & (1 << b)) mask |= wl_sigbit(sigs[b]);
    return mask;
}

static void set_raw_mask(uint64_t mask) { syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof mask); }

static enum role role_of(int index) {
    int base = 0;
    for (int r = 0; r < r_cond; ++r) {
        if (index < base + k_role_counts[r]) return (enum role)r;
        base += k_role_counts[r];
    }
    return r_cond;
}

static int first_of(enum role role) {
    int base = 0;
    for (int r = 0; r < (int)role; ++r) base += k_role_counts[r];
    return base;
}

static uint64_t read_value(int index) { return wl_pattern_word(7, (uint64_t)index); }
static uint8_t poll_byte(int index) { return (uint8_t)(index * 31 + 7); }
static uint64_t epoll_tag(int index) { return 0xE9000000ull << 32 | (uint64_t)index; }
static int child_code(int index) { return 20 + index - first_of(r_wait4); }

static struct rseq* rseq_area(void) {
    char* tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return (struct rseq*)(tp + __rseq_offset);
}

/* rseq() with the area glibc registered: EBUSY means registered, with that length and signature. */
static int rseq_probe(unsigned len) {
    long r = syscall(SYS_rseq, rseq_area(), len, 0, RSEQ_SIG);
    return r == 0 ? 0 : errno;
}

static void record_state(struct slot* s) {
    long len = 0;
    syscall(SYS_get_robust_list, 0, &s->robust_head, &len);
    s->robust_len = (size_t)len;
    s->rseq_len = 0;
    const unsigned lens[2] = {32, __rseq_size};
    for (int i = 0; i < 2 && s->rseq_len == 0; ++i) {
        int e = rseq_probe(lens[i]);
        if (e == EBUSY) s->rseq_len = lens[i];
        if (e == 0) syscall(SYS_rseq, rseq_area(), lens[i], RSEQ_FLAG_UNREGISTER, RSEQ_SIG); /* was off: keep it off */
    }
}

static void check_state(struct slot* s) {
    struct wl_report* r = &s->report;
    pid_t tid = wl_gettid();
    if (tid != s->tid) wl_report_add(r, "gettid: expected %d, found %d", (int)s->tid, (int)tid);
    char name[17] = "";
    prctl(PR_GET_NAME, name);
    if (strcmp(name, s->name) != 0) wl_report_add(r, "name: expected '%s', found '%s'", s->name, name);
    uint64_t mask = wl_raw_sigmask(), want = s->mask ^ (g_corrupt && s->index == 3 ? wl_sigbit(SIGUSR1) : 0);
    if (mask != want) {
        char a[256], b[256];
        wl_report_add(r, "blocked mask: expected %s, found %s", wl_sigset_str(want, a, sizeof a), wl_sigset_str(mask, b, sizeof b));
    }
    void* head = NULL;
    long len = 0;
    if (syscall(SYS_get_robust_list, 0, &head, &len) != 0) wl_report_add(r, "get_robust_list: %s", strerror(errno));
    else if (head != s->robust_head || (size_t)len != s->robust_len)
        wl_report_add(r, "robust list: expected head %p length %zu, found %p %ld", s->robust_head, s->robust_len, head, len);
    if (s->rseq_len != 0) {
        int e = rseq_probe(s->rseq_len);
        if (e != EBUSY)
            wl_report_add(r, "rseq: registering the same area again should fail with EBUSY (already registered), got %s",
                          e == 0 ? "success (it was not registered)" : strerror(e));
        int32_t cpu_id = (int32_t)rseq_area()->cpu_id;
        int cpu = sched_getcpu();
        if (cpu_id < 0 || cpu_id >= CPU_SETSIZE) wl_report_add(r, "rseq: cpu_id of the area is %d", (int)cpu_id);
        if (cpu < 0) wl_report_add(r, "sched_getcpu: %s", strerror(errno));
    }
}

/* The time a relative sleep says is left must fit the time it was given and spent. */
static void check_remaining(struct slot* s, const struct timespec* req, const struct timespec* rem, int64_t spent) {
    int64_t want = req->tv_sec * 1000000000ll + req->tv_nsec, left = rem->tv_sec * 1000000000ll + rem->tv_nsec;
    const int64_t slack = 50 * 1000000ll;
    if (left > want || left < want - spent - slack)
        wl_report_add(&s->report, "nanosleep remaining time %lld ns: outside [%lld, %lld] (asked %lld ns, %lld ns spent)",
                      (long long)left, (long long)(want - spent - slack), (long long)want, (long long)want, (long long)spent);
}

static void run_sleep(struct slot* s) {
    struct timespec req = {WL_HOUR, 0}, rem;
    for (;;) {
        int64_t before = wl_mono_ns();
        int rc = nanosleep(&req, &rem);
        int64_t spent = wl_mono_ns() - before;
        if (rc == 0 || errno != EINTR) {
            wl_report_add(&s->report, "nanosleep of %lld s returned %s", (long long)req.tv_sec, rc == 0 ? "0" : strerror(errno));
            return;
        }
        check_remaining(s, &req, &rem, spent);
        if (t_woken) return;
        wl_report_add(&s->report, "nanosleep returned EINTR before the wake-up signal (%lld s left)", (long long)rem.tv_sec);
        req = rem;
    }
}

static void run_abssleep(struct slot* s) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WL_HOUR;
    for (;;) {
        int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL);
        if (rc == EINTR && t_woken) return;
        wl_report_add(&s->report, "clock_nanosleep(TIMER_ABSTIME) returned %s before the wake-up signal",
                      rc == 0 ? "0" : strerror(rc));
        if (rc != EINTR) return;
    }
}

static void run_cond(struct slot* s, pthread_mutex_t* m, pthread_cond_t* c, int* go, int timed) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += WL_HOUR;
    pthread_mutex_lock(m);
    while (!*go) {
        int rc = timed ? pthread_cond_timedwait(c, m, &deadline) : pthread_cond_wait(c, m);
        if (rc != 0) {
            wl_report_add(&s->report, "%s returned %s", k_role_names[s->role], strerror(rc));
            if (rc == ETIMEDOUT) break;
        }
    }
    pthread_mutex_unlock(m);
}

static void read_byte(struct slot* s, uint8_t want) {
    uint8_t b = 0;
    ssize_t n = read(s->fds[0], &b, 1);
    if (n != 1 || b != want)
        wl_report_add(&s->report, "read after %s: expected 1 byte %#x, got %zd (%#x)", k_role_names[s->role], want, n, b);
}

static void run_role(struct slot* s) {
    struct wl_report* r = &s->report;
    ssize_t n;
    switch (s->role) {
    case r_robust:
    case r_cond: run_cond(s, &g_m1, &g_c1, &g_go1, 0); break;
    case r_condtimed: run_cond(s, &g_m2, &g_c2, &g_go2, 1); break;
    case r_sleep: run_sleep(s); break;
    case r_abssleep: run_abssleep(s); break;
    case r_read: {
        uint64_t v = 0;
        while ((n = read(s->fds[0], &v, sizeof v)) < 0 && errno == EINTR) wl_report_add(r, "read returned EINTR");
        if (n != (ssize_t)sizeof v || v != read_value(s->index))
            wl_report_add(r, "read: expected 8 bytes %#llx, got %zd (%#llx)", (unsigned long long)read_value(s->index), n,
                          (unsigned long long)v);
        break;
    }
    case r_poll:
    case r_ppoll: {
        struct pollfd p = {s->fds[0], POLLIN, 0};
        for (;;) {
            n = s->role == r_poll ? poll(&p, 1, -1) : ppoll(&p, 1, NULL, NULL);
            if (n >= 0 || errno != EINTR) break;
            wl_report_add(r, "%s without timeout returned EINTR", k_role_names[s->role]);
        }
        if (n != 1 || p.revents != POLLIN)
            wl_report_add(r, "%s: expected 1 with POLLIN, got %zd revents %#x", k_role_names[s->role], n, p.revents);
        else read_byte(s, poll_byte(s->index));
        break;
    }
    case r_epoll: {
        struct epoll_event ev = {0, {0}};
        while ((n = epoll_wait(s->epfd, &ev, 1, -1)) < 0 && errno == EINTR) s->eintr++;
        if (n != 1 || ev.events != EPOLLIN || ev.data.u64 != epoll_tag(s->index))
            wl_report_add(r, "epoll_wait: expected 1 event EPOLLIN tag %#llx, got %zd events %#x tag %#llx",
                          (unsigned long long)epoll_tag(s->index), n, ev.events, (unsigned long long)ev.data.u64);
        else read_byte(s, poll_byte(s->index));
        break;
    }
    case r_wait4: {
        int status = 0;
        struct rusage ru;
        pid_t got;
        while ((got = wait4(s->child, &status, 0, &ru)) < 0 && errno == EINTR) wl_report_add(r, "wait4 returned EINTR");
        if (got != s->child || !WIFEXITED(status) || WEXITSTATUS(status) != child_code(s->index))
            wl_report_add(r, "wait4(%d): expected the child exited with %d, got pid %d (%s) status %#x", (int)s->child,
                          child_code(s->index), (int)got, got < 0 ? strerror(errno) : "", status);
        break;
    }
    case r_count: break;
    }
}

static void* thread_main(void* arg) {
    struct slot* s = arg;
    s->tid = wl_gettid();
    pthread_setname_np(pthread_self(), s->name);
    set_raw_mask(s->mask);
    record_state(s);
    if (s->role == r_robust) pthread_mutex_lock(&g_robust);
    atomic_store(&s->started, 1);
    run_role(s);
    check_state(s);
    atomic_store(&s->done, 1);
    return NULL; /* the robust holder leaves holding the mutex, on purpose */
}

/* ---- the main thread ---- */

static void setup_slot(struct slot* s, int index) {
    s->index = index;
    s->role = role_of(index);
    s->mask = mask_for(index + 1);
    s->fds[0] = s->fds[1] = s->epfd = -1;
    snprintf(s->name, sizeof s->name, "wt-%d", index);
    if (s->role == r_read || s->role == r_poll || s->role == r_ppoll || s->role == r_epoll)
        if (pipe2(s->fds, O_CLOEXEC) != 0) wl_die("wl_threads", "pipe2");
    if (s->role == r_epoll) {
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {EPOLLIN, {.u64 = epoll_tag(index)}};
        if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->fds[0], &ev) != 0) wl_die("wl_threads", "epoll");
    }
    if (s->role == r_wait4) { /* forked before the threads exist, so the child stays small */
        fflush(NULL);
        s->child = fork();
        if (s->child < 0) wl_die("wl_threads", "fork");
        if (s->child == 0) {
            char release[PATH_MAX];
            wl_path(release, sizeof release, g_dir, "release");
            while (!wl_exists(release)) {
                if (!wl_exists(g_dir)) _exit(3);
                wl_sleep_ms(20);
            }
            _exit(child_code(index));
        }
    }
}

static void setup(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake; /* no SA_RESTART: the sleepers must see EINTR */
    if (sigaction(WL_SIGWAKE, &sa, NULL) != 0) wl_die("wl_threads", "sigaction");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_c2, &ca);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&g_robust, &ma);
    g_slots = calloc((size_t)g_n, sizeof *g_slots);
    if (!g_slots) wl_die("wl_threads", "calloc");
    for (int i = 0; i < g_n; ++i) setup_slot(&g_slots[i], i);
    set_raw_mask(mask_for(g_n + 1));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    for (int i = 0; i < g_n; ++i) {
        int rc = pthread_create(&g_slots[i].thread, &attr, thread_main, &g_slots[i]);
        if (rc != 0) {
            errno = rc;
            wl_die("wl_threads", "pthread_create");
        }
    }
    for (int i = 0; i < g_n; ++i)
        while (!atomic_load(&g_slots[i].started)) wl_sleep_ms(1);
}

static int in_role_syscall(const struct slot* s, long nr) {
    for (int k = 0; k < 4 && k_role_syscalls[s->role][k] != -1; ++k)
        if (k_role_syscalls[s->role][k] == nr) return 1;
    return 0;
}

/* Every thread not done yet is blocked in its role's syscall; prints those that are not. */
static unsigned check_blocked(const char* when, int timeout_ms) {
    static unsigned char ok[WL_THREADS_MAX];
    static long seen[WL_THREADS_MAX];
    memset(ok, 0, sizeof ok);
    int64_t deadline = wl_mono_ns() + timeout_ms * 1000000ll;
    unsigned missing;
    for (;;) {
        missing = 0;
        for (int i = 0; i < g_n; ++i) {
            if (ok[i] || atomic_load(&g_slots[i].done)) continue;
            seen[i] = wl_blocked_syscall(g_slots[i].tid);
            if (in_role_syscall(&g_slots[i], seen[i])) ok[i] = 1;
            else missing++;
        }
        if (missing == 0 || wl_mono_ns() > deadline) break;
        wl_sleep_ms(10);
    }
    missing = 0;
    for (int i = 0; i < g_n; ++i) {
        if (ok[i] || atomic_load(&g_slots[i].done)) continue;
        missing++;
        fprintf(stderr, "wl_threads: thread %d (%s, tid %d): %s: not blocked in its syscall; /proc/self/task/%d/syscall says %s%ld\n",
                i, k_role_names[g_slots[i].role], (int)g_slots[i].tid, when, (int)g_slots[i].tid,
                seen[i] == -1 ? "running, " : seen[i] == -2 ? "unreadable, " : "syscall ", seen[i]);
    }
    return missing;
}

static int is_sleeper(const struct slot* s) { return s->role == r_sleep || s->role == r_abssleep; }

static void wake_all(void) {
    if (wl_write_file(g_dir, "release", "") != 0) /* the children of the wait4 threads exit */
        fprintf(stderr, "wl_threads: cannot write %s/release: %s\n", g_dir, strerror(errno));
    pthread_mutex_lock(&g_m1);
    g_go1 = 1;
    pthread_cond_broadcast(&g_c1);
    pthread_mutex_unlock(&g_m1);
    pthread_mutex_lock(&g_m2);
    g_go2 = 1;
    pthread_cond_broadcast(&g_c2);
    pthread_mutex_unlock(&g_m2);
    for (int i = 0; i < g_n; ++i) {
        struct slot* s = &g_slots[i];
        uint64_t v = read_value(i);
        uint8_t b = poll_byte(i);
        ssize_t n = 1;
        if (s->role == r_read) n = write(s->fds[1], &v, sizeof v) == (ssize_t)sizeof v;
        if (s->role == r_poll || s->role == r_ppoll || s->role == r_epoll) n = write(s->fds[1], &b, 1);
        if (n != 1) fprintf(stderr, "wl_threads: thread %d: write to its pipe: %s\n", i, strerror(errno));
    }
}

/* Waits for every thread's verdict; the sleepers get the wake-up signal until they have it
 * (one sent between their check of the flag and their next sleep would be lost). */
static unsigned wait_done(void) {
    int64_t deadline = wl_mono_ns() + 30 * 1000000000ll;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < g_n; ++i) {
            if (atomic_load(&g_slots[i].done)) continue;
            pending++;
            if (is_sleeper(&g_slots[i])) pthread_kill(g_slots[i].thread, WL_SIGWAKE);
        }
        if (pending == 0) return 0;
        if (wl_mono_ns() > deadline) break;
        wl_sleep_ms(50);
    }
    unsigned missing = 0;
    for (int i = 0; i < g_n; ++i) {
        if (atomic_load(&g_slots[i].done)) continue;
        missing++;
        fprintf(stderr, "wl_threads: thread %d (%s, tid %d): no verdict 30 s after the wake-up (syscall %ld)\n", i,
                k_role_names[g_slots[i].role], (int)g_slots[i].tid, wl_blocked_syscall(g_slots[i].tid));
    }
    return missing;
}

/* The holder left holding the robust mutex: the kernel must have marked it owner-dead. */
static unsigned check_robust(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int rc = pthread_timedjoin_np(g_slots[first_of(r_robust)].thread, NULL, &ts);
    if (rc != 0) {
        fprintf(stderr, "wl_threads: robust holder: join: %s\n", strerror(rc));
        return 1;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    rc = pthread_mutex_timedlock(&g_robust, &ts);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&g_robust);
        pthread_mutex_unlock(&g_robust);
        return 0;
    }
    fprintf(stderr, "wl_threads: robust mutex: expected EOWNERDEAD after its holder exited, got %s\n",
            rc == 0 ? "success" : strerror(rc));
    return 1;
}

static unsigned check_main(void) {
    struct slot s = {.tid = getpid(), .mask = mask_for(g_n + 1), .name = "wl_threads"};
    record_state(&s); /* the main thread's robust head and rseq do not move during the run */
    check_state(&s);
    wl_report_print("wl_threads: main thread", &s.report);
    return s.report.count;
}

int main(int argc, char** argv) {
    int self_test = 0, argi = 1;
    if (argi < argc && strcmp(argv[argi], "--self-test") == 0) self_test = 1, argi++;
    else if (argi < argc && strcmp(argv[argi], "--self-test-corrupt") == 0) self_test = g_corrupt = 1, argi++;
    static char tmpdir[] = "/tmp/wl_threads.XXXXXX";
    int own_dir = 0;
    g_n = 510;
    if (argi < argc) {
        g_dir = argv[argi++];
    } else if (self_test) {
        if (!mkdtemp(tmpdir)) wl_die("wl_threads", "mkdtemp");
        g_dir = tmpdir;
        own_dir = 1;
    } else {
        fprintf(stderr, "usage: wl_threads DIR [N] | --self-test [DIR] | --self-test-corrupt [DIR]\n");
        return 2;
    }
    if (argi < argc) g_n = atoi(argv[argi]);
    if (g_n < 200 || g_n > WL_THREADS_MAX) {
        fprintf(stderr, "wl_threads: N must be between 200 and %d\n", WL_THREADS_MAX);
        return 2;
    }
    setup();
    if (check_blocked("setup", 10000) != 0) {
        fprintf(stderr, "wl_threads: setup: threads not blocked where they should be\n");
        exit(2);
    }
    char text[64];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_dir, "ready", text) != 0) wl_die("wl_threads", "write ready");
    printf("wl_threads: ready, pid %d, %d threads\n", (int)getpid(), g_n);
    fflush(stdout);
    if (self_test && wl_write_file(g_dir, "go", "") != 0) wl_die("wl_threads", "write go");
    wl_wait_go(g_dir, "wl_threads", 10);

    unsigned differences = check_blocked("after go, before the wake-up", 5000);
    wake_all();
    differences += wait_done();
    unsigned epolls = 0;
    for (int i = 0; i < g_n; ++i) {
        struct slot* s = &g_slots[i];
        char who[96];
        snprintf(who, sizeof who, "wl_threads: thread %d (%s, tid %d)", i, k_role_names[s->role], (int)s->tid);
        if (atomic_load(&s->done)) wl_report_print(who, &s->report), differences += s->report.count;
        if (s->role == r_epoll) epolls += s->eintr;
    }
    differences += check_robust();
    differences += check_main();
    printf("wl_threads: %u epoll_wait(s) were retried after EINTR\n", epolls);
    int status = wl_verdict(g_dir, "wl_threads", differences);
    static const char* const k_release[] = {"release", NULL};
    if (own_dir) wl_remove_dir(g_dir, k_release);
    exit(status); /* not a join: a thread that did not survive must not hang the verdict */
}
