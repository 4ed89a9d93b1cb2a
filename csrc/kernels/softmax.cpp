// logsumexp, softmax and log_softmax over the rows of a C-contiguous array.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
#include <cstdint>

#include "../dispatch.hpp"
#include "block_math.hpp"
#include "parallel.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// What the row kernel writes: only the lse, exp(x - lse), or x - lse.
enum class RowOutput { lse, softmax, log_softmax };

template <class T, RowOutput kOut>
struct SoftmaxKernel {
    static constexpr bool kRescale = kOut != RowOutput::lse;
    using Stats = BlockStats;
    struct Row {
        int64_t index;
        T shift;  // see row_shift
        RowSums sums;
    };

    const T* x;
    int64_t cols;
    T* out;  // rows (lse) or rows x cols

    Row begin(int64_t r) const { return {r, row_shift(x + r * cols, cols), RowSums{}}; }

    Stats stats(const Row& row, int64_t b) const {
        const int64_t start = b * kBlock, n = cols - start < kBlock ? cols - start : kBlock;
        const T* xb = x + row.index * cols + start;
        // softmax keeps the exps in its output; the rescale multiplies them.
        constexpr bool kStore = kOut == RowOutput::softmax;
        return block_stats<T, Extra::none, kStore>(xb, n, kStore ? out + row.index * cols + start : nullptr,
                                                   Coefs<T>{}, start, row.shift);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        row.sums = merge_blocks(stats, nblocks);
        if (kOut == RowOutput::lse) out[row.index] = static_cast<T>(row.sums.lse);
    }

    void rescale(const Row& row, int64_t b, const Stats& s) const {
        using V = typename VecFor<T>::type;
        constexpr int W = V::width;
        const int64_t start = b * kBlock, n = cols - start < kBlock ? cols - start : kBlock;
        const int64_t full = n - n % W, tail = n - full;
        T* ob = out + row.index * cols + start;
        if constexpr (kOut == RowOutput::softmax) {
            const V f = V::broadcast(static_cast<T>(block_factor(s, row.sums)));
            for (int64_t i = 0; i < full; i += W) (V::load(ob + i) * f).store(ob + i);
            if (tail) (V::load_partial(ob + full, tail, T(0)) * f).store_partial(ob + full, tail);
        } else {
            // (x - max) - log_sum: x - max is exact near the max, where the
            // log-probabilities are small, so they keep their relative precision.
            // A row without a distribution (lse not finite) is all nan, as in PyTorch.
            const bool finite = std::isfinite(row.sums.lse);
            const V m = V::broadcast(static_cast<T>(finite ? row.sums.max : kNaN));
            const V l = V::broadcast(static_cast<T>(row.sums.log_sum));
            const T* xb = x + row.index * cols + start;
            for (int64_t i = 0; i < full; i += W) ((V::load(xb + i) - m) - l).store(ob + i);
            if (tail) ((V::load_partial(xb + full, tail, T(0)) - m) - l).store_partial(ob + full, tail);
        }
    }
};

template <class T, RowOutput kOut>
void run(const void* x, int64_t rows, int64_t cols, void* out, int threads) {
    SoftmaxKernel<T, kOut> kernel{static_cast<const T*>(x), cols, static_cast<T*>(out)};
    run_blocked(kernel, rows, cols, threads);
}

}  // namespace

void register_softmax_kernels(KernelTable& table) {
    table.logsumexp[static_cast<int>(DType::f32)] = run<float, RowOutput::lse>;
    table.logsumexp[static_cast<int>(DType::f64)] = run<double, RowOutput::lse>;
    table.softmax[static_cast<int>(DType::f32)] = run<float, RowOutput::softmax>;
    table.softmax[static_cast<int>(DType::f64)] = run<double, RowOutput::softmax>;
    table.log_softmax[static_cast<int>(DType::f32)] = run<float, RowOutput::log_softmax>;
    table.log_softmax[static_cast<int>(DType::f64)] = run<double, RowOutput::log_softmax>;
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
