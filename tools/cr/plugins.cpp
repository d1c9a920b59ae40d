#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/handlers.hpp>

#include <cstdio>

namespace cr::cli {

namespace {
std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out.empty() ? "-" : out;
}
}  // namespace

int plugins_main(int argc, char** argv) {
    po::options_description desc("options");
    std::vector<std::string> plugins;
    desc.add_options()
        ("help,h", "show this help")
        ("plugins", po::value<std::vector<std::string>>(&plugins)->composing(), "only these handlers");
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm, "usage: cr plugins [--plugins=LIST]\n\nLists installed handlers: id, version, file, dependencies and what they claim.")) return 0;
    auto registry = fw::load_registry(split_list(plugins));
    if (!registry) return fail("plugins", registry.error().message());
    auto order = registry->order();
    if (!order) return fail("plugins", order.error().message());
    if (order->empty()) std::printf("no handlers installed (search path: CR_PLUGIN_PATH, then <prefix>/lib/cr/handlers)\n");
    for (const fw::LoadedHandler* h : *order) {
        std::printf("%s %s\n  file:     %s\n  summary:  %s\n  depends:  %s\n  claims:   %s\n  package:  %s\n",
                    h->id.c_str(), h->version.c_str(), h->path.c_str(), h->summary.c_str(),
                    join(h->depends).c_str(), join(h->claims).c_str(), fw::package_for_handler(h->id).c_str());
    }
    return 0;
}

}  // namespace cr::cli
