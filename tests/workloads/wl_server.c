/* wl_server DIR | --self-test DIR | --self-test-corrupt[=KIND] DIR
 *
 * A small server, for dump/restore cycles while traffic flows:
 *   - the root listens on a unix stream socket bound to DIR/sock and accepts one connection from
 *     each of 8 client children (they connect after the fork);
 *   - each client sends numbered records of varying length (header with its id, sequence number
 *     and a checksum, then a payload drawn from the pattern) as fast as a window of 32 unacked
 *     records allows; the server reads at a bounded rate, so both directions of every
 *     connection hold queued data most of the time, checks every byte, and answers each record
 *     with an acknowledgement (sequence number, checksum, bytes so far) that the client checks;
 *   - the root and each client write a 64-byte log record per 10 ms tick (own sequence number,
 *     counters, checksum) into a pipe of their own to a logger child, which reads every 30 ms,
 *     checks each source's sequence, writes one line per record to DIR/server.log and answers
 *     DIR/req with the latest counters of every source in DIR/count;
 *   - every task has an epoll instance watching its fds and does I/O only on what it reports.
 * When DIR/stop appears, the clients stop sending, wait for every ack, half-close and read to
 * the end; the server closes each drained connection; the logger, after the last pipe ends,
 * cross-checks the final counters of each client against the server's and reads its log file
 * back. The root reaps every child, writes DIR/result and exits 0 ("wl_server: ok") or 1 with
 * each difference on stderr. Any gap, duplicate or changed byte in any stream is a difference.
 *
 * --self-test stops by itself after 2 s; --self-test-corrupt=KIND spoils one stream so that the
 * checks must fail: gap, dup, byte (a client stream), ack (the server's answers), log-gap,
 * log-dup (a log pipe), log-line (the log file). Without =KIND: gap. */
#define _GNU_SOURCE /* accept4, pipe2: before any system header */

#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "wl_verify.h"

#define CLIENTS 8
#define SOURCES (CLIENTS + 1) /* log sources: the server is 0, client i is i + 1 */
#define TICK_MS 10
#define LOGGER_TICK_MS 30
#define STOP_POLL_TICKS 5
#define WINDOW 32        /* unacked records a client may have in flight */
#define NEW_PER_TICK 8   /* records a client may add per tick */
#define READ_BUDGET 3000 /* bytes the server reads per connection per tick: less than offered */
#define PAYLOAD_MIN 16
#define PAYLOAD_MAX 1500
#define STALL_S 20 /* after DIR/stop, how long a task may take to finish */
#define SELF_TEST_MS 2000
#define MAX_FAILS 50
#define INJECT_SEQ 40 /* where --self-test-corrupt spoils a record stream */
#define INJECT_LOG_SEQ 20

#define REC_MAGIC 0x44434552u /* "RECD" */
#define ACK_MAGIC 0x534b4341u /* "ACKS" */
#define LOG_MAGIC 0x52474f4cu /* "LOGR" */

struct rec_hdr {
    uint32_t magic;
    uint16_t src;
    uint16_t len; /* payload bytes after the header */
    uint64_t seq;
    uint64_t sum; /* over the header (sum 0) and the payload */
};

struct ack {
    uint32_t magic;
    uint16_t src;
    uint16_t len;
    uint64_t seq;
    uint64_t sum;   /* the record's */
    uint64_t bytes; /* bytes of the connection up to the end of this record */
};

enum { k_log_tick = 1, k_log_conn_final = 2, k_log_final = 3 };

/* tick: v = counters (see count_line); conn_final (server): v0 client source, v1 records,
 * v2 bytes; final: v as in tick, the last record of the source. */
struct logrec {
    uint32_t magic;
    uint16_t src;
    uint16_t kind;
    uint64_t seq;
    uint64_t v[5];
    uint64_t sum; /* over everything before it */
};

_Static_assert(sizeof(struct rec_hdr) == 24, "record header layout");
_Static_assert(sizeof(struct ack) == 32, "ack layout");
_Static_assert(sizeof(struct logrec) == 64, "log record layout");

enum corrupt {
    k_none,
    k_gap,     /* client 3 skips record INJECT_SEQ */
    k_dup,     /* client 5 sends record INJECT_SEQ twice */
    k_byte,    /* client 2 leaves out the last payload byte of record INJECT_SEQ */
    k_ack,     /* the server does not answer record INJECT_SEQ of client 4 */
    k_log_gap, /* client 6 skips log record INJECT_LOG_SEQ */
    k_log_dup, /* the server sends log record INJECT_LOG_SEQ twice */
    k_log_line /* the logger leaves out the line of log record INJECT_LOG_SEQ of client 1 */
};

