// cr.memory.vma: every mapping of a task and its page contents.
//
// Dump reads mappings from /proc, page presence from /proc/PID/pagemap and contents from
// /proc/PID/mem, writing only pages that hold data: private anonymous pages, copied-on-write
// pages of private file mappings, and shared anonymous memory; zero pages are skipped.
// Restore replaces the stub's address space through remote calls: unmap, move the vdso,
// map every VMA, preadv page contents straight from the page file, PR_SET_MM_MAP.
#pragma once

#include "maps.hpp"
#include "memory_generated.h"
#include "pages.hpp"
#include "unlinked.hpp"

#include <cr/sdk/handler.hpp>

#include <map>
#include <set>

namespace cr::memory {

namespace img = cr::image::v1;

struct VmaRecord {
    Mapping map;
    img::VmaKind kind = img::VmaKind::Anon;
    uint64_t file_size = 0;
    uint64_t file_mtime_ns = 0;
    UnlinkedRef unlinked{};  // File mappings of deleted files and memfds
};

struct MmRecord {
    uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0, start_brk = 0, brk = 0;
    uint64_t start_stack = 0, arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
    std::vector<uint64_t> auxv;
    std::string exe_path;
};

// count pages at vaddr held by the image depth steps up the chain, at offset in its page file.
struct ParentRunRecord {
    uint64_t vaddr;
    uint64_t count;
    uint64_t offset;
    uint64_t depth;
};

struct TaskDump {
    pid_t pid = 0;
    std::vector<VmaRecord> vmas;
    std::vector<Run> runs;
    std::string pages_file;
    MmRecord mm;
    uint64_t pages_dumped = 0;
    uint64_t pages_zero = 0;
    // Incremental images.
    std::vector<ParentRunRecord> parent_runs;
    std::vector<std::string> parent_files;  // page file of the task in the image at depth i + 1
    uint64_t pages_parent = 0;
    int tracker_fd = -1;
    uint64_t tracker_ino = 0;
    uint64_t start_time = 0;
    // Pre-dump: pages copied in dump_finish, once the task runs again.
    std::vector<CopyRange> copies;
    UniqueFd mem;
    UniqueFd out;
};

class MemoryHandler {
public:
    static constexpr const char* k_id = "cr.memory.vma";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary = "address space: mappings, page contents, vdso, mm fields";
    // fd:userfaultfd: the dirty trackers pre-dumps leave in tasks are this handler's to close.
    static constexpr const char* k_claims[] = {"task:memory", "fd:userfaultfd", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRMM", nullptr};

    explicit MemoryHandler(sdk::Context&) {}

    Result<void> dump_task(sdk::Context& ctx, pid_t pid);
    Result<void> dump_fd(sdk::Context& ctx, const cr_fd_info* fd);
    Result<void> dump_finish(sdk::Context& ctx);
    Result<void> prepare(sdk::Context& ctx);
    Result<void> restore_task(sdk::Context& ctx, pid_t pid);

private:
    Result<void> fill_shared(const img::TaskMemory* tm, int pages);
    Result<void> load_parent(const sdk::Context& ctx);
    Result<void> copy_pages(const sdk::Context& ctx, TaskDump& td, bool gone_ok);

    std::vector<TaskDump> m_dumped;
    bool m_parent_loaded = false;
    const img::MemoryImage* m_parent = nullptr;  // incremental dump: the parent image's section
    std::vector<uint64_t> m_tracker_inos;        // trackers the chain left in tasks
    const img::MemoryImage* m_image = nullptr;
    std::map<uint64_t, UniqueFd> m_shmem;  // restore: shared anonymous objects, by id
    UnlinkedFiles m_unlinked;
    std::set<std::pair<uint64_t, uint64_t>> m_shared_seen;  // dump: shared anonymous pages copied
};

// Helpers shared by dump and restore.
img::VmaKind classify(const Mapping& m);
bool is_special(img::VmaKind k);  // vdso, vvar, vvar_vclock, vsyscall

}  // namespace cr::memory
