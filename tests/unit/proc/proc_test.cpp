// /proc parsers on literal texts, and the readers on this test process itself.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cr/fw/proc.hpp>
#include <string>
#include <thread>

#include "proc/text.hpp"

namespace {

using namespace cr::fw::proc;

// ---- parsers on literal texts ----

TEST(ProcParse, MapsWithSpacesDeletedAndSpecialNames) {
    const std::string text =
        "00400000-00452000 r-xp 00000000 fd:01 173521                     /usr/bin/dbus-daemon\n"
        "00e03000-00e24000 rw-p 00000000 00:00 0                          [heap]\n"
        "7f2c00000000-7f2c00001000 rw-s 00002000 00:05 1234               /dev/shm/my file  x "
        "(deleted)\n"
        "7f2c00002000-7f2c00003000 ---p 00000000 00:00 0 \n"
        "7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0                  [vdso]\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0          [vsyscall]\n";
    auto r = parse_maps(text);
    ASSERT_TRUE(r.ok()) << r.error().message();
    const auto& m = *r;
    ASSERT_EQ(m.size(), 6u);

    EXPECT_EQ(m[0].start, 0x400000u);
    EXPECT_EQ(m[0].end, 0x452000u);
    EXPECT_TRUE(m[0].read && m[0].exec && !m[0].write && !m[0].shared);
    EXPECT_EQ(m[0].dev_major, 0xfdu);
    EXPECT_EQ(m[0].dev_minor, 1u);
    EXPECT_EQ(m[0].ino, 173521u);
    EXPECT_EQ(m[0].path, "/usr/bin/dbus-daemon");

    EXPECT_EQ(m[1].path, "[heap]");
    EXPECT_TRUE(m[1].read && m[1].write && !m[1].exec);

    EXPECT_TRUE(m[2].shared);
    EXPECT_EQ(m[2].offset, 0x2000u);
    EXPECT_EQ(m[2].dev_minor, 5u);
    EXPECT_EQ(m[2].path, "/dev/shm/my file  x (deleted)");

    EXPECT_EQ(m[3].path, "");
    EXPECT_FALSE(m[3].read || m[3].write || m[3].exec);

    EXPECT_EQ(m[4].path, "[vdso]");
    EXPECT_EQ(m[4].start, 0x7ffd10000000u);
    EXPECT_EQ(m[5].start, 0xffffffffff600000u);
    EXPECT_EQ(m[5].path, "[vsyscall]");
}

TEST(ProcParse, MapsRejectsGarbage) {
    auto r = parse_maps("00400000 r-xp 00000000 fd:01 1 /x\n");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("malformed maps line"), std::string::npos);
    EXPECT_FALSE(parse_maps("0-1 r-xp zz 00:00 0\n").ok());
    EXPECT_FALSE(parse_maps("0-1 rw 0 00:00 0\n").ok());
    EXPECT_TRUE(parse_maps("").ok());
}

TEST(ProcParse, VmFlagsFromSmaps) {
    const std::string text =
        "00400000-00452000 r-xp 00000000 fd:01 173521    /usr/bin/a b\n"
        "Size:                328 kB\n"
        "Rss:                 100 kB\n"
        "VmFlags: rd ex mr mw me dw\n"
        "7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0   [vdso]\n"
        "Size:                  8 kB\n"
        "THPeligible:    0\n"
        "VmFlags: rd ex mr mw me de sd\n";
    auto r = detail::parse_vmflags(text);
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ(r->at(0x400000), (std::vector<std::string>{"rd", "ex", "mr", "mw", "me", "dw"}));
    EXPECT_EQ(r->at(0x7ffd10000000).back(), "sd");
}

