// The image directory: ImageWriter puts every file under a temporary name and commits them in
// finish() with the manifest last; ImageReader checks every byte it hands out.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cr/fw/image.hpp>
#include <cstring>

#include "image/internal.hpp"

namespace cr::fw {

using image_detail::bad_file_name;
using image_detail::where;

namespace {

constexpr size_t k_chunk = 1 << 20;
constexpr off_t k_max_manifest = off_t(1) << 30;

// Files stay under ".NAME.tmp" until finish(), so an older image in the directory stays whole
// until the new one is complete.
std::string temp_name(std::string_view name) {
    return "." + std::string(name) + ".tmp";
}

std::string join(const std::string& dir, std::string_view name) {
    return dir + "/" + std::string(name);
}

Result<void> write_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return Error::from_errno("write");
        p += w;
        n -= size_t(w);
    }
    return {};
}

// A new 0600 file whatever the umask; an old file of that name is truncated, a symlink refused.
Result<UniqueFd> create_0600(const std::string& path, int extra_flags) {
    UniqueFd fd(::open(path.c_str(), O_CREAT | O_CLOEXEC | O_NOFOLLOW | extra_flags, 0600));
    if (!fd) return Error::from_errno("open");
    if (::fchmod(fd.get(), 0600) != 0) return Error::from_errno("fchmod");
    return fd;
}

Result<void> write_file(const std::string& path, std::span<const uint8_t> bytes) {
    UniqueFd fd = CR_TRY(create_0600(path, O_WRONLY | O_TRUNC));
    CR_TRY(write_all(fd.get(), bytes.data(), bytes.size()));
    if (::close(fd.release()) != 0) return Error::from_errno("close");
    return {};
}

// Size and checksum of an open file, read from the start in chunks. H is Sha256 or Crc32c.
template <class H>
Result<std::pair<uint64_t, H>> digest_fd_read(int fd) {
    H h;
    std::vector<uint8_t> buf(k_chunk);
    uint64_t size = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(size));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read");
        if (n == 0) break;
        h.update(buf.data(), size_t(n));
        size += uint64_t(n);
    }
    return std::pair{size, h};
}

// The same through mappings of the page cache, which spares a copy per byte (page files are
// checked whole before a restore resumes anything).
template <class H>
Result<std::pair<uint64_t, H>> digest_fd(int fd) {
    constexpr size_t k_window = size_t(64) << 20;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return digest_fd_read<H>(fd);
    H h;
    uint64_t size = uint64_t(st.st_size);
    for (uint64_t off = 0; off < size; off += k_window) {
        size_t len = size_t(std::min<uint64_t>(k_window, size - off));
        void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, off_t(off));
        if (m == MAP_FAILED) return digest_fd_read<H>(fd);
        h.update(m, len);
        ::munmap(m, len);
    }
    // A file that grew meanwhile is not what was checked; the size check after this says so.
    if (::fstat(fd, &st) != 0) return Error::from_errno("fstat");
    return std::pair{uint64_t(st.st_size), h};
}

Error file_error(const std::string& dir, std::string_view file, std::string_view why) {
    return Error(where(dir, file) + ": " + std::string(why));
}

std::string size_mismatch(uint64_t want, uint64_t have) {
    return "size mismatch (manifest says " + std::to_string(want) + " bytes, file has " +
           std::to_string(have) + "; truncated or changed)";
}

constexpr const char* k_sha_mismatch = "sha256 mismatch (file corrupted or changed)";
constexpr const char* k_crc_mismatch = "crc32c mismatch (file corrupted or changed)";

// Opens a listed file of the image read-only; refuses what is not a regular file.
Result<UniqueFd> open_image_file(const std::string& dir, const std::string& file, off_t& size) {
    UniqueFd fd(::open(join(dir, file).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd && errno == ENOENT) return file_error(dir, file, "missing");
    if (!fd) return Error::from_errno("open").context(where(dir, file));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::from_errno("fstat").context(where(dir, file));
    if (!S_ISREG(st.st_mode)) return file_error(dir, file, "not a regular file");
    size = st.st_size;
    return fd;
}

// Streams the file through its checksum and compares size and checksum with the manifest.
Result<UniqueFd> open_checked(const std::string& dir, const ManifestSection& s) {
    off_t size = 0;
    UniqueFd fd = CR_TRY(open_image_file(dir, s.file, size));
    if (uint64_t(size) != s.size)
        return file_error(dir, s.file, size_mismatch(s.size, uint64_t(size)));
    if (s.checksum == Checksum::crc32c) {
        auto [read, crc] = CR_TRY_CTX(digest_fd<Crc32c>(fd.get()), where(dir, s.file));
        if (read != s.size) return file_error(dir, s.file, size_mismatch(s.size, read));
        if (crc.value() != s.crc32c) return file_error(dir, s.file, k_crc_mismatch);
    } else {
        auto [read, sha] = CR_TRY_CTX(digest_fd<Sha256>(fd.get()), where(dir, s.file));
        if (read != s.size) return file_error(dir, s.file, size_mismatch(s.size, read));
        if (sha.finish() != s.sha256) return file_error(dir, s.file, k_sha_mismatch);
    }
    return fd;
}

}  // namespace

