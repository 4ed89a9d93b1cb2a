// The distillation loss (divergence.cpp) with one position per vector lane,
// for few classes: the class axis in the middle ((outer, C, inner):
// PyTorch's (N, C, d1, ...), NumPy's axis=0) and short rows of the usual
// (rows, C) layout alike.
//
// A row of a few classes reduced on its own is a chain of dependent steps
// (two maxima, the sweep, block merges, two logs, the gradient's factors)
// far longer than its 2 C exps. Here, as in evaluate_lanes.hpp, a group of
// NV vectors holds NV * W positions: the teacher's and the student's logits
// of the group are copied into two (C, L) tiles (lane_tile.hpp) while their
// per-lane max is taken, and one sweep of both tiles gathers per lane, with
// u = t / T and v = s / T against their shifts m_t, m_s,
//   S_t = sum_c e_t,  e_t = exp(u - m_t);   S_s = sum_c e_s,  e_s = exp(v - m_s);
//   D = sum_c e_t ((u - m_t) - (v - m_s))   (0 where e_t is 0: p log(p / q) -> 0);
// from which, in vectors for the whole group,
//   KL = D / S_t - (log S_t - log S_s),  loss = T^2 KL,
//   gradient = T scale (e_s / S_s - e_t / S_t)  (the exps kept in the tiles).
// D takes the differences against the shifts, so identical teacher and
// student give D = 0 and KL = 0 exactly, and the shifts' difference (which
// may be large) never cancels against the rest. What float32 leaves is the
// exps' own rounding: log S_t - log S_s of two sums of O(1) is good to a few
// 1e-8 absolute, as in the row kernel (a KL near 0 is that far off).
//
// The arithmetic of a lane depends only on its 2 C values, never on the
// layout, the group or the thread: both layouts give bitwise the same
// numbers for the same values, whatever the thread count. Lanes holding a
// nan or +inf, or only -inf, on either side are handed to the row kernel
// (one row, its values gathered), which writes what it writes for such rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/divergence_args.hpp"
#include "kernels/lane_tile.hpp"
#include "kernels/parallel.hpp"
#include "kernels/strided_lanes.hpp"
#include "kernels/tile_transpose.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// Below this many classes the distillation loss takes the lanes (both
// layouts, so that a class axis in the middle gives bitwise what the same
// values with their class axis last give); from here on the row kernels.
constexpr int64_t kKLLanesBelowCols = 128;

// T: the logits' storage type; G: the gradient's (T, or float32 for 16-bit
// T); RowKernel: divergence.cpp's row kernel, for the lanes the vectors
// cannot hold.
template <class T, class G, bool kGrad, bool kRowLanes, class RowKernel>
struct KLLanes {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr int W = V::width;
    static constexpr int NV = 4;  // vectors per group: 4 chains of sums in flight
    static constexpr int L = NV * W;
    // The sums in two levels, this many classes at a time (as strided_lanes.hpp).
    static constexpr int64_t kSumBlock = 32;
    // Positions per unit of work shared out to threads (a multiple of L).
    static constexpr int64_t kChunkLanes = 16 * L;

    const KLDivArgs* args = nullptr;
    const T* student = nullptr;
    const T* teacher = nullptr;
    G* grad = nullptr;
    int64_t outer = 0, C = 0, inner = 0;
    // The strided gradient streamed (non-temporal stores: no read of its
    // lines before they are written) where whole groups start on a line.
    bool stream = false;

    // The element of class c at position j of outer index o (either layout).
    int64_t at(int64_t o, int64_t c, int64_t j) const {
        if constexpr (kRowLanes) return j * C + c;
        return (o * C + c) * inner + j;
    }

