// Portable "vector" types: a fixed number of lanes in a plain array, every
// operation a short loop the compiler can vectorise for whatever the baseline
// target offers (SSE2 on x86-64, NEON on aarch64). Same interface and same
// exp algorithm as the intrinsic versions; no intrinsics, no libm calls.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/exp_constants.hpp"
#include "kernels/half_types.hpp"

namespace pyce {
namespace CPU_CAPABILITY {

template <class T, int W>
struct VecPortable {
    using scalar = T;
    static constexpr int width = W;
    T v[W];

    static VecPortable broadcast(T a) {
        VecPortable r;
        for (int i = 0; i < W; ++i) r.v[i] = a;
        return r;
    }
    static VecPortable load(const T* p) {
        VecPortable r;
        std::memcpy(r.v, p, sizeof(r.v));
        return r;
    }
    static VecPortable load_partial(const T* p, int64_t n, T fill) {
        VecPortable r;
        for (int i = 0; i < W; ++i) r.v[i] = i < n ? p[i] : fill;
        return r;
    }
    void store(T* p) const { std::memcpy(p, v, sizeof(v)); }
    void store_partial(T* p, int64_t n) const {
        for (int i = 0; i < n; ++i) p[i] = v[i];
    }
};

#define PYCE_PORTABLE_BINOP(op)                                                      \
    template <class T, int W>                                                        \
    inline VecPortable<T, W> operator op(VecPortable<T, W> a, VecPortable<T, W> b) { \
        VecPortable<T, W> r;                                                         \
        for (int i = 0; i < W; ++i) r.v[i] = a.v[i] op b.v[i];                       \
        return r;                                                                    \
    }
PYCE_PORTABLE_BINOP(+)
PYCE_PORTABLE_BINOP(-)
PYCE_PORTABLE_BINOP(*)
PYCE_PORTABLE_BINOP(/)
#undef PYCE_PORTABLE_BINOP

template <class T, int W>
inline VecPortable<T, W> fmadd(VecPortable<T, W> a, VecPortable<T, W> b, VecPortable<T, W> c) {
    return a * b + c;
}
// Like x86's max: when either is nan, the second operand is returned.
template <class T, int W>
inline VecPortable<T, W> max(VecPortable<T, W> a, VecPortable<T, W> b) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return r;
}
// Like x86's min: when either is nan, the second operand is returned.
template <class T, int W>
inline VecPortable<T, W> min(VecPortable<T, W> a, VecPortable<T, W> b) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return r;
}
// 1 where a < b, else 0 (a nan compares false).
template <class T, int W>
inline VecPortable<T, W> less(VecPortable<T, W> a, VecPortable<T, W> b) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] < b.v[i] ? T(1) : T(0);
    return r;
}
template <class T, int W>
inline bool any_greater(VecPortable<T, W> a, VecPortable<T, W> b) {
    bool any = false;
    for (int i = 0; i < W; ++i) any |= a.v[i] > b.v[i];
    return any;
}
// v where a > b, else +0 (an inf or nan in a lane not kept does not leak through).
template <class T, int W>
inline VecPortable<T, W> keep_where_greater(VecPortable<T, W> a, VecPortable<T, W> b, VecPortable<T, W> v) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] > b.v[i] ? v.v[i] : T(0);
    return r;
}
// Lane k of a vector, and a copy with lane k replaced.
template <class T, int W>
inline T lane(VecPortable<T, W> a, int k) {
    return a.v[k];
}
template <class T, int W>
inline VecPortable<T, W> with_lane(VecPortable<T, W> a, int k, T x) {
    a.v[k] = x;
    return a;
}
template <class T, int W>
inline T reduce_add(VecPortable<T, W> a) {
    T s = a.v[0];
    for (int i = 1; i < W; ++i) s += a.v[i];
    return s;
}
template <class T, int W>
inline T reduce_max(VecPortable<T, W> a) {
    T m = a.v[0];
    for (int i = 1; i < W; ++i) m = a.v[i] > m ? a.v[i] : m;
    return m;
}

// Lanes where a == b take `yes`, the others `no` (for class-index lanes
// compared as floats: the strided-class kernels, kernels/strided_classes.cpp).
template <class T, int W>
inline VecPortable<T, W> select_equal(VecPortable<T, W> a, VecPortable<T, W> b, VecPortable<T, W> yes,
                                      VecPortable<T, W> no) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = a.v[i] == b.v[i] ? yes.v[i] : no.v[i];
    return r;
}
// ones + 1 where e == 1, rest + e where not (nan included): a sum split into
// its exp(0) terms and the others (kernels/strided_lanes.hpp).
template <class T, int W>
inline void add_split(VecPortable<T, W> e, VecPortable<T, W>& ones, VecPortable<T, W>& rest) {
    for (int i = 0; i < W; ++i) {
        if (e.v[i] == T(1))
            ones.v[i] += T(1);
        else
            rest.v[i] += e.v[i];
    }
}
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)), for positive normal float lanes
// (what log_positive in strided_classes.cpp takes apart).
template <int W>
inline void split_exponent(VecPortable<float, W> x, VecPortable<float, W>& m, VecPortable<float, W>& e) {
    for (int i = 0; i < W; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &x.v[i], sizeof(bits));
        int ex = static_cast<int>(bits >> 23) - 127;
        bits = (bits & 0x007fffffu) | 0x3f800000u;
        float mv;
        std::memcpy(&mv, &bits, sizeof(mv));
        if (mv > 1.41421356f) mv *= 0.5f, ex += 1;
        m.v[i] = mv;
        e.v[i] = static_cast<float>(ex);
    }
}

