#include "pages.hpp"

#include <sched.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace cr::memory {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Small enough to stay in cache between the read and the write, large enough that a syscall
// moves hundreds of pages.
constexpr size_t k_buffer_size = 2 << 20;
constexpr size_t k_buffer_count = 6;
constexpr size_t k_iov_max = 1024;

bool page_is_zero(const uint8_t* p) {
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    if (w[0] | w[1] | w[511]) return false;  // most pages with data say so at once
    uint64_t acc = 0;
    for (size_t i = 0; i < k_page / 8; i += 8)
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    return acc == 0;
}

// The calling thread may be pinned to the dumped task's CPU (the core does that for fast remote
// system calls) and new threads inherit that: the copy threads may run on every CPU instead.
void unpin_this_thread() {
    cpu_set_t all;
    CPU_ZERO(&all);
    int n = ::get_nprocs_conf();
    for (int cpu = 0; cpu < n && cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &all);
    ::sched_setaffinity(0, sizeof all, &all);  // the kernel keeps what the cpuset allows
}

}  // namespace

PageCopier::PageCopier(const sdk::Context& ctx, pid_t pid, int mem, int out, std::string file, bool gone_ok)
    : m_ctx(ctx), m_pid(pid), m_mem(mem), m_out(out), m_file(std::move(file)), m_gone_ok(gone_ok) {
    void* arena = ::mmap(nullptr, k_buffer_size * k_buffer_count, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (arena == MAP_FAILED) {
        m_write_error = strf("mmap of copy buffers: %s", std::strerror(errno));
        return;
    }
    m_arena = static_cast<uint8_t*>(arena);
    m_buffers.resize(k_buffer_count);
    for (size_t i = 0; i < k_buffer_count; ++i) {
        m_buffers[i].data = m_arena + i * k_buffer_size;
        m_free.push_back(&m_buffers[i]);
    }
    m_writer = std::thread([this] {
        unpin_this_thread();
        worker_main(false);
    });
    m_hasher = std::thread([this] {
        unpin_this_thread();
        worker_main(true);
    });
}

PageCopier::~PageCopier() {
    stop();
    if (m_arena) ::munmap(m_arena, k_buffer_size * k_buffer_count);
}

// One of two threads: the writer writes each buffer, the hasher feeds it to the core's sha256;
// a buffer is free again once both are done with it, so reading, hashing and writing overlap.
void PageCopier::worker_main(bool hasher) {
    std::deque<Buffer*>& queue = hasher ? m_hash_queue : m_full;
    bool failed = false;  // after a failure, buffers are only given back
    for (;;) {
        Buffer* b = nullptr;
        {
            std::unique_lock g(m_lock);
            m_cv.wait(g, [&] { return m_stop || !queue.empty(); });
            if (queue.empty()) return;
            b = queue.front();
            queue.pop_front();
        }
        std::string error;
        auto t0 = std::chrono::steady_clock::now();
        if (failed) {
        } else if (hasher) {
            auto r = m_ctx.hash_image_file(m_file, b->data, b->fill);
            if (!r) error = r.error().message();
        } else {
            for (size_t done = 0; done < b->fill;) {
                ssize_t n = ::write(m_out, b->data + done, b->fill - done);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    error = strf("pid %d: write of %s: %s", m_pid, m_file.c_str(), std::strerror(n < 0 ? errno : EIO));
                    break;
                }
                done += static_cast<size_t>(n);
            }
        }
        failed = failed || !error.empty();
        {
            std::lock_guard g(m_lock);
            (hasher ? m_times.hash : m_times.write) += seconds_since(t0);
            if (!error.empty() && m_write_error.empty()) m_write_error = error;
            if (--b->users == 0) {
                b->fill = 0;
                m_free.push_back(b);
            }
        }
        m_cv.notify_all();
    }
}

void PageCopier::stop() {
    {
        std::lock_guard g(m_lock);
        m_stop = true;
    }
    m_cv.notify_all();
    if (m_writer.joinable()) m_writer.join();
    if (m_hasher.joinable()) m_hasher.join();
}

Result<PageCopier::Buffer*> PageCopier::take_free() {
    auto t0 = std::chrono::steady_clock::now();
    std::unique_lock g(m_lock);
    m_cv.wait(g, [&] { return !m_free.empty() || !m_write_error.empty(); });
    if (!m_write_error.empty()) return Error(m_write_error);
    Buffer* b = m_free.front();
    m_free.pop_front();
    m_times.wait += seconds_since(t0);
    return b;
}

Result<void> PageCopier::submit() {
    if (!m_current || m_current->fill == 0) return {};
    {
        std::lock_guard g(m_lock);
        if (!m_write_error.empty()) return Error(m_write_error);
        m_current->users = 2;
        m_full.push_back(m_current);
        m_hash_queue.push_back(m_current);
    }
    m_cv.notify_all();
    m_current = nullptr;
    return {};
}

