// SHA-256 (FIPS 180-4): the SHA-NI block function where the CPU has it, portable code elsewhere.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cr/fw/image.hpp>
#include <cstring>

#include "image/internal.hpp"

namespace cr::fw {
namespace {

constexpr uint32_t k_round[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

constexpr uint32_t k_initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotr(uint32_t x, int n) {
    return (x >> n) | (x << (32 - n));
}

inline uint32_t load_be32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void blocks_portable(uint32_t state[8], const uint8_t* data, size_t count) {
    for (; count > 0; --count, data += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; ++i) w[i] = load_be32(data + 4 * i);
        for (int i = 16; i < 64; ++i) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; ++i) {
            uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                          k_round[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}

// Four rounds: two sha256rnds2 steps on the message words plus round constants in msg.
#define CR_SHA_ROUNDS4(msg, i)                                                                  \
    do {                                                                                        \
        __m128i m_ =                                                                            \
            _mm_add_epi32(msg, _mm_loadu_si128(reinterpret_cast<const __m128i*>(k_round + i))); \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m_);                                                 \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m_, 0x0e));                        \
    } while (0)

__attribute__((target("sha,sse4.1"))) void blocks_shani(uint32_t state[8], const uint8_t* data,
                                                        size_t count) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);

    // sha256rnds2 wants the state as ABEF and CDGH.
    __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));     // A B C D
    __m128i s1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));  // E F G H
    tmp = _mm_shuffle_epi32(tmp, 0xb1);                                         // B A D C
    s1 = _mm_shuffle_epi32(s1, 0x1b);                                           // H G F E
    __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);                                   // ABEF
    s1 = _mm_blend_epi16(s1, tmp, 0xf0);                                        // CDGH

    for (; count > 0; --count, data += 64) {
        const __m128i save0 = s0;
        const __m128i save1 = s1;
        __m128i m[4];
        for (int i = 0; i < 4; ++i) {
            m[i] = _mm_shuffle_epi8(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * i)), byte_swap);
        }
        for (int r = 0; r < 16; ++r) {
            __m128i& cur = m[r & 3];
            CR_SHA_ROUNDS4(cur, 4 * r);
            if (r < 12) {
                // Schedule the words four rounds ahead: W[i..i+3] for the group r + 4.
                __m128i next = _mm_sha256msg1_epu32(cur, m[(r + 1) & 3]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                cur = _mm_sha256msg2_epu32(next, m[(r + 3) & 3]);
            }
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }

    tmp = _mm_shuffle_epi32(s0, 0x1b);    // FEBA
    s1 = _mm_shuffle_epi32(s1, 0xb1);     // DCHG
    s0 = _mm_blend_epi16(tmp, s1, 0xf0);  // DCBA
    s1 = _mm_alignr_epi8(s1, tmp, 8);     // HGFE
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state), s0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), s1);
}

#undef CR_SHA_ROUNDS4

using BlockFn = void (*)(uint32_t*, const uint8_t*, size_t);

bool have_shani() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
}

BlockFn pick_blocks() {
    return have_shani() ? blocks_shani : blocks_portable;
}

// Chosen on first use, so a hash computed from another static initializer works too.
std::atomic<BlockFn> g_blocks{nullptr};

void blocks(uint32_t state[8], const uint8_t* data, size_t count) {
    BlockFn fn = g_blocks.load(std::memory_order_relaxed);
    if (!fn) {
        fn = pick_blocks();
        g_blocks.store(fn, std::memory_order_relaxed);
    }
    fn(state, data, count);
}

}  // namespace

Sha256::Sha256() : m_block{} {
    std::memcpy(m_state, k_initial, sizeof m_state);
}

void Sha256::update(const void* data, size_t size) {
    auto p = static_cast<const uint8_t*>(data);
    m_length += size;
    if (m_fill > 0) {
        size_t take = std::min(size, sizeof m_block - m_fill);
        std::memcpy(m_block + m_fill, p, take);
        m_fill += take;
        p += take;
        size -= take;
        if (m_fill < sizeof m_block) return;
        blocks(m_state, m_block, 1);
        m_fill = 0;
    }
    if (size >= 64) {
        blocks(m_state, p, size / 64);
        p += size / 64 * 64;
        size %= 64;
    }
    if (size > 0) {
        std::memcpy(m_block, p, size);
        m_fill = size;
    }
}

Digest Sha256::finish() {
    const uint64_t bits = m_length * 8;
    uint8_t pad[72] = {0x80};
    const size_t pad_len = (m_fill < 56 ? 56 : 120) - m_fill;
    for (int i = 0; i < 8; ++i) pad[pad_len + i] = uint8_t(bits >> (56 - 8 * i));
    update(pad, pad_len + 8);

    Digest out{};
    for (int i = 0; i < 8; ++i) {
        out[4 * i] = uint8_t(m_state[i] >> 24);
        out[4 * i + 1] = uint8_t(m_state[i] >> 16);
        out[4 * i + 2] = uint8_t(m_state[i] >> 8);
        out[4 * i + 3] = uint8_t(m_state[i]);
    }
    // Leave the object ready for a new message.
    *this = Sha256();
    return out;
}

Digest Sha256::of(const void* data, size_t size) {
    Sha256 h;
    h.update(data, size);
    return h.finish();
}

std::string Sha256::hex(const Digest& d) {
    static constexpr char k_digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(64);
    for (uint8_t b : d) {
        s += k_digits[b >> 4];
        s += k_digits[b & 15];
    }
    return s;
}

namespace image_detail {

bool sha256_select(Sha256Impl impl) {
    switch (impl) {
        case Sha256Impl::automatic:
            g_blocks = pick_blocks();
            return true;
        case Sha256Impl::portable:
            g_blocks = blocks_portable;
            return true;
        case Sha256Impl::shani:
            if (!have_shani()) return false;
            g_blocks = blocks_shani;
            return true;
    }
    return false;
}

}  // namespace image_detail

}  // namespace cr::fw
