#include "memory.hpp"

#include <cr/sdk/image.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace cr::memory {

namespace {

constexpr uint64_t k_pm_present = 1ULL << 63;
constexpr uint64_t k_pm_swapped = 1ULL << 62;
constexpr uint64_t k_pm_file = 1ULL << 61;
constexpr uint64_t k_chunk_pages = 2048;  // 8 MiB per read from /proc/PID/mem

bool page_is_zero(const uint8_t* p) {
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t acc = 0;
    for (size_t i = 0; i < k_page / 8; i += 8)
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    return acc == 0;
}

// Whether a page of this mapping holds data that only the image can bring back.
bool wanted(img::VmaKind kind, uint64_t pm) {
    if (kind == img::VmaKind::File) return (pm & k_pm_swapped) || ((pm & k_pm_present) && !(pm & k_pm_file));
    return (pm & (k_pm_present | k_pm_swapped)) != 0;
}

class PageWriter {
public:
    PageWriter(pid_t pid, int mem, int out, TaskDump& td) : m_pid(pid), m_mem(mem), m_out(out), m_td(td) {}

    // Reads pages [first, first+count) of the mapping at start and appends the non-zero ones.
    Result<void> copy(uint64_t start, uint64_t count) {
        m_buf.resize(count * k_page);
        uint8_t* buf = m_buf.data();
        size_t total = count * k_page;
        for (size_t done = 0; done < total;) {
            ssize_t n = ::pread(m_mem, buf + done, total - done, static_cast<off_t>(start + done));
            if (n <= 0)
                return Error::from_errno(strf("pid %d: read of memory at 0x%lx", m_pid, start + done), {},
                                         n == 0 ? EIO : errno);
            done += static_cast<size_t>(n);
        }
        size_t kept = 0;
        for (uint64_t i = 0; i < count; ++i) {
            uint8_t* page = buf + i * k_page;
            if (page_is_zero(page)) {
                ++m_td.pages_zero;
                continue;
            }
            if (kept != i) std::memcpy(buf + kept * k_page, page, k_page);
            add_run(start + i * k_page);
            ++kept;
        }
        for (size_t off = 0; off < kept * k_page;) {
            ssize_t n = ::write(m_out, buf + off, kept * k_page - off);
            if (n < 0) return Error::from_errno(strf("pid %d: write of %s", m_pid, m_td.pages_file.c_str()));
            off += static_cast<size_t>(n);
        }
        return {};
    }

private:
    void add_run(uint64_t vaddr) {
        auto& runs = m_td.runs;
        if (!runs.empty()) {
            Run& last = runs.back();
            if (last.vaddr + last.count * k_page == vaddr && last.offset + last.count * k_page == m_offset) {
                ++last.count;
                m_offset += k_page;
                ++m_td.pages_dumped;
                return;
            }
        }
        runs.push_back({vaddr, 1, m_offset});
        m_offset += k_page;
        ++m_td.pages_dumped;
    }

    pid_t m_pid;
    int m_mem;
    int m_out;
    TaskDump& m_td;
    uint64_t m_offset = 0;
    std::vector<uint8_t> m_buf;
};

Result<void> dump_pages(pid_t pid, const VmaRecord& r, int pagemap, PageWriter& writer) {
    const Mapping& m = r.map;
    std::vector<uint64_t> pm(m.pages());
    ssize_t want = static_cast<ssize_t>(pm.size() * 8);
    if (::pread(pagemap, pm.data(), static_cast<size_t>(want), static_cast<off_t>(m.start / k_page * 8)) != want)
        return Error::from_errno(strf("pid %d: read of pagemap for 0x%lx-0x%lx", pid, m.start, m.end));
    for (uint64_t i = 0; i < pm.size();) {
        if (!wanted(r.kind, pm[i])) {
            ++i;
            continue;
        }
        uint64_t j = i;
        while (j < pm.size() && j - i < k_chunk_pages && wanted(r.kind, pm[j])) ++j;
        CR_TRY(writer.copy(m.start + i * k_page, j - i));
        i = j;
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

Result<void> MemoryHandler::dump_task(sdk::Context& ctx, pid_t pid) {
    TaskDump td;
    td.pid = pid;
    td.pages_file = strf("pages-%d.img", pid);
    auto maps = CR_TRY(read_mappings(pid, true));
    auto reserved = CR_TRY(ctx.stub_reserved(pid));
    UniqueFd pagemap(::open(strf("/proc/%d/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!pagemap) return Error::from_errno(strf("pid %d: open of pagemap", pid));
    UniqueFd mem(::open(strf("/proc/%d/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem) return Error::from_errno(strf("pid %d: open of /proc/%d/mem", pid, pid));
    UniqueFd out = CR_TRY(ctx.open_image_file(td.pages_file, true));
    PageWriter writer(pid, mem.get(), out.get(), td);
    for (const Mapping& m : maps) {
        if (reserved.start < m.end && m.start < reserved.end) continue;  // cr's own scratch memory
        VmaRecord r{m, classify(m)};
        if (r.kind == img::VmaKind::Vsyscall) continue;
        if (r.kind == img::VmaKind::File) CR_TRY(check_file(pid, r));
        bool has_pages = !is_special(r.kind) && !(r.kind == img::VmaKind::File && m.shared);
        if (has_pages) CR_TRY(dump_pages(pid, r, pagemap.get(), writer));
        td.vmas.push_back(std::move(r));
    }
    td.mm = CR_TRY(read_mm(ctx, pid));
    ctx.info(strf("pid %d: %zu mappings, %lu pages written, %lu zero pages skipped", pid, td.vmas.size(),
                  td.pages_dumped, td.pages_zero));
    m_dumped.push_back(std::move(td));
    return {};
}

Result<void> MemoryHandler::dump_finish(sdk::Context& ctx) {
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
                                          r.file_mtime_ns, fbb.CreateString(m.vmflags)));
        }
        const MmRecord& mm = td.mm;
        auto mmf = img::CreateMmFields(fbb, mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_brk,
                                       mm.brk, mm.start_stack, mm.arg_start, mm.arg_end, mm.env_start, mm.env_end,
                                       fbb.CreateVector(mm.auxv), fbb.CreateString(mm.exe_path));
        std::vector<img::PageRun> runs;
        runs.reserve(td.runs.size());
        for (const Run& r : td.runs) runs.emplace_back(r.vaddr, r.count, r.offset);
        tasks.push_back(img::CreateTaskMemory(fbb, td.pid, fbb.CreateVector(vmas), fbb.CreateVectorOfStructs(runs),
                                              fbb.CreateString(td.pages_file), mmf, td.pages_dumped, td.pages_zero));
    }
    fbb.Finish(img::CreateMemoryImage(fbb, fbb.CreateVector(tasks)), img::MemoryImageIdentifier());
    return sdk::write_section(ctx, "memory.cr", fbb);
}

}  // namespace cr::memory
