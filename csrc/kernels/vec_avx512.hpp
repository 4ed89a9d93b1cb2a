// AVX-512 vector types for the kernels (compiled only with -mavx512f -mavx512dq ...).
//
// VecF32 holds 16 floats, VecF64 8 doubles. Each type offers the handful of
// operations the kernels need: load/store (whole and partial, the partial
// ones masked so a row's tail never reads or writes past its end), +, -, *,
// fused multiply-add, max, horizontal reductions and exp.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/exp_constants.hpp"
#include "kernels/half_types.hpp"

namespace pyce {
namespace CPU_CAPABILITY {

struct VecF32 {
    using scalar = float;
    static constexpr int width = 16;
    __m512 v;

    static VecF32 broadcast(float a) { return {_mm512_set1_ps(a)}; }
    static VecF32 load(const float* p) { return {_mm512_loadu_ps(p)}; }
    // Lanes >= n take `fill` (e.g. -inf so the max and exp ignore them).
    static VecF32 load_partial(const float* p, int64_t n, float fill) {
        const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
        return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p)};
    }
    void store(float* p) const { _mm512_storeu_ps(p, v); }
    void store_partial(float* p, int64_t n) const {
        _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
    }
};

inline VecF32 operator+(VecF32 a, VecF32 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecF32 operator-(VecF32 a, VecF32 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecF32 operator*(VecF32 a, VecF32 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF32 fmadd(VecF32 a, VecF32 b, VecF32 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF32 operator/(VecF32 a, VecF32 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VecF32 max(VecF32 a, VecF32 b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VecF32 min(VecF32 a, VecF32 b) { return {_mm512_min_ps(a.v, b.v)}; }
// 1.0 where a < b, else 0.0 (a nan compares false).
inline VecF32 less(VecF32 a, VecF32 b) {
    return {_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), _mm512_set1_ps(1.0f))};
}
inline float reduce_add(VecF32 a) { return _mm512_reduce_add_ps(a.v); }
inline float reduce_max(VecF32 a) { return _mm512_reduce_max_ps(a.v); }
inline bool any_greater(VecF32 a, VecF32 b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ) != 0; }
// v where a > b, else +0 (a bitwise select: an inf or nan in a lane not kept does not leak through).
inline VecF32 keep_where_greater(VecF32 a, VecF32 b, VecF32 v) {
    return {_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ), v.v)};
}
// Lane k of a vector, and a copy with lane k replaced, without going through
// memory (a wide load of a just-written scalar stalls store forwarding).
inline float lane(VecF32 a, int k) {
    return _mm512_cvtss_f32(_mm512_permutexvar_ps(_mm512_set1_epi32(k), a.v));
}
inline VecF32 with_lane(VecF32 a, int k, float x) {
    return {_mm512_mask_mov_ps(a.v, static_cast<__mmask16>(1u << k), _mm512_set1_ps(x))};
}

// exp(x) for float: x = n*ln2 + r with |r| <= ln2/2, exp(r) by a degree-6
// polynomial (exp_constants.hpp), then scalef multiplies by 2^n exactly,
// including into the subnormal range. Clamping first maps -inf to a value
// whose exp rounds to exactly 0 and keeps the reduction finite; the clamp's
// operand order (x second) lets nan through, so nan propagates.
inline VecF32 exp_clamped(__m512 xc) {
    using C = ExpF32;
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(C::log2e)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C::ln2_hi), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C::ln2_lo), r);
    __m512 p = _mm512_set1_ps(C::c6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C::c5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C::c4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C::c3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C::c2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return {_mm512_scalef_ps(p, n)};
}
// max/min return their second operand when either is nan: x goes second.
inline VecF32 exp(VecF32 x) {
    using C = ExpF32;
    return exp_clamped(_mm512_min_ps(_mm512_set1_ps(C::hi), _mm512_max_ps(_mm512_set1_ps(C::lo), x.v)));
}
// The sweeps' exp (see ExpF32Table): for x <= 88 only, which the sweeps
// guarantee or check afterwards (block_math.hpp); 0 below 2^-126 (-inf
// included); nan in -> nan out.
alignas(64) inline constexpr std::array<int32_t, 16> kExpTable = ExpF32Table::table();
inline VecF32 exp_bounded(VecF32 x) {
    using C = ExpF32Table;
    // Lanes to keep: x >= lo, or nan (unordered), which then runs through as nan.
    const __mmask16 keep = _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(C::lo), _CMP_NLT_UQ);
    const __m512 s = _mm512_fmadd_ps(x.v, _mm512_set1_ps(C::inv_step), _mm512_set1_ps(C::magic));
    const __m512 k = _mm512_sub_ps(s, _mm512_set1_ps(C::magic));
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(C::step_hi), x.v);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(C::step_lo), r);
    // 2^(k/16): vpermd reads the table index from s's low 4 bits (k mod 16).
    const __m512i bits = _mm512_castps_si512(s);
    const __m512i power = _mm512_permutexvar_epi32(bits, _mm512_load_si512(kExpTable.data()));
    const __m512 p2 = _mm512_castsi512_ps(_mm512_add_epi32(power, _mm512_slli_epi32(bits, 19)));
    // exp(r) - 1 = r + c2 r^2 + c3 r^3; the result is p2 + p2 (exp(r) - 1).
    const __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(C::c3), r, _mm512_set1_ps(C::c2));
    const __m512 em1 = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r);
    return {_mm512_maskz_fmadd_ps(keep, p2, em1, p2)};
}

