// printf-style formatting into std::string (the toolchain's library has no <format>).
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

namespace cr {

[[nodiscard]] __attribute__((format(printf, 1, 2))) inline std::string strf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = std::vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return {};
    if (static_cast<size_t>(n) < sizeof small) return std::string(small, static_cast<size_t>(n));
    std::string out(static_cast<size_t>(n), '\0');
    va_start(ap, fmt);
    std::vsnprintf(out.data(), out.size() + 1, fmt, ap);
    va_end(ap);
    return out;
}

}  // namespace cr
