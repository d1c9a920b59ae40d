// cr.files.event: eventfd (count, semaphore mode), signalfd (mask), timerfd (clock, time left,
// interval, unread expirations), epoll (every registration; nested instances too) and inotify
// (watches by path, with their descriptors).
#include <cr/sdk/proc.hpp>
#include <dirent.h>
#include <event_generated.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cr/sdk/fd.hpp>
#include <cr/sdk/handler.hpp>
#include <cr/sdk/image.hpp>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "event_fdinfo.hpp"
#include "inotify.hpp"

// The C/R interface of timerfd (CONFIG_CHECKPOINT_RESTORE): sets the unread expirations.
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace {

namespace fb = cr::image::v1;
using cr::Error;
using cr::Result;
using cr::strf;
using cr::UniqueFd;
using namespace cr::files_event;

constexpr uint64_t k_ns = 1000000000u;

unsigned long long ull(uint64_t v) {
    return static_cast<unsigned long long>(v);
}

using cr::sdk::read_text;

// A registration and the task that makes it again: one holding the epoll instance (as its
// fd epfd) that has the registered file at the registered fd number.
struct EpollReg {
    EpollLine line;
    pid_t pid = 0;
    int epfd = -1;
};

struct EventRecord {
    uint64_t object_id = 0;
    fb::EventKind kind = fb::EventKind::EventFd;
    uint32_t flags = 0;
    pid_t pid = 0;
    int fd = 0;
    uint64_t count = 0;
    bool semaphore = false;
    uint64_t sigmask = 0;
    TimerFdState timer;
    std::vector<EpollReg> entries;
    std::vector<Watch> watches;
};

std::optional<fb::EventKind> kind_of(std::string_view claim) {
    if (claim == "fd:eventfd") return fb::EventKind::EventFd;
    if (claim == "fd:signalfd") return fb::EventKind::SignalFd;
    if (claim == "fd:timerfd") return fb::EventKind::TimerFd;
    if (claim == "fd:eventpoll") return fb::EventKind::Epoll;
    if (claim == "fd:inotify") return fb::EventKind::Inotify;
    return std::nullopt;
}

// The clock an absolute expiry is read on (the alarm clocks run as their base clocks).
clockid_t base_clock(int clockid) {
    if (clockid == CLOCK_REALTIME_ALARM) return CLOCK_REALTIME;
    if (clockid == CLOCK_BOOTTIME_ALARM) return CLOCK_BOOTTIME;
    return clockid;
}

Result<uint64_t> now_ns(int clockid) {
    timespec ts{};
    if (::clock_gettime(base_clock(clockid), &ts) != 0)
        return Error::from_errno(strf("clock_gettime(%d)", clockid));
    return static_cast<uint64_t>(ts.tv_sec) * k_ns + static_cast<uint64_t>(ts.tv_nsec);
}

timespec to_timespec(uint64_t ns) {
    return {static_cast<time_t>(ns / k_ns), static_cast<long>(ns % k_ns)};
}

// Every task's fds that are this same epoll instance (after fork or SCM_RIGHTS), holder first.
Result<std::vector<std::pair<pid_t, int>>> epoll_holders(const cr::sdk::Context& ctx,
                                                         const cr_fd_info& fd) {
    std::vector<std::pair<pid_t, int>> out{{fd.pid, fd.fd}};
    for (const cr::sdk::Task& t : ctx.tasks()) {
        std::string dir = strf("/proc/%d/fd", t.pid);
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
        if (!d) return Error::from_errno("opendir", dir);
        while (const dirent* e = ::readdir(d.get())) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            int n = std::atoi(e->d_name);
            if (t.pid == fd.pid && n == fd.fd) continue;
            if (::syscall(SYS_kcmp, fd.pid, t.pid, KCMP_FILE, fd.fd, n) == 0)
                out.emplace_back(t.pid, n);
        }
    }
    return out;
}

