// One function per subcommand; each parses its own options and returns the exit status.
#pragma once

#include <string>

namespace cr::cli {

int dump_main(int argc, char** argv);
int restore_main(int argc, char** argv);
int run_main(int argc, char** argv);
int check_main(int argc, char** argv);
int plugins_main(int argc, char** argv);

// "cr dump: message" on stderr; returns the exit status for a failure.
int fail(const std::string& command, const std::string& message);

}  // namespace cr::cli
