// cr.net.unix, dump: every socket the tree holds or has in flight, read without changing it.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cr/sdk/image.hpp>
#include <cr/sdk/proc.hpp>
#include <optional>

#include "unix.hpp"

namespace cr::net_unix {

namespace {

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

// "pid 42 fd 7", or "no process" when nothing in this pid namespace holds the socket.
std::string holder_of(uint64_t ino) {
    std::string want = strf("socket:[%llu]", ull(ino));
    DIR* proc = ::opendir("/proc");
    if (!proc) return "an unknown process";
    std::string found;
    while (dirent* p = ::readdir(proc)) {
        if (p->d_name[0] < '1' || p->d_name[0] > '9') continue;
        std::string dir = strf("/proc/%s/fd", p->d_name);
        DIR* fds = ::opendir(dir.c_str());
        if (!fds) continue;
        while (dirent* f = ::readdir(fds)) {
            char link[64];
            ssize_t n = ::readlinkat(dirfd(fds), f->d_name, link, sizeof link - 1);
            if (n <= 0) continue;
            link[n] = 0;
            if (want == link) {
                found = strf("pid %s fd %s", p->d_name, f->d_name);
                break;
            }
        }
        ::closedir(fds);
        if (!found.empty()) break;
    }
    ::closedir(proc);
    return found.empty() ? "no process" : found;
}

std::optional<std::string> cwd_of(pid_t pid) {
    auto cwd = sdk::read_link(strf("/proc/%d/cwd", pid));
    if (!cwd) return std::nullopt;
    return *cwd;
}

std::string describe_fd(int fd) {
    auto link = sdk::read_link(strf("/proc/self/fd/%d", fd));
    return link ? *link : "an unknown file";
}

}  // namespace

std::string Dumper::where_of(const SocketRecord& s) const {
    std::string what = strf("unix %s socket socket:[%llu] (%s)", type_name(s.diag.type), ull(s.ino),
                            printable_name(s.diag.name).c_str());
    if (s.fd < 0) return strf("%s in flight in a queue of pid %d", what.c_str(), s.pid);
    return strf("pid %d fd %d: %s", s.pid, s.fd, what.c_str());
}

Result<void> Dumper::load_diag() {
    if (m_loaded) return {};
    m_diag = CR_TRY(unix_diag_all());
    m_loaded = true;
    m_ctx->debug(strf("sock_diag: %zu unix sockets in cr's network namespace", m_diag.size()));
    return {};
}

Result<void> Dumper::dump_fd(const cr_fd_info& fd) {
    std::string where = strf("pid %d fd %d: %s", fd.pid, fd.fd, fd.link ? fd.link : "");
    if (fd.flags & O_ASYNC) return Error(where + ": signal-driven I/O (O_ASYNC) is not supported");
    CR_TRY_CTX(load_diag(), where);
    struct stat st {};
    if (::fstat(fd.cr_fd, &st) != 0) return Error::from_errno(where + ": fstat");
    uint64_t ino = static_cast<uint64_t>(st.st_ino);
    SocketRecord* r = nullptr;
    if (auto it = m_socks.find(ino); it != m_socks.end()) {
        r = it->second.get();  // met in flight before a task's fd
    } else {
        UniqueFd own(::fcntl(fd.cr_fd, F_DUPFD_CLOEXEC, 0));
        if (!own) return Error::from_errno(where + ": fcntl F_DUPFD_CLOEXEC");
        r = CR_TRY(capture(ino, std::move(own), Holder{fd.object_id, fd.pid, fd.fd}, where));
    }
    r->object_id = fd.object_id;
    r->pid = fd.pid;
    r->fd = fd.fd;
    r->flags = fd.flags;
    return {};
}

Result<SocketRecord*> Dumper::capture(uint64_t ino, UniqueFd own, Holder holder,
                                      const std::string& where) {
    auto found = m_diag.find(ino);
    if (found == m_diag.end())
        return Error(where + ": not in sock_diag's table (a socket of another network namespace?)");
    auto rec = std::make_unique<SocketRecord>();
    SocketRecord& s = *rec;
    s.ino = ino;
    s.object_id = holder.object_id;
    s.pid = holder.pid;
    s.fd = holder.fd;
    s.own = std::move(own);
    s.diag = found->second;
    int flags = ::fcntl(s.own.get(), F_GETFL);
    s.flags = flags < 0 ? 0 : static_cast<uint32_t>(flags);
    m_socks[ino] = std::move(rec);
    std::string w = where_of(s);
    int type = s.diag.type;
    if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
        return Error(strf("%s: socket type %d is not supported", w.c_str(), type));
    if (!s.diag.name.empty() && s.diag.name[0] != '\0') {
        std::string path(s.diag.name.c_str());
        if (path.empty()) return Error(strf("%s: an empty path name", w.c_str()));
        if (path[0] != '/') {
            // Bound relative to the binder's working directory: the holder's, if the file is there.
            auto cwd = cwd_of(s.pid);
            struct stat st {};
            if (!cwd || ::lstat((*cwd + "/" + path).c_str(), &st) != 0 ||
                static_cast<uint64_t>(st.st_ino) != s.diag.vfs_ino)
                return Error(
                    strf("%s: a relative path name not found from the working directory of "
                         "pid %d: not supported",
                         w.c_str(), s.pid));
            s.name_dir = *cwd;
            path = *cwd + "/" + path;
        }
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
            static_cast<uint64_t>(st.st_ino) == s.diag.vfs_ino) {
            s.file_mode = st.st_mode & 07777;
            s.file_uid = st.st_uid;
            s.file_gid = st.st_gid;
        } else {
            s.name_file_gone = true;
        }
    }
    // A datagram socket others connected to shows as connected too: only an unnamed one, which
    // nobody can connect to, was connected itself (a socketpair whose other end is closed).
    s.peer_closed = s.diag.state == k_established && s.diag.peer == 0 &&
                    (type != SOCK_DGRAM || s.diag.name.empty());
    s.rcvbuf = CR_TRY_CTX(get_int_opt(s.own.get(), SO_RCVBUF, "SO_RCVBUF"), w);
    s.sndbuf = CR_TRY_CTX(get_int_opt(s.own.get(), SO_SNDBUF, "SO_SNDBUF"), w);
    s.passcred = CR_TRY_CTX(get_int_opt(s.own.get(), SO_PASSCRED, "SO_PASSCRED"), w);
    s.peek_off = CR_TRY_CTX(get_int_opt(s.own.get(), SO_PEEK_OFF, "SO_PEEK_OFF"), w);
    CR_TRY(check_pending(s));
    if (s.diag.state != k_listen) CR_TRY(capture_queue(s, w));
    m_ctx->debug(
        strf("socket:[%llu]: %s %s, state %u, peer %llu, shutdown %u, %zu queued messages, %zu "
             "pending connections",
             ull(ino), where.c_str(), type_name(type), s.diag.state, ull(s.diag.peer),
             s.diag.shutdown, s.queue.size(), s.diag.icons.size()));
    return &s;
}

