#include "increment.hpp"
#include "memory.hpp"
#include "shared_pages.hpp"

#include <cr/sdk/image.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <sstream>

namespace cr::memory {

namespace {

constexpr uint64_t k_pm_present = 1ULL << 63;
constexpr uint64_t k_pm_swapped = 1ULL << 62;
constexpr uint64_t k_pm_file = 1ULL << 61;

// Whether a page of this mapping holds data that only the image can bring back.
bool wanted(img::VmaKind kind, uint64_t pm) {
    if (kind == img::VmaKind::File) return (pm & k_pm_swapped) || ((pm & k_pm_present) && !(pm & k_pm_file));
    return (pm & (k_pm_present | k_pm_swapped)) != 0;
}

// The pages of the spans that hold data, as ranges to copy (pagemap read once per span).
Result<void> plan_pages(pid_t pid, const VmaRecord& r, int pagemap, const std::vector<Span>& spans,
                        std::vector<uint64_t>& pm, std::vector<CopyRange>& out) {
    bool keep_zero = r.kind == img::VmaKind::File;  // a zero page there differs from the file's
    for (const Span& sp : spans) {
        uint64_t pages = (sp.end - sp.start) / k_page;
        pm.resize(pages);
        ssize_t want = static_cast<ssize_t>(pages * 8);
        if (::pread(pagemap, pm.data(), static_cast<size_t>(want), static_cast<off_t>(sp.start / k_page * 8)) != want)
            return Error::from_errno(strf("pid %d: read of pagemap for 0x%lx-0x%lx", pid, sp.start, sp.end));
        for (uint64_t i = 0; i < pages;) {
            if (!wanted(r.kind, pm[i])) {
                ++i;
                continue;
            }
            uint64_t j = i;
            while (j < pages && wanted(r.kind, pm[j])) ++j;
            out.push_back({sp.start + i * k_page, j - i, keep_zero});
            i = j;
        }
    }
    return {};
}

Result<MmRecord> read_mm(sdk::Context& ctx, pid_t pid) {
    MmRecord mm;
    std::string stat = CR_TRY(read_text(strf("/proc/%d/stat", pid)));
    size_t close = stat.rfind(')');
    if (close == std::string::npos) return Error(strf("pid %d: cannot parse /proc/%d/stat", pid, pid));
    std::istringstream in(stat.substr(close + 2));
    std::vector<std::string> f;  // f[0] is field 3 (state)
    for (std::string w; in >> w;) f.push_back(w);
    if (f.size() < 49) return Error(strf("pid %d: /proc/%d/stat has too few fields", pid, pid));
    auto field = [&](int n) { return std::stoull(f[static_cast<size_t>(n - 3)]); };
    mm.start_code = field(26);
    mm.end_code = field(27);
    mm.start_stack = field(28);
    mm.start_data = field(45);
    mm.end_data = field(46);
    mm.start_brk = field(47);
    mm.arg_start = field(48);
    mm.arg_end = field(49);
    mm.env_start = field(50);
    mm.env_end = field(51);
    mm.brk = static_cast<uint64_t>(CR_TRY(ctx.remote(pid, SYS_brk, "brk", {0})));
    std::string auxv = CR_TRY(read_text(strf("/proc/%d/auxv", pid)));
    mm.auxv.resize(auxv.size() / 8);
    std::memcpy(mm.auxv.data(), auxv.data(), mm.auxv.size() * 8);
    char exe[4096];
    ssize_t n = ::readlink(strf("/proc/%d/exe", pid).c_str(), exe, sizeof exe - 1);
    if (n > 0) mm.exe_path.assign(exe, static_cast<size_t>(n));
    return mm;
}

Result<void> check_file(pid_t pid, VmaRecord& r) {
    const Mapping& m = r.map;
    const char* deleted = " (deleted)";
    if (m.path.size() > std::strlen(deleted) && m.path.compare(m.path.size() - std::strlen(deleted), std::string::npos, deleted) == 0)
        return Error(strf("pid %d: mapping 0x%lx-0x%lx of deleted file %s: mappings of deleted files are not supported yet",
                          pid, m.start, m.end, m.path.c_str()));
    if (m.path.empty() || m.path[0] != '/')
        return Error(strf("pid %d: mapping 0x%lx-0x%lx of %s: this kind of mapping is not supported", pid, m.start,
                          m.end, m.path.c_str()));
    struct stat st{};
    if (::stat(m.path.c_str(), &st) != 0) return Error::from_errno(strf("pid %d: stat of mapped file", pid), m.path);
    if (st.st_ino != m.ino)
        return Error(strf("pid %d: mapped file %s was replaced on disk since it was mapped (inode %lu, now %lu)", pid,
                          m.path.c_str(), m.ino, static_cast<uint64_t>(st.st_ino)));
    r.file_size = static_cast<uint64_t>(st.st_size);
    r.file_mtime_ns = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000ULL + static_cast<uint64_t>(st.st_mtim.tv_nsec);
    return {};
}

uint32_t map_flags(const Mapping& m) {
    return static_cast<uint32_t>((m.shared ? MAP_SHARED : MAP_PRIVATE) | (m.has_flag("gd") ? MAP_GROWSDOWN : 0));
}

}  // namespace

Result<void> MemoryHandler::load_parent(const sdk::Context& ctx) {
    if (m_parent_loaded) return {};
    m_parent_loaded = true;
    if (ctx.parent_count() == 0) return {};
    m_parent = CR_TRY(sdk::read_parent_section_as<img::MemoryImage>(ctx, 1, "memory.cr", img::MemoryImageIdentifier(),
                                                                    &img::VerifyMemoryImageBuffer));
    if (m_parent->tasks())
        for (const img::TaskMemory* tm : *m_parent->tasks())
            if (tm->tracker_fd() >= 0) m_tracker_inos.push_back(tm->tracker_ino());
    return {};
}

// Copies the planned ranges into the task's page file; gone_ok while the task runs on.
Result<void> MemoryHandler::copy_pages(const sdk::Context& ctx, TaskDump& td, bool gone_ok) {
    auto t0 = std::chrono::steady_clock::now();
    PageCopier copier(ctx, td.pid, td.mem.get(), td.out.get(), td.pages_file, gone_ok);
    for (const CopyRange& r : td.copies) CR_TRY(copier.copy(r));
    CR_TRY(copier.finish());
    auto times = copier.times();
    td.runs = std::move(copier.runs());
    td.pages_dumped = copier.pages_written();
    td.pages_zero = copier.pages_zero();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gib = static_cast<double>(td.pages_dumped + td.pages_zero) * k_page / (1 << 30);
    ctx.debug(strf("pid %d: %.1f MiB read in %.3f s (%.2f GiB/s), %lu pages written, %lu zero, %lu unmapped meanwhile; "
                   "reading %.3f s, waiting for a free buffer %.3f s; writer thread %.3f s, hasher thread %.3f s",
                   td.pid, gib * 1024, s, s > 0 ? gib / s : 0.0, td.pages_dumped, td.pages_zero, copier.pages_gone(),
                   times.read, times.wait, times.write, times.hash));
    td.copies.clear();
    td.mem.reset();
    td.out.reset();
    return {};
}

Result<void> MemoryHandler::dump_task(sdk::Context& ctx, pid_t pid) {
    auto t0 = std::chrono::steady_clock::now();
    CR_TRY(load_parent(ctx));
    bool pre_dump = ctx.flag("pre-dump");
    TaskDump td;
    td.pid = pid;
    td.pages_file = strf("pages-%d.img", pid);
    td.start_time = CR_TRY(start_time_of(pid));
    auto maps = CR_TRY(read_mappings(pid, true));
    auto reserved = CR_TRY(ctx.stub_reserved(pid));
    UniqueFd pagemap(::open(strf("/proc/%d/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!pagemap) return Error::from_errno(strf("pid %d: open of pagemap", pid));
    td.mem.reset(::open(strf("/proc/%d/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!td.mem) return Error::from_errno(strf("pid %d: open of /proc/%d/mem", pid, pid));
    td.out = CR_TRY(ctx.open_image_file(td.pages_file, true));
    auto inc = CR_TRY(TaskIncrement::begin(ctx, m_parent, pid, td.start_time, pre_dump));
    std::vector<uint64_t> pm;
    for (const Mapping& m : maps) {
        if (reserved.start < m.end && m.start < reserved.end) continue;  // cr's own scratch memory
        VmaRecord r{m, classify(m)};
        if (r.kind == img::VmaKind::Vsyscall) continue;
        if (m.path.rfind("/SYSV", 0) == 0)
            return Error(strf("pid %d: mapping 0x%lx-0x%lx of System V shared memory segment %s: System V IPC "
                              "is not supported (restored as plain shared memory it would lose its key and id)",
                              pid, m.start, m.end, m.path.c_str()));
        if (r.kind == img::VmaKind::File && is_unlinked(m)) {
            if (!pre_dump) r.unlinked = CR_TRY(m_unlinked.describe(ctx, pid, m));
        } else if (r.kind == img::VmaKind::File) {
            CR_TRY(check_file(pid, r));
        }
        bool has_pages = !is_special(r.kind) && !(r.kind == img::VmaKind::File && m.shared);
        if (has_pages && r.kind == img::VmaKind::SharedAnon)
            CR_TRY(plan_shared_pages(pid, r, CR_TRY(inc.dirty(pagemap.get(), r)), m_shared_seen, td.copies));
        else if (has_pages)
            CR_TRY(plan_pages(pid, r, pagemap.get(), CR_TRY(inc.dirty(pagemap.get(), r)), pm, td.copies));
        td.vmas.push_back(std::move(r));
    }
    td.mm = CR_TRY(read_mm(ctx, pid));
    CR_TRY(inc.finish(ctx, td, m_tracker_inos));
    uint64_t planned = 0;
    for (const CopyRange& r : td.copies) planned += r.pages;
    ctx.debug(strf("pid %d: %zu mappings, %lu pages to copy in %zu ranges, %lu pages in earlier images; found in %.3f s",
                   pid, td.vmas.size(), planned, td.copies.size(), td.pages_parent,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
    if (!pre_dump) CR_TRY(copy_pages(ctx, td, false));
    ctx.info(strf("pid %d: %zu mappings, %lu pages written, %lu zero pages skipped, %lu pages in earlier images", pid,
                  td.vmas.size(), td.pages_dumped, td.pages_zero, td.pages_parent));
    m_dumped.push_back(std::move(td));
    return {};
}

Result<void> MemoryHandler::dump_fd(sdk::Context&, const cr_fd_info* fd) {
    // Trackers of cr's own were closed and left out by dump_task; this one is the program's.
    return Error(strf("pid %d fd %d: userfaultfd: not supported (cr.memory.vma dumps no userfaultfd of a program; "
                      "one left by cr pre-dump goes away with cr dump --prev-images-dir)", fd->pid, fd->fd));
}

Result<void> MemoryHandler::dump_finish(sdk::Context& ctx) {
    if (ctx.flag("pre-dump"))
        for (TaskDump& td : m_dumped) CR_TRY(copy_pages(ctx, td, true));
    flatbuffers::FlatBufferBuilder fbb(1 << 16);
    std::vector<flatbuffers::Offset<img::TaskMemory>> tasks;
    for (const TaskDump& td : m_dumped) {
        std::vector<flatbuffers::Offset<img::Vma>> vmas;
        for (const VmaRecord& r : td.vmas) {
            const Mapping& m = r.map;
            vmas.push_back(img::CreateVma(fbb, m.start, m.end, static_cast<uint32_t>(m.prot),
                                          map_flags(m), r.kind, m.offset,
                                          fbb.CreateString(m.path), m.dev, m.ino, m.has_flag("mw"),
                                          r.kind == img::VmaKind::SharedAnon ? m.ino : 0, r.file_size,
                                          r.file_mtime_ns, fbb.CreateString(m.vmflags), r.unlinked.holder_pid,
                                          r.unlinked.holder_fd, r.unlinked.unlinked));
        }
        const MmRecord& mm = td.mm;
        auto mmf = img::CreateMmFields(fbb, mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_brk,
                                       mm.brk, mm.start_stack, mm.arg_start, mm.arg_end, mm.env_start, mm.env_end,
                                       fbb.CreateVector(mm.auxv), fbb.CreateString(mm.exe_path));
        std::vector<img::PageRun> runs;
        runs.reserve(td.runs.size());
        for (const Run& r : td.runs) runs.emplace_back(r.vaddr, r.count, r.offset);
        std::vector<img::ParentRun> parent_runs;
        parent_runs.reserve(td.parent_runs.size());
        for (const ParentRunRecord& r : td.parent_runs) parent_runs.emplace_back(r.vaddr, r.count, r.offset, r.depth);
        tasks.push_back(img::CreateTaskMemory(
            fbb, td.pid, fbb.CreateVector(vmas), fbb.CreateVectorOfStructs(runs), fbb.CreateString(td.pages_file), mmf,
            td.pages_dumped, td.pages_zero, fbb.CreateVectorOfStructs(parent_runs),
            fbb.CreateVectorOfStrings(td.parent_files), td.tracker_fd, td.tracker_ino, td.start_time, td.pages_parent));
    }
    auto unlinked = m_unlinked.build(fbb);
    fbb.Finish(img::CreateMemoryImage(fbb, fbb.CreateVector(tasks), unlinked), img::MemoryImageIdentifier());
    return sdk::write_section(ctx, "memory.cr", fbb);
}

}  // namespace cr::memory