static enum corrupt g_corrupt;
static int g_self_test;
static char g_who[64];

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t fnv1a(const void* data, size_t len, uint64_t h) {
    const uint8_t* p = data;
    for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_BASIS 0xcbf29ce484222325ull

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleeps out the rest of a tick begun at start: a task does its I/O at most once per tick, so
 * data waits in the sockets and pipes in between. */
static void finish_tick(uint64_t start, unsigned tick_ms) {
    uint64_t now = now_ms();
    if (now < start + tick_ms) wl_sleep_ms((long)(start + tick_ms - now));
}

static void set_who(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_who(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_who, sizeof g_who, fmt, ap);
    va_end(ap);
    g_wl_name = g_who;
}

static int too_many_fails(void) {
    if (g_wl_fails < MAX_FAILS) return 0;
    wl_fail("too many differences, giving up");
    return 1;
}

/* 1 once DIR/stop exists (or the self-test ran its time); exits 3 if DIR vanished. */
static int stop_requested(uint64_t started) {
    char path[PATH_MAX];
    if (!wl_exists(g_wl_dir)) {
        fprintf(stderr, "%s: %s vanished, exiting\n", g_wl_name, g_wl_dir);
        _exit(3);
    }
    if (g_self_test && now_ms() - started >= SELF_TEST_MS) return 1;
    return wl_exists(wl_at(path, sizeof path, "stop"));
}

/* A byte queue: appended at the end, consumed from off. */
struct buf {
    uint8_t* data;
    size_t off, len, cap;
};

static void buf_put(struct buf* b, const void* data, size_t len) {
    if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
    if (b->len + len > b->cap) {
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        if (cap != b->cap) {
            b->data = realloc(b->data, cap);
            if (!b->data) wl_die(g_wl_name, "realloc");
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static size_t buf_size(const struct buf* b) {
    return b->len - b->off;
}
static uint8_t* buf_head(const struct buf* b) {
    return b->data + b->off;
}
static void buf_drop(struct buf* b, size_t n) {
    b->off += n;
}

/* Writes what the queue holds; -1 on an error other than a full socket or pipe. */
static int buf_flush(int fd, struct buf* b, const char* what) {
    while (buf_size(b) > 0) {
        ssize_t n = write(fd, buf_head(b), buf_size(b)); /* SIGPIPE is ignored: EPIPE */
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        if (n <= 0) {
            wl_fail("%s: write: %s", what, n < 0 ? strerror(errno) : "wrote nothing");
            return -1;
        }
        buf_drop(b, (size_t)n);
    }
    return 0;
}

/* Reads at most limit bytes into the queue: the count, 0 at the end, -1 on an error (reported),
 * -2 when nothing is there (EAGAIN). */
static ssize_t buf_read(int fd, struct buf* b, size_t limit, const char* what) {
    uint8_t tmp[8192];
    if (limit > sizeof tmp) limit = sizeof tmp;
    ssize_t n;
    while ((n = read(fd, tmp, limit)) < 0 && errno == EINTR) {
    }
    if (n < 0 && errno == EAGAIN) return -2;
    if (n < 0) {
        wl_fail("%s: read: %s", what, strerror(errno));
        return -1;
    }
    buf_put(b, tmp, (size_t)n);
    return n;
}

static int make_epoll(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) wl_die(g_wl_name, "epoll_create1");
    return ep;
}

static void watch(int ep, int op, int fd, uint32_t events, uint32_t tag) {
    struct epoll_event ev = {.events = events, .data.u32 = tag};
    if (epoll_ctl(ep, op, fd, &ev) != 0) wl_die(g_wl_name, "epoll_ctl");
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) wl_die(g_wl_name, "O_NONBLOCK");
}

/* One log record from source src into its pipe queue. */
static void log_put(struct buf* b, uint16_t src, uint16_t kind, uint64_t* seq,
                    const uint64_t v[5]) {
    struct logrec r = {.magic = LOG_MAGIC, .src = src, .kind = kind, .seq = *seq};
    memcpy(r.v, v, sizeof r.v);
    r.sum = fnv1a(&r, offsetof(struct logrec, sum), FNV_BASIS);
    buf_put(b, &r, sizeof r);
    ++*seq;
}

static uint16_t payload_len(uint16_t src, uint64_t seq) {
    return (uint16_t)(PAYLOAD_MIN + wl_pattern_word(src, seq) % (PAYLOAD_MAX - PAYLOAD_MIN + 1));
}

static uint64_t payload_seed(uint16_t src) {
    return 0x5e7e0000u + src;
}

/* ---- client --------------------------------------------------------------------------------- */

enum phase { k_run, k_flush, k_drain, k_final, k_done };

struct client {
    uint16_t src;
    int conn, log, ep;
    struct buf out, in, logq;
    uint64_t next_seq, acked, bytes_sent, log_seq;
    uint64_t sums[WINDOW], ends[WINDOW]; /* checksum and end offset of each record in flight */
    int out_watched, log_watched, ack_off;
    enum phase phase;
};

static void client_add_record(struct client* c) {
    uint64_t seq = c->next_seq;
    if (g_corrupt == k_gap && c->src == 3 && seq == INJECT_SEQ) seq = ++c->next_seq;
    uint8_t payload[PAYLOAD_MAX];
    struct rec_hdr h = {
        .magic = REC_MAGIC, .src = c->src, .len = payload_len(c->src, seq), .seq = seq};
    wl_fill_bytes(payload, h.len, payload_seed(c->src), seq << 11);
    h.sum = fnv1a(payload, h.len, fnv1a(&h, sizeof h, FNV_BASIS));
    size_t len = h.len;
    if (g_corrupt == k_byte && c->src == 2 && seq == INJECT_SEQ) --len;
    buf_put(&c->out, &h, sizeof h);
    buf_put(&c->out, payload, len);
    if (g_corrupt == k_dup && c->src == 5 && seq == INJECT_SEQ) {
        buf_put(&c->out, &h, sizeof h);
        buf_put(&c->out, payload, len);
    }
    c->bytes_sent += sizeof h + h.len;
    c->sums[seq % WINDOW] = h.sum;
    c->ends[seq % WINDOW] = c->bytes_sent;
    c->next_seq = seq + 1;
}

static void client_parse_acks(struct client* c) {
    while (buf_size(&c->in) >= sizeof(struct ack)) {
        struct ack a;
        memcpy(&a, buf_head(&c->in), sizeof a);
        buf_drop(&c->in, sizeof a);
        if (c->phase >= k_drain) {
            wl_fail("an ack for record %llu after the last one was answered",
                    (unsigned long long)a.seq);
            continue;
        }
        if (a.magic != ACK_MAGIC || a.src != c->src) {
            wl_fail("ack after record %llu: magic %#x source %u, expected %#x source %u",
                    (unsigned long long)c->acked, a.magic, a.src, ACK_MAGIC, c->src);
            continue;
        }
        if (a.seq != c->acked) {
            wl_fail("ack for record %llu, expected %llu (%s)", (unsigned long long)a.seq,
                    (unsigned long long)c->acked, a.seq > c->acked ? "acks missing" : "ack again");
            if (a.seq < c->acked || a.seq >= c->next_seq) continue;
            c->acked = a.seq;
        }
        if (c->acked >= c->next_seq) {
            wl_fail("ack for record %llu, which was not sent", (unsigned long long)a.seq);
            continue;
        }
        /* Once the server's byte count is off it stays off: one line says it. */
        if ((a.sum != c->sums[a.seq % WINDOW] || a.bytes != c->ends[a.seq % WINDOW]) &&
            !c->ack_off++)
            wl_fail("ack for record %llu: checksum %#llx at byte %llu, sent %#llx ending at %llu",
                    (unsigned long long)a.seq, (unsigned long long)a.sum,
                    (unsigned long long)a.bytes, (unsigned long long)c->sums[a.seq % WINDOW],
                    (unsigned long long)c->ends[a.seq % WINDOW]);
        c->acked++;
    }
}

/* Reads acks as epoll reported them; 0 at the end of the stream, -1 on an error. */
static int client_read(struct client* c) {
    for (int i = 0; i < 4; ++i) {
        ssize_t n = buf_read(c->conn, &c->in, 8192, "connection");
        if (n == -2) return 1;
        if (n < 0) return -1;
        if (n == 0) {
            if (c->phase != k_drain)
                wl_fail("the server ended the connection early (sent %llu, acked %llu)",
                        (unsigned long long)c->next_seq, (unsigned long long)c->acked);
            if (buf_size(&c->in) > 0)
                wl_fail("%zu bytes of a partial ack at the end", buf_size(&c->in));
            return 0;
        }
        if (c->phase == k_drain) {
            wl_fail("%zd bytes after the last ack was read", n);
            buf_drop(&c->in, buf_size(&c->in));
        }
        client_parse_acks(c);
    }
    return 1;
}

static void client_counters(const struct client* c, uint64_t v[5]) {
    v[0] = c->next_seq;
    v[1] = c->acked;
    v[2] = c->bytes_sent;
    v[3] = v[4] = 0;
}

static void client_watch_out(struct client* c) {
    int want = buf_size(&c->out) > 0 && c->phase < k_drain;
    if (want != c->out_watched)
        watch(c->ep, EPOLL_CTL_MOD, c->conn, EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), 0);
    c->out_watched = want;
    want = buf_size(&c->logq) > 0;
    if (want != c->log_watched) watch(c->ep, EPOLL_CTL_MOD, c->log, want ? EPOLLOUT : 0, 1);
    c->log_watched = want;
}

static int client_events(struct client* c) {
    struct epoll_event evs[4];
    int n = epoll_wait(c->ep, evs, 4, TICK_MS);
    if (n < 0 && errno != EINTR) wl_die(g_wl_name, "epoll_wait");
    for (int i = 0; i < n; ++i) {
        uint32_t e = evs[i].events;
        if (evs[i].data.u32 == 0) {
            if (e & EPOLLOUT && buf_flush(c->conn, &c->out, "connection") < 0) return -1;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                int r = client_read(c);
                if (r < 0) return -1;
                if (r == 0) c->phase = c->phase == k_drain ? k_final : k_done;
            }
        } else {
            if (e & EPOLLERR && !(e & EPOLLOUT)) {
                wl_fail("log pipe: the logger is gone");
                return -1;
            }
            if (e & EPOLLOUT && buf_flush(c->log, &c->logq, "log pipe") < 0) return -1;
        }
    }
    return 0;
}

