// cr.net.unix, restore: sockets made again in cr (prepare), handed to the tree as objects; their
// queues, shutdown state, late datagram connections and options once the tree exists
// (post_restore: credentials name pids, which must exist by then).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <climits>
#include <cr/sdk/image.hpp>

#include "unix.hpp"

namespace cr::net_unix {

namespace {

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

std::string bytes(const flatbuffers::Vector<uint8_t>* v) {
    return v ? std::string(reinterpret_cast<const char*>(v->data()), v->size()) : std::string();
}

bool is_path(const std::string& name) {
    return !name.empty() && name[0] != '\0';
}

bool is_relative(const std::string& name) {
    return is_path(name) && name[0] != '/';
}

// Where a path name is in the file system: a relative one under the directory it was bound in.
std::string fs_path(const std::string& name, const std::string& dir) {
    if (!is_path(name)) return {};
    std::string path(name.c_str());
    return is_relative(name) ? dir + "/" + path : path;
}

std::string fs_path(const fb::UnixSocket& s) {
    return fs_path(bytes(s.name()), s.name_dir() ? s.name_dir()->str() : std::string());
}

// bind(2) with the name as it was given: a relative one from a child that enters dir first, so
// that cr's own working directory never changes.
Result<void> bind_as_given(int fd, const std::string& name, const std::string& dir) {
    sockaddr_un addr{};
    socklen_t len = make_addr(name, addr);
    if (!is_relative(name)) {
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0)
            return Error::from_errno(strf("bind %s", printable_name(name).c_str()));
        return {};
    }
    pid_t child = ::fork();
    if (child < 0) return Error::from_errno("fork");
    if (child == 0) {
        if (::chdir(dir.c_str()) != 0) ::_exit(errno);
        ::_exit(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0 ? 0 : errno);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0)
        if (errno != EINTR) return Error::from_errno("waitpid");
    if (!WIFEXITED(status))
        return Error(strf("bind %s in %s: the helper died", name.c_str(), dir.c_str()));
    if (WEXITSTATUS(status) != 0) {
        errno = WEXITSTATUS(status);
        return Error::from_errno(strf("bind %s in %s", name.c_str(), dir.c_str()));
    }
    return {};
}

// A name bound only for a moment (a stand-in listener or sender): a file already at its path is
// moved aside and put back afterwards.
class TempName {
public:
    TempName() = default;
    TempName(const TempName&) = delete;
    TempName& operator=(const TempName&) = delete;
    ~TempName() { release(); }
    Result<void> bind(int fd, const std::string& name, const std::string& dir, uint64_t tag) {
        if (is_path(name)) {
            m_path = fs_path(name, dir);
            struct stat st {};
            if (::lstat(m_path.c_str(), &st) == 0) {
                m_aside = strf("%s.cr-restore-%llu", m_path.c_str(), ull(tag));
                if (::rename(m_path.c_str(), m_aside.c_str()) != 0) {
                    m_aside.clear();
                    return Error::from_errno(strf("rename %s aside", m_path.c_str()));
                }
            }
        }
        CR_TRY(bind_as_given(fd, name, dir));
        m_bound = is_path(name);
        return {};
    }
    void release() {
        if (m_bound) ::unlink(m_path.c_str());
        if (!m_aside.empty()) (void)::rename(m_aside.c_str(), m_path.c_str());
        m_bound = false;
        m_aside.clear();
    }

private:
    std::string m_path;
    std::string m_aside;
    bool m_bound = false;
};

// A socket file some live socket is bound to (a listener or a datagram socket; connected
// stream sockets only carry their listener's path).
const DiagSocket* live_at(const DiagTable& diag, uint64_t file_ino) {
    for (const auto& [ino, d] : diag)
        if (d.vfs_ino == file_ino && (d.state == k_listen || d.type == SOCK_DGRAM)) return &d;
    return nullptr;
}

Result<void> check_not_live(const DiagTable& diag, const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return {};
    if (const DiagSocket* d = live_at(diag, static_cast<uint64_t>(st.st_ino)))
        return Error(strf(
            "%s is bound by a live socket (socket:[%llu]) outside the image; stop its owner first",
            path.c_str(), ull(d->ino)));
    return {};
}

Result<UniqueFd> make_socket(int type) {
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!fd) return Error::from_errno(strf("socket(AF_UNIX, %s)", type_name(type)));
    return fd;
}

}  // namespace

