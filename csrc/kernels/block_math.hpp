// The numerics of one block of a row, shared by the softmax family and the
// cross-entropy kernels.
//
// A row's log-sum-exp is built block by block. Every block is swept once:
// each element is read, exp(x - shift) computed (once per element), summed
// and -- when a gradient or softmax is wanted -- stored, while the extra sums
// the loss needs are gathered in the same sweep. The shift is the same for the
// whole row (row_shift) unless a block holds a far larger logit. Blocks are
// then merged in order with one rescale each:
//     (m, s) + (m_b, s_b) -> (max(m, m_b), s * e^(m - M) + s_b * e^(m_b - M)).
// Sums inside a block accumulate in the vector type (float32 for float32 and
// 16-bit input); the merge over blocks, the row's lse and its loss are float64.
//
// T is the storage type of the logits (float, double, bf16, f16); Acc<T> the
// type they are computed in (float, or double for double).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// Elements per block: 8 KiB of float32. A block's exps stay in L1/L2 until
// the row's lse is known and they are rescaled. A multiple of every vector width.
constexpr int64_t kBlock = 2048;
// How many of a row's `cols` elements block b holds (the last may be short).
inline int64_t block_length(int64_t cols, int64_t b) {
    const int64_t rest = cols - b * kBlock;
    return rest < kBlock ? rest : kBlock;
}

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// What one block of a row contributes.
struct BlockStats {
    double shift = 0;  // what the block's exps were shifted by: the row's shift, or more
    double sum = 0;   // sum of exp(x - shift); 0: all -inf (or underflowed); +inf: holds +inf; nan: holds nan
    double dot = 0;   // sum of coef * x (label smoothing, probability targets)
    double coef = 0;  // sum of coef (probability targets)
    double top = 0;   // unchecked sweeps: the block's largest logit (nan-blind; nan shows in sum)
};

// Which sums a block's sweep gathers beside its max and sum of exps
// (BlockStats::dot and ::coef): what the row's target and options need.
enum class SweepSums {
    none,    // just the log-sum-exp
    sum_x,   // sum x                    (label smoothing)
    sum_wx,  // sum w * x                (label smoothing with class weights)
    soft,    // coef = (1 - eps) y + eps / C; sum coef * x, sum coef   (probability targets)
    soft_w,  // coef = ((1 - eps) y + eps / C) * w                    (... with weights)
};

// Where the coefficients of the SweepSums come from, for one row.
template <class T>
struct Coefs {
    const Acc<T>* weight = nullptr;  // C class weights (sum_wx, soft_w), in the compute type
    const T* y = nullptr;            // this row's target probabilities (soft, soft_w)
    Acc<T> keep = 1;                 // 1 - eps
    Acc<T> uniform = 0;              // eps / C
};

// The coefficient vector at offset i of the row (SweepSums != none); with
// tail > 0, only the first `tail` lanes are classes.
template <SweepSums E, class T, class V = typename VecFor<T>::type>
inline V coef_at(const Coefs<T>& c, int64_t i, int64_t tail) {
    using A = Acc<T>;
    if constexpr (E == SweepSums::sum_x) {
        return V::broadcast(A(1));  // padding lanes are multiplied by x = 0
    } else if constexpr (E == SweepSums::sum_wx) {
        return tail ? vload_partial(c.weight + i, tail, A(0)) : vload(c.weight + i);
    } else {
        // Padding lanes of y read as 0 but would still get eps / C: the weight
        // (0 there) or a 0/1 lane mask zeroes them -- they are not classes.
        const V y = tail ? vload_partial(c.y + i, tail, A(0)) : vload(c.y + i);
        V t = fmadd(y, V::broadcast(c.keep), V::broadcast(c.uniform));
        if constexpr (E == SweepSums::soft_w) {
            t = t * (tail ? vload_partial(c.weight + i, tail, A(0)) : vload(c.weight + i));
        } else if (tail) {
            static_assert(V::width <= 16, "widen the ones table");
            static const A ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
            t = t * vload_partial(ones, tail, A(0));
        }
        return t;
    }
}

