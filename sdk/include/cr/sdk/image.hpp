// Reading and writing a handler's FlatBuffers section: every read is identifier-checked and
// verified before a single field is touched.
#pragma once

#include <cr/sdk/handler.hpp>

#include <flatbuffers/flatbuffers.h>

#include <string>

namespace cr::sdk {

using Verify = bool (*)(flatbuffers::Verifier&);

template <typename Root>
Result<const Root*> read_section_as(const Context& ctx, const std::string& name, const char* identifier,
                                    Verify verify) {
    auto bytes = CR_TRY(ctx.read_section(name));
    if (bytes.size() < 8 || !flatbuffers::BufferHasIdentifier(bytes.data(), identifier))
        return Error(strf("%s: not a %s section", name.c_str(), identifier));
    flatbuffers::Verifier verifier(bytes.data(), bytes.size());
    if (!verify(verifier)) return Error(strf("%s: section fails verification", name.c_str()));
    return flatbuffers::GetRoot<Root>(bytes.data());
}

// The same for a section of the image depth steps up the chain of incremental images.
template <typename Root>
Result<const Root*> read_parent_section_as(const Context& ctx, uint32_t depth, const std::string& name,
                                           const char* identifier, Verify verify) {
    auto bytes = CR_TRY(ctx.read_parent_section(depth, name));
    if (bytes.size() < 8 || !flatbuffers::BufferHasIdentifier(bytes.data(), identifier))
        return Error(strf("parent image %u: %s: not a %s section", depth, name.c_str(), identifier));
    flatbuffers::Verifier verifier(bytes.data(), bytes.size());
    if (!verify(verifier)) return Error(strf("parent image %u: %s: section fails verification", depth, name.c_str()));
    return flatbuffers::GetRoot<Root>(bytes.data());
}

inline Result<void> write_section(const Context& ctx, const std::string& name,
                                  const flatbuffers::FlatBufferBuilder& fbb) {
    return ctx.write_section(name, {fbb.GetBufferPointer(), fbb.GetSize()});
}

}  // namespace cr::sdk
