/* wl_files DIR | --self-test DIR | --unsupported lease|deleted-dir DIR
 *
 * Regular files and directories in every shape cr.files.regular must bring back:
 *   - data.bin opened three times: read-write at an offset (dup'ed, and shared with a child:
 *     one open file description, one position), read-only through a hard link, append-only
 *     through a symlink;
 *   - O_PATH descriptors of a directory and of a file; a directory read halfway with getdents;
 *   - a file deleted while open (with a hole, two descriptions, mode 0640) and an O_TMPFILE;
 *   - a flock, an OFD lock and two POSIX locks of the parent, a POSIX lock of the child.
 * Writes DIR/ready, waits for DIR/go, checks every byte, position, flag and lock, writes
 * DIR/result and exits 0 ("wl_files: ok") or 1 with each difference on stderr. */
#include "wl_verify.h"

#include <dirent.h>
#include <sys/file.h>
#include <sys/syscall.h>

#define DATA_SIZE 20000u
#define POS_RW 1234
#define POS_RO 777
#define DEL_SIZE 100000u
#define DEL_HOLE_START 5000u /* data in [0, 5000) and [70000, 80000); zeros elsewhere */
#define DEL_DATA2 70000u
#define DEL_DATA2_LEN 10000u
#define POS_DEL 4000
#define POS_DEL2 70001
#define TMP_SIZE 9000u
#define POS_TMP 4500
#define DIR_ENTRIES 60
#define SHARED_READ 10

enum { k_seed_data = 11, k_seed_del = 12, k_seed_tmp = 13, k_seed_later = 14 };

static struct {
    int rw, rw_dup, ro_hard, app_sym, path_dir, path_file, dir, del, del2, tmp;
    int flock_fd, posix_fd, ofd_fd;
    ino_t data_ino;
    pid_t child;
    char dir_seen[DIR_ENTRIES];
    int dir_seen_count;
} g;

static int must_open(const char* name, int flags, mode_t mode) {
    char path[PATH_MAX];
    int fd = open(wl_at(path, sizeof path, name), flags | O_CLOEXEC, mode);
    if (fd < 0) wl_die("wl_files", path);
    return fd;
}

static void lock_range(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &fl) != 0) wl_die("wl_files", "fcntl lock");
}

/* Reads directory entries "eNN" into dir_seen; at most max calls of getdents64. */
static void read_dir(int fd, int max_calls, const char* when) {
    char buf[256]; /* small on purpose: a few entries per call */
    for (int call = 0; call < max_calls; ++call) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) wl_die("wl_files", "getdents64");
        if (n == 0) return;
        for (long at = 0; at < n;) {
            unsigned short reclen;
            memcpy(&reclen, buf + at + 16, sizeof reclen);
            const char* name = buf + at + 19;
            at += reclen;
            if (name[0] != 'e') continue;
            int i = atoi(name + 1);
            if (i < 0 || i >= DIR_ENTRIES) continue;
            if (g.dir_seen[i]) wl_fail("directory: entry %s read twice (%s)", name, when);
            g.dir_seen[i] = 1;
            g.dir_seen_count++;
        }
    }
}

static void setup_files(void) {
    char path[PATH_MAX], other[PATH_MAX];
    int fd = must_open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
    wl_write_pattern(fd, 0, DATA_SIZE, k_seed_data);
    close(fd);
    if (link(wl_at(path, sizeof path, "data.bin"), wl_at(other, sizeof other, "hard.bin")) != 0) wl_die("wl_files", "link");
    if (symlink("data.bin", wl_at(other, sizeof other, "sym.bin")) != 0) wl_die("wl_files", "symlink");
    struct stat st;
    stat(path, &st);
    g.data_ino = st.st_ino;

    g.rw = must_open("data.bin", O_RDWR, 0);
    lseek(g.rw, POS_RW, SEEK_SET);
    g.rw_dup = fcntl(g.rw, F_DUPFD, 100); /* same description, no O_CLOEXEC */
    g.ro_hard = must_open("hard.bin", O_RDONLY, 0);
    lseek(g.ro_hard, POS_RO, SEEK_SET);
    g.app_sym = must_open("sym.bin", O_WRONLY | O_APPEND, 0);

    if (mkdir(wl_at(path, sizeof path, "sub"), 0755) != 0) wl_die("wl_files", "mkdir");
    for (int i = 0; i < DIR_ENTRIES; ++i) {
        char name[32];
        snprintf(name, sizeof name, "sub/e%02d", i);
        close(must_open(name, O_WRONLY | O_CREAT, 0600));
    }
    g.path_dir = must_open("sub", O_PATH | O_DIRECTORY, 0);
    g.path_file = must_open("data.bin", O_PATH, 0);
    g.dir = must_open("sub", O_RDONLY | O_DIRECTORY, 0);
    read_dir(g.dir, 2, "before the dump");
    if (g.dir_seen_count == 0 || g.dir_seen_count >= DIR_ENTRIES) wl_die("wl_files", "getdents read no or all entries");
}

