// Dump and restore of a process holding SIZE MiB of dirty anonymous memory, in GiB/s, next to
// the bounds measured in the same run on the same file system: writing the same bytes from a
// buffer to a file (dump) and reading them into freshly mapped memory (restore).
//
//   bench_memory [--sizes 256,1024] [--rounds 3] [--dir DIR]
//
// Figures are medians over the rounds, the percentages medians of each round's cr / bound; a
// round measures bound, cr, bound, cr back to back, the read bound on cr's own page file.
// cr's figures are the wall time of the whole command (start, freeze, every handler, exit).
#include "bench_util.hpp"

namespace {

using namespace bench;

// A session leader holding size bytes of the pattern, then waiting to be dumped.
pid_t start_holder(size_t size) {
    int ready[2];
    if (pipe(ready) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        setsid();
        void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) _exit(2);
        fill(static_cast<uint8_t*>(mem), size);
        char c = 1;
        (void)!write(ready[1], &c, 1);
        for (;;) pause();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) die("memory holder died");
    close(ready[0]);
    g_workload = pid;
    return pid;
}

double write_bound(const std::string& path, const uint8_t* buf, size_t size) {
    unlink(path.c_str());
    double t0 = now();
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) die("open " + path);
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, buf + done, std::min<size_t>(size - done, 8 << 20));
        if (n <= 0) die("write " + path);
        done += size_t(n);
    }
    close(fd);
    return now() - t0;
}

double read_bound(const std::string& path, size_t size) {
    double t0 = now();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open " + path);
    void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    auto* dst = static_cast<uint8_t*>(mem);
    for (size_t done = 0; done < size;) {
        ssize_t n = pread(fd, dst + done, size - done, off_t(done));
        if (n <= 0) die("read " + path);
        done += size_t(n);
    }
    double t = now() - t0;
    close(fd);
    munmap(mem, size);
    return t;
}

struct Figures {
    std::vector<double> dump, dump_bound, restore, restore_bound;
};

// Every measured step follows the release of as much memory as it needs: fresh pages cost
// far more than pages just freed on some machines (virtual ones above all), and a bound that
// got warm pages next to a dump that got cold ones would compare nothing.
void round_of(const std::string& cr, const std::string& dir, size_t size, const uint8_t* buf, Figures& f) {
    std::string img = dir + "/img";
    std::string bound = dir + "/bound.bin";
    pid_t pid = start_holder(size);
    double gib = double(size) / double(1 << 30);

    // Each measured step starts with nothing dirty in the page cache: writeback of what an
    // earlier step wrote would otherwise be charged to whichever step came next.
    sync();
    f.dump_bound.push_back(gib / write_bound(bound, buf, size));
    unlink(bound.c_str());
    sync();
    Ran d = run_ok({cr, "dump", "-t", std::to_string(pid), "-D", img});
    f.dump.push_back(gib / d.seconds);
    wait_gone(pid);

    sync();
    f.restore_bound.push_back(gib / read_bound(img + "/pages-" + std::to_string(pid) + ".img", size));
    sync();
    Ran r = run_ok({cr, "restore", "-D", img, "-d"});
    f.restore.push_back(gib / r.seconds);
    kill_and_reap(pid);
    remove_tree(img);
}

std::vector<size_t> parse_sizes(const char* s) {
    std::vector<size_t> out;
    for (const char* p = s; *p;) {
        char* end = nullptr;
        out.push_back(std::strtoul(p, &end, 10));
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) die(std::string("bad --sizes: ") + s);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<size_t> sizes{256, 1024};
    int rounds = 3;
    std::string base = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--sizes") sizes = parse_sizes(argv[i + 1]);
        else if (a == "--rounds") rounds = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--dir") base = argv[i + 1];
        else die("usage: bench_memory [--sizes 256,1024] [--rounds 3] [--dir DIR]");
    }
    std::string cr = cr_path(argv[0]);
    prctl(PR_SET_CHILD_SUBREAPER, 1);  // restored processes come back to us to be reaped
    std::string dir = base + "/cr-bench-memory." + std::to_string(getpid());
    if (mkdir(dir.c_str(), 0700) != 0) die("mkdir " + dir);
    std::printf("bench_memory: cr %s, images in %s, %d round(s), medians\n", cr.c_str(), dir.c_str(), rounds);
    bool all_ok = true;
    bool at_1g = false;
    for (size_t mib : sizes) {
        size_t size = mib << 20;
        void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap");
        madvise(mem, size, MADV_DONTFORK);  // the holder must hold its own memory only
        fill(static_cast<uint8_t*>(mem), size);
        Figures f;
        for (int r = 0; r < rounds; ++r) round_of(cr, dir, size, static_cast<uint8_t*>(mem), f);
        munmap(mem, size);
        // The ratio of each round pairs cr with the bound measured next to it; the load of a
        // shared machine drifts between rounds.
        std::vector<double> dr, rr;
        for (size_t i = 0; i < f.dump.size(); ++i) {
            dr.push_back(f.dump[i] / f.dump_bound[i]);
            rr.push_back(f.restore[i] / f.restore_bound[i]);
            std::printf("%5zu MiB  round %zu: dump %.2f GiB/s, bound %.2f; restore %.2f GiB/s, bound %.2f\n", mib, i + 1,
                        f.dump[i], f.dump_bound[i], f.restore[i], f.restore_bound[i]);
        }
        double d = median(f.dump), db = median(f.dump_bound), r = median(f.restore), rb = median(f.restore_bound);
        std::printf("%5zu MiB  dump    %.2f GiB/s  bound %.2f GiB/s  %3.0f%% of bound (goal 70%%)\n", mib, d, db, 100 * median(dr));
        std::printf("%5zu MiB  restore %.2f GiB/s  bound %.2f GiB/s  %3.0f%% of bound (goal 50%%)\n", mib, r, rb, 100 * median(rr));
        at_1g = at_1g || mib >= 1024;
        if (mib >= 1024) all_ok = all_ok && median(dr) >= 0.7 && median(rr) >= 0.5;
    }
    rmdir(dir.c_str());
    if (at_1g) std::printf("bench_memory: %s\n", all_ok ? "goals met at 1 GiB" : "goals NOT met at 1 GiB");
    return 0;
}
