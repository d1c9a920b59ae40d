// Entry points of the two orchestrators: what `cr dump` and `cr restore` run.
#pragma once

#include <cr/sdk/result.hpp>

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace cr::fw {

struct CommonOptions {
    std::string dir;
    std::vector<std::string> plugins;  // --plugins: ids, prefixes or paths to .so files
    int verbosity = 0;                 // 0: warnings and errors on stderr; 1: info; 2: debug
    std::map<std::string, std::string> handler_options;  // seen by handlers through ctx.option
};

struct DumpOptions : CommonOptions {
    pid_t pid = 0;
    bool leave_running = false;
    bool pre_dump = false;  // cr pre-dump: memory only, tree left running with dirty tracking armed
    std::string prev_dir;   // --prev-images-dir: the image this one builds on
};

struct RestoreOptions : CommonOptions {
    bool detach = false;
};

struct DumpReport {
    size_t tasks = 0;
    size_t threads = 0;
    double frozen_seconds = 0;
    double total_seconds = 0;
};

struct RestoreReport {
    pid_t root = 0;
    int exit_status = 0;  // root's exit status when not detached (128+signal when killed)
    double total_seconds = 0;
};

Result<DumpReport> dump(const DumpOptions& options);
Result<RestoreReport> restore(const RestoreOptions& options);

}  // namespace cr::fw
