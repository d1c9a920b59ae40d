// Copying a task's pages into its page file at the speed of the machine: the calling thread
// reads large runs (process_vm_readv, /proc/PID/mem where protections forbid it) and drops
// zero pages; a writer thread writes each buffer while a hasher thread feeds it to the core's
// sha256, so the three overlap. No allocation and no syscall per page.
#pragma once

#include "maps.hpp"

#include <cr/sdk/handler.hpp>

#include <sys/uio.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace cr::memory {

struct Run {
    uint64_t vaddr;
    uint64_t count;
    uint64_t offset;
};

// Pages [start, start + pages) to copy; keep_zero keeps all-zero pages too (in a private file
// mapping a zero page differs from what the file holds).
struct CopyRange {
    uint64_t start;
    uint64_t pages;
    bool keep_zero;
};

class PageCopier {
public:
    // gone_ok: the task runs on (pre-dump), so a range unmapped meanwhile is skipped, not an error.
    PageCopier(const sdk::Context& ctx, pid_t pid, int mem, int out, std::string file, bool gone_ok);
    ~PageCopier();
    PageCopier(const PageCopier&) = delete;
    PageCopier& operator=(const PageCopier&) = delete;

    Result<void> copy(const CopyRange& r);
    // Writes what is left and stops the writer; runs() is complete afterwards.
    Result<void> finish();

    [[nodiscard]] std::vector<Run>& runs() { return m_runs; }
    [[nodiscard]] uint64_t pages_written() const { return m_offset / k_page; }
    [[nodiscard]] uint64_t pages_zero() const { return m_zero; }
    [[nodiscard]] uint64_t pages_gone() const { return m_gone; }
    // Where the time went, for the log: reading and waiting for a free buffer (calling thread),
    // writing and hashing (their threads).
    struct Times {
        double read = 0, hash = 0, wait = 0, write = 0;
    };
    [[nodiscard]] Times times() {
        std::lock_guard g(m_lock);
        return m_times;
    }

private:
    struct Buffer {
        uint8_t* data = nullptr;
        size_t fill = 0;
        int users = 0;  // writer and hasher still on it
    };

    Result<size_t> read(uint8_t* dst, uint64_t addr, size_t len);
    Result<void> flush_reads();
    Result<void> submit();
    Result<Buffer*> take_free();
    void worker_main(bool hasher);
    void stop();
    void add_run(uint64_t vaddr, uint64_t pages);

    const sdk::Context& m_ctx;
    pid_t m_pid;
    int m_mem;
    int m_out;
    std::string m_file;
    bool m_gone_ok;

    std::vector<Buffer> m_buffers;
    uint8_t* m_arena = nullptr;
    Buffer* m_current = nullptr;
    std::mutex m_lock;
    std::condition_variable m_cv;
    std::deque<Buffer*> m_free;
    std::deque<Buffer*> m_full;        // to write, in order
    std::deque<Buffer*> m_hash_queue;  // to hash, in order
    bool m_stop = false;
    std::string m_write_error;
    std::thread m_writer;
    std::thread m_hasher;

    struct Pending {
        uint64_t addr;
        uint64_t pages;
        bool keep_zero;
        bool first;          // the start of a CopyRange: begins a run of its own
        uint64_t valid = 0;  // pages read (fewer when unmapped meanwhile)
    };
    std::vector<Pending> m_pending;  // ranges to read into m_current, in order
    uint64_t m_pending_pages = 0;
    std::vector<iovec> m_remote;

    std::vector<Run> m_runs;
    uint64_t m_offset = 0;  // bytes handed to the writer so far
    bool m_split = false;   // the next run starts a new range
    Times m_times;
    uint64_t m_zero = 0;
    uint64_t m_gone = 0;
};

}  // namespace cr::memory
