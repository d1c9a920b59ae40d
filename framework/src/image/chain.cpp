// Chains of incremental images: each manifest names its parent (parent_dir), relative to its own
// directory, so a set of images moved together stays readable.
#include <cr/fw/image.hpp>

#include "image/internal.hpp"

#include <filesystem>
#include <set>

namespace cr::fw {

namespace {

constexpr size_t k_max_chain = 64;

std::string resolve(const std::string& dir, const std::string& parent) {
    if (!parent.empty() && parent.front() == '/') return parent;
    return (std::filesystem::path(dir) / parent).lexically_normal().string();
}

std::string identity(const std::string& dir) {
    std::error_code ec;
    auto c = std::filesystem::canonical(dir, ec);
    return ec ? dir : c.string();
}

}  // namespace

Result<std::vector<std::unique_ptr<ImageReader>>> open_parents(const ImageReader& image) {
    std::vector<std::unique_ptr<ImageReader>> chain;
    std::set<std::string> seen{identity(image.dir())};
    const ImageReader* child = &image;
    while (!child->manifest().parent_dir.empty()) {
        const std::string& named = child->manifest().parent_dir;
        std::string dir = resolve(child->dir(), named);
        std::string whose = image_detail::where(child->dir(), "") + ": parent image " + dir;
        if (chain.size() == k_max_chain)
            return Error(whose + ": more than " + std::to_string(k_max_chain) + " images in the chain");
        if (!seen.insert(identity(dir)).second) return Error(whose + ": the chain of images loops");
        auto parent = ImageReader::open(dir);
        if (!parent)
            return Error(whose + " (parent_dir \"" + named + "\"): the chain of images is broken: " +
                         parent.error().message());
        if (parent->manifest().root_pid != image.manifest().root_pid)
            return Error(whose + " is of another process tree (root pid " +
                         std::to_string(parent->manifest().root_pid) + ", this image " +
                         std::to_string(image.manifest().root_pid) + ")");
        chain.push_back(std::make_unique<ImageReader>(std::move(*parent)));
        child = chain.back().get();
    }
    return chain;
}

std::string parent_dir_for(const std::string& dir, const std::string& parent) {
    std::error_code ec;
    auto from = std::filesystem::canonical(dir, ec);
    if (ec) return identity(parent);
    auto to = std::filesystem::canonical(parent, ec);
    if (ec) return parent;
    auto rel = to.lexically_relative(from);
    return rel.empty() ? to.string() : rel.string();
}

RawCheck::RawCheck(ImageReader& image, const std::vector<std::unique_ptr<ImageReader>>& parents) {
    std::vector<const ImageReader*> all{&image};
    image.defer_raw_checks();
    for (const auto& p : parents) {
        p->defer_raw_checks();
        all.push_back(p.get());
    }
    m_thread = std::thread([this, all] {
        for (const ImageReader* r : all) {
            auto ok = r->verify_raw();
            if (!ok) m_error += (m_error.empty() ? "" : "; ") + ok.error().message();
        }
    });
}

RawCheck::~RawCheck() {
    if (!m_joined) m_thread.join();
}

Result<void> RawCheck::wait() {
    if (!m_joined) {
        m_thread.join();
        m_joined = true;
    }
    if (!m_error.empty()) return Error(m_error);
    return {};
}

}  // namespace cr::fw
