// One home for the reductions over rows that every loss shares: what a
// 'mean' divides by, the fixed-order sum of per-row losses, the gradient
// scale a reduction gives every row, and the bounds check of class-index
// targets that a kernel indexes with. Python (pyce/_validation.py) has
// checked the options; what is here decides results and protects memory.
#pragma once

#include <cstdint>

namespace pyce {

// How per-row losses become the result. batchmean: the KL divergence's sum
// over rows divided by the number of rows (its 'mean' divides by elements).
enum class Reduction : int { none = 0, mean = 1, sum = 2, batchmean = 3 };

// What a 'mean' averages over. With class-index targets: PyTorch's
// sum of weight[target] over the rows that are not ignored (their count
// without weights), summed in float64 in row order. Without targets: every
// row (times `per_row` elements: the KL divergence's element-wise mean).
struct MeanOver {
    int64_t rows = 0;
    int64_t per_row = 1;
    const int64_t* target = nullptr;  // rows class indices (checked), or null
    int64_t ignore_index = -100;
    const void* weight = nullptr;  // C class weights, or null
    bool weight_f64 = false;       // weight is double (float64 logits), else float
};

// The divisor of the reduction: 1 for none and sum, the row count for
// batchmean, MeanOver's for mean (0 when every row is ignored: the mean is
// then 0 / 0 = nan, as in PyTorch).
double divisor_of(Reduction reduction, const MeanOver& over);

// The reduced loss: the per-row losses summed pairwise (sum), divided by the
// divisor (mean, batchmean). Not for Reduction::none.
double reduce_rows(const double* row_loss, int64_t rows, Reduction reduction, double divisor);

// The factor every row's gradient gets from a reduced loss' grad_output:
// grad_output / divisor (inf when every row is ignored, but then no row uses it).
double reduced_grad_scale(Reduction reduction, double grad_output, double divisor);

// Sum of values in a fixed pairwise order (deterministic; the error grows
// with log n, plus the 32 terms each leaf lane adds in turn).
double pairwise_sum(const double* values, int64_t n);

// The first target that is neither a class index in [0, cols) nor
// ignore_index, as (position, value); position -1 if all are fine.
struct BadTarget {
    int64_t position = -1;
    int64_t value = 0;
};
BadTarget find_bad_target(const int64_t* target, int64_t rows, int64_t cols, int64_t ignore_index);

}  // namespace pyce
