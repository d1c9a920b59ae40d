// The image directory: manifest.cr, one FlatBuffers section per handler, raw page files.
// Every file is 0600 in a 0700 directory; every read is checked (size, checksum, verifier).
#pragma once

#include <cr/sdk/fd.hpp>
#include <cr/sdk/result.hpp>

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <span>
#include <string>
#include <vector>

namespace cr::fw {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    Digest finish();
    static Digest of(const void* data, size_t size);
    static std::string hex(const Digest& d);

private:
    uint32_t m_state[8];
    uint64_t m_length = 0;
    uint8_t m_block[64];
    size_t m_fill = 0;
};

// CRC-32C (Castagnoli), as iSCSI and ext4 use it: init and final xor 0xffffffff.
class Crc32c {
public:
    void update(const void* data, size_t size);
    [[nodiscard]] uint32_t value() const { return ~m_state; }
    static uint32_t of(const void* data, size_t size);

private:
    uint32_t m_state = 0xffffffffu;
};

enum class Checksum : uint8_t { sha256 = 0, crc32c = 1 };

struct ManifestTask {
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t pgid = 0;
    pid_t sid = 0;
    std::vector<pid_t> tids;
    uint32_t flags = 0;
    std::string comm;
    uint64_t stub_area = 0;
    int exit_status = 0;  // zombies
};

struct ManifestFd {
    pid_t pid = 0;
    int fd = 0;
    uint64_t object_id = 0;
    bool cloexec = false;
    std::string kind;
    std::string handler_id;
};

struct ManifestHandler {
    std::string id;
    std::string version;
};

struct ManifestSection {
    std::string handler_id;
    std::string handler_version;
    std::string schema_id;  // "" for raw files
    std::string file;
    uint64_t size = 0;
    Digest sha256{};  // checksum == sha256
    Checksum checksum = Checksum::sha256;
    uint32_t crc32c = 0;  // checksum == crc32c (raw files)
};

struct Manifest {
    uint32_t format_version = 1;
    std::string cr_version;
    std::string kernel;
    std::string arch;
    uint64_t created_unix = 0;
    pid_t root_pid = 0;
    std::vector<ManifestTask> tasks;
    std::vector<ManifestHandler> handlers;
    std::vector<ManifestSection> sections;
    std::vector<ManifestFd> fds;
    std::string parent_dir;  // relative to the image's own directory unless absolute
    bool pre_dump = false;
};

inline constexpr const char* k_manifest_file = "manifest.cr";

// manifest.cr = FlatBuffer bytes followed by the sha256 of those bytes.
std::vector<uint8_t> encode_manifest(const Manifest& m);
Result<Manifest> decode_manifest(std::span<const uint8_t> bytes, const std::string& where);

class ImageWriter {
public:
    // Creates dir (0700) if missing; an existing dir is made 0700. Files of an older image
    // in it are replaced only when finish() succeeds.
    static Result<ImageWriter> create(const std::string& dir);
    ImageWriter(ImageWriter&&) noexcept;
    ImageWriter& operator=(ImageWriter&&) noexcept;
    ~ImageWriter();  // abort() unless finished

    [[nodiscard]] const std::string& dir() const { return m_dir; }
    Result<void> write_section(const std::string& handler_id, const std::string& handler_version,
                               const std::string& schema_id, const std::string& file,
                               std::span<const uint8_t> bytes);
    // A raw file, written by the caller through the returned fd; size and CRC-32C are taken
    // in finish().
    Result<UniqueFd> create_raw(const std::string& handler_id, const std::string& handler_version,
                                const std::string& file);
    // Bytes of a raw file, fed in order as they are written: finish() then takes the digest from
    // them instead of reading the file back (and checks the size). Callable from any thread.
    Result<void> hash_raw(const std::string& file, const void* data, size_t size);
    // Opens a file for the log (0600, appended, not part of the manifest).
    Result<UniqueFd> open_log(const std::string& file);
    // Fills manifest.sections and writes manifest.cr last (atomic rename).
    Result<void> finish(Manifest manifest);
    // Removes every file this writer created.
    void abort();

private:
    explicit ImageWriter(std::string dir) : m_dir(std::move(dir)) {}
    std::string m_dir;
    std::vector<ManifestSection> m_sections;
    std::vector<std::string> m_created;  // final names, for abort()
    bool m_finished = false;
    struct RawHash {
        Crc32c crc;
        uint64_t size = 0;
        bool fed = false;
    };
    std::unique_ptr<std::mutex> m_hash_lock = std::make_unique<std::mutex>();
    std::map<std::string, RawHash> m_raw_hash;
};

class ImageReader {
public:
    // Reads and checks manifest.cr. Errors name the directory and file.
    static Result<ImageReader> open(const std::string& dir);
    [[nodiscard]] const Manifest& manifest() const { return m_manifest; }
    [[nodiscard]] const std::string& dir() const { return m_dir; }
    // Whole section, size and sha256 checked against the manifest; cached.
    Result<std::span<const uint8_t>> section(const std::string& file);
    // Raw file: checked once (size and CRC-32C, streamed), then opened read-only.
    Result<UniqueFd> open_raw(const std::string& file);
    // Checks every file of the manifest.
    Result<void> verify_all();
    // Checks every section (read whole and cached, as restore needs them anyway).
    Result<void> verify_sections();
    // From now on open_raw checks only the size; verify_raw() has to be run (it may run on
    // another thread while this reader serves sections and opens files).
    void defer_raw_checks() { m_defer_raw = true; }
    // Streams every raw file through its checksum; errors name each bad file.
    [[nodiscard]] Result<void> verify_raw() const;
    [[nodiscard]] const ManifestSection* find(const std::string& file) const;

private:
    std::string m_dir;
    Manifest m_manifest;
    std::map<std::string, std::vector<uint8_t>> m_cache;
    std::map<std::string, bool> m_raw_checked;
    bool m_defer_raw = false;
};

// The images an incremental image builds on, parent first, each manifest read and checked:
// a missing or unreadable parent, a loop, or a parent of another tree is an error naming it.
Result<std::vector<std::unique_ptr<ImageReader>>> open_parents(const ImageReader& image);
// The parent_dir to record for an image in dir whose parent is parent: relative when both are
// reachable from one another, so a set of images moved together stays a chain.
std::string parent_dir_for(const std::string& dir, const std::string& parent);

// Streams every raw file of an image and of its parents through its checksum on a thread of its own,
// while the readers open raw files with a size check only. wait() names every bad file.
class RawCheck {
public:
    RawCheck(ImageReader& image, const std::vector<std::unique_ptr<ImageReader>>& parents);
    RawCheck(const RawCheck&) = delete;
    RawCheck& operator=(const RawCheck&) = delete;
    ~RawCheck();
    Result<void> wait();

private:
    std::thread m_thread;
    std::string m_error;
    bool m_joined = false;
};

}  // namespace cr::fw