// ---- ImageWriter ----

Result<ImageWriter> ImageWriter::create(const std::string& dir) {
    if (dir.empty()) return Error("image: empty directory name");
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return Error::from_errno("mkdir").context(where(dir, ""));
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return Error::from_errno("stat").context(where(dir, ""));
    if (!S_ISDIR(st.st_mode)) return Error(where(dir, "") + ": exists and is not a directory");
    // mkdir honours the umask and an existing directory may be open to others: force 0700.
    if (::chmod(dir.c_str(), 0700) != 0) return Error::from_errno("chmod").context(where(dir, ""));
    return ImageWriter(dir);
}

ImageWriter::ImageWriter(ImageWriter&& o) noexcept
    : m_dir(std::move(o.m_dir)),
      m_sections(std::move(o.m_sections)),
      m_created(std::move(o.m_created)),
      m_finished(o.m_finished),
      m_hash_lock(std::move(o.m_hash_lock)),
      m_raw_hash(std::move(o.m_raw_hash)) {
    o.m_created.clear();
    o.m_finished = true;
}

ImageWriter& ImageWriter::operator=(ImageWriter&& o) noexcept {
    if (this != &o) {
        if (!m_finished) abort();
        m_dir = std::move(o.m_dir);
        m_sections = std::move(o.m_sections);
        m_created = std::move(o.m_created);
        m_finished = o.m_finished;
        m_hash_lock = std::move(o.m_hash_lock);
        m_raw_hash = std::move(o.m_raw_hash);
        o.m_created.clear();
        o.m_finished = true;
    }
    return *this;
}

ImageWriter::~ImageWriter() {
    if (!m_finished) abort();
}

namespace {

Result<void> check_new_name(const std::string& dir, const std::string& file,
                            const std::vector<ManifestSection>& sections) {
    if (std::string why = bad_file_name(file); !why.empty())
        return Error(where(dir, "") + ": " + why);
    for (const ManifestSection& s : sections) {
        if (s.file == file) return file_error(dir, file, "written twice");
    }
    return {};
}

}  // namespace

Result<void> ImageWriter::write_section(const std::string& handler_id,
                                        const std::string& handler_version,
                                        const std::string& schema_id, const std::string& file,
                                        std::span<const uint8_t> bytes) {
    if (m_finished) return file_error(m_dir, file, "image already finished");
    CR_TRY(check_new_name(m_dir, file, m_sections));
    std::string tmp = temp_name(file);
    m_created.push_back(tmp);
    CR_TRY_CTX(write_file(join(m_dir, tmp), bytes), where(m_dir, file));
    m_sections.push_back({handler_id, handler_version, schema_id, file, bytes.size(),
                          Sha256::of(bytes.data(), bytes.size())});
    return {};
}

Result<UniqueFd> ImageWriter::create_raw(const std::string& handler_id,
                                         const std::string& handler_version,
                                         const std::string& file) {
    if (m_finished) return file_error(m_dir, file, "image already finished");
    CR_TRY(check_new_name(m_dir, file, m_sections));
    std::string tmp = temp_name(file);
    m_created.push_back(tmp);
    UniqueFd fd = CR_TRY_CTX(create_0600(join(m_dir, tmp), O_RDWR | O_TRUNC), where(m_dir, file));
    // Size and checksum are filled in by finish().
    m_sections.push_back({handler_id, handler_version, "", file, 0, Digest{}, Checksum::crc32c, 0});
    std::lock_guard lock(*m_hash_lock);
    m_raw_hash[file] = RawHash{};
    return fd;
}

Result<void> ImageWriter::hash_raw(const std::string& file, const void* data, size_t size) {
    std::lock_guard lock(*m_hash_lock);
    auto it = m_raw_hash.find(file);
    if (it == m_raw_hash.end()) return file_error(m_dir, file, "not a raw file of this image");
    it->second.crc.update(data, size);
    it->second.size += size;
    it->second.fed = true;
    return {};
}

