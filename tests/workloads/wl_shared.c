/* wl_shared DIR | --self-test DIR
 *
 * Memory shared between tasks, and mappings of files deleted while mapped:
 *   - 4 MiB of MAP_SHARED|MAP_ANONYMOUS memory and 64 KiB of shared /dev/zero, inherited by a
 *     child: both write after the restore and each must see the other's writes; a page the
 *     parent wrote and then dropped from its page tables (MADV_DONTNEED) keeps its data;
 *   - "gone.dat": mapped shared, then closed and unlinked, inherited by the child;
 *   - "cow.dat": mapped private with copied-on-write pages, then closed and unlinked;
 *   - "open.dat": mapped shared and still open in the parent after its unlink, so that the
 *     descriptor and the mapping must stay one file.
 * Writes DIR/ready, waits for DIR/go, checks every byte and that shared memory is still shared,
 * writes DIR/result and exits 0 ("wl_shared: ok") or 1 with each difference on stderr. */
#include "wl_verify.h"

#include <sys/mman.h>

#define PAGE 4096u
#define ANON_SIZE (4u << 20)
#define ZERO_SIZE (64u << 10)
#define FILE_SIZE (32u * PAGE)
#define DROPPED_PAGE 100u

enum { k_seed_anon = 51, k_seed_zero = 52, k_seed_gone = 53, k_seed_cow = 54, k_seed_cow_written = 55, k_seed_open = 56,
       k_seed_parent_later = 57, k_seed_child_later = 58 };

static struct {
    uint8_t *anon, *zero, *gone, *cow, *open_map;
    int open_fd;
    pid_t child;
} g;

/* Pages with an odd index carry data written before the dump. */
static int anon_written(size_t page) { return page % 2 == 1; }

static uint8_t* map_file(const char* name, uint64_t seed, int shared, int keep_fd) {
    char path[PATH_MAX];
    int fd = open(wl_at(path, sizeof path, name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) wl_die("wl_shared", path);
    wl_write_pattern(fd, 0, FILE_SIZE, seed);
    uint8_t* p = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) wl_die("wl_shared", "mmap");
    if (unlink(path) != 0) wl_die("wl_shared", "unlink");
    if (keep_fd) g.open_fd = fd;
    else close(fd);
    return p;
}

