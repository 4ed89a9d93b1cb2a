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
    // exp(r) ~= 1 + r + r^2 * (p5 + p4 r + ... + p0 r^5) on |r| <= ln2 / 2 (Cephes expf).
    static constexpr float p0 = 1.9875691500e-4f;
    static constexpr float p1 = 1.3981999507e-3f;
    static constexpr float p2 = 8.3334519073e-3f;
    static constexpr float p3 = 4.1665795894e-2f;
    static constexpr float p4 = 1.6666665459e-1f;
    static constexpr float p5 = 5.0000001201e-1f;
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
    static constexpr int taylor_terms = 14;
    static constexpr double taylor[taylor_terms] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
        1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        1.0 / 2.0,
        1.0,                1.0};
};

}  // namespace pyce
