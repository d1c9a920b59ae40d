#include "increment.hpp"

#include <sys/syscall.h>

#include <sstream>

namespace cr::memory {

namespace {

bool trackable(const VmaRecord& r) {
    if (r.map.shared) return false;  // written through other mappings too, unseen here
    return r.kind == img::VmaKind::Anon || r.kind == img::VmaKind::Heap || r.kind == img::VmaKind::Stack ||
           r.kind == img::VmaKind::File;
}

// Pieces of runs (vaddr, count, offset) that lie inside the sorted spans, appended to out.
template <typename It>
void clip(It begin, It end, uint64_t depth, const std::vector<Span>& spans, std::vector<ParentRunRecord>& out) {
    size_t s = 0;
    for (auto it = begin; it != end; ++it) {
        const auto* r = *it;
        uint64_t a = r->vaddr(), b = r->vaddr() + r->count() * k_page;
        while (s < spans.size() && spans[s].end <= a) ++s;
        for (size_t k = s; k < spans.size() && spans[k].start < b; ++k) {
            uint64_t lo = std::max(a, spans[k].start), hi = std::min(b, spans[k].end);
            if (lo >= hi) continue;
            out.push_back({lo, (hi - lo) / k_page, r->offset() + (lo - a), depth});
        }
    }
}

}  // namespace

Result<uint64_t> start_time_of(pid_t pid) {
    std::string stat = CR_TRY(read_text(strf("/proc/%d/stat", pid)));
    size_t close = stat.rfind(')');
    if (close == std::string::npos) return Error(strf("pid %d: cannot parse /proc/%d/stat", pid, pid));
    std::istringstream in(stat.substr(close + 2));
    std::string w;
    for (int field = 3; in >> w; ++field)
        if (field == 22) return std::stoull(w);
    return Error(strf("pid %d: /proc/%d/stat has too few fields", pid, pid));
}

Result<TaskIncrement> TaskIncrement::begin(const sdk::Context& ctx, const img::MemoryImage* parent, pid_t pid,
                                           uint64_t start_time, bool pre_dump) {
    TaskIncrement inc;
    inc.m_pid = pid;
    inc.m_pre_dump = pre_dump;
    if (parent && parent->tasks()) {
        for (const img::TaskMemory* tm : *parent->tasks()) {
            if (tm->pid() != pid) continue;
            if (tm->start_time() == start_time && tm->runs() && tm->pages_file()) inc.m_parent = tm;
            else ctx.info(strf("pid %d: not the process of the parent image; all its pages are copied", pid));
        }
    }
    std::string why;
    bool can_track = Tracker::supported(why);
    if (inc.m_parent) inc.m_tracker = Tracker::find(pid, inc.m_parent->tracker_fd(), inc.m_parent->tracker_ino());
    if (inc.m_parent && !inc.m_tracker && inc.m_parent->tracker_fd() >= 0)
        ctx.warn(strf("pid %d: the dirty tracker the parent image left at fd %d is gone; all its pages are copied",
                      pid, inc.m_parent->tracker_fd()));
    if (pre_dump && !inc.m_tracker) {
        if (!can_track) {
            ctx.warn(strf("pid %d: dirty tracking is not available on this kernel (%s): this pre-dump copies all "
                          "memory, and so will the dump after it", pid, why.c_str()));
        } else {
            auto t = Tracker::create(ctx, pid);
            if (t) inc.m_tracker = std::move(*t);
            else ctx.warn(strf("pid %d: no dirty tracking (%s): the dump after this one copies all memory", pid,
                               t.error().message().c_str()));
        }
    }
    if (inc.m_tracker) ctx.debug(strf("pid %d: dirty tracker at fd %d", pid, inc.m_tracker->task_fd()));
    return inc;
}

Result<std::vector<Span>> TaskIncrement::dirty(int pagemap, const VmaRecord& r) {
    std::vector<Span> whole{{r.map.start, r.map.end}};
    if (!m_tracker || !trackable(r)) return whole;
    auto written = CR_TRY(written_since(pagemap, r.map.start, r.map.end, m_pre_dump));
    if (written) {
        // Watched since the parent image: what was not written is still what the parent holds.
        uint64_t at = r.map.start;
        for (const Span& w : *written) {
            if (w.start > at) m_kept.push_back({at, w.start});
            at = std::max(at, w.end);
        }
        if (at < r.map.end) m_kept.push_back({at, r.map.end});
        return std::move(*written);
    }
    // New (or moved) since the parent image: copied whole, and watched from now on.
    if (m_pre_dump && m_tracker->watch(r.map.start, r.map.end))
        CR_TRY(written_since(pagemap, r.map.start, r.map.end, true));
    return whole;
}

Result<void> TaskIncrement::finish(const sdk::Context& ctx, TaskDump& td, const std::vector<uint64_t>& inos) {
    if (m_parent) {
        td.parent_files.push_back(m_parent->pages_file()->str());
        if (m_parent->parent_pages_files())
            for (const auto* f : *m_parent->parent_pages_files()) td.parent_files.push_back(f->str());
        const auto* runs = m_parent->runs();
        clip(runs->begin(), runs->end(), 1, m_kept, td.parent_runs);
        if (const auto* older = m_parent->parent_runs()) {
            std::vector<std::vector<const img::ParentRun*>> by_depth;
            for (const img::ParentRun* r : *older) {
                if (r->depth() == 0 || r->depth() >= td.parent_files.size())
                    return Error(strf("parent image: memory.cr: pid %d: run at 0x%lx names image %lu of a chain of %zu",
                                      m_pid, r->vaddr(), r->depth(), td.parent_files.size() - 1));
                if (by_depth.size() < r->depth()) by_depth.resize(r->depth());
                by_depth[r->depth() - 1].push_back(r);
            }
            for (size_t d = 0; d < by_depth.size(); ++d)
                clip(by_depth[d].begin(), by_depth[d].end(), d + 2, m_kept, td.parent_runs);
        }
        for (const ParentRunRecord& r : td.parent_runs) td.pages_parent += r.count;
    }
    if (m_pre_dump) {
        if (m_tracker) {
            td.tracker_fd = m_tracker->task_fd();
            td.tracker_ino = m_tracker->ino();
        }
        return {};
    }
    for (int fd : tracker_fds(m_pid, inos)) {
        CR_TRY(ctx.remote(m_pid, SYS_close, "close of the dirty tracker", {static_cast<uint64_t>(fd)}));
        CR_TRY(ctx.forget_fd(m_pid, fd));
        ctx.debug(strf("pid %d: dirty tracker at fd %d closed", m_pid, fd));
    }
    return {};
}

}  // namespace cr::memory
