#include <cmath>
#include <limits>

#include "kernels/cross_entropy_args.hpp"
#include "runtime/threading.hpp"

namespace pyce {

BadTarget find_bad_target(const int64_t* target, int64_t rows, int64_t cols, int64_t ignore_index) {
    for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = target[i];
        if ((t < 0 || t >= cols) && t != ignore_index) return {i, t};
    }
    return {};
}

double pairwise_sum(const double* values, int64_t n) {
    if (n <= 8) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += values[i];
        return s;
    }
    const int64_t half = n / 2;
    return pairwise_sum(values, half) + pairwise_sum(values + half, n - half);
}

namespace {

// PyTorch's divisor of the mean: the sum of weight[target] over rows that are
// not ignored (their count without weights); the row count for probability
// targets. Summed in float64 in row order.
template <class T>
double mean_divisor(const CrossEntropyRequest& q) {
    if (q.soft_target) return static_cast<double>(q.rows);
    const T* w = static_cast<const T*>(q.weight);
    double divisor = 0;
    for (int64_t i = 0; i < q.rows; ++i) {
        const int64_t t = q.target[i];
        if (t != q.ignore_index) divisor += w ? static_cast<double>(w[t]) : 1.0;
    }
    return divisor;
}

}  // namespace

CrossEntropyResult cross_entropy(const CrossEntropyRequest& q) {
    CrossEntropyResult result;
    result.row_loss.assign(static_cast<size_t>(q.rows), 0.0);

    const double divisor = q.reduction == Reduction::mean
                               ? (q.dtype == DType::f64 ? mean_divisor<double>(q) : mean_divisor<float>(q))
                               : 1.0;

    CrossEntropyArgs args;
    args.logits = q.logits;
    args.rows = q.rows;
    args.cols = q.cols;
    args.target = q.target;
    args.soft_target = q.soft_target;
    args.weight = q.weight;
    args.ignore_index = q.ignore_index;
    args.label_smoothing = q.label_smoothing;
    args.z_loss = q.z_loss;
    args.softcap = q.softcap;
    if (q.want_lse) {
        result.row_lse.assign(static_cast<size_t>(q.rows), 0.0);
        args.row_lse = result.row_lse.data();
    }
    args.row_loss = result.row_loss.data();
    args.threads = num_threads();
    if (q.grad_output) {
        args.grad = q.grad;
        args.grad_f32 = q.grad_f32;
        if (q.reduction == Reduction::none)
            args.grad_scale_rows = q.grad_output;
        else
            // The mean's gradient is grad_output / divisor on every row (inf when
            // every row is ignored, but then no row uses it: their gradient is 0).
            args.grad_scale = q.reduction == Reduction::mean ? q.grad_output[0] / divisor : q.grad_output[0];
    }
    kernels().cross_entropy[static_cast<int>(q.dtype)](args);

    if (q.reduction != Reduction::none) {
        const double total = pairwise_sum(result.row_loss.data(), q.rows);
        // All rows ignored: 0 / 0 = nan, as PyTorch.
        result.total = q.reduction == Reduction::mean ? total / divisor : total;
    }
    return result;
}

}  // namespace pyce
