// The evaluation kernel (loss, entropy, max probability, target rank per
// position; evaluate.cpp) with one position per vector lane, for few classes:
// the class axis in the middle ((outer, C, inner): PyTorch's (N, C, d1, ...),
// NumPy's axis=0) and short rows of the usual (rows, C) layout alike.
//
// A row of a few classes reduced on its own is a chain of dependent steps
// (max, sweep, block merge, log, entropy) far longer than its C exps: the
// row kernel took 60 ns per position of 21 classes, against a cross-entropy
// of the same positions in lanes (strided_lanes.hpp) at 9. Here, as there, a
// group of NV vectors holds NV * W positions; the group's logits are copied
// into a contiguous (C, L) tile (strided: C contiguous vector loads; rows:
// the rows transposed in registers, tile_transpose.hpp) while their per-lane
// max is taken, and one sweep of the tile gathers per lane
//   S = sum_c e_c (as `ones` + `rest`, see strided_lanes.hpp), e_c = exp(x_c - m),
//   D = sum_c e_c (x_c - m), and the rank #{c : x_c > x_t};
// from which, in vectors for the whole group,
//   loss = (m - x_t) + log S,  entropy = log S - D / S,  max_prob = exp(-log S).
// A position whose largest term dominates its sum (log S below
// kLogDominated) takes log S from its terms summed once more without that
// term (dominant.hpp's term_below, as the row kernels' set_dominant): a
// confident prediction keeps the relative precision of its small loss.
//
// The arithmetic of a lane depends only on its C values, never on the layout,
// the group or the thread: the strided and the row layouts give bitwise the
// same numbers for the same values, whatever the thread count. Lanes holding
// a nan or +inf, or only -inf, are handed to the row kernel (one row, its
// values gathered), which writes what it writes for such rows. Positions
// whose target is ignore_index keep their outputs untouched, as there.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/dominant.hpp"
#include "kernels/evaluate_args.hpp"
#include "kernels/lane_tile.hpp"
#include "kernels/parallel.hpp"
#include "kernels/strided_lanes.hpp"
#include "kernels/tile_transpose.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// Below this many classes evaluate takes the lanes (both layouts, so that a
// class axis in the middle gives bitwise what the same values with their
// class axis last give); from here on the row kernels, whose per-row steps
// are then a small share of a row's exps.
constexpr int64_t kEvaluateLanesBelowCols = 128;

// RowKernel: evaluate.cpp's row kernel, for the lanes the vectors cannot hold.
template <class T, bool kTarget, bool kRowLanes, class RowKernel>
struct EvaluateLanes {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr int W = V::width;
    static constexpr int NV = 4;  // vectors per group: the sums of 4 chains in flight
    static constexpr int L = NV * W;
    // The sums in two levels, this many classes at a time (as strided_lanes.hpp).
    static constexpr int64_t kSumBlock = 32;
    // Positions per unit of work shared out to threads (a multiple of L).
    static constexpr int64_t kChunkLanes = 16 * L;

    const EvaluateArgs* args = nullptr;
    const T* x = nullptr;
    int64_t outer = 0, C = 0, inner = 0;

    const T* col(int64_t o, int64_t c, int64_t j) const {
        if constexpr (kRowLanes) return x + j * C + c;
        return x + (o * C + c) * inner + j;
    }

