/* wl_mixed DIR | --self-test [DIR] | --self-test-corrupt [DIR]
 *
 * Sets up anonymous memory (pattern, untouched and zeroed pages, a read-only tail), a private
 * file mapping with copy-on-write pages, a shared file mapping, 4 threads with __thread
 * counters, a pipe with queued data to a child, a SIGUSR1 handler, a pending blocked SIGUSR2
 * and a file offset. Writes DIR/ready, waits for DIR/go, checks everything, writes DIR/result
 * ("ok" or "fail"), prints "wl_mixed: ok" on success and exits 0 (1 on any difference).
 * --self-test runs the same without waiting for anyone: the checker must pass on an untouched
 * process. --self-test-corrupt flips one byte of anonymous memory first: the checker must fail. */
#include "wl_mixed.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct wl_mixed g_wl;
volatile sig_atomic_t g_usr1_hits;
volatile sig_atomic_t g_usr1_signo;
volatile sig_atomic_t g_usr1_code;

static __thread uint64_t t_counter;
static __thread uint64_t t_tag;
static __thread pid_t t_tid;

void wl_on_usr1(int sig, siginfo_t* si, void* uc) {
    (void)uc;
    g_usr1_hits++;
    g_usr1_signo = sig;
    g_usr1_code = si->si_code;
}

static void* thread_main(void* arg) {
    int i = (int)(intptr_t)arg;
    struct wl_thread_slot* slot = &g_wl.slots[i];
    t_tag = WL_TLS_TAG + (uint64_t)i;
    t_tid = (pid_t)syscall(SYS_gettid);
    t_counter = (uint64_t)(i + 1) * 1000000u;
    slot->tid = t_tid;
    atomic_store(&slot->mirror, t_counter);
    while (!atomic_load(&g_wl.stop)) {
        if (atomic_load(&g_wl.check_request) && atomic_load(&slot->result) == 0)
            wl_thread_check(i, t_tag, t_counter, t_tid);
        t_counter++;
        atomic_store(&slot->mirror, t_counter);
        wl_sleep_ms(1);
    }
    return NULL;
}

static uint8_t* map_file(const char* name, size_t size, int shared, uint64_t seed) {
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_wl.dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) wl_die("wl_mixed", path);
    if (seed != 0) {
        uint8_t* buf = malloc(size);
        if (!buf) wl_die("wl_mixed", "malloc");
        wl_fill_bytes(buf, size, seed, 0);
        if (write(fd, buf, size) != (ssize_t)size) wl_die("wl_mixed", path);
        free(buf);
    } else if (ftruncate(fd, (off_t)size) != 0) {
        wl_die("wl_mixed", path);
    }
    void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) wl_die("wl_mixed", path);
    close(fd); /* the mapping keeps the file; only the pos fd stays open on purpose */
    return p;
}

static void setup_memory(void) {
    void* p = mmap(NULL, WL_ANON_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) wl_die("wl_mixed", "mmap anonymous");
    g_wl.anon = p;
    uint64_t* words = p;
    for (size_t page = 0; page < WL_ANON_SIZE / WL_PAGE; ++page) {
        enum wl_page_class c = wl_anon_class(page);
        if (c == k_page_untouched) continue;
        uint64_t* w = words + page * (WL_PAGE / 8);
        if (c == k_page_zeroed) {
            memset(w, 0, WL_PAGE);
            continue;
        }
        for (size_t j = 0; j < WL_PAGE / 8; ++j) w[j] = wl_pattern_word(k_seed_anon, page * (WL_PAGE / 8) + j);
    }
    if (mprotect(g_wl.anon + WL_ANON_SIZE - WL_RO_SIZE, WL_RO_SIZE, PROT_READ) != 0)
        wl_die("wl_mixed", "mprotect");

    g_wl.priv = map_file("private.dat", WL_PRIV_SIZE, 0, k_seed_priv_file);
    for (size_t page = 0; page < WL_PRIV_SIZE / WL_PAGE; ++page) {
        if (!wl_priv_written(page)) continue;
        size_t off = page * WL_PAGE + WL_PRIV_COW_OFFSET;
        wl_fill_bytes(g_wl.priv + off, WL_PRIV_COW_LEN, k_seed_priv_cow, off);
    }

    /* Transparent huge pages: a region the task asked to have in 2 MiB pages. */
    uint8_t* raw = mmap(NULL, WL_HUGE_SIZE + WL_HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) wl_die("wl_mixed", "mmap huge");
    uint8_t* huge = (uint8_t*)(((uintptr_t)raw + WL_HUGE_ALIGN - 1) & ~(uintptr_t)(WL_HUGE_ALIGN - 1));
    if (huge > raw) munmap(raw, (size_t)(huge - raw));
    munmap(huge + WL_HUGE_SIZE, (size_t)(raw + WL_HUGE_SIZE + WL_HUGE_ALIGN - (huge + WL_HUGE_SIZE)));
    if (madvise(huge, WL_HUGE_SIZE, MADV_HUGEPAGE) != 0) wl_die("wl_mixed", "madvise(MADV_HUGEPAGE)");
    wl_fill_bytes(huge, WL_HUGE_SIZE, k_seed_huge, 0);
    g_wl.huge = huge;

    g_wl.shared = map_file("shared.dat", WL_SHARED_SIZE, 1, 0);
    for (size_t page = 0; page < WL_SHARED_SIZE / WL_PAGE; ++page)
        if (wl_shared_written(page))
            wl_fill_bytes(g_wl.shared + page * WL_PAGE, WL_PAGE, k_seed_shared, page * WL_PAGE);
}

