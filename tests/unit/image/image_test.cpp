// The image directory: round trip, permissions, and every corruption a reader must catch.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cr/fw/image.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace cr::fw;

std::vector<uint8_t> bytes_of(const std::string& s) {
    return {s.begin(), s.end()};
}

// A section body that carries a FlatBuffers file identifier at offset 4, as real sections do.
std::vector<uint8_t> section_body(const char* id, size_t n) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 7 + 3);
    std::memcpy(b.data() + 4, id, 4);
    return b;
}

std::vector<uint8_t> slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::vector<uint8_t>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void flip_byte(const fs::path& p, size_t at) {
    auto b = slurp(p);
    ASSERT_LT(at, b.size());
    b[at] ^= 0x40;
    spit(p, b);
}

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
}

std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename());
    return out;
}

Manifest full_manifest() {
    Manifest m;
    m.format_version = 1;
    m.cr_version = "0.1.0";
    m.kernel = "6.18.0";
    m.arch = "x86_64";
    m.created_unix = 1700000000;
    m.root_pid = 4242;
    m.tasks.push_back({4242, 0, 4242, 4200, {4242, 4243, 4250}, 3, "sleep loop", 0x7f0000000000});
    m.tasks.push_back({4244, 4242, 4242, 4200, {4244}, 0, "sleep", 0});
    m.tasks[1].exit_status = 9;
    m.handlers.push_back({"cr.memory.vma", "1.2.3"});
    m.handlers.push_back({"cr.files.pipe", "0.9"});
    m.fds.push_back({4242, 0, 17, false, "tty", "cr.files.tty"});
    m.fds.push_back({4242, 5, 18, true, "pipe", "cr.files.pipe"});
    m.parent_dir = "../previous";
    return m;
}

class ImageTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/cr-image-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        m_root = tmpl;
        m_dir = m_root / "img";
    }
    void TearDown() override { fs::remove_all(m_root); }

    // One image: a section, a raw file, a manifest with every field.
    void write_image(const std::string& raw_content = std::string(10000, 'p')) {
        auto w = ImageWriter::create(m_dir);
        ASSERT_TRUE(w.ok()) << w.error().message();
        auto s = w->write_section("cr.memory.vma", "1.2.3", "VMAS", "cr.memory.vma.cr",
                                  section_body("VMAS", 300));
        ASSERT_TRUE(s.ok()) << s.error().message();
        auto fd = w->create_raw("cr.memory.vma", "1.2.3", "pages-4242.img");
        ASSERT_TRUE(fd.ok()) << fd.error().message();
        ASSERT_EQ(write(fd->get(), raw_content.data(), raw_content.size()),
                  ssize_t(raw_content.size()));
        auto f = w->finish(full_manifest());
        ASSERT_TRUE(f.ok()) << f.error().message();
    }

    fs::path m_root;
    fs::path m_dir;
};

