// AVX2 + FMA + F16C vector types for the kernels (compiled only with -mavx2 -mfma -mf16c).
//
// Same interface as vec_avx512.hpp: VecF32 holds 8 floats, VecF64 4 doubles.
// AVX2 has no masked loads with a fill value nor scalef, so partial loads
// blend in the fill value and exp builds 2^n from exponent bits.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>

#include "kernels/exp_constants.hpp"
#include "kernels/half_types.hpp"

namespace pyce {
namespace CPU_CAPABILITY {

// Lane i of the mask is all-ones when i < n.
inline __m256i avx2_lane_mask32(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i avx2_lane_mask64(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

struct VecF32 {
    using scalar = float;
    static constexpr int width = 8;
    __m256 v;

    static VecF32 broadcast(float a) { return {_mm256_set1_ps(a)}; }
    static VecF32 load(const float* p) { return {_mm256_loadu_ps(p)}; }
    static VecF32 load_partial(const float* p, int64_t n, float fill) {
        const __m256i m = avx2_lane_mask32(n);
        return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
    }
    void store(float* p) const { _mm256_storeu_ps(p, v); }
    void store_partial(float* p, int64_t n) const { _mm256_maskstore_ps(p, avx2_lane_mask32(n), v); }
};

inline VecF32 operator+(VecF32 a, VecF32 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecF32 operator-(VecF32 a, VecF32 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecF32 operator*(VecF32 a, VecF32 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF32 fmadd(VecF32 a, VecF32 b, VecF32 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF32 operator/(VecF32 a, VecF32 b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VecF32 max(VecF32 a, VecF32 b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VecF32 min(VecF32 a, VecF32 b) { return {_mm256_min_ps(a.v, b.v)}; }
// 1.0 where a < b, else 0.0 (a nan compares false).
inline VecF32 less(VecF32 a, VecF32 b) {
    return {_mm256_and_ps(_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ), _mm256_set1_ps(1.0f))};
}
inline float reduce_add(VecF32 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline bool any_greater(VecF32 a, VecF32 b) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)) != 0;
}
// v where a > b, else +0 (a bitwise select: an inf or nan in a lane not kept does not leak through).
inline VecF32 keep_where_greater(VecF32 a, VecF32 b, VecF32 v) {
    return {_mm256_and_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ), v.v)};
}
// Lane k of a vector, and a copy with lane k replaced, without going through
// memory (a wide load of a just-written scalar stalls store forwarding).
inline float lane(VecF32 a, int k) {
    return _mm256_cvtss_f32(_mm256_permutevar8x32_ps(a.v, _mm256_set1_epi32(k)));
}
inline VecF32 with_lane(VecF32 a, int k, float x) {
    const __m256i is_k = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(k));
    return {_mm256_blendv_ps(a.v, _mm256_set1_ps(x), _mm256_castsi256_ps(is_k))};
}
inline float reduce_max(VecF32 a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// exp(x): the reduction of vec_avx512.hpp; 2^n is applied as 2^(n/2) * 2^(n - n/2)
// so that both factors are normal floats and results in the subnormal range
// are rounded once, correctly, by the last multiplication.
inline VecF32 exp_clamped(__m256 xc);
inline VecF32 exp(VecF32 x) {
    using C = ExpF32;
    return exp_clamped(_mm256_min_ps(_mm256_set1_ps(C::hi), _mm256_max_ps(_mm256_set1_ps(C::lo), x.v)));
}
// The sweeps' exp (see ExpF32Table8): for x <= 88 only, which the sweeps
// guarantee or check afterwards (block_math.hpp); 0 below 2^-126 (-inf
// included); nan in -> nan out.
alignas(32) inline constexpr std::array<int32_t, 8> kExpTable8 = ExpF32Table8::table();
inline VecF32 exp_bounded(VecF32 x) {
    using C = ExpF32Table8;
    // Lanes to keep: x >= lo, or nan (unordered), which then runs through as nan.
    const __m256 keep = _mm256_cmp_ps(x.v, _mm256_set1_ps(C::lo), _CMP_NLT_UQ);
    const __m256 s = _mm256_fmadd_ps(x.v, _mm256_set1_ps(C::inv_step), _mm256_set1_ps(C::magic));
    const __m256 k = _mm256_sub_ps(s, _mm256_set1_ps(C::magic));
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(C::step_hi), x.v);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(C::step_lo), r);
    // 2^(k/8): vpermd reads the table index from s's low 3 bits (k mod 8).
    const __m256i bits = _mm256_castps_si256(s);
    const __m256i power = _mm256_permutevar8x32_epi32(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpTable8.data())), bits);
    const __m256 p2 = _mm256_castsi256_ps(_mm256_add_epi32(power, _mm256_slli_epi32(bits, 20)));
    // exp(r) - 1 = r + r^2 (c2 + r (c3 + r c4)); the result is p2 + p2 (exp(r) - 1).
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(C::c4), r, _mm256_set1_ps(C::c3));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(C::c2));
    const __m256 em1 = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
    return {_mm256_and_ps(keep, _mm256_fmadd_ps(p2, em1, p2))};
}
inline VecF32 exp_clamped(__m256 xc) {
    using C = ExpF32;
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(C::log2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C::ln2_hi), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C::ln2_lo), r);
    __m256 p = _mm256_set1_ps(C::c6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C::c5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C::c4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C::c3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C::c2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return {_mm256_mul_ps(_mm256_mul_ps(p, s1), s2)};
}

