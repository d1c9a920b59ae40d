/* wl_mixed: one process holding a bit of everything the foundation handlers must restore.
 * wl_mixed.c sets the state up and waits; wl_mixed_check.c verifies it after "go". */
#ifndef CR_WL_MIXED_H
#define CR_WL_MIXED_H

#include "wl_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>

#define WL_PAGE 4096u
#define WL_ANON_SIZE (64u << 20)
#define WL_RO_SIZE (1u << 20) /* tail of the anonymous region, made read-only after filling */
#define WL_PRIV_SIZE (1u << 20)
#define WL_SHARED_SIZE (256u << 10)
#define WL_HUGE_SIZE (8u << 20) /* 2 MiB aligned, MADV_HUGEPAGE, every byte a pattern */
#define WL_HUGE_ALIGN (2u << 20)
#define WL_PIPE_BYTES 3000u
#define WL_THREADS 4
#define WL_POS_FILE_SIZE 10000u
#define WL_POS_OFFSET 4321
#define WL_TLS_TAG 0x7a6b5c00u

/* Pattern seeds, one per object, so data put in the wrong object cannot match. */
enum { k_seed_anon = 1, k_seed_priv_file = 2, k_seed_priv_cow = 3, k_seed_shared = 4,
       k_seed_pipe = 5, k_seed_pos = 6, k_seed_huge = 7 };

/* Anonymous page classes, derived from the page index. */
enum wl_page_class { k_page_pattern, k_page_untouched, k_page_zeroed };
static inline enum wl_page_class wl_anon_class(size_t page) {
    if (page % 7 == 3) return k_page_untouched;
    if (page % 11 == 5) return k_page_zeroed;
    return k_page_pattern;
}

/* Private file mapping: pages written after mapping (copy-on-write) and where. */
static inline int wl_priv_written(size_t page) { return page % 5 == 1; }
#define WL_PRIV_COW_OFFSET 1000u
#define WL_PRIV_COW_LEN 256u
/* Shared file mapping: even pages carry a pattern, odd pages stay zero. */
static inline int wl_shared_written(size_t page) { return page % 2 == 0; }

struct wl_thread_slot {
    _Atomic uint64_t mirror; /* copy of the thread's __thread counter */
    _Atomic int result;      /* 0 pending, 1 ok, 2 mismatch */
    pid_t tid;
};

struct wl_mixed {
    const char* dir;
    pid_t pid;
    uint8_t* anon;
    uint8_t* priv;
    uint8_t* shared;
    uint8_t* huge;
    int pos_fd;
    int pipe_wr;
    pid_t child;
    pthread_t threads[WL_THREADS];
    struct wl_thread_slot slots[WL_THREADS];
    _Atomic int check_request;
    _Atomic int stop;
};

extern struct wl_mixed g_wl;
extern volatile sig_atomic_t g_usr1_hits;
extern volatile sig_atomic_t g_usr1_signo;
extern volatile sig_atomic_t g_usr1_code;

void wl_on_usr1(int sig, siginfo_t* si, void* uc);
void wl_thread_check(int index, uint64_t tag, uint64_t counter, pid_t tid);

/* Runs every check; returns the number of differences (each already printed). */
unsigned wl_check_all(struct wl_mixed* wl);
/* The pipe reader in the child: waits for go, reads and checks the queued bytes. */
int wl_child_main(const char* dir, int rfd, pid_t parent);

#endif /* CR_WL_MIXED_H */
