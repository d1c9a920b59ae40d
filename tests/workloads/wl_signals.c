/* wl_signals DIR | --self-test [DIR] | --self-test-corrupt [DIR]
 *
 * Signal state of one process with four threads (main, A, B, C):
 *   actions   SIGUSR1 SA_SIGINFO, mask HUP,RT+10    SIGUSR2 SA_RESTART, mask WINCH
 *             SIGURG SA_ONSTACK|SA_SIGINFO, TTIN    SIGVTALRM SA_RESETHAND, mask PIPE
 *             RT+3 SA_NODEFER, mask RT+11           RT+4 all four flags, mask USR2,RT+12,RT+13
 *             SIGXFSZ ignored                       (RT+n is SIGRTMIN+n)
 *   masks     every thread blocks P = HUP,ALRM,PWR,RT+7,RT+8,RT+9; A adds TTIN, B TTOU,RT+14,
 *             C RT+15
 *   pending   thread-private: A has PWR (pthread_kill) and RT+7 (value 70), B has RT+8 three
 *             times (values 10, 20, 30), main has RT+9 (value 99); process-wide: HUP (kill, twice:
 *             one stays), ALRM (sigqueue, value 0x5a), RT+7 three times (values 1, 2, 3)
 *   altstacks main 80 KiB, A 68 KiB with SS_AUTODISARM, B none, C 72 KiB
 *   C is blocked in read on a pipe
 * After DIR/go: every action is compared with a snapshot of the kernel's view (rt_sigaction:
 * handler, flags, restorer, mask) and with what was asked for (sigaction()); each thread checks
 * its mask, altstack and pending sets (/proc/self/task/TID/status SigPnd, ShdPnd), then takes
 * its signals with sigwaitinfo and checks signal, code, value, sender and order; nothing may be
 * left pending. Then each action is exercised: SIGUSR1's handler gets its value and runs with
 * its mask; SIGUSR2 to C runs the handler and C's read goes on (SA_RESTART) and returns the byte
 * written after; SIGURG and RT+4 run on the altstack; SIGVTALRM's handler runs once and the
 * action is SIG_DFL afterwards; RT+3 raised in its own handler nests (SA_NODEFER); SIGXFSZ
 * does nothing. DIR/result gets ok/fail; exit status 0, or 1 on any difference.
 * --self-test-corrupt expects SIGUSR1 without SA_SIGINFO: the check must fail. */
#include "wl_check.h"

#include <pthread.h>
#include <stdatomic.h>

#define RT(n) (SIGRTMIN + (n))
#ifndef SS_AUTODISARM
#define SS_AUTODISARM ((int)(1U << 31)) /* linux/signal.h, which clashes with glibc's */
#endif

struct k_sigaction { /* the kernel's struct sigaction on x86-64 */
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
};

struct action {
    int sig;
    int flags; /* SA_RESTORER is glibc's own and always there */
    void* handler;
    int mask[3];
};

struct thread {
    const char* name;
    pthread_t handle;
    pid_t tid;
    uint64_t mask;
    size_t alt_size; /* 0: no altstack */
    int alt_flags;
    uint8_t* alt;
    _Atomic int done;
    struct wl_report report;
};

enum { t_main, t_a, t_b, t_c, t_count };
static struct thread g_t[t_count] = {
    {.name = "main", .alt_size = 80 << 10}, {.name = "A", .alt_size = 68 << 10, .alt_flags = SS_AUTODISARM},
    {.name = "B"}, {.name = "C", .alt_size = 72 << 10}};
static const char* g_dir;
static int g_corrupt;
static _Atomic int g_phase;
static int g_pipe[2];
static struct k_sigaction g_snapshot[65];
static int g_tkill_code; /* si_code of a tgkill: SI_TKILL, though some kernels say SI_USER */

/* What the handlers saw, read by the main thread after they ran. */
static volatile sig_atomic_t h_count[65];
static volatile int h_code[65], h_value[65], h_pid[65], h_tid[65], h_onstack[65];
static volatile uint64_t h_mask[65];
static volatile uintptr_t h_addr[65];
static volatile int h_depth, h_max_depth;

static void note(int sig, siginfo_t* si) {
    char local;
    stack_t cur;
    h_count[sig]++;
    h_tid[sig] = wl_gettid();
    h_mask[sig] = wl_raw_sigmask();
    h_addr[sig] = (uintptr_t)&local;
    h_onstack[sig] = sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_ONSTACK);
    if (si) {
        h_code[sig] = si->si_code;
        h_value[sig] = si->si_value.sival_int;
        h_pid[sig] = si->si_pid;
    }
}