static void setup_deleted(void) {
    char path[PATH_MAX];
    g.del = must_open("deleted.bin", O_RDWR | O_CREAT | O_TRUNC, 0640);
    fchmod(g.del, 0640);
    wl_write_pattern(g.del, 0, DEL_HOLE_START, k_seed_del);
    wl_write_pattern(g.del, DEL_DATA2, DEL_DATA2_LEN, k_seed_del);
    if (ftruncate(g.del, DEL_SIZE) != 0) wl_die("wl_files", "ftruncate");
    lseek(g.del, POS_DEL, SEEK_SET);
    g.del2 = must_open("deleted.bin", O_RDONLY, 0);
    lseek(g.del2, POS_DEL2, SEEK_SET);
    if (unlink(wl_at(path, sizeof path, "deleted.bin")) != 0) wl_die("wl_files", "unlink");

    g.tmp = open(g_wl_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (g.tmp < 0) wl_die("wl_files", "O_TMPFILE");
    wl_write_pattern(g.tmp, 0, TMP_SIZE, k_seed_tmp);
    lseek(g.tmp, POS_TMP, SEEK_SET);
}

static void setup_locks(void) {
    g.flock_fd = must_open("flock.lck", O_RDWR | O_CREAT, 0600);
    if (flock(g.flock_fd, LOCK_EX | LOCK_NB) != 0) wl_die("wl_files", "flock");
    g.posix_fd = must_open("posix.lck", O_RDWR | O_CREAT, 0600);
    lock_range(g.posix_fd, F_SETLK, F_WRLCK, 10, 20);
    lock_range(g.posix_fd, F_SETLK, F_RDLCK, 100, 0);
    g.ofd_fd = must_open("ofd.lck", O_RDWR | O_CREAT, 0600);
    lock_range(g.ofd_fd, F_OFD_SETLK, F_WRLCK, 0, 100);
}

/* The child shares data.bin's read-write description and holds a POSIX lock of its own. */
static int child_main(void) {
    pid_t parent = getppid();
    int lk = must_open("child.lck", O_RDWR | O_CREAT, 0600);
    lock_range(lk, F_SETLK, F_WRLCK, 0, 10);
    if (wl_write_file(g_wl_dir, "child-ready", "") != 0) wl_die("wl_files child", "write child-ready");
    wl_wait_for("parent-read");
    off_t pos = wl_pos(g.rw);
    if (pos != POS_RW + SHARED_READ) {
        fprintf(stderr, "wl_files child: shared position: expected %d, found %lld (parent %d)\n",
                POS_RW + SHARED_READ, (long long)pos, (int)parent);
        return 1;
    }
    /* Keep the lock until the parent has looked at it. */
    wl_wait_for("locks-checked");
    return 0;
}

static void check_fd(int fd, int want_acc, int want_path, off_t want_pos, const char* what) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        wl_fail("%s: fd %d is not open: %s", what, fd, strerror(errno));
        return;
    }
    if (want_path) WL_CHECK(fl & O_PATH, "%s: fd %d lost O_PATH (flags 0%o)", what, fd, fl);
    else WL_CHECK((fl & O_ACCMODE) == want_acc, "%s: fd %d access mode 0%o, expected 0%o", what, fd, fl & O_ACCMODE, want_acc);
    if (want_pos >= 0) WL_CHECK(wl_pos(fd) == want_pos, "%s: position %lld, expected %lld", what, (long long)wl_pos(fd), (long long)want_pos);
}