// A stat line with all 52 fields; comm holds ") (", spaces and a trailing ')'.
TEST(ProcParse, StatWithNastyComm) {
    const std::string text =
        "4242 (a) (b c)) Z 1 4240 4239 34816 4242 4194560 119 0 0 0 0 0 0 0 20 0 3 0 "
        "12345678 9129984 867 18446744073709551615 94000000000000 94000000001000 "
        "140720000000000 0 0 0 65536 4 65538 1 0 0 17 1 0 0 0 0 0 94000000002000 "
        "94000000003000 94000000004000 140720000001000 140720000001100 140720000001100 "
        "140720000001200 256\n";
    auto r = parse_stat(text);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->pid, 4242);
    EXPECT_EQ(r->comm, "a) (b c)");
    EXPECT_EQ(r->state, 'Z');
    EXPECT_EQ(r->ppid, 1);
    EXPECT_EQ(r->pgrp, 4240);
    EXPECT_EQ(r->session, 4239);
    EXPECT_EQ(r->flags, 4194560u);
    EXPECT_EQ(r->num_threads, 3);
    EXPECT_EQ(r->starttime, 12345678u);
    EXPECT_EQ(r->start_code, 94000000000000u);
    EXPECT_EQ(r->end_code, 94000000001000u);
    EXPECT_EQ(r->start_stack, 140720000000000u);
    EXPECT_EQ(r->processor, 1);
    EXPECT_EQ(r->start_data, 94000000002000u);
    EXPECT_EQ(r->end_data, 94000000003000u);
    EXPECT_EQ(r->start_brk, 94000000004000u);
    EXPECT_EQ(r->arg_start, 140720000001000u);
    EXPECT_EQ(r->arg_end, 140720000001100u);
    EXPECT_EQ(r->env_start, 140720000001100u);
    EXPECT_EQ(r->env_end, 140720000001200u);
    EXPECT_EQ(r->exit_code, 256);
}

TEST(ProcParse, StatRejectsGarbage) {
    EXPECT_FALSE(parse_stat("").ok());
    EXPECT_FALSE(parse_stat("42 no parens S 1").ok());
    EXPECT_FALSE(parse_stat("42 (x) S 1 2").ok());
    EXPECT_FALSE(parse_stat("x (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20").ok());
}

TEST(ProcParse, Status) {
    const std::string text =
        "Name:\tsleep\n"
        "Umask:\t0027\n"
        "State:\tS (sleeping)\n"
        "Tgid:\t4242\n"
        "TracerPid:\t17\n"
        "Uid:\t1000\t1001\t1002\t1003\n"
        "Gid:\t100\t101\t102\t103\n"
        "Groups:\t4 24 27 \n"
        "SigPnd:\t0000000000000100\n"
        "ShdPnd:\t0000000000000200\n"
        "SigBlk:\t0000000000010000\n"
        "SigIgn:\t0000000000001000\n"
        "SigCgt:\t0000000180000002\n"
        "NoNewPrivs:\t1\n"
        "Seccomp:\t2\n"
        "Seccomp_filters:\t1\n";
    auto r = parse_status(text);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->umask, 027u);
    EXPECT_EQ(r->state, "S (sleeping)");
    EXPECT_EQ(r->tracer_pid, 17);
    EXPECT_EQ(r->uid[0], 1000u);
    EXPECT_EQ(r->uid[3], 1003u);
    EXPECT_EQ(r->gid[1], 101u);
    EXPECT_EQ(r->groups, (std::vector<uint32_t>{4, 24, 27}));
    EXPECT_EQ(r->sig_pnd, 0x100u);
    EXPECT_EQ(r->shd_pnd, 0x200u);
    EXPECT_EQ(r->sig_blk, 0x10000u);
    EXPECT_EQ(r->sig_ign, 0x1000u);
    EXPECT_EQ(r->sig_cgt, 0x180000002u);
    EXPECT_EQ(r->no_new_privs, 1);
    EXPECT_EQ(r->seccomp, 2);

    auto empty_groups = parse_status("Groups:\t\nUid:\t0\t0\t0\t0\n");
    ASSERT_TRUE(empty_groups.ok()) << empty_groups.error().message();
    EXPECT_TRUE(empty_groups->groups.empty());
    EXPECT_FALSE(parse_status("Uid:\t0\t0\n").ok());
    EXPECT_FALSE(parse_status("SigBlk:\tzz\n").ok());
}