// v[i] lane j <-> v[j] lane i: a 16 x 16 block of floats transposed in
// registers (pairs of lanes, then pairs of pairs, then 128-bit quarters
// twice), for the short rows that kernels/tile_transpose.hpp turns into lanes.
inline void transpose_square(VecF32 (&v)[16]) {
    __m512 t[16], r[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i].v, v[i + 1].v);
        t[i + 1] = _mm512_unpackhi_ps(v[i].v, v[i + 1].v);
    }
    for (int i = 0; i < 16; i += 4) {
        for (int h = 0; h < 2; ++h) {
            const __m512d a = _mm512_castps_pd(t[i + h]), b = _mm512_castps_pd(t[i + h + 2]);
            r[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    }
    for (int i = 0; i < 16; i += 8)
        for (int k = 0; k < 4; ++k) {
            t[i + k] = _mm512_shuffle_f32x4(r[i + k], r[i + k + 4], 0x88);
            t[i + k + 4] = _mm512_shuffle_f32x4(r[i + k], r[i + k + 4], 0xdd);
        }
    for (int k = 0; k < 8; ++k) {
        v[k].v = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
        v[k + 8].v = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
    }
}

// Lanes where a == b take `yes`, the others `no` (for class-index lanes
// compared as floats: the strided-class kernels, kernels/strided_classes.cpp).
inline VecF32 select_equal(VecF32 a, VecF32 b, VecF32 yes, VecF32 no) {
    return {_mm512_mask_mov_ps(no.v, _mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ), yes.v)};
}
// ones + 1 where e == 1, rest + e where not (nan included): a sum split into
// its exp(0) terms and the others (kernels/strided_lanes.hpp). Masked adds.
inline void add_split(VecF32 e, VecF32& ones, VecF32& rest) {
    const __mmask16 is_one = _mm512_cmp_ps_mask(e.v, _mm512_set1_ps(1.0f), _CMP_EQ_OQ);
    ones.v = _mm512_mask_add_ps(ones.v, is_one, ones.v, _mm512_set1_ps(1.0f));
    rest.v = _mm512_mask_add_ps(rest.v, _knot_mask16(is_one), rest.v, e.v);
}
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), for a positive normal x
// (what log_positive in strided_classes.cpp takes apart).
inline void split_exponent(VecF32 x, VecF32& m, VecF32& e) {
    const __m512 mant = _mm512_getmant_ps(x.v, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);  // [0.75, 1.5)
    // getexp(mant) is -1 for [0.75, 1), 0 for [1, 1.5): the exponent of x / mant.
    e = {_mm512_sub_ps(_mm512_getexp_ps(x.v), _mm512_getexp_ps(mant))};
    m = {mant};
}

struct VecF64 {
    using scalar = double;
    static constexpr int width = 8;
    __m512d v;

