/* wl_creds DIR | --self-test | --self-test-corrupt | --user-notif DIR
 *
 * Started as root, gives itself what cr.task.creds must carry over, with raw system calls so
 * that each thread keeps its own credentials:
 *  - main thread: uids 1000/1001/1002 (fs 1002), gids 2000/2001/2002 (fs 2002), groups 100 200
 *    300, capabilities kept over the uid change (SECBIT_KEEP_CAPS) and set to permitted
 *    {net_bind_service, kill, sys_nice}, effective {net_bind_service, kill}, inheritable
 *    {net_bind_service, sys_nice, sys_module}, ambient {net_bind_service}, bounding set without
 *    sys_module and mknod, securebits KEEP_CAPS|NOROOT, no_new_privs, two seccomp filters
 *    (acct fails with ENOMSG, syslog with EIDRM, the second with SECCOMP_FILTER_FLAG_LOG);
 *  - a second thread with uids 3001/3002/3003, gids 3000, no capabilities, no filter;
 *  - the process: limits (NOFILE 1000/4000, CPU, NPROC, MSGQUEUE, CORE), personality
 *    ADDR_NO_RANDOMIZE|UNAME26, child subreaper, not dumpable (the uid change did that);
 *  - a child with uid 4000, parent death signal SIGUSR2, dumpable again;
 *  - a child in seccomp strict mode, blocked in read() on a pipe.
 * Writes DIR/ready, waits for DIR/go, then compares everything with what it was (the status
 * lines of both threads, per-thread prctl values, limits) and checks the behaviour: the filters
 * still answer, the strict child dies of SIGKILL on its first forbidden call, the other child
 * reports its parent death signal. Prints "wl_creds: ok" and exits 0, or names every
 * difference and exits 1. DIR must be searchable and writable by uid 1002 and 4000.
 * --user-notif installs a SECCOMP_RET_USER_NOTIF filter instead, as a supervised process would
 * (its listener fd goes to the supervisor; here it is just closed), writes DIR/ready and waits:
 * cr must refuse to dump it. --self-test runs the checks on an untouched
 * process (they must pass), --self-test-corrupt changes the personality first (they must fail). */
#include "wl_check.h"

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define CAP(c) (1ull << (c))

static const char* g_dir;
static unsigned g_fail;
static atomic_int g_request; /* main asks, the worker answers in g_worker_report */
static atomic_int g_answered;
static atomic_int g_stop;
static pid_t g_worker_tid;
static char g_worker_report[256];
static pid_t g_child_pdeath, g_child_strict;
static int g_strict_pipe;

static void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wl_creds: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_fail++;
}

static void must(long rc, const char* what) {
    if (rc < 0) wl_die("wl_creds", what);
}

/* The per-thread values only the thread itself can ask for. */
static void thread_values(char* out, size_t size) {
    int pdeath = 0;
    prctl(PR_GET_PDEATHSIG, &pdeath);
    snprintf(out, size, "securebits %ld personality %#lx pdeathsig %d nnp %ld", syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0),
             (unsigned long)syscall(SYS_personality, 0xffffffffUL), pdeath, syscall(SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
}

static void* worker(void* arg) {
    (void)arg;
    /* Raw calls change this thread only (glibc's wrappers would change every thread). */
    must(syscall(SYS_setresgid, 3000, 3000, 3000), "worker setresgid");
    must(syscall(SYS_setresuid, 3001, 3002, 3003), "worker setresuid");
    g_worker_tid = (pid_t)syscall(SYS_gettid);
    while (!atomic_load(&g_stop)) {
        if (atomic_load(&g_request) != atomic_load(&g_answered)) {
            thread_values(g_worker_report, sizeof g_worker_report);
            atomic_store(&g_answered, atomic_load(&g_request));
        }
        wl_sleep_ms(2);
    }
    return NULL;
}

static void ask_worker(void) {
    int want = atomic_fetch_add(&g_request, 1) + 1;
    while (atomic_load(&g_answered) != want) wl_sleep_ms(1);
}

/* The credential lines of a status file, in file order. */
static void status_lines(pid_t tid, char* out, size_t size) {
    static const char* const keys[] = {"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
                                       "CapAmb:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:", NULL};
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE* f = fopen(path, "r");
    if (!f) wl_die("wl_creds", path);
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        for (int i = 0; keys[i]; ++i)
            if (strncmp(line, keys[i], strlen(keys[i])) == 0) strncat(out, line, size - strlen(out) - 1);
    fclose(f);
}

struct snapshot {
    char main_status[2048], worker_status[2048];
    char main_values[256], worker_values[256];
    struct rlimit limits[RLIM_NLIMITS];
    int dumpable, subreaper;
};

static void take_snapshot(struct snapshot* s) {
    status_lines((pid_t)syscall(SYS_gettid), s->main_status, sizeof s->main_status);
    status_lines(g_worker_tid, s->worker_status, sizeof s->worker_status);
    thread_values(s->main_values, sizeof s->main_values);
    ask_worker();
    snprintf(s->worker_values, sizeof s->worker_values, "%s", g_worker_report);
    for (int r = 0; r < RLIM_NLIMITS; ++r) getrlimit(r, &s->limits[r]);
    s->dumpable = prctl(PR_GET_DUMPABLE);
    prctl(PR_GET_CHILD_SUBREAPER, &s->subreaper);
}

static void install_filter(int nr, int err, unsigned flags) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    must(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog), "seccomp filter");
}

