// Small text helpers shared by the /proc parsers.
#pragma once

#include <charconv>
#include <cr/fw/proc.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cr::fw::proc::text {

std::string_view trim(std::string_view s);
// Skips blanks (space, tab, newline), returns the next blank-separated word and advances s past it
// ("" at the end).
std::string_view next_word(std::string_view& s);
std::vector<std::string_view> split_lines(std::string_view s);

// Whole-string number; a leading '-' is accepted for signed types only.
template <typename T>
bool parse_num(std::string_view s, T& out, int base) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace cr::fw::proc::text

namespace cr::fw::proc::detail {
// The VmFlags of each mapping in the text of an smaps file, keyed by start address.
Result<std::map<uint64_t, std::vector<std::string>>> parse_vmflags(const std::string& text);
}  // namespace cr::fw::proc::detail
