// Incremental images of one task: which pages must be copied now, which stay in the images
// below (each run keeps the depth of the image holding it), and the tracker that tells them
// apart, armed for the next image by a pre-dump and closed by the dump that ends the chain.
#pragma once

#include "memory.hpp"
#include "tracker.hpp"

namespace cr::memory {

class TaskIncrement {
public:
    // parent: the parent image's memory section (null for a first image); pre_dump: leave
    // tracking armed for the next image.
    static Result<TaskIncrement> begin(const sdk::Context& ctx, const img::MemoryImage* parent, pid_t pid,
                                       uint64_t start_time, bool pre_dump);
    // The spans of a mapping whose pages this image copies (the whole mapping unless it is
    // watched and only part of it was written since the parent image).
    Result<std::vector<Span>> dirty(int pagemap, const VmaRecord& r);
    // Fills td's runs in earlier images and its tracker; the dump ending a chain closes every
    // tracker of the chain the task holds (inos) and leaves them out of the image.
    Result<void> finish(const sdk::Context& ctx, TaskDump& td, const std::vector<uint64_t>& inos);

private:
    TaskIncrement() = default;
    pid_t m_pid = 0;
    bool m_pre_dump = false;
    const img::TaskMemory* m_parent = nullptr;
    std::optional<Tracker> m_tracker;
    std::vector<Span> m_kept;  // where the parent images' pages are still the task's
};

// /proc/PID/stat starttime: one process along a chain of images, even across exec.
Result<uint64_t> start_time_of(pid_t pid);

}  // namespace cr::memory
