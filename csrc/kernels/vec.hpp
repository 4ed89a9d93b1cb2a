// Selects the vector types for the ISA this translation unit is compiled for.
// CMake compiles every kernel source once per ISA with -DCPU_CAPABILITY=<name>
// and, for the SIMD ones, -DPYCE_ISA_AVX512 or -DPYCE_ISA_AVX2.
#pragma once

#ifndef CPU_CAPABILITY
#error "CPU_CAPABILITY must be defined by the build (avx512, avx2 or baseline)"
#endif

#if defined(PYCE_ISA_AVX512)
#include "vec_avx512.hpp"
#elif defined(PYCE_ISA_AVX2)
#include "vec_avx2.hpp"
#else
#include "vec_portable.hpp"
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

}  // namespace CPU_CAPABILITY
}  // namespace pyce