// epoll_ctl in a restored task names the target by fd number: each registration goes to a task
// holding the instance whose fd `tfd` is still the file registered (kcmp KCMP_EPOLL_TFD).
Result<std::vector<EpollReg>> assign_epoll_entries(const cr::sdk::Context& ctx,
                                                   const cr_fd_info& fd,
                                                   const std::vector<EpollLine>& entries) {
    auto holders = CR_TRY(epoll_holders(ctx, fd));
    std::vector<EpollReg> out;
    std::map<int, uint32_t> seen;  // tfd -> how many entries with that number came before
    for (const EpollLine& e : entries) {
        uint32_t toff = seen[e.tfd]++;
        EpollReg reg{e};
        for (const auto& [pid, epfd] : holders) {
            kcmp_epoll_slot slot{static_cast<uint32_t>(epfd), static_cast<uint32_t>(e.tfd), toff};
            if (::syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, e.tfd, &slot) == 0) {
                reg.pid = pid;
                reg.epfd = epfd;
                break;
            }
        }
        if (reg.pid == 0)
            return Error(
                strf("epoll watches a file registered as fd %d, which is no longer at fd %d of "
                     "any task holding the epoll (closed or replaced since): not supported",
                     e.tfd, e.tfd));
        out.push_back(reg);
    }
    return out;
}

class FilesEventHandler {
public:
    static constexpr const char* k_id = "cr.files.event";
    static constexpr const char* k_version = "1.0.0";
    static constexpr const char* k_summary =
        "eventfd, signalfd, timerfd, epoll and inotify descriptors";
    static constexpr const char* k_claims[] = {"fd:eventfd",   "fd:signalfd", "fd:timerfd",
                                               "fd:eventpoll", "fd:inotify",  nullptr};
    static constexpr const char* k_depends[] = {nullptr};
    static constexpr const char* k_schemas[] = {"CREV", nullptr};

    explicit FilesEventHandler(cr::sdk::Context&) {}

    Result<void> dump_fd(cr::sdk::Context& ctx, const cr_fd_info* fd) {
        std::string where = strf("pid %d fd %d: %s", fd->pid, fd->fd, fd->link ? fd->link : "");
        auto kind = kind_of(fd->kind ? fd->kind : "");
        if (!kind) return Error(where + ": not an event descriptor");
        std::string info_path = strf("/proc/%d/fdinfo/%d", fd->pid, fd->fd);
        std::string text = CR_TRY_CTX(read_text(info_path), where);
        EventRecord rec;
        rec.object_id = fd->object_id;
        rec.kind = *kind;
        rec.flags = fd->flags;
        rec.pid = fd->pid;
        rec.fd = fd->fd;
        if (fd->flags & O_ASYNC)
            return Error(where + ": signal-driven I/O (O_ASYNC) is not supported yet");
        switch (*kind) {
            case fb::EventKind::EventFd: {
                EventFdState s = CR_TRY_CTX(parse_eventfd(text), info_path);
                if (!s.semaphore_known)
                    ctx.warn(
                        where +
                        ": this kernel does not show the semaphore mode; restored as a counter");
                rec.count = s.count;
                rec.semaphore = s.semaphore;
                ctx.debug(strf("%s: count %llu%s", where.c_str(), ull(s.count),
                               s.semaphore ? ", semaphore" : ""));
                break;
            }
            case fb::EventKind::SignalFd:
                rec.sigmask = CR_TRY_CTX(parse_signalfd(text), info_path);
                ctx.debug(strf("%s: mask %#llx", where.c_str(), ull(rec.sigmask)));
                break;
            case fb::EventKind::TimerFd:
                rec.timer = CR_TRY_CTX(parse_timerfd(text), info_path);
                if ((rec.timer.settime_flags & TFD_TIMER_ABSTIME) && rec.timer.value_ns != 0)
                    rec.timer.value_ns += CR_TRY_CTX(now_ns(rec.timer.clockid), where);
                ctx.debug(strf(
                    "%s: clock %d, flags 0%o, value %llu ns, interval %llu ns, %llu ticks",
                    where.c_str(), rec.timer.clockid, rec.timer.settime_flags,
                    ull(rec.timer.value_ns), ull(rec.timer.interval_ns), ull(rec.timer.ticks)));
                break;
            case fb::EventKind::Epoll:
                rec.entries = CR_TRY_CTX(
                    assign_epoll_entries(ctx, *fd, CR_TRY_CTX(parse_epoll(text), info_path)),
                    where);
                ctx.debug(strf("%s: %zu registrations", where.c_str(), rec.entries.size()));
                break;
            case fb::EventKind::Inotify: {
                for (const InotifyLine& l : CR_TRY_CTX(parse_inotify(text), info_path))
                    rec.watches.push_back(CR_TRY_CTX(locate_watch(l), where));
                int queued = 0;
                if (::ioctl(fd->cr_fd, FIONREAD, &queued) == 0 && queued > 0)
                    ctx.warn(strf(
                        "%s: %d bytes of queued events are not saved (an inotify queue cannot be "
                        "read without emptying it); the restored instance starts with an empty "
                        "queue",
                        where.c_str(), queued));
                ctx.debug(strf("%s: %zu watches", where.c_str(), rec.watches.size()));
                break;
            }
        }
        m_records.push_back(std::move(rec));
        return {};
    }

