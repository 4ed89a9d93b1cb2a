// The fused cross-entropy kernel: per-row losses and, optionally, the
// gradient w.r.t. the logits, reading each logit from memory once.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
//
// Every case is one formula. A row's loss is a weighted sum of -log q:
//     loss = alpha * (lse - x_t) + beta * (K * lse - sum_c coef_c x_c)
// and its gradient is
//     d loss / d x_j = (alpha + beta * K) * q_j - alpha * [j == t] - beta * coef_j
// with q_j = exp(x_j - lse). For a class-index target t with label smoothing
// eps and class weights w: alpha = (1 - eps) w_t, beta = eps / C, coef = w
// (or 1), K = sum(coef). For a probability target y there is no t (alpha = 0),
// beta = 1 and coef = ((1 - eps) y + eps / C) w, whose sum K is gathered
// in the same sweep. This is torch.nn.functional.cross_entropy's definition.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/registration.hpp"
#include "runtime/dispatch.hpp"
#include "kernels/block_math.hpp"
#include "kernels/dominant.hpp"
#include "kernels/output_store.hpp"
#include "kernels/parallel.hpp"
#include "kernels/short_rows.hpp"
#include "kernels/softcap.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// T: the logits' storage type; G: the gradient's (T, or float32 for 16-bit T).
// kCap: the logits are soft-capped first, z' = c tanh(z / c) (Gemma 2); every
// formula above then applies to z', and the gradient is multiplied by
// dz'/dz = 1 - (z'/c)^2. The capped block is kept in a scratch row.
// kStreamWide: a float32/float64 gradient streamed to memory
// (streams_wide_output in kernels/output_store.hpp): its exps wait in a
// scratch row, as a 16-bit gradient's do, so that its lines are written once
// and never read.
template <class T, class G, SweepSums E, bool kGrad, bool kCap, bool kStreamWide = false>
struct CrossEntropyKernel {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr bool kSoft = E == SweepSums::soft || E == SweepSums::soft_w;
    static constexpr bool kWritesBlocks = kGrad;
    // The exps are kept in the gradient until write_block, unless it is 16-bit
    // or streamed (kStreamWide).
    static constexpr bool kScratch = kGrad && kExpsInScratch<G, A, kStreamWide>;
    static constexpr int kScratchRows = (kScratch ? 1 : 0) + (kCap ? 1 : 0);
    // The sweep keeps each pair of vectors' exps in the order
    // vload_pair_any_order loads them (bfloat16 on AVX-512 and AVX2: even
    // and odd elements, widened by a shift and a mask instead of two
    // shuffles), and write_block stores the pair back in order (for a bfloat16
    // gradient, a cheaper pack than two in-order vectors take). Only where every
    // element's coefficient is the same and the sweep reads T itself (not
    // capped float32 scratch). Every gradient dtype takes it, so a call's
    // loss is bitwise the same whichever dtype its gradient has (and the
    // forward's, which loads pairs the same way).
    static constexpr bool kInterleaved =
        kGrad && !kCap && kInterleavedPairs<T> && (E == SweepSums::none || E == SweepSums::sum_x);
    using Scratch = A;
    using Stats = BlockStats;

    struct Row {
        int64_t index = 0;
        A shift = 0;           // see row_shift
        bool ignored = false;  // target == ignore_index: no loss, no gradient
        bool unread = false;   // ignored and no lse wanted: the row is not even read
        int64_t target = -1;   // class index (hard targets)
        double x_target = 0;   // its logit (read in finish unless target_early)
        double alpha = 0;      // weight of -log q_t
        double scale = 1;      // grad_output (/ divisor for the mean)
        RowSums sums;          // lse is nan for a row without a distribution
        double grad_mul = 0;   // scale * (alpha + beta * K)
    };

    const CrossEntropyArgs& args;
    const T* x;
    G* g;
    const A* weight;
    int64_t C;
    double beta;        // eps / C for hard targets, 1 for probability targets
    double coef_total;  // K for hard targets: C, or sum(w)
    double cap;         // the soft cap c (kCap)
    // The sweep overwrites the logits (a float32/float64 gradient in place:
    // its exps are stored there). Then the target's logit is read in begin,
    // before the sweep; otherwise in finish, when the row is in cache (read in
    // begin, it is a cache miss the row's sweep waits behind). A 16-bit
    // gradient in place is written after finish.
    bool target_early;
    // Write the gradient with non-temporal stores (kernels/output_store.hpp):
    // a large gradient whose exps wait in scratch (16-bit, or kStreamWide),
    // not over the logits (streamable_output).
    bool stream_grad;

