// Status parsing, capability layouts and seccomp program rules of cr.task.creds.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>

#include "../../../handlers/task/creds/creds_records.hpp"

namespace {

using namespace cr::creds;

std::string read_file(const char* path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

TEST(Creds, ParsesOwnStatus) {
    auto s = parse_status(read_file("/proc/self/status"));
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(s->uids[0], ::getuid());
    EXPECT_EQ(s->uids[1], ::geteuid());
    EXPECT_EQ(s->gids[0], ::getgid());
    EXPECT_EQ(static_cast<int>(s->groups.size()), ::getgroups(0, nullptr));
    EXPECT_NE(s->cap_bounding, 0u);
    EXPECT_EQ(s->seccomp_mode, 0);
}

TEST(Creds, ParsesGroupsAndRejectsMissingLines) {
    std::string text =
        "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t100 200 \nCapInh:\t0000000000000001\n"
        "CapPrm:\t00000000000000ff\nCapEff:\t0000000000000010\nCapBnd:\t000001ffffffffff\n"
        "CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n";
    auto s = parse_status(text);
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(s->uids[3], 4u);
    EXPECT_EQ(s->gids[2], 7u);
    EXPECT_EQ(s->groups, (std::vector<uint32_t>{100, 200}));
    EXPECT_EQ(s->cap_permitted, 0xffu);
    EXPECT_TRUE(s->no_new_privs);
    EXPECT_EQ(s->seccomp_filters, 3);
    EXPECT_FALSE(parse_status(text.substr(0, text.find("NoNewPrivs"))).ok());
    EXPECT_FALSE(parse_status("Uid:\t1\t2\t3\n").ok());
}

TEST(Creds, CapabilityHalves) {
    CapSets s = cap_sets(0x1'0000'0002ull, 0x3'0000'0006ull, 0);
    EXPECT_EQ(s.half[0].effective, 2u);
    EXPECT_EQ(s.half[1].effective, 1u);
    EXPECT_EQ(effective_of(s), 0x1'0000'0002ull);
    EXPECT_EQ(permitted_of(s), 0x3'0000'0006ull);
    CapHeader h;
    CapSets own;
    ASSERT_EQ(::syscall(SYS_capget, &h, &own), 0);
    auto status = parse_status(read_file("/proc/self/status"));
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(effective_of(own), status->cap_effective);
    EXPECT_EQ(permitted_of(own), status->cap_permitted);
    EXPECT_EQ(missing_caps(0b1011, 0b0011), 0b1000u);
    EXPECT_EQ(first_cap(0b1000), 3);
    EXPECT_EQ(first_cap(0), -1);
}

std::vector<uint8_t> bytes(const std::vector<sock_filter>& prog) {
    std::vector<uint8_t> out(prog.size() * sizeof(sock_filter));
    std::memcpy(out.data(), prog.data(), out.size());
    return out;
}

TEST(Creds, FindsUserNotification) {
    static_assert(sizeof(sock_filter) == k_bpf_insn_size);
    static_assert(sizeof(sock_fprog) == sizeof(KernelFprog));
    std::vector<sock_filter> allow = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 42, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    EXPECT_FALSE(may_notify_user(bytes(allow)));
    auto notify = allow;
    notify[2] = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
    EXPECT_TRUE(may_notify_user(bytes(notify)));
    auto by_register = allow;
    by_register[3] = BPF_STMT(BPF_RET | BPF_A, 0);
    EXPECT_TRUE(may_notify_user(bytes(by_register)));
}

TEST(Creds, LimitNames) {
    EXPECT_STREQ(rlimit_name(7), "RLIMIT_NOFILE");
    EXPECT_STREQ(rlimit_name(15), "RLIMIT_RTTIME");
    EXPECT_EQ(limit_text(~uint64_t{0}), "unlimited");
    EXPECT_EQ(limit_text(42), "42");
}

}  // namespace
