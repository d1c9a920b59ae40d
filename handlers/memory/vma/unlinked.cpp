#include "unlinked.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string_view>

namespace cr::memory {

namespace {

constexpr std::string_view k_deleted = " (deleted)";
constexpr std::string_view k_memfd = "/memfd:";

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

}  // namespace

bool is_unlinked(const Mapping& m) {
    std::string_view p = m.path;
    return p.size() > k_deleted.size() && p.ends_with(k_deleted) && p.starts_with("/");
}

// Every fd of every task of the tree, by the file it refers to.
Result<void> UnlinkedFiles::find_holders(sdk::Context& ctx) {
    for (const sdk::Task& t : ctx.tasks()) {
        std::string dir = strf("/proc/%d/fd", t.pid);
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
        if (!d) return Error::from_errno("opendir", dir);
        while (const dirent* e = ::readdir(d.get())) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            int fd = std::atoi(e->d_name);
            struct stat st {};
            if (::stat(strf("%s/%d", dir.c_str(), fd).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            m_holders.try_emplace(
                {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}, t.pid, fd);
        }
    }
    m_holders_found = true;
    return {};
}

Result<UnlinkedRef> UnlinkedFiles::describe(sdk::Context& ctx, pid_t pid, const Mapping& m) {
    std::string where =
        strf("pid %d: mapping 0x%lx-0x%lx of %s", pid, m.start, m.end, m.path.c_str());
    if (!m_holders_found) CR_TRY_CTX(find_holders(ctx), where);
    Key key{m.dev, m.ino};
    UnlinkedRef ref;
    if (auto h = m_holders.find(key); h != m_holders.end()) {
        ref.holder_pid = h->second.first;
        ref.holder_fd = h->second.second;
        ctx.debug(strf("%s: mapped through fd %d of pid %d", where.c_str(), ref.holder_fd,
                       ref.holder_pid));
        return ref;
    }
    auto it = m_saved.find(key);
    if (it == m_saved.end()) {
        // map_files opens the very file of the mapping, whatever became of its name.
        std::string file = strf("/proc/%d/map_files/%lx-%lx", pid, m.start, m.end);
        UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return Error::from_errno(where + ": open", file);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return Error::from_errno(where + ": fstat");
        if (!S_ISREG(st.st_mode)) return Error(where + ": not a regular file: not supported");
        Saved s;
        s.index = m_saved.size() + 1;
        s.path = m.path.substr(0, m.path.size() - k_deleted.size());
        s.memfd = s.path.starts_with(k_memfd);
        s.size = static_cast<uint64_t>(st.st_size);
        s.mode = st.st_mode;
        s.image = strf("unlinked-%llu-%llu.img", ull(key.first), ull(key.second));
        UniqueFd out = CR_TRY_CTX(ctx.open_image_file(s.image, true), where);
        s.extents = CR_TRY_CTX(file_contents::save(fd.get(), s.size, out.get()), where);
        ctx.info(strf("%s: %llu bytes of the unlinked file saved to %s", where.c_str(), ull(s.size),
                      s.image.c_str()));
        it = m_saved.emplace(key, std::move(s)).first;
    }
    ref.unlinked = it->second.index;
    return ref;
}

flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<img::UnlinkedFile>>>
UnlinkedFiles::build(flatbuffers::FlatBufferBuilder& fbb) const {
    std::vector<const Saved*> ordered(m_saved.size());
    for (const auto& [key, s] : m_saved) ordered[s.index - 1] = &s;
    std::vector<flatbuffers::Offset<img::UnlinkedFile>> out;
    for (const Saved* s : ordered) {
        std::vector<img::UnlinkedExtent> extents;
        for (const auto& e : s->extents) extents.emplace_back(e.offset, e.length);
        out.push_back(img::CreateUnlinkedFileDirect(fbb, s->path.c_str(), s->memfd, s->size,
                                                    s->mode, s->image.c_str(), &extents));
    }
    return fbb.CreateVector(out);
}

Result<void> UnlinkedFiles::prepare(sdk::Context& ctx, const img::MemoryImage& image) {
    if (!image.unlinked()) return {};
    uint64_t index = 0;
    for (const img::UnlinkedFile* f : *image.unlinked()) {
        ++index;
        if (!f->path() || !f->contents() || !f->extents())
            return Error(strf("memory.cr: unlinked file %llu is incomplete", ull(index)));
        std::string path = f->path()->str();
        std::string where = strf("memory.cr: unlinked file %s", path.c_str());
        UniqueFd fd;
        if (f->memfd()) {
            fd.reset(::memfd_create(path.substr(k_memfd.size()).c_str(), MFD_CLOEXEC));
            if (!fd) return Error::from_errno(where + ": memfd_create");
        } else {
            fd = CR_TRY_CTX(file_contents::make_unlinked(path), where);
        }
        UniqueFd contents = CR_TRY_CTX(ctx.open_image_file(f->contents()->str(), false), where);
        std::vector<file_contents::Extent> extents;
        for (const img::UnlinkedExtent* e : *f->extents())
            extents.push_back({e->offset(), e->length()});
        CR_TRY_CTX(file_contents::fill(fd.get(), contents.get(), extents, f->size()), where);
        if (::fchmod(fd.get(), static_cast<mode_t>(f->mode() & 07777)) != 0)
            return Error::from_errno(where + ": fchmod");
        // Kept read-only: a descriptor open for writing would make PR_SET_MM_MAP refuse the file
        // as the task's executable. Tasks open it through /proc with the mode they need.
        UniqueFd ro(::open(strf("/proc/self/fd/%d", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
        if (!ro) return Error::from_errno(where + ": reopen read-only");
        ctx.debug(strf("%s: %llu bytes, made again", where.c_str(), ull(f->size())));
        m_made[index] = std::move(ro);
    }
    return {};
}

Result<std::string> UnlinkedFiles::path_for(const img::Vma& v) const {
    if (v.holder_pid() != 0) return strf("/proc/%d/fd/%d", v.holder_pid(), v.holder_fd());
    if (v.unlinked() != 0) {
        auto it = m_made.find(v.unlinked());
        if (it == m_made.end())
            return Error(
                strf("memory.cr: mapping 0x%lx-0x%lx: unlinked file %llu is not in the image",
                     v.start(), v.end(), ull(v.unlinked())));
        return strf("/proc/%d/fd/%d", ::getpid(), it->second.get());
    }
    return v.path() ? v.path()->str() : std::string();
}

std::string UnlinkedFiles::exe_path_for(const img::TaskMemory& tm) const {
    std::string exe = tm.mm() && tm.mm()->exe_path() ? tm.mm()->exe_path()->str() : "";
    if (!exe.ends_with(k_deleted)) return exe;
    for (const img::Vma* v : *tm.vmas())
        if (v->kind() == img::VmaKind::File && is_unlinked(*v) && v->path() &&
            v->path()->str() == exe)
            if (auto p = path_for(*v)) return *p;
    return exe;  // no mapping of it: the open fails and says which file
}

}  // namespace cr::memory