static int client_main(uint16_t src, int log_fd, const char* sock_path) {
    set_who("wl_server[client %u]", src);
    struct client c = {.src = src, .log = log_fd, .phase = k_run};
    c.conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path);
    if (c.conn < 0 || connect(c.conn, (struct sockaddr*)&addr, sizeof addr) != 0)
        wl_die(g_wl_name, "connect");
    set_nonblock(c.conn);
    set_nonblock(c.log);
    c.ep = make_epoll();
    watch(c.ep, EPOLL_CTL_ADD, c.conn, EPOLLIN | EPOLLRDHUP, 0);
    watch(c.ep, EPOLL_CTL_ADD, c.log, 0, 1);

    uint64_t started = now_ms(), stop_at = 0, v[5];
    for (unsigned tick = 0; c.phase != k_done; ++tick) {
        uint64_t t0 = now_ms();
        if (client_events(&c) < 0 || too_many_fails()) break;
        if (c.phase == k_run && tick % STOP_POLL_TICKS == 0 && stop_requested(started)) {
            c.phase = k_flush;
            stop_at = now_ms();
        }
        if (c.phase == k_run)
            for (int i = 0; i < NEW_PER_TICK && c.next_seq - c.acked < WINDOW; ++i)
                client_add_record(&c);
        if (c.phase == k_flush && buf_size(&c.out) == 0 && c.acked == c.next_seq) {
            if (shutdown(c.conn, SHUT_WR) != 0) wl_die(g_wl_name, "shutdown");
            c.phase = k_drain;
        }
        client_counters(&c, v);
        if (c.phase == k_final) {
            log_put(&c.logq, src, k_log_final, &c.log_seq, v);
            c.phase = k_done;
        } else if (buf_size(&c.logq) < 4096) {
            if (g_corrupt == k_log_gap && src == 6 && c.log_seq == INJECT_LOG_SEQ) c.log_seq++;
            log_put(&c.logq, src, k_log_tick, &c.log_seq, v);
        }
        client_watch_out(&c);
        if (stop_at && now_ms() - stop_at > STALL_S * 1000u) {
            wl_fail(
                "not finished %d s after stop: phase %d, sent %llu, acked %llu, %zu bytes unsent",
                STALL_S, (int)c.phase, (unsigned long long)c.next_seq, (unsigned long long)c.acked,
                buf_size(&c.out));
            break;
        }
        finish_tick(t0, TICK_MS);
    }
    /* The final log record (or what is left) goes out blocking: the logger reads on. */
    int fl = fcntl(c.log, F_GETFL);
    fcntl(c.log, F_SETFL, fl & ~O_NONBLOCK);
    buf_flush(c.log, &c.logq, "log pipe");
    close(c.log);
    close(c.conn);
    close(c.ep);
    return g_wl_fails == 0 ? 0 : 1;
}