    // One group of n <= L positions from (o, j0); tiles: the teacher's
    // (C, L) tile, then the student's.
    template <bool kFull>
    void group(int64_t o, int64_t j0, int64_t n, A* tiles) const {
        const KLDivArgs& a = *args;
        A* tt = tiles;
        A* ts = tiles + C * L;
        V mt[NV], ms[NV];
        fill_lane_tile<NV, kFull, kRowLanes>(teacher, C, inner, o, j0, n, tt, mt);
        fill_lane_tile<NV, kFull, kRowLanes>(student, C, inner, o, j0, n, ts, ms);
        const V zero = V::broadcast(A(0)), inv_t = V::broadcast(static_cast<A>(1.0 / a.temperature));
        // The shifts: the scaled max (1 / T > 0 keeps it the max), 0 where not finite.
        V shift_t[NV], shift_s[NV];
        for (int k = 0; k < NV; ++k) {
            shift_t[k] = finite_or_zero(mt[k] * inv_t);
            shift_s[k] = finite_or_zero(ms[k] * inv_t);
        }

        // One sweep of both tiles: S_t, S_s (as `ones` + `rest`) and D.
        V ones_t[NV], rest_t[NV], ones_s[NV], rest_s[NV], dev[NV];
        for (int k = 0; k < NV; ++k) ones_t[k] = rest_t[k] = ones_s[k] = rest_s[k] = dev[k] = zero;
        for (int64_t c0 = 0; c0 < C; c0 += kSumBlock) {
            const int64_t c1 = std::min(C, c0 + kSumBlock);
            V part_t[NV], part_s[NV], dpart[NV];
            for (int k = 0; k < NV; ++k) part_t[k] = part_s[k] = dpart[k] = zero;
            for (int64_t c = c0; c < c1; ++c) {
                A* pt = tt + c * L;
                A* ps = ts + c * L;
                for (int k = 0; k < NV; ++k) {
                    const V dt = V::load(pt + k * W) * inv_t - shift_t[k];
                    const V ds = V::load(ps + k * W) * inv_t - shift_s[k];
                    const V et = exp_bounded(dt), es = exp_bounded(ds);
                    if constexpr (kGrad) et.store(pt + k * W), es.store(ps + k * W);
                    add_split(et, ones_t[k], part_t[k]);
                    add_split(es, ones_s[k], part_s[k]);
                    // p = 0 contributes 0, whatever q is (dt - ds may be nan there).
                    dpart[k] = dpart[k] + keep_where_greater(et, zero, et * (dt - ds));
                }
            }
            for (int k = 0; k < NV; ++k) {
                rest_t[k] = rest_t[k] + part_t[k], rest_s[k] = rest_s[k] + part_s[k];
                dev[k] = dev[k] + dpart[k];
            }
        }

        // Lanes whose max or sum is not finite, on either side, go to the row kernel.
        alignas(64) A top_l[2][L], sum_l[2][L];
        V sum_t[NV], sum_s[NV];
        for (int k = 0; k < NV; ++k) {
            sum_t[k] = ones_t[k] + rest_t[k], sum_s[k] = ones_s[k] + rest_s[k];
            mt[k].store(top_l[0] + k * W), ms[k].store(top_l[1] + k * W);
            sum_t[k].store(sum_l[0] + k * W), sum_s[k].store(sum_l[1] + k * W);
        }
        bool bad[L];
        bool any_bad = false;
        for (int64_t l = 0; l < n; ++l) {
            bad[l] = false;
            for (int side = 0; side < 2; ++side)
                bad[l] |=
                    !(std::isfinite(top_l[side][l]) && std::isfinite(sum_l[side][l]) && sum_l[side][l] > 0);
            any_bad |= bad[l];
        }

        // KL = D / S_t - (log S_t - log S_s), >= 0 (rounding can leave a
        // tiny negative value for p == q).
        alignas(64) A kl_l[L];
        for (int k = 0; k < NV; ++k) {
            const V kl = dev[k] / sum_t[k] -
                         (log_of_split_sum(ones_t[k], rest_t[k]) - log_of_split_sum(ones_s[k], rest_s[k]));
            select_equal(less(kl, zero), V::broadcast(A(1)), zero, kl).store(kl_l + k * W);
        }
        const int64_t pos = o * inner + j0;  // the group's first position (per-position arrays)
        const double t2 = a.temperature * a.temperature;
        for (int64_t l = 0; l < n; ++l)
            if (!bad[l]) a.row_loss[pos + l] = t2 * static_cast<double>(kl_l[l]);

        if constexpr (kGrad) {
            // g = T scale (e_s / S_s - e_t / S_t), over the student's tile: two
            // rounded products subtracted (not a fused multiply-add), so
            // identical teacher and student give a gradient of exactly 0.
            V fs[NV], ft[NV];
            if (a.grad_scale_rows) {
                alignas(64) A mul_l[L];
                for (int64_t l = 0; l < L; ++l)
                    mul_l[l] = l < n ? static_cast<A>(a.grad_scale_rows[pos + l] * a.temperature) : A(0);
                for (int k = 0; k < NV; ++k) fs[k] = V::load(mul_l + k * W);
            } else {
                for (int k = 0; k < NV; ++k)
                    fs[k] = V::broadcast(static_cast<A>(a.grad_scale * a.temperature));
            }
            for (int k = 0; k < NV; ++k) ft[k] = fs[k] / sum_t[k], fs[k] = fs[k] / sum_s[k];
            const bool streamed =
                !kRowLanes && kFull && stream && reinterpret_cast<uintptr_t>(grad + at(o, 0, j0)) % 64 == 0;
            for (int64_t c = 0; c < C; ++c) {
                const A* pt = tt + c * L;
                A* ps = ts + c * L;
                for (int k = 0; k < NV; ++k) {
                    const V g = V::load(ps + k * W) * fs[k] - V::load(pt + k * W) * ft[k];
                    if constexpr (kRowLanes) {
                        g.store(ps + k * W);  // transposed into the rows below
                    } else {
                        G* q = grad + at(o, c, j0);
                        const int64_t m = kFull ? W : std::clamp<int64_t>(n - int64_t{k} * W, 0, W);
                        if (streamed)
                            vstream(q + k * W, g);
                        else if (m == W)
                            vstore(q + k * W, g);
                        else if (m)
                            vstore_partial(q + k * W, m, g);
                    }
                }
            }
            if constexpr (kRowLanes) tile_to_rows<G, V>(ts, L, C, n, grad + j0 * C);
        }
        if (any_bad)
            for (int64_t l = 0; l < n; ++l)
                if (bad[l]) row_fallback(o, j0 + l, pos + l);
    }

