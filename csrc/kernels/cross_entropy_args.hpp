// Cross-entropy orchestration around the ISA kernels: target bounds checks,
// the reduction's divisor, per-row gradient scales and the final reduction.
// No Python here: bindings/cross_entropy.cpp converts arrays to a Request.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/dispatch.hpp"

namespace pyce {

enum class Reduction : int { none = 0, mean = 1, sum = 2 };

struct CrossEntropyRequest {
    DType dtype = DType::f32;
    const void* logits = nullptr;  // rows x cols
    int64_t rows = 0, cols = 0;
    const int64_t* target = nullptr;    // rows, or null with soft_target
    const void* soft_target = nullptr;  // rows x cols
    const void* weight = nullptr;       // cols, float64 for float64 logits, else float32
    int64_t ignore_index = -100;
    double label_smoothing = 0.0;
    double z_loss = 0.0;
    double softcap = 0.0;   // 0: none
    bool want_lse = false;  // also return every row's log-sum-exp
    Reduction reduction = Reduction::mean;
    const double* grad_output = nullptr;  // rows (none) or 1 value; null: no gradient
    void* grad = nullptr;                 // rows x cols, written when grad_output is set
    bool grad_f32 = false;                // 16-bit logits with a float32 gradient
};

struct CrossEntropyResult {
    double total = 0;              // the reduced loss (mean / sum)
    std::vector<double> row_loss;  // every row's loss (reduction none)
    std::vector<double> row_lse;   // every row's log-sum-exp, if asked for
};

// The first target that is neither a class index in [0, cols) nor
// ignore_index, as (position, value); position -1 if all are fine.
struct BadTarget {
    int64_t position = -1;
    int64_t value = 0;
};
BadTarget find_bad_target(const int64_t* target, int64_t rows, int64_t cols, int64_t ignore_index);

// Runs the kernel. The caller has checked the targets with find_bad_target.
CrossEntropyResult cross_entropy(const CrossEntropyRequest& request);

// Sum of values in a fixed pairwise order (deterministic, O(log n) error growth).
double pairwise_sum(const double* values, int64_t n);

}  // namespace pyce