TEST(ImageManifest, EncodeDecodeEveryField) {
    Manifest m = full_manifest();
    m.sections.push_back(
        {"cr.memory.vma", "1.2.3", "VMAS", "cr.memory.vma.cr", 300, Sha256::of("x", 1)});
    auto bytes = encode_manifest(m);
    auto r = decode_manifest(bytes, "test");
    ASSERT_TRUE(r.ok()) << r.error().message();
    const Manifest& d = *r;
    EXPECT_EQ(d.format_version, 1u);
    EXPECT_EQ(d.cr_version, m.cr_version);
    EXPECT_EQ(d.kernel, m.kernel);
    EXPECT_EQ(d.arch, m.arch);
    EXPECT_EQ(d.created_unix, m.created_unix);
    EXPECT_EQ(d.root_pid, 4242);
    EXPECT_EQ(d.parent_dir, "../previous");
    ASSERT_EQ(d.tasks.size(), 2u);
    EXPECT_EQ(d.tasks[0].pid, 4242);
    EXPECT_EQ(d.tasks[0].ppid, 0);
    EXPECT_EQ(d.tasks[0].pgid, 4242);
    EXPECT_EQ(d.tasks[0].sid, 4200);
    EXPECT_EQ(d.tasks[0].tids, (std::vector<pid_t>{4242, 4243, 4250}));
    EXPECT_EQ(d.tasks[0].flags, 3u);
    EXPECT_EQ(d.tasks[0].comm, "sleep loop");
    EXPECT_EQ(d.tasks[0].stub_area, 0x7f0000000000u);
    EXPECT_EQ(d.tasks[1].ppid, 4242);
    EXPECT_EQ(d.tasks[0].exit_status, 0);
    EXPECT_EQ(d.tasks[1].exit_status, 9);
    ASSERT_EQ(d.handlers.size(), 2u);
    EXPECT_EQ(d.handlers[1].id, "cr.files.pipe");
    EXPECT_EQ(d.handlers[1].version, "0.9");
    ASSERT_EQ(d.fds.size(), 2u);
    EXPECT_EQ(d.fds[1].pid, 4242);
    EXPECT_EQ(d.fds[1].fd, 5);
    EXPECT_EQ(d.fds[1].object_id, 18u);
    EXPECT_TRUE(d.fds[1].cloexec);
    EXPECT_FALSE(d.fds[0].cloexec);
    EXPECT_EQ(d.fds[1].kind, "pipe");
    EXPECT_EQ(d.fds[1].handler_id, "cr.files.pipe");
    ASSERT_EQ(d.sections.size(), 1u);
    EXPECT_EQ(d.sections[0].handler_id, "cr.memory.vma");
    EXPECT_EQ(d.sections[0].handler_version, "1.2.3");
    EXPECT_EQ(d.sections[0].schema_id, "VMAS");
    EXPECT_EQ(d.sections[0].file, "cr.memory.vma.cr");
    EXPECT_EQ(d.sections[0].size, 300u);
    EXPECT_EQ(d.sections[0].sha256, Sha256::of("x", 1));
}

TEST(ImageManifest, DecodeRefusesBadNamesAndValues) {
    for (std::string name : {"../etc/passwd", "a/b", ".", "..", "", "manifest.cr"}) {
        Manifest m = full_manifest();
        m.sections.push_back({"h", "1", "", name, 1, Sha256::of("x", 1)});
        auto r = decode_manifest(encode_manifest(m), "image /x: manifest.cr");
        ASSERT_FALSE(r.ok()) << "accepted \"" << name << "\"";
        EXPECT_EQ(r.error().message().rfind("image /x: manifest.cr: section entry: ", 0), 0u)
            << r.error().message();
    }
    Manifest twice = full_manifest();
    twice.sections.push_back({"h", "1", "", "a", 1, Sha256::of("x", 1)});
    twice.sections.push_back({"h", "1", "", "a", 1, Sha256::of("x", 1)});
    EXPECT_FALSE(decode_manifest(encode_manifest(twice), "w").ok());
    Manifest huge = full_manifest();
    huge.sections.push_back({"h", "1", "", "a", uint64_t(1) << 62, Sha256::of("x", 1)});
    EXPECT_FALSE(decode_manifest(encode_manifest(huge), "w").ok());
    Manifest version = full_manifest();
    version.format_version = 99;
    auto r = decode_manifest(encode_manifest(version), "w");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("unsupported format version 99"), std::string::npos);
    Manifest pid = full_manifest();
    pid.tasks[0].pid = -3;
    EXPECT_FALSE(decode_manifest(encode_manifest(pid), "w").ok());
}

