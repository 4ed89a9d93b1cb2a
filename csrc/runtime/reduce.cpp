#include "runtime/reduce.hpp"

#include "runtime/threading.hpp"

namespace pyce {

namespace {

// From this many targets their passes (the bounds check, the count of a
// 'mean') are shared out to the kernels' threads. They read 8 bytes a row
// where a row of 2 classes is itself 8 bytes: on one thread, beside a kernel
// on all of them, they were a fifth of a fused 262144 x 2 call (perf). An
// integer result, so the same for any thread count.
constexpr int64_t kParallelTargets = int64_t{1} << 16;

int target_threads(int64_t rows) { return rows >= kParallelTargets ? num_threads() : 1; }

// 1 if class index t is neither in [0, cols) nor ignore_index, else 0: without
// a branch, so that the loops over all targets vectorise.
inline int64_t bad_target(int64_t t, int64_t cols, int64_t ignore_index) {
    return static_cast<int64_t>((t < 0) | (t >= cols)) & static_cast<int64_t>(t != ignore_index);
}

template <class W>
double target_weight_sum(const MeanOver& over) {
    const W* w = static_cast<const W*>(over.weight);
    if (!w) {
        // A count (the float64 sum of ones, exactly): an integer sum the
        // compiler vectorises, where the float64 one is a chain of dependent adds.
        const int64_t* target = over.target;
        const int64_t rows = over.rows, ignore = over.ignore_index;
        const int threads = target_threads(rows);
        int64_t kept = 0;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(+ : kept) if (threads > 1)
        for (int64_t i = 0; i < rows; ++i) kept += target[i] != ignore;
        (void)threads;
        return static_cast<double>(kept);
    }
    double divisor = 0;
    for (int64_t i = 0; i < over.rows; ++i) {
        const int64_t t = over.target[i];
        if (t != over.ignore_index) divisor += static_cast<double>(w[t]);
    }
    return divisor;
}

}  // namespace

double divisor_of(Reduction reduction, const MeanOver& over) {
    switch (reduction) {
        case Reduction::batchmean:
            return static_cast<double>(over.rows);
        case Reduction::mean:
            if (!over.target) return static_cast<double>(over.rows) * static_cast<double>(over.per_row);
            return over.weight_f64 ? target_weight_sum<double>(over) : target_weight_sum<float>(over);
        case Reduction::none:
        case Reduction::sum:
            break;
    }
    return 1.0;
}

double reduce_rows(const double* row_loss, int64_t rows, Reduction reduction, double divisor) {
    const double total = pairwise_sum(row_loss, rows);
    return reduction == Reduction::sum ? total : total / divisor;
}

double reduced_grad_scale(Reduction reduction, double grad_output, double divisor) {
    return reduction == Reduction::sum ? grad_output : grad_output / divisor;
}

double pairwise_sum(const double* values, int64_t n) {
    // Leaves of up to kLeaf values, summed in kLanes interleaved partial sums
    // (independent chains the compiler vectorises): with leaves of 8 summed
    // one by one, the recursion's calls cost more than the additions (a
    // fifth of a 262144 x 2 cross-entropy on one thread, with the target
    // checks below). The order is still fixed by n alone.
    constexpr int64_t kLeaf = 256, kLanes = 8;
    if (n <= kLeaf) {
        double lane[kLanes] = {};
        const int64_t whole = n - n % kLanes;
        for (int64_t i = 0; i < whole; i += kLanes)
            for (int64_t l = 0; l < kLanes; ++l) lane[l] += values[i + l];
        double s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
        for (int64_t i = whole; i < n; ++i) s += values[i];
        return s;
    }
    const int64_t half = n / 2;
    return pairwise_sum(values, half) + pairwise_sum(values + half, n - half);
}

BadTarget find_bad_target(const int64_t* target, int64_t rows, int64_t cols, int64_t ignore_index) {
    // Many targets: whether any is bad, on every thread; only then the
    // search for the first one below (an error path).
    const int threads = target_threads(rows);
    if (threads > 1) {
        int64_t bad = 0;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(| : bad)
        for (int64_t i = 0; i < rows; ++i) bad |= bad_target(target[i], cols, ignore_index);
        if (!bad) return {};
    }
    // Blocks checked without a branch per target (a loop the compiler
    // vectorises); a block with a bad one is searched again for the first.
    constexpr int64_t kBlock = 512;
    for (int64_t b = 0; b < rows; b += kBlock) {
        const int64_t e = b + kBlock < rows ? b + kBlock : rows;
        int64_t bad = 0;
        for (int64_t i = b; i < e; ++i) bad |= bad_target(target[i], cols, ignore_index);
        if (!bad) continue;
        for (int64_t i = b; i < e; ++i)
            if (bad_target(target[i], cols, ignore_index)) return {i, target[i]};
    }
    return {};
}

}  // namespace pyce
