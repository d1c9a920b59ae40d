// cr.time.timers: what dump and restore share.
#pragma once

#include <timers_generated.h>

#include <cr/sdk/handler.hpp>
#include <cstdint>
#include <vector>

#include "timer_records.hpp"

namespace cr::timers {

namespace img = cr::image::v1;
using Args = std::array<uint64_t, 6>;

inline uint64_t u64(int64_t v) {
    return static_cast<uint64_t>(v);
}

// Scratch layout: every remote call of this handler keeps its arguments at fixed offsets.
inline constexpr uint64_t k_off_sigevent = 0;
inline constexpr uint64_t k_off_timer_id = 64;
inline constexpr uint64_t k_off_itimerspec = 128;
inline constexpr uint64_t k_off_siginfo = 256;
inline constexpr uint64_t k_off_sigset = 384;
inline constexpr uint64_t k_off_timeout = 400;
inline constexpr uint64_t k_off_now = 416;
inline constexpr uint64_t k_scratch_needed = 448;

// Pending siginfo records of one queue of a thread, oldest first (PTRACE_PEEKSIGINFO).
Result<std::vector<uint8_t>> peek_queue(pid_t tid, bool shared);

// Restores the POSIX timers of one task (after the threads, signal actions and pending
// signals are back).
Result<void> restore_posix_timers(sdk::Context& ctx, const img::TaskTimers& rec,
                                  const sdk::Task& task);

}  // namespace cr::timers
