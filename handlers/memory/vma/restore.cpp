#include "memory.hpp"

#include <cr/sdk/image.hpp>

#include <fcntl.h>
#include <linux/prctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

namespace cr::memory {

namespace {

constexpr uint64_t k_user_top = 1ULL << 47;
constexpr uint64_t k_iov_area = 0;           // scratch offsets
constexpr uint64_t k_iov_max = 1024;         // iovecs per preadv
constexpr uint64_t k_batch_max = 1ULL << 30;  // bytes per preadv
constexpr uint64_t k_path_area = 16 * 1024;  // 4 KiB for a path
constexpr uint64_t k_mm_area = 20 * 1024;    // prctl_mm_map + auxv

bool aligned(uint64_t v) { return v % k_page == 0; }

// Remote calls into one stub, with paths and structures passed through its scratch memory.
class Remote {
public:
    Remote(sdk::Context& ctx, pid_t pid, sdk::Context::Scratch scratch) : m_ctx(ctx), m_pid(pid), m_scratch(scratch) {}

    Result<int64_t> call(long nr, const char* what, std::array<uint64_t, 6> args) {
        return m_ctx.remote(m_pid, nr, what, args);
    }
    Result<int> open(const std::string& path, int flags) {
        if (path.size() + 1 > 4096) return Error(strf("pid %d: path too long: %s", m_pid, path.c_str()));
        CR_TRY(m_ctx.mem_write(m_pid, m_scratch.addr + k_path_area, path.c_str(), path.size() + 1));
        int64_t fd = CR_TRY(m_ctx.remote(m_pid, SYS_openat, ("open of " + path).c_str(),
                                         {static_cast<uint64_t>(AT_FDCWD), m_scratch.addr + k_path_area,
                                          static_cast<uint64_t>(flags | O_CLOEXEC), 0}));
        return static_cast<int>(fd);
    }
    // An fd of cr's, opened anew inside the stub through /proc.
    Result<int> open_ours(int fd, int flags) { return open(strf("/proc/%d/fd/%d", ::getpid(), fd), flags); }
    Result<void> close(int fd) {
        CR_TRY(call(SYS_close, "close", {static_cast<uint64_t>(fd)}));
        return {};
    }
    Result<void> write(uint64_t offset, const void* data, size_t size) {
        return m_ctx.mem_write(m_pid, m_scratch.addr + offset, data, size);
    }
    [[nodiscard]] uint64_t addr(uint64_t offset) const { return m_scratch.addr + offset; }

private:
    sdk::Context& m_ctx;
    pid_t m_pid;
    sdk::Context::Scratch m_scratch;
};

std::vector<const img::Vma*> specials(const img::TaskMemory& tm) {
    std::vector<const img::Vma*> out;
    for (const img::Vma* v : *tm.vmas())
        if (is_special(v->kind()) && v->kind() != img::VmaKind::Vsyscall) out.push_back(v);
    std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->start() < b->start(); });
    return out;
}

