// cr.memory.memfd: memfd files (memfd_create): name, contents, size, mode and seals, and each
// open file description of them with its access mode and position. The file's contents go
// into the image once, however many descriptions refer to it.
#include <cr/sdk/proc.hpp>
#include <fcntl.h>
#include <linux/magic.h>
#include <memfd_generated.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../files/regular/file_contents.hpp"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  // Linux 6.3: executable, and no warning about the exec mode
#endif

namespace {

namespace fb = cr::image::v1;
namespace contents = cr::file_contents;
using cr::Error;
using cr::Result;
using cr::strf;
using cr::UniqueFd;
using InodeKey = std::pair<uint64_t, uint64_t>;  // (st_dev, st_ino)

constexpr std::string_view k_prefix = "/memfd:";
constexpr std::string_view k_deleted = " (deleted)";
// Flags a description keeps when it is opened again; the rest are per fd or creation-only.
constexpr uint32_t k_kept_flags =
    O_ACCMODE | O_APPEND | O_NONBLOCK | O_NOATIME | O_PATH | 0100000 /* O_LARGEFILE */;

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

// "/memfd:NAME (deleted)" -> "NAME"
std::optional<std::string> memfd_name(std::string_view link) {
    if (!link.starts_with(k_prefix)) return std::nullopt;
    link.remove_prefix(k_prefix.size());
    if (link.ends_with(k_deleted)) link.remove_suffix(k_deleted.size());
    return std::string(link);
}

using cr::sdk::read_text;

struct MemfdRecord {
    std::string name;
    struct stat st {};
    uint32_t seals = 0;
    std::string image;
    std::vector<contents::Extent> extents;
};

struct OpenRecord {
    uint64_t object_id = 0;
    InodeKey key;
    uint32_t flags = 0;
    uint64_t pos = 0;
    pid_t pid = 0;
    int fd = 0;
};

class MemfdHandler {
public:
    static constexpr const char* k_id = "cr.memory.memfd";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "memfd files: name, contents, mode, seals and every open description";
    static constexpr const char* k_claims[] = {"fd:memfd", nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CRMD", nullptr};

    explicit MemfdHandler(cr::sdk::Context&) {}

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string link = fd->link ? fd->link : "";
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, link.c_str());
        auto name = memfd_name(link);
        if (!name) return Error(where + ": not a memfd");
        struct stat st {};
        if (::fstat(fd->cr_fd, &st) != 0) return Error::from_errno(where + ": fstat");
        struct statfs fs {};
        if (::fstatfs(fd->cr_fd, &fs) != 0) return Error::from_errno(where + ": fstatfs");
        if (fs.f_type == HUGETLBFS_MAGIC)
            return Error(where + ": hugetlb memfds (MFD_HUGETLB) are not supported yet");
        if (fd->flags & O_ASYNC)
            return Error(where + ": signal-driven I/O (O_ASYNC) is not supported yet");
        std::string info =
            CR_TRY_CTX(read_text(strf("/proc/%d/fdinfo/%d", fd->pid, fd->fd)), where);
        if (info.find("FLOCK") != std::string::npos || info.find("OFDLCK") != std::string::npos)
            return Error(where + ": flock and OFD locks on a memfd are not supported yet");

