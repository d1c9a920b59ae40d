// Crc32c: RFC 3720 vectors on both implementations, every way of splitting the input, and one
// flipped bit anywhere in a page file sized buffer always changes the value.
#include <gtest/gtest.h>

#include <cr/fw/image.hpp>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "image/internal.hpp"

namespace {

using cr::fw::Crc32c;
using cr::fw::image_detail::crc32c_select;
using cr::fw::image_detail::Crc32cImpl;

class Crc32cTest : public ::testing::TestWithParam<Crc32cImpl> {
protected:
    void SetUp() override {
        if (!crc32c_select(GetParam())) GTEST_SKIP() << "cpu has no sse4.2";
    }
    void TearDown() override { (void)crc32c_select(Crc32cImpl::automatic); }
};

TEST_P(Crc32cTest, Rfc3720Vectors) {
    std::vector<uint8_t> b(32, 0);
    EXPECT_EQ(Crc32c::of(b.data(), b.size()), 0x8A9136AAu);
    std::fill(b.begin(), b.end(), 0xff);
    EXPECT_EQ(Crc32c::of(b.data(), b.size()), 0x62A8AB43u);
    std::iota(b.begin(), b.end(), uint8_t{0});
    EXPECT_EQ(Crc32c::of(b.data(), b.size()), 0x46DD794Eu);
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(31 - i);
    EXPECT_EQ(Crc32c::of(b.data(), b.size()), 0x113FDB5Cu);
    std::string check = "123456789";
    EXPECT_EQ(Crc32c::of(check.data(), check.size()), 0xE3069283u);
    EXPECT_EQ(Crc32c::of(nullptr, 0), 0u);
}

TEST_P(Crc32cTest, SplitsGiveTheSameValue) {
    std::vector<uint8_t> data(1000);
    std::mt19937 rng(7);
    for (auto& x : data) x = uint8_t(rng());
    uint32_t whole = Crc32c::of(data.data(), data.size());
    for (size_t cut1 = 0; cut1 <= data.size(); cut1 += 37) {
        for (size_t cut2 = cut1; cut2 <= data.size(); cut2 += 101) {
            Crc32c c;
            c.update(data.data(), cut1);
            c.update(data.data() + cut1, cut2 - cut1);
            c.update(data.data() + cut2, data.size() - cut2);
            ASSERT_EQ(c.value(), whole) << cut1 << " " << cut2;
        }
    }
}

TEST_P(Crc32cTest, AnyFlippedBitChangesTheValue) {
    std::vector<uint8_t> data(64 * 4096);
    std::mt19937 rng(11);
    for (auto& x : data) x = uint8_t(rng());
    uint32_t whole = Crc32c::of(data.data(), data.size());
    for (int i = 0; i < 2000; ++i) {
        size_t bit = rng() % (data.size() * 8);
        data[bit / 8] ^= uint8_t(1u << (bit % 8));
        ASSERT_NE(Crc32c::of(data.data(), data.size()), whole) << "bit " << bit;
        data[bit / 8] ^= uint8_t(1u << (bit % 8));
    }
}

INSTANTIATE_TEST_SUITE_P(Impl, Crc32cTest,
                         ::testing::Values(Crc32cImpl::portable, Crc32cImpl::sse42),
                         [](const ::testing::TestParamInfo<Crc32cImpl>& info) {
                             return info.param == Crc32cImpl::portable ? "portable" : "sse42";
                         });

TEST(Crc32c, ImplementationsAgree) {
    if (!crc32c_select(Crc32cImpl::sse42)) GTEST_SKIP() << "cpu has no sse4.2";
    std::vector<uint8_t> data(100003);
    std::mt19937 rng(3);
    for (auto& x : data) x = uint8_t(rng());
    for (size_t len : {0ul, 1ul, 7ul, 8ul, 31ul, 32ul, 33ul, 4096ul, 100003ul}) {
        (void)crc32c_select(Crc32cImpl::sse42);
        uint32_t hw = Crc32c::of(data.data() + 1, len - (len == 100003));
        (void)crc32c_select(Crc32cImpl::portable);
        uint32_t sw = Crc32c::of(data.data() + 1, len - (len == 100003));
        EXPECT_EQ(hw, sw) << len;
    }
    (void)crc32c_select(Crc32cImpl::automatic);
}

}  // namespace
