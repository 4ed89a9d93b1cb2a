// The two halves of a vocabulary-parallel cross-entropy on one rank's shard
// of the logits (see vocab_shard_args.hpp): the row statistics the ranks
// exchange (one read of the shard), then, once the global log-sum-exp is
// known, the shard's gradient (one read + one write). Compiled once per ISA
// (CMakeLists.txt); registers into that ISA's table.
//
// Why the gradient kernel takes a per-row shift: p_j = exp(z_j - lse) is
// computed as exp(z_j - shift) * exp(shift - lse), the first factor in the
// compute type against a shift close to the shard's max (so z_j - shift is
// small and exact), the second folded into `mul` in float64 by the caller.
// Subtracting a float32-rounded global lse instead would cost a few ulps.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/dispatch.hpp"
#include "kernels/block_math.hpp"
#include "kernels/parallel.hpp"
#include "kernels/registration.hpp"
#include "kernels/softcap.hpp"
#include "kernels/vocab_shard_args.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// The class index of row r's target inside the shard, or -1 if the shard
// does not hold it (or the row is ignored).
inline int64_t local_target(const int64_t* target, int64_t r, int64_t vocab_start, int64_t cols) {
    const int64_t t = target[r] - vocab_start;
    return t >= 0 && t < cols ? t : -1;
}

// The row-statistics kernel, on run_blocked's protocol (parallel.hpp): each
// block swept once (its exps and, with E != none, the sum of coef * z),
// blocks merged in order in finish. kCap: the block is capped into scratch first.
template <class T, SweepSums E, bool kCap>
struct ShardStatsKernel {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr bool kWritesBlocks = false;
    static constexpr int kScratchRows = kCap ? 1 : 0;
    using Scratch = A;
    using Stats = BlockStats;

    struct Row {
        int64_t index = 0;
        A shift = 0;
        bool ignored = false;
    };

    const ShardStatsArgs& args;
    const T* x;
    int64_t C;
    double cap;

    explicit ShardStatsKernel(const ShardStatsArgs& args)
        : args(args), x(static_cast<const T*>(args.logits)), C(args.cols), cap(args.softcap) {}

    double capped(double z) const { return kCap ? cap * std::tanh(z / cap) : z; }

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        row.ignored = args.target[r] == args.ignore_index;
        if (row.ignored) return row;
        // The cap is increasing, so the capped row's shift is the capped shift.
        row.shift = static_cast<A>(capped(static_cast<double>(row_shift(x + r * C, C))));
        return row;
    }

    Coefs<T> coefs() const {
        Coefs<T> c;
        c.weight = static_cast<const A*>(args.weight);
        return c;
    }

    Stats stats(const Row& row, int64_t b, A* scratch) const {
        if (row.ignored) return Stats{};
        const int64_t start = b * kBlock, n = block_length(C, b);
        const T* xb = x + row.index * C + start;
        if constexpr (kCap) {
            A* zb = scratch + start;
            constexpr int W = V::width;
            const int64_t full = n - n % W;
            const V c = V::broadcast(static_cast<A>(cap)), inv = V::broadcast(static_cast<A>(1.0 / cap));
            for (int64_t i = 0; i < full; i += W) softcap(vload(xb + i), c, inv).store(zb + i);
            if (n > full)
                softcap(vload_partial(xb + full, n - full, A(0)), c, inv).store_partial(zb + full, n - full);
            return block_stats<A, E, false>(zb, n, nullptr, coefs(), start, row.shift);
        } else {
            return block_stats<T, E, false>(xb, n, nullptr, coefs(), start, row.shift);
        }
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        const int64_t r = row.index;
        if (row.ignored) {
            args.lse[r] = args.shift[r] = args.target_logit[r] = 0.0;
            if (args.dot) args.dot[r] = 0.0;
            return;
        }
        const RowSums sums = merge_blocks(stats, nblocks);
        args.lse[r] = sums.lse;
        args.shift[r] = std::isfinite(sums.max) ? sums.max : 0.0;
        if (args.dot) args.dot[r] = sums.dot;
        const int64_t t = local_target(args.target, r, args.vocab_start, C);
        args.target_logit[r] = t >= 0 ? capped(static_cast<double>(to_acc(x[r * C + t]))) : 0.0;
    }

    void write_block(const Row&, int64_t, const Stats&, A*) const {}
};

template <class T, SweepSums E>
void run_stats_extra(const ShardStatsArgs& args) {
    if (args.softcap > 0) {
        ShardStatsKernel<T, E, true> kernel(args);
        run_blocked(kernel, args.rows, args.cols, args.threads);
    } else {
        ShardStatsKernel<T, E, false> kernel(args);
        run_blocked(kernel, args.rows, args.cols, args.threads);
    }
}