        InodeKey key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
        if (!m_memfds.count(key)) {
            MemfdRecord m;
            m.name = *name;
            m.st = st;
            int seals = ::fcntl(fd->cr_fd, F_GET_SEALS);
            if (seals < 0) return Error::from_errno(where + ": fcntl F_GET_SEALS");
            m.seals = static_cast<uint32_t>(seals);
            m.image = strf("memfd-%llu.img", ull(key.second));
            UniqueFd out = CR_TRY_CTX(ctx.open_image_file(m.image, true), where);
            m.extents = CR_TRY_CTX(
                contents::save(fd->cr_fd, static_cast<uint64_t>(st.st_size), out.get()), where);
            ctx.debug(strf("%s: %llu bytes in %zu extents, mode 0%o, seals %#x", where.c_str(),
                           ull(static_cast<uint64_t>(st.st_size)), m.extents.size(),
                           st.st_mode & 07777, m.seals));
            m_memfds.emplace(key, std::move(m));
        }
        m_opens.push_back({fd->object_id, key, fd->flags, fd->pos, fd->pid, fd->fd});
        ctx.debug(strf("%s: flags 0%o, pos %llu", where.c_str(), fd->flags, ull(fd->pos)));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::Memfd>> memfds;
        for (const auto& [key, m] : m_memfds) {
            std::vector<fb::MemfdExtent> extents;
            for (const auto& e : m.extents) extents.emplace_back(e.offset, e.length);
            memfds.push_back(fb::CreateMemfdDirect(
                fbb, key.first, key.second, m.name.c_str(), static_cast<uint64_t>(m.st.st_size),
                m.st.st_mode, m.st.st_uid, m.st.st_gid, m.seals, m.image.c_str(), &extents));
        }
        std::vector<flatbuffers::Offset<fb::MemfdOpen>> opens;
        for (const OpenRecord& o : m_opens)
            opens.push_back(fb::CreateMemfdOpen(fbb, o.object_id, o.key.first, o.key.second,
                                                o.flags, o.pos, o.pid, o.fd));
        fbb.Finish(fb::CreateMemfdImageDirect(fbb, &memfds, &opens), fb::MemfdImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "memfd.cr", fbb));
        ctx.debug(strf("memfd.cr: %zu memfds, %zu descriptions", m_memfds.size(), m_opens.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        const fb::MemfdImage* image = CR_TRY(cr::sdk::read_section_as<fb::MemfdImage>(
            ctx, "memfd.cr", "CRMD", &fb::VerifyMemfdImageBuffer));
        std::map<InodeKey, UniqueFd> made;  // closed at the end: the descriptions keep them
        if (image->memfds())
            for (const fb::Memfd* m : *image->memfds())
                made[{m->dev(), m->ino()}] =
                    CR_TRY_CTX(make_memfd(ctx, *m),
                               strf("memfd.cr: memfd:%s", m->name() ? m->name()->c_str() : "?"));
        if (image->opens()) {
            for (const fb::MemfdOpen* o : *image->opens()) {
                std::string where = strf("memfd.cr: pid %d fd %d", o->pid(), o->fd());
                auto it = made.find({o->dev(), o->ino()});
                if (it == made.end()) return Error(where + ": its memfd is not in the image");
                std::string self = strf("/proc/self/fd/%d", it->second.get());
                UniqueFd fd(
                    ::open(self.c_str(), static_cast<int>(o->flags() & k_kept_flags) | O_CLOEXEC));
                if (!fd) return Error::from_errno(where + ": reopen of the memfd");
                if (!(o->flags() & O_PATH) && o->pos() != 0 &&
                    ::lseek(fd.get(), static_cast<off_t>(o->pos()), SEEK_SET) !=
                        static_cast<off_t>(o->pos()))
                    return Error::from_errno(
                        strf("%s: lseek to %llu", where.c_str(), ull(o->pos())));
                int raw = fd.get();
                CR_TRY(ctx.set_object_fd(o->object_id(), raw));
                fd.release();  // the core owns it now
                ctx.debug(
                    strf("%s: flags 0%o, pos %llu", where.c_str(), o->flags(), ull(o->pos())));
            }
        }
        return {};
    }

private:
    static Result<UniqueFd> make_memfd(cr::sdk::Context& ctx, const fb::Memfd& m) {
        if (!m.name() || !m.contents() || !m.extents()) return Error("incomplete record");
        uint32_t seals = m.seals();
        // Without MFD_ALLOW_SEALING a memfd is born with F_SEAL_SEAL and nothing else.
        bool sealable = seals != F_SEAL_SEAL;
        unsigned flags = MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0);
        UniqueFd fd(::memfd_create(m.name()->c_str(), flags | MFD_EXEC));
        if (!fd && errno == EINVAL) fd.reset(::memfd_create(m.name()->c_str(), flags));
        if (!fd) return Error::from_errno("memfd_create");
        UniqueFd image = CR_TRY(ctx.open_image_file(m.contents()->str(), false));
        std::vector<contents::Extent> extents;
        for (const fb::MemfdExtent* e : *m.extents()) extents.push_back({e->offset(), e->length()});
        CR_TRY(contents::fill(fd.get(), image.get(), extents, m.size()));
        CR_TRY(contents::set_owner_mode(fd.get(), m.uid(), m.gid(), m.mode()));
        // Seals last: F_SEAL_WRITE and F_SEAL_GROW would refuse the contents.
        if (sealable && seals != 0 && ::fcntl(fd.get(), F_ADD_SEALS, static_cast<int>(seals)) != 0)
            return Error::from_errno(strf("fcntl F_ADD_SEALS %#x", seals));
        ctx.debug(strf("memfd:%s: %llu bytes, mode 0%o, seals %#x", m.name()->c_str(),
                       ull(m.size()), m.mode() & 07777, seals));
        return fd;
    }

    std::map<InodeKey, MemfdRecord> m_memfds;
    std::vector<OpenRecord> m_opens;
};

}  // namespace

CR_DECLARE_HANDLER(MemfdHandler)
