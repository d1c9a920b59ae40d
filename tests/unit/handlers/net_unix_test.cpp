// cr.net.unix helpers on local sockets: peeking a queue leaves it and the socket's options as they
// were; what is peeked goes back into a new socket with its boundaries, descriptors, credentials
// and senders; sock_diag sees pairs, names and pending connections.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "../../../handlers/net/unix/unix_diag.hpp"
#include "../../../handlers/net/unix/unix_queue.hpp"

namespace {

using namespace cr::net_unix;
using cr::UniqueFd;

struct Pair {
    UniqueFd a, b;
    explicit Pair(int type) {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
        a.reset(sv[0]);
        b.reset(sv[1]);
    }
};

uint64_t ino_of(int fd) {
    struct stat st {};
    EXPECT_EQ(::fstat(fd, &st), 0);
    return static_cast<uint64_t>(st.st_ino);
}

std::string recv_all(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

OutMessage out_of(const Message& m) {
    OutMessage out;
    out.data = m.data.data();
    out.size = m.data.size();
    return out;
}

TEST(NetUnixQueue, StreamPeekLeavesDataAndOptions) {
    Pair p(SOCK_STREAM);
    ASSERT_EQ(::send(p.a.get(), "hello ", 6, 0), 6);
    ASSERT_EQ(::send(p.a.get(), "world", 5, 0), 5);
    int off = 3;
    ASSERT_EQ(::setsockopt(p.b.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off), 0);
    auto q = peek_queue(p.b.get(), SOCK_STREAM);
    ASSERT_TRUE(q.ok()) << q.error().message();
    ASSERT_EQ(q->size(), 1u);  // one sender, no descriptors: one run
    EXPECT_EQ(std::string(q->at(0).data.begin(), q->at(0).data.end()), "hello world");
    EXPECT_EQ(q->at(0).pid, 0);  // SO_PASSCRED was off on both ends: no credentials recorded
    EXPECT_EQ(*get_int_opt(p.b.get(), SO_PEEK_OFF, "SO_PEEK_OFF"), 3);
    EXPECT_EQ(*get_int_opt(p.b.get(), SO_PASSCRED, "SO_PASSCRED"), 0);
    off = -1;
    ASSERT_EQ(::setsockopt(p.b.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off), 0);
    EXPECT_EQ(recv_all(p.b.get()), "hello world");
}

TEST(NetUnixQueue, DatagramsKeepBoundariesAndEmptyOnes) {
    Pair p(SOCK_DGRAM);
    std::string big(300000, 'x');  // longer than the first peek buffer
    ASSERT_EQ(::send(p.a.get(), "one", 3, 0), 3);
    ASSERT_EQ(::send(p.a.get(), "", 0, 0), 0);
    int sndbuf = 1 << 20;
    ASSERT_EQ(::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    ASSERT_EQ(::send(p.a.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
    auto q = peek_queue(p.b.get(), SOCK_DGRAM);
    ASSERT_TRUE(q.ok()) << q.error().message();
    ASSERT_EQ(q->size(), 3u);
    EXPECT_EQ(q->at(0).data.size(), 3u);
    EXPECT_EQ(q->at(1).data.size(), 0u);
    EXPECT_EQ(q->at(2).data.size(), big.size());

    Pair n(SOCK_DGRAM);
    ASSERT_EQ(::setsockopt(n.a.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    for (const Message& m : *q) ASSERT_TRUE(send_message(n.a.get(), out_of(m)).ok());
    char buf[400000];
    EXPECT_EQ(::recv(n.b.get(), buf, sizeof buf, MSG_DONTWAIT), 3);
    EXPECT_EQ(::recv(n.b.get(), buf, sizeof buf, MSG_DONTWAIT), 0);
    EXPECT_EQ(::recv(n.b.get(), buf, sizeof buf, MSG_DONTWAIT), static_cast<ssize_t>(big.size()));
    // The original queue is untouched.
    EXPECT_EQ(::recv(p.b.get(), buf, sizeof buf, MSG_DONTWAIT), 3);
}

TEST(NetUnixQueue, DescriptorsAndCredentialsInFlight) {
    Pair p(SOCK_SEQPACKET);
    int on = 1;
    ASSERT_EQ(::setsockopt(p.b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
    Pair carried(SOCK_STREAM);
    OutMessage m;
    const char text[] = "fd";
    m.data = reinterpret_cast<const uint8_t*>(text);
    m.size = 2;
    m.fds = {carried.a.get()};
    ASSERT_TRUE(send_message(p.a.get(), m).ok());
    auto q = peek_queue(p.b.get(), SOCK_SEQPACKET);
    ASSERT_TRUE(q.ok()) << q.error().message();
    ASSERT_EQ(q->size(), 1u);
    ASSERT_EQ(q->at(0).fds.size(), 1u);
    EXPECT_EQ(ino_of(q->at(0).fds[0].get()), ino_of(carried.a.get()));
    EXPECT_EQ(q->at(0).pid, ::getpid());
    EXPECT_EQ(q->at(0).uid, ::getuid());
    EXPECT_EQ(*get_int_opt(p.b.get(), SO_PASSCRED, "SO_PASSCRED"), 1);

    // Sent again with explicit credentials and the descriptor, into another pair.
    Pair n(SOCK_SEQPACKET);
    ASSERT_EQ(::setsockopt(n.b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
    OutMessage again = out_of(q->at(0));
    again.fds = {q->at(0).fds[0].get()};
    again.creds = true;
    again.cred = {q->at(0).pid, q->at(0).uid, q->at(0).gid};
    ASSERT_TRUE(send_message(n.a.get(), again).ok());
    auto q2 = peek_queue(n.b.get(), SOCK_SEQPACKET);
    ASSERT_TRUE(q2.ok());
    ASSERT_EQ(q2->size(), 1u);
    ASSERT_EQ(q2->at(0).fds.size(), 1u);
    EXPECT_EQ(ino_of(q2->at(0).fds[0].get()), ino_of(carried.a.get()));
    EXPECT_EQ(q2->at(0).pid, ::getpid());
}

TEST(NetUnixQueue, ShutDownStreamEndsTheWalk) {
    Pair p(SOCK_STREAM);
    ASSERT_EQ(::send(p.a.get(), "last", 4, 0), 4);
    ASSERT_EQ(::shutdown(p.a.get(), SHUT_WR), 0);
    auto q = peek_queue(p.b.get(), SOCK_STREAM);
    ASSERT_TRUE(q.ok()) << q.error().message();
    ASSERT_EQ(q->size(), 1u);
    EXPECT_EQ(q->at(0).data.size(), 4u);
}

TEST(NetUnixDiag, PairsNamesAndPendingConnections) {
    Pair p(SOCK_STREAM);
    std::string name = std::string("\0cr-unit-", 9) + std::to_string(::getpid());
    UniqueFd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    socklen_t len = make_addr(name, addr);
    ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    ASSERT_EQ(::listen(l.get(), 4), 0);
    UniqueFd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    auto t = unix_diag_all();
    ASSERT_TRUE(t.ok()) << t.error().message();
    const DiagTable& d = *t;
    ASSERT_TRUE(d.count(ino_of(p.a.get())));
    EXPECT_EQ(d.at(ino_of(p.a.get())).peer, ino_of(p.b.get()));
    EXPECT_EQ(d.at(ino_of(p.a.get())).type, SOCK_STREAM);
    ASSERT_TRUE(d.count(ino_of(l.get())));
    const DiagSocket& ls = d.at(ino_of(l.get()));
    EXPECT_EQ(ls.name, name);
    EXPECT_EQ(ls.wqueue, 4u);  // a listener's backlog
    ASSERT_EQ(ls.icons.size(), 1u);
    EXPECT_EQ(ls.icons[0], ino_of(c.get()));  // a pending connection is named by its client
    EXPECT_EQ(d.at(ino_of(c.get())).peer, 0u);
    EXPECT_EQ(printable_name(name), "@cr-unit-" + std::to_string(::getpid()));
}

}  // namespace