TEST_F(ImageTest, RoundTrip) {
    const std::string raw(10000, 'p');
    write_image(raw);
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->dir(), m_dir.string());
    EXPECT_EQ(r->manifest().root_pid, 4242);
    EXPECT_EQ(r->manifest().tasks[0].comm, "sleep loop");
    ASSERT_EQ(r->manifest().sections.size(), 2u);

    const ManifestSection* s = r->find("cr.memory.vma.cr");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->handler_id, "cr.memory.vma");
    EXPECT_EQ(s->schema_id, "VMAS");
    EXPECT_EQ(s->size, 300u);
    auto body = section_body("VMAS", 300);
    EXPECT_EQ(s->checksum, cr::fw::Checksum::sha256);
    EXPECT_EQ(s->sha256, Sha256::of(body.data(), body.size()));
    auto sec = r->section("cr.memory.vma.cr");
    ASSERT_TRUE(sec.ok()) << sec.error().message();
    EXPECT_EQ(std::vector<uint8_t>(sec->begin(), sec->end()), body);
    auto again = r->section("cr.memory.vma.cr");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->data(), sec->data());  // cached

    const ManifestSection* p = r->find("pages-4242.img");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->schema_id, "");
    EXPECT_EQ(p->size, raw.size());
    EXPECT_EQ(p->checksum, cr::fw::Checksum::crc32c);
    EXPECT_EQ(p->crc32c, cr::fw::Crc32c::of(raw.data(), raw.size()));
    auto fd = r->open_raw("pages-4242.img");
    ASSERT_TRUE(fd.ok()) << fd.error().message();
    std::string back(raw.size() + 1, '\0');
    EXPECT_EQ(read(fd->get(), back.data(), back.size()), ssize_t(raw.size()));
    back.resize(raw.size());
    EXPECT_EQ(back, raw);
    EXPECT_EQ(fcntl(fd->get(), F_GETFL) & O_ACCMODE, O_RDONLY);
    EXPECT_TRUE(fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
    auto fd2 = r->open_raw("pages-4242.img");
    EXPECT_TRUE(fd2.ok());

    auto v = r->verify_all();
    EXPECT_TRUE(v.ok()) << v.error().message();
    EXPECT_EQ(names_in(m_dir),
              (std::set<std::string>{"manifest.cr", "cr.memory.vma.cr", "pages-4242.img"}));
}

TEST_F(ImageTest, Permissions) {
    mode_t old = umask(0);
    fs::create_directory(m_dir);
    fs::permissions(m_dir, fs::perms(0755));
    write_image();
    auto w = ImageWriter::create(m_dir);
    ASSERT_TRUE(w.ok());
    auto log = w->open_log("dump.log");
    umask(old);
    ASSERT_TRUE(log.ok()) << log.error().message();
    EXPECT_EQ(mode_of(m_dir), 0700u);
    for (const char* f : {"manifest.cr", "cr.memory.vma.cr", "pages-4242.img", "dump.log"})
        EXPECT_EQ(mode_of(m_dir / f), 0600u) << f;

    auto fresh = ImageWriter::create(m_root / "new");
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(mode_of(m_root / "new"), 0700u);
}

TEST_F(ImageTest, PathThatIsAFileIsRefused) {
    spit(m_dir, bytes_of("not a directory"));
    auto w = ImageWriter::create(m_dir);
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.error().message().find("image " + m_dir.string()), std::string::npos);
    EXPECT_NE(w.error().message().find("not a directory"), std::string::npos);
}

TEST_F(ImageTest, FileNamesWithSlashRefused) {
    auto w = ImageWriter::create(m_dir);
    ASSERT_TRUE(w.ok());
    for (std::string bad : {"../x", "a/b", "/etc/passwd", ".", "..", "", "manifest.cr"}) {
        auto s = w->write_section("h", "1", "ABCD", bad, bytes_of("data"));
        EXPECT_FALSE(s.ok()) << bad;
        auto fd = w->create_raw("h", "1", bad);
        EXPECT_FALSE(fd.ok()) << bad;
        if (!fd.ok()) {
            EXPECT_EQ(fd.error().message().rfind("image " + m_dir.string(), 0), 0u);
        }
    }
    auto s = w->write_section("h", "1", "ABCD", "a/b", bytes_of("data"));
    EXPECT_NE(s.error().message().find("'/'"), std::string::npos) << s.error().message();
    EXPECT_FALSE(fs::exists(m_root / "x"));
    EXPECT_TRUE(w->write_section("h", "1", "", "a", bytes_of("x")).ok());
    EXPECT_FALSE(w->write_section("h", "1", "", "a", bytes_of("y")).ok());  // twice
}

TEST_F(ImageTest, MissingManifest) {
    fs::create_directory(m_dir);
    auto r = ImageReader::open(m_dir);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message(),
              "image " + m_dir.string() + ": manifest.cr: missing (not a cr image?)");
    auto none = ImageReader::open(m_root / "nothing");
    ASSERT_FALSE(none.ok());
    EXPECT_NE(none.error().message().find("nothing"), std::string::npos);
}