    static VecF64 broadcast(double a) { return {_mm512_set1_pd(a)}; }
    static VecF64 load(const double* p) { return {_mm512_loadu_pd(p)}; }
    static VecF64 load_partial(const double* p, int64_t n, double fill) {
        const __mmask8 m = static_cast<__mmask8>((1u << n) - 1u);
        return {_mm512_mask_loadu_pd(_mm512_set1_pd(fill), m, p)};
    }
    void store(double* p) const { _mm512_storeu_pd(p, v); }
    void store_partial(double* p, int64_t n) const {
        _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1u), v);
    }
};

inline VecF64 operator+(VecF64 a, VecF64 b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VecF64 operator-(VecF64 a, VecF64 b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VecF64 operator*(VecF64 a, VecF64 b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VecF64 fmadd(VecF64 a, VecF64 b, VecF64 c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline VecF64 operator/(VecF64 a, VecF64 b) { return {_mm512_div_pd(a.v, b.v)}; }
inline VecF64 max(VecF64 a, VecF64 b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VecF64 min(VecF64 a, VecF64 b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VecF64 less(VecF64 a, VecF64 b) {
    return {_mm512_maskz_mov_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ), _mm512_set1_pd(1.0))};
}
inline double reduce_add(VecF64 a) { return _mm512_reduce_add_pd(a.v); }
inline double reduce_max(VecF64 a) { return _mm512_reduce_max_pd(a.v); }
inline bool any_greater(VecF64 a, VecF64 b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ) != 0; }
inline VecF64 keep_where_greater(VecF64 a, VecF64 b, VecF64 v) {
    return {_mm512_maskz_mov_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ), v.v)};
}
inline double lane(VecF64 a, int k) {
    return _mm512_cvtsd_f64(_mm512_permutexvar_pd(_mm512_set1_epi64(k), a.v));
}
inline VecF64 with_lane(VecF64 a, int k, double x) {
    return {_mm512_mask_mov_pd(a.v, static_cast<__mmask8>(1u << k), _mm512_set1_pd(x))};
}

inline VecF64 select_equal(VecF64 a, VecF64 b, VecF64 yes, VecF64 no) {
    return {_mm512_mask_mov_pd(no.v, _mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ), yes.v)};
}
inline void add_split(VecF64 e, VecF64& ones, VecF64& rest) {
    const __mmask8 is_one = _mm512_cmp_pd_mask(e.v, _mm512_set1_pd(1.0), _CMP_EQ_OQ);
    ones.v = _mm512_mask_add_pd(ones.v, is_one, ones.v, _mm512_set1_pd(1.0));
    rest.v = _mm512_mask_add_pd(rest.v, _knot_mask8(is_one), rest.v, e.v);
}
inline VecF64 exp(VecF64 x);
inline VecF64 exp_bounded(VecF64 x) { return exp(x); }

// exp(x) for double: the same reduction with a degree-13 Taylor polynomial
// (truncation error < 1e-17 relative on |r| <= ln2/2).
inline VecF64 exp(VecF64 x) {
    using C = ExpF64;
    const __m512d xc = _mm512_min_pd(_mm512_set1_pd(C::hi), _mm512_max_pd(_mm512_set1_pd(C::lo), x.v));
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(xc, _mm512_set1_pd(C::log2e)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(C::ln2_hi), xc);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(C::ln2_lo), r);
    __m512d p = _mm512_set1_pd(C::taylor[0]);
    for (int k = 1; k < C::taylor_terms; ++k) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(C::taylor[k]));
    return {_mm512_scalef_pd(p, n)};
}