    template <bool kFull>
    void group(int64_t o, int64_t j0, int64_t n, A* tile) const {
        const int64_t pos = o * inner + j0;  // the group's first position (per-position arrays)
        const V zero = V::broadcast(A(0)), one = V::broadcast(A(1));
        // Per-lane target index; -1 for ignored lanes and padding.
        alignas(64) int64_t index[L];
        bool any_scored = !kTarget;
        if constexpr (kTarget) {
            const int64_t* target = args->target + pos;
            const int64_t ignore = args->ignore_index;
            for (int64_t l = 0; l < n; ++l) index[l] = target[l] == ignore ? -1 : target[l];
            for (int64_t l = n; l < L; ++l) index[l] = -1;
            for (int64_t l = 0; l < n; ++l) any_scored |= index[l] >= 0;
        } else {
            for (int64_t l = 0; l < L; ++l) index[l] = l < n ? 0 : -1;
        }
        if (!any_scored) return;  // every position ignored: nothing to write

        V mx[NV];
        fill_lane_tile<NV, kFull, kRowLanes>(x, C, inner, o, j0, n, tile, mx);
        V shift[NV], xt[NV];
        for (int k = 0; k < NV; ++k) shift[k] = finite_or_zero(mx[k]), xt[k] = zero;
        if constexpr (kTarget) {
            alignas(64) A xt_l[L];
            for (int64_t l = 0; l < L; ++l) xt_l[l] = index[l] >= 0 ? tile[index[l] * L + l] : A(0);
            for (int k = 0; k < NV; ++k) xt[k] = V::load(xt_l + k * W);
        }

        // One sweep of the tile: S (ones + rest), D and the rank count.
        const V lowest = V::broadcast(std::numeric_limits<A>::lowest());
        V ones[NV], rest[NV], dev[NV], count[NV];
        for (int k = 0; k < NV; ++k) ones[k] = rest[k] = dev[k] = count[k] = zero;
        for (int64_t c0 = 0; c0 < C; c0 += kSumBlock) {
            const int64_t c1 = std::min(C, c0 + kSumBlock);
            V part[NV], dpart[NV];
            for (int k = 0; k < NV; ++k) part[k] = dpart[k] = zero;
            for (int64_t c = c0; c < c1; ++c) {
                const A* t = tile + c * L;
                for (int k = 0; k < NV; ++k) {
                    const V xv = V::load(t + k * W);
                    const V d = xv - shift[k];
                    const V e = exp_bounded(d);
                    add_split(e, ones[k], part[k]);
                    // (-inf deviations, whose exp is 0, clamped so that 0 * d is 0.)
                    dpart[k] = fmadd(e, max(d, lowest), dpart[k]);
                    if constexpr (kTarget) count[k] = count[k] + keep_where_greater(xv, xt[k], one);
                }
            }
            for (int k = 0; k < NV; ++k) rest[k] = rest[k] + part[k], dev[k] = dev[k] + dpart[k];
        }

        // Lanes whose max or sum is not finite go to the row kernel.
        alignas(64) A top_l[L], sum_l[L];
        V sum[NV];
        for (int k = 0; k < NV; ++k) {
            sum[k] = ones[k] + rest[k];
            mx[k].store(top_l + k * W), sum[k].store(sum_l + k * W);
        }
        bool bad[L];
        for (int64_t l = 0; l < n; ++l)
            bad[l] = !(std::isfinite(top_l[l]) && std::isfinite(sum_l[l]) && sum_l[l] > 0);

        V ls[NV];
        for (int k = 0; k < NV; ++k) ls[k] = log_of_split_sum(ones[k], rest[k]);
        refine_dominated(tile, mx, ls);

        alignas(64) A loss_l[L], ent_l[L], maxp_l[L], rank_l[L];
        for (int k = 0; k < NV; ++k) {
            // H = log S - D / S: both terms >= 0 (D <= 0), no cancellation.
            const V h = ls[k] - dev[k] / sum[k];
            max(h, zero).store(ent_l + k * W);
            exp_bounded(zero - ls[k]).store(maxp_l + k * W);
            if constexpr (kTarget) {
                // lse - x_t as (max - x_t) + log S: exact near the max.
                ((shift[k] - xt[k]) + ls[k]).store(loss_l + k * W);
                count[k].store(rank_l + k * W);
            }
        }
        const EvaluateArgs& a = *args;
        for (int64_t l = 0; l < n; ++l) {
            if (index[l] < 0) continue;  // ignored: untouched
            if (bad[l]) {
                row_fallback(o, j0 + l, pos + l);
                continue;
            }
            a.entropy[pos + l] = static_cast<double>(ent_l[l]);
            if (a.max_prob) a.max_prob[pos + l] = static_cast<double>(maxp_l[l]);
            if constexpr (kTarget) {
                a.loss[pos + l] = static_cast<double>(loss_l[l]);
                a.rank[pos + l] = static_cast<double>(rank_l[l]);
            }
        }
    }

    // Lanes whose largest term dominates their sum (log S below
    // kLogDominated) take log S from the other terms summed again with their
    // exps' argument rounding recovered (dominant.hpp), from the tile.
    void refine_dominated(const A* tile, const V (&top)[NV], V (&ls)[NV]) const {
        const V limit = V::broadcast(static_cast<A>(kLogDominated)), zero = V::broadcast(A(0)),
                one = V::broadcast(A(1));
        bool any = false;
        for (int k = 0; k < NV; ++k) any |= any_greater(limit, ls[k]);
        if (!any) return;
        V neg_top[NV], rest[NV];
        for (int k = 0; k < NV; ++k) neg_top[k] = zero - top[k], rest[k] = zero;
        // In two levels, as the sweep's sums: kSumBlock classes, then the blocks.
        for (int64_t c0 = 0; c0 < C; c0 += kSumBlock) {
            const int64_t c1 = std::min(C, c0 + kSumBlock);
            V part[NV];
            for (int k = 0; k < NV; ++k) part[k] = zero;
            for (int64_t c = c0; c < c1; ++c) {
                const A* t = tile + c * L;
                for (int k = 0; k < NV; ++k)
                    part[k] = part[k] + term_below(V::load(t + k * W), top[k], neg_top[k]);
            }
            for (int k = 0; k < NV; ++k) rest[k] = rest[k] + part[k];
        }
        for (int k = 0; k < NV; ++k)
            ls[k] = select_equal(less(ls[k], limit), one, log_of_split_sum(one, rest[k]), ls[k]);
    }

    // The row kernel on one position's values (a nan, +inf or only -inf):
    // exactly what a row of the (rows, C) layout gets.
    void row_fallback(int64_t o, int64_t j, int64_t p) const {
        T row[kEvaluateLanesBelowCols];
        for (int64_t c = 0; c < C; ++c) row[c] = *col(o, c, j);
        EvaluateArgs one = *args;
        one.logits = row;
        one.rows = 1;
        one.inner = 1;
        one.threads = 1;
        if (one.target) one.target += p;
        if (one.loss) one.loss += p;
        if (one.entropy) one.entropy += p;
        if (one.max_prob) one.max_prob += p;
        if (one.rank) one.rank += p;
        RowKernel kernel(one);
        std::vector<typename RowKernel::Stats> stats;
        run_rows_here(kernel, 0, 1, C, static_cast<typename RowKernel::Scratch*>(nullptr), stats);
    }

    void run(int threads) const {
        run_lane_groups<L, kRowLanes>(outer, C, inner, threads, kChunkLanes,
                                      static_cast<size_t>(C * L) * sizeof(A),
                                      [&](auto full, int64_t o, int64_t j0, int64_t n, void* scratch) {
                                          group<decltype(full)::value>(o, j0, n, static_cast<A*>(scratch));
                                      });
    }
};

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