/* ---- server --------------------------------------------------------------------------------- */

struct conn {
    int fd;
    uint16_t src; /* 0 until the first record names it */
    struct buf in, out;
    uint64_t expect, records, bytes;
    int eof, closed, out_watched;
};

struct server {
    int listen_fd, log, ep;
    struct conn conns[CLIENTS];
    struct buf logq;
    uint64_t log_seq, records, acks, bytes;
    int log_watched;
    char conn_name[CLIENTS][32];
};

static const char* conn_name(struct server* s, int i) {
    struct conn* c = &s->conns[i];
    if (c->src)
        snprintf(s->conn_name[i], sizeof s->conn_name[i], "client %u", c->src);
    else
        snprintf(s->conn_name[i], sizeof s->conn_name[i], "connection %d", i);
    return s->conn_name[i];
}

static void server_close(struct server* s, int i) {
    struct conn* c = &s->conns[i];
    if (c->closed) return;
    close(c->fd); /* the only reference: the registration goes with it */
    c->closed = 1;
    (void)s;
}

/* Checks one whole record at the head of c->in; returns its size, 0 if incomplete, -1 if the
 * stream cannot be followed any more. */
static ssize_t server_record(struct server* s, int i) {
    struct conn* c = &s->conns[i];
    struct rec_hdr h;
    if (buf_size(&c->in) < sizeof h) return 0;
    memcpy(&h, buf_head(&c->in), sizeof h);
    if (h.magic != REC_MAGIC || h.len < PAYLOAD_MIN || h.len > PAYLOAD_MAX || h.src < 1 ||
        h.src > CLIENTS || (c->src && h.src != c->src)) {
        wl_fail(
            "%s: no record header at byte %llu after record %llu (magic %#x, source %u, "
            "length %u)",
            conn_name(s, i), (unsigned long long)c->bytes, (unsigned long long)c->expect, h.magic,
            h.src, h.len);
        return -1;
    }
    if (buf_size(&c->in) < sizeof h + h.len) return 0;
    const uint8_t* payload = buf_head(&c->in) + sizeof h;
    if (!c->src) {
        for (int j = 0; j < CLIENTS; ++j)
            if (s->conns[j].src == h.src) {
                wl_fail("connection %d and %d both carry client %u", j, i, h.src);
                return -1;
            }
        c->src = h.src;
    }
    struct rec_hdr zero = h;
    zero.sum = 0;
    uint64_t sum = fnv1a(payload, h.len, fnv1a(&zero, sizeof zero, FNV_BASIS));
    if (sum != h.sum) {
        wl_fail("%s: record %llu at byte %llu: checksum %#llx, header says %#llx", conn_name(s, i),
                (unsigned long long)h.seq, (unsigned long long)c->bytes, (unsigned long long)sum,
                (unsigned long long)h.sum);
        return -1;
    }
    for (size_t k = 0; k < h.len; ++k)
        if (payload[k] != wl_pattern_byte(payload_seed(h.src), (h.seq << 11) + k)) {
            wl_fail("%s: record %llu: payload byte %zu differs", conn_name(s, i),
                    (unsigned long long)h.seq, k);
            break;
        }
    if (h.seq != c->expect) {
        if (h.seq > c->expect)
            wl_fail("%s: records %llu..%llu missing (got %llu)", conn_name(s, i),
                    (unsigned long long)c->expect, (unsigned long long)h.seq - 1,
                    (unsigned long long)h.seq);
        else
            wl_fail("%s: record %llu again (duplicate; expected %llu)", conn_name(s, i),
                    (unsigned long long)h.seq, (unsigned long long)c->expect);
    }
    c->expect = h.seq + 1;
    c->records++;
    c->bytes += sizeof h + h.len;
    s->records++;
    s->bytes += sizeof h + h.len;
    if (!(g_corrupt == k_ack && h.src == 4 && h.seq == INJECT_SEQ)) {
        struct ack a = {.magic = ACK_MAGIC,
                        .src = h.src,
                        .len = h.len,
                        .seq = h.seq,
                        .sum = h.sum,
                        .bytes = c->bytes};
        buf_put(&c->out, &a, sizeof a);
        s->acks++;
    }
    return (ssize_t)(sizeof h + h.len);
}

