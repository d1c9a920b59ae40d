// cr.files.pipe: anonymous pipes, their queued data and every open end.
#include <fcntl.h>
#include <pipe_generated.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <string>
#include <vector>

#include "pipe_data.hpp"

namespace {

namespace fb = cr::image::v1;
using cr::Error;
using cr::Result;
using cr::strf;
using cr::UniqueFd;
using namespace cr::files_pipe;

// Status flags an end keeps across restore; the rest of fdinfo's flags are its access mode,
// per-fd bits (O_CLOEXEC) or bits with no effect on pipes.
constexpr uint32_t k_end_flags = O_NONBLOCK | O_DIRECT;

struct PipeRecord {
    uint64_t ino = 0;
    int capacity = 0;
    Contents contents;
    bool read_end_in_tree = false;
    bool write_end_in_tree = false;
    bool direct_end = false;     // some end in the tree writes packets
    bool readers_exist = false;  // seen from a write end: someone, somewhere, reads
    bool writers_exist = false;
};

struct EndRecord {
    uint64_t object_id = 0;
    uint64_t ino = 0;
    uint32_t flags = 0;
};

[[nodiscard]] bool reads(uint32_t flags) {
    return (flags & O_ACCMODE) != O_WRONLY;
}
[[nodiscard]] bool writes(uint32_t flags) {
    return (flags & O_ACCMODE) != O_RDONLY;
}

// A new open file description of the same pipe, with the given access mode.
Result<UniqueFd> reopen(int fd, int access) {
    std::string path = strf("/proc/self/fd/%d", fd);
    UniqueFd out(::open(path.c_str(), access | O_NONBLOCK | O_CLOEXEC));
    if (!out) return Error::from_errno("open", path);
    return out;
}

class FilesPipeHandler {
public:
    static constexpr const char* k_id = "cr.files.pipe";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary = "pipes: queued data, capacity and every open end";
    static constexpr const char* k_claims[] = {"fd:pipe", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRPP", nullptr};

    explicit FilesPipeHandler(cr::sdk::Context&) {}

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string link = fd->link ? fd->link : "";
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, link.c_str());
        auto ino = parse_pipe_link(link);
        if (!ino)
            return Error(where +
                         ": not an anonymous pipe (named fifos are not handled by cr.files.pipe)");
        struct stat st {};
        if (::fstat(fd->cr_fd, &st) != 0) return Error::from_errno(where + ": fstat");
        if (!S_ISFIFO(st.st_mode) || static_cast<uint64_t>(st.st_ino) != *ino)
            return Error(where + ": the duplicate in cr is not this pipe");
        if (fd->flags & O_ASYNC)
            return Error(where + ": signal-driven I/O (O_ASYNC) is not supported yet");

        auto [it, first] = m_pipes.try_emplace(*ino);
        PipeRecord& pipe = it->second;
        // Before any end of our own is opened: POLLERR on a write end means no reader at all,
        // POLLHUP on a read end no writer at all.
        pollfd pfd{fd->cr_fd, 0, 0};
        if (::poll(&pfd, 1, 0) < 0) return Error::from_errno(where + ": poll");
        if (writes(fd->flags) && !(pfd.revents & POLLERR)) pipe.readers_exist = true;
        if (reads(fd->flags) && !(pfd.revents & POLLHUP)) pipe.writers_exist = true;
        pipe.read_end_in_tree |= reads(fd->flags);
        pipe.write_end_in_tree |= writes(fd->flags);
        pipe.direct_end |= writes(fd->flags) && (fd->flags & O_DIRECT);

