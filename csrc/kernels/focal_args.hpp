// Arguments of the focal-loss kernel (kernels/focal.cpp): a problem laid out as
// rows x cols, classes last, or classes in the middle (inner below), C-contiguous (as CrossEntropyArgs);
// everything the kernel indexes with has been checked already.
#pragma once

#include <cstdint>

namespace pyce {

// Focal loss -alpha_t (1 - p_t)^gamma log p_t per row (0 for ignored rows)
// and, when `grad` is set, its gradient w.r.t. the logits.
struct FocalArgs {
    const void* logits = nullptr;  // rows x cols, dtype
    int64_t rows = 0;
    int64_t cols = 0;
    const int64_t* target = nullptr;  // rows class indices (bounds-checked)
    int64_t ignore_index = -100;
    double gamma = 2.0;
    const double* alpha = nullptr;  // cols per-class factors, or null: alpha_scalar for all
    double alpha_scalar = 1.0;
    double* row_loss = nullptr;  // rows, out
    void* grad = nullptr;        // rows x cols, may be null
    bool grad_f32 = false;
    double grad_scale = 1.0;
    const double* grad_scale_rows = nullptr;
    int threads = 1;
    // > 1: the class axis is not the innermost. The logits (and gradient) are
    // (rows / inner, cols, inner), C-contiguous; `rows` counts positions in C
    // order, as the per-row arrays do (run tile by tile, kernels/strided_tiles.hpp).
    int64_t inner = 1;
};

}  // namespace pyce
