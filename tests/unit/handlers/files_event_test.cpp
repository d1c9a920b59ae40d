// cr.files.event: parsing what fdinfo shows of event descriptors, on texts as the kernel
// prints them.
#include <gtest/gtest.h>

#include "../../../handlers/files/event/event_fdinfo.hpp"

namespace {

using namespace cr::files_event;

TEST(FilesEvent, EventFd) {
    auto s = parse_eventfd(
        "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t17\neventfd-count:                5\n"
        "eventfd-id: 1\neventfd-semaphore: 1\n");
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(s->count, 5u);
    EXPECT_TRUE(s->semaphore);
    EXPECT_TRUE(s->semaphore_known);
    auto big = parse_eventfd("eventfd-count: fffffffffffffffe\n");
    ASSERT_TRUE(big.ok());
    EXPECT_EQ(big->count, 0xfffffffffffffffeull);
    EXPECT_FALSE(big->semaphore_known);
    EXPECT_FALSE(parse_eventfd("pos:\t0\n").ok());
}

TEST(FilesEvent, SignalFd) {
    auto m = parse_signalfd("pos:\t0\nflags:\t02000002\nsigmask:\t0000000000004200\n");
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*m, 0x4200u);
}

TEST(FilesEvent, TimerFd) {
    auto t = parse_timerfd(
        "clockid: 1\nticks: 3\nsettime flags: 03\nit_value: (99, 999985761)\n"
        "it_interval: (2, 500)\n");
    ASSERT_TRUE(t.ok()) << t.error().message();
    EXPECT_EQ(t->clockid, 1);
    EXPECT_EQ(t->ticks, 3u);
    EXPECT_EQ(t->settime_flags, 3u);
    EXPECT_EQ(t->value_ns, 99999985761ull);
    EXPECT_EQ(t->interval_ns, 2000000500ull);
    EXPECT_FALSE(
        parse_timerfd(
            "clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (1, x)\nit_interval: (0, 0)\n")
            .ok());
}

TEST(FilesEvent, Epoll) {
    auto e = parse_epoll(
        "pos:\t0\nflags:\t02\n"
        "tfd:        5 events:       1c data:                7  pos:0 ino:11 sdev:10\n"
        "tfd:        3 events: 80000019 data:       1234567890  pos:0 ino:11 sdev:10\n");
    ASSERT_TRUE(e.ok()) << e.error().message();
    ASSERT_EQ(e->size(), 2u);
    EXPECT_EQ((*e)[0].tfd, 5);
    EXPECT_EQ((*e)[0].events, 0x1cu);
    EXPECT_EQ((*e)[0].data, 7u);
    EXPECT_EQ((*e)[1].events, 0x80000019u);
    EXPECT_EQ((*e)[1].data, 0x1234567890ull);
    EXPECT_FALSE(parse_epoll("tfd: x events: 1 data: 2\n").ok());
}

TEST(FilesEvent, Inotify) {
    auto w = parse_inotify(
        "pos:\t0\nflags:\t04000\n"
        "inotify wd:2 ino:35d sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 "
        "f_handle:5d03000000000000\n"
        "inotify wd:1a ino:3c51a sdev:fe00000 mask:80000300 ignored_mask:0\n");
    ASSERT_TRUE(w.ok()) << w.error().message();
    ASSERT_EQ(w->size(), 2u);
    EXPECT_EQ((*w)[0].wd, 2);
    EXPECT_EQ((*w)[0].ino, 0x35du);
    EXPECT_EQ((*w)[0].sdev, 0xfe00000u);
    EXPECT_EQ((*w)[0].mask, 2u);
    EXPECT_EQ((*w)[0].handle_type, 1);
    ASSERT_EQ((*w)[0].handle.size(), 8u);
    EXPECT_EQ((*w)[0].handle[0], 0x5d);
    EXPECT_EQ((*w)[0].handle[1], 0x03);
    EXPECT_EQ((*w)[1].wd, 0x1a);
    EXPECT_EQ((*w)[1].mask, 0x80000300u);
    EXPECT_TRUE((*w)[1].handle.empty());
    EXPECT_FALSE(
        parse_inotify(
            "inotify wd:1 ino:2 sdev:3 mask:4 fhandle-bytes:8 fhandle-type:1 f_handle:00\n")
            .ok());
}

}  // namespace