    explicit CrossEntropyKernel(const CrossEntropyArgs& args)
        : args(args),
          x(static_cast<const T*>(args.logits)),
          g(static_cast<G*>(args.grad)),
          weight(static_cast<const A*>(args.weight)),
          C(args.cols),
          cap(args.softcap) {
        const bool in_place = args.grad == args.logits;
        target_early = in_place && !kScratch;
        beta = kSoft ? 1.0 : args.label_smoothing / static_cast<double>(C);
        stream_grad = kScratch && streamable_output(args.grad, args.logits, args.rows * args.cols, sizeof(G));
        coef_total = static_cast<double>(C);
        if (weight) {
            coef_total = 0;
            for (int64_t c = 0; c < C; ++c) coef_total += static_cast<double>(weight[c]);
        }
    }

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        row.scale = args.grad_scale_rows ? args.grad_scale_rows[r] : args.grad_scale;
        if constexpr (!kSoft) {
            row.target = args.target[r];
            row.ignored = row.target == args.ignore_index;
            row.unread = row.ignored && !args.row_lse;
            if (row.unread) return row;
            if (!row.ignored) {
                if (target_early) row.x_target = target_logit(row);
                const double w_t = weight ? static_cast<double>(weight[row.target]) : 1.0;
                row.alpha = (1.0 - args.label_smoothing) * w_t;
            }
        }
        // The cap is increasing, so the capped row's shift is the capped shift.
        row.shift = static_cast<A>(capped(static_cast<double>(row_shift(x + r * C, C))));
        return row;
    }

    double capped(double z) const { return kCap ? cap * std::tanh(z / cap) : z; }
    double target_logit(const Row& row) const {
        return capped(static_cast<double>(to_acc(x[row.index * C + row.target])));
    }

    // The scratch rows: exps (16-bit gradient), then capped logits (kCap).
    A* capped_row(A* scratch) const { return scratch + (kScratch ? C : 0); }

    Coefs<T> coefs(int64_t r) const {
        Coefs<T> c;
        c.weight = weight;
        if constexpr (kSoft) c.y = static_cast<const T*>(args.soft_target) + r * C;
        c.keep = static_cast<A>(1.0 - args.label_smoothing);
        c.uniform = static_cast<A>(args.label_smoothing / static_cast<double>(C));
        return c;
    }

    // Where block b's exps (and then its gradient, in the compute type) are kept.
    A* exps(const Row& row, int64_t b, A* scratch) const {
        if constexpr (kScratch) return scratch + b * kBlock;
        return reinterpret_cast<A*>(g + row.index * C) + b * kBlock;
    }

    Stats stats(const Row& row, int64_t b, A* scratch) const {
        if (row.unread) return Stats{};
        const int64_t start = b * kBlock, n = block_length(C, b);
        const T* xb = x + row.index * C + start;
        A* e_out = kGrad ? exps(row, b, scratch) : nullptr;
        if constexpr (kCap) {
            // Cap the block into scratch (read from memory once), then sweep it there.
            A* zb = capped_row(scratch) + start;
            constexpr int W = V::width;
            const int64_t full = n - n % W;
            const V c = V::broadcast(static_cast<A>(cap)), inv = V::broadcast(static_cast<A>(1.0 / cap));
            for (int64_t i = 0; i < full; i += W) softcap(vload(xb + i), c, inv).store(zb + i);
            if (n > full)
                softcap(vload_partial(xb + full, n - full, A(0)), c, inv).store_partial(zb + full, n - full);
            return block_stats<A, E, kGrad, T>(zb, n, e_out, coefs(row.index), start, row.shift);
        } else {
            return block_stats<T, E, kGrad, T, kInterleaved>(xb, n, e_out, coefs(row.index), start,
                                                             row.shift);
        }
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        if (!row.unread) {
            row.sums = merge_blocks(stats, nblocks);
            if (args.row_lse) args.row_lse[row.index] = row.sums.lse;
        }
        if (row.ignored) {
            args.row_loss[row.index] = 0.0;
            return;
        }
        RowSums& sums = row.sums;
        // A +inf logit leaves no distribution: the loss is nan (as PyTorch).
        if (sums.lse == kInf) sums.lse = kNaN;
        double lse = sums.lse;
        double loss, K;
        if constexpr (kSoft) {
            K = sums.coef;
            loss = K * lse - sums.dot;
        } else {
            K = coef_total;
            if (!target_early) row.x_target = target_logit(row);
            // lse - x_t, as (max - x_t) + log_sum when finite: exact near the max.
            double nll = std::isfinite(lse) ? (sums.max - row.x_target) + sums.log_sum : lse - row.x_target;
            if constexpr (!kCap) {
                if (nll < kLogDominated) {
                    // A confident, correct prediction: the target is the row's
                    // unique max (q_t > 2/3); its loss is log1p of the rest.
                    set_dominant(sums, row.x_target, rest_beside_target(row, stats, nblocks));
                    nll = sums.log_sum;
                    if (args.row_lse) args.row_lse[row.index] = sums.lse;
                }
            }
            lse = sums.lse;
            loss = row.alpha * nll;
            if (E != SweepSums::none) loss += beta * (K * lse - sums.dot);
        }
        // PaLM's auxiliary z-loss, z * lse^2, pulls lse towards 0; its gradient
        // is 2 z lse q, so it only adds to the weight of q.
        double q_weight = E == SweepSums::none ? row.alpha : row.alpha + beta * K;
        if (args.z_loss != 0.0) {
            loss += args.z_loss * lse * lse;
            q_weight += 2.0 * args.z_loss * lse;
        }
        args.row_loss[row.index] = loss;
        row.grad_mul = row.scale * q_weight;
    }

    // sum_{j != t} exp(x_j - x_t) of a row whose target is its max (see
    // kernels/dominant.hpp), as sum_b exp(shift_b - x_t) sum_{j != t} e_j over
    // the sweep's exps e_j = exp(x_j - shift_b): read where the sweep stored
    // them (a float32/float64 gradient, over the logits when in place),
    // computed again the same way otherwise, so the loss is bitwise the same
    // with or without a gradient and in place or not.
    double rest_beside_target(const Row& row, const Stats* stats, int64_t nblocks) const {
        constexpr bool kStored = kGrad && !kScratch;
        double rest = 0;
        for (int64_t b = 0; b < nblocks; ++b) {
            if (stats[b].sum == 0) continue;
            const int64_t start = b * kBlock, n = block_length(C, b), skip = row.target - start;
            double sum;
            if constexpr (kStored)
                sum = sum_stored_except(reinterpret_cast<const A*>(g + row.index * C) + start, n, skip);
            else
                sum = sum_exps_except(x + row.index * C + start, n, static_cast<A>(stats[b].shift), skip);
            rest += std::exp(stats[b].shift - row.x_target) * sum;
        }
        return rest;
    }

    // One block's gradient, computed from its stored exps: each lane is
    // q * (scale * (alpha + beta K)) [- scale * beta * coef] [- scale * alpha
    // at the target] [times the cap's derivative].
    struct BlockGradient {
        int64_t start;  // the block's offset in the row
        const A* eb;    // its exps (may be the gradient itself when G == A: read before written)
        const A* zb;    // its capped logits (kCap)
        Coefs<T> c;
        V mul, sub, one, inv;
        int64_t t;         // the target's offset in the block (outside it if not there)
        double at_target;  // scale * alpha, subtracted at the target

        // Lanes [i, i + W); with partial > 0 only the first `partial` are classes.
        PYCE_ALWAYS_INLINE V lanes(int64_t i, int64_t partial) const {
            constexpr int W = V::width;
            V v = (partial ? V::load_partial(eb + i, partial, A(0)) : V::load(eb + i)) * mul;
            if constexpr (E != SweepSums::none) v = fmadd(coef_at<E>(c, start + i, partial), sub, v);
            if (t >= i && t < i + W) v = minus_at_target(v, static_cast<int>(t - i));
            if constexpr (kCap) {
                // Through the cap: times 1 - u^2 = (1 - u)(1 + u), u = z'/c (exact near |u| = 1).
                const V u = (partial ? V::load_partial(zb + i, partial, A(0)) : V::load(zb + i)) * inv;
                v = v * ((one - u) * (one + u));
            }
            return v;
        }
        // Pair p of a kInterleaved block: [2Wp, 2Wp + 2W) as even and odd elements.
        PYCE_ALWAYS_INLINE void pair(int64_t p, V& even, V& odd) const {
            constexpr int W = V::width;
            const int64_t i = 2 * W * p;
            even = V::load(eb + i) * mul;
            odd = V::load(eb + i + W) * mul;
            if constexpr (E != SweepSums::none) {
                // sum_x: every element's coefficient is 1.
                even = fmadd(coef_at<E>(c, start + i, 0), sub, even);
                odd = fmadd(coef_at<E>(c, start + i, 0), sub, odd);
            }
            if (t >= i && t < i + 2 * W) {
                const int at = static_cast<int>(t - i);
                if (at % 2)
                    odd = minus_at_target(odd, at / 2);
                else
                    even = minus_at_target(even, at / 2);
            }
        }
        // -scale * alpha at lane k, subtracted in double (exact near q = 1).
        PYCE_ALWAYS_INLINE V minus_at_target(V v, int k) const {
            return with_lane(v, k, static_cast<A>(static_cast<double>(lane(v, k)) - at_target));
        }
        // With finite factors no lane can be nan: the stored exps are finite
        // (block_stats bounds them).
        bool finite() const {
            return std::isfinite(lane(mul, 0)) && std::isfinite(lane(sub, 0)) && std::isfinite(at_target);
        }
    };

    // Writes block b's gradient in one pass over its stored exps (see
    // BlockGradient), stored in G: rounded to 16 bits straight from the
    // register when G is 16-bit.
    void write_block(const Row& row, int64_t b, const Stats& s, A* scratch) const {
        const int64_t start = b * kBlock, n = block_length(C, b);
        G* gb = g + row.index * C + start;
        if (row.ignored) {
            zero_block(gb, n);
            return;
        }
        const BlockGradient grad{start,
                                 exps(row, b, scratch),
                                 kCap ? capped_row(scratch) + start : nullptr,
                                 coefs(row.index),
                                 V::broadcast(static_cast<A>(row.grad_mul * block_factor(s, row.sums))),
                                 V::broadcast(static_cast<A>(-row.scale * beta)),
                                 V::broadcast(A(1)),
                                 V::broadcast(static_cast<A>(kCap ? 1.0 / cap : 1.0)),
                                 kSoft ? -1 : row.target - start,
                                 row.scale * row.alpha};
        auto lanes = [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE { return grad.lanes(i, partial); };
        if constexpr (kInterleaved) {
            auto pair = [&](int64_t p, V& even, V& odd) PYCE_ALWAYS_INLINE { grad.pair(p, even, odd); };
            // Rounding to 16 bits skips its nan fix-up where no lane can be
            // nan (the fix-up is a measurable part of a bfloat16 gradient).
            const int64_t i = kScratch && grad.finite()
                                  ? store_interleaved_pairs<kScratch, true, G, V>(gb, n, stream_grad, pair)
                                  : store_interleaved_pairs<kScratch, false, G, V>(gb, n, stream_grad, pair);
            store_lanes(gb, i, n, stream_grad, lanes);
        } else {
            store_block<kScratch>(gb, n, stream_grad, lanes);
        }
        end_streamed_row(stream_grad, start + n == C);
    }
};