// True if any of x[0..n) is nan (only called for the rare blocks holding +inf).
template <class T>
inline bool any_nan(const T* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const auto v = to_acc(x[i]);
        if (v != v) return true;
    }
    return false;
}

// The shift a row's exps are computed against: the max of its first block
// (0 if that is not finite). Every block of the row uses it unless the block
// holds a far larger logit (see block_stats). It depends only on the row, so
// the blocks can be computed in any order, by any thread.
template <class T>
inline Acc<T> row_shift(const T* x, int64_t cols) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t n = block_length(cols, 0), full = n - n % W;
    // Four running maxima: one would make every step wait for the last.
    V m0 = V::broadcast(ninf), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 4 * W <= full; i += 4 * W) {
        m0 = max(m0, vload(x + i));
        m1 = max(m1, vload(x + i + W));
        m2 = max(m2, vload(x + i + 2 * W));
        m3 = max(m3, vload(x + i + 3 * W));
    }
    for (; i < full; i += W) m0 = max(m0, vload(x + i));
    if (n > full) m1 = max(m1, vload_partial(x + full, n - full, ninf));
    const A m = reduce_max(max(max(m0, m1), max(m2, m3)));
    return std::isfinite(m) ? m : A(0);
}

// How far ahead of the sweep its logits are requested from memory. The
// hardware prefetcher alone falls behind when a row's gradient is written
// between two sweeps (and, less, in a forward). 16-bit sweeps may ask further ahead
// (kPrefetchBytes16, per ISA); float32 sweeps, bound by memory, lose from it.
template <class T>
constexpr int64_t kPrefetchBytes = sizeof(T) == 2 ? kPrefetchBytes16 : 4096;

// A logit more than this above the shift would make exp(x - shift) too large
// (e^64 = 6e27; a block's sum of 2048 of them stays far below float32's
// 3.4e38); when one appears, the block switches to a larger shift.
constexpr double kShiftMargin = 64.0;
// So every exp a kept block takes is inside the sweeps' exp's domain.
static_assert(kShiftMargin < ExpF32Table::hi && ExpF32Table8::hi == ExpF32Table::hi,
              "exp_bounded is defined for x <= ExpF32Table::hi only");

// The rare path of block_stats: x[i] onwards holds a logit above the limit.
// Moves the shift to the max of x[i..n), rescales the exps already stored in
// e_out[0..i) to it, and returns the factor the running sums must be
// multiplied by. (The sums stay in the caller's registers: passing them here
// by reference would make the hot loop keep them in memory.)
template <class T, class A>
inline A raise_shift(const T* x, int64_t i, int64_t n, A* e_out, A& shift) {
    A m = shift;
    for (int64_t j = i; j < n; ++j) {
        const A v = to_acc(x[j]);
        m = v > m ? v : m;
    }
    // +inf: the row has no distribution; its sum becomes nan or inf (below).
    const A scale = m == std::numeric_limits<A>::infinity() ? A(0) : static_cast<A>(std::exp(shift - m));
    if (e_out)
        for (int64_t j = 0; j < i; ++j) e_out[j] *= scale;
    shift = m;
    return scale;
}

// A block swept without the per-step limit check (sweep_block<..., false>)
// is kept if its largest logit is at most kShiftMargin above the shift (so
// every exp was in exp_bounded's range) and its exps sum to at most this (so
// the sum is far inside float32, and no nan). Otherwise (a logit far above
// the shift, +inf, nan) it is swept again with the checks.
constexpr double kMaxUncheckedSum = 0x1p100;

