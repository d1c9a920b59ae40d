// pid_holder: a pid is taken by a task, a thread, or a process group or session that outlives
// its leader (a zombie member included).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cr/fw/proc.hpp>
#include <string>
#include <thread>

namespace {

using namespace cr::fw::proc;

std::string holder(pid_t pid) {
    auto r = pid_holder(pid);
    EXPECT_TRUE(r.ok()) << r.error().message();
    return r.ok() ? *r : "<error>";
}

TEST(ProcPidHolder, SelfAndOwnThread) {
    std::string me = holder(getpid());
    EXPECT_EQ(me.rfind("pid " + std::to_string(getpid()) + " (", 0), 0u) << me;
    EXPECT_EQ(me.find("zombie"), std::string::npos);

    std::atomic<pid_t> tid{0};
    std::atomic<bool> stop{false};
    std::thread t([&] {
        tid = gettid();
        while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::string th = holder(tid);
    stop = true;
    t.join();
    EXPECT_EQ(th.rfind("thread " + std::to_string(tid) + " of pid " + std::to_string(getpid()), 0),
              0u)
        << th;
}

TEST(ProcPidHolder, FreePid) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    // Reaped, and it made no group or session: nothing can hold its pid now.
    EXPECT_EQ(holder(child), "");
    EXPECT_FALSE(pid_holder(0).ok());
}

// Leader A makes a new group (or session), forks B into it and exits; this process, as child
// subreaper, inherits B, so B can be left a zombie on purpose.
class ProcPidHolderGroup : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        ASSERT_EQ(prctl(PR_GET_CHILD_SUBREAPER, &m_was_subreaper), 0);
        ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        ASSERT_EQ(pipe2(m_go, O_CLOEXEC), 0);
        ASSERT_EQ(pipe2(m_report, O_CLOEXEC), 0);
        m_leader = fork();
        ASSERT_GE(m_leader, 0);
        if (m_leader == 0) run_leader(GetParam());
        close(m_go[0]);
        close(m_report[1]);
        ASSERT_EQ(read(m_report[0], &m_member, sizeof m_member), ssize_t(sizeof m_member));
        ASSERT_EQ(waitpid(m_leader, nullptr, 0), m_leader);
    }
    void TearDown() override {
        if (m_member > 0) {
            kill(m_member, SIGKILL);
            waitpid(m_member, nullptr, 0);
        }
        close(m_go[1]);
        close(m_report[0]);
        prctl(PR_SET_CHILD_SUBREAPER, m_was_subreaper);
    }

    [[noreturn]] void run_leader(bool session) {
        if (session ? setsid() < 0 : setpgid(0, 0) != 0) _exit(1);
        pid_t member = fork();
        if (member == 0) {
            prctl(PR_SET_NAME, "crtest-holder");
            pid_t self = getpid();
            if (write(m_report[1], &self, sizeof self) != sizeof self) _exit(1);
            char c;
            if (read(m_go[0], &c, 1) < 0) _exit(1);
            _exit(0);
        }
        _exit(member > 0 ? 0 : 1);
    }

    bool wait_zombie() {
        for (int i = 0; i < 5000; ++i) {
            auto st = read_stat(m_member);
            if (st.ok() && st->state == 'Z') return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return false;
    }

    int m_was_subreaper = 0;
    int m_go[2] = {-1, -1};
    int m_report[2] = {-1, -1};
    pid_t m_leader = -1;
    pid_t m_member = -1;
};

TEST_P(ProcPidHolderGroup, MemberAndZombieMemberHoldTheLeadersPid) {
    const bool session = GetParam();
    const std::string role = session ? "process group and session" : "process group";
    const std::string member = "pid " + std::to_string(m_member) + " (crtest-holder";

    EXPECT_EQ(holder(m_leader), member + "), which uses it as its " + role);

    ASSERT_EQ(write(m_go[1], "x", 1), 1);
    ASSERT_TRUE(wait_zombie());
    EXPECT_EQ(holder(m_leader), member + ", zombie), which uses it as its " + role);
    EXPECT_EQ(holder(m_member), member + ", zombie)");

    ASSERT_EQ(waitpid(m_member, nullptr, 0), m_member);
    m_member = -1;
    EXPECT_EQ(holder(m_leader), "");
}

INSTANTIATE_TEST_SUITE_P(Proc, ProcPidHolderGroup, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "session" : "group"; });

}  // namespace
