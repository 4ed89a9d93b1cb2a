// logsumexp, softmax and log_softmax over the rows of a C-contiguous array.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
#include <cstdint>
#include <type_traits>

#include "kernels/registration.hpp"
#include "runtime/dispatch.hpp"
#include "kernels/block_math.hpp"
#include "kernels/dominant.hpp"
#include "kernels/output_store.hpp"
#include "kernels/parallel.hpp"
#include "kernels/short_rows.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// What the row kernel writes: only the lse, exp(x - lse), or x - lse.
enum class RowOutput { lse, softmax, log_softmax };

template <class T, RowOutput kOut>
struct SoftmaxKernel {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr bool kWritesBlocks = kOut != RowOutput::lse;
    // softmax keeps the exps until it writes its output: in the output,
    // unless it is 16-bit, then in a float32 scratch row (kernels/output_store.hpp).
    // Its output is written with ordinary stores: the non-temporal stores of
    // cross-entropy's gradient were measured for that kernel only.
    static constexpr bool kStoreExps = kOut == RowOutput::softmax;
    static constexpr bool kScratch = kStoreExps && kExpsInScratch<T, A>;
    static constexpr int kScratchRows = kScratch ? 1 : 0;
    using Scratch = A;
    using Stats = BlockStats;
    struct Row {
        int64_t index;
        A shift;  // see row_shift
        RowSums sums;
    };

    const T* x;
    int64_t cols;
    void* out;  // rows of A (lse), or rows x cols of T

    Row begin(int64_t r) const { return {r, row_shift(x + r * cols, cols), RowSums{}}; }

    // Where block b's exps are kept.
    A* exps(const Row& row, int64_t b, A* scratch) const {
        if constexpr (kScratch) return scratch + b * kBlock;
        return reinterpret_cast<A*>(static_cast<T*>(out) + row.index * cols) + b * kBlock;
    }

    Stats stats(const Row& row, int64_t b, A* scratch) const {
        const int64_t start = b * kBlock, n = block_length(cols, b);
        const T* xb = x + row.index * cols + start;
        return block_stats<T, SweepSums::none, kStoreExps>(
            xb, n, kStoreExps ? exps(row, b, scratch) : nullptr, Coefs<T>{}, start, row.shift);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        row.sums = merge_blocks(stats, nblocks);
        // The logits are intact (softmax keeps its exps in its output or scratch).
        refine_if_dominated(x + row.index * cols, cols, row.sums);
        if constexpr (kOut == RowOutput::lse) static_cast<A*>(out)[row.index] = static_cast<A>(row.sums.lse);
    }

    void write_block(const Row& row, int64_t b, const Stats& s, A* scratch) const {
        const int64_t start = b * kBlock, n = block_length(cols, b);
        T* ob = static_cast<T*>(out) + row.index * cols + start;
        if constexpr (kOut == RowOutput::softmax) {
            const A* eb = exps(row, b, scratch);
            const V f = V::broadcast(static_cast<A>(block_factor(s, row.sums)));
            store_block(ob, n, [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
                return (partial ? V::load_partial(eb + i, partial, A(0)) : V::load(eb + i)) * f;
            });
        } else {
            // (x - max) - log_sum: x - max is exact near the max, where the
            // log-probabilities are small, so they keep their relative precision.
            // A row without a distribution (lse not finite) is all nan, as in PyTorch.
            const bool finite = std::isfinite(row.sums.lse);
            const V m = V::broadcast(static_cast<A>(finite ? row.sums.max : kNaN));
            const V l = V::broadcast(static_cast<A>(row.sums.log_sum));
            const T* xb = x + row.index * cols + start;
            store_block(ob, n, [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
                return ((partial ? vload_partial(xb + i, partial, A(0)) : vload(xb + i)) - m) - l;
            });
        }
    }
};

template <class T, RowOutput kOut>
void run(const void* x, int64_t rows, int64_t cols, void* out, int threads) {
    constexpr ShortRowOutput kShort = kOut == RowOutput::lse       ? ShortRowOutput::lse
                                      : kOut == RowOutput::softmax ? ShortRowOutput::softmax
                                                                   : ShortRowOutput::log_softmax;
    if (short_rows_normaliser<T>(kShort, x, rows, cols, out, threads)) return;  // few classes
    SoftmaxKernel<T, kOut> kernel{static_cast<const T*>(x), cols, out};
    run_blocked(kernel, rows, cols, threads);
}

// The three row outputs as variable templates of the element type, for
// PYCE_REGISTER_EVERY_DTYPE.
template <class T>
constexpr RowsToVectorFn lse_entry = &run<T, RowOutput::lse>;
template <class T>
constexpr RowsToRowsFn softmax_entry = &run<T, RowOutput::softmax>;
template <class T>
constexpr RowsToRowsFn log_softmax_entry = &run<T, RowOutput::log_softmax>;

}  // namespace

void register_softmax_kernels(KernelTable& table) {
    PYCE_REGISTER_EVERY_DTYPE(table.logsumexp, lse_entry);
    PYCE_REGISTER_EVERY_DTYPE(table.softmax, softmax_entry);
    PYCE_REGISTER_EVERY_DTYPE(table.log_softmax, log_softmax_entry);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