// 16-bit storage: 16 values load into one float32 vector.
inline VecF32 vload(const bf16* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
inline VecF32 vload(const f16* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
// The 32 values at p as two vectors, even-indexed then odd-indexed elements
// (see vload_pair_any_order in vec.hpp): a bfloat16 is the top half of a
// float32, so one load, a shift and a mask widen all 32, where two in-order
// loads take two widening shuffles.
inline void vload_pair_any_order(const bf16* p, VecF32& a, VecF32& b) {
    const __m512i v = _mm512_loadu_si512(p);
    a = {_mm512_castsi512_ps(_mm512_slli_epi32(v, 16))};
    b = {_mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))))};
}
// float32 -> bfloat16: each lane rounded to nearest even at bit 16, so that
// its top half is the bfloat16 value; nan stays (quiet) nan. kNoNan: the
// caller knows no lane is nan, and the fix-up that keeps a nan from rounding
// into an infinity is skipped.
template <bool kNoNan = false>
inline __m512i bf16_rounded(VecF32 v) {
    const __m512i b = _mm512_castps_si512(v.v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    if constexpr (kNoNan) return r;
    const __mmask16 nan = _mm512_cmp_ps_mask(v.v, v.v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(b, _mm512_set1_epi32(0x400000)));
}
inline __m256i bf16_bits(VecF32 v) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_rounded(v), 16)); }
// 32 values, a's then b's: one two-source shuffle gathers the top halves
// (cheaper than the two narrowing conversions of two bf16_bits).
inline __m512i bf16_pair_bits(VecF32 a, VecF32 b) {
    const __m512i odd_halves =
        _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23,
                         21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(bf16_rounded(a), odd_halves, bf16_rounded(b));
}
inline __m256i f16_bits(VecF32 v) {
    return _mm512_cvtps_ph(v.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline void vstore(bf16* p, VecF32 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_bits(v)); }
inline void vstore(f16* p, VecF32 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), f16_bits(v)); }

// The first n < 16 values at p (the others read as `fill`): a masked load
// (it cannot fault on the lanes it leaves out), widened; a row's tail goes
// through these twice per sweep.
inline VecF32 vload_partial(const bf16* p, int64_t n, float fill) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    const __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return {_mm512_mask_mov_ps(_mm512_set1_ps(fill), m, v)};
}
inline VecF32 vload_partial(const f16* p, int64_t n, float fill) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    return {_mm512_mask_mov_ps(_mm512_set1_ps(fill), m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)))};
}
// The first n < 16 lanes, rounded as vstore rounds them, stored at p:
// through a copy on the stack, not a masked store (see store_lanes).
inline void vstore_partial(bf16* p, int64_t n, VecF32 v) {
    alignas(32) bf16 lanes[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), bf16_bits(v));
    std::memcpy(p, lanes, sizeof(bf16) * static_cast<size_t>(n));
}
inline void vstore_partial(f16* p, int64_t n, VecF32 v) {
    alignas(32) f16 lanes[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), f16_bits(v));
    std::memcpy(p, lanes, sizeof(f16) * static_cast<size_t>(n));
}

// Non-temporal stores of 16 values (p aligned to their size): the line is
// written to memory without first being read in, for outputs too large to
// stay in cache. stream_fence() orders them before the results are used.
inline void vstream(float* p, VecF32 v) { _mm512_stream_ps(p, v.v); }
inline void vstream(double* p, VecF64 v) { _mm512_stream_pd(p, v.v); }
inline void vstream(bf16* p, VecF32 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), bf16_bits(v)); }
inline void vstream(f16* p, VecF32 v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), f16_bits(v)); }
inline void vstore_pair(bf16* p, VecF32 a, VecF32 b) { _mm512_storeu_si512(p, bf16_pair_bits(a, b)); }
inline void stream_fence() { _mm_sfence(); }

// Pairs of vectors in the order vload_pair_any_order gives bfloat16 (even-
// and odd-indexed elements) can be stored back in order here (see
// kInterleavedPairs in vec.hpp): a bfloat16 pair with one shift and one
// ternary-logic op (cheaper than bf16_pair_bits' shuffle), a float32 pair
// with two two-source shuffles.
constexpr bool kInterleavedPairStores = true;
// 32 bfloat16 values in order: each 32-bit lane takes the even element's
// bits in its low half and the odd element's in its high half (kNoNan: see
// bf16_rounded).
template <bool kNoNan>
inline __m512i bf16_interleaved_bits(VecF32 even, VecF32 odd) {
    const __m512i low = _mm512_srli_epi32(bf16_rounded<kNoNan>(even), 16);
    // (odd & 0xffff0000) | low
    return _mm512_ternarylogic_epi32(bf16_rounded<kNoNan>(odd),
                                     _mm512_set1_epi32(static_cast<int>(0xffff0000u)), low, 0xea);
}
template <bool kNoNan>
inline void vstore_interleaved_pair(bf16* p, VecF32 even, VecF32 odd) {
    _mm512_storeu_si512(p, bf16_interleaved_bits<kNoNan>(even, odd));
}
template <bool kNoNan>
inline void vstore_interleaved_pair(float* p, VecF32 even, VecF32 odd) {
    const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(even.v, first, odd.v));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(even.v, second, odd.v));
}

