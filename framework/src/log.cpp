#include <cr/fw/log.hpp>

#include <fcntl.h>
#include <unistd.h>

namespace cr::fw {

namespace {
const char* level_name(int level) {
    switch (level) {
        case CR_LOG_ERROR: return "error";
        case CR_LOG_WARN: return "warn";
        case CR_LOG_INFO: return "info";
        default: return "debug";
    }
}
}  // namespace

Log::Log(int stderr_level) : m_stderr_level(stderr_level), m_start(std::chrono::steady_clock::now()) {}

double Log::elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
}

int Log::relocate_file(int min_fd) {
    if (!m_file) return -1;
    int fd = ::fcntl(m_file.get(), F_DUPFD_CLOEXEC, min_fd);
    if (fd < 0) return -1;
    m_file.reset(fd);
    return fd;
}

void Log::write(int level, std::string_view tag, std::string_view message) {
    std::string line = strf("%9.6f %-5s [%.*s] %.*s\n", elapsed(), level_name(level),
                            static_cast<int>(tag.size()), tag.data(),
                            static_cast<int>(message.size()), message.data());
    // One write per line so concurrent writers never interleave inside a line.
    if (m_file) (void)!::write(m_file.get(), line.data(), line.size());
    if (level <= m_stderr_level) (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace cr::fw