TEST(ProcParse, FdinfoWithRepeatedKeys) {
    const std::string text =
        "pos:\t0\n"
        "flags:\t02004002\n"
        "mnt_id:\t15\n"
        "ino:\t1053\n"
        "tfd:        5 events:       19 data:                5  pos:0 ino:61 sdev:3\n"
        "tfd:        7 events:       19 data:                7  pos:0 ino:62 sdev:3\n";
    auto r = parse_fdinfo(text);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->pos, 0u);
    EXPECT_EQ(r->flags, 02004002u);
    EXPECT_EQ(r->mnt_id, 15u);
    EXPECT_EQ(r->ino, 1053u);
    ASSERT_EQ(r->lines.size(), 6u);
    EXPECT_EQ(r->lines[5],
              "tfd:        7 events:       19 data:                7  pos:0 ino:62 sdev:3");
    EXPECT_EQ(r->fields.at("mnt_id"), "15");
    EXPECT_EQ(r->fields.at("tfd").substr(0, 1), "5");
    EXPECT_EQ(std::count_if(r->lines.begin(), r->lines.end(),
                            [](const std::string& l) { return l.starts_with("tfd:"); }),
              2);
    EXPECT_FALSE(parse_fdinfo("pos:\tx\n").ok());
    EXPECT_FALSE(parse_fdinfo("flags:\t9\n").ok());  // octal
}

// ---- readers on this process ----

TEST(ProcRead, MapsOfSelf) {
    auto r = read_maps(getpid());
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto here = reinterpret_cast<uint64_t>(&read_maps);
    int stack_local = 0;
    auto stack_addr = reinterpret_cast<uint64_t>(&stack_local);
    bool code = false, stack = false, vdso = false;
    for (const MapEntry& e : *r) {
        EXPECT_LT(e.start, e.end);
        if (here >= e.start && here < e.end) code = e.exec && e.read;
        if (stack_addr >= e.start && stack_addr < e.end) stack = e.path == "[stack]";
        vdso = vdso || e.path == "[vdso]";
    }
    EXPECT_TRUE(code);
    EXPECT_TRUE(stack);
    EXPECT_TRUE(vdso);

    // Reading a big file allocates, and allocators (a sanitizer's above all) map memory between
    // two reads: check the mappings that cannot move, and that nearly all others match.
    auto flags = read_vmflags(getpid());
    ASSERT_TRUE(flags.ok()) << flags.error().message();
    auto has = [&](uint64_t start, const char* flag) {
        auto it = flags->find(start);
        return it != flags->end() &&
               std::find(it->second.begin(), it->second.end(), flag) != it->second.end();
    };
    size_t found = 0;
    for (const MapEntry& e : *r) {
        found += flags->count(e.start);
        bool need_ex = (here >= e.start && here < e.end) || e.path == "[vdso]";
        bool need_gd = stack_addr >= e.start && stack_addr < e.end;
        EXPECT_TRUE(!need_ex || has(e.start, "ex")) << std::hex << e.start;
        EXPECT_TRUE(!need_gd || has(e.start, "gd")) << std::hex << e.start;
    }
    EXPECT_GE(found * 10, r->size() * 9);
}