// Asks for the line holding p, to be written (PREFETCHW: every AVX-512 CPU has it).
inline void prefetch_for_write(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
#else
    _m_prefetchw(const_cast<void*>(p));
#endif
}
// (vstream_interleaved_pair is AVX2's: here stream_lines writes whole lines.)
template <bool kNoNan, class T>
void vstream_interleaved_pair(T* p, VecF32 even, VecF32 odd) = delete;

// Lanes [from, to) of 32 packed 16-bit values, stored at p + from. Through
// a copy on the stack, not a masked store: on Zen 5 a masked store into a
// line that is not in cache stalls until the line arrives, and a streamed
// gradient's lines are never in cache.
template <class H>
inline void store_lanes(H* p, __m512i v, int from, int to) {
    alignas(64) H lanes[32];
    _mm512_store_si512(lanes, v);
    std::memcpy(p + from, lanes + from, sizeof(H) * static_cast<size_t>(to - from));
}
// 32 16-bit values in order from two vectors (a's values, then b's).
template <class H>
inline __m512i pair_bits(VecF32 a, VecF32 b);
template <>
inline __m512i pair_bits<bf16>(VecF32 a, VecF32 b) {
    return bf16_pair_bits(a, b);
}
template <>
inline __m512i pair_bits<f16>(VecF32 a, VecF32 b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(f16_bits(a)), f16_bits(b), 1);
}

// How far ahead a 16-bit sweep asks for its logits (see kPrefetchBytes in
// block_math.hpp). The AVX-512 sweep, bound by its arithmetic, gains from
// asking further ahead than float32's 4 KiB while its gradient's write-back
// loads the memory.
constexpr int64_t kPrefetchBytes16 = 16384;

// 16-bit values are written a whole 64-byte line at a time with
// non-temporal stores (stream_lines), wherever the row starts.
constexpr bool kStreamLines = true;
// Writes count * 32 16-bit values at p (2-byte aligned), values [32k, 32k +
// 32) packed by pack(k) (pair_bits, bf16_interleaved_bits), with a
// non-temporal store for every whole 64-byte line and ordinary stores for
// the partial lines at both ends. When p is not on a line boundary, each
// line is cut from two consecutive packs with one shuffle, so a gradient off
// a line boundary (as NumPy allocates: 16 bytes past one) streams as well as
// one on it.
template <class H, class Pack>
inline void stream_lines(H* p, int64_t count, const Pack& pack) {
    static_assert(sizeof(H) == 2, "16-bit values");
    // Values from p to the first line boundary.
    const int head = static_cast<int>((64 - reinterpret_cast<uintptr_t>(p) % 64) % 64 / 2);
    if (head == 0) {
        for (int64_t k = 0; k < count; ++k)
            _mm512_stream_si512(reinterpret_cast<__m512i*>(p + 32 * k), pack(k));
        return;
    }
    if (count == 0) return;
    // The last partial line (the next block's first) takes an ordinary store,
    // which waits for the line to come from memory: ask for it now.
    prefetch_for_write(p + 32 * count - 1);
    // Line j holds the last 32 - head values of pack j and the first head of pack j + 1.
    const __m512i cut =
        _mm512_add_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15,
                                          14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi16(static_cast<short>(head)));
    __m512i previous = pack(0);
    store_lanes(p, previous, 0, head);
    for (int64_t k = 1; k < count; ++k) {
        const __m512i current = pack(k);
        const __m512i line = _mm512_permutex2var_epi16(previous, cut, current);
        _mm512_stream_si512(reinterpret_cast<__m512i*>(p + 32 * (k - 1) + head), line);
        previous = current;
    }
    store_lanes(p + 32 * (count - 1), previous, head, 32);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
