/* The checks of wl_mixed: every difference is printed on stderr with what, where, expected and
 * found; the callers only count them. */
#include "wl_mixed.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { k_report_cap = 20 }; /* per object: enough to see the shape of a loss */

struct report {
    const char* what;
    unsigned count;
};

static void differ(struct report* r, uint64_t where, uint64_t expected, uint64_t found) {
    if (r->count++ < k_report_cap)
        fprintf(stderr, "wl_mixed: %s at offset 0x%llx: expected 0x%llx, found 0x%llx\n", r->what,
                (unsigned long long)where, (unsigned long long)expected, (unsigned long long)found);
}

static unsigned finish(struct report* r) {
    if (r->count > k_report_cap)
        fprintf(stderr, "wl_mixed: %s: %u more difference(s) not shown\n", r->what, r->count - k_report_cap);
    return r->count;
}

static unsigned mismatch(const char* what, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static unsigned mismatch(const char* what, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wl_mixed: %s: ", what);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static unsigned check_anon(const uint8_t* anon) {
    struct report r = {"anonymous memory", 0};
    const uint64_t* words = (const uint64_t*)anon;
    for (size_t page = 0; page < WL_ANON_SIZE / WL_PAGE; ++page) {
        enum wl_page_class c = wl_anon_class(page);
        size_t base = page * (WL_PAGE / 8);
        for (size_t j = 0; j < WL_PAGE / 8; ++j) {
            uint64_t want = c == k_page_pattern ? wl_pattern_word(k_seed_anon, base + j) : 0;
            if (words[base + j] != want) differ(&r, (base + j) * 8, want, words[base + j]);
        }
    }
    return finish(&r);
}

/* The read-only tail must still be read-only: a restore that maps it writable loses state too. */
static unsigned check_anon_protection(const uint8_t* anon) {
    uintptr_t addr = (uintptr_t)(anon + WL_ANON_SIZE - WL_RO_SIZE);
    FILE* f = fopen("/proc/self/maps", "re");
    if (!f) return mismatch("anonymous memory", "cannot open /proc/self/maps: %s", strerror(errno));
    char line[512], perms[8] = "";
    unsigned long start, end;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && start <= addr && addr < end) break;
        perms[0] = '\0';
    }
    fclose(f);
    if (strcmp(perms, "r--p") != 0)
        return mismatch("anonymous memory", "protection of the read-only tail at %#lx: expected r--p, found %s",
                        (unsigned long)addr, perms[0] ? perms : "(no mapping)");
    return 0;
}

/* The huge page region: every byte, and the MADV_HUGEPAGE advice ("hg" in VmFlags). */
static unsigned check_huge(const uint8_t* huge) {
    struct report r = {"huge page memory", 0};
    for (size_t off = 0; off < WL_HUGE_SIZE; off += WL_PAGE) {
        uint8_t want[WL_PAGE];
        wl_fill_bytes(want, WL_PAGE, k_seed_huge, off);
        if (memcmp(huge + off, want, WL_PAGE) == 0) continue;
        for (size_t i = 0; i < WL_PAGE; ++i)
            if (huge[off + i] != want[i]) differ(&r, off + i, want[i], huge[off + i]);
    }
    unsigned bad = finish(&r);
    FILE* f = fopen("/proc/self/smaps", "re");
    if (!f) return bad + mismatch("huge page memory", "cannot open /proc/self/smaps: %s", strerror(errno));
    char line[512];
    int in_region = 0, advised = -1;
    unsigned long start, end;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2) { /* a mapping's first line */
            in_region = start <= (uintptr_t)huge && (uintptr_t)huge < end;
            continue;
        }
        if (in_region && strncmp(line, "VmFlags:", 8) == 0) advised = strstr(line, " hg") != NULL;
    }
    fclose(f);
    if (advised != 1)
        bad += mismatch("huge page memory", "MADV_HUGEPAGE advice (VmFlags hg) at %p: %s", (void*)huge,
                        advised < 0 ? "mapping not found" : "lost");
    return bad;
}