// Moves the stub's vvar/vvar_vclock/vdso block to where the dumped task had it.
Result<void> move_vdso(Remote& rm, pid_t pid, const img::TaskMemory& tm, const std::vector<Mapping>& stub) {
    auto want = specials(tm);
    std::vector<const Mapping*> have;
    for (const Mapping& m : stub) {
        auto k = classify(m);
        if (is_special(k) && k != img::VmaKind::Vsyscall) have.push_back(&m);
    }
    auto describe = [](auto& list, auto name, auto size) {
        std::string s;
        for (auto* e : list) s += strf("%s%s:%lu", s.empty() ? "" : " ", name(e), size(e) / k_page);
        return s;
    };
    bool same = want.size() == have.size();
    for (size_t i = 0; same && i < want.size(); ++i)
        same = classify(*have[i]) == want[i]->kind() && have[i]->end - have[i]->start == want[i]->end() - want[i]->start();
    if (!same)
        return Error(strf("pid %d: this kernel's vdso layout (%s) differs from the dumped one (%s); restore on a "
                          "kernel like the one the image was made on", pid,
                          describe(have, [](const Mapping* m) { return m->path.c_str(); }, [](const Mapping* m) { return m->end - m->start; }).c_str(),
                          describe(want, [](const img::Vma* v) { return img::EnumNameVmaKind(v->kind()); }, [](const img::Vma* v) { return v->end() - v->start(); }).c_str()));
    if (want.empty() || have.front()->start == want.front()->start()) return {};
    uint64_t from = have.front()->start, to = want.front()->start();
    uint64_t size = have.back()->end - from;
    // Overlapping moves go through a free spot first (everything else is unmapped by now).
    auto overlaps = [&](uint64_t a, uint64_t b) { return a < b + size && b < a + size; };
    uint64_t temp = 0x100000000000ULL;
    while (overlaps(temp, from) || overlaps(temp, to)) temp += 0x10000000000ULL;
    std::vector<uint64_t> steps = overlaps(from, to) ? std::vector<uint64_t>{temp, to} : std::vector<uint64_t>{to};
    for (uint64_t base : steps) {
        for (const Mapping* m : have) {
            uint64_t len = m->end - m->start;
            uint64_t src = from + (m->start - have.front()->start);
            uint64_t dst = base + (m->start - have.front()->start);
            CR_TRY(rm.call(SYS_mremap, ("mremap of " + m->path).c_str(),
                           {src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst}));
        }
        from = base;
    }
    return {};
}

// Unmaps everything of the stub but the core's reserved range and the vdso block.
Result<void> clear_stub(Remote& rm, const std::vector<Mapping>& stub, sdk::Context::Range reserved) {
    std::vector<std::pair<uint64_t, uint64_t>> drop;
    for (const Mapping& m : stub) {
        if (is_special(classify(m))) continue;
        if (m.start < reserved.end && reserved.start < m.end) continue;
        if (!drop.empty() && drop.back().second == m.start) drop.back().second = m.end;
        else drop.emplace_back(m.start, m.end);
    }
    for (auto [s, e] : drop) CR_TRY(rm.call(SYS_munmap, "munmap", {s, e - s}));
    return {};
}

bool has_runs(const img::TaskMemory& tm, const img::Vma& v) {
    const auto* runs = tm.runs();
    auto it = std::lower_bound(runs->begin(), runs->end(), v.start(),
                               [](const img::PageRun* r, uint64_t a) { return r->vaddr() + r->count() * k_page <= a; });
    if (it != runs->end() && it->vaddr() < v.end()) return true;
    if (const auto* older = tm.parent_runs())
        for (const img::ParentRun* r : *older)
            if (r->vaddr() < v.end() && v.start() < r->vaddr() + r->count() * k_page) return true;
    return false;
}

