// Incremental dumps against a process that rewrites RATE percent of SIZE MiB every second: the
// time it is frozen by a full dump, next to the time it is frozen by a dump after two
// pre-dumps. Every dump leaves it running, so the two are measured alike.
//
//   bench_predump [--size 1024] [--rate 5] [--interval 0] [--dir DIR]
//
// The pre-dumps and the dump follow one another as a migration would run them (--interval
// seconds apart); the full dump is taken a second after the workload is ready.
//
// The workload is wl_predump (next to this program); a restore of the final image is checked
// by the workload itself at the end.
#include "bench_util.hpp"

namespace {

using namespace bench;

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

void wait_file(const std::string& path, double seconds) {
    double deadline = now() + seconds;
    while (!exists(path)) {
        if (now() > deadline) die(path + " did not appear");
        reap();
        usleep(20000);
    }
}

pid_t start_workload(const std::string& wl, const std::string& dir, size_t mib, double rate) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        std::string size = std::to_string(mib), r = std::to_string(rate);
        execl(wl.c_str(), wl.c_str(), dir.c_str(), size.c_str(), r.c_str(), nullptr);
        _exit(127);
    }
    g_workload = pid;
    wait_file(dir + "/ready", 300);
    return pid;
}

double frozen(const std::vector<std::string>& args) { return frozen_of(run_ok(args).err); }

}  // namespace

int main(int argc, char** argv) {
    size_t mib = 1024;
    double rate = 5, interval = 0;
    std::string base = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--size") mib = std::strtoul(argv[i + 1], nullptr, 10);
        else if (a == "--rate") rate = std::strtod(argv[i + 1], nullptr);
        else if (a == "--interval") interval = std::strtod(argv[i + 1], nullptr);
        else if (a == "--dir") base = argv[i + 1];
        else die("usage: bench_predump [--size 1024] [--rate 5] [--interval 0] [--dir DIR]");
    }
    std::string cr = cr_path(argv[0]);
    std::string wl = dir_of(argv[0]) + "/wl_predump";
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    std::string dir = base + "/cr-bench-predump." + std::to_string(getpid());
    std::string w = dir + "/w";
    if (mkdir(dir.c_str(), 0700) != 0 || mkdir(w.c_str(), 0700) != 0) die("mkdir " + dir);
    std::printf("bench_predump: %zu MiB rewritten at %.0f%% per second, %.1f s between dumps\n", mib, rate, interval);
    pid_t pid = start_workload(wl, w, mib, rate);
    std::string p = std::to_string(pid);
    auto pause_s = [&] { std::this_thread::sleep_for(std::chrono::duration<double>(interval)); };

    std::this_thread::sleep_for(std::chrono::seconds(1));
    double full = frozen({cr, "dump", "-t", p, "-D", dir + "/full", "--leave-running", "-v"});
    remove_tree(dir + "/full");
    std::this_thread::sleep_for(std::chrono::seconds(1));
    double pre1 = frozen({cr, "pre-dump", "-t", p, "-D", dir + "/d1", "-v"});
    pause_s();
    double pre2 = frozen({cr, "pre-dump", "-t", p, "-D", dir + "/d2", "--prev-images-dir", dir + "/d1", "-v"});
    pause_s();
    double last = frozen({cr, "dump", "-t", p, "-D", dir + "/final", "--prev-images-dir", dir + "/d2",
                          "--leave-running", "-v"});
    struct stat st{};
    stat((dir + "/final/pages-" + p + ".img").c_str(), &st);
    std::printf("full dump:                      frozen %.3f s\n", full);
    std::printf("pre-dumps:                      frozen %.3f s, %.3f s\n", pre1, pre2);
    std::printf("dump after two pre-dumps:       frozen %.3f s (%.1f MiB of pages written)\n", last,
                double(st.st_size) / (1 << 20));
    std::printf("incremental / full frozen time: %.3f (goal below 0.2)\n", last / full);

    // The final image restores, and the workload finds every byte where it belongs.
    kill_and_reap(pid);
    run_ok({cr, "restore", "-D", dir + "/final", "-d"});
    unlink((w + "/result").c_str());
    int fd = open((w + "/check").c_str(), O_WRONLY | O_CREAT, 0600);
    close(fd);
    wait_file(w + "/result", 300);
    char result[256] = {};
    fd = open((w + "/result").c_str(), O_RDONLY);
    (void)!read(fd, result, sizeof result - 1);
    close(fd);
    std::printf("restored workload checked itself: %s", result);
    kill_and_reap(pid);
    remove_tree(dir);
    bool ok = std::strncmp(result, "ok", 2) == 0;
    std::printf("bench_predump: %s\n", ok && last < 0.2 * full ? "goal met" : ok ? "goal NOT met" : "RESTORE FAILED");
    return ok ? 0 : 1;
}
