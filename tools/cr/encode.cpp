// cr encode: JSON (as cr decode prints it) back into a FlatBuffers section. With --image the
// section replaces the one in an image directory and the manifest's size and checksum follow,
// so an edited image restores like any other.
#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/image.hpp>
#include <cr/sdk/log.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>

namespace cr::cli {

namespace {

Result<std::string> read_text(const std::string& path) {
    if (path.empty() || path == "-") {
        std::ostringstream s;
        s << std::cin.rdbuf();
        if (std::cin.bad()) return Error("stdin: read failed");
        return s.str();
    }
    auto bytes = CR_TRY(read_whole_file(path));
    return std::string(bytes.begin(), bytes.end());
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// The image's own entry for file, so the schema is the one the handler wrote it with.
Result<std::string> image_schema_id(const std::string& dir, const std::string& file) {
    if (file == fw::k_manifest_file) return std::string("CRMF");
    auto reader = CR_TRY(fw::ImageReader::open(dir));
    for (const auto& s : reader.manifest().sections) {
        if (s.file != file) continue;
        if (s.schema_id.empty())
            return Error(strf("image %s: %s is a raw file, not a FlatBuffers section", dir.c_str(), file.c_str()));
        return s.schema_id;
    }
    return Error(strf("image %s: the manifest lists no section %s", dir.c_str(), file.c_str()));
}

// Writes the section, then a manifest with its new size and checksum (each one atomic).
Result<void> replace_in_image(const std::string& dir, const std::string& file, std::span<const uint8_t> bytes) {
    if (file.find('/') != std::string::npos || file.empty() || file == "." || file == "..")
        return Error(strf("--section %s: a plain file name of the image is expected", file.c_str()));
    if (file == fw::k_manifest_file) return write_file_replacing(dir + "/" + file, bytes);
    auto reader = CR_TRY(fw::ImageReader::open(dir));
    fw::Manifest m = reader.manifest();
    for (auto& s : m.sections) {
        if (s.file != file) continue;
        s.size = bytes.size();
        if (s.checksum == fw::Checksum::crc32c)
            s.crc32c = fw::Crc32c::of(bytes.data(), bytes.size());
        else
            s.sha256 = fw::Sha256::of(bytes.data(), bytes.size());
    }
    CR_TRY(write_file_replacing(dir + "/" + file, bytes));
    auto manifest = fw::encode_manifest(m);
    return write_file_replacing(dir + "/" + fw::k_manifest_file, manifest);
}

}  // namespace

Result<void> write_file_replacing(const std::string& path, std::span<const uint8_t> bytes) {
    auto slash = path.rfind('/');
    std::string tmp = dir_of(path) + "/." + (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Error::from_errno("open", tmp);
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            Error e = Error::from_errno("write", tmp);
            ::unlink(tmp.c_str());
            return e;
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        Error e = Error::from_errno("write", path);
        ::unlink(tmp.c_str());
        return e;
    }
    return {};
}

int encode_main(int argc, char** argv) {
    po::options_description desc("options");
    std::string input, schema_id, bfbs, output, image, section;
    std::vector<std::string> dirs;
    desc.add_options()
        ("help,h", "show this help")
        ("input", po::value<std::string>(&input), "JSON file (default: stdin)")
        ("schema", po::value<std::string>(&schema_id), "file identifier of the section's schema (CRMM, CRFL ...)")
        ("bfbs", po::value<std::string>(&bfbs), "use this reflection schema instead of searching")
        ("schemas", po::value<std::vector<std::string>>(&dirs)->composing(),
         "also search this directory for .bfbs files")
        ("output,o", po::value<std::string>(&output), "write the section here (default: stdout)")
        ("image,D", po::value<std::string>(&image), "replace a section of this image directory")
        ("section", po::value<std::string>(&section), "with --image: the section's file name");
    po::positional_options_description pos;
    pos.add("input", 1);
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm,
               "usage: cr encode (--schema ID | --bfbs FILE) [-o OUT] [JSON]\n"
               "       cr encode -D DIR --section NAME [JSON]\n\n"
               "Turns JSON as printed by 'cr decode' back into a FlatBuffers section. With -D the\n"
               "section NAME of image DIR is replaced (its schema taken from the manifest) and the\n"
               "manifest's size and checksum of it are updated; NAME may be manifest.cr itself.",
               &pos))
        return 0;
    if (image.empty() != section.empty()) return fail("encode", "--image and --section go together");
    if (!image.empty() && !output.empty()) return fail("encode", "--output and --image exclude each other");
    if (image.empty() && schema_id.empty() && bfbs.empty())
        return fail("encode", "which schema? give --schema ID, --bfbs FILE or --image DIR --section NAME");
    if (!image.empty() && schema_id.empty() && bfbs.empty()) {
        auto id = image_schema_id(image, section);
        if (!id) return fail("encode", id.error().message());
        schema_id = *id;
    }
    auto schema = !bfbs.empty() ? load_schema(bfbs) : find_schema(schema_id, schema_search_path(dirs));
    if (!schema) return fail("encode", schema.error().message());
    auto json = read_text(input);
    if (!json) return fail("encode", json.error().message());
    auto bytes = section_from_json(*json, *schema);
    if (!bytes) return fail("encode", (input.empty() ? std::string("stdin") : input) + ": " + bytes.error().message());
    Result<void> done;
    if (!image.empty()) {
        done = replace_in_image(image, section, *bytes);
    } else if (!output.empty()) {
        done = write_file_replacing(output, *bytes);
    } else {
        if (::isatty(STDOUT_FILENO)) return fail("encode", "refusing to write a binary section to a terminal (use -o FILE)");
        if (std::fwrite(bytes->data(), 1, bytes->size(), stdout) != bytes->size() || std::fflush(stdout) != 0)
            done = Error("stdout: write failed");
    }
    if (!done) return fail("encode", done.error().message());
    return 0;
}

}  // namespace cr::cli
