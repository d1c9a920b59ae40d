// Reading /proc (and other small kernel files) from a handler: the whole text of a file, the
// target of a link. Errors name the path.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/result.hpp>
#include <string>

namespace cr::sdk {

// The whole file, read until EOF (proc files have no size to trust).
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

// The target of a symbolic link, however long.
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

}  // namespace cr::sdk
