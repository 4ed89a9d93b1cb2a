// Arguments of the evaluation, divergence and focal-loss kernels
// (kernels/evaluate.cpp, kernels/divergence.cpp, kernels/focal.cpp).
// Like CrossEntropyArgs: a problem laid out as rows x cols, classes last,
// C-contiguous; everything the kernel indexes with has been checked already.
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
};

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
};

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
};

}  // namespace pyce