static void server_read(struct server* s, int i) {
    struct conn* c = &s->conns[i];
    if (buf_size(&c->out) > 65536) return; /* the client does not read its acks: wait */
    ssize_t n = buf_read(c->fd, &c->in, READ_BUDGET, conn_name(s, i));
    if (n == -2) return;
    if (n < 0) {
        server_close(s, i);
        return;
    }
    if (n == 0) {
        if (buf_size(&c->in) > 0)
            wl_fail("%s: %zu bytes of a partial record at the end", conn_name(s, i),
                    buf_size(&c->in));
        c->eof = 1;
        return;
    }
    ssize_t used;
    while ((used = server_record(s, i)) > 0) buf_drop(&c->in, (size_t)used);
    if (used < 0) server_close(s, i); /* the client sees its connection end early */
}

static void server_counters(const struct server* s, uint64_t v[5]) {
    v[0] = s->records;
    v[1] = s->acks;
    v[2] = s->bytes;
    v[3] = v[4] = 0;
}

/* Tags: 0..CLIENTS-1 connections, 100 the listening socket, 101 the log pipe. */
static int server_events(struct server* s) {
    struct epoll_event evs[CLIENTS + 2];
    int n = epoll_wait(s->ep, evs, CLIENTS + 2, TICK_MS);
    if (n < 0 && errno != EINTR) wl_die(g_wl_name, "epoll_wait");
    for (int k = 0; k < n; ++k) {
        uint32_t e = evs[k].events, tag = evs[k].data.u32;
        if (tag == 100) {
            int extra = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            wl_fail("the listening socket reports events %#x: an unexpected connection (%s)", e,
                    extra >= 0 ? "accepted" : strerror(errno));
            if (extra >= 0) close(extra);
        } else if (tag == 101) {
            if (e & EPOLLERR && !(e & EPOLLOUT)) {
                wl_fail("log pipe: the logger is gone");
                return -1;
            }
            if (e & EPOLLOUT && buf_flush(s->log, &s->logq, "log pipe") < 0) return -1;
        } else if (tag < CLIENTS && !s->conns[tag].closed) {
            struct conn* c = &s->conns[tag];
            if (e & EPOLLOUT && buf_flush(c->fd, &c->out, conn_name(s, (int)tag)) < 0)
                server_close(s, (int)tag);
            else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) && !c->eof)
                server_read(s, (int)tag);
        }
    }
    for (int i = 0; i < CLIENTS; ++i) {
        struct conn* c = &s->conns[i];
        if (c->closed) continue;
        if (c->eof && buf_size(&c->out) == 0) {
            server_close(s, i);
            continue;
        }
        int want = buf_size(&c->out) > 0;
        uint32_t in = c->eof ? 0 : EPOLLIN | EPOLLRDHUP;
        if (want != c->out_watched || c->eof)
            watch(s->ep, EPOLL_CTL_MOD, c->fd, in | (want ? EPOLLOUT : 0), (uint32_t)i);
        c->out_watched = want;
    }
    int want = buf_size(&s->logq) > 0;
    if (want != s->log_watched) watch(s->ep, EPOLL_CTL_MOD, s->log, want ? EPOLLOUT : 0, 101);
    s->log_watched = want;
    return 0;
}

static int all_closed(const struct server* s) {
    for (int i = 0; i < CLIENTS; ++i)
        if (!s->conns[i].closed) return 0;
    return 1;
}

/* Runs until DIR/stop and every connection drained; returns after the last log record left. */
static void server_loop(struct server* s) {
    uint64_t started = now_ms(), stop_at = 0, v[5];
    int final_sent = 0;
    for (unsigned tick = 0;; ++tick) {
        uint64_t t0 = now_ms();
        if (server_events(s) < 0 || too_many_fails()) return;
        if (!stop_at && tick % STOP_POLL_TICKS == 0 && stop_requested(started)) {
            stop_at = now_ms();
            if (g_self_test && wl_write_file(g_wl_dir, "stop", "") != 0)
                wl_die(g_wl_name, "write stop");
        }
        server_counters(s, v);
        if (all_closed(s) && !final_sent) {
            if (!stop_at) wl_fail("every connection ended before DIR/stop");
            for (int i = 0; i < CLIENTS; ++i) {
                uint64_t cv[5] = {s->conns[i].src, s->conns[i].records, s->conns[i].bytes, 0, 0};
                log_put(&s->logq, 0, k_log_conn_final, &s->log_seq, cv);
            }
            log_put(&s->logq, 0, k_log_final, &s->log_seq, v);
            final_sent = 1;
        } else if (!final_sent && buf_size(&s->logq) < 4096) {
            int dup = g_corrupt == k_log_dup && s->log_seq == INJECT_LOG_SEQ;
            log_put(&s->logq, 0, k_log_tick, &s->log_seq, v);
            if (dup) {
                s->log_seq--;
                log_put(&s->logq, 0, k_log_tick, &s->log_seq, v);
            }
        }
        if (final_sent && buf_size(&s->logq) == 0) return;
        if (stop_at && now_ms() - stop_at > STALL_S * 1000u) {
            for (int i = 0; i < CLIENTS; ++i)
                if (!s->conns[i].closed)
                    wl_fail(
                        "%s not finished %d s after stop: %llu records, %zu bytes of acks "
                        "unsent, end of stream %s",
                        conn_name(s, i), STALL_S, (unsigned long long)s->conns[i].records,
                        buf_size(&s->conns[i].out), s->conns[i].eof ? "seen" : "not seen");
            return;
        }
        finish_tick(t0, TICK_MS);
    }
}