// Lanes where a == b take `yes`, the others `no` (for class-index lanes
// compared as floats: the strided-class kernels, kernels/strided_classes.cpp).
inline VecF32 select_equal(VecF32 a, VecF32 b, VecF32 yes, VecF32 no) {
    return {_mm256_blendv_ps(no.v, yes.v, _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ))};
}
// v[i] lane j <-> v[j] lane i: an 8 x 8 block of floats transposed in
// registers, for the short rows that kernels/tile_transpose.hpp turns into lanes.
inline void transpose_square(VecF32 (&v)[8]) {
    __m256 t[8], r[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i].v, v[i + 1].v);
        t[i + 1] = _mm256_unpackhi_ps(v[i].v, v[i + 1].v);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int k = 0; k < 4; ++k) {
        v[k].v = _mm256_permute2f128_ps(r[k], r[k + 4], 0x20);
        v[k + 4].v = _mm256_permute2f128_ps(r[k], r[k + 4], 0x31);
    }
}

// ones + 1 where e == 1, rest + e where not (nan included): a sum split into
// its exp(0) terms and the others (kernels/strided_lanes.hpp).
inline void add_split(VecF32 e, VecF32& ones, VecF32& rest) {
    const __m256 one = _mm256_set1_ps(1.0f), is_one = _mm256_cmp_ps(e.v, one, _CMP_EQ_OQ);
    ones.v = _mm256_add_ps(ones.v, _mm256_and_ps(is_one, one));
    rest.v = _mm256_add_ps(rest.v, _mm256_andnot_ps(is_one, e.v));
}
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), for a positive normal x
// (what log_positive in strided_classes.cpp takes apart).
inline void split_exponent(VecF32 x, VecF32& m, VecF32& e) {
    const __m256i bits = _mm256_castps_si256(x.v);
    __m256 ev = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    __m256 mv = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                    _mm256_set1_epi32(0x3f800000)));
    const __m256 big = _mm256_cmp_ps(mv, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    mv = _mm256_blendv_ps(mv, _mm256_mul_ps(mv, _mm256_set1_ps(0.5f)), big);
    ev = _mm256_add_ps(ev, _mm256_and_ps(big, _mm256_set1_ps(1.0f)));
    m = {mv};
    e = {ev};
}

struct VecF64 {
    using scalar = double;
    static constexpr int width = 4;
    __m256d v;

    static VecF64 broadcast(double a) { return {_mm256_set1_pd(a)}; }
    static VecF64 load(const double* p) { return {_mm256_loadu_pd(p)}; }
    static VecF64 load_partial(const double* p, int64_t n, double fill) {
        const __m256i m = avx2_lane_mask64(n);
        return {_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))};
    }
    void store(double* p) const { _mm256_storeu_pd(p, v); }
    void store_partial(double* p, int64_t n) const { _mm256_maskstore_pd(p, avx2_lane_mask64(n), v); }
};