static int wait_go_or_parent_gone(void) {
    char go[PATH_MAX];
    wl_path(go, sizeof go, g_dir, "go");
    while (!wl_exists(go)) {
        if (!wl_exists(g_dir)) return 0;
        wl_sleep_ms(10);
    }
    return 1;
}

static void start_children(void) {
    g_child_pdeath = fork();
    must(g_child_pdeath, "fork");
    if (g_child_pdeath == 0) {
        must(syscall(SYS_setresgid, 4000, 4000, 4000), "child setresgid");
        must(syscall(SYS_setresuid, 4000, 4000, 4000), "child setresuid");
        must(prctl(PR_SET_PDEATHSIG, SIGUSR2), "PR_SET_PDEATHSIG");
        must(prctl(PR_SET_DUMPABLE, 1), "PR_SET_DUMPABLE");
        if (!wait_go_or_parent_gone()) _exit(3);
        int sig = 0;
        prctl(PR_GET_PDEATHSIG, &sig);
        if (sig != SIGUSR2) _exit(10);
        if (prctl(PR_GET_DUMPABLE) != 1) _exit(11);
        if (getuid() != 4000 || geteuid() != 4000) _exit(12);
        _exit(0);
    }
    int p[2];
    must(pipe(p), "pipe");
    g_child_strict = fork();
    must(g_child_strict, "fork");
    if (g_child_strict == 0) {
        close(p[1]);
        must(syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, NULL), "seccomp strict");
        char c;
        syscall(SYS_read, p[0], &c, 1);
        syscall(SYS_getpid); /* SIGKILL here in strict mode */
        syscall(SYS_exit, 7);
    }
    close(p[0]);
    g_strict_pipe = p[1];
}

static void setup(void) {
    struct rlimit lim[] = {{1000, 4000}, {100000, 200000}, {5000, 6000}, {12345, 54321}, {0, 1 << 20}};
    int res[] = {RLIMIT_NOFILE, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_MSGQUEUE, RLIMIT_CORE};
    for (int i = 0; i < 5; ++i) must(setrlimit(res[i], &lim[i]), "setrlimit");
    must(personality(ADDR_NO_RANDOMIZE | UNAME26), "personality");
    must(prctl(PR_SET_CHILD_SUBREAPER, 1), "PR_SET_CHILD_SUBREAPER");
    start_children();

    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0) wl_die("wl_creds", "pthread_create");
    while (!g_worker_tid) wl_sleep_ms(1);

    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    must(syscall(SYS_capget, &hdr, data), "capget");
    uint64_t inh = CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_SYS_NICE) | CAP(CAP_SYS_MODULE);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)(inh >> 32);
    must(syscall(SYS_capset, &hdr, data), "capset inheritable");
    must(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE), "PR_CAPBSET_DROP");
    must(prctl(PR_CAPBSET_DROP, CAP_MKNOD), "PR_CAPBSET_DROP");
    gid_t groups[] = {100, 200, 300};
    must(syscall(SYS_setgroups, 3, groups), "setgroups");
    must(syscall(SYS_prctl, PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NOROOT, 0, 0, 0), "PR_SET_SECUREBITS");
    must(syscall(SYS_setresgid, 2000, 2001, 2002), "setresgid");
    syscall(SYS_setfsgid, 2002);
    must(syscall(SYS_setresuid, 1000, 1001, 1002), "setresuid");
    syscall(SYS_setfsuid, 1002);
    uint64_t prm = CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_KILL) | CAP(CAP_SYS_NICE);
    uint64_t eff = CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_KILL);
    data[0] = (struct __user_cap_data_struct){(uint32_t)eff, (uint32_t)prm, (uint32_t)inh};
    data[1] = (struct __user_cap_data_struct){(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)};
    must(syscall(SYS_capset, &hdr, data), "capset");
    must(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0), "PR_CAP_AMBIENT_RAISE");
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
    install_filter(SYS_acct, ENOMSG, 0);
    install_filter(SYS_syslog, EIDRM, SECCOMP_FILTER_FLAG_LOG);
}