using VecF32 = VecPortable<float, 8>;
using VecF64 = VecPortable<double, 4>;

// Scalar exp with the same reduction and polynomial as the SIMD versions,
// written without branches so the compiler vectorises the lane loop.
// Rounding to nearest uses the "add 1.5 * 2^23" trick (valid as |n| < 2^22),
// which needs no libm call and no particular rounding instruction.
inline float exp_lane(float x) {
    using C = ExpF32;
    float xc = C::lo > x ? C::lo : x;
    xc = C::hi < xc ? C::hi : xc;
    xc = x != x ? 0.0f : xc;          // nan: compute on 0, return nan at the end
    const float magic = 12582912.0f;  // 1.5 * 2^23
    const float n = (xc * C::log2e + magic) - magic;
    float r = xc - n * C::ln2_hi;
    r = r - n * C::ln2_lo;
    float p = C::c6;
    p = p * r + C::c5;
    p = p * r + C::c4;
    p = p * r + C::c3;
    p = p * r + C::c2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t ni = static_cast<int32_t>(n);
    const int32_t n1 = ni >> 1, n2 = ni - n1;
    const uint32_t b1 = static_cast<uint32_t>(n1 + 127) << 23, b2 = static_cast<uint32_t>(n2 + 127) << 23;
    float s1, s2;
    std::memcpy(&s1, &b1, 4);
    std::memcpy(&s2, &b2, 4);
    const float y = p * s1 * s2;
    return x != x ? x : y;
}

inline double exp_lane(double x) {
    using C = ExpF64;
    double xc = C::lo > x ? C::lo : x;
    xc = C::hi < xc ? C::hi : xc;
    xc = x != x ? 0.0 : xc;
    const double magic = 6755399441055744.0;  // 1.5 * 2^52
    const double n = (xc * C::log2e + magic) - magic;
    double r = xc - n * C::ln2_hi;
    r = r - n * C::ln2_lo;
    double p = C::taylor[0];
    for (int k = 1; k < C::taylor_terms; ++k) p = p * r + C::taylor[k];
    const int64_t ni = static_cast<int64_t>(n);
    const int64_t n1 = ni >> 1, n2 = ni - n1;
    const uint64_t b1 = static_cast<uint64_t>(n1 + 1023) << 52, b2 = static_cast<uint64_t>(n2 + 1023) << 52;
    double s1, s2;
    std::memcpy(&s1, &b1, 8);
    std::memcpy(&s2, &b2, 8);
    const double y = p * s1 * s2;
    return x != x ? x : y;
}

template <class T, int W>
inline VecPortable<T, W> exp(VecPortable<T, W> x) {
    VecPortable<T, W> r;
    for (int i = 0; i < W; ++i) r.v[i] = exp_lane(x.v[i]);
    return r;
}
// The intrinsic versions skip the upper clamp for x <= 88; here it is cheap.
template <class T, int W>
inline VecPortable<T, W> exp_bounded(VecPortable<T, W> x) {
    return exp(x);
}

// 16-bit storage, lane by lane.
inline VecF32 vload(const bf16* p) {
    VecF32 r;
    for (int i = 0; i < VecF32::width; ++i) r.v[i] = to_float(p[i]);
    return r;
}
inline VecF32 vload(const f16* p) {
    VecF32 r;
    for (int i = 0; i < VecF32::width; ++i) r.v[i] = to_float(p[i]);
    return r;
}
inline void vstore(bf16* p, VecF32 v) {
    for (int i = 0; i < VecF32::width; ++i) p[i] = to_bf16(v.v[i]);
}
inline void vstore(f16* p, VecF32 v) {
    for (int i = 0; i < VecF32::width; ++i) p[i] = to_f16(v.v[i]);
}
// No non-temporal stores without intrinsics: plain stores (see vec_avx512.hpp).
inline void vstream(float* p, VecF32 v) { v.store(p); }
inline void vstream(double* p, VecF64 v) { v.store(p); }
inline void vstream(bf16* p, VecF32 v) { vstore(p, v); }
inline void vstream(f16* p, VecF32 v) { vstore(p, v); }
inline void stream_fence() {}

// No in-order stores of vload_pair_any_order's bfloat16 order (see vec_avx512.hpp):
// declared so that the kernels compile, never called.
constexpr bool kInterleavedPairStores = false;
template <bool kNoNan, class T>
void vstore_interleaved_pair(T* p, VecF32 even, VecF32 odd) = delete;
template <bool kNoNan>
void bf16_interleaved_bits(VecF32 even, VecF32 odd) = delete;
template <bool kNoNan, class T>
void vstream_interleaved_pair(T* p, VecF32 even, VecF32 odd) = delete;
// Streamed 16-bit gradients go vector by vector from the first line boundary
// (see stream_lines in vec_avx512.hpp).
constexpr bool kStreamLines = false;
// How far ahead a 16-bit sweep asks for its logits (see vec_avx512.hpp).
constexpr int64_t kPrefetchBytes16 = 4096;
template <class H, class Pack>
void stream_lines(H* p, int64_t count, const Pack& pack) = delete;
template <class H>
void pair_bits(VecF32 a, VecF32 b) = delete;

}  // namespace CPU_CAPABILITY
}  // namespace pyce