// One sweep over the block x[0..n): exp(x - shift) against the row's shift
// (stored to e_out if kStore; e_out may alias x when T is Acc<T>), their sum
// and the sums E asks for. `offset` is the block's position in the row, for the
// coefficient arrays. Each element is read once and its exp computed once.
// kChecked: move to a larger shift when a logit is more than kShiftMargin
// above it (raise_shift); without, a block with such a logit may overflow
// (see block_stats).
// (The coefficients' storage type Y may differ from the logits' T: soft-capped
// 16-bit logits are swept as float32 while their targets stay 16-bit.)
// kStoreAnyOrder: each pair of vectors' exps may be stored in the order
// vload_pair_any_order loads them (kInterleavedPairs in vec.hpp), for a
// caller that stores them back in order; the rest of the block in order.
template <class T, SweepSums E, bool kStore, bool kChecked, class Y = T, bool kStoreAnyOrder = false>
inline BlockStats sweep_block(const T* x, int64_t n, Acc<T>* e_out, const Coefs<Y>& c, int64_t offset,
                              Acc<T> shift) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    // Nothing is stored (or the caller takes the order) and each element's
    // coefficient is the same: the elements of a pair of vectors may come in
    // any order (vload_pair_any_order).
    constexpr bool kAnyOrder = (!kStore || kStoreAnyOrder) && (E == SweepSums::none || E == SweepSums::sum_x);
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t full = n - n % W, tail = n - full;

    V vshift = V::broadcast(shift);
    V limit = V::broadcast(static_cast<A>(shift + kShiftMargin));
    // Two running sums, so that consecutive vectors' additions do not wait
    // for each other.
    V acc0 = V::broadcast(0), acc1 = V::broadcast(0), dot = V::broadcast(0), coef = V::broadcast(0);
    V top = V::broadcast(ninf);  // unchecked: the largest logit, checked after the block
    // The rare path: x[i..) holds a logit above the limit (see raise_shift).
    auto raise = [&](int64_t i) PYCE_ALWAYS_INLINE {
        const V scale = V::broadcast(raise_shift(x, i, n, kStore ? e_out : static_cast<A*>(nullptr), shift));
        acc0 = acc0 * scale;
        acc1 = acc1 * scale;
        vshift = V::broadcast(shift);
        limit = V::broadcast(-ninf);
    };
    // The W elements at offset i, read as xv: their exps, stored and summed.
    auto sweep = [&](V xv, int64_t i, V& acc) PYCE_ALWAYS_INLINE {
        const V e = exp_bounded(xv - vshift);
        if constexpr (kStore) e.store(e_out + i);
        acc = acc + e;
        if constexpr (E != SweepSums::none) {
            const V cv = coef_at<E>(c, offset + i, 0);
            dot = fmadd(cv, xv, dot);
            if constexpr (E == SweepSums::soft || E == SweepSums::soft_w) coef = coef + cv;
        }
    };
    int64_t i = 0;
    for (; i + 2 * W <= full; i += 2 * W) {
        prefetch_ahead(x + i, kPrefetchBytes<T>);
        V x0, x1;
        if constexpr (kAnyOrder) {
            vload_pair_any_order(x + i, x0, x1);
        } else {
            x0 = vload(x + i);
            x1 = vload(x + i + W);
        }
        if constexpr (kChecked) {
            if (any_greater(max(x0, x1), limit)) raise(i);
        } else {
            top = max(top, max(x0, x1));
        }
        sweep(x0, i, acc0);
        sweep(x1, i + W, acc1);
    }
    if (i < full) {
        const V x0 = vload(x + i);
        if constexpr (kChecked) {
            if (any_greater(x0, limit)) raise(i);
        } else {
            top = max(top, x0);
        }
        sweep(x0, i, acc0);
    }
    if (tail) {
        // Padding lanes: -inf for the exps (exp gives 0), 0 for the dot
        // products. Both loads come before the store: e_out may be x itself.
        const V x_for_exp = vload_partial(x + full, tail, ninf);
        const V x_for_dot = vload_partial(x + full, tail, A(0));
        if constexpr (kChecked) {
            if (any_greater(x_for_exp, limit)) raise(full);
        } else {
            top = max(top, x_for_exp);
        }
        const V e = exp_bounded(x_for_exp - vshift);
        if constexpr (kStore) e.store_partial(e_out + full, tail);
        acc1 = acc1 + e;
        if constexpr (E != SweepSums::none) {
            const V cv = coef_at<E>(c, offset + full, tail);
            dot = fmadd(cv, x_for_dot, dot);
            if constexpr (E == SweepSums::soft || E == SweepSums::soft_w) coef = coef + cv;
        }
    }

    BlockStats s;
    s.shift = static_cast<double>(shift);
    s.sum = static_cast<double>(reduce_add(acc0 + acc1));
    if (shift == -ninf) {
        // A +inf logit: no distribution. The sum is +inf, or nan if the block
        // also holds a nan (exps stored over x read as nan: the loss is nan anyway).
        s.sum = any_nan(x, n) ? kNaN : kInf;
    }
    if constexpr (!kChecked) s.top = static_cast<double>(reduce_max(top));
    if constexpr (E != SweepSums::none) s.dot = static_cast<double>(reduce_add(dot));
    if constexpr (E == SweepSums::soft || E == SweepSums::soft_w)
        s.coef = static_cast<double>(reduce_add(coef));
    return s;
}

