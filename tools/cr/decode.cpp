// cr decode: any FlatBuffers section of an image as JSON, through the reflection schema (.bfbs)
// of its file identifier. Also the schema lookup and the JSON <-> binary conversion that
// cr encode shares: both directions go through one flatbuffers::Parser built from the .bfbs, so
// a built-in section and a third-party one are handled alike.
#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/image.hpp>
#include <cr/sdk/log.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace cr::cli {

namespace {

namespace fs = std::filesystem;

constexpr size_t k_digest_size = 32;
constexpr const char* k_manifest_identifier = "CRMF";

const reflection::Schema* schema_of(const SchemaFile& s) { return reflection::GetSchema(s.bfbs.data()); }

Result<flatbuffers::Parser*> make_parser(const SchemaFile& schema, flatbuffers::Parser& parser) {
    if (!parser.Deserialize(schema.bfbs.data(), schema.bfbs.size()))
        return Error(strf("%s: cannot load the schema: %s", schema.path.c_str(), parser.error_.c_str()));
    return &parser;
}

flatbuffers::IDLOptions json_options() {
    flatbuffers::IDLOptions o;
    o.strict_json = true;                     // quoted names: any JSON tool reads it
    o.output_default_scalars_in_json = true;  // every field shows, for reading and for diffs
    o.allow_non_utf8 = true;                  // a path need not be UTF-8; \x escapes read back
    o.indent_step = 2;
    return o;
}

// manifest.cr carries the sha256 of its FlatBuffer after it.
Result<std::span<const uint8_t>> strip_manifest_digest(std::span<const uint8_t> bytes) {
    if (bytes.size() < k_digest_size + 8) return Error("manifest too short");
    auto body = bytes.first(bytes.size() - k_digest_size);
    fw::Digest d = fw::Sha256::of(body.data(), body.size());
    if (!std::equal(d.begin(), d.end(), bytes.end() - k_digest_size))
        return Error("manifest sha256 mismatch (file corrupted or changed)");
    return body;
}

std::vector<std::string> split_colons(const char* value) {
    std::vector<std::string> out;
    std::string_view rest(value ? value : "");
    while (!rest.empty()) {
        auto colon = rest.find(':');
        if (colon != 0) out.emplace_back(rest.substr(0, colon));
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
    }
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out.empty() ? "none" : out;
}

}  // namespace

Result<std::vector<uint8_t>> read_whole_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Error::from_errno("open", path);
    std::vector<uint8_t> out;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read", path);
        if (n == 0) return out;
        out.insert(out.end(), buf, buf + n);
    }
}

std::string section_identifier(std::span<const uint8_t> bytes) {
    if (bytes.size() < 8) return {};
    std::string id(reinterpret_cast<const char*>(bytes.data()) + 4, 4);
    for (char c : id)
        if (c < 0x20 || c > 0x7e) return {};
    return id;
}

std::vector<std::string> schema_search_path(const std::vector<std::string>& extra) {
    std::vector<std::string> out = extra;
    for (auto& d : split_colons(std::getenv("CR_SCHEMA_PATH"))) out.push_back(std::move(d));
    std::error_code ec;
    auto exe = fs::read_symlink("/proc/self/exe", ec);
    // The build tree mirrors the install tree: <dir of cr>/../share/cr/schemas in both.
    if (!ec) out.push_back((exe.parent_path().parent_path() / "share" / "cr" / "schemas").string());
    return out;
}

Result<SchemaFile> load_schema(const std::string& path) {
    SchemaFile s{path, CR_TRY(read_whole_file(path))};
    flatbuffers::Verifier verifier(s.bfbs.data(), s.bfbs.size());
    if (!reflection::VerifySchemaBuffer(verifier))
        return Error(strf("%s: not a FlatBuffers reflection schema (.bfbs)", path.c_str()));
    if (schema_of(s)->root_table() == nullptr)
        return Error(strf("%s: schema has no root_type", path.c_str()));
    return s;
}

Result<SchemaFile> find_schema(const std::string& identifier, const std::vector<std::string>& dirs) {
    std::vector<std::string> seen;
    for (const auto& dir : dirs) {
        std::error_code ec;
        std::vector<fs::path> files;
        for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
            if (it->path().extension() == ".bfbs" && it->is_regular_file(ec)) files.push_back(it->path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            auto s = load_schema(f.string());
            if (!s) continue;  // not ours to judge here; decode --bfbs reports it
            const auto* ident = schema_of(*s)->file_ident();
            std::string id = ident ? ident->str() : std::string();
            if (id == identifier) return std::move(s).value();
            if (!id.empty()) seen.push_back(id);
        }
    }
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    std::string where;
    for (const auto& d : dirs) where += (where.empty() ? "" : ":") + d;
    return Error(strf("no schema with file identifier '%s' in %s (known: %s); install the package "
                      "of the handler that wrote it or add its .bfbs directory to CR_SCHEMA_PATH",
                      identifier.c_str(), where.c_str(), join(seen).c_str()));
}

