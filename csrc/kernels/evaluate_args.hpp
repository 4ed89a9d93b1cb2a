// Arguments of the evaluation kernel (kernels/evaluate.cpp): a problem laid out as
// rows x cols, classes last, or classes in the middle (inner below), C-contiguous (as CrossEntropyArgs);
// everything the kernel indexes with has been checked already.
#pragma once

#include <cstdint>

namespace pyce {

// One pass over the logits that yields, per row: the loss lse - x_t, the
// entropy of softmax(x), the largest probability and the target's rank
// #{j : x_j > x_t}. With target == nullptr only the entropy (and max
// probability) is computed. Rows whose target is ignore_index are not read:
// their outputs are left untouched.
struct EvaluateArgs {
    const void* logits = nullptr;  // rows x cols, dtype
    int64_t rows = 0;
    int64_t cols = 0;
    const int64_t* target = nullptr;  // rows class indices, or null (entropy only)
    int64_t ignore_index = -100;
    double* loss = nullptr;      // rows, out (target only)
    double* entropy = nullptr;   // rows, out
    double* max_prob = nullptr;  // rows, out (may be null)
    double* rank = nullptr;      // rows, out (target only): an exact integer
    int threads = 1;
    // > 1: the class axis is not the innermost. The logits (and gradient) are
    // (rows / inner, cols, inner), C-contiguous; `rows` counts positions in C
    // order, as the per-row arrays do (run tile by tile, kernels/strided_tiles.hpp).
    int64_t inner = 1;
};

}  // namespace pyce
