#include "commands.hpp"

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>

namespace {

constexpr const char* k_usage = R"(usage: cr COMMAND [OPTIONS]

Checkpoint a running process tree into an image directory and restore it later.

commands:
  dump      freeze a process tree and write its image
  pre-dump  copy a tree's memory while it runs, for a later dump that copies only what changed
  restore   bring a process tree back from an image
  run       start a command detached, in its own session, and print its pid
  check     list the kernel features cr uses and whether this machine has them
  plugins   list the installed handlers
  inspect   show what an image holds: tree, files, sockets, memory, sections
  decode    print a section of an image as JSON
  encode    turn such JSON back into a section

Run 'cr COMMAND --help' for the options of a command.
)";

struct Command {
    const char* name;
    int (*main)(int, char**);
};

constexpr Command k_commands[] = {
    {"dump", cr::cli::dump_main},       {"pre-dump", cr::cli::pre_dump_main},
    {"restore", cr::cli::restore_main},
    {"run", cr::cli::run_main},         {"check", cr::cli::check_main},
    {"plugins", cr::cli::plugins_main},
    {"inspect", cr::cli::inspect_main}, {"decode", cr::cli::decode_main},
    {"encode", cr::cli::encode_main},
};

}  // namespace

namespace cr::cli {

int fail(const std::string& command, const std::string& message) {
    std::fprintf(stderr, "cr %s: %s\n", command.c_str(), message.c_str());
    return 1;
}

}  // namespace cr::cli

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
        !std::strcmp(argv[1], "help")) {
        std::fputs(k_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "--version")) {
        std::printf("cr %s\n", CR_VERSION);
        return 0;
    }
    for (const Command& c : k_commands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        try {
            return c.main(argc - 1, argv + 1);
        } catch (const std::exception& e) {
            return cr::cli::fail(c.name, e.what());
        }
    }
    std::fprintf(stderr, "cr: unknown command '%s' (see 'cr --help')\n", argv[1]);
    return 2;
}
