// /proc/PID/timers parsing, kernel layouts and the overrun arithmetic of cr.time.timers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "../../../handlers/time/timers/timer_records.hpp"

namespace {

using namespace cr::timers;

std::string read_file(const char* path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

TEST(Timers, ParsesWhatTheKernelShows) {
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL | SIGEV_THREAD_ID;
    ev.sigev_signo = SIGRTMIN + 2;
    ev.sigev_value.sival_ptr = reinterpret_cast<void*>(0xfeedbeefULL);
    ev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    timer_t thread_timer, plain;
    ASSERT_EQ(::timer_create(CLOCK_MONOTONIC, &ev, &thread_timer), 0);
    ASSERT_EQ(::timer_create(CLOCK_PROCESS_CPUTIME_ID, nullptr, &plain), 0);
    auto parsed = parse_proc_timers(read_file("/proc/self/timers"));
    ::timer_delete(thread_timer);
    ::timer_delete(plain);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message();
    bool seen_thread = false, seen_plain = false;
    for (const ProcTimer& t : *parsed) {
        if (t.id == static_cast<int>(reinterpret_cast<intptr_t>(thread_timer))) {
            seen_thread = true;
            EXPECT_EQ(t.signo, SIGRTMIN + 2);
            EXPECT_EQ(t.sigval, 0xfeedbeefULL);
            EXPECT_EQ(t.notify, SIGEV_SIGNAL | k_sigev_thread_id);
            EXPECT_EQ(t.target, ev._sigev_un._tid);
            EXPECT_EQ(t.clock, CLOCK_MONOTONIC);
            EXPECT_TRUE(is_wall_clock(t.clock));
        } else if (t.id == static_cast<int>(reinterpret_cast<intptr_t>(plain))) {
            seen_plain = true;
            EXPECT_EQ(t.signo, SIGALRM);
            EXPECT_EQ(t.notify, SIGEV_SIGNAL);
            EXPECT_EQ(t.target, ::getpid());
            EXPECT_FALSE(is_wall_clock(t.clock));  // the process CPU clock, encoded negative
        }
    }
    EXPECT_TRUE(seen_thread);
    EXPECT_TRUE(seen_plain);
}

TEST(Timers, RejectsBrokenText) {
    EXPECT_TRUE(parse_proc_timers("").ok());
    EXPECT_FALSE(parse_proc_timers("ID: 1\nsignal: 14/0\n").ok());
    EXPECT_FALSE(parse_proc_timers("signal: 14/0\n").ok());
    EXPECT_FALSE(parse_proc_timers("ID: 1\nsignal: 14/0\nnotify: bogus/pid.1\nClockID: 0\n").ok());
    EXPECT_FALSE(parse_proc_timers("ID: x\nsignal: 14/0\nnotify: signal/pid.1\nClockID: 0\n").ok());
    auto ok = parse_proc_timers("ID: 7\nsignal: 34/00000000000000ff\nnotify: none/pid.9\nClockID: 7\n");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok->at(0).id, 7);
    EXPECT_EQ(ok->at(0).sigval, 0xffu);
    EXPECT_EQ(ok->at(0).notify, SIGEV_NONE);
}

TEST(Timers, FirstExpiryForAnOverrun) {
    EXPECT_EQ(overrun_first_expiry(10'000, 1'000, 3), 6'000);
    EXPECT_EQ(overrun_first_expiry(10'000, 1'000, 9), -1);  // would be at 0: refused
    EXPECT_EQ(overrun_first_expiry(10'000, 0, 3), -1);
    EXPECT_EQ(overrun_first_expiry(INT64_MAX, INT64_MAX / 2, 1), 1);
}

// The overrun restore, done in this process: a timer armed overrun + 1 intervals in the past
// fires at once, and taking its signal records exactly that overrun and keeps the next expiry.
TEST(Timers, OverrunIsMadeByTakingTheSignal) {
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 3);
    ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL | SIGEV_THREAD_ID;
    ev.sigev_signo = SIGRTMIN + 3;
    ev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    timer_t t;
    ASSERT_EQ(::timer_create(CLOCK_MONOTONIC, &ev, &t), 0);
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t interval = 500'000'000, next = to_ns({now.tv_sec, now.tv_nsec}) + 300'000'000;
    int64_t first = overrun_first_expiry(next, interval, 4);
    ASSERT_GT(first, 0);
    KernelTimespec f = from_ns(first), iv = from_ns(interval);
    itimerspec its{{iv.sec, iv.nsec}, {f.sec, f.nsec}};
    ASSERT_EQ(::timer_settime(t, TIMER_ABSTIME, &its, nullptr), 0);
    siginfo_t si{};
    timespec wait{1, 0};
    ASSERT_EQ(::sigtimedwait(&set, &si, &wait), SIGRTMIN + 3);
    uint8_t raw[k_siginfo_size];
    std::memcpy(raw, &si, sizeof raw);
    EXPECT_TRUE(is_signal_of_timer(raw, SIGRTMIN + 3, static_cast<int>(reinterpret_cast<intptr_t>(t))));
    EXPECT_EQ(::timer_getoverrun(t), 4);
    itimerspec cur{};
    ::timer_gettime(t, &cur);
    EXPECT_LE(to_ns({cur.it_value.tv_sec, cur.it_value.tv_nsec}), 300'000'000);
    EXPECT_GT(to_ns({cur.it_value.tv_sec, cur.it_value.tv_nsec}), 200'000'000);
    ::timer_delete(t);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(Timers, SigeventMatchesTheKernel) {
    sigevent ev{};
    EXPECT_EQ(sizeof ev, sizeof(KernelSigevent));
    EXPECT_EQ(offsetof(sigevent, sigev_signo), offsetof(KernelSigevent, signo));
    EXPECT_EQ(offsetof(sigevent, sigev_notify), offsetof(KernelSigevent, notify));
    EXPECT_EQ(offsetof(sigevent, _sigev_un._tid), offsetof(KernelSigevent, tid));
    EXPECT_EQ(sizeof(itimerspec), sizeof(KernelItimerspec));
    EXPECT_EQ(offsetof(siginfo_t, si_timerid), 16u);
}

}  // namespace