/* ---- logger --------------------------------------------------------------------------------- */

struct source {
    int fd, eof;
    struct buf in;
    uint64_t expect, last_kind;
    uint64_t v[5];
};

struct logger {
    struct source src[SOURCES];
    uint64_t conn_final[CLIENTS + 1][3]; /* per client source: seen, records, bytes */
    int ep, file;
    struct buf lines;
    uint64_t records, written;
};

static const char* source_name(uint16_t src, char* buf, size_t size) {
    if (src == 0)
        snprintf(buf, size, "server");
    else
        snprintf(buf, size, "client %u", src);
    return buf;
}

static void logger_record(struct logger* l, uint16_t i, const struct logrec* r) {
    struct source* s = &l->src[i];
    char name[32];
    source_name(i, name, sizeof name);
    if (r->magic != LOG_MAGIC || r->src != i ||
        r->sum != fnv1a(r, offsetof(struct logrec, sum), FNV_BASIS)) {
        wl_fail("log pipe of %s: a damaged record after record %llu (magic %#x, source %u)", name,
                (unsigned long long)s->expect, r->magic, r->src);
        return;
    }
    if (s->last_kind == k_log_final)
        wl_fail("log pipe of %s: record %llu after the final one", name,
                (unsigned long long)r->seq);
    if (r->seq != s->expect) {
        if (r->seq > s->expect)
            wl_fail("log pipe of %s: records %llu..%llu missing (got %llu)", name,
                    (unsigned long long)s->expect, (unsigned long long)r->seq - 1,
                    (unsigned long long)r->seq);
        else
            wl_fail("log pipe of %s: record %llu again (duplicate; expected %llu)", name,
                    (unsigned long long)r->seq, (unsigned long long)s->expect);
    }
    s->expect = r->seq + 1;
    s->last_kind = r->kind;
    l->records++;
    if (r->kind == k_log_conn_final) {
        if (i != 0 || r->v[0] < 1 || r->v[0] > CLIENTS)
            wl_fail("log pipe of %s: a connection summary for source %llu", name,
                    (unsigned long long)r->v[0]);
        else {
            l->conn_final[r->v[0]][0] = 1;
            l->conn_final[r->v[0]][1] = r->v[1];
            l->conn_final[r->v[0]][2] = r->v[2];
        }
    } else {
        memcpy(s->v, r->v, sizeof s->v);
    }
    if (g_corrupt == k_log_line && i == 1 && r->seq == INJECT_LOG_SEQ) return;
    char line[256];
    int n = snprintf(line, sizeof line, "%u %llu %u %llu %llu %llu %llu %llu\n", i,
                     (unsigned long long)r->seq, r->kind, (unsigned long long)r->v[0],
                     (unsigned long long)r->v[1], (unsigned long long)r->v[2],
                     (unsigned long long)r->v[3], (unsigned long long)r->v[4]);
    buf_put(&l->lines, line, (size_t)n);
}

static void logger_read(struct logger* l, uint16_t i) {
    struct source* s = &l->src[i];
    char name[32];
    source_name(i, name, sizeof name);
    for (int k = 0; k < 8 && !s->eof; ++k) {
        ssize_t n = buf_read(s->fd, &s->in, 8192, name);
        if (n == -2) break;
        if (n <= 0) {
            if (buf_size(&s->in) > 0)
                wl_fail("log pipe of %s: %zu bytes of a partial record at the end", name,
                        buf_size(&s->in));
            if (s->last_kind != k_log_final)
                wl_fail("log pipe of %s ended after record %llu without a final record", name,
                        (unsigned long long)s->expect);
            s->eof = 1;
            close(s->fd);
            break;
        }
        while (buf_size(&s->in) >= sizeof(struct logrec)) {
            struct logrec r;
            memcpy(&r, buf_head(&s->in), sizeof r);
            buf_drop(&s->in, sizeof r);
            logger_record(l, i, &r);
        }
    }
}

static void logger_flush_lines(struct logger* l) {
    while (buf_size(&l->lines) > 0) {
        ssize_t n = write(l->file, buf_head(&l->lines), buf_size(&l->lines));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) wl_die(g_wl_name, "write server.log");
        buf_drop(&l->lines, (size_t)n);
        l->written += (uint64_t)n;
    }
}

/* DIR/req: the latest counters of every source in DIR/count, one line each. */
static void logger_answer(struct logger* l) {
    char path[PATH_MAX], text[2048], name[32];
    if (!wl_exists(wl_at(path, sizeof path, "req"))) return;
    size_t len = (size_t)snprintf(text, sizeof text, "logger %llu %llu\n",
                                  (unsigned long long)l->records, (unsigned long long)l->written);
    for (uint16_t i = 0; i < SOURCES; ++i) {
        const struct source* s = &l->src[i];
        if (i == 0)
            snprintf(name, sizeof name, "server");
        else
            snprintf(name, sizeof name, "client%u", i);
        len += (size_t)snprintf(text + len, sizeof text - len, "%s %llu %llu %llu %llu\n", name,
                                (unsigned long long)s->expect, (unsigned long long)s->v[0],
                                (unsigned long long)s->v[1], (unsigned long long)s->v[2]);
    }
    if (wl_write_file(g_wl_dir, "count", text) != 0) wl_die(g_wl_name, "write count");
    unlink(path);
}

