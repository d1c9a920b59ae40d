// Loading handler shared objects: good ones, every refusal, and the messages a user sees.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cr/fw/loader.hpp>
#include <cr/sdk/log.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using cr::strf;
using cr::fw::load_directories;
using cr::fw::load_handler;
using testing::ElementsAre;
using testing::HasSubstr;

namespace {

std::string fixture(const char* name) {
    return strf("%s/%s.so", CR_TEST_FIXTURE_DIR, name);
}

// A private directory under /tmp, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "cr-loader-test-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
        m_path = tmpl;
        chmod(0755);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(m_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    [[nodiscard]] const std::string& path() const { return m_path; }
    void chmod(mode_t mode) const { EXPECT_EQ(::chmod(m_path.c_str(), mode), 0); }
    // Copies a fixture in as `as`, mode 0755; returns its path.
    [[nodiscard]] std::string add(const char* fixture_name, const std::string& as) const {
        std::string to = m_path + "/" + as;
        fs::copy_file(fixture(fixture_name), to, fs::copy_options::overwrite_existing);
        EXPECT_EQ(::chmod(to.c_str(), 0755), 0);
        return to;
    }

private:
    std::string m_path;
};

std::string load_error(const std::string& path, bool trusted = true) {
    auto r = load_handler(path, trusted);
    if (r.ok()) return "(loaded " + r->id + ")";
    return r.error().message();
}

}  // namespace

TEST(LoaderTest, LoadsHandlerDeclaredWithSdkMacro) {
    auto r = load_handler(fixture("good"), true);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->path, fixture("good"));
    EXPECT_EQ(r->id, "cr.test.good");
    EXPECT_EQ(r->version, "1.2.3");
    EXPECT_EQ(r->summary, "loader test fixture");
    EXPECT_THAT(r->claims, ElementsAre("test:good"));
    EXPECT_TRUE(r->depends.empty());
    EXPECT_THAT(r->schema_ids, ElementsAre("CRTG"));
    ASSERT_NE(r->info, nullptr);
    ASSERT_NE(r->info->ops, nullptr);
    EXPECT_NE(r->info->ops->pre_dump, nullptr);
    EXPECT_EQ(r->info->ops->dump_task, nullptr);
    EXPECT_NE(r->library, nullptr);
}

TEST(LoaderTest, CopiesDependsAndClaims) {
    auto r = load_handler(fixture("depends_good"), true);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_THAT(r->depends, ElementsAre("cr.test.good"));
    EXPECT_TRUE(r->claims.empty());
    EXPECT_TRUE(r->schema_ids.empty());
}

TEST(LoaderTest, AcceptsThirdPartyDottedId) {
    auto r = load_handler(fixture("third_party"), true);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->id, "acme.widget-x.core");
}

TEST(LoaderTest, AcceptsNewerMinorWithLargerDescriptor) {
    auto r = load_handler(fixture("newer_minor"), true);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->id, "cr.test.newer_minor");
    EXPECT_EQ(r->info->abi_minor, CR_ABI_MINOR + 3);
}

TEST(LoaderTest, RefusesOtherAbiMajorNamingBothVersions) {
    std::string path = fixture("abi2");
    EXPECT_EQ(
        load_error(path),
        strf("handler %s: built for handler ABI 2.%d, this cr speaks %d.%d (rebuild it against this "
             "cr's SDK)",
             path.c_str(), CR_ABI_MINOR, CR_ABI_MAJOR, CR_ABI_MINOR));
}

TEST(LoaderTest, RefusesFileWithoutEntrySymbol) {
    std::string path = fixture("no_symbol");
    EXPECT_EQ(load_error(path),
              "handler " + path + ": symbol cr_handler_get_info not found (not a cr handler)");
}

TEST(LoaderTest, QuotesDlopenErrorWithPath) {
    std::string path = fixture("undefined");
    std::string e = load_error(path);
    EXPECT_THAT(e, testing::StartsWith("handler " + path + ": dlopen failed: "));
    EXPECT_THAT(e, HasSubstr("cr_fixture_undefined_function"));
}

TEST(LoaderTest, RefusesMissingFile) {
    std::string path = std::string(CR_TEST_FIXTURE_DIR) + "/does_not_exist.so";
    EXPECT_EQ(load_error(path), "handler " + path + ": No such file or directory");
}

TEST(LoaderTest, RefusesNullDescriptor) {
    std::string path = fixture("null_info");
    EXPECT_EQ(load_error(path), "handler " + path + ": cr_handler_get_info returned NULL");
}

TEST(LoaderTest, RefusesShortDescriptorFromNewerMinor) {
    std::string path = fixture("newer_minor_short");
    std::string e = load_error(path);
    EXPECT_THAT(e, testing::StartsWith("handler " + path + ": cr_handler_info is "));
    EXPECT_THAT(e, HasSubstr(strf("this cr reads %zu", sizeof(cr_handler_info))));
}

TEST(LoaderTest, RefusesShortOpsTable) {
    std::string path = fixture("short_ops");
    EXPECT_EQ(load_error(path),
              strf("handler %s (cr.test.descriptor): cr_handler_ops is 8 bytes, this cr reads %zu",
                   path.c_str(), sizeof(cr_handler_ops)));
}

