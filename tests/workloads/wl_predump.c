/* Memory that keeps changing, for incremental dumps: a region of SIZE MiB whose pages are
 * rewritten at RATE percent of the region per second, each page with a pattern derived from its
 * index and a per-page generation; a small region whose pages are dropped (MADV_DONTNEED, so
 * they must come back as zeros); and mappings that are unmapped and mapped anew all the time.
 *
 *   wl_predump DIR SIZE_MIB RATE_PERCENT
 *
 * DIR/ready appears once every page holds its first pattern. Touching DIR/check makes it stop
 * writing, verify every byte of every page against the generations it recorded, and write
 * DIR/result ("ok PAGES WRITES" or "bad ..."); then it goes on writing.
 * --self-test and --self-test-corrupt check the checker without cr.
 */
#include "wl_common.h"

#include <sys/mman.h>

#define PAGE 4096u
#define DROP_PAGES 64u
#define CHURN_SLOTS 8u
#define CHURN_PAGES 4u

struct state {
    uint8_t* mem;
    size_t pages;
    uint32_t* gen;              /* per page of mem: 0 = all zero, else pattern generation */
    uint8_t* drop;              /* DROP_PAGES pages, some dropped */
    uint32_t drop_gen[DROP_PAGES];
    uint8_t* churn[CHURN_SLOTS];
    uint32_t churn_gen[CHURN_SLOTS];
    uint64_t writes;
};

static uint64_t seed_of(uint32_t gen, uint64_t page, uint64_t salt) {
    return (uint64_t)gen * 0x100000001B3ull + page * 0x9E37ull + salt;
}

static void fill_page(uint8_t* p, uint32_t gen, uint64_t page, uint64_t salt) {
    uint64_t* w = (uint64_t*)p;
    if (gen == 0) {
        memset(p, 0, PAGE);
        return;
    }
    uint64_t seed = seed_of(gen, page, salt);
    for (size_t i = 0; i < PAGE / 8; ++i) w[i] = wl_pattern_word(seed, i);
}

/* Index of the first wrong byte of the page, or -1. */
static long check_page(const uint8_t* p, uint32_t gen, uint64_t page, uint64_t salt) {
    const uint64_t* w = (const uint64_t*)p;
    uint64_t seed = seed_of(gen, page, salt);
    for (size_t i = 0; i < PAGE / 8; ++i) {
        uint64_t want = gen == 0 ? 0 : wl_pattern_word(seed, i);
        if (w[i] != want) return (long)(i * 8);
    }
    return -1;
}

static uint8_t* map_pages(size_t pages) {
    void* p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) wl_die("wl_predump", "mmap");
    return p;
}

static void setup(struct state* s, size_t mib) {
    s->pages = mib * (1024 * 1024 / PAGE);
    s->mem = map_pages(s->pages);
    s->gen = calloc(s->pages, sizeof *s->gen);
    if (!s->gen) wl_die("wl_predump", "calloc");
    for (size_t i = 0; i < s->pages; ++i) {
        s->gen[i] = 1;
        fill_page(s->mem + i * PAGE, 1, i, 1);
    }
    s->drop = map_pages(DROP_PAGES);
    for (size_t i = 0; i < DROP_PAGES; ++i) {
        s->drop_gen[i] = 1;
        fill_page(s->drop + i * PAGE, 1, i, 2);
    }
    for (size_t i = 0; i < CHURN_SLOTS; ++i) {
        s->churn[i] = map_pages(CHURN_PAGES);
        s->churn_gen[i] = 1;
        for (size_t j = 0; j < CHURN_PAGES; ++j) fill_page(s->churn[i] + j * PAGE, 1, i * CHURN_PAGES + j, 3);
    }
}

/* One step of change: rewrite a page of the big region, now and then drop or refill a page of
 * the small one and replace a whole churn mapping. */
