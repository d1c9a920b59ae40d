// The registry: duplicate ids, selection patterns, dependency order, claims, package names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cr/fw/loader.hpp>
#include <cr/sdk/log.hpp>

using cr::strf;
using cr::fw::LoadedHandler;
using cr::fw::Registry;
using testing::ElementsAre;

namespace {

LoadedHandler make(const std::string& id, std::vector<std::string> depends = {},
                   std::vector<std::string> claims = {}) {
    LoadedHandler h;
    h.id = id;
    h.path = "/h/" + id + ".so";
    h.version = "1.0.0";
    h.depends = std::move(depends);
    h.claims = std::move(claims);
    return h;
}

Registry registry_of(std::vector<LoadedHandler> handlers) {
    Registry r;
    for (auto& h : handlers) EXPECT_TRUE(r.add(std::move(h)).ok());
    return r;
}

std::vector<std::string> ids(const Registry& r) {
    std::vector<std::string> out;
    for (const auto& h : r.handlers()) out.push_back(h.id);
    return out;
}

std::vector<std::string> ordered_ids(const Registry& r) {
    auto order = r.order();
    if (!order.ok()) return {"error: " + order.error().message()};
    std::vector<std::string> out;
    for (const auto* h : *order) out.push_back(h->id);
    return out;
}

std::string order_error(const Registry& r) {
    auto order = r.order();
    return order.ok() ? "(no error)" : order.error().message();
}

Registry installed() {
    return registry_of({make("cr.files.pipe"), make("cr.files.regular"), make("cr.filesystem.x"),
                        make("cr.net.unix"), make("cr.net.inet"), make("acme.widget.core")});
}

std::string fixture(const char* name) {
    return strf("%s/%s.so", CR_TEST_FIXTURE_DIR, name);
}

}  // namespace

TEST(RegistryTest, DuplicateIdNamesBothFiles) {
    Registry r;
    ASSERT_TRUE(r.add(make("cr.a.b")).ok());
    LoadedHandler again = make("cr.a.b");
    again.path = "/other/cr.a.b.so";
    auto added = r.add(std::move(again));
    ASSERT_FALSE(added.ok());
    EXPECT_EQ(added.error().message(),
              "handler cr.a.b is in both /h/cr.a.b.so and /other/cr.a.b.so");
    EXPECT_EQ(r.handlers().size(), 1U);
}

TEST(RegistryTest, FindAndClaimer) {
    Registry r = registry_of({make("cr.files.pipe", {}, {"fd:pipe", "fd:fifo"}),
                              make("cr.net.unix", {}, {"fd:socket:unix*"}),
                              make("cr.net.unix_stream", {}, {"fd:socket:unix:stream"})});
    ASSERT_NE(r.find("cr.net.unix"), nullptr);
    EXPECT_EQ(r.find("cr.net.unix")->id, "cr.net.unix");
    EXPECT_EQ(r.find("cr.net"), nullptr);
    ASSERT_NE(r.claimer("fd:fifo"), nullptr);
    EXPECT_EQ(r.claimer("fd:fifo")->id, "cr.files.pipe");
    EXPECT_EQ(r.claimer("fd:socket:unix:dgram")->id, "cr.net.unix");
    EXPECT_EQ(r.claimer("fd:socket:unix:stream")->id, "cr.net.unix_stream");
    EXPECT_EQ(r.claimer("fd:eventfd"), nullptr);
}

TEST(RegistryTest, OrderFollowsDependenciesWithTiesById) {
    Registry r = registry_of({make("cr.d", {"cr.a", "cr.b"}), make("cr.c"), make("cr.a", {"cr.c"}),
                              make("cr.b"), make("cr.e", {"cr.c", "cr.c"})});
    EXPECT_THAT(ordered_ids(r), ElementsAre("cr.b", "cr.c", "cr.a", "cr.d", "cr.e"));
}

TEST(RegistryTest, OrderDoesNotDependOnAddOrder) {
    Registry forward =
        registry_of({make("cr.x.one"), make("cr.x.two", {"cr.x.one"}), make("cr.x.three")});
    Registry backward =
        registry_of({make("cr.x.three"), make("cr.x.two", {"cr.x.one"}), make("cr.x.one")});
    EXPECT_EQ(ordered_ids(forward), ordered_ids(backward));
    EXPECT_THAT(ordered_ids(forward), ElementsAre("cr.x.one", "cr.x.three", "cr.x.two"));
}

