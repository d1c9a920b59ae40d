/* wl_memfd DIR | --self-test DIR
 *
 * memfd files as cr.memory.memfd and cr.memory.vma must bring them back:
 *   - "wl data": 300000 bytes with a hole, mode 0600, sealed against growing and shrinking,
 *     two descriptions (read-write at 5555, read-only at 123) and a shared writable mapping;
 *   - "plain": created without MFD_ALLOW_SEALING; "sealed": write-sealed, mapped read-only;
 *   - "mapped only": no descriptor left, only a shared mapping, inherited by a child which
 *     writes into it after the restore while the parent reads;
 *   - "shared fd": one description held by parent and child (one position).
 * Writes DIR/ready, waits for DIR/go, checks every byte, seal, mode, name, position and that
 * mappings and descriptors still see one file, writes DIR/result and exits 0 ("wl_memfd: ok")
 * or 1 with each difference on stderr. */
#include "wl_verify.h"

#include <sys/mman.h>

#define DATA_SIZE 300000u
#define HOLE_START 100000u
#define HOLE_END 200000u
#define POS_RW 5555
#define POS_RO 123
#define MAPPED_SIZE (40u * 4096u)
#define SEALED_SIZE 5000u
#define SHARED_POS 77

enum { k_seed_data = 41, k_seed_plain = 42, k_seed_sealed = 43, k_seed_mapped = 44, k_seed_later = 45, k_seed_child = 46 };

static struct {
    int data, data_ro, plain, sealed, shared_fd;
    uint8_t *data_map, *sealed_map, *mapped;
    pid_t child;
} g;

static int make(const char* name, unsigned flags) {
    int fd = memfd_create(name, flags | MFD_CLOEXEC);
    if (fd < 0) wl_die("wl_memfd", name);
    return fd;
}

static void setup(void) {
    g.data = make("wl data", MFD_ALLOW_SEALING);
    if (ftruncate(g.data, DATA_SIZE) != 0) wl_die("wl_memfd", "ftruncate");
    wl_write_pattern(g.data, 0, HOLE_START, k_seed_data);
    wl_write_pattern(g.data, HOLE_END, DATA_SIZE - HOLE_END, k_seed_data);
    fchmod(g.data, 0600);
    if (fcntl(g.data, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0) wl_die("wl_memfd", "F_ADD_SEALS");
    lseek(g.data, POS_RW, SEEK_SET);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", g.data);
    g.data_ro = open(self, O_RDONLY | O_CLOEXEC);
    if (g.data_ro < 0) wl_die("wl_memfd", "reopen");
    lseek(g.data_ro, POS_RO, SEEK_SET);
    g.data_map = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g.data, 0);
    if (g.data_map == MAP_FAILED) wl_die("wl_memfd", "mmap wl data");

    g.plain = make("plain", 0);
    wl_write_pattern(g.plain, 0, 10, k_seed_plain);

    g.sealed = make("sealed", MFD_ALLOW_SEALING);
    wl_write_pattern(g.sealed, 0, SEALED_SIZE, k_seed_sealed);
    if (fcntl(g.sealed, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0) wl_die("wl_memfd", "F_SEAL_WRITE");
    g.sealed_map = mmap(NULL, SEALED_SIZE, PROT_READ, MAP_SHARED, g.sealed, 0);
    if (g.sealed_map == MAP_FAILED) wl_die("wl_memfd", "mmap sealed");

    int m = make("mapped only", 0);
    if (ftruncate(m, MAPPED_SIZE) != 0) wl_die("wl_memfd", "ftruncate");
    g.mapped = mmap(NULL, MAPPED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (g.mapped == MAP_FAILED) wl_die("wl_memfd", "mmap mapped only");
    close(m);
    wl_fill_bytes(g.mapped, MAPPED_SIZE / 2, k_seed_mapped, 0); /* the second half stays zero */

    g.shared_fd = make("shared fd", 0);
    wl_write_pattern(g.shared_fd, 0, 1000, k_seed_plain);
    lseek(g.shared_fd, SHARED_POS, SEEK_SET);
}

/* After go: the child writes into the second half of "mapped only" and moves "shared fd". */
static int child_main(void) {
    wl_wait_for("go");
    wl_fill_bytes(g.mapped + MAPPED_SIZE / 2, MAPPED_SIZE / 2, k_seed_child, MAPPED_SIZE / 2);
    char b[3];
    if (read(g.shared_fd, b, sizeof b) != 3) return 1;
    return 0;
}

static void check_mem(const uint8_t* p, size_t off, size_t len, uint64_t seed, const char* what) {
    for (size_t i = 0; i < len; ++i) {
        uint8_t want = seed ? wl_pattern_byte(seed, off + i) : 0;
        if (p[off + i] != want) {
            wl_fail("%s: byte at %zu: expected 0x%02x, found 0x%02x", what, off + i, want, p[off + i]);
            return;
        }
    }
}

static int maps_mention(const char* needle) {
    FILE* f = fopen("/proc/self/maps", "re");
    char line[1024];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle)) found = 1;
    if (f) fclose(f);
    return found;
}