    Result<void> dump_finish(cr::sdk::Context& ctx) {
        flatbuffers::FlatBufferBuilder fbb;
        std::vector<flatbuffers::Offset<fb::EventObject>> objects;
        for (const EventRecord& r : m_records) {
            std::vector<flatbuffers::Offset<fb::EpollEntry>> entries;
            for (const EpollReg& e : r.entries)
                entries.push_back(fb::CreateEpollEntry(fbb, e.line.tfd, e.line.events, e.line.data,
                                                       e.pid, e.epfd));
            std::vector<flatbuffers::Offset<fb::InotifyWatch>> watches;
            for (const Watch& w : r.watches)
                watches.push_back(
                    fb::CreateInotifyWatchDirect(fbb, w.wd, w.mask, w.path.c_str(), w.dev, w.ino));
            objects.push_back(fb::CreateEventObjectDirect(
                fbb, r.object_id, r.kind, r.flags, r.pid, r.fd, r.count, r.semaphore, r.sigmask,
                r.timer.clockid, r.timer.settime_flags, r.timer.value_ns, r.timer.interval_ns,
                r.timer.ticks, &entries, &watches));
        }
        fbb.Finish(fb::CreateEventImageDirect(fbb, &objects), fb::EventImageIdentifier());
        CR_TRY(cr::sdk::write_section(ctx, "event.cr", fbb));
        ctx.debug(strf("event.cr: %zu descriptors", m_records.size()));
        return {};
    }

    Result<void> prepare(cr::sdk::Context& ctx) {
        m_image = CR_TRY(cr::sdk::read_section_as<fb::EventImage>(ctx, "event.cr", "CREV",
                                                                  &fb::VerifyEventImageBuffer));
        if (!m_image->objects()) return {};
        for (const fb::EventObject* o : *m_image->objects()) {
            std::string where = strf("event.cr: pid %d fd %d (%s)", o->pid(), o->fd(),
                                     fb::EnumNameEventKind(o->kind()));
            UniqueFd fd = CR_TRY_CTX(create(ctx, *o), where);
            int raw = fd.get();
            CR_TRY(ctx.set_object_fd(o->object_id(), raw));
            fd.release();  // the core owns it now
        }
        return {};
    }

