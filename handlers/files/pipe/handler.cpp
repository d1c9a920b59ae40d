// cr.files.pipe: anonymous pipes and named pipes (fifos), their queued data and every open end.
#include <fcntl.h>
#include <pipe_generated.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <string>
#include <utility>
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

// (st_dev, st_ino) of a fifo; (0, inode) of an anonymous pipe, as its link names it.
using PipeKey = std::pair<uint64_t, uint64_t>;

struct PipeRecord {
    PipeKey key;
    std::string path;  // fifos only
    uint32_t mode = 0;
    int capacity = 0;
    Contents contents;
    bool captured = false;
    bool read_end_in_tree = false;
    bool write_end_in_tree = false;
    bool direct_end = false;     // some end in the tree writes packets
    bool readers_exist = false;  // seen from a write end: someone, somewhere, reads
    bool writers_exist = false;
};

struct EndRecord {
    uint64_t object_id = 0;
    PipeKey key;
    uint32_t flags = 0;
    pid_t pid = 0;
    int fd = 0;
};

[[nodiscard]] bool reads(uint32_t flags) {
    return (flags & O_PATH) == 0 && (flags & O_ACCMODE) != O_WRONLY;
}
[[nodiscard]] bool writes(uint32_t flags) {
    return (flags & O_PATH) == 0 && (flags & O_ACCMODE) != O_RDONLY;
}
[[nodiscard]] const char* end_name(uint32_t flags) {
    if (flags & O_PATH) return "path-only";
    if ((flags & O_ACCMODE) == O_RDWR) return "read-write";
    return writes(flags) ? "write" : "read";
}
unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

// A new open file description of the same pipe, with the given access mode.
Result<UniqueFd> reopen(const std::string& path, int access) {
    int flags = access == O_PATH ? O_PATH : access | O_NONBLOCK;
    UniqueFd out(::open(path.c_str(), flags | O_CLOEXEC));
    if (!out) return Error::from_errno("open", path);
    return out;
}
Result<UniqueFd> reopen(int fd, int access) {
    return reopen(strf("/proc/self/fd/%d", fd), access);
}

// The identity of the pipe behind an fd of the tree, and for a fifo the path it reopens by.
Result<PipeRecord> identify(const cr_fd_info& fd, const std::string& where) {
    std::string link = fd.link ? fd.link : "";
    struct stat st {};
    if (::fstat(fd.cr_fd, &st) != 0) return Error::from_errno(where + ": fstat");
    if (!S_ISFIFO(st.st_mode)) return Error(where + ": the duplicate in cr is not a pipe");
    PipeRecord p;
    if (auto ino = parse_pipe_link(link)) {
        if (static_cast<uint64_t>(st.st_ino) != *ino)
            return Error(where + ": the duplicate in cr is not this pipe");
        p.key = {0, *ino};
        return p;
    }
    if (!link.starts_with("/")) return Error(where + ": a fifo not reachable by a path");
    if (st.st_nlink == 0)
        return Error(where + ": fifo deleted while open: not supported (its path is gone)");
    struct stat by_path {};
    if (::stat(link.c_str(), &by_path) != 0) return Error::from_errno(where + ": stat");
    if (by_path.st_dev != st.st_dev || by_path.st_ino != st.st_ino)
        return Error(where +
                     ": the path leads to another file in cr's view (another mount namespace, "
                     "something mounted over it, or the fifo was replaced)");
    p.key = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
    p.path = link;
    p.mode = st.st_mode;
    return p;
}

class FilesPipeHandler {
public:
    static constexpr const char* k_id = "cr.files.pipe";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "pipes and fifos: queued data, capacity and every open end";
    static constexpr const char* k_claims[] = {"fd:pipe", "fd:fifo", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRPP", nullptr};

    explicit FilesPipeHandler(cr::sdk::Context&) {}

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string link = fd->link ? fd->link : "";
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, link.c_str());
        PipeRecord seen = CR_TRY(identify(*fd, where));
        if (fd->flags & O_ASYNC)
            return Error(where + ": signal-driven I/O (O_ASYNC) is not supported yet");

        auto [it, first] = m_pipes.try_emplace(seen.key, std::move(seen));
        PipeRecord& pipe = it->second;
        m_ends.push_back({fd->object_id, pipe.key, fd->flags, fd->pid, fd->fd});
        ctx.debug(strf("%s: %s end, flags 0%o", where.c_str(), end_name(fd->flags), fd->flags));
        if (fd->flags & O_PATH) return {};  // holds the inode, not the pipe