std::string Restorer::where(const fb::UnixSocket& s) const {
    std::string holder = s.fd() >= 0 ? strf(" of pid %d fd %d", s.pid(), s.fd()) : std::string();
    return strf("unix.cr: unix %s socket socket:[%llu] (%s)%s", type_name(s.type()), ull(s.ino()),
                printable_name(bytes(s.name())).c_str(), holder.c_str());
}

Restorer::~Restorer() {
    for (const std::string& path : m_unlink_later) ::unlink(path.c_str());
    for (const auto& [aside, path] : m_aside) (void)::rename(aside.c_str(), path.c_str());
}

Restorer::Live* Restorer::find(uint64_t ino) {
    auto it = m_live.find(ino);
    return it == m_live.end() ? nullptr : &it->second;
}

Result<void> Restorer::check_image() {
    if (!m_image->sockets()) return {};
    for (const fb::UnixSocket* s : *m_image->sockets()) {
        std::string w = where(*s);
        if (s->ino() == 0 || m_live.count(s->ino()))
            return Error(w + ": missing or repeated inode");
        int t = s->type();
        if (t != SOCK_STREAM && t != SOCK_DGRAM && t != SOCK_SEQPACKET)
            return Error(w + ": bad socket type");
        std::string name = bytes(s->name());
        if (name.size() > sizeof(sockaddr_un::sun_path)) return Error(w + ": name too long");
        if (is_relative(name) &&
            (!s->name_dir() || s->name_dir()->size() == 0 || s->name_dir()->c_str()[0] != '/'))
            return Error(w + ": a relative path name without its directory");
        if (s->external_peer() && s->external_peer()->size() > sizeof(sockaddr_un::sun_path))
            return Error(w + ": external peer name too long");
        m_live[s->ino()].img = s;
    }
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        std::string w = where(s);
        Live* peer = s.peer() ? find(s.peer()) : nullptr;
        if (s.peer() && !peer)
            return Error(
                strf("%s: peer socket:[%llu] is not in the image", w.c_str(), ull(s.peer())));
        if (peer && peer->img->type() != s.type())
            return Error(w + ": its peer is of another type");
        if (s.listener()) {
            Live* lst = find(s.listener());
            if (!lst || lst->img->state() != k_listen || !lst->img->icons() ||
                std::find(lst->img->icons()->begin(), lst->img->icons()->end(), s.ino()) ==
                    lst->img->icons()->end())
                return Error(w + ": waits on no listener of the image");
            if (s.type() == SOCK_DGRAM || s.peer() || s.state() != k_established)
                return Error(w + ": waits on a listener, but is not an unaccepted client");
        } else if (peer && s.type() != SOCK_DGRAM && peer->img->peer() != s.ino()) {
            return Error(w + ": its peer is connected elsewhere");
        }
        if (s.state() == k_listen) {
            if (bytes(s.name()).empty()) return Error(w + ": a listener without a name");
            if (s.type() == SOCK_DGRAM) return Error(w + ": a listening datagram socket");
            if (s.icons())
                for (uint64_t icon : *s.icons()) {
                    Live* e = find(icon);
                    if (!e || e->img->listener() != s.ino())
                        return Error(w + ": the client of a pending connection is missing");
                }
        }
        if (s.queue())
            for (const fb::UnixMessage* m : *s.queue()) {
                if (m->sender() && m->sender()->size() > sizeof(sockaddr_un::sun_path))
                    return Error(w + ": a sender name too long");
                if (m->fds() && m->fds()->size() > k_max_fds)
                    return Error(w + ": too many descriptors in a message");
                if (m->fds())
                    for (const fb::UnixInFlight* f : *m->fds()) {
                        if (!f->socket_ino() && f->object_id()) continue;  // checked when lent
                        Live* target = f->socket_ino() ? find(f->socket_ino()) : nullptr;
                        if (!target)
                            return Error(
                                w + ": a descriptor in flight that is not a socket of the image");
                    }
            }
    }
    return {};
}

