#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/orchestrator.hpp>

#include <cstdio>

namespace cr::cli {

int pre_dump_main(int argc, char** argv) {
    po::options_description desc("options");
    fw::DumpOptions opt;
    opt.pre_dump = true;
    opt.leave_running = true;
    std::vector<std::string> plugins;
    desc.add_options()
        ("help,h", "show this help")
        ("tree,t", po::value<pid_t>(&opt.pid)->required(), "pid of the root of the tree")
        ("images-dir,D", po::value<std::string>(&opt.dir)->required(), "image directory (created 0700)")
        ("prev-images-dir", po::value<std::string>(&opt.prev_dir),
         "the previous pre-dump of this tree: copy only what changed since")
        ("plugins", po::value<std::vector<std::string>>(&plugins)->composing(),
         "handlers to use: ids, prefixes or .so paths, comma separated (default: all installed)")
        ("verbose,v", po::value<int>(&opt.verbosity)->implicit_value(1)->default_value(0), "log to stderr (-v info, -v 2 debug)");
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm,
               "usage: cr pre-dump -t PID -D DIR [--prev-images-dir DIR] [-v]\n\n"
               "Copies the memory of a tree while it keeps running and leaves dirty tracking armed, so\n"
               "that a later 'cr pre-dump --prev-images-dir DIR' or 'cr dump --prev-images-dir DIR'\n"
               "copies only the pages written since. The tree is stopped only to find those pages."))
        return 0;
    opt.plugins = split_list(plugins);
    auto r = fw::dump(opt);
    if (!r) return fail("pre-dump", r.error().message());
    if (opt.verbosity > 0)
        std::fprintf(stderr, "cr pre-dump: %zu task(s), %zu thread(s), frozen %.3f s, total %.3f s\n", r->tasks,
                     r->threads, r->frozen_seconds, r->total_seconds);
    return 0;
}

}  // namespace cr::cli
