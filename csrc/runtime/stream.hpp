// Streaming kernels that measure the memory floor the real kernels are judged
// against: they move the same bytes (read once; read once + write once) with
// as little arithmetic as possible, on the same threads and row split.
#pragma once

#include <cstdint>

namespace pyce {

// Reads n floats; returns their sum (so the reads cannot be optimised away).
double stream_read(const float* x, int64_t n, int threads);
// dst[i] = src[i] * scale: read n floats, write n floats.
void stream_scale(const float* src, float* dst, int64_t n, float scale, int threads);
// The same with non-temporal stores (SSE's movntps where the build targets
// x86): dst's lines are written without being read first, as the kernels
// write a large gradient. The floor of a fused pass that streams its output.
void stream_scale_nt(const float* src, float* dst, int64_t n, float scale, int threads);

}  // namespace pyce