TEST_F(ImageTest, FlippedByteInManifest) {
    write_image();
    flip_byte(m_dir / "manifest.cr", 40);
    auto r = ImageReader::open(m_dir);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(
        r.error().message(),
        "image " + m_dir.string() + ": manifest.cr: sha256 mismatch (file corrupted or changed)");
}

TEST_F(ImageTest, BadIdentifierInManifest) {
    write_image();
    auto b = slurp(m_dir / "manifest.cr");
    std::memcpy(b.data() + 4, "XXXX", 4);
    Digest d = Sha256::of(b.data(), b.size() - 32);  // a valid checksum over the wrong identifier
    std::memcpy(b.data() + b.size() - 32, d.data(), 32);
    spit(m_dir / "manifest.cr", b);
    auto r = ImageReader::open(m_dir);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message().rfind(
                  "image " + m_dir.string() + ": manifest.cr: bad file identifier \"XXXX\"", 0),
              0u)
        << r.error().message();
}

TEST_F(ImageTest, VerifierCatchesBrokenManifest) {
    write_image();
    auto b = slurp(m_dir / "manifest.cr");
    uint32_t root = 0xfffffff0;  // root table offset far outside the buffer
    std::memcpy(b.data(), &root, 4);
    Digest d = Sha256::of(b.data(), b.size() - 32);
    std::memcpy(b.data() + b.size() - 32, d.data(), 32);
    spit(m_dir / "manifest.cr", b);
    auto r = ImageReader::open(m_dir);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("manifest.cr: flatbuffers verifier failed"),
              std::string::npos)
        << r.error().message();
}

TEST_F(ImageTest, TruncatedManifest) {
    write_image();
    fs::resize_file(m_dir / "manifest.cr", 20);
    auto r = ImageReader::open(m_dir);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("manifest.cr: truncated"), std::string::npos)
        << r.error().message();
}

TEST_F(ImageTest, FlippedByteInSection) {
    write_image();
    flip_byte(m_dir / "cr.memory.vma.cr", 150);
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto s = r->section("cr.memory.vma.cr");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().message(),
              "image " + m_dir.string() +
                  ": cr.memory.vma.cr: sha256 mismatch (file corrupted or changed)");
    EXPECT_FALSE(r->verify_all().ok());
}

TEST_F(ImageTest, FlippedByteInRawFile) {
    write_image();
    flip_byte(m_dir / "pages-4242.img", 9999);
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto fd = r->open_raw("pages-4242.img");
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().message(),
              "image " + m_dir.string() +
                  ": pages-4242.img: crc32c mismatch (file corrupted or changed)");
    auto v = r->verify_all();
    ASSERT_FALSE(v.ok());
    EXPECT_NE(v.error().message().find("pages-4242.img: crc32c mismatch"), std::string::npos);
    EXPECT_TRUE(r->section("cr.memory.vma.cr").ok());
}

TEST_F(ImageTest, TruncatedAndMissingFiles) {
    write_image();
    fs::resize_file(m_dir / "pages-4242.img", 4096);
    fs::resize_file(m_dir / "cr.memory.vma.cr", 10);
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto fd = r->open_raw("pages-4242.img");
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().message(), "image " + m_dir.string() +
                                        ": pages-4242.img: size mismatch (manifest says 10000 "
                                        "bytes, file has 4096; truncated or changed)");
    auto s = r->section("cr.memory.vma.cr");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("cr.memory.vma.cr: size mismatch"), std::string::npos);

    fs::remove(m_dir / "pages-4242.img");
    auto gone = r->open_raw("pages-4242.img");
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().message(), "image " + m_dir.string() + ": pages-4242.img: missing");
    auto v = r->verify_all();
    ASSERT_FALSE(v.ok());
    EXPECT_NE(v.error().message().find("cr.memory.vma.cr: size mismatch"), std::string::npos);
    EXPECT_NE(v.error().message().find("pages-4242.img: missing"), std::string::npos);
}