static void on_info(int sig, siginfo_t* si, void* uc) {
    (void)uc;
    note(sig, si);
}

static void on_plain(int sig) { note(sig, NULL); }

static void on_nodefer(int sig) {
    int depth = ++h_depth;
    if (depth > h_max_depth) h_max_depth = depth;
    if (depth == 1) {
        note(sig, NULL);
        raise(sig); /* not blocked in its own handler: runs nested, right now */
    }
    h_depth--;
}

static struct action g_actions[] = {
    {SIGUSR1, SA_SIGINFO, (void*)on_info, {SIGHUP, 0 /* RT(10) */, 0}},
    {SIGUSR2, SA_RESTART, (void*)on_plain, {SIGWINCH, 0, 0}},
    {SIGURG, SA_ONSTACK | SA_SIGINFO, (void*)on_info, {SIGTTIN, 0, 0}},
    {SIGVTALRM, SA_RESETHAND, (void*)on_plain, {SIGPIPE, 0, 0}},
    {0 /* RT(3) */, SA_NODEFER, (void*)on_nodefer, {0 /* RT(11) */, 0, 0}},
    {0 /* RT(4) */, SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER, (void*)on_info, {SIGUSR2, 0, 0}},
    {SIGXFSZ, 0, (void*)SIG_IGN, {0, 0, 0}},
};
enum { k_actions = sizeof g_actions / sizeof g_actions[0] };

/* SIGRTMIN is not a constant: the table gets its real-time signals here. */
static void fill_actions(void) {
    g_actions[0].mask[1] = RT(10);
    g_actions[4].sig = RT(3);
    g_actions[4].mask[0] = RT(11);
    g_actions[5].sig = RT(4);
    g_actions[5].mask[1] = RT(12);
    g_actions[5].mask[2] = RT(13);
}

static uint64_t action_mask(const struct action* a) {
    uint64_t m = 0;
    for (int i = 0; i < 3; ++i)
        if (a->mask[i]) m |= wl_sigbit(a->mask[i]);
    return m;
}

static uint64_t pending_set(void) {
    return wl_sigbit(SIGHUP) | wl_sigbit(SIGALRM) | wl_sigbit(SIGPWR) | wl_sigbit(RT(7)) | wl_sigbit(RT(8)) |
           wl_sigbit(RT(9));
}

static int raw_sigaction(int sig, const struct k_sigaction* act, struct k_sigaction* old) {
    return (int)syscall(SYS_rt_sigaction, sig, act, old, 8);
}

static void set_raw_mask(uint64_t mask) { syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof mask); }

static const char* set_str(uint64_t set) { /* one of four rotating buffers, for messages */
    static char bufs[4][256];
    static int next;
    char* b = bufs[next++ % 4];
    return wl_sigset_str(set, b, 256);
}

/* ---- per-thread state ---- */

static void setup_thread_state(struct thread* t) {
    t->tid = wl_gettid();
    set_raw_mask(t->mask);
    if (t->alt_size == 0) return;
    t->alt = malloc(t->alt_size);
    if (!t->alt) wl_die("wl_signals", "malloc");
    stack_t ss = {.ss_sp = t->alt, .ss_flags = t->alt_flags, .ss_size = t->alt_size};
    if (sigaltstack(&ss, NULL) != 0) wl_die("wl_signals", "sigaltstack");
}

static void check_pending_sets(struct thread* t, uint64_t want_private) {
    uint64_t private_set = ~0ull, shared = ~0ull;
    if (wl_status_hex(t->tid, "SigPnd", &private_set) != 0 || wl_status_hex(t->tid, "ShdPnd", &shared) != 0) {
        wl_report_add(&t->report, "cannot read /proc/self/task/%d/status", (int)t->tid);
        return;
    }
    if (private_set != want_private)
        wl_report_add(&t->report, "thread-private pending: expected %s, found %s", set_str(want_private), set_str(private_set));
    uint64_t want_shared = wl_sigbit(SIGHUP) | wl_sigbit(SIGALRM) | wl_sigbit(RT(7));
    if (shared != want_shared)
        wl_report_add(&t->report, "process-wide pending: expected %s, found %s", set_str(want_shared), set_str(shared));
}

