// The run log: every meaningful step, tagged with who did it, into dump.log / restore.log in
// the image directory and, at -v, to stderr.
#pragma once

#include <cr/sdk/abi.h>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace cr::fw {

class Log {
public:
    explicit Log(int stderr_level = CR_LOG_WARN);
    void set_file(UniqueFd fd) { m_file = std::move(fd); }
    // Moves the log file to an fd number at or above min_fd; returns that number (-1: none).
    int relocate_file(int min_fd);
    // Stops writing to the file (a process that must not keep the descriptor).
    void drop_file() { m_file.reset(); }
    void set_stderr_level(int level) { m_stderr_level = level; }
    void write(int level, std::string_view tag, std::string_view message);
    void info(std::string_view tag, std::string_view m) { write(CR_LOG_INFO, tag, m); }
    void debug(std::string_view tag, std::string_view m) { write(CR_LOG_DEBUG, tag, m); }
    void warn(std::string_view tag, std::string_view m) { write(CR_LOG_WARN, tag, m); }
    void error(std::string_view tag, std::string_view m) { write(CR_LOG_ERROR, tag, m); }
    // Seconds since this log was created.
    [[nodiscard]] double elapsed() const;

private:
    UniqueFd m_file;
    int m_stderr_level;
    std::chrono::steady_clock::time_point m_start;
};

}  // namespace cr::fw
