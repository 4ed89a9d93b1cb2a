// What this CPU and operating system support, read once with cpuid/xgetbv.
#pragma once

namespace pyce {

struct CpuFeatures {
    bool avx2_fma = false;  // AVX2 + FMA + F16C + OS-enabled YMM state
    bool avx512 = false;    // AVX-512 F/DQ/BW/VL + OS-enabled ZMM state
};

const CpuFeatures& cpu_features();

}  // namespace pyce