static unsigned read_whole(const char* name, uint8_t* buf, size_t size) {
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_wl.dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mismatch(name, "open %s: %s", path, strerror(errno));
    ssize_t n = pread(fd, buf, size, 0);
    struct stat st;
    int sr = fstat(fd, &st);
    close(fd);
    if (n != (ssize_t)size || sr != 0 || st.st_size != (off_t)size)
        return mismatch(name, "size of %s: expected %zu bytes, found %lld", path, size,
                        sr == 0 ? (long long)st.st_size : -1LL);
    return 0;
}

static unsigned check_private(const uint8_t* priv) {
    uint8_t* file = malloc(WL_PRIV_SIZE);
    if (!file) return mismatch("private mapping", "malloc failed");
    unsigned bad = read_whole("private.dat", file, WL_PRIV_SIZE);
    struct report disk = {"private.dat on disk", 0};
    struct report map = {"private file mapping", 0};
    for (size_t off = 0; !bad && off < WL_PRIV_SIZE; ++off) {
        uint8_t want_file = wl_pattern_byte(k_seed_priv_file, off);
        size_t in_page = off % WL_PAGE;
        int cow = wl_priv_written(off / WL_PAGE) && in_page >= WL_PRIV_COW_OFFSET &&
                  in_page < WL_PRIV_COW_OFFSET + WL_PRIV_COW_LEN;
        uint8_t want_map = cow ? wl_pattern_byte(k_seed_priv_cow, off) : want_file;
        if (file[off] != want_file) differ(&disk, off, want_file, file[off]);
        if (priv[off] != want_map) differ(&map, off, want_map, priv[off]);
    }
    free(file);
    return bad + finish(&disk) + finish(&map);
}

static unsigned check_shared(uint8_t* shared) {
    uint8_t* file = malloc(WL_SHARED_SIZE);
    if (!file) return mismatch("shared mapping", "malloc failed");
    unsigned bad = read_whole("shared.dat", file, WL_SHARED_SIZE);
    struct report disk = {"shared.dat on disk", 0};
    struct report map = {"shared file mapping", 0};
    for (size_t off = 0; !bad && off < WL_SHARED_SIZE; ++off) {
        uint8_t want = wl_shared_written(off / WL_PAGE) ? wl_pattern_byte(k_seed_shared, off) : 0;
        if (file[off] != want) differ(&disk, off, want, file[off]);
        if (shared[off] != want) differ(&map, off, want, shared[off]);
    }
    free(file);
    bad += finish(&disk) + finish(&map);
    if (bad) return bad;
    /* Still shared after all: a store through the mapping reaches the file. */
    const size_t probe = WL_PAGE + 123; /* an odd page, zero so far */
    shared[probe] = 0x5a;
    uint8_t seen = 0;
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_wl.dir, "shared.dat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, &seen, 1, (off_t)probe) != 1) seen = 0;
    if (fd >= 0) close(fd);
    if (seen != 0x5a)
        return mismatch("shared file mapping", "store at offset %#zx not visible in %s: expected 0x5a, found %#x",
                        probe, path, seen);
    return 0;
}

void wl_thread_check(int index, uint64_t tag, uint64_t counter, pid_t tid) {
    struct wl_thread_slot* slot = &g_wl.slots[index];
    char what[32];
    snprintf(what, sizeof what, "thread %d", index);
    unsigned bad = 0;
    if (tag != WL_TLS_TAG + (uint64_t)index)
        bad += mismatch(what, "__thread tag: expected %#llx, found %#llx",
                        (unsigned long long)(WL_TLS_TAG + (uint64_t)index), (unsigned long long)tag);
    uint64_t mirror = atomic_load(&slot->mirror);
    if (counter != mirror)
        bad += mismatch(what, "__thread counter: expected %llu (its mirror), found %llu",
                        (unsigned long long)mirror, (unsigned long long)counter);
    pid_t now = (pid_t)syscall(SYS_gettid);
    if (tid != slot->tid || now != slot->tid)
        bad += mismatch(what, "thread id: expected %d, found %d (__thread copy %d)", slot->tid, now, tid);
    atomic_store(&slot->result, bad ? 2 : 1);
}