static void check_behaviour(void) {
    errno = 0;
    if (syscall(SYS_acct, NULL) != -1 || errno != ENOMSG) fail("acct: errno %d, the first filter wants ENOMSG", errno);
    errno = 0;
    if (syscall(SYS_syslog, 10, NULL, 0) != -1 || errno != EIDRM) fail("syslog: errno %d, the second filter wants EIDRM", errno);
    int st = 0;
    if (write(g_strict_pipe, "x", 1) != 1) fail("cannot wake the strict child: %s", strerror(errno));
    if (waitpid(g_child_strict, &st, 0) != g_child_strict) fail("waitpid strict child: %s", strerror(errno));
    else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail("strict child: status %#x, wanted death by SIGKILL on its first forbidden call", st);
    if (waitpid(g_child_pdeath, &st, 0) != g_child_pdeath) fail("waitpid pdeath child: %s", strerror(errno));
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("pdeath child: status %#x (10: death signal lost, 11: dumpable lost, 12: uid lost)", st);
}

static void compare(const struct snapshot* a, const struct snapshot* b) {
    if (strcmp(a->main_status, b->main_status)) fail("main thread status:\n--- before\n%s--- after\n%s", a->main_status, b->main_status);
    if (strcmp(a->worker_status, b->worker_status)) fail("worker status:\n--- before\n%s--- after\n%s", a->worker_status, b->worker_status);
    if (strcmp(a->main_values, b->main_values)) fail("main thread: %s, was %s", b->main_values, a->main_values);
    if (strcmp(a->worker_values, b->worker_values)) fail("worker: %s, was %s", b->worker_values, a->worker_values);
    for (int r = 0; r < RLIM_NLIMITS; ++r)
        if (a->limits[r].rlim_cur != b->limits[r].rlim_cur || a->limits[r].rlim_max != b->limits[r].rlim_max)
            fail("limit %d: %llu/%llu, was %llu/%llu", r, (unsigned long long)b->limits[r].rlim_cur,
                 (unsigned long long)b->limits[r].rlim_max, (unsigned long long)a->limits[r].rlim_cur,
                 (unsigned long long)a->limits[r].rlim_max);
    if (a->dumpable != b->dumpable) fail("dumpable %d, was %d", b->dumpable, a->dumpable);
    if (a->subreaper != b->subreaper) fail("child subreaper %d, was %d", b->subreaper, a->subreaper);
}

static int user_notif_main(void) {
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_acct, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    must(listener, "seccomp user notification filter");
    close((int)listener);
    if (wl_write_file(g_dir, "ready", "ready\n") != 0) wl_die("wl_creds", "write ready");
    printf("wl_creds: user-notif filter installed\n");
    fflush(stdout);
    wait_go_or_parent_gone();
    return 0;
}

int main(int argc, char** argv) {
    int corrupt = argc == 2 && strcmp(argv[1], "--self-test-corrupt") == 0;
    int self_test = corrupt || (argc == 2 && strcmp(argv[1], "--self-test") == 0);
    static char tmpdir[] = "/tmp/wl_creds.XXXXXX";
    if (argc == 3 && strcmp(argv[1], "--user-notif") == 0) {
        g_dir = argv[2];
        return user_notif_main();
    }
    if (self_test) {
        /* Owned by the fs uid the main thread ends up with, so that it may remove the directory
         * from the sticky /tmp itself. */
        if (!mkdtemp(tmpdir) || chmod(tmpdir, 0777) != 0 || chown(tmpdir, 1002, 2002) != 0)
            wl_die("wl_creds", "mkdtemp");
        g_dir = tmpdir;
    } else if (argc == 2) {
        g_dir = argv[1];
    } else {
        fprintf(stderr, "usage: wl_creds DIR | --self-test | --self-test-corrupt | --user-notif DIR\n");
        return 2;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "wl_creds: must start as root\n");
        return 2;
    }
    setup();
    struct snapshot before, after;
    take_snapshot(&before);
    char text[32];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_dir, "ready", text) != 0) wl_die("wl_creds", "write ready");
    printf("wl_creds: ready, pid %d\n", (int)getpid());
    fflush(stdout);
    if (self_test && wl_write_file(g_dir, "go", "") != 0) wl_die("wl_creds", "write go");
    if (!wait_go_or_parent_gone()) return 3;
    if (corrupt) syscall(SYS_personality, 0);
    take_snapshot(&after);
    compare(&before, &after);
    check_behaviour();
    int status = wl_verdict(g_dir, "wl_creds", g_fail);
    if (self_test) wl_remove_dir(g_dir, NULL);
    atomic_store(&g_stop, 1);
    exit(status);
}
