// cr inspect: what an image holds, without restoring it: the process tree, open files and
// sockets, memory totals, handlers and sections. Every section read is checked (size, checksum,
// verifier) on the way, so a clean inspect also says the image is intact.
#include "commands.hpp"
#include "options.hpp"

#include <cr/fw/image.hpp>
#include <cr/sdk/abi.h>
#include <cr/sdk/log.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <files_generated.h>
#include <memory_generated.h>
#include <pipe_generated.h>
#include <unix_generated.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

namespace cr::cli {

namespace {

namespace fb = cr::image::v1;

// "unix stream /run/app.sock, listening (backlog 16, 2 pending)", "... peer socket:[42], 3 messages (120 B) queued".
std::string unix_detail(const fb::UnixSocket& u) {
    std::string name;
    if (u.name() && u.name()->size() > 0) {
        std::string raw(reinterpret_cast<const char*>(u.name()->data()), u.name()->size());
        name = raw[0] ? " " + std::string(raw.c_str()) : " @" + raw.substr(1);
    }
    const char* type = u.type() == 1 ? "stream" : u.type() == 2 ? "dgram" : u.type() == 5 ? "seqpacket" : "?";
    std::string out = strf("unix %s%s", type, name.c_str());
    if (u.state() == 10)
        return out + strf(", listening (backlog %u, %u pending)", u.backlog(), u.icons() ? u.icons()->size() : 0u);
    if (u.peer()) out += strf(", peer socket:[%llu]", static_cast<unsigned long long>(u.peer()));
    if (u.listener()) out += ", connected, not yet accepted";
    if (u.peer_closed()) out += ", peer closed";
    if (u.external_peer() && u.external_peer()->size() > 0) out += ", external peer";
    size_t bytes = 0;
    if (u.queue())
        for (const fb::UnixMessage* m : *u.queue()) bytes += m->data() ? m->data()->size() : 0;
    if (u.queue() && u.queue()->size() > 0) out += strf(", %u messages (%zu B) queued", u.queue()->size(), bytes);
    if (u.shutdown()) out += strf(", shut down %s", u.shutdown() == 3 ? "both ways" : u.shutdown() == 1 ? "for reading" : "for writing");
    return out;
}

constexpr uint64_t k_page = 4096;
constexpr size_t k_cmdline_max = 4096;

struct MemoryTotals {
    uint64_t vmas = 0;
    uint64_t mapped = 0;  // bytes
    uint64_t dumped_pages = 0;
    uint64_t zero_pages = 0;
};

struct TaskView {
    const fw::ManifestTask* task = nullptr;
    std::vector<std::string> argv;  // from the arg area in its pages, when dumped
    MemoryTotals memory;
    bool has_memory = false;
};

struct FdView {
    const fw::ManifestFd* fd = nullptr;
    std::string detail;  // path, pipe and queue, or the kind for what no section describes
};

struct ImageView {
    const fw::Manifest* manifest = nullptr;
    std::vector<TaskView> tasks;
    std::vector<FdView> files;
    std::vector<FdView> sockets;
    MemoryTotals memory;
};

template <typename Root>
Result<const Root*> root_of(fw::ImageReader& reader, const fw::ManifestSection& s,
                            bool (*verify)(flatbuffers::Verifier&)) {
    auto bytes = CR_TRY(reader.section(s.file));
    flatbuffers::Verifier v(bytes.data(), bytes.size());
    if (!verify(v)) return Error(strf("image %s: %s: section fails verification", reader.dir().c_str(), s.file.c_str()));
    return flatbuffers::GetRoot<Root>(bytes.data());
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::string access_of(uint32_t flags) {
    std::string a = (flags & O_ACCMODE) == O_RDONLY ? "r" : (flags & O_ACCMODE) == O_WRONLY ? "w" : "rw";
    if (flags & O_APPEND) a += ",append";
    if (flags & O_NONBLOCK) a += ",nonblock";
    return a;
}

// argv as the task had it: the arg area lives in its anonymous memory, i.e. in its page file.
std::vector<std::string> read_argv(const std::string& dir, const fb::TaskMemory& m) {
    std::vector<std::string> argv;
    if (!m.mm() || !m.runs() || !m.pages_file()) return argv;
    std::string pages = m.pages_file()->str();
    if (pages.empty() || pages.find('/') != std::string::npos) return argv;
    uint64_t start = m.mm()->arg_start(), end = std::min(m.mm()->arg_end(), m.mm()->arg_start() + k_cmdline_max);
    if (end <= start) return argv;
    UniqueFd fd(::open((dir + "/" + pages).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return argv;
    std::string raw(end - start, '\0');
    for (uint64_t addr = start; addr < end;) {
        uint64_t page_end = std::min(end, (addr / k_page + 1) * k_page);
        const fb::PageRun* run = nullptr;
        for (const fb::PageRun* r : *m.runs())
            if (addr >= r->vaddr() && addr < r->vaddr() + r->count() * k_page) run = r;
        if (!run) return {};  // not dumped: an all-zero page has no arguments
        off_t off = static_cast<off_t>(run->offset() + (addr - run->vaddr()));
        if (::pread(fd.get(), raw.data() + (addr - start), page_end - addr, off) != static_cast<ssize_t>(page_end - addr))
            return {};
        addr = page_end;
    }
    for (size_t pos = 0; pos < raw.size();) {
        size_t nul = raw.find('\0', pos);
        argv.push_back(raw.substr(pos, nul == std::string::npos ? std::string::npos : nul - pos));
        if (nul == std::string::npos) break;
        pos = nul + 1;
    }
    return argv;
}

Result<ImageView> build_view(fw::ImageReader& reader) {
    ImageView view;
    const fw::Manifest& m = reader.manifest();
    view.manifest = &m;
    std::map<pid_t, size_t> task_index;
    for (const auto& t : m.tasks) {
        task_index[t.pid] = view.tasks.size();
        view.tasks.push_back({&t, {}, {}, false});
    }
    std::map<uint64_t, std::string> details;  // object id -> what it is
    for (const auto& s : m.sections) {
        if (s.schema_id == "CRMM") {
            auto mem = CR_TRY(root_of<fb::MemoryImage>(reader, s, fb::VerifyMemoryImageBuffer));
            if (!mem->tasks()) continue;
            for (const fb::TaskMemory* tm : *mem->tasks()) {
                auto it = task_index.find(tm->pid());
                if (it == task_index.end()) continue;
                TaskView& tv = view.tasks[it->second];
                tv.has_memory = true;
                if (tm->vmas())
                    for (const fb::Vma* v : *tm->vmas()) {
                        tv.memory.vmas++;
                        tv.memory.mapped += v->end() - v->start();
                    }
                tv.memory.dumped_pages = tm->pages_dumped();
                tv.memory.zero_pages = tm->pages_zero();
                tv.argv = read_argv(reader.dir(), *tm);
            }
        } else if (s.schema_id == "CRFL") {
            auto files = CR_TRY(root_of<fb::FilesImage>(reader, s, fb::VerifyFilesImageBuffer));
            if (files->files())
                for (const fb::OpenFile* f : *files->files())
                    details[f->object_id()] = strf("%s (%s, pos %llu)", str(f->path()).c_str(), access_of(f->flags()).c_str(),
                                                   static_cast<unsigned long long>(f->pos()));
        } else if (s.schema_id == "CRPP") {
            auto pipes = CR_TRY(root_of<fb::PipeImage>(reader, s, fb::VerifyPipeImageBuffer));
            std::map<uint64_t, size_t> queued;
            if (pipes->pipes())
                for (const fb::Pipe* p : *pipes->pipes()) queued[p->ino()] = p->data() ? p->data()->size() : 0;
            if (pipes->ends())
                for (const fb::PipeEnd* e : *pipes->ends())
                    details[e->object_id()] = strf("pipe:[%llu] %s end (%s), %zu bytes queued",
                                                   static_cast<unsigned long long>(e->pipe_ino()),
                                                   e->write_end() ? "write" : "read", access_of(e->flags()).c_str(),
                                                   queued[e->pipe_ino()]);
        } else if (s.schema_id == "CRUX") {
            auto image = CR_TRY(root_of<fb::UnixImage>(reader, s, fb::VerifyUnixImageBuffer));
            if (image->sockets())
                for (const fb::UnixSocket* u : *image->sockets()) details[u->object_id()] = unix_detail(*u);
        }
    }
    for (auto& tv : view.tasks) {
        view.memory.vmas += tv.memory.vmas;
        view.memory.mapped += tv.memory.mapped;
        view.memory.dumped_pages += tv.memory.dumped_pages;
        view.memory.zero_pages += tv.memory.zero_pages;
    }
    for (const auto& f : m.fds) {
        auto d = details.find(f.object_id);
        FdView fv{&f, d != details.end() ? d->second : std::string()};
        (f.kind.rfind("fd:socket", 0) == 0 ? view.sockets : view.files).push_back(std::move(fv));
    }
    return view;
}

std::string flags_of(uint32_t flags) {
    std::string out;
    if (flags & CR_TASK_STOPPED) out += " stopped";
#ifdef CR_TASK_ZOMBIE
    if (flags & CR_TASK_ZOMBIE) out += " zombie";
#endif
    return out;
}

std::string size_text(uint64_t bytes) {
    if (bytes < 10 * 1024) return strf("%llu B", static_cast<unsigned long long>(bytes));
    if (bytes < 10ull * 1024 * 1024) return strf("%.1f KiB", static_cast<double>(bytes) / 1024);
    if (bytes < 10ull * 1024 * 1024 * 1024) return strf("%.1f MiB", static_cast<double>(bytes) / (1024 * 1024));
    return strf("%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
}

std::string command_of(const TaskView& t) {
    if (t.argv.empty()) return "[" + t.task->comm + "]";
    std::string out;
    for (const auto& a : t.argv) out += (out.empty() ? "" : " ") + a;
    return out;
}

std::string utc(uint64_t unix_time) {
    time_t t = static_cast<time_t>(unix_time);
    tm parts{};
    char buf[32] = "?";
    if (gmtime_r(&t, &parts)) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &parts);
    return buf;
}

bool in_tree(const ImageView& v, pid_t pid) {
    return std::any_of(v.tasks.begin(), v.tasks.end(), [pid](const TaskView& t) { return t.task->pid == pid; });
}

// Children under their parent; a task whose parent is outside the image starts a tree.
void print_tree(const ImageView& v, pid_t parent, const std::string& indent) {
    for (const auto& t : v.tasks) {
        bool top = parent == 0 && !in_tree(v, t.task->ppid);
        if (!top && (parent == 0 || t.task->ppid != parent)) continue;
        std::string tids;
        for (pid_t tid : t.task->tids) tids += (tids.empty() ? "" : ",") + std::to_string(tid);
        std::printf("%s%d  %s\n%s    comm %s, pgid %d, sid %d, %zu thread(s): %s%s\n", indent.c_str(), t.task->pid,
                    command_of(t).c_str(), indent.c_str(), t.task->comm.c_str(), t.task->pgid, t.task->sid,
                    t.task->tids.size(), tids.c_str(), flags_of(t.task->flags).c_str());
        print_tree(v, t.task->pid, indent + "  ");
    }
}

void print_fds(const char* title, const std::vector<FdView>& fds) {
    std::printf("\n%s\n", title);
    if (fds.empty()) std::printf("  none\n");
    for (const auto& f : fds)
        std::printf("  pid %-7d fd %-4d %-22s %-18s %s%s\n", f.fd->pid, f.fd->fd, f.fd->kind.c_str(),
                    f.fd->handler_id.c_str(), f.detail.empty() ? "-" : f.detail.c_str(), f.fd->cloexec ? " cloexec" : "");
}

void print_text(const ImageView& v, const std::string& dir) {
    const fw::Manifest& m = *v.manifest;
    std::printf("image %s\n  written by cr %s on %s (%s), %s; format %u\n", dir.c_str(), m.cr_version.c_str(),
                m.kernel.c_str(), m.arch.c_str(), utc(m.created_unix).c_str(), m.format_version);
    if (!m.parent_dir.empty()) std::printf("  parent image %s\n", m.parent_dir.c_str());
    std::printf("\nprocess tree (%zu task(s))\n", v.tasks.size());
    print_tree(v, 0, "  ");
    print_fds("open files", v.files);
    print_fds("sockets", v.sockets);
    std::printf("\nmemory\n");
    for (const auto& t : v.tasks) {
        if (!t.has_memory) continue;
        std::printf("  pid %-7d %4llu vmas, mapped %s, dumped %s (%llu pages), zero pages skipped %llu\n", t.task->pid,
                    static_cast<unsigned long long>(t.memory.vmas), size_text(t.memory.mapped).c_str(),
                    size_text(t.memory.dumped_pages * k_page).c_str(),
                    static_cast<unsigned long long>(t.memory.dumped_pages),
                    static_cast<unsigned long long>(t.memory.zero_pages));
    }
    std::printf("  total       %4llu vmas, mapped %s, dumped %s (%llu pages), zero pages skipped %llu\n",
                static_cast<unsigned long long>(v.memory.vmas), size_text(v.memory.mapped).c_str(),
                size_text(v.memory.dumped_pages * k_page).c_str(),
                static_cast<unsigned long long>(v.memory.dumped_pages),
                static_cast<unsigned long long>(v.memory.zero_pages));
    std::printf("\nhandlers\n");
    for (const auto& h : m.handlers) std::printf("  %-24s %s\n", h.id.c_str(), h.version.c_str());
    std::printf("\nsections\n");
    uint64_t total = 0;
    for (const auto& s : m.sections) {
        std::printf("  %-28s %-24s %-8s %-6s %12llu B\n", s.file.c_str(), s.handler_id.c_str(),
                    s.handler_version.c_str(), s.schema_id.empty() ? "raw" : s.schema_id.c_str(),
                    static_cast<unsigned long long>(s.size));
        total += s.size;
    }
    std::printf("  total %s in %zu file(s)\n", size_text(total).c_str(), m.sections.size());
}

}  // namespace

// JSON for scripts: the same facts, numbers as numbers, sizes in bytes.
namespace {

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) out += strf("\\u%04x", c);
                else out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

std::string num(uint64_t v) { return std::to_string(v); }

std::string memory_json(const MemoryTotals& m) {
    return strf("\"vmas\":%s,\"mapped_bytes\":%s,\"dumped_pages\":%s,\"dumped_bytes\":%s,\"zero_pages\":%s",
                num(m.vmas).c_str(), num(m.mapped).c_str(), num(m.dumped_pages).c_str(),
                num(m.dumped_pages * k_page).c_str(), num(m.zero_pages).c_str());
}

std::string fds_json(const std::vector<FdView>& fds) {
    std::string out = "[";
    for (const auto& f : fds) {
        if (out.size() > 1) out += ",";
        out += strf("{\"pid\":%d,\"fd\":%d,\"kind\":%s,\"handler\":%s,\"object_id\":%s,\"cloexec\":%s,\"detail\":%s}",
                    f.fd->pid, f.fd->fd, quote(f.fd->kind).c_str(), quote(f.fd->handler_id).c_str(),
                    num(f.fd->object_id).c_str(), f.fd->cloexec ? "true" : "false", quote(f.detail).c_str());
    }
    return out + "]";
}

void print_json(const ImageView& v, const std::string& dir) {
    const fw::Manifest& m = *v.manifest;
    std::string out = strf("{\"image\":%s,\"format_version\":%u,\"cr_version\":%s,\"kernel\":%s,\"arch\":%s,"
                           "\"created_unix\":%s,\"root_pid\":%d,\"parent_dir\":%s,\"tasks\":[",
                           quote(dir).c_str(), m.format_version, quote(m.cr_version).c_str(), quote(m.kernel).c_str(),
                           quote(m.arch).c_str(), num(m.created_unix).c_str(), m.root_pid, quote(m.parent_dir).c_str());
    for (size_t i = 0; i < v.tasks.size(); ++i) {
        const TaskView& t = v.tasks[i];
        std::string tids, argv;
        for (pid_t tid : t.task->tids) tids += (tids.empty() ? "" : ",") + std::to_string(tid);
        for (const auto& a : t.argv) argv += (argv.empty() ? "" : ",") + quote(a);
        out += strf("%s{\"pid\":%d,\"ppid\":%d,\"pgid\":%d,\"sid\":%d,\"comm\":%s,\"argv\":[%s],\"threads\":[%s],"
                    "\"stopped\":%s,\"flags\":%u,\"memory\":{%s}}",
                    i ? "," : "", t.task->pid, t.task->ppid, t.task->pgid, t.task->sid, quote(t.task->comm).c_str(),
                    argv.c_str(), tids.c_str(), (t.task->flags & CR_TASK_STOPPED) ? "true" : "false", t.task->flags,
                    memory_json(t.memory).c_str());
    }
    out += "],\"files\":" + fds_json(v.files) + ",\"sockets\":" + fds_json(v.sockets);
    out += ",\"memory\":{" + memory_json(v.memory) + "},\"handlers\":[";
    for (size_t i = 0; i < m.handlers.size(); ++i)
        out += strf("%s{\"id\":%s,\"version\":%s}", i ? "," : "", quote(m.handlers[i].id).c_str(),
                    quote(m.handlers[i].version).c_str());
    out += "],\"sections\":[";
    for (size_t i = 0; i < m.sections.size(); ++i) {
        const auto& s = m.sections[i];
        std::string checksum = s.checksum == fw::Checksum::crc32c
                                   ? strf("\"crc32c\":\"%08x\"", s.crc32c)
                                   : "\"sha256\":" + quote(fw::Sha256::hex(s.sha256));
        out += strf("%s{\"file\":%s,\"handler\":%s,\"version\":%s,\"schema\":%s,\"size\":%s,%s}", i ? "," : "",
                    quote(s.file).c_str(), quote(s.handler_id).c_str(), quote(s.handler_version).c_str(),
                    quote(s.schema_id).c_str(), num(s.size).c_str(), checksum.c_str());
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
}

}  // namespace

int inspect_main(int argc, char** argv) {
    po::options_description desc("options");
    std::string dir, format = "text";
    desc.add_options()
        ("help,h", "show this help")
        ("images-dir,D", po::value<std::string>(&dir)->required(), "image directory")
        ("format", po::value<std::string>(&format)->default_value("text"), "text or json");
    po::positional_options_description pos;
    pos.add("images-dir", 1);
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm,
               "usage: cr inspect [--format text|json] DIR\n\n"
               "Shows what an image holds without restoring it: the process tree (pids, commands,\n"
               "threads), open files, sockets, memory totals, handlers and sections. Every section\n"
               "read is checked against the manifest.",
               &pos))
        return 0;
    if (format != "text" && format != "json") return fail("inspect", "--format: '" + format + "' is not text or json");
    auto reader = fw::ImageReader::open(dir);
    if (!reader) return fail("inspect", reader.error().message());
    auto view = build_view(*reader);
    if (!view) return fail("inspect", view.error().message());
    if (format == "json") print_json(*view, dir);
    else print_text(*view, dir);
    return std::fflush(stdout) == 0 ? 0 : fail("inspect", "stdout: write failed");
}

}  // namespace cr::cli
