// Reading a unix socket's receive queue without taking anything out of it (MSG_PEEK walking
// forward with SO_PEEK_OFF), and sending messages back into a new socket.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace cr::net_unix {

struct Message {
    std::vector<uint8_t> data;
    std::vector<UniqueFd> fds;  // descriptors in flight, received into cr
    pid_t pid = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::string sender;  // datagrams: sun_path bytes of the sender; empty: unnamed
};

constexpr size_t k_max_fds = 253;  // SCM_MAX_FD

inline Result<int> get_int_opt(int fd, int opt, const char* name) {
    int v = 0;
    socklen_t len = sizeof v;
    if (::getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0)
        return Error::from_errno(strf("getsockopt %s", name));
    return v;
}

inline Result<void> set_int_opt(int fd, int opt, int v, const char* name) {
    if (::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) != 0)
        return Error::from_errno(strf("setsockopt %s %d", name, v));
    return {};
}

// Puts SO_PEEK_OFF and SO_PASSCRED back as they were, whatever happens while reading.
class OptionGuard {
public:
    OptionGuard(int fd, int peek_off, int passcred)
        : m_fd(fd), m_peek_off(peek_off), m_passcred(passcred) {}
    OptionGuard(const OptionGuard&) = delete;
    OptionGuard& operator=(const OptionGuard&) = delete;
    ~OptionGuard() { (void)restore(); }
    Result<void> restore() {
        if (m_done) return {};
        m_done = true;
        CR_TRY(set_int_opt(m_fd, SO_PASSCRED, m_passcred, "SO_PASSCRED"));
        CR_TRY(set_int_opt(m_fd, SO_PEEK_OFF, m_peek_off, "SO_PEEK_OFF"));
        return {};
    }

private:
    int m_fd;
    int m_peek_off;
    int m_passcred;
    bool m_done = false;
};

// One peek at the current peek offset into buf. Returns the length the message part really has
// (for datagrams, more than buf when cut), or -1 at the end of the queue.
inline Result<ssize_t> peek_one(int fd, int type, std::vector<uint8_t>& buf, Message& out,
                                bool& end) {
    alignas(cmsghdr) char control[CMSG_SPACE(k_max_fds * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
    sockaddr_un from{};
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    int flags = MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (type == SOCK_STREAM ? 0 : MSG_TRUNC);
    ssize_t n = ::recvmsg(fd, &msg, flags);
    end = false;
    if (n < 0 && errno == EAGAIN) {
        end = true;
        return ssize_t{-1};
    }
    if (n < 0) return Error::from_errno("recvmsg MSG_PEEK");
    // Credentials come with every datagram while SO_PASSCRED is on: none means the end of a
    // queue that is shut down for reading.
    bool creds = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; ++i) {
                int f;
                std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                out.fds.emplace_back(f);
            }
        } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
            ucred u;
            std::memcpy(&u, CMSG_DATA(c), sizeof u);
            out.pid = u.pid;
            out.uid = u.uid;
            out.gid = u.gid;
            creds = true;
        }
    }
    if (msg.msg_flags & MSG_CTRUNC)
        return Error("recvmsg MSG_PEEK: control data cut (more than 253 descriptors)");
    // A stream has no empty messages: 0 is its end (shut down for reading, or the peer gone).
    if (n == 0 && (type == SOCK_STREAM || (!creds && out.fds.empty()))) {
        end = true;
        return ssize_t{-1};
    }
    if (type != SOCK_STREAM && msg.msg_namelen > offsetof(sockaddr_un, sun_path))
        out.sender.assign(from.sun_path, msg.msg_namelen - offsetof(sockaddr_un, sun_path));
    size_t got = std::min(static_cast<size_t>(n), buf.size());
    out.data.assign(buf.data(), buf.data() + got);
    return n;
}

