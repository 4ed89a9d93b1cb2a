// 16-bit storage types: bfloat16 and IEEE float16. The kernels never compute
// in them: they are loaded into float32 vectors, and results are rounded
// back (to nearest even) only when stored.
//
// Compiled into every ISA's kernel objects, so everything here lives in the
// ISA's namespace (and functions in an anonymous one): an AVX-512 copy of
// to_float must never be the one the baseline kernels call.
#pragma once

#include <cstdint>
#include <cstring>

#ifndef CPU_CAPABILITY
#error "CPU_CAPABILITY must be defined by the build (avx512, avx2 or baseline)"
#endif

namespace pyce {
namespace CPU_CAPABILITY {

struct bf16 {
    uint16_t bits;
};
struct f16 {
    uint16_t bits;
};

namespace {

inline float bits_to_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
inline uint32_t float_to_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// bfloat16 is the top half of a float32.
inline float to_float(bf16 h) { return bits_to_float(static_cast<uint32_t>(h.bits) << 16); }

inline bf16 to_bf16(float f) {
    const uint32_t b = float_to_bits(f);
    if ((b & 0x7fffffffu) > 0x7f800000u)
        return bf16{static_cast<uint16_t>((b >> 16) | 0x40u)};  // nan stays nan
    const uint32_t rounded = b + 0x7fffu + ((b >> 16) & 1u);    // round to nearest, ties to even
    return bf16{static_cast<uint16_t>(rounded >> 16)};
}

inline float to_float(f16 h) {
    const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
    const uint32_t exponent = (h.bits >> 10) & 0x1fu, mantissa = h.bits & 0x3ffu;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
        const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf, nan
    return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline f16 to_f16(float f) {
    const uint32_t b = float_to_bits(f);
    const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
    const uint32_t a = b & 0x7fffffffu;
    if (a > 0x7f800000u) return f16{static_cast<uint16_t>(sign | 0x7e00u)};   // nan
    if (a >= 0x477ff000u) return f16{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
    if (a < 0x38800000u) {
        // Subnormal in float16 (|f| < 2^-14): round |f| * 2^24 to an integer,
        // to nearest even, by adding and subtracting 2^23.
        const float scaled = bits_to_float(a) * 16777216.0f;
        const float rounded = (scaled + 8388608.0f) - 8388608.0f;
        return f16{static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded))};
    }
    uint32_t h = ((a >> 23) - 112u) << 10 | ((a >> 13) & 0x3ffu);
    const uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: fine
    return f16{static_cast<uint16_t>(sign | h)};
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
