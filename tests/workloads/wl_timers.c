/* wl_timers DIR | --self-test | --self-test-corrupt
 *
 * Sets up POSIX timers with gaps in their ids (two of five deleted): a periodic CLOCK_MONOTONIC
 * timer whose blocked signal is queued and whose last delivery had 5 overruns; a CLOCK_REALTIME
 * timer with a 1 h interval and 3 overruns, next expiry in 30 min; a one-shot CLOCK_REALTIME
 * timer aimed at a worker thread (SIGEV_THREAD_ID); a CLOCK_BOOTTIME timer without
 * notification; a CPU-time timer; and the three interval timers (alarm, virtual, profiling).
 * Writes DIR/ready, waits for DIR/go, then checks: /proc/self/timers is the same, the deleted
 * ids are still unknown, each overrun is what it was, the queued signal is there once and comes
 * from its timer, intervals are exact and remaining times went down by no more than the time
 * that passed. Prints "wl_timers: ok" and exits 0, or names every difference and exits 1.
 * --self-test does the same without waiting for anyone: the checker must pass on an untouched
 * process; --self-test-corrupt re-arms one timer first (which clears its overrun): it must fail. */
#include "wl_check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define SIG_QUEUED (SIGRTMIN)
#define SIG_LONG (SIGRTMIN + 1)
#define SIG_THREAD SIGUSR1
#define QUEUED_OVERRUN 5
#define LONG_OVERRUN 3
#define NS 1000000000LL

static const char* g_dir;
static unsigned g_fail;
static timer_t g_t[5];  /* [1] and [3] are deleted */
static timer_t g_queued, g_long, g_thread, g_none, g_cpu;
static pid_t g_worker_tid;
static atomic_int g_stop;
static char g_proc_before[8192];
static struct itimerspec g_before[5];
static struct itimerval g_itimer_before[3];
static long long g_t_ready;

static void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wl_timers: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_fail++;
}

static long long now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * NS + ts.tv_nsec;
}

static long long ts_ns(struct timespec t) { return t.tv_sec * NS + t.tv_nsec; }
static long long tv_ns(struct timeval t) { return t.tv_sec * NS + t.tv_usec * 1000LL; }

static timer_t make_timer(clockid_t clock, int notify, int signo, long long sival, pid_t tid) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = notify;
    ev.sigev_signo = signo;
    ev.sigev_value.sival_ptr = (void*)(intptr_t)sival;
    if (notify & SIGEV_THREAD_ID) ev._sigev_un._tid = tid;
    timer_t t;
    if (timer_create(clock, &ev, &t) != 0) wl_die("wl_timers", "timer_create");
    return t;
}

/* Arms a periodic timer in the past on its clock and takes its signal: the kernel forwards it
 * and records the missed expiries as the overrun of that delivery. */
static void make_overrun(timer_t t, clockid_t clock, int signo, long long interval, long long next_in, int overrun) {
    long long first = now_ns(clock) + next_in - (long long)(overrun + 1) * interval;
    struct itimerspec its = {{interval / NS, interval % NS}, {first / NS, first % NS}};
    if (timer_settime(t, TIMER_ABSTIME, &its, NULL) != 0) wl_die("wl_timers", "timer_settime abs");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    siginfo_t si;
    if (sigwaitinfo(&set, &si) != signo) wl_die("wl_timers", "sigwaitinfo");
    if (timer_getoverrun(t) != overrun) {
        fprintf(stderr, "wl_timers: setup: overrun %d, wanted %d\n", timer_getoverrun(t), overrun);
        exit(2);
    }
}

static void* worker(void* arg) {
    (void)arg;
    g_worker_tid = (pid_t)syscall(SYS_gettid);
    while (!atomic_load(&g_stop)) wl_sleep_ms(5);
    return NULL;
}

static void read_proc_timers(char* out, size_t size) {
    FILE* f = fopen("/proc/self/timers", "r");
    if (!f) wl_die("wl_timers", "/proc/self/timers");
    size_t n = fread(out, 1, size - 1, f);
    out[n] = 0;
    fclose(f);
}

