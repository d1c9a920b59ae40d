// cr.net.unix: unix domain sockets. Peers and pending connections come from sock_diag, queued
// messages (with the descriptors and credentials they carry) from MSG_PEEK on cr's duplicate, so
// the tree keeps everything; see dump.cpp and restore.cpp.
#include "unix.hpp"

namespace {

using cr::Result;
using namespace cr::net_unix;

class NetUnixHandler {
public:
    static constexpr const char* k_id = "cr.net.unix";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "unix sockets: names, peers, pending connections, queued messages with fds and credentials";
    static constexpr const char* k_claims[] = {"fd:socket:unix-stream", "fd:socket:unix-dgram",
                                               "fd:socket:unix-seqpacket", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRUX", nullptr};

    explicit NetUnixHandler(cr::sdk::Context&) {}

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        m_dumper.use(ctx);
        return m_dumper.dump_fd(*fd);
    }
    Result<void> dump_finish(cr::sdk::Context& ctx) {
        m_dumper.use(ctx);
        return m_dumper.finish();
    }
    Result<void> prepare(cr::sdk::Context& ctx) {
        m_restorer.use(ctx);
        return m_restorer.prepare();
    }
    Result<void> post_restore(cr::sdk::Context& ctx) {
        m_restorer.use(ctx);
        return m_restorer.finish();
    }

private:
    Dumper m_dumper;
    Restorer m_restorer;
};

}  // namespace

CR_DECLARE_HANDLER(NetUnixHandler)