Result<UniqueFd> ImageWriter::open_log(const std::string& file) {
    if (std::string why = bad_file_name(file); !why.empty())
        return Error(where(m_dir, "") + ": " + why);
    // Not in m_created: a log of a failed dump is what explains the failure, so abort() keeps it.
    return CR_TRY_CTX(create_0600(join(m_dir, file), O_WRONLY | O_APPEND), where(m_dir, file));
}

Result<void> ImageWriter::finish(Manifest manifest) {
    if (m_finished) return Error(where(m_dir, "") + ": image already finished");
    for (ManifestSection& s : m_sections) {
        auto h = m_raw_hash.find(s.file);
        if (h == m_raw_hash.end()) continue;  // a section: checksummed when written
        if (h->second.fed) {
            // Checksummed while written: only the size is checked here, no second pass.
            struct stat st {};
            if (::stat(join(m_dir, temp_name(s.file)).c_str(), &st) != 0)
                return Error::from_errno("stat").context(where(m_dir, s.file));
            if (uint64_t(st.st_size) != h->second.size)
                return file_error(m_dir, s.file,
                                  "written " + std::to_string(st.st_size) + " bytes but hashed " +
                                      std::to_string(h->second.size));
            s.size = h->second.size;
            s.crc32c = h->second.crc.value();
            continue;
        }
        UniqueFd fd(
            ::open(join(m_dir, temp_name(s.file)).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd) return Error::from_errno("open").context(where(m_dir, s.file));
        auto [size, crc] = CR_TRY_CTX(digest_fd<Crc32c>(fd.get()), where(m_dir, s.file));
        s.size = size;
        s.crc32c = crc.value();
    }
    manifest.sections = m_sections;
    std::vector<uint8_t> bytes = encode_manifest(manifest);
    std::string manifest_tmp = temp_name(k_manifest_file);
    if (std::find(m_created.begin(), m_created.end(), manifest_tmp) == m_created.end())
        m_created.push_back(manifest_tmp);
    CR_TRY_CTX(write_file(join(m_dir, manifest_tmp), bytes), where(m_dir, k_manifest_file));

    // Commit: no manifest while files are replaced, so a crash here leaves no image that lies.
    std::string manifest_path = join(m_dir, k_manifest_file);
    if (::unlink(manifest_path.c_str()) != 0 && errno != ENOENT)
        return Error::from_errno("unlink").context(where(m_dir, k_manifest_file));
    for (const ManifestSection& s : m_sections) {
        auto it = std::find(m_created.begin(), m_created.end(), temp_name(s.file));
        if (it == m_created.end()) continue;  // committed by an earlier, failed finish()
        if (::rename(join(m_dir, *it).c_str(), join(m_dir, s.file).c_str()) != 0)
            return Error::from_errno("rename").context(where(m_dir, s.file));
        *it = s.file;
    }
    if (::rename(join(m_dir, manifest_tmp).c_str(), manifest_path.c_str()) != 0)
        return Error::from_errno("rename").context(where(m_dir, k_manifest_file));
    std::replace(m_created.begin(), m_created.end(), manifest_tmp, std::string(k_manifest_file));
    m_finished = true;
    return {};
}

void ImageWriter::abort() {
    for (const std::string& name : m_created) ::unlink(join(m_dir, name).c_str());
    m_created.clear();
    m_sections.clear();
}

// ---- ImageReader ----

Result<ImageReader> ImageReader::open(const std::string& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        if (errno == ENOENT) return Error(where(dir, "") + ": no such directory");
        return Error::from_errno("stat").context(where(dir, ""));
    }
    if (!S_ISDIR(st.st_mode)) return Error(where(dir, "") + ": not a directory");

    off_t size = 0;
    auto opened = open_image_file(dir, k_manifest_file, size);
    if (!opened) {
        if (::access(join(dir, k_manifest_file).c_str(), F_OK) != 0 && errno == ENOENT)
            return file_error(dir, k_manifest_file, "missing (not a cr image?)");
        return std::move(opened).error();
    }
    if (size > k_max_manifest) return file_error(dir, k_manifest_file, "too large");
    std::vector<uint8_t> bytes(size_t(size), 0);
    size_t got = 0;
    while (got < bytes.size()) {
        ssize_t n = ::pread(opened->get(), bytes.data() + got, bytes.size() - got, off_t(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read").context(where(dir, k_manifest_file));
        if (n == 0) return file_error(dir, k_manifest_file, "shrank while being read");
        got += size_t(n);
    }
    ImageReader r;
    r.m_dir = dir;
    r.m_manifest = CR_TRY(decode_manifest(bytes, where(dir, k_manifest_file)));
    return r;
}

const ManifestSection* ImageReader::find(const std::string& file) const {
    auto it = std::find_if(m_manifest.sections.begin(), m_manifest.sections.end(),
                           [&](const ManifestSection& s) { return s.file == file; });
    return it == m_manifest.sections.end() ? nullptr : &*it;
}

Result<std::span<const uint8_t>> ImageReader::section(const std::string& file) {
    if (auto it = m_cache.find(file); it != m_cache.end())
        return std::span<const uint8_t>(it->second);
    const ManifestSection* s = find(file);
    if (!s) return file_error(m_dir, file, "not listed in the manifest");
    off_t size = 0;
    UniqueFd fd = CR_TRY(open_image_file(m_dir, file, size));
    if (uint64_t(size) != s->size)
        return file_error(m_dir, file, size_mismatch(s->size, uint64_t(size)));
    std::vector<uint8_t> bytes(s->size);
    size_t got = 0;
    while (got < bytes.size()) {
        ssize_t n = ::pread(fd.get(), bytes.data() + got, bytes.size() - got, off_t(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read").context(where(m_dir, file));
        if (n == 0) return file_error(m_dir, file, size_mismatch(s->size, got));
        got += size_t(n);
    }
    if (Sha256::of(bytes.data(), bytes.size()) != s->sha256)
        return file_error(m_dir, file, k_sha_mismatch);
    // A section that names a schema must carry that schema's FlatBuffers file identifier.
    if (s->schema_id.size() == 4 && bytes.size() >= 8 &&
        std::memcmp(bytes.data() + 4, s->schema_id.data(), 4) != 0) {
        std::string id(reinterpret_cast<const char*>(bytes.data()) + 4, 4);
        std::replace_if(
            id.begin(), id.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
        return file_error(m_dir, file,
                          "bad file identifier \"" + id + "\" (expected \"" + s->schema_id + "\")");
    }
    auto [it, inserted] = m_cache.emplace(file, std::move(bytes));
    return std::span<const uint8_t>(it->second);
}

Result<UniqueFd> ImageReader::open_raw(const std::string& file) {
    const ManifestSection* s = find(file);
    if (!s) return file_error(m_dir, file, "not listed in the manifest");
    if (m_raw_checked[file] || m_defer_raw) {
        off_t size = 0;
        UniqueFd fd = CR_TRY(open_image_file(m_dir, file, size));
        if (uint64_t(size) != s->size) return file_error(m_dir, file, size_mismatch(s->size, uint64_t(size)));
        return fd;
    }
    UniqueFd fd = CR_TRY(open_checked(m_dir, *s));
    m_raw_checked[file] = true;
    return fd;
}

namespace {

Error joined(const std::vector<std::string>& bad) {
    std::string m = bad.front();
    for (size_t i = 1; i < bad.size(); ++i) m += "; " + bad[i];
    return Error(std::move(m));
}

}  // namespace

Result<void> ImageReader::verify_sections() {
    std::vector<std::string> bad;
    for (const ManifestSection& s : m_manifest.sections) {
        if (s.schema_id.empty()) continue;
        if (auto bytes = section(s.file); !bytes) bad.push_back(bytes.error().message());
    }
    if (bad.empty()) return {};
    return joined(bad);
}

Result<void> ImageReader::verify_raw() const {
    std::vector<std::string> bad;
    for (const ManifestSection& s : m_manifest.sections) {
        if (!s.schema_id.empty()) continue;
        if (auto fd = open_checked(m_dir, s); !fd) bad.push_back(fd.error().message());
    }
    if (bad.empty()) return {};
    return joined(bad);
}

Result<void> ImageReader::verify_all() {
    std::vector<std::string> bad;
    for (const ManifestSection& s : m_manifest.sections) {
        // Raw files are streamed; sections are read whole, as restore will need them anyway.
        Result<void> r;
        if (s.schema_id.empty()) {
            auto fd = open_raw(s.file);
            if (!fd) r = std::move(fd).error();
        } else {
            auto bytes = section(s.file);
            if (!bytes) r = std::move(bytes).error();
        }
        if (!r) bad.push_back(r.error().message());
    }
    if (bad.empty()) return {};
    std::string m = bad.front();
    for (size_t i = 1; i < bad.size(); ++i) m += "; " + bad[i];
    return Error(std::move(m));
}

}  // namespace cr::fw