Result<UniqueFd> Restorer::new_socket(const fb::UnixSocket& s) {
    return make_socket(s.type());
}

// A name the socket owns: a stale socket file at the path goes, the file gets its mode and owner
// back; a path whose file was gone at dump is removed again once the queues are back.
Result<void> Restorer::bind_name(int fd, const fb::UnixSocket& s) {
    std::string name = bytes(s.name());
    if (name.empty()) return {};
    std::string w = where(s);
    std::string path = fs_path(s);
    if (!path.empty()) {
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (s.name_file_gone()) {
                std::string aside = strf("%s.cr-restore-%llu", path.c_str(), ull(s.ino()));
                if (::rename(path.c_str(), aside.c_str()) != 0)
                    return Error::from_errno(strf("%s: rename %s aside", w.c_str(), path.c_str()));
                m_aside.emplace_back(aside, path);
            } else if (S_ISSOCK(st.st_mode)) {
                CR_TRY_CTX(check_not_live(m_diag, path), w);
                if (::unlink(path.c_str()) != 0)
                    return Error::from_errno(strf("%s: unlink stale %s", w.c_str(), path.c_str()));
            } else {
                return Error(strf("%s: %s exists and is not a socket", w.c_str(), path.c_str()));
            }
        }
    }
    CR_TRY_CTX(bind_as_given(fd, name, s.name_dir() ? s.name_dir()->str() : std::string()), w);
    if (path.empty()) return {};
    if (s.name_file_gone()) {
        m_unlink_later.push_back(path);
        return {};
    }
    if (::chmod(path.c_str(), s.file_mode() & 07777) != 0)
        return Error::from_errno(strf("%s: chmod %s", w.c_str(), path.c_str()));
    if (::lchown(path.c_str(), s.file_uid(), s.file_gid()) != 0)
        return Error::from_errno(strf("%s: chown %s", w.c_str(), path.c_str()));
    return {};
}

Result<void> Restorer::connect_by_name(int fd, const std::string& name, const std::string& dir,
                                       const std::string& what) {
    sockaddr_un addr{};
    socklen_t len = make_addr(is_relative(name) ? fs_path(name, dir) : name, addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0)
        return Error::from_errno(
            strf("%s: connect to %s", what.c_str(), printable_name(name).c_str()));
    return {};
}

Result<void> Restorer::create_listeners() {
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        if (s.state() != k_listen) continue;
        l.fd = CR_TRY(new_socket(s));
        CR_TRY(bind_name(l.fd.get(), s));
        if (::listen(l.fd.get(), static_cast<int>(std::min<uint32_t>(s.backlog(), 1u << 20))) != 0)
            return Error::from_errno(where(s) + ": listen");
    }
    return {};
}