static unsigned check_threads(struct wl_mixed* wl) {
    atomic_store(&wl->check_request, 1);
    unsigned bad = 0;
    for (int i = 0; i < WL_THREADS; ++i) {
        int waited = 0;
        while (atomic_load(&wl->slots[i].result) == 0 && waited++ < 10000) wl_sleep_ms(1);
        int result = atomic_load(&wl->slots[i].result);
        if (result == 0) bad += mismatch("threads", "thread %d (tid %d) did not answer within 10 s", i, wl->slots[i].tid);
        if (result == 2) bad++;
    }
    /* ... and each keeps counting afterwards. */
    uint64_t before[WL_THREADS];
    for (int i = 0; i < WL_THREADS; ++i) before[i] = atomic_load(&wl->slots[i].mirror);
    for (int i = 0; i < WL_THREADS; ++i) {
        int waited = 0;
        while (atomic_load(&wl->slots[i].mirror) < before[i] + 5 && waited++ < 2000) wl_sleep_ms(1);
        uint64_t after = atomic_load(&wl->slots[i].mirror);
        if (after < before[i] + 5)
            bad += mismatch("threads", "thread %d stopped counting: %llu then %llu", i,
                            (unsigned long long)before[i], (unsigned long long)after);
    }
    return bad;
}

static unsigned check_signals(void) {
    unsigned bad = 0;
    struct sigaction sa;
    if (sigaction(SIGUSR1, NULL, &sa) != 0) return mismatch("SIGUSR1", "sigaction query: %s", strerror(errno));
    if (!(sa.sa_flags & SA_SIGINFO) || sa.sa_sigaction != wl_on_usr1)
        bad += mismatch("SIGUSR1", "handler: expected %p with SA_SIGINFO, found %p flags %#x",
                        (void*)wl_on_usr1, (void*)sa.sa_sigaction, (unsigned)sa.sa_flags);
    int want = SA_SIGINFO | SA_RESTART, unwanted = SA_RESETHAND | SA_NODEFER | SA_ONSTACK;
    if ((sa.sa_flags & want) != want || (sa.sa_flags & unwanted))
        bad += mismatch("SIGUSR1", "flags: expected SA_SIGINFO|SA_RESTART, found %#x", (unsigned)sa.sa_flags);
    static const int in_mask[] = {SIGHUP, SIGWINCH}, not_in_mask[] = {SIGINT, SIGTERM, SIGUSR2};
    for (size_t i = 0; i < 2; ++i)
        if (sigismember(&sa.sa_mask, in_mask[i]) != 1)
            bad += mismatch("SIGUSR1", "handler mask: expected signal %d in it, it is not", in_mask[i]);
    for (size_t i = 0; i < 3; ++i)
        if (sigismember(&sa.sa_mask, not_in_mask[i]) != 0)
            bad += mismatch("SIGUSR1", "handler mask: signal %d is in it, expected not", not_in_mask[i]);
    if (g_usr1_hits != 0) bad += mismatch("SIGUSR1", "handler ran %d time(s) before being raised", (int)g_usr1_hits);
    raise(SIGUSR1);
    if (g_usr1_hits != 1 || g_usr1_signo != SIGUSR1 || g_usr1_code != SI_TKILL)
        bad += mismatch("SIGUSR1", "after raise: expected 1 hit, signo %d, si_code %d; found %d, %d, %d",
                        SIGUSR1, SI_TKILL, (int)g_usr1_hits, (int)g_usr1_signo, (int)g_usr1_code);

    sigset_t pending, mask;
    sigemptyset(&pending);
    if (sigpending(&pending) != 0 || sigismember(&pending, SIGUSR2) != 1)
        bad += mismatch("SIGUSR2", "expected pending, it is not");
    if (sigprocmask(SIG_BLOCK, NULL, &mask) != 0 || sigismember(&mask, SIGUSR2) != 1)
        bad += mismatch("SIGUSR2", "expected blocked, it is not");
    return bad;
}

