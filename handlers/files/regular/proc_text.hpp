// Small /proc readers of cr.files.regular (handlers use only the SDK, not the core's parsers).
#pragma once

#include <cr/sdk/proc.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdlib>
#include <string>

namespace cr::files_regular {

using cr::sdk::read_link;

using cr::sdk::read_text;

// The octal "flags:" line of an fdinfo text.
inline Result<uint32_t> fdinfo_flags(const std::string& text) {
    size_t at = text.find("flags:");
    if (at == std::string::npos) return Error("no flags: line");
    return static_cast<uint32_t>(std::strtoul(text.c_str() + at + 6, nullptr, 8));
}

}  // namespace cr::files_regular
