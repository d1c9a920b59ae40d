/* Helpers shared by the workload programs: patterns derived from an offset, polling for
 * control files, atomic result files. Header-only so each workload stays one executable. */
#ifndef CR_WL_COMMON_H
#define CR_WL_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A 64-bit LCG step mixed with the seed: every 8-byte word of a region has a value that
 * depends on its offset, so a page moved, swapped or dropped shows up as a difference. */
static inline uint64_t wl_pattern_word(uint64_t seed, uint64_t index) {
    uint64_t x = (index + seed * 0x9E3779B97F4A7C15ull) * 6364136223846793005ull +
                 1442695040888963407ull;
    return x ^ (x >> 31);
}

/* Byte view of the same pattern (little-endian words), for files and partial pages. */
static inline uint8_t wl_pattern_byte(uint64_t seed, uint64_t offset) {
    return (uint8_t)(wl_pattern_word(seed, offset / 8) >> ((offset % 8) * 8));
}

static inline void wl_fill_bytes(uint8_t* buf, size_t len, uint64_t seed, uint64_t base) {
    for (size_t i = 0; i < len; ++i) buf[i] = wl_pattern_byte(seed, base + i);
}

/* Polling sleep. An early return (EINTR after a restore) only makes the poll faster. */
static inline void wl_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int wl_exists(const char* path) { return access(path, F_OK) == 0; }

static inline void wl_path(char* out, size_t size, const char* dir, const char* name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "workload: path too long: %s/%s\n", dir, name);
        exit(2);
    }
}

/* Writes text to dir/name through a rename, so a reader never sees half a file. */
static inline int wl_write_file(const char* dir, const char* name, const char* text) {
    char tmp[PATH_MAX], path[PATH_MAX];
    char tmpname[NAME_MAX];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", name);
    wl_path(tmp, sizeof tmp, dir, tmpname);
    wl_path(path, sizeof path, dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    close(fd);
    if (n != (ssize_t)len) return -1;
    return rename(tmp, path);
}

static inline void wl_die(const char* who, const char* what) {
    fprintf(stderr, "%s: setup: %s: %s\n", who, what, strerror(errno));
    exit(2);
}

#endif /* CR_WL_COMMON_H */
