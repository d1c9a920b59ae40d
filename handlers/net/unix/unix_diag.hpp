// What NETLINK_SOCK_DIAG tells about every unix socket of cr's network namespace: names, peers,
// pending connections, queue lengths and shutdown state. Header-only, like the pipe helpers.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace cr::net_unix {

struct DiagSocket {
    uint64_t ino = 0;
    int type = 0;
    unsigned state = 0;
    std::string name;  // sun_path bytes as the kernel keeps them; abstract names start with 0
    uint64_t vfs_ino = 0;
    uint64_t peer = 0;
    std::vector<uint64_t> icons;
    uint32_t rqueue = 0;  // bytes queued; a listener: pending connections
    uint32_t wqueue = 0;  // a listener: its backlog
    unsigned shutdown = 0;
};

using DiagTable = std::map<uint64_t, DiagSocket>;

inline const char* type_name(int type) {
    switch (type) {
        case SOCK_STREAM:
            return "stream";
        case SOCK_DGRAM:
            return "dgram";
        case SOCK_SEQPACKET:
            return "seqpacket";
        default:
            return "unknown";
    }
}

// "/path", "@abstract" (other bytes as \xNN) or "unnamed".
inline std::string printable_name(const std::string& name) {
    if (name.empty()) return "unnamed";
    if (name[0] != '\0') return std::string(name.c_str());
    std::string out = "@";
    for (size_t i = 1; i < name.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(name[i]);
        out += c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c)) : strf("\\x%02x", c);
    }
    return out;
}

inline void parse_diag(const unix_diag_msg* m, size_t len, DiagTable& out) {
    DiagSocket s;
    s.ino = m->udiag_ino;
    s.type = m->udiag_type;
    s.state = m->udiag_state;
    int left = static_cast<int>(len - NLMSG_ALIGN(sizeof *m));
    for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) +
                                                   NLMSG_ALIGN(sizeof *m));
         RTA_OK(a, left); a = RTA_NEXT(a, left)) {
        const auto* data = static_cast<const uint8_t*>(RTA_DATA(a));
        size_t n = RTA_PAYLOAD(a);
        uint32_t u32 = 0;
        switch (a->rta_type) {
            case UNIX_DIAG_NAME:
                s.name.assign(reinterpret_cast<const char*>(data), n);
                break;
            case UNIX_DIAG_VFS:
                if (n >= sizeof(unix_diag_vfs))
                    s.vfs_ino = reinterpret_cast<const unix_diag_vfs*>(data)->udiag_vfs_ino;
                break;
            case UNIX_DIAG_PEER:
                if (n >= 4) std::memcpy(&u32, data, 4), s.peer = u32;
                break;
            case UNIX_DIAG_ICONS:
                for (size_t i = 0; i + 4 <= n; i += 4)
                    std::memcpy(&u32, data + i, 4), s.icons.push_back(u32);
                break;
            case UNIX_DIAG_RQLEN:
                if (n >= sizeof(unix_diag_rqlen)) {
                    const auto* q = reinterpret_cast<const unix_diag_rqlen*>(data);
                    s.rqueue = q->udiag_rqueue;
                    s.wqueue = q->udiag_wqueue;
                }
                break;
            case UNIX_DIAG_SHUTDOWN:
                if (n >= 1) s.shutdown = data[0];
                break;
            default:
                break;
        }
    }
    out[s.ino] = std::move(s);
}

// Every unix socket sock_diag reports, by inode.
inline Result<DiagTable> unix_diag_all() {
    UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl) return Error::from_errno("socket(NETLINK_SOCK_DIAG)");
    struct {
        nlmsghdr nlh;
        unix_diag_req req;
    } request{};
    request.nlh.nlmsg_len = sizeof request;
    request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.req.sdiag_family = AF_UNIX;
    request.req.udiag_states = ~0u;
    request.req.udiag_show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(nl.get(), &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof kernel) < 0)
        return Error::from_errno("sock_diag request");
    DiagTable out;
    std::vector<char> buf(1 << 16);
    for (;;) {
        ssize_t n = ::recv(nl.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("sock_diag reply");
        if (n == 0) return Error("sock_diag reply ended early");
        int left = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_type == NLMSG_DONE) return out;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
                errno = -e->error;
                return Error::from_errno("sock_diag");
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg)))
                continue;
            parse_diag(static_cast<const unix_diag_msg*>(NLMSG_DATA(h)),
                       h->nlmsg_len - NLMSG_HDRLEN, out);
        }
    }
}

}  // namespace cr::net_unix
