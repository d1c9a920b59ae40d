// The shape of the stub tree a restore builds from a manifest.
#pragma once

#include "orchestrator/stub.hpp"

#include <cr/fw/image.hpp>

namespace cr::fw {

struct TreePlan {
    std::vector<StubTask> stubs;  // [0] is the root; tasks in manifest order, then helpers
    pid_t outside_sid = 0;        // the root's session when its leader is outside the tree
    pid_t outside_pgid = 0;       // likewise for the root's process group
};

Result<TreePlan> plan_tree(const Manifest& m);

}  // namespace cr::fw