static void check_own_state(struct thread* t) {
    struct wl_report* r = &t->report;
    if (wl_gettid() != t->tid) wl_report_add(r, "gettid: expected %d, found %d", (int)t->tid, (int)wl_gettid());
    uint64_t mask = wl_raw_sigmask();
    if (mask != t->mask) wl_report_add(r, "blocked mask: expected %s, found %s", set_str(t->mask), set_str(mask));
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) {
        wl_report_add(r, "sigaltstack: %s", strerror(errno));
        return;
    }
    void* want_sp = t->alt_size ? t->alt : NULL;
    int want_flags = t->alt_size ? t->alt_flags : SS_DISABLE;
    if (cur.ss_sp != want_sp || cur.ss_size != t->alt_size || cur.ss_flags != want_flags)
        wl_report_add(r, "altstack: expected sp %p size %zu flags %#x, found sp %p size %zu flags %#x", want_sp, t->alt_size,
                      want_flags, cur.ss_sp, cur.ss_size, cur.ss_flags);
}

/* Takes SIG with sigwaitinfo and checks what comes with it. */
static void expect_signal(struct thread* t, int sig, int code, int value) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    struct timespec zero = {0, 0};
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int got = sigtimedwait(&set, &si, &zero);
    if (got != sig) {
        wl_report_add(&t->report, "signal %d (%s): expected pending, sigtimedwait says %s", sig, set_str(wl_sigbit(sig)),
                      got < 0 ? strerror(errno) : "another signal");
        return;
    }
    int value_ok = code != SI_QUEUE || si.si_value.sival_int == value;
    if (si.si_code != code || !value_ok || si.si_pid != getpid() || si.si_uid != getuid())
        wl_report_add(&t->report, "signal %s: expected code %d value %d from pid %d uid %d, got code %d value %d pid %d uid %d",
                      set_str(wl_sigbit(sig)), code, value, (int)getpid(), (int)getuid(), si.si_code, si.si_value.sival_int,
                      (int)si.si_pid, (int)si.si_uid);
}

static void expect_none(struct thread* t, uint64_t set_bits) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig <= 64; ++sig)
        if ((set_bits & wl_sigbit(sig)) && sig != 32 && sig != 33) sigaddset(&set, sig);
    struct timespec zero = {0, 0};
    siginfo_t si;
    int got;
    while ((got = sigtimedwait(&set, &si, &zero)) > 0)
        wl_report_add(&t->report, "unexpected pending signal %s (code %d value %d)", set_str(wl_sigbit(got)), si.si_code,
                      si.si_value.sival_int);
}

static void* thread_main(void* arg) {
    struct thread* t = arg;
    setup_thread_state(t);
    atomic_store(&t->done, -1); /* set up */
    if (t == &g_t[t_c]) {
        uint8_t b = 0;
        ssize_t n = read(g_pipe[0], &b, 1); /* blocked through the checkpoint and the SIGUSR2 */
        if (n != 1 || b != 'R')
            wl_report_add(&t->report, "read on the pipe: expected 1 byte 'R', got %zd (%s)", n, n < 0 ? strerror(errno) : "");
        check_own_state(t);
        atomic_store(&t->done, 1);
    } else {
        while (atomic_load(&g_phase) < 1) wl_sleep_ms(5);
        check_own_state(t);
        if (t == &g_t[t_a]) {
            check_pending_sets(t, wl_sigbit(SIGPWR) | wl_sigbit(RT(7)));
            expect_signal(t, SIGPWR, g_tkill_code, 0);
            expect_signal(t, RT(7), SI_QUEUE, 70); /* its own first: private queue before shared */
        } else {
            check_pending_sets(t, wl_sigbit(RT(8)));
            for (int v = 10; v <= 30; v += 10) expect_signal(t, RT(8), SI_QUEUE, v);
        }
        atomic_store(&t->done, 1);
    }
    for (;;) wl_sleep_ms(1000); /* the process exits under it */
    return NULL;
}

/* ---- the main thread ---- */

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

/* What this kernel puts in si_code for tgkill (pthread_kill, raise). */
static void calibrate_tkill(void) {
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, RT(16));
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (pthread_sigmask(SIG_BLOCK, &set, &old) != 0 || pthread_kill(pthread_self(), RT(16)) != 0 ||
        sigwaitinfo(&set, &si) != RT(16) || pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
        wl_die("wl_signals", "tgkill calibration");
    g_tkill_code = si.si_code;
}

