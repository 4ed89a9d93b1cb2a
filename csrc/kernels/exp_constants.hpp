// Constants of the vectorised exps. ExpF32 and ExpF64, the general exps, are
// shared by every ISA so that they all compute the same approximation (only
// rounding of the final products and the summation order differ between
// ISAs). ExpF32Table and ExpF32Table8 are the AVX-512 and AVX2 row sweeps'
// own, cheaper float32 exps (a table lookup in one register, vpermd); the
// portable build's sweeps use ExpF32.
#pragma once

#include <array>
#include <cstdint>

#ifndef CPU_CAPABILITY
#error "CPU_CAPABILITY must be defined by the build (avx512, avx2 or baseline)"
#endif

// Inside the ISA's namespace, as everything the kernel objects compile: the
// constants are the same for every ISA, the (inline) symbols are not shared.
namespace pyce {
namespace CPU_CAPABILITY {

struct ExpF32 {
    // Clamp range: exp(-104) rounds to 0 in float32 (below half the smallest
    // subnormal) and exp(89) overflows to +inf, so clamping changes no result
    // while keeping n = round(x / ln2) small enough for the exponent tricks.
    static constexpr float lo = -104.0f;
    static constexpr float hi = 89.0f;
    static constexpr float log2e = 1.44269504088896341f;
    // ln 2 split in two (Cephes): n * ln2_hi is exact for the n we see.
    static constexpr float ln2_hi = 0.693359375f;
    static constexpr float ln2_lo = -2.12194440e-4f;
    // exp(r) ~= 1 + r (1 + r (c2 + r (c3 + r (c4 + r (c5 + r c6))))) on |r| <= ln2 / 2:
    // a degree-6 minimax fit of the relative error (3.7e-9, about 0.06 ulp),
    // evaluated by Horner's rule with FMAs. Measured (tests/test_exp.py, 2M
    // points on [-87.3, 0], the range the kernels use): at most 0.90 ulp from
    // the exact exp with AVX2/AVX-512, 1.17 ulp for the portable build (no
    // FMA); exactly 0 at -inf, nan in -> nan out.
    static constexpr float c6 = 1.3879688922315836e-3f;
    static constexpr float c5 = 8.368694223463535e-3f;
    static constexpr float c4 = 4.166722670197487e-2f;
    static constexpr float c3 = 1.666652113199234e-1f;
    static constexpr float c2 = 4.999999701976776e-1f;
};

// The sweeps' exp on AVX-512 (exp_bounded in vec_avx512.hpp), table-driven:
// x = k ln2/16 + r with |r| <= ln2/32, and
//   exp(x) = 2^floor(k/16) * 2^((k mod 16)/16) * (1 + r + c2 r^2 + c3 r^3).
// The 16 powers 2^(j/16) sit in one register (vpermd picks them), so the
// polynomial needs degree 3 instead of 6, and the sweep's exp, the cost of
// a 16-bit or L2-resident sweep, takes about a quarter less time.
// Measured on every float32 in [-87.34, 88]: at most 0.98 ulp.
// Results below 2^-126 (x < lo, and -inf) are 0: the sweeps sum them with
// at least exp(0) = 1, or scale them by at most 1 into a probability.
struct ExpF32Table {
    static constexpr float lo = -87.3365f;          // exp(lo) is just above 2^-126 (1.17549e-38)
    static constexpr float hi = 88.0f;              // the caller keeps x <= hi (else the 2^n overflows)
    static constexpr float inv_step = 23.0831203f;  // 16 / ln 2
    // ln2/16 split in two (Cephes' ln 2 split, over 16): k * step_hi is exact.
    static constexpr float step_hi = 0.693359375f / 16;
    static constexpr float step_lo = -2.12194440e-4f / 16;
    // 1.5 * 2^23: s = x * inv_step + magic holds k = round(x * 16/ln2) in its
    // low mantissa bits (its ulp is 1), for |k| < 2^22.
    static constexpr float magic = 12582912.0f;
    // A minimax fit of exp(r) - 1 - r on |r| <= ln2/32 (relative error 2.3e-9).
    static constexpr float c2 = 0.50001955f;
    static constexpr float c3 = 0.16667053f;
    // Bits of 2^(j/16), rounded to float.
    static constexpr uint32_t pow2_bits[16] = {
        0x3f800000, 0x3f85aac3, 0x3f8b95c2, 0x3f91c3d3, 0x3f9837f0, 0x3f9ef532, 0x3fa5fed7, 0x3fad583f,
        0x3fb504f3, 0x3fbd08a4, 0x3fc5672a, 0x3fce248c, 0x3fd744fd, 0x3fe0ccdf, 0x3feac0c7, 0x3ff5257d};
    // What the kernel looks up: bits(2^(j/16)) - (j << 19). Adding s << 19
    // (that is k << 19 modulo 2^32: magic's own bits shift out) then gives
    // bits(2^(j/16)) + (floor(k/16) << 23), the power with 2^floor(k/16)
    // added to its exponent.
    static constexpr std::array<int32_t, 16> table() {
        std::array<int32_t, 16> t{};
        for (int j = 0; j < 16; ++j)
            t[j] = static_cast<int32_t>(pow2_bits[j] - (static_cast<uint32_t>(j) << 19));
        return t;
    }
};

// The sweeps' exp on AVX2 (exp_bounded in vec_avx2.hpp): ExpF32Table's
// scheme with the 8 powers 2^(j/8) (vpermd on AVX2's 8 lanes), so
// |r| <= ln2/16 and Taylor's degree-4 polynomial suffices (truncation error
// 1.3e-9 relative). 14 operations instead of ExpF32's 20 with its two-step
// 2^n. Measured on every float32 in [-87.34, 88]: at most 0.89 ulp.
// Below 2^-126 the result is 0, as ExpF32Table's.
struct ExpF32Table8 {
    static constexpr float lo = ExpF32Table::lo;
    static constexpr float hi = ExpF32Table::hi;
    static constexpr float inv_step = 11.5415602f;      // 8 / ln 2
    static constexpr float step_hi = 0.693359375f / 8;  // k * step_hi is exact
    static constexpr float step_lo = -2.12194440e-4f / 8;
    static constexpr float magic = ExpF32Table::magic;
    static constexpr float c2 = 0.5f;
    static constexpr float c3 = 1.0f / 6;
    static constexpr float c4 = 1.0f / 24;
    // Bits of 2^(j/8), rounded to float.
    static constexpr uint32_t pow2_bits[8] = {0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7,
                                              0x3fb504f3, 0x3fc5672a, 0x3fd744fd, 0x3feac0c7};
    // bits(2^(j/8)) - (j << 20): adding s << 20 gives bits(2^(j/8)) + (floor(k/8) << 23).
    static constexpr std::array<int32_t, 8> table() {
        std::array<int32_t, 8> t{};
        for (int j = 0; j < 8; ++j)
            t[j] = static_cast<int32_t>(pow2_bits[j] - (static_cast<uint32_t>(j) << 20));
        return t;
    }
};

struct ExpF64 {
    // exp(-746) rounds to 0 in float64, exp(710) overflows.
    static constexpr double lo = -746.0;
    static constexpr double hi = 710.0;
    static constexpr double log2e = 1.4426950408889634074;
    // fdlibm's split of ln 2.
    static constexpr double ln2_hi = 6.93147180369123816490e-01;
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    // Taylor coefficients 1/13!, 1/12!, ..., 1/1!, 1/0! (Horner order).
    // Measured on [-708, 0]: at most 0.84 ulp (AVX2/AVX-512), 1.14 ulp (portable).
    static constexpr int taylor_terms = 14;
    static constexpr double taylor[taylor_terms] = {1.0 / 6227020800.0,
                                                    1.0 / 479001600.0,
                                                    1.0 / 39916800.0,
                                                    1.0 / 3628800.0,
                                                    1.0 / 362880.0,
                                                    1.0 / 40320.0,
                                                    1.0 / 5040.0,
                                                    1.0 / 720.0,
                                                    1.0 / 120.0,
                                                    1.0 / 24.0,
                                                    1.0 / 6.0,
                                                    1.0 / 2.0,
                                                    1.0,
                                                    1.0};
};

}  // namespace CPU_CAPABILITY
}  // namespace pyce
