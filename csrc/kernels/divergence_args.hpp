// Arguments of the distillation-loss kernel (kernels/divergence.cpp): a problem laid out as
// rows x cols, classes last, or classes in the middle (inner below), C-contiguous (as CrossEntropyArgs);
// everything the kernel indexes with has been checked already.
#pragma once

#include <cstdint>

namespace pyce {

// T^2 * KL(softmax(teacher / T) || softmax(student / T)) per row and,
// when `grad` is set, its gradient w.r.t. the student: T * (q - p), row i
// scaled by grad_scale_rows[i] if given, else by grad_scale.
struct KLDivArgs {
    const void* student = nullptr;  // rows x cols, dtype
    const void* teacher = nullptr;  // rows x cols, same dtype
    int64_t rows = 0;
    int64_t cols = 0;
    double temperature = 1.0;
    double* row_loss = nullptr;  // rows, out
    void* grad = nullptr;        // rows x cols of dtype (or float32 when grad_f32), may be null
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
