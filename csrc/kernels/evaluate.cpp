// Evaluation metrics in one pass over the logits (pyce.evaluate) and the
// entropy of softmax (pyce.entropy). Compiled once per ISA (CMakeLists.txt);
// registers into that ISA's table.
//
// Per row, from one sweep of each block (info_math.hpp's entropy_block):
//   loss      = lse - x_t                    (-log q_t)
//   entropy   = H(q) = lse - sum_j q_j x_j
//   max_prob  = max_j q_j = exp(max - lse) = exp(-log_sum)
//   rank      = #{j : x_j > x_t}             (top-k correct <=> rank < k)
// Ties are not counted against the target: a target tied with the largest
// logit has rank 0 (torch.topk would break the tie by position).
// Few classes run with one position per vector lane (evaluate_lanes.hpp);
// more, with the class axis in the middle, tile by tile (strided_tiles.hpp).
#include <cstdint>
#include <vector>

#include "kernels/registration.hpp"
#include "runtime/dispatch.hpp"
#include "kernels/evaluate_args.hpp"
#include "kernels/evaluate_lanes.hpp"
#include "kernels/block_math.hpp"
#include "kernels/dominant.hpp"
#include "kernels/info_math.hpp"
#include "kernels/parallel.hpp"
#include "kernels/strided_tiles.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

template <class T, bool kTarget>
struct EvaluateKernel {
    using A = Acc<T>;
    static constexpr bool kWritesBlocks = false;
    static constexpr bool kScratch = false;
    static constexpr int kScratchRows = kScratch ? 1 : 0;  // rows of scratch run_blocked provides
    using Scratch = A;
    using Stats = EntropyBlockStats;

    struct Row {
        int64_t index = 0;
        A shift = 0;
        bool ignored = false;
        A x_target = 0;
    };

    const EvaluateArgs& args;
    const T* x;
    int64_t C;

    explicit EvaluateKernel(const EvaluateArgs& args)
        : args(args), x(static_cast<const T*>(args.logits)), C(args.cols) {}

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        if constexpr (kTarget) {
            const int64_t t = args.target[r];
            row.ignored = t == args.ignore_index;
            if (row.ignored) return row;  // its logits are never read
            row.x_target = to_acc(x[r * C + t]);
        }
        row.shift = row_shift(x + r * C, C);
        return row;
    }

    Stats stats(const Row& row, int64_t b, A*) const {
        if (row.ignored) return Stats{};
        const int64_t start = b * kBlock, n = block_length(C, b);
        return entropy_block<T, kTarget>(x + row.index * C + start, n, row.shift, row.x_target);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        if (row.ignored) return;
        const int64_t r = row.index;
        // merge_blocks takes an array of BlockStats: a per-thread copy, so no
        // allocation per row. The row's max is the max of its blocks'.
        thread_local std::vector<BlockStats> blocks;
        blocks.resize(static_cast<size_t>(nblocks));
        double row_max = -kInf;
        for (int64_t k = 0; k < nblocks; ++k) {
            blocks[k] = stats[k].b;
            row_max = stats[k].max > row_max ? stats[k].max : row_max;
        }
        RowSums sums = merge_blocks(blocks.data(), nblocks);
        if (sums.lse == kInf) sums.lse = kNaN;  // a +inf logit: no distribution
        const bool finite = std::isfinite(sums.lse);
        // A dominant class (kernels/dominant.hpp): lse - max = log1p(rest).
        if (finite && (sums.max - row_max) + sums.log_sum < kLogDominated)
            set_dominant(sums, row_max, sum_below(x + r * C, C, static_cast<A>(row_max)));
        args.entropy[r] = row_entropy(sums, blocks.data(), nblocks);
        // max_j q_j = exp(max - lse), with max - lse = (max - m) - log_sum
        // (m: the merged shift; max - m is exact).
        if (args.max_prob) args.max_prob[r] = finite ? std::exp((row_max - sums.max) - sums.log_sum) : kNaN;
        if constexpr (kTarget) {
            const double xt = static_cast<double>(row.x_target);
            // lse - x_t as (max - x_t) + log_sum: exact near the max.
            args.loss[r] = finite ? (sums.max - xt) + sums.log_sum : sums.lse - xt;
            args.rank[r] = sums.coef;  // a sum of exact integer counts
        }
    }

    void write_block(const Row&, int64_t, const Stats&, A*) const {}
};

// Few classes (either layout): one position per vector lane
// (evaluate_lanes.hpp). More: classes last, the rows as they are; classes in
// the middle, tile by tile.
template <class T, bool kTarget, bool kRowLanes>
void run_lanes(const EvaluateArgs& args) {
    EvaluateLanes<T, kTarget, kRowLanes, EvaluateKernel<T, kTarget>> lanes;
    lanes.args = &args;
    lanes.x = static_cast<const T*>(args.logits);
    lanes.C = args.cols;
    lanes.outer = kRowLanes ? 1 : args.rows / args.inner;
    lanes.inner = kRowLanes ? args.rows : args.inner;  // rows as lanes: the rows are the positions
    lanes.run(args.threads);
}

template <class T, bool kTarget>
void run_layout(const EvaluateArgs& args) {
    using Kernel = EvaluateKernel<T, kTarget>;
    if (args.rows <= 0) return;
    if (args.cols > 0 && args.cols < kEvaluateLanesBelowCols) {
        if (args.inner <= 1)
            run_lanes<T, kTarget, true>(args);
        else
            run_lanes<T, kTarget, false>(args);
        return;
    }
    run_rows_or_tiles<Kernel, T, T, 1>(args, {static_cast<const T*>(args.logits)}, static_cast<T*>(nullptr),
                                       [](EvaluateArgs& a, const Tile<T, T, 1>& tile) {
                                           a.logits = tile.inputs[0];
                                           if (a.target) a.target += tile.first;
                                           if (a.loss) a.loss += tile.first;
                                           if (a.entropy) a.entropy += tile.first;
                                           if (a.max_prob) a.max_prob += tile.first;
                                           if (a.rank) a.rank += tile.first;
                                       });
}

template <class T>
void run(const EvaluateArgs& args) {
    if (args.target)
        run_layout<T, true>(args);
    else
        run_layout<T, false>(args);
}

}  // namespace

void register_evaluate_kernels(KernelTable& table) { PYCE_REGISTER_EVERY_DTYPE(table.evaluate, run); }

}  // namespace CPU_CAPABILITY
}  // namespace pyce