        if (first) {
            pipe.ino = *ino;
            CR_TRY_CTX(capture(fd->cr_fd, fd->flags, pipe), where);
            ctx.debug(strf("%s: capacity %d, %zu bytes queued", where.c_str(), pipe.capacity,
                           pipe.contents.data.size()));
        }
        m_ends.push_back({fd->object_id, *ino, fd->flags});
        ctx.debug(strf("%s: %s end, flags 0%o", where.c_str(), writes(fd->flags) ? "write" : "read",
                       fd->flags));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::Pipe>> pipes;
        for (const auto& [ino, p] : m_pipes) {
            warn_outside_peer(ctx, p);
            const std::vector<uint32_t>& chunks = p.contents.chunks;
            bool packets = chunks.size() > 1 || (p.direct_end && !chunks.empty());
            pipes.push_back(fb::CreatePipeDirect(fbb, ino, static_cast<uint32_t>(p.capacity),
                                                 &p.contents.data, packets ? &chunks : nullptr));
        }
        std::vector<flatbuffers::Offset<fb::PipeEnd>> ends;
        for (const EndRecord& e : m_ends)
            ends.push_back(fb::CreatePipeEnd(fbb, e.object_id, e.ino,
                                             (e.flags & O_ACCMODE) == O_WRONLY, e.flags));
        fbb.Finish(fb::CreatePipeImageDirect(fbb, &pipes, &ends), fb::PipeImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "pipe.cr", fbb));
        ctx.debug(strf("pipe.cr: %zu pipes, %zu ends", m_pipes.size(), m_ends.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::PipeImage* image = CR_TRY(cr::sdk::read_section_as<fb::PipeImage>(
            ctx, "pipe.cr", "CRPP", &fb::VerifyPipeImageBuffer));
        std::map<uint64_t, NewPipe> made;
        if (image->pipes())
            for (const fb::Pipe* p : *image->pipes())
                made[p->ino()] =
                    CR_TRY_CTX(make_pipe(ctx, *p), strf("pipe.cr: pipe:[%llu]", ull(p->ino())));
        if (image->ends()) {
            for (const fb::PipeEnd* e : *image->ends()) {
                std::string where = strf("pipe.cr: object %llu (pipe:[%llu])", ull(e->object_id()),
                                         ull(e->pipe_ino()));
                auto it = made.find(e->pipe_ino());
                if (it == made.end()) return Error(where + ": no such pipe in the image");
                UniqueFd fd = CR_TRY_CTX(open_end(it->second, e->flags()), where);
                if (::fcntl(fd.get(), F_SETFL, static_cast<int>(e->flags() & k_end_flags)) != 0)
                    return Error::from_errno(where + ": fcntl F_SETFL");
                int raw = fd.get();
                CR_TRY(ctx.set_object_fd(e->object_id(), raw));
                fd.release();  // the core owns it now
                ctx.debug(strf("%s: %s end, flags 0%o", where.c_str(),
                               writes(e->flags()) ? "write" : "read", e->flags()));
            }
        }
        return {};  // ends nobody holds close with `made`, as they were closed in the tree
    }

private:
    struct NewPipe {
        UniqueFd read_fd;
        UniqueFd write_fd;
        bool read_given = false;
        bool write_given = false;
    };

    static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

    static Result<void> capture(int cr_fd, uint32_t flags, PipeRecord& pipe) {
        pipe.capacity = ::fcntl(cr_fd, F_GETPIPE_SZ);
        if (pipe.capacity < 0) return Error::from_errno("fcntl F_GETPIPE_SZ");
        int read_fd = cr_fd;
        UniqueFd own_reader;
        if (!reads(flags)) {
            // A write end only: a read end of our own, closed before the next end is looked at.
            own_reader = CR_TRY(reopen(cr_fd, O_RDONLY));
            read_fd = own_reader.get();
        }
        pipe.contents = CR_TRY(peek_pipe(read_fd, pipe.capacity));
        return {};
    }

    static void warn_outside_peer(cr::sdk::Context& ctx, const PipeRecord& p) {
        if (!p.read_end_in_tree && p.readers_exist)
            ctx.warn(
                strf("pipe:[%llu]: its reader is outside the dumped tree; after restore the "
                     "writers in the tree "
                     "write to a pipe nobody reads (EPIPE)",
                     ull(p.ino)));
        if (!p.write_end_in_tree && p.writers_exist)
            ctx.warn(
                strf("pipe:[%llu]: its writer is outside the dumped tree; after restore the "
                     "readers in the tree "
                     "see end of file once the queued data is read",
                     ull(p.ino)));
    }

    static Result<NewPipe> make_pipe(cr::sdk::Context& ctx, const fb::Pipe& p) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
        NewPipe out{UniqueFd(fds[0]), UniqueFd(fds[1])};
        int capacity = static_cast<int>(p.capacity());
        if (capacity > ::fcntl(out.write_fd.get(), F_GETPIPE_SZ) &&
            ::fcntl(out.write_fd.get(), F_SETPIPE_SZ, capacity) < 0)
            return Error::from_errno(strf("fcntl F_SETPIPE_SZ %d", capacity));
        std::vector<uint32_t> packets;
        if (p.packets()) packets.assign(p.packets()->begin(), p.packets()->end());
        if (p.data())
            CR_TRY(fill_pipe(out.write_fd.get(), p.data()->data(), p.data()->size(), packets));
        std::string shape = packets.empty() ? "" : strf(" in %zu packets", packets.size());
        ctx.debug(strf("pipe:[%llu]: capacity %d, %u bytes queued%s", ull(p.ino()), capacity,
                       p.data() ? p.data()->size() : 0u, shape.c_str()));
        return out;
    }

    // The first read (write) end takes the pipe's own description; later ones, distinct open
    // file descriptions in the tree, get distinct ones here too.
    static Result<UniqueFd> open_end(NewPipe& p, uint32_t flags) {
        int access = static_cast<int>(flags & O_ACCMODE);
        if (access == O_RDONLY && !p.read_given) {
            p.read_given = true;
            return dup_cloexec(p.read_fd.get());
        }
        if (access == O_WRONLY && !p.write_given) {
            p.write_given = true;
            return dup_cloexec(p.write_fd.get());
        }
        return reopen(access == O_WRONLY ? p.write_fd.get() : p.read_fd.get(), access);
    }

    static Result<UniqueFd> dup_cloexec(int fd) {
        UniqueFd out(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!out) return Error::from_errno("fcntl F_DUPFD_CLOEXEC");
        return out;
    }

    std::map<uint64_t, PipeRecord> m_pipes;
    std::vector<EndRecord> m_ends;
};

}  // namespace

CR_DECLARE_HANDLER(FilesPipeHandler)