inline VecF64 operator+(VecF64 a, VecF64 b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VecF64 operator-(VecF64 a, VecF64 b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VecF64 operator*(VecF64 a, VecF64 b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VecF64 fmadd(VecF64 a, VecF64 b, VecF64 c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline VecF64 operator/(VecF64 a, VecF64 b) { return {_mm256_div_pd(a.v, b.v)}; }
inline VecF64 max(VecF64 a, VecF64 b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VecF64 min(VecF64 a, VecF64 b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VecF64 less(VecF64 a, VecF64 b) {
    return {_mm256_and_pd(_mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ), _mm256_set1_pd(1.0))};
}
inline double reduce_add(VecF64 a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}
inline bool any_greater(VecF64 a, VecF64 b) {
    return _mm256_movemask_pd(_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ)) != 0;
}
inline VecF64 keep_where_greater(VecF64 a, VecF64 b, VecF64 v) {
    return {_mm256_and_pd(_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ), v.v)};
}
inline double lane(VecF64 a, int k) {
    const __m256i halves = _mm256_setr_epi32(2 * k, 2 * k + 1, 0, 0, 0, 0, 0, 0);
    return _mm256_cvtsd_f64(_mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(a.v), halves)));
}
inline VecF64 with_lane(VecF64 a, int k, double x) {
    const __m256i is_k = _mm256_cmpeq_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x(k));
    return {_mm256_blendv_pd(a.v, _mm256_set1_pd(x), _mm256_castsi256_pd(is_k))};
}
inline double reduce_max(VecF64 a) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

// 2^k for integer-valued doubles k in the normal exponent range, via the
// "add 1.5 * 2^52" trick (AVX2 has no double -> int64 conversion).
inline __m256d avx2_exp2_int(__m256d k) {
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);  // 1.5 * 2^52
    const __m256i bits =
        _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)), _mm256_castpd_si256(magic));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)), 52));
}

inline VecF64 select_equal(VecF64 a, VecF64 b, VecF64 yes, VecF64 no) {
    return {_mm256_blendv_pd(no.v, yes.v, _mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ))};
}
inline void add_split(VecF64 e, VecF64& ones, VecF64& rest) {
    const __m256d one = _mm256_set1_pd(1.0), is_one = _mm256_cmp_pd(e.v, one, _CMP_EQ_OQ);
    ones.v = _mm256_add_pd(ones.v, _mm256_and_pd(is_one, one));
    rest.v = _mm256_add_pd(rest.v, _mm256_andnot_pd(is_one, e.v));
}
inline VecF64 exp(VecF64 x);
inline VecF64 exp_bounded(VecF64 x) { return exp(x); }
inline VecF64 exp(VecF64 x) {
    using C = ExpF64;
    const __m256d xc = _mm256_min_pd(_mm256_set1_pd(C::hi), _mm256_max_pd(_mm256_set1_pd(C::lo), x.v));
    const __m256d n = _mm256_round_pd(_mm256_mul_pd(xc, _mm256_set1_pd(C::log2e)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(C::ln2_hi), xc);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(C::ln2_lo), r);
    __m256d p = _mm256_set1_pd(C::taylor[0]);
    for (int k = 1; k < C::taylor_terms; ++k) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(C::taylor[k]));
    const __m256d n1 = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));
    const __m256d n2 = _mm256_sub_pd(n, n1);
    return {_mm256_mul_pd(_mm256_mul_pd(p, avx2_exp2_int(n1)), avx2_exp2_int(n2))};
}

