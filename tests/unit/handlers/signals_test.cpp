// Kernel layouts and rules of cr.signal.signals.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "../../../handlers/signal/signals/signal_records.hpp"

namespace {

using namespace cr::signals;

TEST(Signals, KernelSigactionMatchesTheKernel) {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sa.sa_flags = SA_RESTART;
    struct sigaction old {};
    ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
    KernelSigaction k;
    ASSERT_EQ(::syscall(SYS_rt_sigaction, SIGUSR1, nullptr, &k, 8), 0);
    ::sigaction(SIGUSR1, &old, nullptr);
    EXPECT_EQ(k.handler, 1u);  // SIG_IGN
    EXPECT_TRUE(k.flags & SA_RESTART);
    EXPECT_EQ(k.mask, sigbit(SIGUSR2));
    EXPECT_FALSE(is_default(k));
    EXPECT_TRUE(is_default(KernelSigaction{}));
}

TEST(Signals, NoActionForKillAndStop) {
    EXPECT_FALSE(has_action(SIGKILL));
    EXPECT_FALSE(has_action(SIGSTOP));
    EXPECT_TRUE(has_action(SIGTERM));
    EXPECT_TRUE(has_action(64));
    EXPECT_EQ(k_block_all & sigbit(SIGKILL), 0u);
    EXPECT_NE(k_block_all & sigbit(64), 0u);
}

TEST(Signals, AltStackLosesOnStack) {
    const auto autodisarm =
        static_cast<int32_t>(1u << 31);  // SS_AUTODISARM, not in glibc's headers
    KernelStack s = restorable_stack(0x1000, 8192, SS_ONSTACK | autodisarm);
    EXPECT_EQ(s.flags, autodisarm);
    EXPECT_EQ(s.sp, 0x1000u);
    EXPECT_EQ(s.size, 8192u);
}

TEST(Signals, RecordSignals) {
    std::vector<uint8_t> records(2 * k_siginfo_size + 5);
    siginfo_t a{}, b{};
    a.si_signo = SIGUSR1;
    b.si_signo = 40;
    std::memcpy(records.data(), &a, sizeof a);
    std::memcpy(records.data() + k_siginfo_size, &b, sizeof b);
    EXPECT_EQ(record_signals(records), (std::vector<int>{SIGUSR1, 40}));
}

}  // namespace
