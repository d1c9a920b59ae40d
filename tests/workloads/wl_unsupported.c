/* wl_unsupported DIR KIND
 *
 * Holds one resource cr does not restore and keeps working next to it, so that a test can show
 * that a refused dump names it and leaves the process running unchanged. KIND:
 *   sysv-shm   a System V shared memory segment, attached, its first word counting ticks
 * Every 10 ms it increments a counter (in the resource where it has memory). When DIR/req
 * appears it writes "COUNT" to DIR/count and removes DIR/req. Writes DIR/ready with its pid,
 * exits when DIR disappears. */
#include "wl_common.h"

#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: wl_unsupported DIR sysv-shm\n");
        return 2;
    }
    const char* dir = argv[1];
    volatile uint64_t* counter = NULL;
    if (strcmp(argv[2], "sysv-shm") == 0) {
        int id = shmget(IPC_PRIVATE, 1 << 16, IPC_CREAT | 0600);
        if (id < 0) wl_die("wl_unsupported", "shmget");
        void* p = shmat(id, NULL, 0);
        if (p == (void*)-1) wl_die("wl_unsupported", "shmat");
        shmctl(id, IPC_RMID, NULL); /* goes away with the last detach */
        counter = (volatile uint64_t*)p;
    } else {
        fprintf(stderr, "wl_unsupported: unknown kind %s\n", argv[2]);
        return 2;
    }
    char req[PATH_MAX], text[64];
    wl_path(req, sizeof req, dir, "req");
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(dir, "ready", text) != 0) wl_die("wl_unsupported", "write ready");
    for (;;) {
        ++*counter;
        if (wl_exists(req)) {
            snprintf(text, sizeof text, "%llu\n", (unsigned long long)*counter);
            if (wl_write_file(dir, "count", text) != 0) wl_die("wl_unsupported", "write count");
            unlink(req);
        }
        if (!wl_exists(dir)) return 0;
        wl_sleep_ms(10);
    }
}
