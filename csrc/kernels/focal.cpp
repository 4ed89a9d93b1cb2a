// Focal loss (Lin et al., 2017) over softmax probabilities, and its gradient,
// reading each logit once. Compiled once per ISA; registers into its table.
//
// With p = q_t = exp(x_t - lse), nll = -log p and a = alpha_t:
//     loss       = a (1 - p)^gamma nll
//     d loss/dx  = G (q - onehot(t)),   G = a ((1 - p)^gamma + gamma p (1 - p)^(gamma - 1) nll)
// i.e. the cross-entropy gradient with the row weight G instead of a, so the
// kernel is cross-entropy's block sweep (block_math.hpp) with another
// per-row factor. 1 - p is formed as -expm1(-nll): no cancellation near p = 1.
// Few classes run with one position per vector lane (strided_lanes.hpp);
// more, with the class axis in the middle, tile by tile (strided_tiles.hpp).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/registration.hpp"
#include "runtime/dispatch.hpp"
#include "kernels/focal_args.hpp"
#include "kernels/block_math.hpp"
#include "kernels/dominant.hpp"
#include "kernels/focal_terms.hpp"
#include "kernels/output_store.hpp"
#include "kernels/parallel.hpp"
#include "kernels/strided_lanes.hpp"
#include "kernels/strided_tiles.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// T: the logits' storage type; G: the gradient's (T, or float32 for 16-bit T).
template <class T, class G, bool kGrad>
struct FocalKernel {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr bool kWritesBlocks = kGrad;
    // The exps wait in the gradient, or in scratch when it is 16-bit
    // (kernels/output_store.hpp). The gradient is written with ordinary
    // stores: the non-temporal stores of cross-entropy's gradient were
    // measured for that kernel only.
    static constexpr bool kScratch = kGrad && kExpsInScratch<G, A>;
    static constexpr int kScratchRows = kScratch ? 1 : 0;  // rows of scratch run_blocked provides
    using Scratch = A;
    using Stats = BlockStats;

    struct Row {
        int64_t index = 0;
        A shift = 0;
        bool ignored = false;
        int64_t target = -1;
        // Read in finish, when the row is in cache (the gradient never overwrites the logits).
        double x_target = 0;
        double alpha = 1;
        RowSums sums;
        double grad_mul = 0;  // grad_output * G
    };

    const FocalArgs& args;
    const T* x;
    G* g;
    int64_t C;

    explicit FocalKernel(const FocalArgs& args)
        : args(args), x(static_cast<const T*>(args.logits)), g(static_cast<G*>(args.grad)), C(args.cols) {}

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        row.target = args.target[r];
        row.ignored = row.target == args.ignore_index;
        if (row.ignored) return row;
        row.alpha = args.alpha ? args.alpha[row.target] : args.alpha_scalar;
        row.shift = row_shift(x + r * C, C);
        return row;
    }

    A* exps(const Row& row, int64_t b, A* scratch) const {
        if constexpr (kScratch) return scratch + b * kBlock;
        return reinterpret_cast<A*>(g + row.index * C) + b * kBlock;
    }

    Stats stats(const Row& row, int64_t b, A* scratch) const {
        if (row.ignored) return Stats{};
        const int64_t start = b * kBlock, n = block_length(C, b);
        return block_stats<T, SweepSums::none, kGrad>(x + row.index * C + start, n,
                                                      kGrad ? exps(row, b, scratch) : nullptr, Coefs<T>{},
                                                      start, row.shift);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        if (row.ignored) {
            args.row_loss[row.index] = 0.0;
            return;
        }
        RowSums& sums = row.sums;
        sums = merge_blocks(stats, nblocks);
        if (sums.lse == kInf) sums.lse = kNaN;
        const double lse = sums.lse;
        row.x_target = static_cast<double>(to_acc(x[row.index * C + row.target]));
        double nll = std::isfinite(lse) ? (sums.max - row.x_target) + sums.log_sum : lse - row.x_target;
        if (nll < kLogDominated) {
            // A confident, correct prediction (q_t > 2/3: the target is the
            // unique max): nll = log1p of the rest, as cross-entropy's, so that
            // gamma = 0 agrees with cross-entropy to rounding (kernels/dominant.hpp).
            // The logits are intact here: the gradient never overwrites them.
            set_dominant(sums, row.x_target,
                         sum_below(x + row.index * C, C, to_acc(x[row.index * C + row.target])));
            nll = sums.log_sum;
        }
        double loss, factor;
        focal_terms(nll, row.alpha, args.gamma, loss, factor);
        args.row_loss[row.index] = loss;
        const double scale = args.grad_scale_rows ? args.grad_scale_rows[row.index] : args.grad_scale;
        row.grad_mul = scale * factor;
    }

    void write_block(const Row& row, int64_t b, const Stats& s, A* scratch) const {
        constexpr int W = V::width;
        const int64_t start = b * kBlock, n = block_length(C, b);
        G* gb = g + row.index * C + start;
        if (row.ignored) {
            zero_block(gb, n);
            return;
        }
        const A* eb = exps(row, b, scratch);  // may be the gradient itself: read before written
        const V mul = V::broadcast(static_cast<A>(row.grad_mul * block_factor(s, row.sums)));
        const int64_t t = row.target - start;  // the target's offset in the block (outside it if not there)
        store_block(gb, n, [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
            V v = (partial ? V::load_partial(eb + i, partial, A(0)) : V::load(eb + i)) * mul;
            if (t >= i && t < i + W) {
                // -G at the target, subtracted in double (exact near q_t = 1).
                const int k = static_cast<int>(t - i);
                v = with_lane(v, k, static_cast<A>(static_cast<double>(lane(v, k)) - row.grad_mul));
            }
            return v;
        });
    }
};