static void setup(void) {
    calibrate_tkill();
    fill_actions();
    for (int i = 0; i < k_actions; ++i) {
        const struct action* a = &g_actions[i];
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        if (a->flags & SA_SIGINFO) sa.sa_sigaction = (void (*)(int, siginfo_t*, void*))a->handler;
        else sa.sa_handler = (void (*)(int))a->handler;
        sa.sa_flags = a->flags;
        sigemptyset(&sa.sa_mask);
        for (int k = 0; k < 3; ++k)
            if (a->mask[k]) sigaddset(&sa.sa_mask, a->mask[k]);
        if (sigaction(a->sig, &sa, NULL) != 0) wl_die("wl_signals", "sigaction");
    }
    uint64_t p = pending_set();
    g_t[t_main].mask = p;
    g_t[t_a].mask = p | wl_sigbit(SIGTTIN);
    g_t[t_b].mask = p | wl_sigbit(SIGTTOU) | wl_sigbit(RT(14));
    g_t[t_c].mask = p | wl_sigbit(RT(15));
    setup_thread_state(&g_t[t_main]); /* P blocked before the threads start */
    g_t[t_main].handle = pthread_self();
    if (pipe2(g_pipe, O_CLOEXEC) != 0) wl_die("wl_signals", "pipe2");
    for (int i = t_a; i < t_count; ++i) {
        int rc = pthread_create(&g_t[i].handle, NULL, thread_main, &g_t[i]);
        if (rc != 0) errno = rc, wl_die("wl_signals", "pthread_create");
    }
    for (int i = t_a; i < t_count; ++i)
        while (atomic_load(&g_t[i].done) != -1) wl_sleep_ms(1);
    for (int waited = 0; wl_blocked_syscall(g_t[t_c].tid) != SYS_read; waited++) {
        if (waited > 5000) errno = ETIMEDOUT, wl_die("wl_signals", "thread C blocking in read");
        wl_sleep_ms(1);
    }
    union sigval v;
    if (pthread_kill(g_t[t_a].handle, SIGPWR) != 0) wl_die("wl_signals", "pthread_kill");
    v.sival_int = 70;
    if (pthread_sigqueue(g_t[t_a].handle, RT(7), v) != 0) wl_die("wl_signals", "pthread_sigqueue");
    for (v.sival_int = 10; v.sival_int <= 30; v.sival_int += 10)
        if (pthread_sigqueue(g_t[t_b].handle, RT(8), v) != 0) wl_die("wl_signals", "pthread_sigqueue");
    v.sival_int = 99;
    if (pthread_sigqueue(pthread_self(), RT(9), v) != 0) wl_die("wl_signals", "pthread_sigqueue");
    if (kill(getpid(), SIGHUP) != 0 || kill(getpid(), SIGHUP) != 0) wl_die("wl_signals", "kill");
    v.sival_int = 0x5a;
    if (sigqueue(getpid(), SIGALRM, v) != 0) wl_die("wl_signals", "sigqueue");
    for (v.sival_int = 1; v.sival_int <= 3; v.sival_int++)
        if (sigqueue(getpid(), RT(7), v) != 0) wl_die("wl_signals", "sigqueue");
    for (int sig = 1; sig <= 64; ++sig)
        if (raw_sigaction(sig, NULL, &g_snapshot[sig]) != 0) wl_die("wl_signals", "rt_sigaction");
}

