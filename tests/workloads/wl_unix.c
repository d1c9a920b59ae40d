/* wl_unix DIR | --self-test DIR | --self-test-corrupt DIR | --unsupported KIND DIR
 *
 * Unix sockets as cr.net.unix must bring them back, in a parent and a child:
 *   - stream, datagram and seqpacket socketpairs with data queued both ways (a zero-length
 *     datagram among them), one stream end shared with the child (fork) and dup'd;
 *   - a stream listener bound at DIR/listen.sock with one accepted connection (data both ways)
 *     and two connections not yet accepted, one of them held by the child;
 *   - a seqpacket listener on an abstract name with an accepted and a pending connection;
 *   - a datagram socket bound at DIR/dgram.sock holding datagrams from an unnamed sender, from a
 *     sender bound at DIR/sender.sock and from a socket connected to it;
 *   - descriptors in flight (SCM_RIGHTS): one end of a socketpair whose other end the parent
 *     keeps, both ends of a socketpair nobody holds any more, one with data queued in it, a
 *     regular file (contents, position, access mode), a pipe's read end whose write end the
 *     parent keeps and both ends of a pipe nobody holds, with data queued in both pipes;
 *   - credentials (SO_PASSCRED): packets from the child and from the parent;
 *   - shutdown (SHUT_WR, SHUT_RD, both), a pair whose other end was closed after writing;
 *   - a stream listener bound at a relative path (rel.sock, from DIR, the working directory) with
 *     an accepted and a pending connection;
 *   - SO_RCVBUF, SO_SNDBUF, SO_PEEK_OFF, O_NONBLOCK; an 80 MiB queue.
 * Writes DIR/ready, waits for DIR/go, checks every byte, name and property (and that each process
 * holds exactly the descriptors it had, no more), writes DIR/result
 * and exits 0 ("wl_unix: ok") or 1 with each difference on stderr.
 *
 * --unsupported KIND: a socket cr must refuse, then hold (see wl_hold):
 *   inflight-eventfd  an eventfd in flight in a socketpair's queue;
 *   pending-data    a connection not yet accepted whose client already sent data;
 *   external-dgram  the child (dump it alone; "PID -1 FD" in DIR/child) holds a datagram
 *                   socket connected to DIR/ext.sock, which the parent binds. After go the
 *                   child sends "after" through it; the parent receives it and writes
 *                   DIR/result (the child restored with --ext-unix-sk, or never dumped);
 *   external-stream the same, and the child also holds one end of a stream pair whose other
 *                   end the parent holds ("PID FD FD" in DIR/child). */
#include "wl_verify.h" /* first: it sets _GNU_SOURCE */

// clang-format off
#include <linux/kcmp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
// clang-format on

#define N_SP_AB 3000u
#define N_SP_BA 2000u
#define N_ACC_IN 1500u
#define N_ACC_OUT 700u
#define N_SHUT 300u
#define N_CLOSED 400u
#define N_PEEK 64u
#define PEEK_OFF 5
#define INFLIGHT_POS 7
#define N_BIG (80u << 20) /* more than the 64 MiB any default send buffer holds */

enum {
    k_seed_sp_ab = 31,
    k_seed_sp_ba,
    k_seed_dg,
    k_seed_sq,
    k_seed_acc_in,
    k_seed_acc_out,
    k_seed_shut,
    k_seed_closed,
    k_seed_peek,
    k_seed_inflight,
    k_seed_big
};
static const unsigned k_dg_sizes[] = {10, 0, 1000};
static const unsigned k_sq_sizes[] = {77, 3000};

static struct {
    int sp_a, sp_a_dup, sp_b;        /* stream pair: a (parent, dup'd), b (child) */
    int dg_a, dg_b, sq_a, sq_b;      /* dgram and seqpacket pairs, both ends in the parent */
    int lst, acc, cli, pend1, pend2; /* path listener; pend2 is shared with the child */
    int sq_lst, sq_acc, sq_cli, sq_pend;
    int dgs, dg_sender, dg_conn;    /* bound dgram receiver, named sender, connected client */
    int carrier_r, carrier_w, kept; /* carrier pair for fds in flight; kept: peer of a sent end */
    int pipe_w;                     /* write end of a pipe whose read end is in flight */
    int cred_r, cred_w;             /* seqpacket pair, cred_r has SO_PASSCRED */
    int shw_a, shw_b, shr_a, shr_b, shb_a, shb_b, cl_b;
    int peek, peek_w, nb;
    int big_r, big_w; /* 80 MiB queued, the send buffer raised with SO_SNDBUFFORCE */
    int rel_lst, rel_acc, rel_cli, rel_pend; /* a listener bound at a relative name, "rel.sock" */
    char abstract[64];
    pid_t child;
} g;