    // The row kernel on one position's values (a nan, +inf or only -inf on
    // either side): exactly what a row of the (rows, C) layout gets.
    void row_fallback(int64_t o, int64_t j, int64_t p) const {
        T s_row[kKLLanesBelowCols], t_row[kKLLanesBelowCols];
        G g_row[kKLLanesBelowCols];
        for (int64_t c = 0; c < C; ++c) s_row[c] = student[at(o, c, j)], t_row[c] = teacher[at(o, c, j)];
        KLDivArgs one = *args;
        one.student = s_row;
        one.teacher = t_row;
        one.grad = kGrad ? g_row : nullptr;
        one.rows = 1;
        one.inner = 1;
        one.threads = 1;
        one.row_loss += p;
        if (one.grad_scale_rows) one.grad_scale_rows += p;
        RowKernel kernel(one);
        std::vector<typename RowKernel::Scratch> scratch(here_scratch_elems<RowKernel>(C) + 1);
        std::vector<typename RowKernel::Stats> stats;
        run_rows_here(kernel, 0, 1, C, scratch.data(), stats);
        if constexpr (kGrad)
            for (int64_t c = 0; c < C; ++c) grad[at(o, c, j)] = g_row[c];
    }

    void run(int threads) const {
        run_lane_groups<L, kRowLanes>(
            outer, C, inner, threads, kChunkLanes, 2 * static_cast<size_t>(C * L) * sizeof(A),
            [&](auto full, int64_t o, int64_t j0, int64_t n, void* scratch) {
                group<decltype(full)::value>(o, j0, n, static_cast<A*>(scratch));
            },
            stream);
    }
};

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