TEST(LoaderTest, RefusesMissingOrMalformedFields) {
    std::string null_id = fixture("null_id");
    EXPECT_EQ(load_error(null_id), "handler " + null_id + ": descriptor has no id");
    std::string bad_id = fixture("bad_id");
    EXPECT_EQ(load_error(bad_id), "handler " + bad_id +
                                      ": id 'Cr.Test' is not a handler id (cr.<category>.<name>, "
                                      "or a dotted lowercase id for "
                                      "third parties)");
    std::string short_id = fixture("short_builtin_id");
    EXPECT_THAT(load_error(short_id), HasSubstr("id 'cr.test' is not a handler id"));
    std::string bad_version = fixture("bad_version");
    EXPECT_EQ(
        load_error(bad_version),
        "handler " + bad_version + " (cr.test.descriptor): version '1.0' is not MAJOR.MINOR.PATCH");
    std::string no_ops = fixture("no_ops");
    EXPECT_EQ(load_error(no_ops),
              "handler " + no_ops + " (cr.test.descriptor): descriptor has no ops table");
}

TEST(LoaderTest, WorldWritableDirectoryRefusedUnlessTrusted) {
    TempDir dir;
    std::string path = dir.add("good", "good.so");
    dir.chmod(0777);
    EXPECT_EQ(
        load_error(path, false),
        "handler " + path + ": directory " + dir.path() +
            " is world-writable (refusing to load; fix its mode or name the file with --plugins)");
    auto trusted = load_handler(path, true);
    ASSERT_TRUE(trusted.ok()) << trusted.error().message();
    EXPECT_EQ(trusted->id, "cr.test.good");
}

TEST(LoaderTest, GroupWritableFileRefused) {
    TempDir dir;
    std::string path = dir.add("good", "good.so");
    ASSERT_EQ(::chmod(path.c_str(), 0775), 0);
    EXPECT_EQ(load_error(path, false),
              "handler " + path + ": file " + path +
                  " is group-writable (refusing to load; fix its mode or name the "
                  "file with --plugins)");
}

TEST(LoaderTest, FileNotOwnedByRootRefusedWhenRoot) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    TempDir dir;
    std::string path = dir.add("good", "good.so");
    ASSERT_EQ(::chown(path.c_str(), 1234, 1234), 0);
    EXPECT_THAT(load_error(path, false),
                HasSubstr("file " + path + " is owned by uid 1234, not root"));
}

TEST(LoaderTest, SafeCopyLoadsUntrusted) {
    TempDir dir;
    std::string path = dir.add("good", "good.so");
    auto r = load_handler(path, false);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->path, path);
}

TEST(LoaderTest, SymlinkIntoUnsafeDirectoryRefused) {
    TempDir safe;
    TempDir unsafe;
    std::string target = unsafe.add("good", "good.so");
    unsafe.chmod(0777);
    std::string link = safe.path() + "/good.so";
    fs::create_symlink(target, link);
    EXPECT_THAT(load_error(link, false),
                HasSubstr("directory " + unsafe.path() + " is world-writable"));
}

TEST(LoaderTest, CheckPathSafe) {
    TempDir dir;
    EXPECT_TRUE(cr::fw::check_path_safe(dir.path()).ok());
    dir.chmod(0775);
    auto r = cr::fw::check_path_safe(dir.path());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message(), "directory " + dir.path() + " is group-writable");
    EXPECT_FALSE(cr::fw::check_path_safe(dir.path() + "/missing").ok());
}

TEST(LoaderDirectoriesTest, SortedByNameFirstIdWins) {
    TempDir first;
    TempDir second;
    std::string good = first.add("good", "b_good.so");
    std::string plain = first.add("plain", "a_plain.so");
    (void)second.add("good", "a_good_again.so");
    std::string third = second.add("third_party", "z_third.so");
    std::ofstream(first.path() + "/README") << "not a handler\n";
    std::ofstream(first.path() + "/notes.so.txt") << "not a handler\n";
    fs::create_directory(first.path() + "/sub.so");

    auto r = load_directories({first.path(), first.path() + "/missing", second.path()});
    ASSERT_TRUE(r.ok()) << r.error().message();
    std::vector<std::string> ids;
    std::vector<std::string> paths;
    for (const auto& h : *r) {
        ids.push_back(h.id);
        paths.push_back(h.path);
    }
    EXPECT_THAT(ids, ElementsAre("cr.test.descriptor", "cr.test.good", "acme.widget-x.core"));
    EXPECT_THAT(paths, ElementsAre(plain, good, third));
}

TEST(LoaderDirectoriesTest, UnsafeDirectoryRefused) {
    TempDir dir;
    (void)dir.add("good", "good.so");
    dir.chmod(0777);
    auto r = load_directories({dir.path()});
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.error().message(), HasSubstr("directory " + dir.path() + " is world-writable"));
}

TEST(LoaderDirectoriesTest, BrokenHandlerNamed) {
    TempDir dir;
    (void)dir.add("good", "good.so");
    std::string broken = dir.add("no_symbol", "no_symbol.so");
    auto r = load_directories({dir.path()});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message(),
              "handler " + broken + ": symbol cr_handler_get_info not found (not a cr handler)");
}

TEST(LoaderSearchPathTest, EnvironmentFirstThenInstallTree) {
    const char* old = std::getenv("CR_PLUGIN_PATH");
    std::string saved = old != nullptr ? old : "";
    ::setenv("CR_PLUGIN_PATH", ":/opt/a::/opt/b:", 1);
    auto dirs = cr::fw::default_search_path();
    if (old != nullptr) {
        ::setenv("CR_PLUGIN_PATH", saved.c_str(), 1);
    } else {
        ::unsetenv("CR_PLUGIN_PATH");
    }
    ASSERT_GE(dirs.size(), 3U);
    EXPECT_EQ(dirs[0], "/opt/a");
    EXPECT_EQ(dirs[1], "/opt/b");
    fs::path exe_dir = fs::read_symlink("/proc/self/exe").parent_path();
    fs::path expected = (exe_dir / ".." / "lib" / "cr" / "handlers").lexically_normal();
    std::error_code ec;
    if (fs::exists(expected, ec)) expected = fs::canonical(expected);
    EXPECT_EQ(dirs[2], expected.string());
}