template <class T, SweepSums E>
void run_extra(const CrossEntropyArgs& args) {
    with_grad_kind<T>(args.grad, args.grad_f32, [&](auto kind) {
        using G = typename decltype(kind)::type;
        constexpr bool kGrad = decltype(kind)::with_grad;
        if (args.softcap > 0) {
            CrossEntropyKernel<T, G, E, kGrad, true> kernel(args);
            run_blocked(kernel, args.rows, args.cols, args.threads);
        } else if constexpr (kGrad && std::is_same_v<G, T> && std::is_same_v<T, Acc<T>>) {
            if (streams_wide_output(args.grad, args.logits, args.rows, args.cols, sizeof(G), args.threads)) {
                CrossEntropyKernel<T, G, E, kGrad, false, true> kernel(args);
                run_blocked(kernel, args.rows, args.cols, args.threads);
            } else {
                CrossEntropyKernel<T, G, E, kGrad, false> kernel(args);
                run_blocked(kernel, args.rows, args.cols, args.threads);
            }
        } else {
            CrossEntropyKernel<T, G, E, kGrad, false> kernel(args);
            run_blocked(kernel, args.rows, args.cols, args.threads);
        }
    });
}

// Picks the instantiation: which extra sums the sweep must gather.
template <class T>
void run(const CrossEntropyArgs& args) {
    if (short_rows_cross_entropy<T>(args)) return;  // few classes (kernels/short_rows.hpp)
    const bool smoothing = args.label_smoothing > 0.0, weighted = args.weight != nullptr;
    if (args.soft_target)
        weighted ? run_extra<T, SweepSums::soft_w>(args) : run_extra<T, SweepSums::soft>(args);
    else if (!smoothing)
        run_extra<T, SweepSums::none>(args);
    else
        weighted ? run_extra<T, SweepSums::sum_wx>(args) : run_extra<T, SweepSums::sum_x>(args);
}

}  // namespace

void register_cross_entropy_kernels(KernelTable& table) {
    PYCE_REGISTER_EVERY_DTYPE(table.cross_entropy, run);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