static void setup_pos_fd(void) {
    char path[PATH_MAX];
    uint8_t buf[WL_POS_FILE_SIZE];
    wl_path(path, sizeof path, g_wl.dir, "pos.dat");
    g_wl.pos_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g_wl.pos_fd < 0) wl_die("wl_mixed", path);
    wl_fill_bytes(buf, sizeof buf, k_seed_pos, 0);
    if (write(g_wl.pos_fd, buf, sizeof buf) != (ssize_t)sizeof buf) wl_die("wl_mixed", path);
    if (lseek(g_wl.pos_fd, WL_POS_OFFSET, SEEK_SET) != WL_POS_OFFSET) wl_die("wl_mixed", "lseek");
}

/* Forked before anything big exists, so the child stays small. */
static void setup_child(void) {
    int p[2];
    if (pipe(p) != 0) wl_die("wl_mixed", "pipe");
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) wl_die("wl_mixed", "fork");
    if (child == 0) {
        close(p[1]);
        _exit(wl_child_main(g_wl.dir, p[0], parent));
    }
    close(p[0]);
    g_wl.child = child;
    g_wl.pipe_wr = p[1];
    uint8_t buf[WL_PIPE_BYTES];
    wl_fill_bytes(buf, sizeof buf, k_seed_pipe, 0);
    if (write(p[1], buf, sizeof buf) != (ssize_t)sizeof buf) wl_die("wl_mixed", "pipe write");
}

static void setup_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = wl_on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaddset(&sa.sa_mask, SIGWINCH);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) wl_die("wl_mixed", "sigaction");
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    /* Blocked before the threads start, so they inherit the mask; raised at the main thread. */
    if (sigprocmask(SIG_BLOCK, &usr2, NULL) != 0) wl_die("wl_mixed", "sigprocmask");
    if (raise(SIGUSR2) != 0) wl_die("wl_mixed", "raise");
}

static void setup_threads(void) {
    for (int i = 0; i < WL_THREADS; ++i) {
        int rc = pthread_create(&g_wl.threads[i], NULL, thread_main, (void*)(intptr_t)i);
        if (rc != 0) {
            errno = rc;
            wl_die("wl_mixed", "pthread_create");
        }
    }
    /* Every thread has counted at least once before anyone is told we are ready. */
    for (int i = 0; i < WL_THREADS; ++i)
        while (atomic_load(&g_wl.slots[i].mirror) <= (uint64_t)(i + 1) * 1000000u) wl_sleep_ms(1);
}

/* Waits for DIR/go; gives up if the directory disappears (the test that started us is gone). */
static void wait_for_go(void) {
    char go[PATH_MAX];
    wl_path(go, sizeof go, g_wl.dir, "go");
    while (!wl_exists(go)) {
        if (!wl_exists(g_wl.dir)) {
            fprintf(stderr, "wl_mixed: %s vanished, exiting\n", g_wl.dir);
            exit(3);
        }
        wl_sleep_ms(10);
    }
}

static void remove_self_test_dir(const char* dir) {
    static const char* const names[] = {"ready", "go", "result", "private.dat", "shared.dat",
                                        "pos.dat", NULL};
    char path[PATH_MAX];
    for (int i = 0; names[i]; ++i) {
        wl_path(path, sizeof path, dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(int argc, char** argv) {
    int self_test = 0, corrupt = 0;
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "--self-test") == 0) self_test = 1, argi++;
    else if (argi < argc && strcmp(argv[argi], "--self-test-corrupt") == 0) self_test = corrupt = 1, argi++;
    static char tmpdir[] = "/tmp/wl_mixed.XXXXXX";
    int own_dir = 0;
    if (argi < argc) {
        g_wl.dir = argv[argi];
    } else if (self_test) {
        if (!mkdtemp(tmpdir)) wl_die("wl_mixed", "mkdtemp");
        g_wl.dir = tmpdir;
        own_dir = 1;
    } else {
        fprintf(stderr, "usage: wl_mixed DIR | --self-test [DIR] | --self-test-corrupt [DIR]\n");
        return 2;
    }
    g_wl.pid = getpid();

    setup_child();
    setup_memory();
    setup_pos_fd();
    setup_signals();
    setup_threads();

    char text[64];
    snprintf(text, sizeof text, "%d\n", (int)g_wl.pid);
    if (wl_write_file(g_wl.dir, "ready", text) != 0) wl_die("wl_mixed", "write ready");
    printf("wl_mixed: ready, pid %d\n", (int)g_wl.pid);
    fflush(stdout);

    if (self_test && wl_write_file(g_wl.dir, "go", "") != 0) wl_die("wl_mixed", "write go");
    wait_for_go();
    if (corrupt) g_wl.anon[100 * WL_PAGE + 77] ^= 0x40; /* page 100 holds the pattern */

    unsigned differences = wl_check_all(&g_wl);
    if (wl_write_file(g_wl.dir, "result", differences == 0 ? "ok\n" : "fail\n") != 0) {
        fprintf(stderr, "wl_mixed: cannot write %s/result: %s\n", g_wl.dir, strerror(errno));
        differences++;
    }
    if (differences == 0) {
        printf("wl_mixed: ok\n");
    } else {
        fprintf(stderr, "wl_mixed: FAILED, %u difference(s)\n", differences);
    }
    fflush(stdout);
    atomic_store(&g_wl.stop, 1);
    if (own_dir) remove_self_test_dir(g_wl.dir);
    /* exit, not join: a thread that did not survive a restore must not hang the verdict */
    exit(differences == 0 ? 0 : 1);
}