// Pages kept in earlier images of the chain: read by cr and written into the task with
// process_vm_writev, many runs per call (those files are cut by holes, so a preadv per
// contiguous piece would cost a remote call each).
Result<void> fill_parent_pages(sdk::Context& ctx, pid_t pid, const img::TaskMemory& tm) {
    const auto* older = tm.parent_runs();
    if (!older || older->size() == 0) return {};
    std::vector<const img::ParentRun*> runs(older->begin(), older->end());
    std::sort(runs.begin(), runs.end(), [](auto* a, auto* b) {
        return a->depth() != b->depth() ? a->depth() < b->depth() : a->offset() < b->offset();
    });
    constexpr size_t k_buf = 4 << 20;
    std::vector<uint8_t> buf(k_buf);
    std::vector<iovec> local, remote;
    size_t fill = 0;
    auto flush = [&]() -> Result<void> {
        if (local.empty()) return {};
        ssize_t n = ::process_vm_writev(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
        if (n != static_cast<ssize_t>(fill))
            return Error::from_errno(strf("pid %d: process_vm_writev of %zu bytes of earlier images", pid, fill));
        local.clear();
        remote.clear();
        fill = 0;
        return {};
    };
    UniqueFd file;
    uint64_t depth = 0;
    for (const img::ParentRun* r : runs) {
        if (r->depth() != depth) {
            CR_TRY(flush());
            depth = r->depth();
            std::string name = tm.parent_pages_files()->Get(static_cast<flatbuffers::uoffset_t>(depth - 1))->str();
            file = CR_TRY(ctx.open_parent_file(static_cast<uint32_t>(depth), name));
        }
        uint64_t done = 0, len = r->count() * k_page;
        while (done < len) {
            if (fill == k_buf || local.size() == 1024) CR_TRY(flush());
            size_t n = std::min<uint64_t>(len - done, k_buf - fill);
            if (::pread(file.get(), buf.data() + fill, n, static_cast<off_t>(r->offset() + done)) != static_cast<ssize_t>(n))
                return Error::from_errno(strf("pid %d: read of earlier image %lu at offset %lu", pid, depth, r->offset() + done));
            local.push_back({buf.data() + fill, n});
            remote.push_back({reinterpret_cast<void*>(r->vaddr() + done), n});
            fill += n;
            done += n;
        }
    }
    return flush();
}

// One preadv per batch of runs, straight from the page file into the task's memory.
Result<void> fill_pages(sdk::Context& ctx, Remote& rm, const img::TaskMemory& tm) {
    if (tm.runs()->size() == 0) return {};
    UniqueFd pages = CR_TRY(ctx.open_image_file(tm.pages_file()->str(), false));
    int fd = CR_TRY(rm.open_ours(pages.get(), O_RDONLY));
    std::vector<iovec> iov;
    uint64_t batch_offset = 0, batch_bytes = 0;
    auto flush = [&]() -> Result<void> {
        if (iov.empty()) return {};
        CR_TRY(rm.write(k_iov_area, iov.data(), iov.size() * sizeof(iovec)));
        int64_t n = CR_TRY(rm.call(SYS_preadv, "preadv of page contents",
                                   {static_cast<uint64_t>(fd), rm.addr(k_iov_area), iov.size(), batch_offset, 0}));
        if (static_cast<uint64_t>(n) != batch_bytes)
            return Error(strf("short read of page contents: %ld of %lu bytes", static_cast<long>(n), batch_bytes));
        iov.clear();
        batch_bytes = 0;
        return {};
    };
    // Runs inside shared anonymous memory were placed in its memfd already.
    std::vector<std::pair<uint64_t, uint64_t>> shared;
    for (const img::Vma* v : *tm.vmas())
        if (v->kind() == img::VmaKind::SharedAnon) shared.emplace_back(v->start(), v->end());
    for (const img::PageRun* r : *tm.runs()) {
        bool in_shared = std::any_of(shared.begin(), shared.end(), [&](auto& s) { return r->vaddr() >= s.first && r->vaddr() < s.second; });
        if (in_shared || (!iov.empty() && batch_offset + batch_bytes != r->offset())) CR_TRY(flush());
        if (in_shared) continue;
        // A read moves at most about 2 GiB: larger runs go in pieces.
        for (uint64_t done = 0, len = r->count() * k_page; done < len;) {
            if (iov.size() == k_iov_max || batch_bytes == k_batch_max) CR_TRY(flush());
            if (iov.empty()) batch_offset = r->offset() + done;
            uint64_t n = std::min(len - done, k_batch_max - batch_bytes);
            iov.push_back({reinterpret_cast<void*>(r->vaddr() + done), n});
            batch_bytes += n;
            done += n;
        }
    }
    CR_TRY(flush());
    return rm.close(fd);
}

Result<void> set_mm(Remote& rm, const img::TaskMemory& tm, const std::string& exe_path) {
    const img::MmFields* mm = tm.mm();
    prctl_mm_map map{};
    map.start_code = mm->start_code();
    map.end_code = mm->end_code();
    map.start_data = mm->start_data();
    map.end_data = mm->end_data();
    map.start_brk = mm->start_brk();
    map.brk = mm->brk();
    map.start_stack = mm->start_stack();
    map.arg_start = mm->arg_start();
    map.arg_end = mm->arg_end();
    map.env_start = mm->env_start();
    map.env_end = mm->env_end();
    std::vector<uint64_t> auxv;
    if (mm->auxv()) auxv.assign(mm->auxv()->begin(), mm->auxv()->end());
    if (auxv.size() * 8 > 1024) return Error(strf("memory.cr: pid %d: auxv too long", tm.pid()));
    map.auxv = reinterpret_cast<__u64*>(rm.addr(k_mm_area + sizeof map));
    map.auxv_size = static_cast<__u32>(auxv.size() * 8);
    int exe = -1;
    if (!exe_path.empty()) exe = CR_TRY(rm.open(exe_path, O_RDONLY));
    map.exe_fd = static_cast<__u32>(exe);
    CR_TRY(rm.write(k_mm_area, &map, sizeof map));
    if (!auxv.empty()) CR_TRY(rm.write(k_mm_area + sizeof map, auxv.data(), auxv.size() * 8));
    CR_TRY(rm.call(SYS_prctl, "prctl(PR_SET_MM_MAP)", {PR_SET_MM, PR_SET_MM_MAP, rm.addr(k_mm_area), sizeof map, 0}));
    if (exe >= 0) CR_TRY(rm.close(exe));
    return {};
}

// MADV_HUGEPAGE or MADV_NOHUGEPAGE when the mapping had one (VmFlags "hg", "nh"), else -1.
int huge_page_advice(const img::Vma& v) {
    Mapping m;
    m.vmflags = v.vmflags() ? v.vmflags()->str() : "";
    if (m.has_flag("hg")) return MADV_HUGEPAGE;
    if (m.has_flag("nh")) return MADV_NOHUGEPAGE;
    return -1;
}

// Every run kept in an earlier image names an image of the chain and lies inside its file.
Result<void> check_parent_runs(sdk::Context& ctx, const img::TaskMemory& tm) {
    const auto* older = tm.parent_runs();
    if (!older || older->size() == 0) return {};
    const auto* files = tm.parent_pages_files();
    size_t chain = files ? files->size() : 0;
    if (chain > ctx.parent_count())
        return Error(strf("memory.cr: pid %d: pages in %zu earlier images, but the chain of images has %zu", tm.pid(),
                          chain, ctx.parent_count()));
    std::vector<uint64_t> sizes;
    for (size_t d = 0; d < chain; ++d) {
        std::string name = files->Get(static_cast<flatbuffers::uoffset_t>(d))->str();
        if (name.empty() || name.find('/') != std::string::npos)
            return Error(strf("memory.cr: pid %d: bad page file name of earlier image %zu", tm.pid(), d + 1));
        UniqueFd fd = CR_TRY(ctx.open_parent_file(static_cast<uint32_t>(d + 1), name));
        struct stat st{};
        if (::fstat(fd.get(), &st) != 0) return Error::from_errno("memory.cr: stat of an earlier page file", name);
        sizes.push_back(static_cast<uint64_t>(st.st_size));
    }
    for (const img::ParentRun* r : *older) {
        if (!aligned(r->vaddr()) || r->count() == 0 || r->count() > k_user_top / k_page || r->depth() == 0 ||
            r->depth() > chain || r->offset() % k_page || r->offset() + r->count() * k_page > sizes[r->depth() - 1])
            return Error(strf("memory.cr: pid %d: bad run at 0x%lx in earlier image %lu", tm.pid(), r->vaddr(),
                              r->depth()));
    }
    return {};
}

}  // namespace

