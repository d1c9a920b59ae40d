/* wl_unix_socket DIR [netlink]
 *
 * Holds a connected unix stream socketpair (its two fd numbers in DIR/fd, lowest first) and a
 * counter it increments every 10 ms; each tick also sends one byte through the pair and reads
 * it back, counting any mismatch as an error. With "netlink" it also holds a raw netlink socket
 * (NETLINK_ROUTE), a kind no cr handler claims, and DIR/fd names that socket instead. When
 * DIR/req appears it writes "COUNT ERRORS" to DIR/count and removes DIR/req. Exits when
 * DIR/stop appears or DIR disappears. Used to show that a dump failing on an fd (one no handler
 * claims, or one a failing test handler claims) leaves the process running. */
#include "wl_common.h"

#include <linux/netlink.h>
#include <sys/socket.h>

int main(int argc, char** argv) {
    int netlink = argc == 3 && strcmp(argv[2], "netlink") == 0;
    if (argc != 2 && !netlink) {
        fprintf(stderr, "usage: wl_unix_socket DIR [netlink]\n");
        return 2;
    }
    const char* dir = argv[1];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) wl_die("wl_unix_socket", "socketpair");

    char text[64], req[PATH_MAX], stop[PATH_MAX];
    snprintf(text, sizeof text, "%d %d\n", sv[0], sv[1]);
    if (netlink) {
        int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (nl < 0) wl_die("wl_unix_socket", "socket(AF_NETLINK)");
        snprintf(text, sizeof text, "%d\n", nl);
    }
    if (wl_write_file(dir, "fd", text) != 0) wl_die("wl_unix_socket", "write fd");
    wl_path(req, sizeof req, dir, "req");
    wl_path(stop, sizeof stop, dir, "stop");

    volatile uint64_t count = 0;
    uint64_t errors = 0;
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(dir, "ready", text) != 0) wl_die("wl_unix_socket", "write ready");
    for (;;) {
        count = count + 1;
        uint8_t out = (uint8_t)count, in = 0;
        if (send(sv[1], &out, 1, MSG_DONTWAIT) != 1 || recv(sv[0], &in, 1, MSG_DONTWAIT) != 1 || in != out)
            errors++;
        if (wl_exists(req)) {
            snprintf(text, sizeof text, "%llu %llu\n", (unsigned long long)count, (unsigned long long)errors);
            if (wl_write_file(dir, "count", text) != 0) wl_die("wl_unix_socket", "write count");
            unlink(req);
        }
        if (wl_exists(stop) || !wl_exists(dir)) return 0;
        wl_sleep_ms(10);
    }
}