static void setup(void) {
    g.anon = mmap(NULL, ANON_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g.anon == MAP_FAILED) wl_die("wl_shared", "mmap shared anonymous");
    for (size_t page = 0; page < ANON_SIZE / PAGE; ++page)
        if (anon_written(page)) wl_fill_bytes(g.anon + page * PAGE, PAGE, k_seed_anon, page * PAGE);
    wl_fill_bytes(g.anon + DROPPED_PAGE * PAGE, PAGE, k_seed_anon, DROPPED_PAGE * PAGE);
    int z = open("/dev/zero", O_RDWR | O_CLOEXEC);
    g.zero = mmap(NULL, ZERO_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0);
    if (z < 0 || g.zero == MAP_FAILED) wl_die("wl_shared", "mmap /dev/zero");
    close(z);
    wl_fill_bytes(g.zero, ZERO_SIZE, k_seed_zero, 0);

    g.gone = map_file("gone.dat", k_seed_gone, 1, 0);
    g.cow = map_file("cow.dat", k_seed_cow, 0, 0);
    for (size_t page = 0; page < FILE_SIZE / PAGE; page += 3)
        wl_fill_bytes(g.cow + page * PAGE, 64, k_seed_cow_written, page * PAGE);
    g.open_map = map_file("open.dat", k_seed_open, 1, 1);
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

/* Page 2n (written by nobody before the dump) gets a pattern from one side after the restore:
 * the parent takes pages 0 mod 4, the child 2 mod 4. */
static void write_later(int child) {
    for (size_t page = child ? 2 : 0; page < ANON_SIZE / PAGE; page += 4)
        if (page != DROPPED_PAGE) wl_fill_bytes(g.anon + page * PAGE, PAGE, child ? k_seed_child_later : k_seed_parent_later, page * PAGE);
    wl_fill_bytes(g.gone + (child ? 5 : 6) * PAGE, PAGE, child ? k_seed_child_later : k_seed_parent_later, (child ? 5 : 6) * PAGE);
    wl_fill_bytes(g.zero + (child ? 1 : 2) * PAGE, PAGE, child ? k_seed_child_later : k_seed_parent_later, (child ? 1 : 2) * PAGE);
}

static void check_shared(const char* who) {
    char what[128];
    for (size_t page = 0; page < ANON_SIZE / PAGE; ++page) {
        uint64_t seed = anon_written(page) || page == DROPPED_PAGE ? k_seed_anon
                        : page % 4 == 0                          ? k_seed_parent_later
                                                                 : k_seed_child_later;
        snprintf(what, sizeof what, "%s: shared anonymous page %zu", who, page);
        check_mem(g.anon, page * PAGE, PAGE, seed, what);
    }
    snprintf(what, sizeof what, "%s: gone.dat", who);
    for (size_t page = 0; page < FILE_SIZE / PAGE; ++page)
        check_mem(g.gone, page * PAGE, PAGE, page == 5 ? k_seed_child_later : page == 6 ? k_seed_parent_later : k_seed_gone, what);
    snprintf(what, sizeof what, "%s: shared /dev/zero", who);
    for (size_t page = 0; page < ZERO_SIZE / PAGE; ++page)
        check_mem(g.zero, page * PAGE, PAGE, page == 1 ? k_seed_child_later : page == 2 ? k_seed_parent_later : k_seed_zero, what);
}

static int child_main(void) {
    wl_wait_for("go");
    write_later(1);
    if (wl_write_file(g_wl_dir, "child-wrote", "") != 0) return 2;
    wl_wait_for("parent-wrote");
    check_shared("child");
    return g_wl_fails == 0 ? 0 : 1;
}

static void check_private_and_open(void) {
    for (size_t page = 0; page < FILE_SIZE / PAGE; ++page) {
        if (page % 3 == 0) {
            check_mem(g.cow, page * PAGE, 64, k_seed_cow_written, "cow.dat written page");
            check_mem(g.cow, page * PAGE + 64, PAGE - 64, k_seed_cow, "cow.dat written page, rest");
        } else {
            check_mem(g.cow, page * PAGE, PAGE, k_seed_cow, "cow.dat untouched page");
        }
    }
    check_mem(g.open_map, 0, FILE_SIZE, k_seed_open, "open.dat mapping");
    struct stat st;
    WL_CHECK(fstat(g.open_fd, &st) == 0 && st.st_nlink == 0 && st.st_size == FILE_SIZE, "open.dat: links %lu size %lld",
             (unsigned long)st.st_nlink, (long long)st.st_size);
    wl_fill_bytes(g.open_map + 3 * PAGE, 100, k_seed_parent_later, 3 * PAGE);
    wl_check_pattern(g.open_fd, 3 * PAGE, 100, k_seed_parent_later, 3 * PAGE, "open.dat: written through the mapping, read through the fd");
    wl_write_pattern(g.open_fd, 7 * PAGE, 100, k_seed_child_later);
    check_mem(g.open_map, 7 * PAGE, 100, k_seed_child_later, "open.dat: written through the fd, read through the mapping");
}

int main(int argc, char** argv) {
    int self_test = wl_start(argc, argv, "wl_shared");
    setup();
    g.child = fork();
    if (g.child < 0) wl_die("wl_shared", "fork");
    if (g.child == 0) _exit(child_main());
    /* Out of the parent's page tables, not out of the shared memory: only the child maps it. */
    if (madvise(g.anon + DROPPED_PAGE * PAGE, PAGE, MADV_DONTNEED) != 0) wl_die("wl_shared", "madvise");
    wl_ready_then_wait(self_test);
    if (g_wl_corrupt) g.cow[PAGE + 5] ^= 0x40;
    write_later(0);
    wl_wait_for("child-wrote");
    wl_write_file(g_wl_dir, "parent-wrote", "");
    check_shared("parent");
    check_private_and_open();
    wl_reap(g.child, "child");
    return wl_verdict();
}