// 16-bit storage: 8 values load into one float32 vector.
inline VecF32 vload(const bf16* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}
inline VecF32 vload(const f16* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
// The 16 values at p as two vectors, even-indexed then odd-indexed elements
// (see vload_pair_any_order in vec.hpp and vec_avx512.hpp).
inline void vload_pair_any_order(const bf16* p, VecF32& a, VecF32& b) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    a = {_mm256_castsi256_ps(_mm256_slli_epi32(v, 16))};
    b = {_mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))))};
}
// float32 -> bfloat16: each lane rounded to nearest even at bit 16, so that
// its top half is the bfloat16 value; nan stays (quiet) nan. kNoNan: the
// caller knows no lane is nan, and that fix-up is skipped.
template <bool kNoNan = false>
inline __m256i bf16_rounded(VecF32 v) {
    const __m256i b = _mm256_castps_si256(v.v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    if constexpr (kNoNan) return r;
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v.v, v.v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_or_si256(b, _mm256_set1_epi32(0x400000)), nan);
}
// float32 -> bfloat16 bits, 8 values in order.
inline __m128i bf16_bits(VecF32 v) {
    const __m256i r = _mm256_srli_epi32(bf16_rounded(v), 16);
    // Values are < 2^16: the unsigned-saturating pack keeps them exactly.
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
inline __m128i f16_bits(VecF32 v) { return _mm256_cvtps_ph(v.v, _MM_FROUND_TO_NEAREST_INT); }
inline void vstore(bf16* p, VecF32 v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_bits(v)); }
inline void vstore(f16* p, VecF32 v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), f16_bits(v)); }

// Non-temporal stores of 8 values (p aligned to their size): the line is
// written to memory without first being read in, for outputs too large to
// stay in cache. stream_fence() orders them before the results are used.
inline void vstream(float* p, VecF32 v) { _mm256_stream_ps(p, v.v); }
inline void vstream(double* p, VecF64 v) { _mm256_stream_pd(p, v.v); }
inline void vstream(bf16* p, VecF32 v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), bf16_bits(v)); }
inline void vstream(f16* p, VecF32 v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), f16_bits(v)); }
inline void stream_fence() { _mm_sfence(); }

// Pairs of vectors in the order vload_pair_any_order gives bfloat16 (even-
// and odd-indexed elements) are stored back in order (see kInterleavedPairs
// in vec.hpp): a bfloat16 pair with a shift, a mask and an or, a float32
// pair with four shuffles.
constexpr bool kInterleavedPairStores = true;
// 16 bfloat16 values in order: each 32-bit lane takes the even element's
// bits in its low half and the odd element's in its high half.
template <bool kNoNan>
inline __m256i bf16_interleaved_bits(VecF32 even, VecF32 odd) {
    const __m256i low = _mm256_srli_epi32(bf16_rounded<kNoNan>(even), 16);
    const __m256i high =
        _mm256_and_si256(bf16_rounded<kNoNan>(odd), _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
    return _mm256_or_si256(high, low);
}
template <bool kNoNan>
inline void vstore_interleaved_pair(bf16* p, VecF32 even, VecF32 odd) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_interleaved_bits<kNoNan>(even, odd));
}
template <bool kNoNan>
inline void vstore_interleaved_pair(float* p, VecF32 even, VecF32 odd) {
    const __m256 low = _mm256_unpacklo_ps(even.v, odd.v);   // e0 o0 e1 o1 | e4 o4 e5 o5
    const __m256 high = _mm256_unpackhi_ps(even.v, odd.v);  // e2 o2 e3 o3 | e6 o6 e7 o7
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(low, high, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(low, high, 0x31));
}
// The same 16 bfloat16 values with non-temporal stores (p 16-byte aligned).
template <bool kNoNan>
inline void vstream_interleaved_pair(bf16* p, VecF32 even, VecF32 odd) {
    const __m256i bits = bf16_interleaved_bits<kNoNan>(even, odd);
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(bits));
    _mm_stream_si128(reinterpret_cast<__m128i*>(p + 8), _mm256_extracti128_si256(bits, 1));
}
// Streamed 16-bit gradients go vector by vector from the first line boundary
// (see stream_lines in vec_avx512.hpp).
constexpr bool kStreamLines = false;
// How far ahead a 16-bit sweep asks for its logits (see vec_avx512.hpp): the
// slower AVX2 sweep loses from AVX-512's 16 KiB, so it keeps float32's 4 KiB.
constexpr int64_t kPrefetchBytes16 = 4096;
template <class H, class Pack>
void stream_lines(H* p, int64_t count, const Pack& pack) = delete;
template <class H>
void pair_bits(VecF32 a, VecF32 b) = delete;

}  // namespace CPU_CAPABILITY
}  // namespace pyce
