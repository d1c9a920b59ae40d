// Saving the contents of a file that no path leads to any more (deleted while open, a memfd,
// a mapping of either) into a raw image file, and making an unlinked file with them again.
// Header-only: cr.files.regular, cr.memory.memfd and cr.memory.vma share it.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace cr::file_contents {

struct Extent {
    uint64_t offset = 0;
    uint64_t length = 0;
};

inline constexpr size_t k_copy_chunk = 1 << 20;

inline Result<void> write_all(int fd, const uint8_t* data, size_t size, const char* what) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(strf("write of %s", what));
        data += n;
        size -= static_cast<size_t>(n);
    }
    return {};
}

// Copies [offset, offset + length) of `in` to the end of `out`.
inline Result<void> copy_range(int in, uint64_t offset, uint64_t length, int out,
                               std::vector<uint8_t>& buf) {
    buf.resize(k_copy_chunk);
    while (length > 0) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(length, buf.size()));
        ssize_t n = ::pread(in, buf.data(), want, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
            return Error::from_errno(
                strf("read at offset %llu", static_cast<unsigned long long>(offset)));
        if (n == 0)
            return Error(
                strf("file ends early, at offset %llu", static_cast<unsigned long long>(offset)));
        CR_TRY(write_all(out, buf.data(), static_cast<size_t>(n), "the image file"));
        offset += static_cast<uint64_t>(n);
        length -= static_cast<uint64_t>(n);
    }
    return {};
}

// Writes the data extents of the file `fd` refers to (any access mode, even O_PATH) to `out`,
// back to back; holes are left out. The file is read through a description of our own, so no
// position of the dumped tree moves.
inline Result<std::vector<Extent>> save(int fd, uint64_t size, int out) {
    std::string self = strf("/proc/self/fd/%d", fd);
    UniqueFd rd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!rd) return Error::from_errno("reopen for reading");
    std::vector<Extent> extents;
    std::vector<uint8_t> buf;
    uint64_t at = 0;
    while (at < size) {
        off_t data = ::lseek(rd.get(), static_cast<off_t>(at), SEEK_DATA);
        off_t hole = -1;
        if (data < 0 && errno == ENXIO) break;  // only a hole up to the end
        if (data < 0) {
            data = static_cast<off_t>(at);  // no SEEK_DATA here: all of it is data
            hole = static_cast<off_t>(size);
        } else {
            hole = ::lseek(rd.get(), data, SEEK_HOLE);
            if (hole < 0) hole = static_cast<off_t>(size);
        }
        uint64_t begin = static_cast<uint64_t>(data);
        uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
        if (begin >= end) break;
        CR_TRY(copy_range(rd.get(), begin, end - begin, out, buf));
        extents.push_back({begin, end - begin});
        at = end;
    }
    return extents;
}

// Puts saved extents, read back to back from `image`, into the empty file `fd` and sets its size.
inline Result<void> fill(int fd, int image, const std::vector<Extent>& extents, uint64_t size) {
    std::vector<uint8_t> buf(k_copy_chunk);
    uint64_t from = 0;
    for (const Extent& e : extents) {
        if (e.offset + e.length > size || e.offset + e.length < e.offset)
            return Error("an extent lies beyond the file's size");
        uint64_t done = 0;
        while (done < e.length) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(e.length - done, buf.size()));
            ssize_t n = ::pread(image, buf.data(), want, static_cast<off_t>(from + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                return n == 0 ? Error("the image file is too short")
                              : Error::from_errno("read of the image file");
            ssize_t w = ::pwrite(fd, buf.data(), static_cast<size_t>(n),
                                 static_cast<off_t>(e.offset + done));
            if (w != n) return Error::from_errno("write of the contents", {}, w < 0 ? errno : EIO);
            done += static_cast<uint64_t>(n);
        }
        from += e.length;
    }
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return Error::from_errno("ftruncate");
    return {};
}

inline std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// A new, unlinked, empty regular file next to `path`, opened read-write. Made at `path` itself
// and unlinked at once when that name is free, so that it reads "PATH (deleted)" as before;
// otherwise an O_TMPFILE (or a temporary name, unlinked) in the same directory.
inline Result<UniqueFd> make_unlinked(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd) {
        if (::unlink(path.c_str()) != 0) return Error::from_errno("unlink", path);
        return fd;
    }
    std::string dir = dir_of(path);
    if (errno != EEXIST) {
        struct stat st {};
        if (::stat(dir.c_str(), &st) != 0) return Error::from_errno("its directory", dir);
    }
    fd.reset(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (fd) return fd;
    std::string name = dir + "/.cr-deleted-XXXXXX";
    fd.reset(::mkostemp(name.data(), O_CLOEXEC));
    if (!fd) return Error::from_errno("create of a file in", dir);
    if (::unlink(name.c_str()) != 0) return Error::from_errno("unlink", name);
    return fd;
}

// Owner first: a chown clears set-user-id bits that the chmod then puts back.
inline Result<void> set_owner_mode(int fd, uint32_t uid, uint32_t gid, uint32_t mode) {
    if (::fchown(fd, uid, gid) != 0 && errno != EPERM) return Error::from_errno("fchown");
    if (::fchmod(fd, static_cast<mode_t>(mode & 07777)) != 0) return Error::from_errno("fchmod");
    return {};
}

}  // namespace cr::file_contents