Result<std::string> section_to_json(std::span<const uint8_t> bytes, const SchemaFile& schema) {
    const reflection::Schema* s = schema_of(schema);
    std::string ident = s->file_ident() ? s->file_ident()->str() : std::string();
    if (ident == k_manifest_identifier) bytes = CR_TRY(strip_manifest_digest(bytes));
    if (bytes.size() < 8) return Error("too short for a FlatBuffer");
    if (!ident.empty() && section_identifier(bytes) != ident)
        return Error(strf("file identifier '%s', the schema %s is for '%s'", section_identifier(bytes).c_str(),
                          schema.path.c_str(), ident.c_str()));
    if (!flatbuffers::Verify(*s, *s->root_table(), bytes.data(), bytes.size()))
        return Error(strf("fails verification against %s", schema.path.c_str()));
    flatbuffers::Parser parser(json_options());
    CR_TRY(make_parser(schema, parser));
    std::string json;
    if (!flatbuffers::GenerateText(parser, bytes.data(), &json))
        return Error(strf("cannot be printed as JSON through %s", schema.path.c_str()));
    return json;
}

Result<std::vector<uint8_t>> section_from_json(const std::string& json, const SchemaFile& schema) {
    flatbuffers::Parser parser(json_options());
    CR_TRY(make_parser(schema, parser));
    if (!parser.ParseJson(json.c_str()))
        return Error(strf("JSON does not match %s: %s", schema.path.c_str(), parser.error_.c_str()));
    const uint8_t* data = parser.builder_.GetBufferPointer();
    std::vector<uint8_t> out(data, data + parser.builder_.GetSize());
    const reflection::Schema* s = schema_of(schema);
    // The parser fills in what the schema allows; the verifier says whether a reader will accept it.
    if (!flatbuffers::Verify(*s, *s->root_table(), out.data(), out.size()))
        return Error(strf("encoded buffer fails verification against %s", schema.path.c_str()));
    if (s->file_ident() && s->file_ident()->str() == k_manifest_identifier) {
        fw::Digest d = fw::Sha256::of(out.data(), out.size());
        out.insert(out.end(), d.begin(), d.end());
    }
    return out;
}

int decode_main(int argc, char** argv) {
    po::options_description desc("options");
    std::string file, bfbs, output;
    std::vector<std::string> dirs;
    desc.add_options()
        ("help,h", "show this help")
        ("file", po::value<std::string>(&file)->required(), "section file (or manifest.cr)")
        ("bfbs", po::value<std::string>(&bfbs), "use this reflection schema instead of searching")
        ("schemas", po::value<std::vector<std::string>>(&dirs)->composing(),
         "also search this directory for .bfbs files (before CR_SCHEMA_PATH and the installed ones)")
        ("output,o", po::value<std::string>(&output), "write the JSON here instead of stdout");
    po::positional_options_description pos;
    pos.add("file", 1);
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm,
               "usage: cr decode [--bfbs FILE | --schemas DIR] [-o OUT] FILE\n\n"
               "Prints a FlatBuffers section of an image (or its manifest.cr) as JSON. The schema is\n"
               "the .bfbs whose file identifier the section carries, found under --schemas,\n"
               "CR_SCHEMA_PATH, then <prefix>/share/cr/schemas. 'cr encode' turns the JSON back.",
               &pos))
        return 0;
    auto bytes = read_whole_file(file);
    if (!bytes) return fail("decode", bytes.error().message());
    std::string ident = section_identifier(*bytes);
    auto schema = !bfbs.empty() ? load_schema(bfbs)
                  : ident.empty()
                      ? Result<SchemaFile>(Error("no FlatBuffers file identifier (a raw file, such as pages-*.img, "
                                                 "has no schema; give --bfbs for a buffer without one)"))
                      : find_schema(ident, schema_search_path(dirs));
    if (!schema) return fail("decode", file + ": " + schema.error().message());
    auto json = section_to_json(*bytes, *schema);
    if (!json) return fail("decode", file + ": " + json.error().message());
    if (output.empty()) {
        std::fwrite(json->data(), 1, json->size(), stdout);
        return std::fflush(stdout) == 0 ? 0 : fail("decode", "stdout: write failed");
    }
    auto w = write_file_replacing(output, {reinterpret_cast<const uint8_t*>(json->data()), json->size()});
    if (!w) return fail("decode", w.error().message());
    return 0;
}

}  // namespace cr::cli