// The accepted end of a connection gets its name back by being accepted on that name: on the
// listener of the image that has it, or on a stand-in listener bound there for the moment.
Result<std::pair<UniqueFd, UniqueFd>> Restorer::connect_through_listener(
    const fb::UnixSocket& server, const fb::UnixSocket* client) {
    std::string name = bytes(server.name());
    std::string dir = server.name_dir() ? server.name_dir()->str() : std::string();
    std::string w = where(server);
    int lfd = -1;
    for (auto& [ino, l] : m_live)
        if (l.img->state() == k_listen && l.fd && l.img->type() == server.type() &&
            bytes(l.img->name()) == name && fs_path(*l.img) == fs_path(server))
            lfd = l.fd.get();
    UniqueFd stand_in;
    TempName temp;
    if (lfd < 0) {
        stand_in = CR_TRY(make_socket(server.type()));
        if (is_path(name))
            CR_TRY_CTX(check_not_live(m_diag, fs_path(server)), w + ": its listener's name");
        CR_TRY_CTX(temp.bind(stand_in.get(), name, dir, server.ino()), w);
        if (::listen(stand_in.get(), 1) != 0) return Error::from_errno(w + ": listen");
        lfd = stand_in.get();
    }
    UniqueFd c = CR_TRY(make_socket(server.type()));
    if (client) CR_TRY(bind_name(c.get(), *client));
    CR_TRY(connect_by_name(c.get(), name, dir, w));
    UniqueFd s(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!s) return Error::from_errno(w + ": accept");
    return std::pair<UniqueFd, UniqueFd>{std::move(c), std::move(s)};
}

Result<void> Restorer::create_pair(Live& a, Live* b) {
    int type = a.img->type();
    Live* srv = nullptr;
    Live* cli = nullptr;
    if (type != SOCK_DGRAM) {
        if (a.img->accepted())
            srv = &a, cli = b;
        else if (b && b->img->accepted())
            srv = b, cli = &a;
    }
    if (srv) {
        auto [c, s] = CR_TRY(connect_through_listener(*srv->img, cli ? cli->img : nullptr));
        srv->fd = std::move(s);
        (cli ? cli->fd : srv->partner) = std::move(c);
        return {};
    }
    int sv[2];
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0)
        return Error::from_errno(where(*a.img) + ": socketpair");
    a.fd.reset(sv[0]);
    (b ? b->fd : a.partner).reset(sv[1]);
    CR_TRY(bind_name(a.fd.get(), *a.img));
    if (b) CR_TRY(bind_name(b->fd.get(), *b->img));
    return {};
}

Result<void> Restorer::create_others() {
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        if (l.fd || s.listener() || s.state() == k_listen) continue;
        Live* peer = s.peer() ? find(s.peer()) : nullptr;
        std::string ext = bytes(s.external_peer());
        bool dgram_alone =
            s.type() == SOCK_DGRAM && !s.peer_closed() && (!peer || peer->img->peer() != s.ino());
        if (s.state() != k_established || !ext.empty() || dgram_alone) {
            l.fd = CR_TRY(new_socket(s));
            CR_TRY(bind_name(l.fd.get(), s));
            if (!ext.empty() && s.type() != SOCK_DGRAM)
                CR_TRY(connect_by_name(l.fd.get(), ext, "",
                                       where(s) + ": external peer (--ext-unix-sk)"));
            l.deferred_connect = s.type() == SOCK_DGRAM && (peer || !ext.empty());
            continue;
        }
        if (!peer && !s.peer_closed()) return Error(where(s) + ": connected, but to nothing");
        CR_TRY(create_pair(l, peer));
    }
    return {};
}

// Clients not yet accepted connect again, in the order the listener would accept them.
Result<void> Restorer::create_pending() {
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        if (s.state() != k_listen || !s.icons()) continue;
        std::string name = bytes(s.name());
        for (uint64_t icon : *s.icons()) {
            Live& client = *find(icon);
            if (client.fd) return Error(where(*client.img) + ": made twice");
            UniqueFd c = CR_TRY(new_socket(*client.img));
            CR_TRY(bind_name(c.get(), *client.img));
            if (::fcntl(c.get(), F_SETFL, O_NONBLOCK) != 0)
                return Error::from_errno("fcntl F_SETFL");
            CR_TRY(connect_by_name(c.get(), name, s.name_dir() ? s.name_dir()->str() : "",
                                   where(*client.img)));
            client.fd = std::move(c);
        }
    }
    return {};
}