// Bytes read at addr; fewer than len only where the task no longer maps them (pre-dump).
Result<size_t> PageCopier::read(uint8_t* dst, uint64_t addr, size_t len) {
    size_t done = 0;
    while (done < len) {
        iovec local{dst + done, len - done};
        iovec remote{reinterpret_cast<void*>(addr + done), len - done};
        ssize_t n = ::process_vm_readv(m_pid, &local, 1, &remote, 1, 0);
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        // Protections (PROT_NONE, guard pages) stop process_vm_readv; /proc/PID/mem ignores them.
        n = ::pread(m_mem, dst + done, len - done, static_cast<off_t>(addr + done));
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (m_gone_ok) return done;
        return Error::from_errno(strf("pid %d: read of memory at 0x%lx", m_pid, addr + done), {},
                                 n == 0 ? EIO : errno);
    }
    return done;
}

void PageCopier::add_run(uint64_t vaddr, uint64_t pages) {
    bool split = m_split;
    m_split = false;
    if (!m_runs.empty() && !split) {
        Run& last = m_runs.back();
        if (last.vaddr + last.count * k_page == vaddr && last.offset + last.count * k_page == m_offset) {
            last.count += pages;
            m_offset += pages * k_page;
            return;
        }
    }
    m_runs.push_back({vaddr, pages, m_offset});
    m_offset += pages * k_page;
}

Result<void> PageCopier::copy(const CopyRange& r) {
    uint64_t addr = r.start;
    uint64_t left = r.pages;
    while (left > 0) {
        if (!m_current) m_current = CR_TRY(take_free());
        uint64_t room = (k_buffer_size - m_current->fill) / k_page - m_pending_pages;
        uint64_t n = std::min(left, room);
        m_pending.push_back({addr, n, r.keep_zero, addr == r.start});
        m_pending_pages += n;
        addr += n * k_page;
        left -= n;
        if (n == room || m_pending.size() == k_iov_max) CR_TRY(flush_reads());
    }
    return {};
}

// Reads every pending range with one process_vm_readv (ranges are often a page or two), then
// keeps the pages with data, moved down over the zero ones, in runs.
Result<void> PageCopier::flush_reads() {
    if (m_pending.empty()) return {};
    uint8_t* base = m_current->data + m_current->fill;
    size_t total = m_pending_pages * k_page;
    m_remote.clear();
    for (const Pending& p : m_pending) m_remote.push_back({reinterpret_cast<void*>(p.addr), p.pages * k_page});
    iovec local{base, total};
    auto t0 = std::chrono::steady_clock::now();
    ssize_t got = ::process_vm_readv(m_pid, &local, 1, m_remote.data(), m_remote.size(), 0);
    size_t have = got > 0 ? static_cast<size_t>(got) : 0;
    size_t off = 0;
    for (Pending& p : m_pending) {
        size_t len = p.pages * k_page;
        p.valid = p.pages;
        if (off + len > have) {
            size_t done = have > off ? have - off : 0;
            done += CR_TRY(read(base + off + done, p.addr + done, len - done));
            p.valid = done / k_page;
        }
        off += len;
    }
    m_times.read += seconds_since(t0);
    size_t kept = 0;
    off = 0;
    for (const Pending& p : m_pending) {
        uint64_t run_start = 0, run_pages = 0;
        for (uint64_t i = 0; i < p.pages; ++i, off += k_page) {
            if (i >= p.valid) {
                ++m_gone;  // unmapped while the task ran on: not part of this image
                continue;
            }
            uint8_t* page = base + off;
            if (!p.keep_zero && page_is_zero(page)) {
                ++m_zero;
                continue;
            }
            if (kept * k_page != off) std::memmove(base + kept * k_page, page, k_page);
            uint64_t va = p.addr + i * k_page;
            if (i == 0 && p.first) {
                // A range never continues the run before it: runs stay inside one mapping.
                if (run_pages) add_run(run_start, run_pages);
                run_pages = 0;
                m_split = true;
            }
            if (run_pages && run_start + run_pages * k_page == va) {
                ++run_pages;
            } else {
                if (run_pages) add_run(run_start, run_pages);
                run_start = va;
                run_pages = 1;
            }
            ++kept;
        }
        if (run_pages) add_run(run_start, run_pages);
    }
    m_pending.clear();
    m_pending_pages = 0;
    m_current->fill += kept * k_page;
    if (m_current->fill == k_buffer_size) CR_TRY(submit());
    return {};
}

Result<void> PageCopier::finish() {
    if (m_current) CR_TRY(flush_reads());
    CR_TRY(submit());
    stop();
    std::lock_guard g(m_lock);
    if (!m_write_error.empty()) return Error(m_write_error);
    return {};
}

}  // namespace cr::memory
