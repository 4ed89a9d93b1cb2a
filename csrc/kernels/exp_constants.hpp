// Constants of the vectorised exp, shared by every ISA so that they all
// compute the same approximation (only rounding of the final products and
// the summation order differ between ISAs).
#pragma once

namespace pyce {

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
    static constexpr double taylor[taylor_terms] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
        1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        1.0 / 2.0,
        1.0,                1.0};
};

}  // namespace pyce