Result<void> Restorer::prepare() {
    m_image = CR_TRY(
        sdk::read_section_as<fb::UnixImage>(*m_ctx, "unix.cr", "CRUX", &fb::VerifyUnixImageBuffer));
    CR_TRY(check_image());
    m_diag = CR_TRY(unix_diag_all());  // to tell a stale socket file from a live one
    CR_TRY(create_listeners());
    CR_TRY(create_others());
    CR_TRY(create_pending());
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        if (!l.fd) return Error(where(s) + ": was not made");
        if (::fcntl(l.fd.get(), F_SETFL, static_cast<int>(s.flags() & O_NONBLOCK)) != 0)
            return Error::from_errno(where(s) + ": fcntl F_SETFL");
        if (s.object_id() == 0) continue;
        UniqueFd give(::fcntl(l.fd.get(), F_DUPFD_CLOEXEC, 0));
        if (!give) return Error::from_errno(where(s) + ": fcntl F_DUPFD_CLOEXEC");
        int raw = give.get();
        CR_TRY(m_ctx->set_object_fd(s.object_id(), raw));
        give.release();
        m_ctx->debug(strf("%s: made", where(s).c_str()));
    }
    return {};
}

Result<void> Restorer::fill(Live& r) {
    const fb::UnixSocket& s = *r.img;
    if (!s.queue()) return {};
    std::string w = where(s);
    std::string rname = is_relative(bytes(s.name())) ? fs_path(s) : bytes(s.name());  // sent to
    Live* peer = s.peer() ? find(s.peer()) : nullptr;
    // What waits in r's queue is charged to its senders' send buffers: room for all of it (and
    // the kernel's overhead per buffer) while it goes back; apply_options sets the real sizes.
    size_t total = 0;
    for (const fb::UnixMessage* m : *s.queue()) total += m->data() ? m->data()->size() : 0;
    size_t want =
        std::min<size_t>(std::max<size_t>(2 * total + (4u << 20), 64u << 20), INT_MAX - 1);
    size_t index = 0;
    for (const fb::UnixMessage* m : *s.queue()) {
        std::string what = strf("%s: queued message %zu", w.c_str(), index++);
        OutMessage out;
        out.data = m->data() ? m->data()->data() : nullptr;
        out.size = m->data() ? m->data()->size() : 0;
        std::vector<UniqueFd> lent;  // files other handlers restored
        if (m->fds())
            for (const fb::UnixInFlight* f : *m->fds()) {
                if (f->socket_ino()) {
                    out.fds.push_back(find(f->socket_ino())->fd.get());
                    continue;
                }
                lent.push_back(CR_TRY_CTX(m_ctx->object_fd(f->object_id()),
                                          strf("%s: the file in flight (object %llu)", what.c_str(),
                                               ull(f->object_id()))));
                out.fds.push_back(lent.back().get());
            }
        if (m->pid() > 0 && (::kill(m->pid(), 0) == 0 || errno == EPERM)) {
            out.creds = true;
            out.cred = {m->pid(), m->uid(), m->gid()};
        } else if (s.passcred()) {
            return Error(strf("%s: carries the credentials of pid %d, which does not exist now",
                              what.c_str(), m->pid()));
        }
        int via = -1;
        UniqueFd temp;
        TempName temp_name;
        std::string sender = bytes(m->sender());
        if (s.type() != SOCK_DGRAM) {
            via = r.partner ? r.partner.get() : peer && peer->fd ? peer->fd.get() : -1;
        } else if (r.partner && sender.empty()) {
            via = r.partner.get();
        } else if (peer && peer->img->peer() == s.ino() && peer->fd &&
                   bytes(peer->img->name()) == sender) {
            via = peer->fd.get();
        } else {
            if (rname.empty())
                return Error(what + ": from a socket that is not its pair, to an unnamed socket");
            out.to = &rname;
            for (auto& [ino, l] : m_live)
                if (via < 0 && !sender.empty() && l.fd && l.img->type() == SOCK_DGRAM &&
                    bytes(l.img->name()) == sender)
                    via = l.fd.get();
            if (via < 0) {
                temp = CR_TRY(make_socket(SOCK_DGRAM));
                if (is_path(sender))
                    CR_TRY_CTX(check_not_live(m_diag, sender.c_str()), what + ": its sender");
                if (!sender.empty())
                    CR_TRY_CTX(temp_name.bind(temp.get(), sender, "", s.ino()),
                               what + ": its sender");
                via = temp.get();
            }
        }
        if (via < 0) return Error(what + ": no socket to send it from");
        if (CR_TRY(get_int_opt(via, SO_SNDBUF, "SO_SNDBUF")) < static_cast<int>(want))
            CR_TRY_CTX(
                set_int_opt(via, SO_SNDBUFFORCE, static_cast<int>(want / 2), "SO_SNDBUFFORCE"),
                what);
        CR_TRY_CTX(send_message(via, out), what);
    }
    return {};
}