TEST_F(ImageTest, UnlistedFileAndWrongSchemaIdentifier) {
    auto w = ImageWriter::create(m_dir);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->write_section("h", "1", "GOOD", "h.cr", section_body("EVIL", 64)).ok());
    ASSERT_TRUE(w->finish(full_manifest()).ok());
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto s = r->section("h.cr");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message().find("h.cr: bad file identifier \"EVIL\" (expected \"GOOD\")"),
              std::string::npos)
        << s.error().message();
    auto u = r->section("other.cr");
    ASSERT_FALSE(u.ok());
    EXPECT_EQ(u.error().message(),
              "image " + m_dir.string() + ": other.cr: not listed in the manifest");
    EXPECT_FALSE(r->open_raw("../manifest.cr").ok());
}

TEST_F(ImageTest, AbortRemovesFiles) {
    {
        auto w = ImageWriter::create(m_dir);
        ASSERT_TRUE(w.ok());
        ASSERT_TRUE(w->write_section("h", "1", "", "a.cr", bytes_of("aaa")).ok());
        auto fd = w->create_raw("h", "1", "pages-1.img");
        ASSERT_TRUE(fd.ok());
        ASSERT_EQ(write(fd->get(), "zz", 2), 2);
        EXPECT_FALSE(names_in(m_dir).empty());
        w->abort();
        EXPECT_TRUE(names_in(m_dir).empty());
    }
    {
        auto w = ImageWriter::create(m_dir);
        ASSERT_TRUE(w.ok());
        ASSERT_TRUE(w->write_section("h", "1", "", "a.cr", bytes_of("aaa")).ok());
        ASSERT_TRUE(w->create_raw("h", "1", "pages-1.img").ok());
        ImageWriter moved = std::move(*w);  // the moved-from writer must not remove anything
    }                                       // destructor of an unfinished writer aborts
    EXPECT_TRUE(names_in(m_dir).empty());
}

TEST_F(ImageTest, OlderImageSurvivesAnAbortedWriterAndIsReplacedByAFinishedOne) {
    write_image(std::string(5000, 'o'));
    {
        auto w = ImageWriter::create(m_dir);
        ASSERT_TRUE(w.ok());
        ASSERT_TRUE(
            w->write_section("x", "1", "VMAS", "cr.memory.vma.cr", section_body("VMAS", 9)).ok());
        auto fd = w->create_raw("x", "1", "pages-4242.img");
        ASSERT_TRUE(fd.ok());
        ASSERT_EQ(write(fd->get(), "new", 3), 3);
    }
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->find("pages-4242.img")->size, 5000u);
    EXPECT_TRUE(r->verify_all().ok());
    EXPECT_EQ(names_in(m_dir),
              (std::set<std::string>{"manifest.cr", "cr.memory.vma.cr", "pages-4242.img"}));

    write_image(std::string(7000, 'n'));
    auto n = ImageReader::open(m_dir);
    ASSERT_TRUE(n.ok()) << n.error().message();
    EXPECT_EQ(n->find("pages-4242.img")->size, 7000u);
    EXPECT_TRUE(n->verify_all().ok());
}

TEST_F(ImageTest, LogIsAppendedAndNotListed) {
    auto w = ImageWriter::create(m_dir);
    ASSERT_TRUE(w.ok());
    {
        auto log = w->open_log("dump.log");
        ASSERT_TRUE(log.ok());
        ASSERT_EQ(write(log->get(), "one\n", 4), 4);
    }
    {
        auto log = w->open_log("dump.log");
        ASSERT_TRUE(log.ok());
        ASSERT_EQ(write(log->get(), "two\n", 4), 4);
    }
    EXPECT_FALSE(w->open_log("../dump.log").ok());
    ASSERT_TRUE(w->finish(full_manifest()).ok());
    EXPECT_EQ(slurp(m_dir / "dump.log"), bytes_of("one\ntwo\n"));
    auto r = ImageReader::open(m_dir);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->find("dump.log"), nullptr);
    EXPECT_TRUE(r->manifest().sections.empty());
}

TEST_F(ImageTest, FinishTwiceAndWritesAfterFinishFail) {
    auto w = ImageWriter::create(m_dir);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->finish(full_manifest()).ok());
    EXPECT_FALSE(w->finish(full_manifest()).ok());
    EXPECT_FALSE(w->write_section("h", "1", "", "late.cr", bytes_of("x")).ok());
    EXPECT_FALSE(w->create_raw("h", "1", "late.img").ok());
}

}  // namespace
