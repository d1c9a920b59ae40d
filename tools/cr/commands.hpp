// One function per subcommand; each parses its own options and returns the exit status.
#pragma once

#include <cr/sdk/result.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace cr::cli {

int dump_main(int argc, char** argv);
int pre_dump_main(int argc, char** argv);
int restore_main(int argc, char** argv);
int run_main(int argc, char** argv);
int check_main(int argc, char** argv);
int plugins_main(int argc, char** argv);
int inspect_main(int argc, char** argv);
int decode_main(int argc, char** argv);
int encode_main(int argc, char** argv);

// Sections through FlatBuffers reflection (decode.cpp, shared with encode.cpp): the .bfbs of a
// schema is found by its file identifier under the extra dirs, CR_SCHEMA_PATH, then
// <dir of cr>/../share/cr/schemas. manifest.cr keeps its trailing sha256: checked and dropped
// when decoding, appended when encoding.
struct SchemaFile {
    std::string path;
    std::vector<uint8_t> bfbs;
};
std::vector<std::string> schema_search_path(const std::vector<std::string>& extra);
Result<SchemaFile> load_schema(const std::string& path);
Result<SchemaFile> find_schema(const std::string& identifier, const std::vector<std::string>& dirs);
// The FlatBuffers file identifier (bytes 4..7) when printable, else "".
std::string section_identifier(std::span<const uint8_t> bytes);
Result<std::string> section_to_json(std::span<const uint8_t> bytes, const SchemaFile& schema);
Result<std::vector<uint8_t>> section_from_json(const std::string& json, const SchemaFile& schema);
Result<std::vector<uint8_t>> read_whole_file(const std::string& path);
// Through a temporary file next to path and a rename; the file is 0600.
Result<void> write_file_replacing(const std::string& path, std::span<const uint8_t> bytes);

// "cr dump: message" on stderr; returns the exit status for a failure.
int fail(const std::string& command, const std::string& message);

}  // namespace cr::cli
