// Reading what a pipe holds without taking it out, and putting it back into a new pipe.
// Header-only so that unit tests can run it on local pipes.
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/log.hpp>
#include <cr/sdk/result.hpp>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace cr::files_pipe {

// "pipe:[123]" -> 123
[[nodiscard]] inline std::optional<uint64_t> parse_pipe_link(std::string_view link) {
    constexpr std::string_view prefix = "pipe:[";
    if (!link.starts_with(prefix) || !link.ends_with("]")) return std::nullopt;
    std::string_view digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
    uint64_t ino = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ino);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
        return std::nullopt;
    return ino;
}

struct Contents {
    std::vector<uint8_t> data;
    // Lengths of the successive reads that drained the copy. More than one means the pipe holds
    // packets (written through an O_DIRECT end): a read never crosses a packet's end.
    std::vector<uint32_t> chunks;
};

// Copies the bytes queued in the pipe that read_fd reads from. tee() duplicates buffer
// references into a private pipe, so the original keeps its data.
inline Result<Contents> peek_pipe(int read_fd, int capacity) {
    int queued = 0;
    if (::ioctl(read_fd, FIONREAD, &queued) != 0) return Error::from_errno("ioctl FIONREAD");
    Contents out;
    if (queued <= 0) return out;

    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) return Error::from_errno("pipe2");
    UniqueFd priv_r(ends[0]);
    UniqueFd priv_w(ends[1]);
    // As many slots as the original: tee stops when the private pipe is full. If the size is
    // refused, the count check below tells.
    if (::fcntl(priv_w.get(), F_GETPIPE_SZ) < capacity)
        (void)::fcntl(priv_w.get(), F_SETPIPE_SZ, capacity);

    ssize_t copied = ::tee(read_fd, priv_w.get(), static_cast<size_t>(queued), SPLICE_F_NONBLOCK);
    if (copied < 0) return Error::from_errno("tee");
    if (copied != queued) return Error(strf("tee copied %zd of %d queued bytes", copied, queued));

    out.data.resize(static_cast<size_t>(queued));
    size_t got = 0;
    while (got < out.data.size()) {
        ssize_t n = ::read(priv_r.get(), out.data.data() + got, out.data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno("read of the private copy");
        if (n == 0) return Error(strf("private copy ended after %zu of %d bytes", got, queued));
        out.chunks.push_back(static_cast<uint32_t>(n));
        got += static_cast<size_t>(n);
    }
    return out;
}

// Writes data into a new, empty pipe; with packets, one write per packet in packet mode.
// Never blocks: data that does not fit is an error, not a hang of the restore.
inline Result<void> fill_pipe(int write_fd, const uint8_t* data, size_t size,
                              const std::vector<uint32_t>& packets) {
    if (size == 0) return {};
    int old_flags = ::fcntl(write_fd, F_GETFL);
    if (old_flags < 0) return Error::from_errno("fcntl F_GETFL");
    int fill_flags = old_flags | O_NONBLOCK | (packets.empty() ? 0 : O_DIRECT);
    if (::fcntl(write_fd, F_SETFL, fill_flags) != 0) return Error::from_errno("fcntl F_SETFL");

    auto write_all = [&](size_t at, size_t len) -> Result<void> {
        while (len > 0) {
            ssize_t n = ::write(write_fd, data + at, len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN)
                return Error(
                    strf("%zu queued bytes do not fit into the new pipe (%zu written)", size, at));
            if (n < 0) return Error::from_errno("write");
            at += static_cast<size_t>(n);
            len -= static_cast<size_t>(n);
        }
        return {};
    };
    if (packets.empty()) {
        CR_TRY(write_all(0, size));
    } else {
        size_t at = 0;
        for (uint32_t len : packets) {
            if (len > size - at) return Error("packet lengths exceed the data");
            CR_TRY(write_all(at, len));
            at += len;
        }
        if (at != size) return Error("packet lengths do not add up to the data");
    }
    if (::fcntl(write_fd, F_SETFL, old_flags) != 0) return Error::from_errno("fcntl F_SETFL");
    return {};
}

}  // namespace cr::files_pipe