        // Before any end of our own is opened: POLLERR on a write end means no reader at all,
        // POLLHUP on a read end no writer at all.
        pollfd pfd{fd->cr_fd, 0, 0};
        if (::poll(&pfd, 1, 0) < 0) return Error::from_errno(where + ": poll");
        if (writes(fd->flags) && !(pfd.revents & POLLERR)) pipe.readers_exist = true;
        if (reads(fd->flags) && !(pfd.revents & POLLHUP)) pipe.writers_exist = true;
        pipe.read_end_in_tree |= reads(fd->flags);
        pipe.write_end_in_tree |= writes(fd->flags);
        pipe.direct_end |= writes(fd->flags) && (fd->flags & O_DIRECT);

        if (!pipe.captured) {
            CR_TRY_CTX(capture(fd->cr_fd, fd->flags, pipe), where);
            pipe.captured = true;
            ctx.debug(strf("%s: capacity %d, %zu bytes queued", where.c_str(), pipe.capacity,
                           pipe.contents.data.size()));
        }
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::Pipe>> pipes;
        for (const auto& [key, p] : m_pipes) {
            warn_outside_peer(ctx, p);
            const std::vector<uint32_t>& chunks = p.contents.chunks;
            bool packets = chunks.size() > 1 || (p.direct_end && !chunks.empty());
            pipes.push_back(
                fb::CreatePipeDirect(fbb, key.second, static_cast<uint32_t>(p.capacity),
                                     &p.contents.data, packets ? &chunks : nullptr, key.first,
                                     p.path.empty() ? nullptr : p.path.c_str(), p.mode));
        }
        std::vector<flatbuffers::Offset<fb::PipeEnd>> ends;
        for (const EndRecord& e : m_ends)
            ends.push_back(fb::CreatePipeEnd(fbb, e.object_id, e.key.second,
                                             (e.flags & O_ACCMODE) == O_WRONLY, e.flags,
                                             e.key.first, e.pid, e.fd));
        fbb.Finish(fb::CreatePipeImageDirect(fbb, &pipes, &ends), fb::PipeImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "pipe.cr", fbb));
        ctx.debug(strf("pipe.cr: %zu pipes, %zu ends", m_pipes.size(), m_ends.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::PipeImage* image = CR_TRY(cr::sdk::read_section_as<fb::PipeImage>(
            ctx, "pipe.cr", "CRPP", &fb::VerifyPipeImageBuffer));
        std::map<PipeKey, NewPipe> made;
        if (image->pipes()) {
            for (const fb::Pipe* p : *image->pipes()) {
                PipeKey key{p->dev(), p->ino()};
                std::string what = p->path() ? strf("pipe.cr: fifo %s", p->path()->c_str())
                                             : strf("pipe.cr: pipe:[%llu]", ull(p->ino()));
                made[key] = CR_TRY_CTX(p->path() ? make_fifo(ctx, *p) : make_pipe(ctx, *p), what);
            }
        }
        if (image->ends()) {
            for (const fb::PipeEnd* e : *image->ends()) {
                std::string where = strf("pipe.cr: pid %d fd %d (object %llu)", e->pid(), e->fd(),
                                         ull(e->object_id()));
                auto it = made.find({e->pipe_dev(), e->pipe_ino()});
                if (it == made.end()) return Error(where + ": no such pipe in the image");
                UniqueFd fd = CR_TRY_CTX(open_end(it->second, e->flags()), where);
                if (!(e->flags() & O_PATH) &&
                    ::fcntl(fd.get(), F_SETFL, static_cast<int>(e->flags() & k_end_flags)) != 0)
                    return Error::from_errno(where + ": fcntl F_SETFL");
                int raw = fd.get();
                CR_TRY(ctx.set_object_fd(e->object_id(), raw));
                fd.release();  // the core owns it now
                ctx.debug(
                    strf("%s: %s end, flags 0%o", where.c_str(), end_name(e->flags()), e->flags()));
            }
        }
        // Ends nobody holds close with `made`, as they were closed in the tree. A fifo's own
        // descriptor stays until every task holds its ends: it keeps the queued data alive.
        for (auto& [key, p] : made)
            if (!p.path.empty()) m_fifo_holders.push_back(std::move(p.read_fd));
        return {};
    }

    Result<void> post_restore(cr::sdk::Context&) {
        m_fifo_holders.clear();
        return {};
    }

private:
    struct NewPipe {
        UniqueFd read_fd;  // a fifo: one read-write descriptor, in read_fd only
        UniqueFd write_fd;
        std::string path;  // a fifo: where its ends are opened
        bool read_given = false;
        bool write_given = false;
    };

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
        std::string name = p.path.empty() ? strf("pipe:[%llu]", ull(p.key.second)) : p.path;
        // A fifo's peers outside the tree open it again by its path after the restore.
        if (!p.path.empty()) return;
        if (!p.read_end_in_tree && p.readers_exist)
            ctx.warn(
                strf("%s: its reader is outside the dumped tree; after restore the writers "
                     "in the tree write to a pipe nobody reads (EPIPE)",
                     name.c_str()));
        if (!p.write_end_in_tree && p.writers_exist)
            ctx.warn(
                strf("%s: its writer is outside the dumped tree; after restore the readers "
                     "in the tree see end of file once the queued data is read",
                     name.c_str()));
    }

    static Result<void> set_capacity(int fd, uint32_t capacity) {
        int want = static_cast<int>(capacity);
        if (want > ::fcntl(fd, F_GETPIPE_SZ) && ::fcntl(fd, F_SETPIPE_SZ, want) < 0)
            return Error::from_errno(strf("fcntl F_SETPIPE_SZ %d", want));
        return {};
    }

    static Result<void> fill(cr::sdk::Context& ctx, int write_fd, const fb::Pipe& p,
                             const std::string& name) {
        std::vector<uint32_t> packets;
        if (p.packets()) packets.assign(p.packets()->begin(), p.packets()->end());
        if (p.data()) CR_TRY(fill_pipe(write_fd, p.data()->data(), p.data()->size(), packets));
        std::string shape = packets.empty() ? "" : strf(" in %zu packets", packets.size());
        ctx.debug(strf("%s: capacity %u, %u bytes queued%s", name.c_str(), p.capacity(),
                       p.data() ? p.data()->size() : 0u, shape.c_str()));
        return {};
    }

    static Result<NewPipe> make_pipe(cr::sdk::Context& ctx, const fb::Pipe& p) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
        NewPipe out;
        out.read_fd.reset(fds[0]);
        out.write_fd.reset(fds[1]);
        CR_TRY(set_capacity(out.write_fd.get(), p.capacity()));
        CR_TRY(fill(ctx, out.write_fd.get(), p, strf("pipe:[%llu]", ull(p.ino()))));
        return out;
    }

    // A fifo is opened read-write first: that never blocks, and the descriptor is a reader for
    // the write-only ends opened next and the holder of the data until the tree holds them.
    static Result<NewPipe> make_fifo(cr::sdk::Context& ctx, const fb::Pipe& p) {
        std::string path = p.path()->str();
        NewPipe out;
        out.path = path;
        struct stat st {};
        if (::lstat(path.c_str(), &st) != 0) {
            if (errno == ENOENT)
                return Error("no longer exists; create it again (mkfifo) to restore");
            return Error::from_errno("stat");
        }
        if (!S_ISFIFO(st.st_mode)) return Error("is no longer a fifo");
        out.read_fd.reset(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!out.read_fd) return Error::from_errno("open");
        if (::fstat(out.read_fd.get(), &st) != 0 || !S_ISFIFO(st.st_mode))
            return Error("is no longer a fifo");
        int queued = 0;
        if (::ioctl(out.read_fd.get(), FIONREAD, &queued) == 0 && queued > 0)
            ctx.warn(
                strf("fifo %s: already holds %d bytes from outside the tree; the saved "
                     "data goes after them",
                     path.c_str(), queued));
        CR_TRY(set_capacity(out.read_fd.get(), p.capacity()));
        CR_TRY(fill(ctx, out.read_fd.get(), p, "fifo " + path));
        return out;
    }

    // The first read (write) end of a pipe takes the pipe's own description; later ones,
    // distinct open file descriptions in the tree, get distinct ones here too. Fifo ends are
    // each opened by path, as they were in the tree.
    static Result<UniqueFd> open_end(NewPipe& p, uint32_t flags) {
        int access = (flags & O_PATH) ? O_PATH : static_cast<int>(flags & O_ACCMODE);
        if (!p.path.empty()) return reopen(p.path, access);
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

    std::map<PipeKey, PipeRecord> m_pipes;
    std::vector<EndRecord> m_ends;
    std::vector<UniqueFd> m_fifo_holders;
};

}  // namespace

CR_DECLARE_HANDLER(FilesPipeHandler)
