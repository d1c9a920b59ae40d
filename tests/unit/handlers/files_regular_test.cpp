// Rules of cr.files.regular: what can be reopened, with which flags, and when a file changed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../../../handlers/files/regular/file_rules.hpp"

namespace {

using namespace cr::files_regular;

TEST(FilesRegular, DeletedLinks) {
    EXPECT_TRUE(is_deleted_link("/tmp/x (deleted)"));
    EXPECT_FALSE(is_deleted_link("/tmp/x"));
    EXPECT_FALSE(is_deleted_link(" (deleted)"));
}

TEST(FilesRegular, ReopenFlagsDropCreationAndPerFdBits) {
    uint32_t saved = O_WRONLY | O_APPEND | O_CLOEXEC | k_o_largefile | O_CREAT | O_TRUNC | O_ASYNC;
    int f = reopen_flags(saved, S_IFREG | 0644);
    EXPECT_EQ(f & O_ACCMODE, O_WRONLY);
    EXPECT_TRUE(f & O_APPEND);
    EXPECT_TRUE(f & O_CLOEXEC);  // inside cr; the core decides per fd in the tree
    EXPECT_FALSE(f & (O_CREAT | O_TRUNC | O_ASYNC));
    EXPECT_TRUE(f & O_NOCTTY);
}

TEST(FilesRegular, ReopenFlagsByType) {
    EXPECT_TRUE(reopen_flags(O_RDONLY, S_IFDIR | 0755) & O_DIRECTORY);
    // A tmpfile linked into the tree later is a regular file: no O_TMPFILE, no O_DIRECTORY.
    int f = reopen_flags(O_RDWR | O_TMPFILE, S_IFREG | 0600);
    EXPECT_FALSE(f & O_DIRECTORY);
    EXPECT_FALSE(f & k_o_tmpfile_bit);
    EXPECT_TRUE(reopen_flags(O_PATH, S_IFREG) & O_PATH);
}

TEST(FilesRegular, PositionOnlyWhereItMeansSomething) {
    EXPECT_TRUE(restores_position(O_RDONLY, S_IFREG));
    EXPECT_TRUE(restores_position(O_RDONLY, S_IFDIR));
    EXPECT_FALSE(restores_position(O_RDONLY, S_IFCHR));
    EXPECT_FALSE(restores_position(O_PATH, S_IFREG));
}

TEST(FilesRegular, CharacterDevices) {
    EXPECT_TRUE(reopenable_chr(makedev(1, 3)));      // null
    EXPECT_TRUE(reopenable_chr(makedev(1, 9)));      // urandom
    EXPECT_TRUE(reopenable_chr(makedev(136, 4)));    // pts/4
    EXPECT_FALSE(reopenable_chr(makedev(5, 2)));     // ptmx: a new pty on every open
    EXPECT_FALSE(reopenable_chr(makedev(10, 200)));  // tun
    EXPECT_FALSE(reopenable_chr(makedev(1, 1)));     // mem
}

TEST(FilesRegular, ChangedFiles) {
    FileIdentity saved{S_IFREG | 0644, 100, 5'000000001, 0};
    EXPECT_TRUE(check_unchanged("/var/log/x", O_RDWR, saved, saved, false).ok());

    FileIdentity grown = saved;
    grown.size = 120;
    auto r = check_unchanged("/var/log/x", O_RDWR, saved, grown, false);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message(),
              "files.cr: /var/log/x changed since the dump (size 100 -> 120); use "
              "--skip-file-check to restore anyway");
    EXPECT_TRUE(check_unchanged("/var/log/x", O_RDWR, saved, grown, true).ok());

    // A log only appended to may grow after the dump.
    EXPECT_TRUE(check_unchanged("/var/log/x", O_WRONLY | O_APPEND, saved, grown, false).ok());
    EXPECT_FALSE(check_unchanged("/var/log/x", O_RDWR | O_APPEND, saved, grown, false).ok());

    FileIdentity touched = saved;
    touched.mtime_ns = 6'000000000;
    r = check_unchanged("/var/log/x", O_RDWR, saved, touched, false);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("mtime 5.000000001 -> 6.000000000"), std::string::npos);

    FileIdentity dir{S_IFDIR | 0755, 4096, 0, 0};
    r = check_unchanged("/var/log/x", O_RDWR, saved, dir, true);  // a type change is never skipped
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message(),
              "files.cr: /var/log/x was a regular file at dump time and is a directory now");

    FileIdentity null_dev{S_IFCHR | 0666, 0, 0, makedev(1, 3)};
    FileIdentity zero_dev{S_IFCHR | 0666, 0, 0, makedev(1, 5)};
    r = check_unchanged("/dev/null", O_RDWR, null_dev, zero_dev, false);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("device 1:3 -> 1:5"), std::string::npos);
}

TEST(FilesRegular, Umask) {
    auto r = parse_umask("Name:\tcat\nUmask:\t0027\nState:\tR (running)\n");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(*r, 027u);
    EXPECT_FALSE(parse_umask("Name:\tcat\n").ok());
    EXPECT_FALSE(parse_umask("Umask:\t0x8\n").ok());
}

}  // namespace
