// Helpers shared by the image writer, reader and manifest codec.
#pragma once

#include <string>
#include <string_view>

namespace cr::fw::image_detail {

// Why name cannot be a file of an image directory, or "" when it can: a plain name, no '/',
// not "." or "..", not the manifest itself, short enough for a temporary name next to it.
std::string bad_file_name(std::string_view name);

// "image DIR: FILE"
std::string where(const std::string& dir, std::string_view file);

enum class Sha256Impl { automatic, portable, shani };
// Chooses the sha256 block function for the whole process (tests run both); false when the
// CPU lacks the instructions asked for.
bool sha256_select(Sha256Impl impl);

enum class Crc32cImpl { automatic, portable, sse42 };
// The same for CRC-32C: the SSE4.2 instruction or the table.
bool crc32c_select(Crc32cImpl impl);

}  // namespace cr::fw::image_detail
