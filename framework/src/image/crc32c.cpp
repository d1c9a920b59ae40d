// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32 instruction where the
// CPU has it, a slicing-by-8 table elsewhere. Raw page files are checked with it: they are most
// of an image's bytes, and sha256 of every page costs as much CPU as writing it.
#include <immintrin.h>

#include <array>
#include <atomic>
#include <cr/fw/image.hpp>
#include <cstring>

#include "image/internal.hpp"

namespace cr::fw {
namespace {

constexpr uint32_t k_poly = 0x82F63B78u;

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
    Tables t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? k_poly : 0);
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
        for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
    return t;
}

constexpr Tables k_tables = make_tables();

uint32_t update_portable(uint32_t crc, const uint8_t* p, size_t n) {
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        w ^= crc;
        crc = k_tables[7][w & 0xff] ^ k_tables[6][(w >> 8) & 0xff] ^ k_tables[5][(w >> 16) & 0xff] ^
              k_tables[4][(w >> 24) & 0xff] ^ k_tables[3][(w >> 32) & 0xff] ^
              k_tables[2][(w >> 40) & 0xff] ^ k_tables[1][(w >> 48) & 0xff] ^ k_tables[0][w >> 56];
    }
    for (; n > 0; --n, ++p) crc = (crc >> 8) ^ k_tables[0][(crc ^ *p) & 0xff];
    return crc;
}

__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t crc, const uint8_t* p, size_t n) {
    uint64_t c = crc;
    for (; n >= 32; n -= 32, p += 32) {
        uint64_t w[4];
        std::memcpy(w, p, 32);
        c = _mm_crc32_u64(c, w[0]);
        c = _mm_crc32_u64(c, w[1]);
        c = _mm_crc32_u64(c, w[2]);
        c = _mm_crc32_u64(c, w[3]);
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    auto c32 = static_cast<uint32_t>(c);
    for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
    return c32;
}

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

UpdateFn automatic() {
    return __builtin_cpu_supports("sse4.2") ? update_sse42 : update_portable;
}

std::atomic<UpdateFn> g_update{automatic()};

}  // namespace

void Crc32c::update(const void* data, size_t size) {
    m_state =
        g_update.load(std::memory_order_relaxed)(m_state, static_cast<const uint8_t*>(data), size);
}

uint32_t Crc32c::of(const void* data, size_t size) {
    Crc32c c;
    c.update(data, size);
    return c.value();
}

namespace image_detail {

bool crc32c_select(Crc32cImpl impl) {
    switch (impl) {
        case Crc32cImpl::automatic:
            g_update = automatic();
            return true;
        case Crc32cImpl::portable:
            g_update = update_portable;
            return true;
        case Crc32cImpl::sse42:
            if (!__builtin_cpu_supports("sse4.2")) return false;
            g_update = update_sse42;
            return true;
    }
    return false;
}

}  // namespace image_detail
}  // namespace cr::fw
