// Finding and freezing the process tree of a dump.
#pragma once

#include "orchestrator/host.hpp"

namespace cr::fw {

// Seizes every thread of every task under root (threads and children that appear while
// seizing included) and fills the task records, parents before children.
Result<std::vector<TaskRecord>> freeze_tree(Tracer& tracer, Log& log, pid_t root);

// A free, k_stub_size long range in the task's address space, at or above 1 MiB.
Result<uint64_t> find_stub_area(pid_t pid);

// Whether pid is cr itself or one of its ancestors (dumping those cannot work).
bool is_self_or_ancestor(pid_t pid);

}  // namespace cr::fw
