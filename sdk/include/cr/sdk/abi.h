/* cr handler ABI: the one C interface between the cr core and a handler shared object.
 *
 * A handler exports exactly one symbol, cr_handler_get_info, returning a descriptor. Every
 * struct here starts with its size and grows only at the end, so a core can load a handler
 * built against an older minor version (and the reverse) by looking at struct_size.
 * A change that breaks layout bumps CR_ABI_MAJOR; the loader refuses another major.
 */
#ifndef CR_SDK_ABI_H
#define CR_SDK_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CR_ABI_MAJOR 1
#define CR_ABI_MINOR 2
#define CR_HANDLER_SYMBOL "cr_handler_get_info"
#define CR_EXPORT __attribute__((visibility("default")))

enum cr_log_level { CR_LOG_ERROR = 0, CR_LOG_WARN = 1, CR_LOG_INFO = 2, CR_LOG_DEBUG = 3 };

/* Return codes of every op and host call. */
enum cr_status { CR_OK = 0, CR_FAIL = -1 };

typedef struct cr_context cr_context;

/* One task (thread group) of the tree being dumped or restored. */
typedef struct cr_task_info {
    uint32_t struct_size;
    pid_t pid;
    pid_t ppid; /* 0 when the parent is outside the tree */
    pid_t pgid;
    pid_t sid;
    uint32_t thread_count;
    const pid_t* tids; /* tids[0] == pid; valid for the lifetime of the phase */
    uint32_t flags;    /* CR_TASK_* */
} cr_task_info;

#define CR_TASK_STOPPED 0x1u /* the task was in group stop (SIGSTOP) when seized */
#define CR_TASK_ZOMBIE 0x2u  /* dead, not yet reaped: restored as a zombie; handlers never see it */

/* An open file description found in the tree. Fds that share one description (dup, fork,
 * SCM_RIGHTS) are reported once, under one object id, with the first holder. */
typedef struct cr_fd_info {
    uint32_t struct_size;
    uint64_t object_id; /* stable id of the open file description inside this image */
    pid_t pid;          /* a task holding it */
    int fd;             /* its number in that task */
    int cr_fd;          /* a duplicate of the description inside cr (pidfd_getfd) */
    const char* kind;   /* claim kind, e.g. "fd:file", "fd:pipe" */
    const char* link;   /* readlink of /proc/PID/fd/FD */
    uint64_t pos;       /* from fdinfo */
    uint32_t flags;     /* open flags from fdinfo (O_ACCMODE, O_APPEND, O_NONBLOCK ...) */
    uint32_t mnt_id;
} cr_fd_info;

/* Final state of a restored thread, applied by the core after the last remote call. */
typedef struct cr_thread_entry {
    uint32_t struct_size;
    const void* regs; /* struct user_regs_struct */
    size_t regs_size;
    const void* xstate; /* NT_X86_XSTATE buffer, may be NULL */
    size_t xstate_size;
    int has_sigmask;
    uint64_t sigmask;
} cr_thread_entry;

/* Services the core offers a handler. Every function returns CR_OK or CR_FAIL unless noted;
 * on CR_FAIL the reason is in the context's error (host_last_error). */