static unsigned check_pos_fd(int fd) {
    unsigned bad = 0;
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (pos != WL_POS_OFFSET)
        return mismatch("pos.dat fd", "fd %d position: expected %d, found %lld", fd, WL_POS_OFFSET, (long long)pos);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
        bad += mismatch("pos.dat fd", "fd %d access mode: expected O_RDWR, flags %#x", fd, (unsigned)fl);
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_wl.dir, "pos.dat");
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
        bad += mismatch("pos.dat fd", "fd %d is not %s", fd, path);
    uint8_t buf[16];
    if (read(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
        return bad + mismatch("pos.dat fd", "fd %d: short read at %d", fd, WL_POS_OFFSET);
    struct report r = {"pos.dat read through fd", 0};
    for (size_t i = 0; i < sizeof buf; ++i) {
        uint8_t want = wl_pattern_byte(k_seed_pos, WL_POS_OFFSET + i);
        if (buf[i] != want) differ(&r, WL_POS_OFFSET + i, want, buf[i]);
    }
    return bad + finish(&r);
}

static unsigned check_child(pid_t child) {
    int status = 0;
    pid_t r;
    while ((r = waitpid(child, &status, 0)) < 0 && errno == EINTR) {}
    if (r != child) return mismatch("pipe child", "waitpid %d: %s", child, strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return mismatch("pipe child", "pid %d: expected exit 0, found status %#x", child, status);
    return 0;
}

unsigned wl_check_all(struct wl_mixed* wl) {
    unsigned bad = 0;
    if (getpid() != wl->pid) bad += mismatch("pid", "expected %d, found %d", wl->pid, getpid());
    bad += check_anon(wl->anon);
    bad += check_anon_protection(wl->anon);
    bad += check_huge(wl->huge);
    bad += check_private(wl->priv);
    bad += check_shared(wl->shared);
    bad += check_threads(wl);
    bad += check_signals();
    bad += check_pos_fd(wl->pos_fd);
    bad += check_child(wl->child);
    return bad;
}

int wl_child_main(const char* dir, int rfd, pid_t parent) {
    char go[PATH_MAX];
    wl_path(go, sizeof go, dir, "go");
    while (!wl_exists(go)) {
        if (getppid() != parent) {
            fprintf(stderr, "wl_mixed child: parent %d is gone, exiting\n", parent);
            return 3;
        }
        wl_sleep_ms(10);
    }
    uint8_t buf[WL_PIPE_BYTES];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(rfd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "wl_mixed: pipe: expected %u queued bytes, read %zu (%s)\n", WL_PIPE_BYTES, got,
                    n == 0 ? "end of file" : strerror(errno));
            return 1;
        }
        got += (size_t)n;
    }
    struct report r = {"pipe data", 0};
    for (size_t i = 0; i < sizeof buf; ++i) {
        uint8_t want = wl_pattern_byte(k_seed_pipe, i);
        if (buf[i] != want) differ(&r, i, want, buf[i]);
    }
    unsigned bad = finish(&r);
    /* Nothing beyond the 3000 bytes: a restore that queues data twice is a loss too. */
    fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
    uint8_t extra;
    ssize_t n = read(rfd, &extra, 1);
    if (n != -1 || errno != EAGAIN)
        bad += mismatch("pipe data", "expected nothing after %u bytes, read returned %zd", WL_PIPE_BYTES, n);
    return bad ? 1 : 0;
}
