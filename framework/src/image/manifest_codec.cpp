// manifest.cr <-> Manifest: FlatBuffer bytes followed by their sha256, checked and validated.
#include <flatbuffers/flatbuffers.h>

#include <cr/fw/image.hpp>
#include <cstring>
#include <set>

#include "image/internal.hpp"
#include "manifest_generated.h"

namespace cr::fw {

namespace fb = cr::image::v1;

namespace image_detail {

std::string bad_file_name(std::string_view name) {
    if (name.empty()) return "empty file name";
    if (name == "." || name == "..") return "file name \"" + std::string(name) + "\" is not a file";
    if (name.find('/') != std::string_view::npos)
        return "file name \"" + std::string(name) + "\" has a '/' (only plain names are allowed)";
    if (name.find('\0') != std::string_view::npos) return "file name has a nul byte";
    if (name == k_manifest_file) return "file name \"manifest.cr\" is reserved for the manifest";
    // Room for the temporary ".NAME.tmp" next to it within NAME_MAX.
    if (name.size() > 240) return "file name longer than 240 bytes";
    return {};
}

std::string where(const std::string& dir, std::string_view file) {
    std::string w = "image " + dir;
    if (!file.empty()) {
        w += ": ";
        w += file;
    }
    return w;
}

}  // namespace image_detail

namespace {

constexpr size_t k_digest_size = 32;
// Sizes beyond this are not a file we wrote (2^48 bytes, 256 TiB).
constexpr uint64_t k_max_file_size = uint64_t(1) << 48;
constexpr int64_t k_pid_max_limit = 4 * 1024 * 1024;

std::string str(const flatbuffers::String* s) {
    return s ? s->str() : std::string();
}

template <typename T>
std::vector<T> ints(const flatbuffers::Vector<T>* v) {
    return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

Manifest from_flatbuffer(const fb::Manifest& in) {
    Manifest m;
    m.format_version = in.format_version();
    m.cr_version = str(in.cr_version());
    m.kernel = str(in.kernel());
    m.arch = str(in.arch());
    m.created_unix = in.created_unix();
    m.root_pid = in.root_pid();
    m.parent_dir = str(in.parent_dir());
    m.pre_dump = in.pre_dump();
    if (in.tasks()) {
        for (const fb::Task* t : *in.tasks()) {
            m.tasks.push_back({t->pid(), t->ppid(), t->pgid(), t->sid(), ints(t->tids()),
                               t->flags(), str(t->comm()), t->stub_area(), t->exit_status()});
        }
    }
    if (in.handlers()) {
        for (const fb::Handler* h : *in.handlers())
            m.handlers.push_back({str(h->id()), str(h->version())});
    }
    if (in.sections()) {
        for (const fb::Section* s : *in.sections()) {
            ManifestSection out{str(s->handler_id()),
                                str(s->handler_version()),
                                str(s->schema_id()),
                                str(s->file()),
                                s->size(),
                                {},
                                static_cast<Checksum>(s->checksum()),
                                s->crc32c()};
            if (s->sha256() && s->sha256()->size() == k_digest_size)
                std::memcpy(out.sha256.data(), s->sha256()->data(), k_digest_size);
            m.sections.push_back(std::move(out));
        }
    }
    if (in.fds()) {
        for (const fb::Fd* f : *in.fds()) {
            m.fds.push_back({f->pid(), f->fd(), f->object_id(), f->cloexec(), str(f->kind()),
                             str(f->handler_id())});
        }
    }
    return m;
}

// What the verifier cannot know: names, digests, sizes and pids that make sense.
std::string invalid_reason(const fb::Manifest& in) {
    if (in.format_version() != 1)
        return "unsupported format version " + std::to_string(in.format_version()) +
               " (this cr reads version 1)";
    std::set<std::string> seen;
    if (in.sections()) {
        for (const fb::Section* s : *in.sections()) {
            std::string name = str(s->file());
            if (std::string why = image_detail::bad_file_name(name); !why.empty())
                return "section entry: " + why;
            if (!seen.insert(name).second) return "section " + name + " is listed twice";
            if (s->checksum() == fb::Checksum::Crc32c) {
                if (s->schema_id() && s->schema_id()->size() != 0)
                    return "section " + name + ": only raw files are checked with crc32c";
            } else if (s->checksum() != fb::Checksum::Sha256) {
                return "section " + name + ": unknown checksum kind " +
                       std::to_string(unsigned(s->checksum())) + " (a newer cr wrote it)";
            } else if (!s->sha256() || s->sha256()->size() != k_digest_size) {
                return "section " + name + ": sha256 is not 32 bytes";
            }
            if (s->size() > k_max_file_size)
                return "section " + name + ": size " + std::to_string(s->size()) + " is not sane";
        }
    }
    if (in.tasks()) {
        for (const fb::Task* t : *in.tasks()) {
            if (t->pid() <= 0 || t->pid() > k_pid_max_limit)
                return "task with invalid pid " + std::to_string(t->pid());
            for (int32_t tid : ints(t->tids())) {
                if (tid <= 0 || tid > k_pid_max_limit)
                    return "task " + std::to_string(t->pid()) + ": invalid tid " +
                           std::to_string(tid);
            }
        }
    }
    return {};
}

}  // namespace

std::vector<uint8_t> encode_manifest(const Manifest& m) {
    flatbuffers::FlatBufferBuilder b(4096);
    std::vector<flatbuffers::Offset<fb::Task>> tasks;
    for (const ManifestTask& t : m.tasks) {
        tasks.push_back(fb::CreateTask(b, t.pid, t.ppid, t.pgid, t.sid, b.CreateVector(t.tids),
                                       t.flags, b.CreateString(t.comm), t.stub_area, t.exit_status));
    }
    std::vector<flatbuffers::Offset<fb::Handler>> handlers;
    for (const ManifestHandler& h : m.handlers)
        handlers.push_back(fb::CreateHandler(b, b.CreateString(h.id), b.CreateString(h.version)));
    std::vector<flatbuffers::Offset<fb::Section>> sections;
    for (const ManifestSection& s : m.sections) {
        sections.push_back(
            fb::CreateSection(b, b.CreateString(s.handler_id), b.CreateString(s.handler_version),
                              b.CreateString(s.schema_id), b.CreateString(s.file), s.size,
                              s.checksum == Checksum::sha256
                                  ? b.CreateVector(s.sha256.data(), s.sha256.size())
                                  : b.CreateVector(static_cast<const uint8_t*>(nullptr), 0),
                              static_cast<fb::Checksum>(s.checksum), s.crc32c));
    }
    std::vector<flatbuffers::Offset<fb::Fd>> fds;
    for (const ManifestFd& f : m.fds) {
        fds.push_back(fb::CreateFd(b, f.pid, f.fd, f.object_id, f.cloexec, b.CreateString(f.kind),
                                   b.CreateString(f.handler_id)));
    }
    auto root = fb::CreateManifest(b, m.format_version, b.CreateString(m.cr_version),
                                   b.CreateString(m.kernel), b.CreateString(m.arch), m.created_unix,
                                   m.root_pid, b.CreateVector(tasks), b.CreateVector(handlers),
                                   b.CreateVector(sections), b.CreateVector(fds),
                                   b.CreateString(m.parent_dir), m.pre_dump);
    fb::FinishManifestBuffer(b, root);

    std::vector<uint8_t> out(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
    Digest d = Sha256::of(out.data(), out.size());
    out.insert(out.end(), d.begin(), d.end());
    return out;
}

Result<Manifest> decode_manifest(std::span<const uint8_t> bytes, const std::string& where) {
    auto fail = [&](const std::string& why) { return Error(where + ": " + why); };
    if (bytes.size() < k_digest_size + 8)
        return fail("truncated (" + std::to_string(bytes.size()) + " bytes)");
    std::span<const uint8_t> body = bytes.first(bytes.size() - k_digest_size);
    Digest d = Sha256::of(body.data(), body.size());
    if (std::memcmp(d.data(), body.data() + body.size(), k_digest_size) != 0)
        return fail("sha256 mismatch (file corrupted or changed)");
    if (!fb::ManifestBufferHasIdentifier(body.data())) {
        std::string id(reinterpret_cast<const char*>(body.data()) + 4, 4);
        for (char& c : id) {
            if (c < 0x20 || c > 0x7e) c = '?';
        }
        return fail("bad file identifier \"" + id + "\" (expected \"" + fb::ManifestIdentifier() +
                    "\"; not a cr manifest)");
    }
    // The caller's buffer may sit anywhere; the verifier wants the buffer aligned.
    std::vector<uint8_t> aligned(body.begin(), body.end());
    flatbuffers::Verifier verifier(aligned.data(), aligned.size(), 64, 1u << 24);
    if (!fb::VerifyManifestBuffer(verifier))
        return fail("flatbuffers verifier failed (file corrupted)");
    const fb::Manifest* root = fb::GetManifest(aligned.data());
    if (std::string why = invalid_reason(*root); !why.empty()) return fail(why);
    return from_flatbuffer(*root);
}

}  // namespace cr::fw