/* Every client's last word matches what the server saw of it. */
static void logger_cross_check(struct logger* l) {
    const struct source* srv = &l->src[0];
    uint64_t records = 0, bytes = 0;
    for (uint16_t i = 1; i <= CLIENTS; ++i) {
        const struct source* c = &l->src[i];
        const uint64_t* f = l->conn_final[i];
        if (!f[0]) {
            wl_fail("the server's summary has no connection of client %u", i);
            continue;
        }
        if (c->v[0] != c->v[1])
            wl_fail("client %u: sent %llu records, %llu acked", i, (unsigned long long)c->v[0],
                    (unsigned long long)c->v[1]);
        if (f[1] != c->v[0] || f[2] != c->v[2])
            wl_fail("client %u: sent %llu records (%llu bytes), the server got %llu (%llu bytes)",
                    i, (unsigned long long)c->v[0], (unsigned long long)c->v[2],
                    (unsigned long long)f[1], (unsigned long long)f[2]);
        if (c->v[0] == 0) wl_fail("client %u sent nothing", i);
        records += f[1];
        bytes += f[2];
    }
    if (records != srv->v[0] || records != srv->v[1] || bytes != srv->v[2])
        wl_fail(
            "server: %llu records, %llu acks, %llu bytes in all; connections add up to "
            "%llu records, %llu bytes",
            (unsigned long long)srv->v[0], (unsigned long long)srv->v[1],
            (unsigned long long)srv->v[2], (unsigned long long)records, (unsigned long long)bytes);
}

/* DIR/server.log read back: each source's records in order, none missing or twice. */
static void logger_check_file(struct logger* l) {
    char path[PATH_MAX];
    FILE* f = fopen(wl_at(path, sizeof path, "server.log"), "re");
    if (!f) {
        wl_fail("cannot read %s back: %s", path, strerror(errno));
        return;
    }
    uint64_t next[SOURCES] = {0}, lines = 0;
    unsigned src, kind;
    unsigned long long seq, v[5];
    int n;
    while ((n = fscanf(f, "%u %llu %u %llu %llu %llu %llu %llu", &src, &seq, &kind, &v[0], &v[1],
                       &v[2], &v[3], &v[4])) == 8) {
        lines++;
        if (src >= SOURCES) {
            wl_fail("server.log line %llu: source %u", (unsigned long long)lines, src);
            break;
        }
        if (seq != next[src]) {
            wl_fail("server.log line %llu: record %llu of source %u, expected %llu",
                    (unsigned long long)lines, seq, src, (unsigned long long)next[src]);
            if (too_many_fails()) break;
        }
        next[src] = seq + 1;
    }
    if (n != EOF) wl_fail("server.log: line %llu cannot be read", (unsigned long long)lines + 1);
    long size = ftell(f);
    fclose(f);
    if (size < 0 || (uint64_t)size != l->written)
        wl_fail("server.log holds %ld bytes, %llu were written", size,
                (unsigned long long)l->written);
    for (uint16_t i = 0; i < SOURCES; ++i)
        if (next[i] != l->src[i].expect)
            wl_fail("server.log: %llu records of source %u, %llu were received",
                    (unsigned long long)next[i], i, (unsigned long long)l->src[i].expect);
}

static int logger_main(const int fds[SOURCES]) {
    set_who("wl_server[logger]");
    struct logger l;
    memset(&l, 0, sizeof l);
    char path[PATH_MAX];
    l.file = open(wl_at(path, sizeof path, "server.log"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  0600);
    if (l.file < 0) wl_die(g_wl_name, "open server.log");
    l.ep = make_epoll();
    for (uint16_t i = 0; i < SOURCES; ++i) {
        l.src[i].fd = fds[i];
        set_nonblock(fds[i]);
        watch(l.ep, EPOLL_CTL_ADD, fds[i], EPOLLIN, i);
    }
    uint64_t started = now_ms(), stop_at = 0;
    for (unsigned tick = 0;; ++tick) {
        uint64_t t0 = now_ms();
        struct epoll_event evs[SOURCES];
        int n = epoll_wait(l.ep, evs, SOURCES, LOGGER_TICK_MS);
        if (n < 0 && errno != EINTR) wl_die(g_wl_name, "epoll_wait");
        for (int k = 0; k < n; ++k)
            if (evs[k].data.u32 < SOURCES) logger_read(&l, (uint16_t)evs[k].data.u32);
        logger_flush_lines(&l);
        logger_answer(&l);
        int open_sources = 0;
        for (int i = 0; i < SOURCES; ++i) open_sources += !l.src[i].eof;
        if (open_sources == 0 || too_many_fails()) break;
        if (!stop_at && stop_requested(started)) stop_at = now_ms();
        if (stop_at && now_ms() - stop_at > (STALL_S + 10) * 1000u) {
            wl_fail("%d log pipes still open %d s after stop", open_sources, STALL_S + 10);
            break;
        }
        (void)tick;
        finish_tick(t0, LOGGER_TICK_MS);
    }
    logger_flush_lines(&l);
    logger_cross_check(&l);
    logger_check_file(&l);
    close(l.file);
    return g_wl_fails == 0 ? 0 : 1;
}

/* ---- root ----------------------------------------------------------------------------------- */

static pid_t spawn(int (*fn)(void*), void* arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) wl_die(g_wl_name, "fork");
    if (pid == 0) _exit(fn(arg));
    return pid;
}