static void check_files(void) {
    struct stat st;
    check_fd(g.rw, O_RDWR, 0, POS_RW, "data.bin read-write");
    WL_CHECK(fstat(g.rw, &st) == 0 && st.st_ino == g.data_ino, "data.bin: another inode after restore");
    WL_CHECK((fcntl(g.rw, F_GETFD) & FD_CLOEXEC) != 0, "data.bin: fd %d lost FD_CLOEXEC", g.rw);
    WL_CHECK(fcntl(g.rw_dup, F_GETFD) == 0, "data.bin dup: fd %d gained FD_CLOEXEC or is closed", g.rw_dup);
    wl_check_pattern(g.rw, 0, DATA_SIZE, k_seed_data, 0, "data.bin");
    check_fd(g.ro_hard, O_RDONLY, 0, POS_RO, "hard.bin read-only");
    WL_CHECK(fstat(g.ro_hard, &st) == 0 && st.st_ino == g.data_ino, "hard.bin: another inode");
    check_fd(g.app_sym, O_WRONLY, 0, -1, "sym.bin append-only");
    WL_CHECK(fcntl(g.app_sym, F_GETFL) & O_APPEND, "sym.bin: lost O_APPEND");
    check_fd(g.path_dir, 0, 1, -1, "sub O_PATH");
    int inner = openat(g.path_dir, "e05", O_RDONLY | O_CLOEXEC);
    WL_CHECK(inner >= 0, "sub O_PATH: openat e05: %s", strerror(errno));
    if (inner >= 0) close(inner);
    check_fd(g.path_file, 0, 1, -1, "data.bin O_PATH");
    WL_CHECK(fstat(g.path_file, &st) == 0 && st.st_ino == g.data_ino, "data.bin O_PATH: another inode");

    /* One description: a read through the dup moves the original, and the child sees it. */
    char buf[SHARED_READ];
    WL_CHECK(read(g.rw_dup, buf, sizeof buf) == SHARED_READ, "data.bin dup: short read");
    WL_CHECK(wl_pos(g.rw) == POS_RW + SHARED_READ, "data.bin: dup and original have separate positions (%lld)",
             (long long)wl_pos(g.rw));

    read_dir(g.dir, 1000, "after the restore");
    WL_CHECK(g.dir_seen_count == DIR_ENTRIES, "directory: %d of %d entries read in all", g.dir_seen_count, DIR_ENTRIES);
}

static void check_deleted(void) {
    struct stat st;
    char link[PATH_MAX], self[64];
    WL_CHECK(fstat(g.del, &st) == 0, "deleted.bin: fstat: %s", strerror(errno));
    WL_CHECK(st.st_nlink == 0, "deleted.bin: %lu links, expected none", (unsigned long)st.st_nlink);
    WL_CHECK(st.st_size == DEL_SIZE, "deleted.bin: size %lld, expected %u", (long long)st.st_size, DEL_SIZE);
    WL_CHECK((st.st_mode & 07777) == 0640, "deleted.bin: mode 0%o, expected 0640", st.st_mode & 07777);
    snprintf(self, sizeof self, "/proc/self/fd/%d", g.del);
    ssize_t n = readlink(self, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    WL_CHECK(n > 0 && strstr(link, "/deleted.bin (deleted)") != NULL, "deleted.bin: link reads '%s'", link);
    check_fd(g.del, O_RDWR, 0, POS_DEL, "deleted.bin read-write");
    check_fd(g.del2, O_RDONLY, 0, POS_DEL2, "deleted.bin read-only");
    wl_check_pattern(g.del, 0, DEL_HOLE_START, k_seed_del, 0, "deleted.bin head");
    wl_check_pattern(g.del, DEL_HOLE_START, DEL_DATA2 - DEL_HOLE_START, 0, 0, "deleted.bin hole");
    wl_check_pattern(g.del2, DEL_DATA2, DEL_DATA2_LEN, k_seed_del, DEL_DATA2, "deleted.bin middle");
    wl_check_pattern(g.del2, DEL_DATA2 + DEL_DATA2_LEN, DEL_SIZE - DEL_DATA2 - DEL_DATA2_LEN, 0, 0, "deleted.bin tail");
    /* Both descriptions are of one file still. */
    wl_write_pattern(g.del, 90000, 100, k_seed_later);
    wl_check_pattern(g.del2, 90000, 100, k_seed_later, 90000, "deleted.bin written through the other fd");

    WL_CHECK(fstat(g.tmp, &st) == 0 && st.st_nlink == 0 && st.st_size == TMP_SIZE,
             "O_TMPFILE: links %lu size %lld", (unsigned long)st.st_nlink, (long long)st.st_size);
    check_fd(g.tmp, O_RDWR, 0, POS_TMP, "O_TMPFILE");
    wl_check_pattern(g.tmp, 0, TMP_SIZE, k_seed_tmp, 0, "O_TMPFILE");
}

/* In a fresh process: which lock conflicts with (start, len, type), and held by whom. */
static void expect_posix_holder(const char* name, short type, off_t start, off_t len, pid_t holder, const char* what) {
    int fd = must_open(name, O_RDWR, 0);
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, F_GETLK, &fl) != 0) wl_fail("%s: F_GETLK: %s", what, strerror(errno));
    else WL_CHECK(fl.l_type != F_UNLCK && fl.l_pid == holder, "%s: expected held by pid %d, found type %d pid %d", what,
                  (int)holder, fl.l_type, (int)fl.l_pid);
    close(fd);
}