TEST(ProcRead, StatAndStatusOfSelf) {
    auto st = read_stat(getpid());
    ASSERT_TRUE(st.ok()) << st.error().message();
    EXPECT_EQ(st->pid, getpid());
    EXPECT_EQ(st->ppid, getppid());
    EXPECT_EQ(st->pgrp, getpgrp());
    EXPECT_EQ(st->session, getsid(0));
    EXPECT_EQ(st->state, 'R');
    auto comm = read_file("/proc/self/comm");
    ASSERT_TRUE(comm.ok());
    EXPECT_EQ(st->comm + "\n", *comm);
    EXPECT_NE(st->arg_start, 0u);
    EXPECT_NE(st->start_stack, 0u);

    mode_t old = umask(027);
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, &saved);
    auto s = read_status(getpid());
    sigprocmask(SIG_SETMASK, &saved, nullptr);
    umask(old);
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(s->umask, 027u);
    EXPECT_TRUE(s->sig_blk & (1ull << (SIGUSR2 - 1)));
    EXPECT_EQ(s->uid[0], getuid());
    EXPECT_EQ(s->uid[1], geteuid());
    EXPECT_EQ(s->gid[0], getgid());
    EXPECT_EQ(s->state.substr(0, 1), "R");
}

TEST(ProcRead, MissingFileNamesIt) {
    auto r = read_stat(999999999);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("/proc/999999999/stat"), std::string::npos)
        << r.error().message();
    auto l = read_link("/proc/self/fd/999999");
    ASSERT_FALSE(l.ok());
    EXPECT_NE(l.error().message().find("/proc/self/fd/999999"), std::string::npos);
}

TEST(ProcRead, ThreadsOfSelf) {
    std::atomic<pid_t> tid{0};
    std::atomic<bool> stop{false};
    std::thread t([&] {
        tid = gettid();
        while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto threads = read_stat(getpid(), tid);
    auto list = list_threads(getpid());
    stop = true;
    t.join();
    ASSERT_TRUE(threads.ok()) << threads.error().message();
    EXPECT_EQ(threads->pid, tid.load());
    ASSERT_TRUE(list.ok()) << list.error().message();
    EXPECT_TRUE(std::is_sorted(list->begin(), list->end()));
    EXPECT_NE(std::find(list->begin(), list->end(), getpid()), list->end());
    EXPECT_NE(std::find(list->begin(), list->end(), tid.load()), list->end());
}

TEST(ProcRead, ChildrenOfSelf) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    auto kids = list_children(getpid(), gettid());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    ASSERT_TRUE(kids.ok()) << kids.error().message();
    EXPECT_NE(std::find(kids->begin(), kids->end(), child), kids->end());
}

TEST(ProcRead, FdsAndFdinfoOfSelf) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(lseek(fd, 1234, SEEK_SET), 1234);
    auto fds = list_fds(getpid());
    auto info = read_fdinfo(getpid(), fd);
    auto target = read_link("/proc/self/fd/" + std::to_string(fd));
    struct stat st {};
    fstat(fd, &st);
    close(fd);
    ASSERT_TRUE(fds.ok()) << fds.error().message();
    EXPECT_TRUE(std::is_sorted(fds->begin(), fds->end()));
    EXPECT_NE(std::find(fds->begin(), fds->end(), fd), fds->end());
    ASSERT_TRUE(info.ok()) << info.error().message();
    EXPECT_EQ(info->pos, 1234u);
    EXPECT_EQ(info->flags & O_ACCMODE, unsigned(O_RDONLY));
    EXPECT_TRUE(info->flags & O_CLOEXEC);
    EXPECT_EQ(info->ino, st.st_ino);
    EXPECT_NE(info->mnt_id, 0u);
    ASSERT_TRUE(target.ok());
    EXPECT_EQ(target->front(), '/');
}

TEST(ProcRead, AuxvOfSelf) {
    auto r = read_auxv(getpid());
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_GE(r->size(), 4u);
    ASSERT_EQ(r->size() % 2, 0u);
    EXPECT_EQ((*r)[r->size() - 2], 0u);  // AT_NULL last
    bool page_size = false;
    for (size_t i = 0; i < r->size(); i += 2) {
        if ((*r)[i] == AT_PAGESZ) page_size = (*r)[i + 1] == getauxval(AT_PAGESZ);
    }
    EXPECT_TRUE(page_size);
}

TEST(ProcRead, ReadFileOfAnySize) {
    auto r = read_file("/proc/self/maps");
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->empty());
    EXPECT_EQ(r->back(), '\n');
}

}  // namespace