// A connection not yet accepted has no inode: sock_diag lists it on its listener by its client
// (UNIX_DIAG_ICONS), and the client shows no peer. Restore connects the client again.
Result<void> Dumper::check_pending(SocketRecord& s) {
    if (s.diag.state == k_listen) {
        for (uint64_t client : s.diag.icons)
            if (client == 0)
                return Error(strf("%s: a pending connection whose client is closed: not supported",
                                  where_of(s).c_str()));
        return {};
    }
    if (s.diag.state != k_established || s.diag.peer != 0) return {};
    for (const auto& [ino, d] : m_diag) {
        if (d.state != k_listen ||
            std::find(d.icons.begin(), d.icons.end(), s.ino) == d.icons.end())
            continue;
        s.listener = ino;
        s.peer_closed = false;
        // Bytes the client sent wait in the connection, charged to the client's send buffer.
        if (s.diag.wqueue > 0)
            return Error(strf(
                "%s: sent data on a connection %s has not accepted yet (%u bytes of send buffer); "
                "reading it would accept the connection: not supported",
                where_of(s).c_str(), printable_name(d.name).c_str(), s.diag.wqueue));
    }
    return {};
}

// Descriptors in flight: unix sockets are this handler's own; regular files and pipes go to their
// handlers through the core (adopt_fd), which names them by object id.
Result<void> Dumper::capture_queue(SocketRecord& s, const std::string& w) {
    std::vector<Message> queue =
        CR_TRY_CTX(peek_queue(s.own.get(), s.diag.type), w + ": reading its queue");
    for (Message& m : queue) {
        std::vector<SocketRecord::InFlight> refs;
        for (UniqueFd& f : m.fds) {
            struct stat st {};
            if (::fstat(f.get(), &st) != 0)
                return Error::from_errno(w + ": fstat of a descriptor in flight");
            int domain = 0;
            socklen_t len = sizeof domain;
            if (S_ISSOCK(st.st_mode) &&
                ::getsockopt(f.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
                domain == AF_UNIX) {
                uint64_t ino = static_cast<uint64_t>(st.st_ino);
                refs.push_back({ino, 0});
                if (!m_socks.count(ino))
                    CR_TRY(capture(ino, std::move(f), Holder{0, s.pid, -1}, w + ": in flight"));
                continue;
            }
            std::string what = describe_fd(f.get());
            if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
                return Error(strf(
                    "%s: its queue carries %s in flight (SCM_RIGHTS); only unix sockets, regular "
                    "files and pipes in flight can be saved",
                    w.c_str(), what.c_str()));
            uint64_t id = CR_TRY_CTX(m_ctx->adopt_fd(f.get()),
                                     strf("%s: %s in flight", w.c_str(), what.c_str()));
            refs.push_back({0, id});
            m_ctx->debug(strf("%s: %s in flight, object %llu", w.c_str(), what.c_str(), ull(id)));
        }
        m.fds.clear();
        s.queue_fds.push_back(std::move(refs));
    }
    s.queue = std::move(queue);
    return {};
}

bool Dumper::is_listener_name(const std::string& name, uint64_t vfs_ino) const {
    for (const auto& [ino, d] : m_diag)
        if (d.state == k_listen && d.name == name && (name[0] == '\0' || d.vfs_ino == vfs_ino))
            return true;
    return false;
}

// An accepted socket carries its listener's name and is made again by accepting a connection
// on that name; of a connected pair, the named end whose name is a listener's is the accepted one.
void Dumper::decide_accepted() {
    for (auto& [ino, rec] : m_socks) {
        SocketRecord& a = *rec;
        if (a.listener || a.diag.type == SOCK_DGRAM || a.diag.state != k_established) continue;
        if (a.peer_closed) {
            a.accepted = !a.diag.name.empty();
            continue;
        }
        auto it = m_socks.find(a.diag.peer);
        if (it == m_socks.end() || a.ino > it->first) continue;
        SocketRecord& b = *it->second;
        bool an = !a.diag.name.empty();
        bool bn = !b.diag.name.empty();
        if (an && bn) {
            if (is_listener_name(a.diag.name, a.diag.vfs_ino))
                a.accepted = true;
            else if (is_listener_name(b.diag.name, b.diag.vfs_ino))
                b.accepted = true;
            else
                a.accepted = true;
        } else {
            a.accepted = an;
            b.accepted = bn;
        }
    }
}

Result<void> Dumper::check_peers() {
    bool ext = m_ctx->flag("ext-unix-sk");
    for (auto& [ino, rec] : m_socks) {
        SocketRecord& s = *rec;
        // A datagram from a relative path name goes back from the socket of the image bound there.
        for (const Message& m : s.queue) {
            if (m.sender.empty() || m.sender[0] == '\0' || m.sender[0] == '/') continue;
            bool found = false;
            for (const auto& [other, o] : m_socks) found = found || o->diag.name == m.sender;
            if (!found)
                return Error(
                    strf("%s: holds a datagram from %s, a relative path name of a socket outside "
                         "the tree: not supported",
                         where_of(s).c_str(), printable_name(m.sender).c_str()));
        }
        for (uint64_t client : s.diag.state == k_listen ? s.diag.icons : std::vector<uint64_t>{})
            if (!m_socks.count(client))
                return Error(strf(
                    "%s: a pending connection from socket:[%llu] of %s, outside the dumped tree",
                    where_of(s).c_str(), ull(client), holder_of(client).c_str()));
        // A client waiting to be accepted: its listener stands for its peer.
        uint64_t peer = s.listener ? s.listener : s.diag.peer;
        if (peer == 0) continue;
        auto it = m_socks.find(peer);
        if (it != m_socks.end()) {
            const SocketRecord& p = *it->second;
            if (s.diag.type == SOCK_DGRAM && p.diag.name.empty() && p.diag.peer != s.ino)
                return Error(
                    strf("%s: connected to the unnamed datagram socket socket:[%llu], which is not "
                         "connected back: it cannot be connected again",
                         where_of(s).c_str(), ull(peer)));
            continue;
        }
        auto d = m_diag.find(peer);
        std::string pname = d == m_diag.end() ? "unnamed" : printable_name(d->second.name);
        std::string outside = strf("socket:[%llu] (%s) of %s, outside the dumped tree", ull(peer),
                                   pname.c_str(), holder_of(peer).c_str());
        if (!ext)
            return Error(
                strf("%s: its peer is %s; dump the peer's process too, or pass --ext-unix-sk to "
                     "connect again by the peer's name at restore",
                     where_of(s).c_str(), outside.c_str()));
        if (d == m_diag.end() || d->second.name.empty())
            return Error(
                strf("%s: its peer is %s and has no name: it cannot be connected again, even with "
                     "--ext-unix-sk",
                     where_of(s).c_str(), outside.c_str()));
        if (!s.queue.empty())
            return Error(
                strf("%s: holds %zu messages from its external peer %s; they cannot be sent again "
                     "from outside the tree",
                     where_of(s).c_str(), s.queue.size(), outside.c_str()));
        if (d->second.name[0] != '\0' && d->second.name[0] != '/')
            return Error(
                strf("%s: its peer is %s, whose relative path name cannot be connected "
                     "again",
                     where_of(s).c_str(), outside.c_str()));
        s.external_peer = d->second.name;
        s.listener = 0;
        m_ctx->info(strf("%s: external peer %s, connected again by name at restore",
                         where_of(s).c_str(), pname.c_str()));
    }
    return {};
}

Result<void> Dumper::finish() {
    CR_TRY(check_peers());
    decide_accepted();
    return write_section();
}

Result<void> Dumper::write_section() {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<fb::UnixSocket>> socks;
    for (const auto& [ino, rec] : m_socks) {
        const SocketRecord& s = *rec;
        std::vector<flatbuffers::Offset<fb::UnixMessage>> queue;
        for (size_t i = 0; i < s.queue.size(); ++i) {
            const Message& m = s.queue[i];
            std::vector<flatbuffers::Offset<fb::UnixInFlight>> fds;
            for (const auto& f : s.queue_fds[i])
                fds.push_back(fb::CreateUnixInFlight(fbb, f.socket_ino, f.object_id));
            std::vector<uint8_t> sender(m.sender.begin(), m.sender.end());
            queue.push_back(
                fb::CreateUnixMessageDirect(fbb, &m.data, &fds, m.pid, m.uid, m.gid, &sender));
        }
        std::vector<uint8_t> name(s.diag.name.begin(), s.diag.name.end());
        std::vector<uint8_t> ext(s.external_peer.begin(), s.external_peer.end());
        std::vector<uint64_t> icons = s.diag.icons;
        uint64_t peer = s.external_peer.empty() ? s.diag.peer : 0;
        socks.push_back(fb::CreateUnixSocketDirect(
            fbb, s.ino, s.object_id, s.diag.type, s.diag.state, s.flags, &name, s.name_file_gone,
            s.file_mode, s.file_uid, s.file_gid, peer, s.peer_closed, s.accepted, &ext, s.listener,
            &icons, s.diag.wqueue, s.diag.shutdown, s.rcvbuf, s.sndbuf, s.passcred != 0, s.peek_off,
            &queue, s.pid, s.fd, s.name_dir.empty() ? nullptr : s.name_dir.c_str()));
    }
    fbb.Finish(fb::CreateUnixImageDirect(fbb, &socks), fb::UnixImageIdentifier());
    CR_TRY(sdk::write_section(*m_ctx, "unix.cr", fbb));
    m_ctx->debug(strf("unix.cr: %zu sockets", m_socks.size()));
    return {};
}

}  // namespace cr::net_unix