// A block's statistics (see sweep_block). The limit check is a visible part
// of a 16-bit forward sweep, which is bound by its arithmetic; so the block is
// first swept without it, and again with it in the rare case that its
// largest logit is far above the shift or its sum shows +inf or nan (see
// kMaxUncheckedSum). That needs x intact
// after the first sweep: not when the exps are stored over x itself (float32
// and float64 gradients, stored in place), which are swept with the checks.
template <class T, SweepSums E, bool kStore, class Y = T, bool kStoreAnyOrder = false>
inline BlockStats block_stats(const T* x, int64_t n, Acc<T>* e_out, const Coefs<Y>& c, int64_t offset,
                              Acc<T> shift) {
    if constexpr (!kStore || !std::is_same_v<T, Acc<T>>) {
        const BlockStats s =
            sweep_block<T, E, kStore, false, Y, kStoreAnyOrder>(x, n, e_out, c, offset, shift);
        if (s.sum <= kMaxUncheckedSum && s.top <= s.shift + kShiftMargin) return s;
    }
    return sweep_block<T, E, kStore, true, Y, kStoreAnyOrder>(x, n, e_out, c, offset, shift);
}

// A row's merged statistics.
struct RowSums {
    double lse = 0;      // log-sum-exp: -inf (all -inf), +inf (a +inf, no nan), nan (a nan)
    double max = 0;      // for a finite lse: the row's max m and log(sum exp(x - m)),
    double log_sum = 0;  // so that lse = max + log_sum
    double inv_sum = 0;  // 1 / sum exp(x - m): the factor of every block shifted by m
    double dot = 0;      // sum of the blocks' dot
    double coef = 0;     // sum of the blocks' coef
};

// Merges a row's blocks in block order (the order is what makes the result
// independent of which thread computed which block).
inline RowSums merge_blocks(const BlockStats* b, int64_t nblocks) {
    double m = -kInf, s = 0;
    bool any = false, pinf = false, nan = false;
    RowSums out;
    for (int64_t k = 0; k < nblocks; ++k) {
        out.dot += b[k].dot;
        out.coef += b[k].coef;
        const double bs = b[k].sum;
        if (bs != bs) {
            nan = true;
        } else if (bs == kInf) {
            pinf = true;
        } else if (bs != 0) {  // 0: an all -inf block adds nothing
            if (!any) {
                m = b[k].shift, s = bs, any = true;
            } else if (b[k].shift > m) {
                s = s * std::exp(m - b[k].shift) + bs;
                m = b[k].shift;
            } else {
                s += bs * std::exp(b[k].shift - m);
            }
        }
    }
    out.max = m;
    out.log_sum = std::log(s);
    out.inv_sum = 1.0 / s;
    out.lse = nan ? kNaN : pinf ? kInf : any ? m + out.log_sum : -kInf;
    return out;
}

// exp(shift - lse): turns a block's stored exp(x - shift) into softmax
// probabilities. Computed as (shift - max) - log_sum: shift - max is exact,
// so large logits (where lse itself is rounded to a coarse grid) lose nothing.
// nan for a row without a distribution (lse not finite), so that the whole
// row's softmax/gradient is nan, as in PyTorch; 0 for an all -inf block.
inline double block_factor(const BlockStats& b, const RowSums& row) {
    if (!std::isfinite(row.lse)) return kNaN;
    if (b.sum == 0) return 0.0;
    // Most blocks were shifted by the row's max itself: their factor is 1 / sum.
    if (b.shift == row.max) return row.inv_sum;
    return std::exp((b.shift - row.max) - row.log_sum);
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