static int compare_entries(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

/* The entries of /proc/self/timers (4 lines each) one per line, sorted: creation order, which
 * the listing follows, is not part of a timer. */
static void normalize(char* text) {
    char copy[8192];
    char* entries[32];
    int n = 0, lines = 0;
    snprintf(copy, sizeof copy, "%s", text);
    for (char* p = copy; *p; ++p) {
        if (lines % 4 == 0 && (p == copy || p[-1] == 0) && n < 32) entries[n++] = p;
        if (*p == '\n') *p = ++lines % 4 == 0 ? 0 : ' ';
    }
    qsort(entries, (size_t)n, sizeof entries[0], compare_entries);
    text[0] = 0;
    for (int i = 0; i < n; ++i) {
        strcat(text, entries[i]);
        strcat(text, "\n");
    }
}

static void setup(void) {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIG_QUEUED);
    sigaddset(&block, SIG_LONG);
    sigaddset(&block, SIG_THREAD);
    if (sigprocmask(SIG_BLOCK, &block, NULL) != 0) wl_die("wl_timers", "sigprocmask");
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0) wl_die("wl_timers", "pthread_create");
    while (!g_worker_tid) wl_sleep_ms(1);

    for (int i = 0; i < 5; ++i) g_t[i] = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
    timer_delete(g_t[1]);
    timer_delete(g_t[3]);
    g_queued = make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_QUEUED, 0xA11CE, 0);
    g_long = make_timer(CLOCK_REALTIME, SIGEV_SIGNAL, SIG_LONG, 0x10C0, 0);
    g_thread = make_timer(CLOCK_REALTIME, SIGEV_SIGNAL | SIGEV_THREAD_ID, SIG_THREAD, 0xB0B, g_worker_tid);
    g_none = make_timer(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0, 0);
    g_cpu = make_timer(CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, 0, 0, 0);

    /* Overrun 5, next expiry in 100 ms: by the time we are ready its signal is queued. */
    make_overrun(g_queued, CLOCK_MONOTONIC, SIG_QUEUED, 200 * 1000000LL, 100 * 1000000LL, QUEUED_OVERRUN);
    make_overrun(g_long, CLOCK_REALTIME, SIG_LONG, 3600 * NS, 1800 * NS, LONG_OVERRUN);
    struct itimerspec once = {{0, 0}, {3600, 0}};
    struct itimerspec none = {{70, 0}, {50, 0}};
    struct itimerspec cpu = {{2, 0}, {100, 0}};
    if (timer_settime(g_thread, 0, &once, NULL) || timer_settime(g_none, 0, &none, NULL) ||
        timer_settime(g_cpu, 0, &cpu, NULL))
        wl_die("wl_timers", "timer_settime");

    struct itimerval real = {{50, 0}, {40, 0}}, virt = {{3, 0}, {30, 0}}, prof = {{4, 0}, {40, 0}};
    if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
        setitimer(ITIMER_PROF, &prof, NULL))
        wl_die("wl_timers", "setitimer");

    wl_sleep_ms(250);
    sigset_t pending;
    sigpending(&pending);
    if (!sigismember(&pending, SIG_QUEUED)) {
        fprintf(stderr, "wl_timers: setup: the periodic timer's signal is not queued\n");
        exit(2);
    }
    timer_t all[5] = {g_queued, g_long, g_thread, g_none, g_cpu};
    for (int i = 0; i < 5; ++i) timer_gettime(all[i], &g_before[i]);
    for (int i = 0; i < 3; ++i) getitimer(i, &g_itimer_before[i]);
    read_proc_timers(g_proc_before, sizeof g_proc_before);
    normalize(g_proc_before);
    g_t_ready = now_ns(CLOCK_MONOTONIC);
}

static void check_remaining(const char* what, long long before, long long after, long long elapsed) {
    if (after > before + 1000000 || after < before - elapsed - 200000000LL)
        fail("%s: %lld ns left, had %lld ns %lld ns ago", what, after, before, elapsed);
}