static void check_data(void) {
    struct stat st;
    char self[64], link[PATH_MAX];
    WL_CHECK(fstat(g.data, &st) == 0 && st.st_size == DATA_SIZE && (st.st_mode & 07777) == 0600,
             "wl data: size %lld mode 0%o", (long long)st.st_size, st.st_mode & 07777);
    snprintf(self, sizeof self, "/proc/self/fd/%d", g.data);
    ssize_t n = readlink(self, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    WL_CHECK(strcmp(link, "/memfd:wl data (deleted)") == 0, "wl data: link reads '%s'", link);
    WL_CHECK(fcntl(g.data, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), "wl data: seals %#x", fcntl(g.data, F_GET_SEALS));
    WL_CHECK(wl_pos(g.data) == POS_RW && wl_pos(g.data_ro) == POS_RO, "wl data: positions %lld and %lld",
             (long long)wl_pos(g.data), (long long)wl_pos(g.data_ro));
    WL_CHECK((fcntl(g.data_ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "wl data: second description is not read-only");
    wl_check_pattern(g.data, 0, HOLE_START, k_seed_data, 0, "wl data head");
    wl_check_pattern(g.data_ro, HOLE_START, HOLE_END - HOLE_START, 0, 0, "wl data hole");
    wl_check_pattern(g.data, HOLE_END, DATA_SIZE - HOLE_END, k_seed_data, HOLE_END, "wl data tail");
    check_mem(g.data_map, 0, HOLE_START, k_seed_data, "wl data mapping");
    /* One file behind the mapping and both descriptions. */
    wl_fill_bytes(g.data_map + 1000, 100, k_seed_later, 1000);
    wl_check_pattern(g.data_ro, 1000, 100, k_seed_later, 1000, "wl data: written through the mapping, read through the fd");
    wl_write_pattern(g.data, 150000, 100, k_seed_later);
    check_mem(g.data_map, 150000, 100, k_seed_later, "wl data: written through the fd, read through the mapping");
    WL_CHECK(ftruncate(g.data, DATA_SIZE + 4096) != 0 && errno == EPERM, "wl data: could grow despite F_SEAL_GROW");
    WL_CHECK(maps_mention("/memfd:wl data (deleted)"), "wl data: /proc/self/maps does not name the memfd");
}

static void check_others(void) {
    WL_CHECK(fcntl(g.plain, F_GET_SEALS) == F_SEAL_SEAL, "plain: seals %#x", fcntl(g.plain, F_GET_SEALS));
    wl_check_pattern(g.plain, 0, 10, k_seed_plain, 0, "plain");
    WL_CHECK(fcntl(g.sealed, F_GET_SEALS) == (F_SEAL_WRITE | F_SEAL_SEAL), "sealed: seals %#x", fcntl(g.sealed, F_GET_SEALS));
    wl_check_pattern(g.sealed, 0, SEALED_SIZE, k_seed_sealed, 0, "sealed");
    check_mem(g.sealed_map, 0, SEALED_SIZE, k_seed_sealed, "sealed mapping");
    WL_CHECK(pwrite(g.sealed, "x", 1, 0) < 0 && errno == EPERM, "sealed: writable despite F_SEAL_WRITE");

    wl_reap(g.child, "child");
    check_mem(g.mapped, 0, MAPPED_SIZE / 2, k_seed_mapped, "mapped only, first half");
    check_mem(g.mapped, MAPPED_SIZE / 2, MAPPED_SIZE / 2, k_seed_child, "mapped only, second half written by the child");
    WL_CHECK(maps_mention("/memfd:mapped only (deleted)"), "mapped only: /proc/self/maps does not name the memfd");
    WL_CHECK(wl_pos(g.shared_fd) == SHARED_POS + 3, "shared fd: position %lld, expected %d (the child read 3 bytes)",
             (long long)wl_pos(g.shared_fd), SHARED_POS + 3);
}

int main(int argc, char** argv) {
    int self_test = wl_start(argc, argv, "wl_memfd");
    setup();
    g.child = fork();
    if (g.child < 0) wl_die("wl_memfd", "fork");
    if (g.child == 0) _exit(child_main());
    wl_ready_then_wait(self_test);
    if (g_wl_corrupt) g.data_map[10] ^= 0x40;
    check_data();
    check_others();
    return wl_verdict();
}
