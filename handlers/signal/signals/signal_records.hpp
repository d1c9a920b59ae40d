// Kernel layouts cr.signal.signals reads from and writes into a task (x86-64), and the rules
// on them. Header-only so that unit tests can check them.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace cr::signals {

// struct sigaction as rt_sigaction sees it (not glibc's).
struct KernelSigaction {
    uint64_t handler = 0;
    uint64_t flags = 0;
    uint64_t restorer = 0;
    uint64_t mask = 0;
};
static_assert(sizeof(KernelSigaction) == 32);

// stack_t as sigaltstack sees it.
struct KernelStack {
    uint64_t sp = 0;
    int32_t flags = 0;
    int32_t pad = 0;
    uint64_t size = 0;
};
static_assert(sizeof(KernelStack) == 24);

inline constexpr size_t k_siginfo_size = 128;
static_assert(sizeof(siginfo_t) == k_siginfo_size);
inline constexpr int k_max_signal = 64;
// The kernel keeps these at their defaults for good.
[[nodiscard]] inline constexpr bool has_action(int sig) {
    return sig != SIGKILL && sig != SIGSTOP;
}

[[nodiscard]] inline bool is_default(const KernelSigaction& a) {
    return a.handler == 0 /* SIG_DFL */ && a.flags == 0 && a.mask == 0;
}

// What to hand sigaltstack at restore: SS_ONSTACK is state the kernel derives from the stack
// pointer, not a flag it accepts back.
[[nodiscard]] inline KernelStack restorable_stack(uint64_t sp, uint64_t size, int32_t flags) {
    return {sp, flags & ~SS_ONSTACK, 0, size};
}

// Signal numbers of a run of siginfo records, oldest first; 0 for a record too short.
[[nodiscard]] inline std::vector<int> record_signals(std::span<const uint8_t> records) {
    std::vector<int> out;
    for (size_t at = 0; at + k_siginfo_size <= records.size(); at += k_siginfo_size) {
        int signo = 0;
        std::memcpy(&signo, records.data() + at, sizeof signo);  // si_signo comes first
        out.push_back(signo);
    }
    return out;
}

// A signal mask as the bit set of signals 1..64.
[[nodiscard]] inline constexpr uint64_t sigbit(int sig) {
    return 1ull << (sig - 1);
}
inline constexpr uint64_t k_block_all = ~(sigbit(SIGKILL) | sigbit(SIGSTOP));

}  // namespace cr::signals