TEST(RegistryTest, MissingDependencyNamed) {
    Registry r = registry_of({make("cr.task.core", {"cr.memory.vma"})});
    EXPECT_EQ(order_error(r), "handler cr.task.core depends on cr.memory.vma, which is not loaded");
}

TEST(RegistryTest, CycleNamed) {
    EXPECT_EQ(order_error(registry_of({make("cr.a", {"cr.b"}), make("cr.b", {"cr.a"})})),
              "handlers depend on each other in a cycle: cr.a -> cr.b -> cr.a");
    // A handler waiting on the cycle is not part of it.
    EXPECT_EQ(
        order_error(registry_of({make("cr.0", {"cr.b"}), make("cr.b", {"cr.c"}),
                                 make("cr.c", {"cr.d"}), make("cr.d", {"cr.b"}), make("cr.e")})),
        "handlers depend on each other in a cycle: cr.b -> cr.c -> cr.d -> cr.b");
    EXPECT_EQ(order_error(registry_of({make("cr.self", {"cr.self"})})),
              "handlers depend on each other in a cycle: cr.self -> cr.self");
}

TEST(RegistryTest, DoubleClaimNamesBothHandlers) {
    LoadedHandler pipe = make("cr.files.pipe", {}, {"fd:pipe"});
    LoadedHandler other = make("cr.x.y", {}, {"fd:pipe"});
    other.path = "/opt/x/y.so";
    Registry r = registry_of({std::move(other), std::move(pipe)});
    EXPECT_EQ(order_error(r),
              "claim fd:pipe is made by both cr.files.pipe (/h/cr.files.pipe.so) and cr.x.y "
              "(/opt/x/y.so)");
}

TEST(RegistrySelectTest, PatternForms) {
    auto selected = [](std::vector<std::string> patterns) {
        Registry r = installed();
        auto s = r.select(patterns);
        if (!s.ok()) return std::vector<std::string>{"error: " + s.error().message()};
        return ids(r);
    };
    EXPECT_THAT(selected({"files"}), ElementsAre("cr.files.pipe", "cr.files.regular"));
    EXPECT_THAT(selected({"cr.files"}), ElementsAre("cr.files.pipe", "cr.files.regular"));
    EXPECT_THAT(selected({"files.pipe"}), ElementsAre("cr.files.pipe"));
    EXPECT_THAT(selected({"cr.files.pipe", "net"}),
                ElementsAre("cr.files.pipe", "cr.net.unix", "cr.net.inet"));
    EXPECT_THAT(selected({"acme"}), ElementsAre("acme.widget.core"));
    EXPECT_THAT(selected({"cr"}), ElementsAre("cr.files.pipe", "cr.files.regular",
                                              "cr.filesystem.x", "cr.net.unix", "cr.net.inet"));
    EXPECT_THAT(selected({"net.unix", "net.unix", ""}), ElementsAre("cr.net.unix"));
    EXPECT_EQ(selected({}).size(), 6U);
}

TEST(RegistrySelectTest, UnmatchedPatternListsInstalledAndChangesNothing) {
    Registry r = registry_of({make("cr.c.d"), make("cr.a.b")});
    for (const char* pattern : {"foo", "pipe", "c.d.e", "cr.c.d.e", "a.b.c"}) {
        auto s = r.select({"a", pattern});
        ASSERT_FALSE(s.ok()) << pattern;
        EXPECT_EQ(s.error().message(),
                  strf("--plugins: '%s' matches no installed handler (installed: cr.a.b, cr.c.d)",
                       pattern));
    }
    EXPECT_EQ(r.handlers().size(), 2U);
    auto partial = r.select({"cr.a"});  // prefixes stop at dots: not cr.ab
    ASSERT_TRUE(partial.ok());
    EXPECT_THAT(ids(r), ElementsAre("cr.a.b"));
}

TEST(RegistrySelectTest, ExactKeepsNamedHandlers) {
    Registry r = installed();
    ASSERT_TRUE(r.select_exact({"cr.net.unix", "cr.files.pipe"}).ok());
    EXPECT_THAT(ids(r), ElementsAre("cr.files.pipe", "cr.net.unix"));
}