static int lock_checker(pid_t parent) {
    g_wl_name = "wl_files lock check";
    g_wl_fails = 0; /* its own count: the parent's so far came with the fork */
    int fd = must_open("flock.lck", O_RDWR, 0);
    WL_CHECK(flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK, "flock.lck: not locked exclusively");
    close(fd);
    fd = must_open("ofd.lck", O_RDWR, 0);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 1};
    WL_CHECK(fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_start == 0 && fl.l_len == 100,
             "ofd.lck: expected an OFD write lock on 0-99, found type %d %lld+%lld", fl.l_type, (long long)fl.l_start,
             (long long)fl.l_len);
    fl = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    WL_CHECK(fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_UNLCK, "ofd.lck: locked beyond byte 99");
    close(fd);
    expect_posix_holder("posix.lck", F_RDLCK, 15, 1, parent, "posix.lck write lock 10-29");
    expect_posix_holder("posix.lck", F_WRLCK, 5000, 1, parent, "posix.lck read lock 100-EOF");
    fd = must_open("posix.lck", O_RDWR, 0);
    fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 30, .l_len = 70};
    WL_CHECK(fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK, "posix.lck: bytes 30-99 locked");
    close(fd);
    expect_posix_holder("child.lck", F_RDLCK, 0, 10, g.child, "child.lck write lock of the child");
    return g_wl_fails == 0 ? 0 : 1;
}

static void check_locks(void) {
    pid_t parent = getpid();
    pid_t checker = fork();
    if (checker < 0) wl_die("wl_files", "fork");
    if (checker == 0) _exit(lock_checker(parent));
    wl_reap(checker, "lock checker");
    /* Our own descriptions can still take them: nothing is held twice. */
    WL_CHECK(flock(g.flock_fd, LOCK_EX | LOCK_NB) == 0, "flock.lck: our own description cannot lock it");
}

/* Things cr.files.regular must refuse: a lease, a directory removed while open. */
static int unsupported(const char* kind) {
    char path[PATH_MAX];
    mkdir(g_wl_dir, 0700);
    if (strcmp(kind, "lease") == 0) {
        close(must_open("lease.dat", O_WRONLY | O_CREAT, 0600));
        int fd = must_open("lease.dat", O_RDONLY, 0);
        if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0) wl_die("wl_files", "F_SETLEASE");
        wl_hold();
        WL_CHECK(fcntl(fd, F_GETLEASE) == F_RDLCK, "lease: lost after the refused dump");
        return wl_verdict();
    }
    if (strcmp(kind, "deleted-dir") == 0) {
        if (mkdir(wl_at(path, sizeof path, "gone"), 0755) != 0) wl_die("wl_files", "mkdir");
        int fd = must_open("gone", O_RDONLY | O_DIRECTORY, 0);
        if (rmdir(path) != 0) wl_die("wl_files", "rmdir");
        wl_hold();
        struct stat st;
        WL_CHECK(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode), "removed directory: fd %d lost", fd);
        return wl_verdict();
    }
    fprintf(stderr, "wl_files: unknown --unsupported kind %s\n", kind);
    return 2;
}

int main(int argc, char** argv) {
    const char* bad = wl_unsupported_kind(argc, argv, "wl_files");
    if (bad) return unsupported(bad);
    int self_test = wl_start(argc, argv, "wl_files");
    setup_files();
    setup_deleted();
    setup_locks();
    g.child = fork();
    if (g.child < 0) wl_die("wl_files", "fork");
    if (g.child == 0) _exit(child_main());
    wl_wait_for("child-ready");

    wl_ready_then_wait(self_test);
    uint8_t byte;
    if (g_wl_corrupt && pread(g.rw, &byte, 1, 4000) == 1) { /* one bit of data.bin */
        byte ^= 0x40;
        if (pwrite(g.rw, &byte, 1, 4000) != 1) wl_die("wl_files", "pwrite");
    }
    check_files();
    check_deleted();
    check_locks();
    wl_write_file(g_wl_dir, "parent-read", "");
    wl_write_file(g_wl_dir, "locks-checked", "");
    wl_reap(g.child, "child");
    return wl_verdict();
}
