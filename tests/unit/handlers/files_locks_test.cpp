// cr.files.regular: file locks as /proc/locks and fdinfo show them, and files replaced between
// dump and restore.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../../../handlers/files/regular/file_rules.hpp"
#include "../../../handlers/files/regular/lock_rules.hpp"

namespace {

using namespace cr::files_regular;

TEST(FilesLocks, ProcLocks) {
    auto l = parse_locks(
        "1: OFDLCK ADVISORY  READ -1 fe:00:10953138 0 EOF\n"
        "2: POSIX  ADVISORY  WRITE 27647 fe:00:10953124 10 29\n"
        "2: -> POSIX  ADVISORY  WRITE 27650 fe:00:10953124 10 29\n"
        "3: FLOCK  ADVISORY  WRITE 27647 08:1f:42 0 EOF\n");
    ASSERT_TRUE(l.ok()) << l.error().message();
    ASSERT_EQ(l->size(), 3u);  // the waiter is not a holder
    EXPECT_EQ((*l)[0].cls, "OFDLCK");
    EXPECT_EQ((*l)[0].pid, -1);
    EXPECT_EQ((*l)[0].type, "READ");
    EXPECT_EQ((*l)[0].length, 0u);
    EXPECT_EQ((*l)[1].cls, "POSIX");
    EXPECT_EQ((*l)[1].pid, 27647);
    EXPECT_EQ((*l)[1].dev, makedev(0xfe, 0));
    EXPECT_EQ((*l)[1].ino, 10953124u);
    EXPECT_EQ((*l)[1].start, 10u);
    EXPECT_EQ((*l)[1].length, 20u);
    EXPECT_EQ((*l)[2].dev, makedev(8, 0x1f));
}

TEST(FilesLocks, FdinfoLines) {
    auto l = parse_locks(
        "pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t10953117\n"
        "lock:\t1: FLOCK  ADVISORY  WRITE 27647 fe:00:10953117 0 EOF\n");
    ASSERT_TRUE(l.ok()) << l.error().message();
    ASSERT_EQ(l->size(), 1u);
    EXPECT_EQ((*l)[0].cls, "FLOCK");
    EXPECT_FALSE(
        parse_locks("lock:\t1: POSIX ADVISORY WRITE 1 fe:00:12 30 29\n").ok());  // end before start
    EXPECT_FALSE(parse_locks("lock:\t1: POSIX ADVISORY\n").ok());
}

TEST(FilesLocks, ReplacedFile) {
    FileIdentity saved{S_IFREG | 0644, 100, 5, 0, 42};
    FileIdentity other = saved;
    other.ino = 43;
    auto r = check_unchanged("/x", O_RDWR, saved, other, false);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("inode 42 -> 43"), std::string::npos);
    EXPECT_TRUE(check_unchanged("/x", O_RDWR, saved, other, true).ok());
    other.ino = 0;  // unknown: not compared
    EXPECT_TRUE(check_unchanged("/x", O_RDWR, saved, other, false).ok());
}

}  // namespace
