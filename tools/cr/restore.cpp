#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/orchestrator.hpp>

#include <cstdio>

namespace cr::cli {

int restore_main(int argc, char** argv) {
    po::options_description desc("options");
    fw::RestoreOptions opt;
    std::vector<std::string> plugins;
    desc.add_options()
        ("help,h", "show this help")
        ("images-dir,D", po::value<std::string>(&opt.dir)->required(), "image directory")
        ("restore-detached,d", po::bool_switch(&opt.detach), "exit once the tree runs (default: wait for the root and exit with its status)")
        ("plugins", po::value<std::vector<std::string>>(&plugins)->composing(),
         "extra handler .so paths, comma separated (the image names the handlers it needs)")
        ("skip-file-check", "restore even if open files changed since the dump")
        ("verbose,v", po::value<int>(&opt.verbosity)->implicit_value(1)->default_value(0), "log to stderr (-v info, -v 2 debug)");
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm, "usage: cr restore -D DIR [-d] [--plugins=LIST] [-v]")) return 0;
    opt.plugins = split_list(plugins);
    if (vm.count("skip-file-check")) opt.handler_options["skip-file-check"] = "1";
    auto r = fw::restore(opt);
    if (!r) return fail("restore", r.error().message());
    if (opt.verbosity > 0) std::fprintf(stderr, "cr restore: pid %d running, %.3f s\n", r->root, r->total_seconds);
    return opt.detach ? 0 : r->exit_status;
}

}  // namespace cr::cli
