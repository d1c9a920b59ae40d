// cr.net.unix: the parts of the handler, dump and restore, and what they share.
#pragma once

#include <unix_generated.h>

#include <cr/sdk/handler.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "unix_diag.hpp"
#include "unix_queue.hpp"

namespace cr::net_unix {

namespace fb = cr::image::v1;

constexpr unsigned k_established = 1;  // TCP_ESTABLISHED
constexpr unsigned k_listen = 10;      // TCP_LISTEN
constexpr unsigned k_close = 7;        // TCP_CLOSE

// A socket as dumped. Sockets no task holds (in flight, pending connections) have no object.
struct SocketRecord {
    uint64_t ino = 0;
    uint64_t object_id = 0;
    pid_t pid = 0;
    int fd = -1;
    UniqueFd own;  // a descriptor of it inside cr; none for a pending connection
    DiagSocket diag;
    uint32_t flags = 0;
    bool name_file_gone = false;
    std::string name_dir;  // a relative path name: the directory it is relative to
    uint32_t file_mode = 0, file_uid = 0, file_gid = 0;
    bool peer_closed = false;
    bool accepted = false;
    std::string external_peer;
    uint64_t listener = 0;  // a client not yet accepted: the listener it waits on
    int rcvbuf = 0, sndbuf = 0, passcred = 0, peek_off = -1;
    std::vector<Message> queue;
    struct InFlight {
        uint64_t socket_ino = 0;  // a unix socket of this image
        uint64_t object_id = 0;   // a file another handler saves (adopted by the core)
    };
    std::vector<std::vector<InFlight>> queue_fds;  // per message
};

class Dumper {
public:
    // The context of the op being run: a Context lives only as long as its op.
    void use(sdk::Context& ctx) { m_ctx = &ctx; }
    Result<void> dump_fd(const cr_fd_info& fd);
    Result<void> finish();

private:
    Result<void> load_diag();
    struct Holder {
        uint64_t object_id;
        pid_t pid;
        int fd;  // -1: in flight
    };
    Result<SocketRecord*> capture(uint64_t ino, UniqueFd own, Holder holder,
                                  const std::string& where);
    Result<void> check_pending(SocketRecord& s);
    Result<void> capture_queue(SocketRecord& s, const std::string& where);
    Result<void> check_peers();
    void decide_accepted();
    std::string where_of(const SocketRecord& s) const;
    bool is_listener_name(const std::string& name, uint64_t vfs_ino) const;
    Result<void> write_section();

    sdk::Context* m_ctx = nullptr;
    bool m_loaded = false;
    DiagTable m_diag;
    std::map<uint64_t, std::unique_ptr<SocketRecord>> m_socks;
};

class Restorer {
public:
    Restorer() = default;
    Restorer(const Restorer&) = delete;
    Restorer& operator=(const Restorer&) = delete;
    ~Restorer();  // a restore that failed half way: names made for the moment go, files come back
    void use(sdk::Context& ctx) { m_ctx = &ctx; }
    Result<void> prepare();
    Result<void> finish();  // post_restore: queues, shutdowns, late connects, options

private:
    struct Live {
        const fb::UnixSocket* img = nullptr;
        UniqueFd fd;
        UniqueFd partner;  // a stand-in for a closed peer or the client of a pending connection
        bool deferred_connect = false;
    };
    Result<void> check_image();
    Result<void> create_listeners();
    Result<void> create_others();
    Result<void> create_pending();
    Result<void> create_pair(Live& a, Live* b);
    Result<UniqueFd> new_socket(const fb::UnixSocket& s);
    Result<void> bind_name(int fd, const fb::UnixSocket& s);
    Result<void> connect_by_name(int fd, const std::string& name, const std::string& dir,
                                 const std::string& what);
    Result<std::pair<UniqueFd, UniqueFd>> connect_through_listener(const fb::UnixSocket& server,
                                                                   const fb::UnixSocket* client);
    Result<void> fill(Live& r);
    Result<int> sender_for(Live& r, const fb::UnixMessage& m, UniqueFd& temp);
    Result<void> apply_options(Live& l);
    Live* find(uint64_t ino);
    std::string where(const fb::UnixSocket& s) const;

    sdk::Context* m_ctx = nullptr;
    const fb::UnixImage* m_image = nullptr;
    std::map<uint64_t, Live> m_live;
    DiagTable m_diag;
    std::vector<std::string> m_unlink_later;                   // names whose file was gone at dump
    std::vector<std::pair<std::string, std::string>> m_aside;  // moved aside -> put back
};

}  // namespace cr::net_unix