static void make_pair(int type, int* a, int* b) {
    int sv[2];
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) wl_die("wl_unix", "socketpair");
    *a = sv[0];
    *b = sv[1];
}

static socklen_t addr_of(const char* name, int abstract, struct sockaddr_un* a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        size_t n = strlen(name);
        memcpy(a->sun_path + 1, name, n);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    snprintf(a->sun_path, sizeof a->sun_path, "%s", name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

static int bound(int type, const char* name, int abstract) {
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    socklen_t len = addr_of(name, abstract, &a);
    if (fd < 0 || bind(fd, (struct sockaddr*)&a, len) != 0) wl_die("wl_unix", name);
    return fd;
}

static int connected(int type, const char* name, int abstract) {
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    socklen_t len = addr_of(name, abstract, &a);
    if (fd < 0 || connect(fd, (struct sockaddr*)&a, len) != 0) wl_die("wl_unix", name);
    return fd;
}

static const char* at(const char* name) {
    static char paths[8][PATH_MAX];
    static int next;
    char* p = paths[next++ % 8];
    return wl_at(p, PATH_MAX, name);
}

static void send_pattern(int fd, size_t len, uint64_t seed, uint64_t base) {
    uint8_t* buf = malloc(len ? len : 1);
    if (!buf) wl_die("wl_unix", "malloc");
    wl_fill_bytes(buf, len, seed, base);
    size_t done = 0;
    do {
        ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0) wl_die("wl_unix", "send");
        done += (size_t)n;
    } while (done < len);
    free(buf);
}

static void write_pattern(int fd, size_t len, uint64_t seed, uint64_t base) {
    uint8_t buf[256];
    if (len > sizeof buf) wl_die("wl_unix", "write_pattern too long");
    wl_fill_bytes(buf, len, seed, base);
    if (write(fd, buf, len) != (ssize_t)len) wl_die("wl_unix", "write");
}

static void read_expect(int fd, size_t len, uint64_t seed, uint64_t base, const char* what) {
    uint8_t buf[256];
    ssize_t n = read(fd, buf, len);
    if (n != (ssize_t)len) {
        wl_fail("%s: read %zd of %zu bytes (%s)", what, n, len, n < 0 ? strerror(errno) : "short");
        return;
    }
    for (size_t i = 0; i < len; ++i)
        if (buf[i] != wl_pattern_byte(seed, base + i)) {
            wl_fail("%s: byte %zu differs", what, i);
            return;
        }
}

static void send_fds(int fd, const char* text, const int* fds, int count) {
    char control[CMSG_SPACE(4 * sizeof(int))];
    struct iovec iov = {(void*)text, strlen(text)};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE((size_t)count * sizeof(int));
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)count * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)count * sizeof(int));
    if (sendmsg(fd, &msg, 0) != (ssize_t)strlen(text)) wl_die("wl_unix", "sendmsg SCM_RIGHTS");
}

/* Reads exactly len bytes (stream) and compares them with the pattern. */
static void expect_stream(int fd, size_t len, uint64_t seed, uint64_t base, const char* what) {
    uint8_t* buf = malloc(len ? len : 1);
    if (!buf) wl_die("wl_unix", "malloc");
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n <= 0) {
            wl_fail("%s: read %zu of %zu bytes, then %s", what, got, len,
                    n == 0 ? "end of file" : strerror(errno));
            free(buf);
            return;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < len; ++i)
        if (buf[i] != wl_pattern_byte(seed, base + i)) {
            wl_fail("%s: byte %zu differs", what, i);
            break;
        }
    free(buf);
}

static void expect_packet(int fd, size_t len, uint64_t seed, uint64_t base, const char* what,
                          const char* from) {
    uint8_t buf[8192];
    struct sockaddr_un a;
    socklen_t alen = sizeof a;
    ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr*)&a, &alen);
    if (n != (ssize_t)len) {
        wl_fail("%s: a packet of %zd bytes (%s), expected %zu", what, n,
                n < 0 ? strerror(errno) : "", len);
        return;
    }
    for (size_t i = 0; i < len; ++i)
        if (buf[i] != wl_pattern_byte(seed, base + i)) {
            wl_fail("%s: byte %zu differs", what, i);
            break;
        }
    if (from) {
        int named = alen > offsetof(struct sockaddr_un, sun_path);
        WL_CHECK(named == (from[0] != 0), "%s: sender %s, expected %s", what,
                 named ? a.sun_path : "unnamed", from[0] ? from : "unnamed");
        if (named && from[0])
            WL_CHECK(strcmp(a.sun_path, from) == 0, "%s: sender %s, expected %s", what, a.sun_path,
                     from);
    }
}

static void expect_empty(int fd, const char* what) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    WL_CHECK(n < 0 && errno == EAGAIN, "%s: not empty (%zd, %s)", what, n,
             n < 0 ? strerror(errno) : "data");
}

