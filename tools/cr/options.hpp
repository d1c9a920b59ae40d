// Shared option handling of the subcommands (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>

#include <iostream>
#include <string>
#include <vector>

namespace cr::cli {

namespace po = boost::program_options;

// Parses argv; prints help and returns false when --help was given.
inline bool parse(int argc, char** argv, const po::options_description& desc, po::variables_map& vm,
                  const char* usage, const po::positional_options_description* positional = nullptr) {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
        std::cout << usage << "\n\n" << desc << "\n";
        return false;
    }
    po::notify(vm);
    return true;
}

// "a,b" and repeated --plugins both work.
inline std::vector<std::string> split_list(const std::vector<std::string>& values) {
    std::vector<std::string> out;
    for (const auto& v : values) {
        size_t start = 0;
        while (start <= v.size()) {
            size_t comma = v.find(',', start);
            std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            if (!item.empty()) out.push_back(item);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    return out;
}

}  // namespace cr::cli