Result<void> MemoryHandler::prepare(sdk::Context& ctx) {
    m_image = CR_TRY(sdk::read_section_as<img::MemoryImage>(ctx, "memory.cr", img::MemoryImageIdentifier(),
                                                            &img::VerifyMemoryImageBuffer));
    if (!m_image->tasks()) return Error("memory.cr: no tasks");
    for (const img::TaskMemory* tm : *m_image->tasks()) {
        if (!tm->vmas() || !tm->runs() || !tm->pages_file() || !tm->mm())
            return Error(strf("memory.cr: pid %d: incomplete record", tm->pid()));
        std::string pf = tm->pages_file()->str();
        if (pf.empty() || pf.find('/') != std::string::npos || pf == "." || pf == "..")
            return Error(strf("memory.cr: pid %d: bad page file name", tm->pid()));
        uint64_t prev_end = 0;
        for (const img::Vma* v : *tm->vmas()) {
            if (!aligned(v->start()) || !aligned(v->end()) || v->start() >= v->end() || v->end() > k_user_top ||
                v->start() < prev_end)
                return Error(strf("memory.cr: pid %d: bad mapping 0x%lx-0x%lx", tm->pid(), v->start(), v->end()));
            prev_end = v->end();
            if (v->kind() == img::VmaKind::File && !UnlinkedFiles::is_unlinked(*v) && !ctx.flag("skip-file-check")) {
                std::string path = v->path() ? v->path()->str() : "";
                struct stat st{};
                if (::stat(path.c_str(), &st) != 0)
                    return Error::from_errno("memory.cr: mapped file", path);
                uint64_t mtime = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ULL + static_cast<uint64_t>(st.st_mtim.tv_nsec);
                if (static_cast<uint64_t>(st.st_size) != v->file_size() || mtime != v->file_mtime_ns())
                    return Error(strf("memory.cr: mapped file %s changed since the dump (size %lu -> %lu); use "
                                      "--skip-file-check to restore anyway", path.c_str(), v->file_size(),
                                      static_cast<uint64_t>(st.st_size)));
            }
        }
        UniqueFd pages = CR_TRY(ctx.open_image_file(pf, false));
        struct stat st{};
        if (::fstat(pages.get(), &st) != 0) return Error::from_errno("memory.cr: stat", pf);
        uint64_t expect = 0;
        for (const img::PageRun* r : *tm->runs()) {
            if (!aligned(r->vaddr()) || r->count() == 0 || r->count() > k_user_top / k_page || r->offset() != expect)
                return Error(strf("memory.cr: pid %d: bad page run at 0x%lx", tm->pid(), r->vaddr()));
            expect += r->count() * k_page;
        }
        if (expect != static_cast<uint64_t>(st.st_size))
            return Error(strf("memory.cr: pid %d: %s holds %lu bytes, the runs need %lu", tm->pid(), pf.c_str(),
                              static_cast<uint64_t>(st.st_size), expect));
        CR_TRY(check_parent_runs(ctx, *tm));
        CR_TRY(fill_shared(tm, pages.get()));
    }
    CR_TRY(m_unlinked.prepare(ctx, *m_image));
    return {};
}