struct setup {
    int listen_fd;
    int log_r[SOURCES], log_w[SOURCES];
    char sock_path[sizeof(((struct sockaddr_un*)0)->sun_path)];
    uint16_t client;
};

static int logger_child(void* arg) {
    struct setup* st = arg;
    close(st->listen_fd);
    for (int i = 0; i < SOURCES; ++i) close(st->log_w[i]);
    return logger_main(st->log_r);
}

static int client_child(void* arg) {
    struct setup* st = arg;
    close(st->listen_fd);
    for (int i = 0; i < SOURCES; ++i) {
        close(st->log_r[i]);
        if (i != st->client) close(st->log_w[i]);
    }
    return client_main(st->client, st->log_w[st->client], st->sock_path);
}

static enum corrupt parse_corrupt(const char* kind) {
    static const char* const names[] = {"",    "gap",     "dup",     "byte",
                                        "ack", "log-gap", "log-dup", "log-line"};
    for (size_t i = 1; i < sizeof names / sizeof names[0]; ++i)
        if (strcmp(kind, names[i]) == 0) return (enum corrupt)i;
    fprintf(stderr, "wl_server: unknown corruption '%s'\n", kind);
    exit(2);
}

static void parse_args(int argc, char** argv) {
    g_wl_name = "wl_server";
    const char* corrupt = "--self-test-corrupt";
    if (argc == 2 && argv[1][0] != '-') {
        g_wl_dir = argv[1];
    } else if (argc == 3 && strcmp(argv[1], "--self-test") == 0) {
        g_self_test = 1;
        g_wl_dir = argv[2];
    } else if (argc == 3 && strncmp(argv[1], corrupt, strlen(corrupt)) == 0 &&
               (argv[1][strlen(corrupt)] == '\0' || argv[1][strlen(corrupt)] == '=')) {
        g_self_test = 1;
        g_corrupt = argv[1][strlen(corrupt)] ? parse_corrupt(argv[1] + strlen(corrupt) + 1) : k_gap;
        g_wl_dir = argv[2];
    } else {
        fprintf(stderr,
                "usage: wl_server DIR | wl_server --self-test DIR | "
                "wl_server --self-test-corrupt[=KIND] DIR\n");
        exit(2);
    }
    if (g_self_test) mkdir(g_wl_dir, 0700);
}

int main(int argc, char** argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a peer gone shows as EPIPE, reported */
    struct setup st;
    memset(&st, 0, sizeof st);
    char path[PATH_MAX];
    wl_at(path, sizeof path, "sock");
    if (strlen(path) >= sizeof st.sock_path) {
        fprintf(stderr, "wl_server: %s is too long for a unix socket address\n", path);
        return 2;
    }
    memcpy(st.sock_path, path, strlen(path) + 1);
    unlink(st.sock_path);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, st.sock_path, strlen(st.sock_path) + 1);
    st.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (st.listen_fd < 0 || bind(st.listen_fd, (struct sockaddr*)&addr, sizeof addr) != 0 ||
        listen(st.listen_fd, CLIENTS * 2) != 0)
        wl_die(g_wl_name, "listen on DIR/sock");
    for (int i = 0; i < SOURCES; ++i) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) wl_die(g_wl_name, "pipe2");
        st.log_r[i] = p[0];
        st.log_w[i] = p[1];
    }
    pid_t logger = spawn(logger_child, &st), clients[CLIENTS];
    for (int i = 0; i < CLIENTS; ++i) {
        st.client = (uint16_t)(i + 1);
        clients[i] = spawn(client_child, &st);
    }
    for (int i = 0; i < SOURCES; ++i) {
        close(st.log_r[i]);
        if (i != 0) close(st.log_w[i]);
    }

    struct server s;
    memset(&s, 0, sizeof s);
    s.listen_fd = st.listen_fd;
    s.log = st.log_w[0];
    set_nonblock(s.log);
    s.ep = make_epoll();
    for (int i = 0; i < CLIENTS; ++i) {
        int fd;
        while ((fd = accept4(s.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0 &&
               errno == EINTR) {
        }
        if (fd < 0) wl_die(g_wl_name, "accept");
        s.conns[i].fd = fd;
        watch(s.ep, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, (uint32_t)i);
    }
    set_nonblock(s.listen_fd);
    watch(s.ep, EPOLL_CTL_ADD, s.listen_fd, EPOLLIN, 100);
    watch(s.ep, EPOLL_CTL_ADD, s.log, 0, 101);

    char text[32];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_wl_dir, "ready", text) != 0) wl_die(g_wl_name, "write ready");
    printf("wl_server: ready, pid %d\n", (int)getpid());
    fflush(stdout);

    server_loop(&s);
    int fl = fcntl(s.log, F_GETFL);
    fcntl(s.log, F_SETFL, fl & ~O_NONBLOCK);
    buf_flush(s.log, &s.logq, "log pipe");
    close(s.log);
    int extra = accept4(s.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    WL_CHECK(extra < 0 && errno == EAGAIN, "the listening socket holds a connection nobody made");
    for (int i = 0; i < CLIENTS; ++i) {
        server_close(&s, i);
        char what[32];
        snprintf(what, sizeof what, "client %d", i + 1);
        wl_reap(clients[i], what);
    }
    wl_reap(logger, "logger");
    close(s.listen_fd);
    close(s.ep);
    return wl_verdict();
}