typedef struct cr_host_api {
    uint32_t struct_size;
    void (*log)(cr_context* ctx, int level, const char* message);
    void (*set_error)(cr_context* ctx, const char* message);
    const char* (*last_error)(cr_context* ctx);
    /* NULL when unset. Keys: "leave-running", "skip-file-check", "verbose", ... */
    const char* (*option)(cr_context* ctx, const char* key);
    const char* (*image_dir)(cr_context* ctx);

    /* Sections: the handler's own FlatBuffers; name is a file name inside the image. */
    int (*section_write)(cr_context* ctx, const char* name, const void* data, size_t size);
    /* Returns verified bytes (size and sha256 checked against the manifest). data stays valid
     * until the run ends. A missing section is CR_FAIL. */
    int (*section_read)(cr_context* ctx, const char* name, const void** data, size_t* size);
    /* Raw image files (page contents). Write mode creates the file 0600 and registers it in
     * the manifest (size and sha256 are taken when the dump finishes). Returns an fd or -1. */
    int (*image_file_open)(cr_context* ctx, const char* name, int for_write);

    size_t (*task_count)(cr_context* ctx);
    int (*task_at)(cr_context* ctx, size_t index, cr_task_info* out);
    int (*task_find)(cr_context* ctx, pid_t pid, cr_task_info* out);

    /* Remote system calls, executed by thread tid of a stopped task. ret receives the raw
     * return value (negative errno on failure); CR_FAIL means the call could not be made. */
    int (*remote_syscall)(cr_context* ctx, pid_t tid, long nr, const uint64_t args[6],
                          int64_t* ret);
    /* Scratch memory inside the task, for syscall arguments (read/write it with mem_*). */
    int (*remote_scratch)(cr_context* ctx, pid_t pid, uint64_t* addr, uint64_t* size);
    int (*mem_read)(cr_context* ctx, pid_t pid, uint64_t addr, void* buf, size_t size);
    int (*mem_write)(cr_context* ctx, pid_t pid, uint64_t addr, const void* buf, size_t size);

    /* Restore: the fd inside cr that stands for an open file description of the image. */
    int (*object_fd_set)(cr_context* ctx, uint64_t object_id, int fd);
    /* Restore: create thread tid in task pid (clone3 with set_tid); it is stopped and ready
     * for remote calls. */
    int (*thread_create)(cr_context* ctx, pid_t pid, pid_t tid);
    /* Restore: registers, xstate and signal mask the thread resumes with. */
    int (*thread_set_entry)(cr_context* ctx, pid_t tid, const cr_thread_entry* entry);
    /* Restore: the address range the core keeps in every stub (trampoline and scratch);
     * a handler replacing the address space leaves it and the vdso mappings alone. */
    int (*stub_reserved)(cr_context* ctx, pid_t pid, uint64_t* start, uint64_t* end);

    /* Since 1.1. */
    /* Dump: the bytes of a raw image file, fed in order as the handler writes them, so the core
     * takes its sha256 without reading the file back. Once fed, the whole file must be fed.
     * May be called from a thread of the handler, one call at a time per file. */
    int (*image_file_hash)(cr_context* ctx, const char* name, const void* data, size_t size);
    /* Incremental images: how many images the one being written or restored builds on. */
    size_t (*parent_count)(cr_context* ctx);
    /* A section / raw file of the image `depth` steps up the chain (1: the parent). Raw files
     * are checked like the image's own (size now, sha256 before a restore resumes anything). */
    int (*parent_section_read)(cr_context* ctx, uint32_t depth, const char* name,
                               const void** data, size_t* size);
    int (*parent_file_open)(cr_context* ctx, uint32_t depth, const char* name); /* fd or -1 */
    /* Dump: leaves fd of task pid out of the image: a helper of the handler's own inside the
     * task, which the handler closed. */
    int (*fd_forget)(cr_context* ctx, pid_t pid, int fd);

    /* Since 1.2. */
    /* Dump: an open file description the handler found outside every task's fd table (a file
     * in flight in a unix socket's queue); fd is a descriptor of it inside cr, which stays the
     * caller's. The core names it by object id: the one it has when a task of the tree holds it
     * too, else a new object, which it checks and hands to the handler claiming its kind
     * (dump_fd, after the objects the tree holds, with pid cr's own and fd == cr_fd: no task
     * holds it). Such an object has no fd in any task after restore. */
    int (*fd_adopt)(cr_context* ctx, int fd, uint64_t* object_id);
    /* Restore, from prepare until post_restore: a new descriptor (close-on-exec) of the open
     * file description some handler made for object_id (object_fd_set), or -1. */
    int (*object_fd_get)(cr_context* ctx, uint64_t object_id);
} cr_host_api;

struct cr_context {
    uint32_t struct_size;
    const cr_host_api* api;
    void* host; /* core-private */
};

/* Ops of a handler. All optional (NULL = nothing to do). `self` is what create returned.
 * Dump phases run in dependency order; post_dump and post_restore in reverse order. */
typedef struct cr_handler_ops {
    uint32_t struct_size;
    void* (*create)(cr_context* ctx);
    void (*destroy)(void* self);
    /* dump */
    int (*pre_dump)(void* self, cr_context* ctx);
    int (*dump_task)(void* self, cr_context* ctx, pid_t pid);
    int (*dump_fd)(void* self, cr_context* ctx, const cr_fd_info* fd);
    int (*dump_finish)(void* self, cr_context* ctx); /* write sections */
    int (*post_dump)(void* self, cr_context* ctx);
    /* restore */
    int (*prepare)(void* self, cr_context* ctx); /* read sections, create objects */
    int (*restore_stub)(void* self, cr_context* ctx, pid_t pid); /* inside the new process */
    int (*restore_task)(void* self, cr_context* ctx, pid_t pid); /* controller, remote */
    int (*post_restore)(void* self, cr_context* ctx);
} cr_handler_ops;

typedef struct cr_handler_info {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    const char* id;      /* "cr.files.pipe" */
    const char* version; /* "1.0.0"; the major part gates which images it accepts */
    const char* summary;
    const char* const* claims;     /* NULL-terminated: "fd:pipe", "task:memory", ... */
    const char* const* depends;    /* NULL-terminated handler ids */
    const char* const* schema_ids; /* NULL-terminated FlatBuffers file identifiers */
    const cr_handler_ops* ops;
} cr_handler_info;

typedef const cr_handler_info* (*cr_handler_get_info_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* CR_SDK_ABI_H */