Result<void> Restorer::apply_options(Live& l) {
    const fb::UnixSocket& s = *l.img;
    int fd = l.fd.get();
    std::string w = where(s);
    if (s.rcvbuf() > 0 && CR_TRY(get_int_opt(fd, SO_RCVBUF, "SO_RCVBUF")) != s.rcvbuf())
        CR_TRY_CTX(set_int_opt(fd, SO_RCVBUFFORCE, s.rcvbuf() / 2, "SO_RCVBUFFORCE"), w);
    if (s.sndbuf() > 0 && CR_TRY(get_int_opt(fd, SO_SNDBUF, "SO_SNDBUF")) != s.sndbuf())
        CR_TRY_CTX(set_int_opt(fd, SO_SNDBUFFORCE, s.sndbuf() / 2, "SO_SNDBUFFORCE"), w);
    CR_TRY_CTX(set_int_opt(fd, SO_PASSCRED, s.passcred() ? 1 : 0, "SO_PASSCRED"), w);
    CR_TRY_CTX(set_int_opt(fd, SO_PEEK_OFF, s.peek_off(), "SO_PEEK_OFF"), w);
    return {};
}

Result<void> Restorer::finish() {
    for (auto& [ino, l] : m_live) CR_TRY(fill(l));
    for (auto& [ino, l] : m_live) {
        const fb::UnixSocket& s = *l.img;
        if (l.deferred_connect) {
            std::string ext = bytes(s.external_peer());
            const fb::UnixSocket* peer = ext.empty() ? find(s.peer())->img : nullptr;
            std::string to = peer ? bytes(peer->name()) : ext;
            std::string dir = peer && peer->name_dir() ? peer->name_dir()->str() : std::string();
            CR_TRY(
                connect_by_name(l.fd.get(), to, dir,
                                where(s) + (ext.empty() ? "" : ": external peer (--ext-unix-sk)")));
        }
        unsigned bits = s.shutdown() & 3u;
        if (l.fd && bits && ::shutdown(l.fd.get(), static_cast<int>(bits) - 1) != 0 &&
            errno != ENOTCONN)
            return Error::from_errno(where(s) + ": shutdown");
    }
    for (auto& [ino, l] : m_live) l.partner.reset();
    for (auto& [ino, l] : m_live)
        if (l.fd) CR_TRY(apply_options(l));
    for (const std::string& path : m_unlink_later)
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            return Error::from_errno(strf("unlink %s", path.c_str()));
    for (const auto& [aside, path] : m_aside)
        if (::rename(aside.c_str(), path.c_str()) != 0)
            return Error::from_errno(strf("rename %s back", aside.c_str()));
    m_unlink_later.clear();
    m_aside.clear();
    m_live.clear();
    return {};
}

}  // namespace cr::net_unix