template <class T>
void run_stats(const ShardStatsArgs& args) {
    if (!args.want_dot)
        run_stats_extra<T, SweepSums::none>(args);
    else if (args.weight)
        run_stats_extra<T, SweepSums::sum_wx>(args);
    else
        run_stats_extra<T, SweepSums::sum_x>(args);
}

// The gradient of one block of a row (see ShardGradArgs): every element is
// read once and written once; no state crosses blocks, so any split of
// the (row, block) pairs over threads gives the same bits.
// kCoef: 0 no smoothing term, 1 coef = 1, 2 coef = weight.
template <class T, int kCoef, bool kCap>
void shard_grad_block(const ShardGradArgs& args, int64_t r, int64_t b) {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    constexpr int W = V::width;
    const int64_t C = args.cols, start = b * kBlock, n = block_length(C, b);
    const T* xb = static_cast<const T*>(args.logits) + r * C + start;
    T* gb = static_cast<T*>(args.grad) + r * C + start;
    if (args.target[r] == args.ignore_index) {
        std::memset(static_cast<void*>(gb), 0, static_cast<size_t>(n) * sizeof(T));
        return;
    }
    const A* w = static_cast<const A*>(args.weight);
    const V shift = V::broadcast(static_cast<A>(args.shift[r])),
            mul = V::broadcast(static_cast<A>(args.mul[r]));
    // sub is null without a smoothing term (kCoef 0): not read then.
    const double sub_t = kCoef != 0 ? args.sub[r] : 0.0;
    const V minus_sub = V::broadcast(static_cast<A>(-sub_t)), one = V::broadcast(A(1));
    const V c = V::broadcast(static_cast<A>(kCap ? args.softcap : 1.0));
    const V inv = V::broadcast(static_cast<A>(kCap ? 1.0 / args.softcap : 1.0));
    const int64_t t_row = local_target(args.target, r, args.vocab_start, C);
    const int64_t t = t_row >= 0 ? t_row - start : -1;  // offset in this block, if here
    const double at = args.at_target[r], mul_t = args.mul[r];
    // Lanes [i, i + W); with partial > 0 only the first `partial` are classes
    // (padding lanes read 0 and are never stored).
    auto lanes = [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
        const V xv = partial ? vload_partial(xb + i, partial, A(0)) : vload(xb + i);
        const V z = kCap ? softcap(xv, c, inv) : xv;
        const V e = exp(z - shift);
        V v = e * mul;
        if constexpr (kCoef == 1) v = v + minus_sub;
        if constexpr (kCoef == 2) {
            const V wv = partial ? vload_partial(w + start + i, partial, A(0)) : vload(w + start + i);
            v = fmadd(wv, minus_sub, v);
        }
        if (t >= i && t < i + W) {
            // The target's lane in double: p_t * mul - at_target cancels when
            // p_t is near 1, so mul is not rounded to the compute type first.
            const int k = static_cast<int>(t - i);
            double g_t = static_cast<double>(lane(e, k)) * mul_t - at;
            if constexpr (kCoef == 1) g_t -= sub_t;
            if constexpr (kCoef == 2) g_t -= sub_t * static_cast<double>(w[start + t]);
            v = with_lane(v, k, static_cast<A>(g_t));
        }
        if constexpr (kCap) {
            const V u = z * inv;
            v = v * ((one - u) * (one + u));
        }
        return v;
    };
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        prefetch_ahead(xb + i, kPrefetchBytes<T>);
        vstore(gb + i, lanes(i, 0));
    }
    if (i < n) vstore_partial(gb + i, n - i, lanes(i, n - i));
}

template <class T, int kCoef, bool kCap>
void run_grad_kind(const ShardGradArgs& args) {
    const int64_t nblocks = num_blocks(args.cols), pairs = args.rows * nblocks;
    int threads = args.threads;
    const int64_t elements = args.rows * args.cols;
    if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
        threads = 1;
    parallel_ranges(pairs, threads, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) shard_grad_block<T, kCoef, kCap>(args, i / nblocks, i % nblocks);
    });
    note_kernel_end();
}

template <class T, int kCoef>
void run_grad_coef(const ShardGradArgs& args) {
    if (args.softcap > 0)
        run_grad_kind<T, kCoef, true>(args);
    else
        run_grad_kind<T, kCoef, false>(args);
}

template <class T>
void run_grad(const ShardGradArgs& args) {
    if (!args.sub)
        run_grad_coef<T, 0>(args);
    else if (args.weight)
        run_grad_coef<T, 2>(args);
    else
        run_grad_coef<T, 1>(args);
}

}  // namespace

void register_vocab_shard_kernels(KernelTable& table) {
    PYCE_REGISTER_EVERY_DTYPE(table.shard_stats, run_stats);
    PYCE_REGISTER_EVERY_DTYPE(table.shard_grad, run_grad);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
