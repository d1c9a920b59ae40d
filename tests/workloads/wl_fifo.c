/* wl_fifo DIR | --self-test DIR
 *
 * Named and anonymous pipes as cr.files.pipe must bring them back:
 *   - fifo "a": the parent writes, a child reads; 5000 bytes queued at the dump, 1000 more after;
 *   - fifo "b": both ends in the parent, capacity raised to 128 KiB and filled to the brim;
 *   - fifo "c": one read-write end with 10 bytes queued; fifo "d": an O_PATH descriptor only;
 *   - a full anonymous pipe of the default 64 KiB; a 1 MiB pipe holding 700000 bytes read by
 *     the child; a packet-mode (O_DIRECT) pipe holding three packets.
 * Writes DIR/ready, waits for DIR/go, checks every byte, capacity and flag, writes DIR/result
 * and exits 0 ("wl_fifo: ok") or 1 with each difference on stderr. */
#include "wl_verify.h"

#include <poll.h>
#include <sys/ioctl.h>

#define A_QUEUED 5000u
#define A_LATER 1000u
#define B_CAPACITY (128u << 10)
#define C_QUEUED 10u
#define BIG_CAPACITY (1u << 20)
#define BIG_QUEUED 700000u

enum { k_seed_a = 21, k_seed_b = 22, k_seed_c = 23, k_seed_full = 24, k_seed_big = 25, k_seed_packet = 26 };
static const unsigned k_packets[] = {100, 4000, 7};

static struct {
    int a_w, b_r, b_w, c_rw, d_path;
    int full_r, full_w, full_capacity;
    int big_r, big_w;
    int pk_r, pk_w;
    pid_t child;
} g;

static void make_fifo(const char* name) {
    char path[PATH_MAX];
    if (mkfifo(wl_at(path, sizeof path, name), 0600) != 0) wl_die("wl_fifo", "mkfifo");
}

static int open_fifo(const char* name, int flags) {
    char path[PATH_MAX];
    int fd = open(wl_at(path, sizeof path, name), flags | O_CLOEXEC);
    if (fd < 0) wl_die("wl_fifo", path);
    return fd;
}

static void write_pattern_stream(int fd, size_t len, uint64_t seed, uint64_t base) {
    uint8_t* buf = malloc(len);
    if (!buf) wl_die("wl_fifo", "malloc");
    wl_fill_bytes(buf, len, seed, base);
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n <= 0) wl_die("wl_fifo", "write into a pipe");
        done += (size_t)n;
    }
    free(buf);
}

/* Writes the pattern until the pipe is full (fd non-blocking); returns how much went in. */
static size_t fill_up(int fd, uint64_t seed) {
    uint8_t buf[4096];
    size_t total = 0;
    for (;;) {
        wl_fill_bytes(buf, sizeof buf, seed, total);
        ssize_t n = write(fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) return total;
        if (n <= 0) wl_die("wl_fifo", "fill");
        total += (size_t)n;
    }
}

/* Reads exactly len bytes (blocking or not) and compares them with the pattern. */
static void read_expect(int fd, size_t len, uint64_t seed, uint64_t base, const char* what) {
    uint8_t* buf = malloc(len ? len : 1);
    if (!buf) wl_die("wl_fifo", "malloc");
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            wl_fail("%s: read %zu of %zu bytes, then %s", what, got, len, n == 0 ? "end of file" : strerror(errno));
            free(buf);
            return;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < len; ++i) {
        if (buf[i] != wl_pattern_byte(seed, base + i)) {
            wl_fail("%s: byte %zu: expected 0x%02x, found 0x%02x", what, i, wl_pattern_byte(seed, base + i), buf[i]);
            break;
        }
    }
    free(buf);
}