static void check_timers(void) {
    long long elapsed = now_ns(CLOCK_MONOTONIC) - g_t_ready;
    char after[8192];
    read_proc_timers(after, sizeof after);
    normalize(after);
    if (strcmp(after, g_proc_before) != 0) fail("/proc/self/timers differs:\n--- before\n%s--- after\n%s", g_proc_before, after);
    struct itimerspec its;
    if (timer_gettime(g_t[1], &its) == 0 || timer_gettime(g_t[3], &its) == 0) fail("a deleted timer id exists again");
    if (timer_gettime(g_t[0], &its) != 0 || timer_gettime(g_t[4], &its) != 0) fail("timer 0 or 4 is gone");

    if (timer_getoverrun(g_queued) != QUEUED_OVERRUN) fail("queued timer: overrun %d, was %d", timer_getoverrun(g_queued), QUEUED_OVERRUN);
    if (timer_getoverrun(g_long) != LONG_OVERRUN) fail("long timer: overrun %d, was %d", timer_getoverrun(g_long), LONG_OVERRUN);

    timer_t all[5] = {g_queued, g_long, g_thread, g_none, g_cpu};
    const char* names[5] = {"queued timer", "long timer", "thread timer", "boottime timer", "cpu timer"};
    for (int i = 1; i < 5; ++i) {
        timer_gettime(all[i], &its);
        if (ts_ns(its.it_interval) != ts_ns(g_before[i].it_interval)) fail("%s: interval changed", names[i]);
        check_remaining(names[i], ts_ns(g_before[i].it_value), ts_ns(its.it_value), elapsed);
    }
    for (int i = 0; i < 3; ++i) {
        struct itimerval v;
        getitimer(i, &v);
        if (tv_ns(v.it_interval) != tv_ns(g_itimer_before[i].it_interval)) fail("itimer %d: interval changed", i);
        check_remaining(i == 0 ? "ITIMER_REAL" : i == 1 ? "ITIMER_VIRTUAL" : "ITIMER_PROF",
                        tv_ns(g_itimer_before[i].it_value), tv_ns(v.it_value), elapsed);
    }

    /* The queued signal is there, once, and it is the timer's own. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIG_QUEUED);
    siginfo_t si;
    struct timespec zero = {0, 0};
    if (sigtimedwait(&set, &si, &zero) != SIG_QUEUED) {
        fail("queued timer: its signal is not queued any more");
        return;
    }
    if (si.si_code != SI_TIMER || si.si_value.sival_ptr != (void*)0xA11CE) fail("queued timer: signal with code %d value %p", si.si_code, si.si_value.sival_ptr);
    timer_gettime(g_queued, &its);
    if (ts_ns(its.it_interval) != 200 * 1000000LL) fail("queued timer: interval changed");
    /* Unless its next expiry is right now, a second signal can only be a copy. */
    if (ts_ns(its.it_value) > 2000000 && sigtimedwait(&set, &si, &zero) == SIG_QUEUED)
        fail("queued timer: its signal was queued twice");
}

static void wait_for_go(void) {
    char go[PATH_MAX];
    wl_path(go, sizeof go, g_dir, "go");
    while (!wl_exists(go)) {
        if (!wl_exists(g_dir)) exit(3);
        wl_sleep_ms(10);
    }
}

int main(int argc, char** argv) {
    int corrupt = argc == 2 && strcmp(argv[1], "--self-test-corrupt") == 0;
    int self_test = corrupt || (argc == 2 && strcmp(argv[1], "--self-test") == 0);
    static char tmpdir[] = "/tmp/wl_timers.XXXXXX";
    if (self_test) {
        if (!mkdtemp(tmpdir)) wl_die("wl_timers", "mkdtemp");
        g_dir = tmpdir;
    } else if (argc == 2) {
        g_dir = argv[1];
    } else {
        fprintf(stderr, "usage: wl_timers DIR | --self-test | --self-test-corrupt\n");
        return 2;
    }
    setup();
    char text[32];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_dir, "ready", text) != 0) wl_die("wl_timers", "write ready");
    printf("wl_timers: ready, pid %d\n", (int)getpid());
    fflush(stdout);
    if (self_test && wl_write_file(g_dir, "go", "") != 0) wl_die("wl_timers", "write go");
    wait_for_go();
    if (corrupt) {
        struct itimerspec its;
        timer_gettime(g_long, &its);
        timer_settime(g_long, 0, &its, NULL);
    }
    check_timers();
    int status = wl_verdict(g_dir, "wl_timers", g_fail);
    if (self_test) wl_remove_dir(g_dir, NULL);
    atomic_store(&g_stop, 1);
    exit(status);
}
