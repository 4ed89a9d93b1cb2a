// The short-row kernels (kernels/strided_classes.cpp): rows of a few classes
// (1 to kShortRowMaxCols), whose time is their per-row steps rather than
// memory. Below 128 classes the rows are transposed into a tile, one row per
// vector lane, and reduced as strided positions are
// (kernels/strided_lanes.hpp, kernels/tile_transpose.hpp); from there on each
// row is reduced in registers (max, exp-sum), and everything a row needs
// after its sums -- log, loss, gradient factors -- is computed for a whole
// group of rows at once, one row per vector lane (rows_as_lanes in
// strided_classes.cpp says which way a call takes).
//
// softmax.cpp and cross_entropy.cpp hand their calls over here first; these
// return false, doing nothing, for a call they do not take.
#pragma once

#include <cstdint>

#include "runtime/dispatch.hpp"

namespace pyce {
namespace CPU_CAPABILITY {

constexpr int64_t kShortRowMaxCols = 1024;

enum class ShortRowOutput { lse, softmax, log_softmax };

template <class T>
bool short_rows_normaliser(ShortRowOutput what, const void* x, int64_t rows, int64_t cols, void* out,
                           int threads);

// Class-index targets without a soft cap.
template <class T>
bool short_rows_cross_entropy(const CrossEntropyArgs& args);

}  // namespace CPU_CAPABILITY
}  // namespace pyce