static int queued(int fd) {
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

static int child_main(int a_r) {
    read_expect(a_r, A_QUEUED, k_seed_a, 0, "child: fifo a, queued part");
    read_expect(a_r, A_LATER, k_seed_a, A_QUEUED, "child: fifo a, written after the restore");
    WL_CHECK(fcntl(g.big_r, F_GETPIPE_SZ) == (int)BIG_CAPACITY, "child: big pipe capacity %d", fcntl(g.big_r, F_GETPIPE_SZ));
    read_expect(g.big_r, BIG_QUEUED, k_seed_big, 0, "child: big pipe");
    return g_wl_fails == 0 ? 0 : 1;
}

static void setup(void) {
    make_fifo("a");
    make_fifo("b");
    make_fifo("c");
    make_fifo("d");
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) wl_die("wl_fifo", "pipe");
    g.big_r = p[0];
    g.big_w = p[1];
    if (fcntl(g.big_w, F_SETPIPE_SZ, BIG_CAPACITY) < 0) wl_die("wl_fifo", "F_SETPIPE_SZ 1 MiB");

    g.child = fork();
    if (g.child < 0) wl_die("wl_fifo", "fork");
    if (g.child == 0) {
        close(g.big_w);
        int a_r = open_fifo("a", O_RDONLY); /* blocks until the parent opens for writing */
        wl_wait_for("go");
        _exit(child_main(a_r));
    }
    close(g.big_r);
    g.big_r = -1;
    g.a_w = open_fifo("a", O_WRONLY);
    write_pattern_stream(g.a_w, A_QUEUED, k_seed_a, 0);
    write_pattern_stream(g.big_w, BIG_QUEUED, k_seed_big, 0);

    g.b_r = open_fifo("b", O_RDONLY | O_NONBLOCK);
    g.b_w = open_fifo("b", O_WRONLY | O_NONBLOCK);
    if (fcntl(g.b_w, F_SETPIPE_SZ, B_CAPACITY) < 0) wl_die("wl_fifo", "F_SETPIPE_SZ");
    size_t b = fill_up(g.b_w, k_seed_b);
    if (b != B_CAPACITY) wl_die("wl_fifo", "fifo b did not take its capacity");
    g.c_rw = open_fifo("c", O_RDWR);
    write_pattern_stream(g.c_rw, C_QUEUED, k_seed_c, 0);
    g.d_path = open_fifo("d", O_PATH);

    if (pipe2(p, O_CLOEXEC) != 0) wl_die("wl_fifo", "pipe");
    g.full_r = p[0];
    g.full_w = p[1];
    fcntl(g.full_w, F_SETFL, O_NONBLOCK);
    g.full_capacity = fcntl(g.full_w, F_GETPIPE_SZ);
    if ((int)fill_up(g.full_w, k_seed_full) != g.full_capacity) wl_die("wl_fifo", "full pipe");

    if (pipe2(p, O_CLOEXEC | O_DIRECT) != 0) wl_die("wl_fifo", "pipe2 O_DIRECT");
    g.pk_r = p[0];
    g.pk_w = p[1];
    uint64_t base = 0;
    for (size_t i = 0; i < sizeof k_packets / sizeof k_packets[0]; ++i) {
        write_pattern_stream(g.pk_w, k_packets[i], k_seed_packet, base);
        base += k_packets[i];
    }
}

static void check(void) {
    write_pattern_stream(g.a_w, A_LATER, k_seed_a, A_QUEUED);

    WL_CHECK(fcntl(g.b_w, F_GETPIPE_SZ) == (int)B_CAPACITY, "fifo b: capacity %d, expected %u", fcntl(g.b_w, F_GETPIPE_SZ), B_CAPACITY);
    WL_CHECK(queued(g.b_r) == (int)B_CAPACITY, "fifo b: %d bytes queued, expected %u", queued(g.b_r), B_CAPACITY);
    WL_CHECK(fcntl(g.b_w, F_GETFL) & O_NONBLOCK, "fifo b: write end lost O_NONBLOCK");
    WL_CHECK((fcntl(g.b_r, F_GETFL) & O_ACCMODE) == O_RDONLY, "fifo b: read end is not read-only");
    WL_CHECK(write(g.b_w, "x", 1) < 0 && errno == EAGAIN, "fifo b: not full after the restore");
    read_expect(g.b_r, B_CAPACITY, k_seed_b, 0, "fifo b");

    WL_CHECK((fcntl(g.c_rw, F_GETFL) & O_ACCMODE) == O_RDWR, "fifo c: not read-write");
    read_expect(g.c_rw, C_QUEUED, k_seed_c, 0, "fifo c");
    WL_CHECK(fcntl(g.d_path, F_GETFL) & O_PATH, "fifo d: lost O_PATH");
    struct stat st;
    WL_CHECK(fstat(g.d_path, &st) == 0 && S_ISFIFO(st.st_mode), "fifo d: not a fifo");

    WL_CHECK(fcntl(g.full_w, F_GETPIPE_SZ) == g.full_capacity, "full pipe: capacity %d, expected %d",
             fcntl(g.full_w, F_GETPIPE_SZ), g.full_capacity);
    WL_CHECK(write(g.full_w, "x", 1) < 0 && errno == EAGAIN, "full pipe: not full after the restore");
    read_expect(g.full_r, (size_t)g.full_capacity, k_seed_full, 0, "full pipe");

    uint64_t base = 0;
    for (size_t i = 0; i < sizeof k_packets / sizeof k_packets[0]; ++i) {
        uint8_t buf[8192];
        ssize_t n = read(g.pk_r, buf, sizeof buf);
        WL_CHECK(n == (ssize_t)k_packets[i], "packet pipe: packet %zu is %zd bytes, expected %u", i, n, k_packets[i]);
        for (ssize_t j = 0; j < n && j < (ssize_t)k_packets[i]; ++j)
            if (buf[j] != wl_pattern_byte(k_seed_packet, base + (uint64_t)j)) {
                wl_fail("packet pipe: packet %zu byte %zd differs", i, j);
                break;
            }
        base += k_packets[i];
    }
    WL_CHECK(fcntl(g.pk_w, F_GETFL) & O_DIRECT, "packet pipe: write end lost O_DIRECT");
    wl_reap(g.child, "child");
}

int main(int argc, char** argv) {
    int self_test = wl_start(argc, argv, "wl_fifo");
    setup();
    wl_ready_then_wait(self_test);
    char lost;
    if (g_wl_corrupt && read(g.b_r, &lost, 1) != 1) wl_die("wl_fifo", "read"); /* one byte short in fifo b */
    check();
    return wl_verdict();
}
