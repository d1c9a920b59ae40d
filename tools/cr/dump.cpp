#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/orchestrator.hpp>

#include <cstdio>

namespace cr::cli {

int dump_main(int argc, char** argv) {
    po::options_description desc("options");
    fw::DumpOptions opt;
    std::vector<std::string> plugins;
    desc.add_options()
        ("help,h", "show this help")
        ("tree,t", po::value<pid_t>(&opt.pid)->required(), "pid of the root of the tree to dump")
        ("images-dir,D", po::value<std::string>(&opt.dir)->required(), "image directory (created 0700)")
        ("leave-running,R", po::bool_switch(&opt.leave_running), "let the tree run on after the dump")
        ("prev-images-dir", po::value<std::string>(&opt.prev_dir),
         "a cr pre-dump of this tree: write only the pages changed since, read the others from there")
        ("plugins", po::value<std::vector<std::string>>(&plugins)->composing(),
         "handlers to use: ids, prefixes or .so paths, comma separated (default: all installed)")
        ("skip-file-check", "do not record size/mtime checks of open files")
        ("ext-unix-sk", "allow unix sockets whose peer is outside the tree: restore connects them again by the peer's name")
        ("verbose,v", po::value<int>(&opt.verbosity)->implicit_value(1)->default_value(0), "log to stderr (-v info, -v 2 debug)");
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm, "usage: cr dump -t PID -D DIR [--leave-running] [--prev-images-dir DIR] [--plugins=LIST] [--ext-unix-sk] [-v]")) return 0;
    opt.plugins = split_list(plugins);
    if (vm.count("skip-file-check")) opt.handler_options["skip-file-check"] = "1";
    if (vm.count("ext-unix-sk")) opt.handler_options["ext-unix-sk"] = "1";
    auto r = fw::dump(opt);
    if (!r) return fail("dump", r.error().message());
    if (opt.verbosity > 0)
        std::fprintf(stderr, "cr dump: %zu task(s), %zu thread(s), frozen %.3f s, total %.3f s\n", r->tasks,
                     r->threads, r->frozen_seconds, r->total_seconds);
    return 0;
}

}  // namespace cr::cli