static void check_actions(struct wl_report* r) {
    for (int sig = 1; sig <= 64; ++sig) {
        struct k_sigaction now, *was = &g_snapshot[sig];
        if (raw_sigaction(sig, NULL, &now) != 0) {
            wl_report_add(r, "rt_sigaction(%d): %s", sig, strerror(errno));
            continue;
        }
        if (now.handler != was->handler || now.flags != was->flags || now.restorer != was->restorer || now.mask != was->mask)
            wl_report_add(r, "action of signal %d (%s): expected handler %p flags %#lx restorer %p mask %s, found %p %#lx %p %s",
                          sig, set_str(wl_sigbit(sig)), was->handler, was->flags, was->restorer, set_str(was->mask),
                          now.handler, now.flags, now.restorer, set_str(now.mask));
    }
    for (int i = 0; i < k_actions; ++i) {
        const struct action* a = &g_actions[i];
        struct sigaction sa;
        struct k_sigaction k;
        if (sigaction(a->sig, NULL, &sa) != 0 || raw_sigaction(a->sig, NULL, &k) != 0) {
            wl_report_add(r, "sigaction(%d): %s", a->sig, strerror(errno));
            continue;
        }
        int want_flags = (a->flags | SA_RESTORER) ^ (g_corrupt && i == 0 ? SA_SIGINFO : 0);
        void* handler = (a->flags & SA_SIGINFO) ? (void*)sa.sa_sigaction : (void*)sa.sa_handler;
        if (handler != a->handler || sa.sa_flags != want_flags || k.mask != action_mask(a))
            wl_report_add(r, "sigaction(%s): expected handler %p flags %#x mask %s, found %p %#x %s", set_str(wl_sigbit(a->sig)),
                          a->handler, want_flags, set_str(action_mask(a)), handler, sa.sa_flags, set_str(k.mask));
    }
}

/* What a handler saw, against what it should have. */
static void expect_handler(struct wl_report* r, int sig, const struct thread* t, uint64_t mask, int code, int value, int onstack) {
    const char* name = set_str(wl_sigbit(sig));
    if (h_count[sig] != 1) {
        wl_report_add(r, "handler of %s: ran %d time(s), expected once", name, (int)h_count[sig]);
        return;
    }
    if (h_tid[sig] != t->tid) wl_report_add(r, "handler of %s: ran in tid %d, expected %d", name, h_tid[sig], (int)t->tid);
    if (h_mask[sig] != mask)
        wl_report_add(r, "handler of %s: ran with mask %s, expected %s", name, set_str(h_mask[sig]), set_str(mask));
    if (code && (h_code[sig] != code || h_value[sig] != value || h_pid[sig] != getpid()))
        wl_report_add(r, "handler of %s: siginfo code %d value %d pid %d, expected %d %d %d", name, h_code[sig], h_value[sig],
                      h_pid[sig], code, value, (int)getpid());
    uintptr_t lo = (uintptr_t)t->alt, hi = lo + t->alt_size;
    int on_alt = t->alt && h_addr[sig] >= lo && h_addr[sig] < hi && h_onstack[sig];
    if (on_alt != onstack)
        wl_report_add(r, "handler of %s: %s the altstack [%#lx, %#lx) (a local at %#lx, SS_ONSTACK %d)", name,
                      onstack ? "expected on" : "expected off", (unsigned long)lo, (unsigned long)hi,
                      (unsigned long)h_addr[sig], h_onstack[sig]);
}

static void exercise_actions(struct wl_report* r) {
    struct thread* m = &g_t[t_main];
    union sigval v = {.sival_int = 0x5151};
    pthread_sigqueue(pthread_self(), SIGUSR1, v);
    expect_handler(r, SIGUSR1, m, m->mask | wl_sigbit(SIGUSR1) | wl_sigbit(SIGHUP) | wl_sigbit(RT(10)), SI_QUEUE, 0x5151, 0);
    raise(SIGURG);
    expect_handler(r, SIGURG, m, m->mask | wl_sigbit(SIGURG) | wl_sigbit(SIGTTIN), g_tkill_code, 0, 1);
    raise(SIGVTALRM);
    expect_handler(r, SIGVTALRM, m, m->mask | wl_sigbit(SIGVTALRM) | wl_sigbit(SIGPIPE), 0, 0, 0);
    struct sigaction sa;
    if (sigaction(SIGVTALRM, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
        wl_report_add(r, "SIGVTALRM (SA_RESETHAND): action not reset to SIG_DFL after delivery");
    raise(RT(3));
    expect_handler(r, RT(3), m, m->mask | wl_sigbit(RT(11)), 0, 0, 0);
    if (h_max_depth != 2) wl_report_add(r, "RT+3 (SA_NODEFER): raised in its handler, nesting depth %d, expected 2", h_max_depth);
    v.sival_int = 0x4444;
    pthread_sigqueue(pthread_self(), RT(4), v);
    expect_handler(r, RT(4), m, m->mask | wl_sigbit(SIGUSR2) | wl_sigbit(RT(12)) | wl_sigbit(RT(13)), SI_QUEUE, 0x4444, 1);
    raise(SIGXFSZ); /* ignored: nothing happens, nothing stays pending */
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGXFSZ)) wl_report_add(r, "SIGXFSZ (ignored) is pending");

    /* SA_RESTART: C's read runs the handler and goes on with the read. */
    struct thread* c = &g_t[t_c];
    pthread_kill(c->handle, SIGUSR2);
    for (int i = 0; i < 2000 && h_count[SIGUSR2] == 0; ++i) wl_sleep_ms(1);
    expect_handler(r, SIGUSR2, c, c->mask | wl_sigbit(SIGUSR2) | wl_sigbit(SIGWINCH), 0, 0, 0);
    long nr = -1;
    for (int i = 0; i < 1000 && (nr = wl_blocked_syscall(c->tid)) != SYS_read; ++i) wl_sleep_ms(1);
    if (nr != SYS_read) wl_report_add(r, "thread C after SIGUSR2 (SA_RESTART): not blocked in read again (syscall %ld)", nr);
    if (write(g_pipe[1], "R", 1) != 1) wl_report_add(r, "write to C's pipe: %s", strerror(errno));
}

