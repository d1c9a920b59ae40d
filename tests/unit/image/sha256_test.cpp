// Sha256: FIPS 180 vectors on both block functions, and every way of splitting the input.
#include <gtest/gtest.h>

#include <cr/fw/image.hpp>
#include <random>
#include <string>
#include <vector>

#include "image/internal.hpp"

namespace {

using cr::fw::Sha256;
using cr::fw::image_detail::sha256_select;
using cr::fw::image_detail::Sha256Impl;

std::string hex_of(const std::string& s) {
    return Sha256::hex(Sha256::of(s.data(), s.size()));
}

class Sha256Test : public ::testing::TestWithParam<Sha256Impl> {
protected:
    void SetUp() override {
        if (!sha256_select(GetParam())) GTEST_SKIP() << "cpu has no sha extensions";
    }
    void TearDown() override { (void)sha256_select(Sha256Impl::automatic); }
};

TEST_P(Sha256Test, FipsVectors) {
    EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(
        hex_of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnop"
               "qklmnopqrlmnopqrsmnopqrstnopqrstu"),
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    EXPECT_EQ(hex_of(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_P(Sha256Test, MillionAInSmallUpdates) {
    Sha256 h;
    const std::string chunk(1000, 'a');
    size_t left = 1000000;
    for (size_t i = 0; left > 0; ++i) {
        size_t n = std::min<size_t>(left, 1 + (i * 37) % 999);
        h.update(chunk.data(), n);
        left -= n;
    }
    EXPECT_EQ(Sha256::hex(h.finish()),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_P(Sha256Test, EverySplitGivesTheSameDigest) {
    std::vector<uint8_t> msg(300);
    std::mt19937 rng(42);
    for (auto& b : msg) b = uint8_t(rng());
    for (size_t len : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300}) {
        auto whole = Sha256::of(msg.data(), len);
        for (size_t i = 0; i <= len; ++i) {
            Sha256 h;
            h.update(msg.data(), i);
            h.update(msg.data() + i, len - i);
            ASSERT_EQ(h.finish(), whole) << "len " << len << " split at " << i;
        }
        // Three pieces, at many pairs of boundaries, for a length that spans several blocks.
        if (len != 300) continue;
        for (size_t i = 0; i <= len; i += 3) {
            for (size_t j = i; j <= len; ++j) {
                Sha256 h;
                h.update(msg.data(), i);
                h.update(msg.data() + i, j - i);
                h.update(msg.data() + j, len - j);
                ASSERT_EQ(h.finish(), whole) << "len " << len << " split at " << i << ", " << j;
            }
        }
    }
}

TEST_P(Sha256Test, ByteAtATime) {
    std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    Sha256 h;
    for (char c : msg) h.update(&c, 1);
    EXPECT_EQ(Sha256::hex(h.finish()),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_P(Sha256Test, FinishStartsOver) {
    Sha256 h;
    h.update("xyz", 3);
    (void)h.finish();
    h.update("abc", 3);
    EXPECT_EQ(Sha256::hex(h.finish()),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

INSTANTIATE_TEST_SUITE_P(Sha256, Sha256Test,
                         ::testing::Values(Sha256Impl::portable, Sha256Impl::shani),
                         [](const auto& info) {
                             return info.param == Sha256Impl::portable ? "portable" : "shani";
                         });

// Both block functions agree on random data of random lengths, fed in random pieces.
TEST(Sha256Cross, PortableAndShaniAgree) {
    if (!sha256_select(Sha256Impl::shani)) GTEST_SKIP() << "cpu has no sha extensions";
    std::mt19937 rng(7);
    std::vector<uint8_t> data(200000);
    for (auto& b : data) b = uint8_t(rng());
    for (int round = 0; round < 20; ++round) {
        size_t len = rng() % data.size();
        (void)sha256_select(Sha256Impl::shani);
        Sha256 fast;
        for (size_t off = 0; off < len;) {
            size_t n = std::min<size_t>(len - off, rng() % 5000);
            fast.update(data.data() + off, n);
            off += n;
        }
        auto a = fast.finish();
        (void)sha256_select(Sha256Impl::portable);
        auto b = Sha256::of(data.data(), len);
        ASSERT_EQ(a, b) << "len " << len;
    }
    (void)sha256_select(Sha256Impl::automatic);
}

TEST(Sha256Hex, LowercaseDigits) {
    cr::fw::Digest d{};
    d[0] = 0xab;
    d[31] = 0x0f;
    std::string h = Sha256::hex(d);
    EXPECT_EQ(h.size(), 64u);
    EXPECT_EQ(h.substr(0, 2), "ab");
    EXPECT_EQ(h.substr(62), "0f");
}

}  // namespace
