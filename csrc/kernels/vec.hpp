// Selects the vector types for the ISA this translation unit is compiled for.
// CMake compiles every kernel source once per ISA with -DCPU_CAPABILITY=<name>
// and, for the SIMD ones, -DPYCE_ISA_AVX512 or -DPYCE_ISA_AVX2.
#pragma once

#include <cstdint>
#include <type_traits>

#ifndef CPU_CAPABILITY
#error "CPU_CAPABILITY must be defined by the build (avx512, avx2 or baseline)"
#endif

#if defined(PYCE_ISA_AVX512)
#include "kernels/vec_avx512.hpp"
#elif defined(PYCE_ISA_AVX2)
#include "kernels/vec_avx2.hpp"
#else
#include "kernels/vec_portable.hpp"
#endif

namespace pyce {
namespace CPU_CAPABILITY {

// The vector type that computes on storage type T.
template <class T>
struct VecFor;
template <>
struct VecFor<float> {
    using type = VecF32;
};
template <>
struct VecFor<double> {
    using type = VecF64;
};
template <>
struct VecFor<bf16> {
    using type = VecF32;
};
template <>
struct VecFor<f16> {
    using type = VecF32;
};

// For the lambdas of a hot loop that take its running sums by reference: if
// the compiler kept such a lambda out of line, the sums' addresses would
// escape and the loop would store them to memory on every step.
#if defined(__GNUC__) || defined(__clang__)
#define PYCE_ALWAYS_INLINE __attribute__((always_inline))
#else
#define PYCE_ALWAYS_INLINE
#endif

// Asks for the cache line `bytes` past p ahead of its use. Only a hint: it
// never faults, so the address may lie past the end of the array (computed
// as an integer, so no out-of-range pointer is ever formed).
inline void prefetch_ahead(const void* p, int64_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(
        reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)));
#else
    (void)p, (void)bytes;
#endif
}

// The type a storage type computes (and accumulates within a block) in.
template <class T>
using Acc = typename VecFor<T>::type::scalar;

// Loads and stores by storage type: float32/float64 directly, 16-bit types
// through float32 vectors (vec_*.hpp define vload/vstore for bf16 and f16).
inline VecF32 vload(const float* p) { return VecF32::load(p); }
inline VecF64 vload(const double* p) { return VecF64::load(p); }
inline void vstore(float* p, VecF32 v) { v.store(p); }
inline void vstore(double* p, VecF64 v) { v.store(p); }

// The 2 * width values at p as two vectors, their elements in an order the
// ISA chooses: for sums and maxima, which do not depend on it. In order here;
// vec_avx512.hpp and vec_avx2.hpp load bfloat16 as even and odd elements.
template <class T, class V>
inline void vload_pair_any_order(const T* p, V& a, V& b) {
    a = vload(p);
    b = vload(p + V::width);
}

// Whether a kernel on T logits that loads pairs with vload_pair_any_order
// may keep them in that order until it stores them: vec_avx512.hpp and
// vec_avx2.hpp store bfloat16's even/odd order back in order
// (vstore_interleaved_pair, bf16_interleaved_bits). The value at offset j of
// such a pair is lane j / 2 of the even (j even) or the odd vector.
template <class T>
inline constexpr bool kInterleavedPairs = kInterleavedPairStores&& std::is_same_v<T, bf16>;

// The 2 * width values a then b, stored at p. vec_avx512.hpp rounds a
// bfloat16 pair to 16 bits and packs it with one shuffle.
template <class T, class V>
inline void vstore_pair(T* p, V a, V b) {
    vstore(p, a);
    vstore(p + V::width, b);
}

inline float to_acc(float v) { return v; }
inline double to_acc(double v) { return v; }
inline float to_acc(bf16 v) { return to_float(v); }
inline float to_acc(f16 v) { return to_float(v); }
template <class T>
T from_acc(Acc<T> v);
template <>
inline float from_acc<float>(float v) {
    return v;
}
template <>
inline double from_acc<double>(double v) {
    return v;
}
template <>
inline bf16 from_acc<bf16>(float v) {
    return to_bf16(v);
}
template <>
inline f16 from_acc<f16>(float v) {
    return to_f16(v);
}

// The first n < width lanes; the others read as `fill` / are not written.
inline VecF32 vload_partial(const float* p, int64_t n, float fill) {
    return VecF32::load_partial(p, n, fill);
}
inline VecF64 vload_partial(const double* p, int64_t n, double fill) {
    return VecF64::load_partial(p, n, fill);
}
template <class H>
inline VecF32 vload_partial(const H* p, int64_t n, float fill) {
    float tmp[VecF32::width];
    for (int64_t i = 0; i < n; ++i) tmp[i] = to_acc(p[i]);
    return VecF32::load_partial(tmp, n, fill);
}
inline void vstore_partial(float* p, int64_t n, VecF32 v) { v.store_partial(p, n); }
inline void vstore_partial(double* p, int64_t n, VecF64 v) { v.store_partial(p, n); }
template <class H>
inline void vstore_partial(H* p, int64_t n, VecF32 v) {
    float tmp[VecF32::width];
    v.store(tmp);
    for (int64_t i = 0; i < n; ++i) p[i] = from_acc<H>(tmp[i]);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
