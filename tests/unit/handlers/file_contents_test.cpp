// The contents of files no path leads to (deleted files, memfds): saved as data extents, holes
// left out, and put back into a new file byte for byte.
#include "../../../handlers/files/regular/file_contents.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

using namespace cr::file_contents;
using cr::UniqueFd;

UniqueFd memfd(const char* name) {
    return UniqueFd(::memfd_create(name, MFD_CLOEXEC));
}

std::string read_all(int fd, size_t size) {
    std::string out(size, '\0');
    EXPECT_EQ(::pread(fd, out.data(), size, 0), static_cast<ssize_t>(size));
    return out;
}

TEST(FileContents, SparseRoundTrip) {
    UniqueFd src = memfd("src");
    const size_t size = 1 << 20;
    ASSERT_EQ(::ftruncate(src.get(), size), 0);
    std::string head(5000, 'a'), middle(10000, 'b');
    ASSERT_EQ(::pwrite(src.get(), head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
    ASSERT_EQ(::pwrite(src.get(), middle.data(), middle.size(), 700000),
              static_cast<ssize_t>(middle.size()));

    UniqueFd image = memfd("image");
    auto extents = save(src.get(), size, image.get());
    ASSERT_TRUE(extents.ok()) << extents.error().message();
    ASSERT_EQ(extents->size(), 2u);  // the holes are left out
    struct stat st {};
    ASSERT_EQ(::fstat(image.get(), &st), 0);
    EXPECT_LT(static_cast<size_t>(st.st_size), size / 4);
    EXPECT_EQ(::lseek(src.get(), 0, SEEK_CUR), 0);  // read through a description of its own

    UniqueFd dst = memfd("dst");
    auto filled = fill(dst.get(), image.get(), *extents, size);
    ASSERT_TRUE(filled.ok()) << filled.error().message();
    EXPECT_EQ(read_all(dst.get(), size), read_all(src.get(), size));
}

TEST(FileContents, ExtentBeyondTheSizeIsRefused) {
    UniqueFd image = memfd("image");
    UniqueFd dst = memfd("dst");
    std::vector<Extent> extents{{4096, 100}};
    EXPECT_FALSE(fill(dst.get(), image.get(), extents, 1000).ok());
}

TEST(FileContents, UnlinkedFileTakesTheFreeName) {
    char dir[] = "/tmp/cr-contents.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string path = std::string(dir) + "/gone.dat";
    auto fd = make_unlinked(path);
    ASSERT_TRUE(fd.ok()) << fd.error().message();
    struct stat st {};
    ASSERT_EQ(::fstat(fd->get(), &st), 0);
    EXPECT_EQ(st.st_nlink, 0u);
    char link[4096] = {};
    ASSERT_GT(
        ::readlink(("/proc/self/fd/" + std::to_string(fd->get())).c_str(), link, sizeof link - 1),
        0);
    EXPECT_EQ(std::string(link), path + " (deleted)");
    // The name is taken: an O_TMPFILE in the same directory instead.
    UniqueFd taken(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    auto other = make_unlinked(path);
    ASSERT_TRUE(other.ok()) << other.error().message();
    ASSERT_EQ(::fstat(other->get(), &st), 0);
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_EQ(::access(path.c_str(), F_OK), 0);  // the file that had the name is still there
    ::unlink(path.c_str());
    ::rmdir(dir);
}

}  // namespace
