// Small /proc readers of cr.files.regular (handlers use only the SDK, not the core's parsers).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdlib>
#include <string>

namespace cr::files_regular {

inline Result<std::string> read_link(const std::string& path) {
    std::string buf(256, '\0');
    for (;;) {
        ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
        if (n < 0) return Error::from_errno("readlink", path);
        if (static_cast<size_t>(n) < buf.size()) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        buf.resize(buf.size() * 2);
    }
}

inline Result<std::string> read_text(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno("open", path);
    std::string out;
    char chunk[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read", path);
        if (n == 0) return out;
        out.append(chunk, static_cast<size_t>(n));
    }
}

// The octal "flags:" line of an fdinfo text.
inline Result<uint32_t> fdinfo_flags(const std::string& text) {
    size_t at = text.find("flags:");
    if (at == std::string::npos) return Error("no flags: line");
    return static_cast<uint32_t>(std::strtoul(text.c_str() + at + 6, nullptr, 8));
}

}  // namespace cr::files_regular