// Shared anonymous memory becomes a memfd, filled once here and mapped by every task using it.
Result<void> MemoryHandler::fill_shared(const img::TaskMemory* tm, int pages) {
    for (const img::Vma* v : *tm->vmas()) {
        if (v->kind() != img::VmaKind::SharedAnon) continue;
        UniqueFd& fd = m_shmem[v->shmem_id()];
        if (!fd) {
            fd.reset(::memfd_create("cr-shared-anon", MFD_CLOEXEC));
            if (!fd) return Error::from_errno("memfd_create");
        }
        struct stat st{};
        ::fstat(fd.get(), &st);
        uint64_t need = v->pgoff() + (v->end() - v->start());
        if (need > static_cast<uint64_t>(st.st_size) && ::ftruncate(fd.get(), static_cast<off_t>(need)) != 0)
            return Error::from_errno("ftruncate of shared memory");
        std::vector<uint8_t> buf;
        for (const img::PageRun* r : *tm->runs()) {
            // Runs of images written before runs stopped at mappings may start before this one.
            uint64_t lo = std::max(r->vaddr(), v->start()), hi = std::min(r->vaddr() + r->count() * k_page, v->end());
            if (lo >= hi) continue;
            uint64_t len = hi - lo;
            buf.resize(len);
            if (::pread(pages, buf.data(), len, static_cast<off_t>(r->offset() + (lo - r->vaddr()))) !=
                    static_cast<ssize_t>(len) ||
                ::pwrite(fd.get(), buf.data(), len, static_cast<off_t>(v->pgoff() + (lo - v->start()))) !=
                    static_cast<ssize_t>(len))
                return Error::from_errno(strf("pid %d: copy of shared memory at 0x%lx", tm->pid(), r->vaddr()));
        }
    }
    return {};
}