TEST(RegistrySelectTest, ExactMissingNamesPackage) {
    Registry r = installed();
    auto s = r.select_exact({"cr.files.pipe", "cr.files.event"});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().message(),
              "image needs handler cr.files.event, which is not installed (install "
              "cr-handler-files-event)");
    EXPECT_EQ(r.handlers().size(), 6U);
    // Exact means exact: a prefix does not stand in for an id.
    EXPECT_FALSE(r.select_exact({"files.pipe"}).ok());
}

TEST(RegistryPackageTest, ForHandler) {
    EXPECT_EQ(cr::fw::package_for_handler("cr.files.pipe"), "cr-handler-files-pipe");
    EXPECT_EQ(cr::fw::package_for_handler("cr.net.unix"), "cr-handler-net-unix");
    EXPECT_EQ(cr::fw::package_for_handler("acme.widget"), "cr-handler-acme-widget");
}

TEST(RegistryPackageTest, ForKind) {
    using cr::fw::package_for_kind;
    EXPECT_EQ(package_for_kind("task:memory"), "cr-handler-memory-vma");
    EXPECT_EQ(package_for_kind("task:threads"), "cr-handler-task-core");
    EXPECT_EQ(package_for_kind("task:signals"), "cr-handler-signal-signals");
    for (const char* k : {"task:fs", "fd:file", "fd:dir", "fd:chr"})
        EXPECT_EQ(package_for_kind(k), "cr-handler-files-regular") << k;
    EXPECT_EQ(package_for_kind("fd:pipe"), "cr-handler-files-pipe");
    EXPECT_EQ(package_for_kind("fd:fifo"), "cr-handler-files-pipe");
    for (const char* k : {"fd:socket:unix-stream", "fd:socket:unix-dgram", "fd:socket:unix-seqpacket"})
        EXPECT_EQ(package_for_kind(k), "cr-handler-net-unix") << k;
    EXPECT_EQ(package_for_kind("fd:socket:inet6:tcp"), "cr-handler-net-inet");
    for (const char* k : {"fd:eventfd", "fd:signalfd", "fd:timerfd", "fd:eventpoll", "fd:inotify"})
        EXPECT_EQ(package_for_kind(k), "cr-handler-files-event") << k;
    EXPECT_EQ(package_for_kind("fd:memfd"), "cr-handler-memory-memfd");
    EXPECT_EQ(package_for_kind("fd:userfaultfd"), "cr-handler-memory-vma");
    EXPECT_EQ(package_for_kind("task:timers"), "cr-handler-time-timers");
    EXPECT_EQ(package_for_kind("task:creds"), "cr-handler-task-creds");
    EXPECT_EQ(package_for_kind("fd:socket:netlink"), "");
    EXPECT_EQ(package_for_kind("fd:pipe2"), "");
    EXPECT_EQ(package_for_kind(""), "");
}

TEST(RegistryFixtureTest, LoadedCycleNamed) {
    Registry r;
    for (const char* name : {"cycle_b", "cycle_a"}) {
        auto h = cr::fw::load_handler(fixture(name), true);
        ASSERT_TRUE(h.ok()) << h.error().message();
        ASSERT_TRUE(r.add(std::move(h).value()).ok());
    }
    EXPECT_EQ(order_error(r),
              "handlers depend on each other in a cycle: cr.test.cycle_a -> cr.test.cycle_b -> "
              "cr.test.cycle_a");
}

TEST(RegistryFixtureTest, LoadedDoubleClaimNamed) {
    Registry r;
    for (const char* name : {"claim_a", "claim_b"}) {
        auto h = cr::fw::load_handler(fixture(name), true);
        ASSERT_TRUE(h.ok()) << h.error().message();
        ASSERT_TRUE(r.add(std::move(h).value()).ok());
    }
    EXPECT_EQ(
        order_error(r),
        strf("claim test:shared is made by both cr.test.claim_a (%s) and cr.test.claim_b (%s)",
             fixture("claim_a").c_str(), fixture("claim_b").c_str()));
}

TEST(RegistryFixtureTest, LoadedDependencyOrdered) {
    Registry r;
    for (const char* name : {"depends_good", "good"}) {
        auto h = cr::fw::load_handler(fixture(name), true);
        ASSERT_TRUE(h.ok()) << h.error().message();
        ASSERT_TRUE(r.add(std::move(h).value()).ok());
    }
    EXPECT_THAT(ordered_ids(r), ElementsAre("cr.test.good", "cr.test.depends_good"));
    ASSERT_NE(r.claimer("test:good"), nullptr);
    EXPECT_EQ(r.claimer("test:good")->id, "cr.test.good");
}