    // epoll keys each registration by (file, fd number): they are made by the task itself,
    // once its fd table is in place.
    Result<void> restore_stub(cr::sdk::Context&, pid_t pid) {
        if (!m_image || !m_image->objects()) return {};
        for (const fb::EventObject* o : *m_image->objects()) {
            if (o->kind() != fb::EventKind::Epoll || !o->entries()) continue;
            for (const fb::EpollEntry* e : *o->entries()) {
                pid_t by = e->pid() != 0 ? e->pid() : o->pid();
                int epfd = e->pid() != 0 ? e->epfd() : o->fd();
                if (by != pid) continue;
                epoll_event ev{};
                ev.events = e->events();
                ev.data.u64 = e->data();
                if (::epoll_ctl(epfd, EPOLL_CTL_ADD, e->tfd(), &ev) != 0)
                    return Error::from_errno(
                        strf("event.cr: pid %d fd %d: epoll_ctl(EPOLL_CTL_ADD) of fd %d", pid, epfd,
                             e->tfd()));
            }
        }
        return {};
    }

private:
    static Result<UniqueFd> create(cr::sdk::Context& ctx, const fb::EventObject& o) {
        bool nonblock = (o.flags() & O_NONBLOCK) != 0;
        switch (o.kind()) {
            case fb::EventKind::EventFd: {
                int flags = EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0) |
                            (o.semaphore() ? EFD_SEMAPHORE : 0);
                UniqueFd fd(::eventfd(0, flags));
                if (!fd) return Error::from_errno("eventfd");
                uint64_t count = o.count();
                if (count != 0 && ::write(fd.get(), &count, sizeof count) != sizeof count)
                    return Error::from_errno(strf("write of count %llu", ull(count)));
                ctx.debug(strf("eventfd: count %llu", ull(count)));
                return fd;
            }
            case fb::EventKind::SignalFd: {
                sigset_t mask;
                sigemptyset(&mask);
                for (int sig = 1; sig <= 64; ++sig)
                    if (o.signals() & (1ull << (sig - 1))) sigaddset(&mask, sig);
                UniqueFd fd(::signalfd(-1, &mask, SFD_CLOEXEC | (nonblock ? SFD_NONBLOCK : 0)));
                if (!fd)
                    return Error::from_errno(strf("signalfd with mask %#llx", ull(o.signals())));
                return fd;
            }
            case fb::EventKind::TimerFd:
                return create_timer(ctx, o, nonblock);
            case fb::EventKind::Epoll: {
                UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
                if (!fd) return Error::from_errno("epoll_create1");
                if (nonblock && ::fcntl(fd.get(), F_SETFL, O_NONBLOCK) != 0)
                    return Error::from_errno("fcntl F_SETFL");
                return fd;
            }
            case fb::EventKind::Inotify: {
                UniqueFd fd(::inotify_init1(IN_CLOEXEC | (nonblock ? IN_NONBLOCK : 0)));
                if (!fd) return Error::from_errno("inotify_init1");
                std::vector<Watch> watches;
                if (o.watches())
                    for (const fb::InotifyWatch* w : *o.watches())
                        watches.push_back({w->wd(), w->mask(), w->path() ? w->path()->str() : "",
                                           w->dev(), w->ino()});
                size_t drained =
                    CR_TRY(add_watches(fd.get(), watches, !ctx.flag("skip-file-check")));
                ctx.debug(strf(
                    "inotify: %zu watches%s", watches.size(),
                    drained ? strf(", %zu bytes of placeholder events drained", drained).c_str()
                            : ""));
                return fd;
            }
        }
        return Error(strf("unknown kind %d", static_cast<int>(o.kind())));
    }

    static Result<UniqueFd> create_timer(cr::sdk::Context& ctx, const fb::EventObject& o,
                                         bool nonblock) {
        UniqueFd fd(::timerfd_create(o.clockid(), TFD_CLOEXEC | (nonblock ? TFD_NONBLOCK : 0)));
        if (!fd) return Error::from_errno(strf("timerfd_create(%d)", o.clockid()));
        itimerspec its{to_timespec(o.interval_ns()), to_timespec(o.value_ns())};
        int flags =
            static_cast<int>(o.settime_flags() & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));
        if (::timerfd_settime(fd.get(), flags, &its, nullptr) != 0)
            return Error::from_errno("timerfd_settime");
        uint64_t ticks = o.ticks();
        // settime clears the expirations; they are put back afterwards.
        if (ticks != 0 && ::ioctl(fd.get(), TFD_IOC_SET_TICKS, &ticks) != 0)
            return Error::from_errno(strf(
                "ioctl TFD_IOC_SET_TICKS: %llu unread expirations cannot be restored", ull(ticks)));
        ctx.debug(strf("timerfd: clock %d, value %llu ns, interval %llu ns, %llu ticks",
                       o.clockid(), ull(o.value_ns()), ull(o.interval_ns()), ull(ticks)));
        return fd;
    }

    std::vector<EventRecord> m_records;
    const fb::EventImage* m_image = nullptr;
};

}  // namespace

CR_DECLARE_HANDLER(FilesEventHandler)