static void step(struct state* s, uint64_t n) {
    size_t i = (size_t)(n * 7919u % s->pages);
    uint32_t g = s->gen[i] + 1;
    fill_page(s->mem + i * PAGE, g, i, 1);
    s->gen[i] = g;
    ++s->writes;
    if (n % 64 == 0) {
        size_t d = (size_t)(n / 64 % DROP_PAGES);
        if (s->drop_gen[d] == 0) {
            s->drop_gen[d] = 7;
            fill_page(s->drop + d * PAGE, 7, d, 2);
        } else {
            s->drop_gen[d] = 0;
            madvise(s->drop + d * PAGE, PAGE, MADV_DONTNEED);
        }
    }
    if (n % 256 == 0) {
        size_t c = (size_t)(n / 256 % CHURN_SLOTS);
        munmap(s->churn[c], CHURN_PAGES * PAGE);
        s->churn[c] = map_pages(CHURN_PAGES);
        s->churn_gen[c] += 1;
        for (size_t j = 0; j < CHURN_PAGES; ++j)
            fill_page(s->churn[c] + j * PAGE, s->churn_gen[c], c * CHURN_PAGES + j, 3);
    }
}

static int verify(const struct state* s, char* out, size_t size) {
    for (size_t i = 0; i < s->pages; ++i) {
        long at = check_page(s->mem + i * PAGE, s->gen[i], i, 1);
        if (at >= 0) {
            snprintf(out, size, "bad page %zu of the big region (generation %u), byte %ld\n", i, s->gen[i], at);
            return 1;
        }
    }
    for (size_t i = 0; i < DROP_PAGES; ++i) {
        long at = check_page(s->drop + i * PAGE, s->drop_gen[i], i, 2);
        if (at >= 0) {
            snprintf(out, size, "bad page %zu of the dropped region (generation %u), byte %ld\n", i, s->drop_gen[i], at);
            return 1;
        }
    }
    for (size_t c = 0; c < CHURN_SLOTS; ++c)
        for (size_t j = 0; j < CHURN_PAGES; ++j) {
            long at = check_page(s->churn[c] + j * PAGE, s->churn_gen[c], c * CHURN_PAGES + j, 3);
            if (at >= 0) {
                snprintf(out, size, "bad page %zu of churn mapping %zu, byte %ld\n", j, c, at);
                return 1;
            }
        }
    snprintf(out, size, "ok %zu %llu\n", s->pages + DROP_PAGES + CHURN_SLOTS * CHURN_PAGES,
             (unsigned long long)s->writes);
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int self_test(int corrupt) {
    struct state s = {0};
    char msg[256];
    setup(&s, 4);
    for (uint64_t n = 1; n <= 3000; ++n) step(&s, n);
    if (corrupt) s.mem[PAGE * 5 + 17] ^= 1;
    int bad = verify(&s, msg, sizeof msg);
    fputs(msg, bad ? stderr : stdout);
    return bad;
}

int main(int argc, char** argv) {
    if (argc == 2 && !strcmp(argv[1], "--self-test")) return self_test(0);
    if (argc == 2 && !strcmp(argv[1], "--self-test-corrupt")) return self_test(1);
    if (argc != 4) {
        fprintf(stderr, "usage: wl_predump DIR SIZE_MIB RATE_PERCENT\n");
        return 2;
    }
    const char* dir = argv[1];
    size_t mib = (size_t)strtoul(argv[2], NULL, 10);
    double rate = strtod(argv[3], NULL);
    if (mib == 0) {
        fprintf(stderr, "wl_predump: SIZE_MIB must be positive\n");
        return 2;
    }
    static struct state s;
    setup(&s, mib);
    char check[PATH_MAX], msg[256];
    wl_path(check, sizeof check, dir, "check");
    wl_write_file(dir, "ready", "1\n");
    /* Pages owed by the clock, so a loaded machine slows the ticks, not the rate. */
    double per_second = (double)s.pages * rate / 100.0, owed = 0, last = now_s();
    uint64_t n = 0;
    for (;;) {
        double t = now_s();
        owed += per_second * (t - last);
        last = t;
        while (owed >= 1) {
            step(&s, ++n);
            owed -= 1;
        }
        if (wl_exists(check)) {
            unlink(check);
            verify(&s, msg, sizeof msg);
            wl_write_file(dir, "result", msg);
        }
        wl_sleep_ms(10);
    }
}