Result<void> MemoryHandler::restore_task(sdk::Context& ctx, pid_t pid) {
    const img::TaskMemory* tm = nullptr;
    for (const img::TaskMemory* t : *m_image->tasks())
        if (t->pid() == pid) tm = t;
    if (!tm) return Error(strf("memory.cr: no record of pid %d", pid));
    auto reserved = CR_TRY(ctx.stub_reserved(pid));
    auto scratch = CR_TRY(ctx.scratch(pid));
    Remote rm(ctx, pid, scratch);

    auto stub = CR_TRY(read_mappings(pid, false));
    CR_TRY(clear_stub(rm, stub, reserved));
    CR_TRY(move_vdso(rm, pid, *tm, stub));

    std::map<std::string, int> files;  // path -> fd in the stub
    std::vector<const img::Vma*> reprotect;
    for (const img::Vma* v : *tm->vmas()) {
        if (is_special(v->kind())) continue;
        if (v->start() < reserved.end && reserved.start < v->end())
            return Error(strf("pid %d: mapping 0x%lx-0x%lx overlaps the restore trampoline", pid, v->start(), v->end()));
        uint64_t len = v->end() - v->start();
        bool shared = v->flags() & MAP_SHARED;
        int prot = static_cast<int>(v->prot());
        int map_prot = prot;
        if (!shared && has_runs(*tm, *v)) map_prot |= PROT_WRITE;
        if (map_prot != prot) reprotect.push_back(v);
        uint64_t flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | (v->flags() & MAP_GROWSDOWN);
        int64_t fd = -1;
        if (v->kind() == img::VmaKind::SharedAnon) {
            fd = CR_TRY(rm.open_ours(m_shmem.at(v->shmem_id()).get(), O_RDWR));
        } else if (v->kind() == img::VmaKind::File) {
            std::string path = CR_TRY(m_unlinked.path_for(*v));
            int mode = shared && v->may_write() ? O_RDWR : O_RDONLY;
            std::string key = path + (mode == O_RDWR ? "\n1" : "\n0");
            if (!files.count(key)) files[key] = CR_TRY(rm.open(path, mode));
            fd = files[key];
        } else {
            flags |= MAP_ANONYMOUS;
        }
        int64_t got = CR_TRY(rm.call(SYS_mmap, "mmap", {v->start(), len, static_cast<uint64_t>(map_prot), flags,
                                                        static_cast<uint64_t>(fd), v->pgoff()}));
        if (static_cast<uint64_t>(got) != v->start())
            return Error(strf("pid %d: mmap of 0x%lx landed at 0x%lx", pid, v->start(), static_cast<uint64_t>(got)));
        if (v->kind() == img::VmaKind::SharedAnon) CR_TRY(rm.close(static_cast<int>(fd)));
        // Transparent huge pages as the task had asked for them; pages then arrive 2 MiB a fault.
        if (int advice = huge_page_advice(*v); advice >= 0)
            CR_TRY(rm.call(SYS_madvise, "madvise", {v->start(), len, static_cast<uint64_t>(advice)}));
    }
    for (auto& [key, fd] : files) CR_TRY(rm.close(fd));
    CR_TRY(fill_pages(ctx, rm, *tm));
    CR_TRY(fill_parent_pages(ctx, pid, *tm));
    for (const img::Vma* v : reprotect)
        CR_TRY(rm.call(SYS_mprotect, "mprotect", {v->start(), v->end() - v->start(), v->prot()}));
    CR_TRY(set_mm(rm, *tm, m_unlinked.exe_path_for(*tm)));
    ctx.debug(strf("pid %d: %u mappings, %lu pages restored", pid, tm->vmas()->size(), tm->pages_dumped()));
    return {};
}

}  // namespace cr::memory