static void expect_eof(int fd, const char* what) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    WL_CHECK(n == 0, "%s: expected end of file, found %zd (%s)", what, n,
             n < 0 ? strerror(errno) : "data");
}

static void expect_name(int fd, int peer, const char* want, int abstract, const char* what) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    int r = peer ? getpeername(fd, (struct sockaddr*)&a, &len)
                 : getsockname(fd, (struct sockaddr*)&a, &len);
    if (r != 0) {
        wl_fail("%s: get%sname: %s", what, peer ? "peer" : "sock", strerror(errno));
        return;
    }
    size_t n = len - offsetof(struct sockaddr_un, sun_path);
    if (!want) {
        WL_CHECK(n == 0, "%s: named, expected unnamed", what);
    } else if (abstract) {
        WL_CHECK(n == 1 + strlen(want) && a.sun_path[0] == 0 &&
                     memcmp(a.sun_path + 1, want, strlen(want)) == 0,
                 "%s: not the abstract name @%s", what, want);
    } else {
        WL_CHECK(n > 0 && strcmp(a.sun_path, want) == 0, "%s: name '%.*s', expected %s", what,
                 (int)n, a.sun_path, want);
    }
}

static int opt(int fd, int name) {
    int v = -12345;
    socklen_t len = sizeof v;
    getsockopt(fd, SOL_SOCKET, name, &v, &len);
    return v;
}