static int wait_threads(int from, int to) {
    for (int i = from; i <= to; ++i)
        for (int waited = 0; atomic_load(&g_t[i].done) != 1; waited += 5) {
            if (waited > 10000) return -1;
            wl_sleep_ms(5);
        }
    return 0;
}

static unsigned check_all(void) {
    struct thread* m = &g_t[t_main];
    struct wl_report* r = &m->report;
    check_actions(r);
    check_own_state(m);
    check_pending_sets(m, wl_sigbit(RT(9)));
    atomic_store(&g_phase, 1);
    if (wait_threads(t_a, t_b) != 0) wl_report_add(r, "threads A and B did not finish their checks within 10 s");
    expect_signal(m, RT(9), SI_QUEUE, 99);
    expect_signal(m, SIGHUP, SI_USER, 0); /* sent twice, pending once */
    expect_signal(m, SIGALRM, SI_QUEUE, 0x5a);
    for (int v = 1; v <= 3; ++v) expect_signal(m, RT(7), SI_QUEUE, v);
    expect_none(m, ~0ull);
    for (int i = 0; i < t_count; ++i) {
        uint64_t private_set = 0, shared = 0;
        wl_status_hex(g_t[i].tid, "SigPnd", &private_set);
        wl_status_hex(g_t[i].tid, "ShdPnd", &shared);
        if (private_set || shared)
            wl_report_add(r, "thread %s: still pending after every signal was taken: private %s, shared %s", g_t[i].name,
                          set_str(private_set), set_str(shared));
    }
    exercise_actions(r);
    if (wait_threads(t_c, t_c) != 0) wl_report_add(r, "thread C did not return from its read within 10 s");
    unsigned differences = 0;
    for (int i = 0; i < t_count; ++i) {
        char who[64];
        snprintf(who, sizeof who, "wl_signals: thread %s (tid %d)", g_t[i].name, (int)g_t[i].tid);
        wl_report_print(who, &g_t[i].report);
        differences += g_t[i].report.count;
    }
    return differences;
}

int main(int argc, char** argv) {
    int self_test = 0, argi = 1;
    if (argi < argc && strcmp(argv[argi], "--self-test") == 0) self_test = 1, argi++;
    else if (argi < argc && strcmp(argv[argi], "--self-test-corrupt") == 0) self_test = g_corrupt = 1, argi++;
    static char tmpdir[] = "/tmp/wl_signals.XXXXXX";
    int own_dir = 0;
    if (argi < argc) {
        g_dir = argv[argi];
    } else if (self_test) {
        if (!mkdtemp(tmpdir)) wl_die("wl_signals", "mkdtemp");
        g_dir = tmpdir;
        own_dir = 1;
    } else {
        fprintf(stderr, "usage: wl_signals DIR | --self-test [DIR] | --self-test-corrupt [DIR]\n");
        return 2;
    }
    setup();
    char text[64];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_dir, "ready", text) != 0) wl_die("wl_signals", "write ready");
    printf("wl_signals: ready, pid %d\n", (int)getpid());
    fflush(stdout);
    if (self_test && wl_write_file(g_dir, "go", "") != 0) wl_die("wl_signals", "write go");
    wl_wait_go(g_dir, "wl_signals", 10);
    int status = wl_verdict(g_dir, "wl_signals", check_all());
    if (own_dir) wl_remove_dir(g_dir, NULL);
    exit(status);
}