// Below this many classes (either layout) one position per vector lane
// (ClassLanes, strided_lanes.hpp), as evaluate's (evaluate_lanes.hpp): a row
// of few classes reduced on its own is a chain of dependent steps far longer
// than its exps. Both layouts take the same lanes, so a class axis in the
// middle gives bitwise what the same values with their class axis last give.
constexpr int64_t kFocalLanesBelowCols = 128;

template <class T, class G, bool kGrad, bool kRowLanes>
void run_lanes(const FocalArgs& args) {
    // The lanes read their targets, scales and row losses from cross-entropy's
    // arguments (no class weights, smoothing or z-loss); alpha and gamma apply
    // in their focal finish.
    CrossEntropyArgs ce;
    ce.logits = args.logits;
    ce.rows = args.rows;
    ce.cols = args.cols;
    ce.target = args.target;
    ce.ignore_index = args.ignore_index;
    ce.grad = args.grad;
    ce.grad_f32 = args.grad_f32;
    ce.grad_scale = args.grad_scale;
    ce.grad_scale_rows = args.grad_scale_rows;
    ce.row_loss = args.row_loss;
    ce.threads = args.threads;
    ce.inner = args.inner;
    constexpr LaneOutput M = kGrad ? LaneOutput::focal_grad : LaneOutput::focal_loss;
    ClassLanes<T, G, M, SweepSums::none, kRowLanes> k{};
    k.x = static_cast<const T*>(args.logits);
    k.out = static_cast<G*>(args.grad);
    k.C = args.cols;
    k.inner = kRowLanes ? args.rows : args.inner;  // rows as lanes: the rows are the positions
    k.outer = kRowLanes ? 1 : args.rows / args.inner;
    k.args = &ce;
    k.focal_alpha = args.alpha;
    k.focal_alpha_scalar = args.alpha_scalar;
    k.focal_gamma = args.gamma;
    if constexpr (kGrad && !kRowLanes)
        k.stream = can_stream(args.grad, args.logits, k.outer, k.C, k.inner, sizeof(G));
    k.run(args.threads);
}

// Few classes: the lanes. More: classes last, the rows as they are; classes
// in the middle, tile by tile.
template <class T>
void run(const FocalArgs& args) {
    with_grad_kind<T>(args.grad, args.grad_f32, [&](auto kind) {
        using G = typename decltype(kind)::type;
        constexpr bool kGrad = decltype(kind)::with_grad;
        if (args.rows > 0 && args.cols > 0 && args.cols < kFocalLanesBelowCols) {
            if (args.inner <= 1)
                run_lanes<T, G, kGrad, true>(args);
            else
                run_lanes<T, G, kGrad, false>(args);
            return;
        }
        using Kernel = FocalKernel<T, G, kGrad>;
        run_rows_or_tiles<Kernel, T, G, 1>(args, {static_cast<const T*>(args.logits)},
                                           static_cast<G*>(args.grad),
                                           [](FocalArgs& a, const Tile<T, G, 1>& tile) {
                                               a.logits = tile.inputs[0];
                                               a.grad = tile.grad;
                                               a.target += tile.first;
                                               a.row_loss += tile.first;
                                               if (a.grad_scale_rows) a.grad_scale_rows += tile.first;
                                           });
    });
}

}  // namespace

void register_focal_kernels(KernelTable& table) { PYCE_REGISTER_EVERY_DTYPE(table.focal_loss, run); }

}  // namespace CPU_CAPABILITY
}  // namespace pyce
