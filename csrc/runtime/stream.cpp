#include "runtime/stream.hpp"
#include "runtime/threading.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyce {

namespace {

constexpr int kLanes = 16;  // independent accumulators: the compiler vectorises them

float read_range(const float* x, int64_t n) {
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j];
    float s = 0;
    for (; i < n; ++i) s += x[i];
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    return s;
}

// The same contiguous static split the kernels use for rows.
template <class Fn>
void split(int64_t n, int threads, const Fn& fn) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static, 1)
        for (int p = 0; p < threads; ++p) fn(p, n * p / threads, n * (p + 1) / threads);
        note_kernel_end();  // the workers are awake now (see threading.hpp)
        return;
    }
#endif
    (void)threads;
    fn(0, int64_t{0}, n);
}

}  // namespace

double stream_read(const float* x, int64_t n, int threads) {
    std::vector<double> partial(static_cast<size_t>(threads > 1 ? threads : 1), 0.0);
    split(n, threads, [&](int p, int64_t b, int64_t e) { partial[p] = read_range(x + b, e - b); });
    double s = 0;
    for (double v : partial) s += v;
    return s;
}

void stream_scale(const float* src, float* dst, int64_t n, float scale, int threads) {
    split(n, threads, [&](int, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = src[i] * scale;
    });
}

void stream_scale_nt(const float* src, float* dst, int64_t n, float scale, int threads) {
    split(n, threads, [&](int, int64_t b, int64_t e) {
        int64_t i = b;
#if defined(__SSE__)
        // Plain stores up to dst's first 16-byte boundary, then movntps.
        for (; i < e && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i] * scale;
        const __m128 s4 = _mm_set1_ps(scale);
        for (; i + 4 <= e; i += 4) _mm_stream_ps(dst + i, _mm_mul_ps(_mm_loadu_ps(src + i), s4));
        _mm_sfence();
#endif
        for (; i < e; ++i) dst[i] = src[i] * scale;
    });
}

}  // namespace pyce
