// cr.files.pipe data handling on local pipes: peeking leaves the data in place, packets survive.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "../../../handlers/files/pipe/pipe_data.hpp"

namespace {

using namespace cr::files_pipe;
using cr::UniqueFd;

struct LocalPipe {
    UniqueFd r, w;
    explicit LocalPipe(int flags = 0) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC | flags), 0);
        r.reset(fds[0]);
        w.reset(fds[1]);
    }
};

std::string drain(int fd) {
    EXPECT_EQ(::fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

TEST(FilesPipe, ParseLink) {
    EXPECT_EQ(parse_pipe_link("pipe:[4242]"), 4242u);
    EXPECT_FALSE(parse_pipe_link("pipe:[]"));
    EXPECT_FALSE(parse_pipe_link("pipe:[12x]"));
    EXPECT_FALSE(parse_pipe_link("/tmp/fifo"));
    EXPECT_FALSE(parse_pipe_link("socket:[12]"));
}

TEST(FilesPipe, EmptyPipe) {
    LocalPipe p;
    auto c = peek_pipe(p.r.get(), ::fcntl(p.r.get(), F_GETPIPE_SZ));
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_TRUE(c->data.empty());
}

TEST(FilesPipe, PeekLeavesDataInPlace) {
    LocalPipe p;
    std::string pattern;
    for (int i = 0; i < 10000; ++i) pattern += static_cast<char>('a' + i % 26);
    ASSERT_EQ(::write(p.w.get(), pattern.data(), pattern.size()),
              static_cast<ssize_t>(pattern.size()));
    char two[2];
    ASSERT_EQ(::read(p.r.get(), two, 2), 2);  // a partly read first buffer
    auto c = peek_pipe(p.r.get(), ::fcntl(p.r.get(), F_GETPIPE_SZ));
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(std::string(c->data.begin(), c->data.end()), pattern.substr(2));
    EXPECT_EQ(c->chunks.size(), 1u);
    EXPECT_EQ(drain(p.r.get()), pattern.substr(2));
}

TEST(FilesPipe, FullLargePipe) {
    LocalPipe p;
    ASSERT_GE(::fcntl(p.w.get(), F_SETPIPE_SZ, 256 * 1024), 256 * 1024);
    int cap = ::fcntl(p.w.get(), F_GETPIPE_SZ);
    std::string pattern(static_cast<size_t>(cap), 'x');
    for (size_t i = 0; i < pattern.size(); i += 7) pattern[i] = static_cast<char>(i);
    ASSERT_EQ(::write(p.w.get(), pattern.data(), pattern.size()), cap);
    auto c = peek_pipe(p.r.get(), cap);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->data.size(), pattern.size());

    LocalPipe q;
    ASSERT_GE(::fcntl(q.w.get(), F_SETPIPE_SZ, cap), cap);
    ASSERT_TRUE(fill_pipe(q.w.get(), c->data.data(), c->data.size(), {}).ok());
    EXPECT_EQ(drain(q.r.get()), pattern);
    EXPECT_EQ(drain(p.r.get()), pattern);
}

TEST(FilesPipe, FillThatDoesNotFitFails) {
    LocalPipe q;
    std::vector<uint8_t> data(1 << 20, 1);
    auto r = fill_pipe(q.w.get(), data.data(), data.size(), {});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("do not fit"), std::string::npos);
}

TEST(FilesPipe, PacketsKeepTheirBoundaries) {
    LocalPipe p(O_DIRECT);
    ASSERT_EQ(::write(p.w.get(), "ab", 2), 2);
    ASSERT_EQ(::write(p.w.get(), "cde", 3), 3);
    auto c = peek_pipe(p.r.get(), ::fcntl(p.r.get(), F_GETPIPE_SZ));
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(std::string(c->data.begin(), c->data.end()), "abcde");
    EXPECT_EQ(c->chunks, (std::vector<uint32_t>{2, 3}));

    LocalPipe q;
    ASSERT_TRUE(fill_pipe(q.w.get(), c->data.data(), c->data.size(), c->chunks).ok());
    EXPECT_EQ(::fcntl(q.w.get(), F_GETFL) & O_DIRECT, 0);  // flags back as they were
    char buf[16];
    ASSERT_EQ(::read(q.r.get(), buf, sizeof buf), 2);
    ASSERT_EQ(::read(q.r.get(), buf, sizeof buf), 3);
    EXPECT_EQ(std::string(buf, 3), "cde");
}

}  // namespace