// Every message queued on fd, oldest first; the socket's options end as they were.
inline Result<std::vector<Message>> peek_queue(int fd, int type) {
    int peek_off = CR_TRY(get_int_opt(fd, SO_PEEK_OFF, "SO_PEEK_OFF"));
    int passcred = CR_TRY(get_int_opt(fd, SO_PASSCRED, "SO_PASSCRED"));
    OptionGuard guard(fd, peek_off, passcred);
    CR_TRY(set_int_opt(fd, SO_PASSCRED, 1, "SO_PASSCRED"));
    CR_TRY(set_int_opt(fd, SO_PEEK_OFF, 0, "SO_PEEK_OFF"));
    std::vector<Message> out;
    std::vector<uint8_t> buf(4 << 20);
    int offset = 0;
    for (;;) {
        Message m;
        bool end = false;
        ssize_t n = CR_TRY(peek_one(fd, type, buf, m, end));
        if (end) break;
        if (static_cast<size_t>(n) >
            buf.size()) {  // a datagram longer than the buffer: again, whole
            buf.resize(static_cast<size_t>(n));
            CR_TRY(set_int_opt(fd, SO_PEEK_OFF, offset, "SO_PEEK_OFF"));
            continue;
        }
        offset += static_cast<int>(n);
        // Stream bytes without descriptors from one sender read as one run: keep them together.
        if (type == SOCK_STREAM && !out.empty() && out.back().fds.empty() && m.fds.empty() &&
            out.back().pid == m.pid && out.back().uid == m.uid && out.back().gid == m.gid) {
            out.back().data.insert(out.back().data.end(), m.data.begin(), m.data.end());
            continue;
        }
        out.push_back(std::move(m));
        if (out.size() > (1u << 20)) return Error("more than a million queued messages");
    }
    CR_TRY(guard.restore());
    return out;
}

inline socklen_t make_addr(const std::string& name, sockaddr_un& addr) {
    addr = {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), std::min(name.size(), sizeof addr.sun_path));
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                  std::min(name.size(), sizeof addr.sun_path));
}

struct OutMessage {
    const uint8_t* data = nullptr;
    size_t size = 0;
    std::vector<int> fds;
    bool creds = false;
    ucred cred{};
    const std::string* to = nullptr;  // datagrams sent by address
};

// Sends one message; never blocks: what does not fit is an error, not a hang of the restore.
inline Result<void> send_message(int fd, const OutMessage& m) {
    alignas(cmsghdr) char control[CMSG_SPACE(k_max_fds * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
    size_t done = 0;
    bool first = true;
    sockaddr_un addr{};
    socklen_t addr_len = m.to ? make_addr(*m.to, addr) : 0;
    do {
        iovec iov{const_cast<uint8_t*>(m.data) + done, m.size - done};
        msghdr msg{};
        msg.msg_name = m.to ? &addr : nullptr;
        msg.msg_namelen = addr_len;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        size_t clen = 0;
        if (first && !m.fds.empty()) clen += CMSG_SPACE(m.fds.size() * sizeof(int));
        if (m.creds) clen += CMSG_SPACE(sizeof(ucred));
        std::memset(control, 0, sizeof control);
        msg.msg_control = clen ? control : nullptr;
        msg.msg_controllen = clen;
        if (clen) {
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            if (first && !m.fds.empty()) {
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(m.fds.size() * sizeof(int));
                std::memcpy(CMSG_DATA(c), m.fds.data(), m.fds.size() * sizeof(int));
                c = CMSG_NXTHDR(&msg, c);
            }
            if (m.creds) {
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_CREDENTIALS;
                c->cmsg_len = CMSG_LEN(sizeof(ucred));
                std::memcpy(CMSG_DATA(c), &m.cred, sizeof m.cred);
            }
        }
        ssize_t n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN)
            return Error(strf("the message of %zu bytes does not fit (%zu sent)", m.size, done));
        if (n < 0) return Error::from_errno("sendmsg");
        done += static_cast<size_t>(n);
        first = false;
    } while (done < m.size);
    return {};
}

}  // namespace cr::net_unix