/* Receives one message with descriptors; returns how many came, into fds. */
static int recv_fds(int fd, char* text, size_t size, int* fds, int max) {
    char control[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = {text, size - 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    text[n > 0 ? n : 0] = 0;
    int count = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && count < max; ++i)
                memcpy(&fds[count++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    return n < 0 ? -1 : count;
}

static void expect_creds(int fd, pid_t pid, const char* what) {
    char buf[64];
    char control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    struct cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (!c || c->cmsg_type != SCM_CREDENTIALS) {
        wl_fail("%s: no credentials (%zd, %s)", what, n, n < 0 ? strerror(errno) : "");
        return;
    }
    struct ucred u;
    memcpy(&u, CMSG_DATA(c), sizeof u);
    WL_CHECK(u.pid == pid && u.uid == getuid() && u.gid == getgid(),
             "%s: credentials pid %d uid %u gid %u, expected pid %d", what, (int)u.pid,
             (unsigned)u.uid, (unsigned)u.gid, (int)pid);
}

/* The descriptors this process holds, as "3 4 7 ...": the same list must come back, no more. */
static void fd_list(char* out, size_t size) {
    size_t len = 0;
    out[0] = 0;
    for (int fd = 0; fd < 1024 && len + 8 < size; ++fd)
        if (fcntl(fd, F_GETFD) >= 0) len += (size_t)snprintf(out + len, size - len, "%d ", fd);
}

static char g_fds[4096]; /* of this process, at the dump */

static void check_fd_list(const char* who) {
    char now[sizeof g_fds];
    fd_list(now, sizeof now);
    WL_CHECK(strcmp(now, g_fds) == 0, "%s: descriptors %s, expected %s", who, now, g_fds);
}

static int same_file(pid_t p1, int fd1, pid_t p2, int fd2) {
    return syscall(SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2) == 0;
}

/* The child: its end of the stream pair (data queued both ways, shared with the parent's dup
 * through fork), the pending connection it shares, packets it sent with its credentials. */
static int child_main(int sync_w) {
    uint8_t one = 1;
    if (send(g.cred_w, "from-child", 10, 0) != 10) wl_die("wl_unix", "send credentials");
    fd_list(g_fds, sizeof g_fds); /* before the parent can say it is ready */
    if (write(sync_w, &one, 1) != 1) wl_die("wl_unix", "sync");
    wl_wait_for("child-go"); /* the parent has compared its descriptors with ours */
    check_fd_list("child");
    expect_stream(g.sp_b, N_SP_AB, k_seed_sp_ab, 0, "child: stream pair, queued to the child");
    expect_empty(g.sp_b, "child: stream pair");
    send_pattern(g.sp_b, 100, k_seed_sp_ba, N_SP_BA);
    expect_name(g.pend2, 1, at("listen.sock"), 0, "child: pending connection 2 peer");
    send_pattern(g.pend2, 10, k_seed_acc_in, 900);
    return g_wl_fails == 0 ? 0 : 1;
}

static void setup(void) {
    make_pair(SOCK_STREAM, &g.sp_a, &g.sp_b);
    g.sp_a_dup = dup(g.sp_a);
    send_pattern(g.sp_a, N_SP_AB, k_seed_sp_ab, 0);
    send_pattern(g.sp_b, N_SP_BA, k_seed_sp_ba, 0);

    make_pair(SOCK_DGRAM, &g.dg_a, &g.dg_b);
    make_pair(SOCK_SEQPACKET, &g.sq_a, &g.sq_b);
    uint64_t base = 0;
    for (size_t i = 0; i < 3; ++i) {
        send_pattern(g.dg_a, k_dg_sizes[i], k_seed_dg, base);
        send_pattern(g.dg_b, k_dg_sizes[i], k_seed_dg, base + 5000);
        base += k_dg_sizes[i];
    }
    base = 0;
    for (size_t i = 0; i < 2; ++i) {
        send_pattern(g.sq_a, k_sq_sizes[i], k_seed_sq, base);
        send_pattern(g.sq_b, k_sq_sizes[i], k_seed_sq, base + 9000);
        base += k_sq_sizes[i];
    }

    g.lst = bound(SOCK_STREAM, at("listen.sock"), 0);
    if (listen(g.lst, 5) != 0) wl_die("wl_unix", "listen");
    chmod(at("listen.sock"), 0751);
    g.cli = connected(SOCK_STREAM, at("listen.sock"), 0);
    g.acc = accept4(g.lst, NULL, NULL, SOCK_CLOEXEC);
    if (g.acc < 0) wl_die("wl_unix", "accept");
    send_pattern(g.cli, N_ACC_IN, k_seed_acc_in, 0);
    send_pattern(g.acc, N_ACC_OUT, k_seed_acc_out, 0);
    g.pend1 = connected(SOCK_STREAM, at("listen.sock"), 0);
    g.pend2 = connected(SOCK_STREAM, at("listen.sock"), 0);

    snprintf(g.abstract, sizeof g.abstract, "cr-wl-unix-%d", (int)getpid());
    g.sq_lst = bound(SOCK_SEQPACKET, g.abstract, 1);
    if (listen(g.sq_lst, 3) != 0) wl_die("wl_unix", "listen");
    g.sq_cli = connected(SOCK_SEQPACKET, g.abstract, 1);
    g.sq_acc = accept4(g.sq_lst, NULL, NULL, SOCK_CLOEXEC);
    if (g.sq_acc < 0) wl_die("wl_unix", "accept");
    g.sq_pend = connected(SOCK_SEQPACKET, g.abstract, 1);
    send_pattern(g.sq_cli, 55, k_seed_sq, 20000);

    g.dgs = bound(SOCK_DGRAM, at("dgram.sock"), 0);
    int anon = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    g.dg_sender = bound(SOCK_DGRAM, at("sender.sock"), 0);
    g.dg_conn = connected(SOCK_DGRAM, at("dgram.sock"), 0);
    struct sockaddr_un a;
    socklen_t alen = addr_of(at("dgram.sock"), 0, &a);
    uint8_t buf[200];
    for (int i = 0; i < 2; ++i) {
        wl_fill_bytes(buf, sizeof buf, k_seed_dg, 30000 + (uint64_t)i * 200);
        if (sendto(anon, buf, sizeof buf, 0, (struct sockaddr*)&a, alen) != sizeof buf)
            wl_die("wl_unix", "sendto");
    }
    close(anon);
    wl_fill_bytes(buf, 50, k_seed_dg, 40000);
    if (sendto(g.dg_sender, buf, 50, 0, (struct sockaddr*)&a, alen) != 50)
        wl_die("wl_unix", "sendto");
    send_pattern(g.dg_conn, 60, k_seed_dg, 50000);

    /* In flight: x0 (peer kept) and both ends of y, y1 holding data. */
    make_pair(SOCK_STREAM, &g.carrier_r, &g.carrier_w);
    int x0, y0, y1;
    make_pair(SOCK_STREAM, &x0, &g.kept);
    make_pair(SOCK_DGRAM, &y0, &y1);
    send_pattern(y0, 123, k_seed_inflight, 0); /* queued on y1 */
    send_fds(g.carrier_w, "x", &x0, 1);
    int ys[2] = {y0, y1};
    send_fds(g.carrier_w, "y", ys, 2);
    close(x0);
    close(y0);
    close(y1);
    int file = open(at("inflight.txt"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (file < 0) wl_die("wl_unix", "open inflight.txt");
    wl_write_pattern(file, 0, 4000, k_seed_inflight);
    lseek(file, INFLIGHT_POS, SEEK_SET);
    send_fds(g.carrier_w, "f", &file, 1);
    close(file);
    int p1[2], p2[2];
    if (pipe2(p1, O_CLOEXEC) != 0 || pipe2(p2, O_CLOEXEC) != 0) wl_die("wl_unix", "pipe");
    g.pipe_w = p1[1];
    write_pattern(g.pipe_w, 50, k_seed_inflight, 5000);
    send_fds(g.carrier_w, "p", &p1[0], 1);
    close(p1[0]);
    if (write(p2[1], "forty bytes in a pipe nobody holds now!", 40) != 40)
        wl_die("wl_unix", "write");
    send_fds(g.carrier_w, "q", p2, 2);
    close(p2[0]);
    close(p2[1]);

    make_pair(SOCK_SEQPACKET, &g.cred_r, &g.cred_w);
    int on = 1;
    if (setsockopt(g.cred_r, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
        wl_die("wl_unix", "SO_PASSCRED");

    make_pair(SOCK_STREAM, &g.shw_a, &g.shw_b);
    send_pattern(g.shw_a, N_SHUT, k_seed_shut, 0);
    shutdown(g.shw_a, SHUT_WR);
    make_pair(SOCK_STREAM, &g.shr_a, &g.shr_b);
    shutdown(g.shr_a, SHUT_RD);
    make_pair(SOCK_STREAM, &g.shb_a, &g.shb_b);
    shutdown(g.shb_a, SHUT_RDWR);
    int cl_a;
    make_pair(SOCK_STREAM, &cl_a, &g.cl_b);
    send_pattern(cl_a, N_CLOSED, k_seed_closed, 0);
    close(cl_a);

    make_pair(SOCK_STREAM, &g.peek, &g.peek_w);
    send_pattern(g.peek_w, N_PEEK, k_seed_peek, 0);
    int v = PEEK_OFF;
    if (setsockopt(g.peek, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof v) != 0)
        wl_die("wl_unix", "SO_PEEK_OFF");
    v = 300000;
    if (setsockopt(g.peek, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) != 0)
        wl_die("wl_unix", "SO_RCVBUF");
    v = 150000;
    if (setsockopt(g.peek_w, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) != 0)
        wl_die("wl_unix", "SO_SNDBUF");
    g.nb = g.peek_w;
    fcntl(g.nb, F_SETFL, O_NONBLOCK);

    /* Relative to the working directory, which is DIR from here on. */
    if (chdir(g_wl_dir) != 0) wl_die("wl_unix", "chdir");
    g.rel_lst = bound(SOCK_STREAM, "rel.sock", 0);
    if (listen(g.rel_lst, 2) != 0) wl_die("wl_unix", "listen");
    g.rel_cli = connected(SOCK_STREAM, "rel.sock", 0);
    g.rel_acc = accept4(g.rel_lst, NULL, NULL, SOCK_CLOEXEC);
    if (g.rel_acc < 0) wl_die("wl_unix", "accept");
    g.rel_pend = connected(SOCK_STREAM, "rel.sock", 0);
    send_pattern(g.rel_cli, 11, k_seed_acc_in, 70000);

    make_pair(SOCK_STREAM, &g.big_w, &g.big_r);
    v = (int)N_BIG;
    if (setsockopt(g.big_w, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0)
        wl_die("wl_unix", "SO_SNDBUFFORCE");
    send_pattern(g.big_w, N_BIG, k_seed_big, 0);

    int sync[2];
    if (pipe2(sync, O_CLOEXEC) != 0) wl_die("wl_unix", "pipe");
    g.child = fork();
    if (g.child < 0) wl_die("wl_unix", "fork");
    if (g.child == 0) {
        close(sync[0]);
        close(g.sp_a);
        close(g.sp_a_dup);
        _exit(child_main(sync[1]));
    }
    close(sync[1]);
    close(g.sp_b);
    uint8_t one;
    if (read(sync[0], &one, 1) != 1) wl_die("wl_unix", "child did not start");
    close(sync[0]);
    if (send(g.cred_w, "from-parent", 11, 0) != 11) wl_die("wl_unix", "send credentials");
}

static void check(void) {
    check_fd_list("parent");
    WL_CHECK(same_file(getpid(), g.sp_a, getpid(), g.sp_a_dup),
             "stream pair: the dup is another file");
    WL_CHECK(same_file(getpid(), g.pend2, g.child, g.pend2),
             "pending connection 2: not shared with the child");
    if (wl_write_file(g_wl_dir, "child-go", "") != 0) wl_die("wl_unix", "write child-go");
    expect_stream(g.sp_a, N_SP_BA, k_seed_sp_ba, 0, "stream pair, queued to the parent");

    uint64_t base = 0;
    for (size_t i = 0; i < 3; ++i) {
        expect_packet(g.dg_b, k_dg_sizes[i], k_seed_dg, base, "dgram pair a->b", NULL);
        expect_packet(g.dg_a, k_dg_sizes[i], k_seed_dg, base + 5000, "dgram pair b->a", NULL);
        base += k_dg_sizes[i];
    }
    expect_empty(g.dg_a, "dgram pair a");
    expect_empty(g.dg_b, "dgram pair b");
    base = 0;
    for (size_t i = 0; i < 2; ++i) {
        expect_packet(g.sq_b, k_sq_sizes[i], k_seed_sq, base, "seqpacket pair a->b", NULL);
        expect_packet(g.sq_a, k_sq_sizes[i], k_seed_sq, base + 9000, "seqpacket pair b->a", NULL);
        base += k_sq_sizes[i];
    }

    expect_name(g.lst, 0, at("listen.sock"), 0, "listener");
    struct stat st;
    WL_CHECK(
        stat(at("listen.sock"), &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0751,
        "listener: socket file missing or mode %o", st.st_mode & 07777);
    WL_CHECK(opt(g.lst, SO_ACCEPTCONN) == 1, "listener: not listening");
    expect_name(g.acc, 0, at("listen.sock"), 0, "accepted: own name");
    expect_name(g.acc, 1, NULL, 0, "accepted: peer name");
    expect_name(g.cli, 1, at("listen.sock"), 0, "client: peer name");
    expect_stream(g.acc, N_ACC_IN, k_seed_acc_in, 0, "accepted: queued from the client");
    expect_stream(g.cli, N_ACC_OUT, k_seed_acc_out, 0, "client: queued from the server");
    fcntl(g.lst, F_SETFL, O_NONBLOCK);
    fcntl(g.sq_lst, F_SETFL, O_NONBLOCK);
    int p1 = accept4(g.lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    int p2 = accept4(g.lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    int p3 = accept4(g.lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    WL_CHECK(p1 >= 0 && p2 >= 0 && p3 < 0, "listener: pending connections %d %d %d, expected two",
             p1, p2, p3);
    if (p1 >= 0 && p2 >= 0) {
        send_pattern(g.pend1, 20, k_seed_acc_in, 800);
        expect_stream(p1, 20, k_seed_acc_in, 800, "first pending connection, in accept order");
        wl_reap(g.child, "child");
        expect_stream(p2, 10, k_seed_acc_in, 900, "second pending connection (the child's)");
    } else {
        wl_reap(g.child, "child");
    }
    expect_stream(g.sp_a, 100, k_seed_sp_ba, N_SP_BA,
                  "stream pair, sent by the child after the restore");
    expect_eof(g.sp_a, "stream pair, after the child exited");

    expect_name(g.sq_lst, 0, g.abstract, 1, "seqpacket listener");
    expect_name(g.sq_acc, 0, g.abstract, 1, "seqpacket accepted");
    expect_packet(g.sq_acc, 55, k_seed_sq, 20000, "seqpacket accepted", NULL);
    int sp1 = accept4(g.sq_lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    WL_CHECK(sp1 >= 0, "seqpacket listener: no pending connection");
    if (sp1 >= 0) {
        send_pattern(g.sq_pend, 9, k_seed_sq, 21000);
        expect_packet(sp1, 9, k_seed_sq, 21000, "seqpacket pending connection", NULL);
    }

    expect_name(g.dgs, 0, at("dgram.sock"), 0, "dgram receiver");
    expect_packet(g.dgs, 200, k_seed_dg, 30000, "dgram receiver, 1st", "");
    expect_packet(g.dgs, 200, k_seed_dg, 30200, "dgram receiver, 2nd", "");
    expect_packet(g.dgs, 50, k_seed_dg, 40000, "dgram receiver, from sender.sock",
                  at("sender.sock"));
    expect_packet(g.dgs, 60, k_seed_dg, 50000, "dgram receiver, from the connected one", "");
    expect_empty(g.dgs, "dgram receiver");
    expect_name(g.dg_conn, 1, at("dgram.sock"), 0, "connected dgram: peer");
    send_pattern(g.dg_conn, 7, k_seed_dg, 60000);
    expect_packet(g.dgs, 7, k_seed_dg, 60000, "dgram receiver, after the restore", "");

    char text[16];
    int fds[4];
    int n = recv_fds(g.carrier_r, text, sizeof text, fds, 4);
    WL_CHECK(n == 1 && strcmp(text, "x") == 0, "in flight x: %d descriptors, text '%s'", n, text);
    if (n == 1) {
        send_pattern(fds[0], 33, k_seed_inflight, 1000);
        expect_stream(g.kept, 33, k_seed_inflight, 1000, "in flight x: its peer");
    }
    n = recv_fds(g.carrier_r, text, sizeof text, fds, 4);
    WL_CHECK(n == 2 && strcmp(text, "y") == 0, "in flight y: %d descriptors, text '%s'", n, text);
    if (n == 2) {
        expect_packet(fds[1], 123, k_seed_inflight, 0, "in flight y: queued in it", NULL);
        send_pattern(fds[1], 5, k_seed_inflight, 2000);
        expect_packet(fds[0], 5, k_seed_inflight, 2000, "in flight y: pair", NULL);
    }

    n = recv_fds(g.carrier_r, text, sizeof text, fds, 4);
    WL_CHECK(n == 1 && strcmp(text, "f") == 0, "in flight file: %d descriptors, text '%s'", n,
             text);
    if (n == 1) {
        WL_CHECK(lseek(fds[0], 0, SEEK_CUR) == INFLIGHT_POS,
                 "in flight file: position %lld, expected %d",
                 (long long)lseek(fds[0], 0, SEEK_CUR), INFLIGHT_POS);
        WL_CHECK((fcntl(fds[0], F_GETFL) & O_ACCMODE) == O_RDWR, "in flight file: not read-write");
        wl_check_pattern(fds[0], 0, 4000, k_seed_inflight, 0, "in flight file");
    }
    n = recv_fds(g.carrier_r, text, sizeof text, fds, 4);
    WL_CHECK(n == 1 && strcmp(text, "p") == 0, "in flight pipe: %d descriptors, text '%s'", n,
             text);
    if (n == 1) {
        read_expect(fds[0], 50, k_seed_inflight, 5000, "in flight pipe: queued");
        write_pattern(g.pipe_w, 9, k_seed_inflight, 6000);
        read_expect(fds[0], 9, k_seed_inflight, 6000, "in flight pipe: written after the restore");
    }
    n = recv_fds(g.carrier_r, text, sizeof text, fds, 4);
    WL_CHECK(n == 2 && strcmp(text, "q") == 0,
             "in flight pipe, both ends: %d descriptors, text '%s'", n, text);
    if (n == 2) {
        char buf[64] = {0};
        WL_CHECK(read(fds[0], buf, sizeof buf) == 40 &&
                     strcmp(buf, "forty bytes in a pipe nobody holds now!") == 0,
                 "in flight pipe, both ends: queued data '%s'", buf);
        WL_CHECK(write(fds[1], "z", 1) == 1 && read(fds[0], buf, 1) == 1 && buf[0] == 'z',
                 "in flight pipe, both ends: not one pipe");
    }
    expect_empty(g.carrier_r, "carrier");

    expect_creds(g.cred_r, g.child, "credentials from the child");
    expect_creds(g.cred_r, getpid(), "credentials from the parent");

    expect_stream(g.shw_b, N_SHUT, k_seed_shut, 0, "SHUT_WR: data");
    expect_eof(g.shw_b, "SHUT_WR: peer");
    WL_CHECK(send(g.shw_a, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
             "SHUT_WR: send still works");
    expect_eof(g.shr_a, "SHUT_RD");
    WL_CHECK(send(g.shr_b, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
             "SHUT_RD: the peer can still send");
    expect_eof(g.shb_a, "SHUT_RDWR");
    expect_eof(g.shb_b, "SHUT_RDWR: peer");
    expect_stream(g.cl_b, N_CLOSED, k_seed_closed, 0, "closed peer: data");
    expect_eof(g.cl_b, "closed peer");

    WL_CHECK(opt(g.peek, SO_PEEK_OFF) == PEEK_OFF, "SO_PEEK_OFF %d, expected %d",
             opt(g.peek, SO_PEEK_OFF), PEEK_OFF);
    WL_CHECK(opt(g.peek, SO_RCVBUF) == 600000, "SO_RCVBUF %d, expected 600000",
             opt(g.peek, SO_RCVBUF));
    WL_CHECK(opt(g.peek_w, SO_SNDBUF) == 300000, "SO_SNDBUF %d, expected 300000",
             opt(g.peek_w, SO_SNDBUF));
    WL_CHECK(opt(g.cred_r, SO_PASSCRED) == 1 && opt(g.cred_w, SO_PASSCRED) == 0,
             "SO_PASSCRED lost or spread");
    WL_CHECK(fcntl(g.nb, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
    WL_CHECK(!(fcntl(g.peek, F_GETFL) & O_NONBLOCK), "O_NONBLOCK appeared");
    uint8_t pk[8];
    ssize_t got = recv(g.peek, pk, sizeof pk, MSG_PEEK | MSG_DONTWAIT);
    WL_CHECK(got == 8 && pk[0] == wl_pattern_byte(k_seed_peek, PEEK_OFF),
             "SO_PEEK_OFF: a peek does not start at %d", PEEK_OFF);
    expect_name(g.rel_lst, 0, "rel.sock", 0, "relative listener");
    expect_name(g.rel_acc, 0, "rel.sock", 0, "relative listener: accepted");
    expect_name(g.rel_cli, 1, "rel.sock", 0, "relative listener: client's peer");
    WL_CHECK(stat(at("rel.sock"), &st) == 0 && S_ISSOCK(st.st_mode),
             "relative listener: no socket file in DIR");
    expect_stream(g.rel_acc, 11, k_seed_acc_in, 70000, "relative listener: accepted");
    fcntl(g.rel_lst, F_SETFL, O_NONBLOCK);
    int rp = accept4(g.rel_lst, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    WL_CHECK(rp >= 0, "relative listener: no pending connection");
    if (rp >= 0) {
        send_pattern(g.rel_pend, 3, k_seed_acc_in, 71000);
        expect_stream(rp, 3, k_seed_acc_in, 71000, "relative listener: pending connection");
    }
    expect_stream(g.big_r, N_BIG, k_seed_big, 0, "80 MiB queue");
    expect_empty(g.big_r, "80 MiB queue");
    int type = opt(g.sq_a, SO_TYPE);
    WL_CHECK(type == SOCK_SEQPACKET, "seqpacket pair: type %d", type);
}

static int unsupported(const char* kind) {
    if (strcmp(kind, "inflight-eventfd") == 0) {
        int a, b;
        make_pair(SOCK_STREAM, &a, &b);
        int e = eventfd(3, EFD_CLOEXEC);
        if (e < 0) wl_die("wl_unix", "eventfd");
        send_fds(a, "e", &e, 1);
        close(e);
        wl_hold();
        char text[8];
        int fds[2];
        int n = recv_fds(b, text, sizeof text, fds, 2);
        uint64_t v = 0;
        WL_CHECK(n == 1 && read(fds[0], &v, sizeof v) == sizeof v && v == 3,
                 "eventfd in flight: %d descriptors, value %llu after the refused dump", n,
                 (unsigned long long)v);
        return wl_verdict();
    }
    if (strcmp(kind, "pending-data") == 0) {
        int l = bound(SOCK_STREAM, at("pending.sock"), 0);
        if (listen(l, 2) != 0) wl_die("wl_unix", "listen");
        int c = connected(SOCK_STREAM, at("pending.sock"), 0);
        if (send(c, "early", 5, 0) != 5) wl_die("wl_unix", "send");
        wl_hold();
        fcntl(l, F_SETFL, O_NONBLOCK);
        int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        char buf[8] = {0};
        WL_CHECK(
            a >= 0 && recv(a, buf, sizeof buf, MSG_DONTWAIT) == 5 && memcmp(buf, "early", 5) == 0,
            "pending connection: not there with its data after the refused dump");
        return wl_verdict();
    }
    int ext_stream = strcmp(kind, "external-stream") == 0;
    if (ext_stream || strcmp(kind, "external-dgram") == 0) {
        int a, b;
        make_pair(SOCK_STREAM, &a, &b);
        int ext = bound(SOCK_DGRAM, at("ext.sock"), 0);
        signal(SIGCHLD,
               SIG_IGN); /* the child is dumped and killed alone: no zombie may keep its pid */
        pid_t child = fork();
        if (child < 0) wl_die("wl_unix", "fork");
        if (child == 0) {
            close(a);
            close(ext);
            if (!ext_stream) close(b);
            int d = connected(SOCK_DGRAM, at("ext.sock"), 0);
            char text[32];
            snprintf(text, sizeof text, "%d %d %d\n", (int)getpid(), ext_stream ? b : -1, d);
            if (wl_write_file(g_wl_dir, "child", text) != 0) wl_die("wl_unix", "write child");
            wl_wait_for("go");
            _exit(send(d, "after", 5, 0) == 5 ? 0 : 1);
        }
        close(b);
        wl_hold();
        char buf[16];
        ssize_t n = -1;
        for (int i = 0; i < 1000; ++i) {
            n = recv(ext, buf, sizeof buf, MSG_DONTWAIT);
            if (n >= 0 || errno != EAGAIN) break;
            wl_sleep_ms(10);
        }
        WL_CHECK(n == 5 && memcmp(buf, "after", 5) == 0, "external: nothing from the child (%zd)",
                 n);
        return wl_verdict();
    }
    fprintf(stderr, "wl_unix: unknown --unsupported kind %s\n", kind);
    return 2;
}

int main(int argc, char** argv) {
    /* Descriptors inherited from whoever started us (a test runner's log) are not ours to keep. */
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    const char* kind = wl_unsupported_kind(argc, argv, "wl_unix");
    if (kind) return unsupported(kind);
    int self_test = wl_start(argc, argv, "wl_unix");
    signal(SIGPIPE, SIG_IGN);
    setup();
    fd_list(g_fds, sizeof g_fds);
    wl_ready_then_wait(self_test);
    if (g_wl_corrupt) {
        char lost;
        if (recv(g.sp_a, &lost, 1, 0) != 1) wl_die("wl_unix", "recv"); /* one byte short */
    }
    check();
    return wl_verdict();
}
