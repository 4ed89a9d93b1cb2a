// Precision near zero: a row whose largest term dominates its sum.
//
// A confident prediction has lse = M + log(1 + rest), rest = sum over the
// other classes of exp(x_j - M), far below 1. The sweep loses rest's
// relative precision twice: the float32 lane that holds the 1 rounds every
// small term added to it (at 2^-24 each), and log of a sum near 1 cancels.
// So losses, log-probabilities and log-sum-exps near 0 came out with large
// relative errors (logsumexp([0, -40]) was exactly 0; the answer is 4.2e-18).
// Such rows are summed once more without the dominant term, as SciPy's
// logsumexp does since gh-18295: lse = M + log1p(rest). Only rows whose
// largest probability is above 2/3 (rest < 1/2) take this second pass over
// their row (in cache: it was just swept), so M is unique, and the sweeps of
// every other row are unchanged.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/block_math.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// log1p(1/2): a row is refined when lse - M is below it.
constexpr double kLogDominated = 0.40546510810816438;

// The largest of x[0..n) (nan-blind: a row with nan has no finite lse and is
// never refined).
template <class T>
inline double row_max(const T* x, int64_t n) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t full = n - n % W;
    V m = V::broadcast(ninf);
    for (int64_t i = 0; i < full; i += W) m = max(m, vload(x + i));
    if (n > full) m = max(m, vload_partial(x + full, n - full, ninf));
    return static_cast<double>(reduce_max(m));
}

// exp(x - top) where x < top, else 0: a term of the sum below the dominant
// one (x == top left out). x - top is rounded (by up to |x - top| / 2^24 in
// float32: 5e-6 relative for a gap of 80), so its rounding error is recovered
// (Knuth's two-sum, exact) and applied to the exp: e^(d + err) = e^d (1 + err).
// The exp is the general vector exp (any argument). neg_top is -top.
template <class V>
PYCE_ALWAYS_INLINE inline V term_below(V xv, V top, V neg_top) {
    const V zero = V::broadcast(0);
    const V d = xv + neg_top;
    const V back = d - xv;
    const V err = (xv - (d - back)) + (neg_top - back);
    const V e = exp(d);
    // err is nan where x = -inf (e = 0 there): kept only where e > 0.
    const V term = fmadd(e, keep_where_greater(e, zero, err), e);
    return keep_where_greater(top, xv, term);
}

// exp(x - shift) for x <= shift (the sweeps' terms), with the rounding error
// of x - shift recovered as in term_below: every term of a lane's sum keeps
// its relative precision, so a lane whose largest term dominates needs no
// second sum for a precise log1p of the rest (ClassLanes' focal lanes).
// neg_shift is -shift; -inf terms give 0.
template <class V>
PYCE_ALWAYS_INLINE inline V exp_recovered(V xv, V neg_shift) {
    const V zero = V::broadcast(0);
    const V d = xv + neg_shift;
    const V back = d - xv;
    const V err = (xv - (d - back)) + (neg_shift - back);
    const V e = exp_bounded(d);
    return fmadd(e, keep_where_greater(e, zero, err), e);
}

// The sum of term_below over x[0..n); lanes sum in the compute type.
template <class T>
inline double sum_below(const T* x, int64_t n, Acc<T> top) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t full = n - n % W;
    const V vtop = V::broadcast(top), neg_top = V::broadcast(-top);
    V acc = V::broadcast(A(0));
    for (int64_t i = 0; i < full; i += W) acc = acc + term_below(vload(x + i), vtop, neg_top);
    if (n > full)  // padding: exp(-inf) = 0
        acc = acc + term_below(vload_partial(x + full, n - full, ninf), vtop, neg_top);
    return static_cast<double>(reduce_add(acc));
}

// The sum of e[0..n) with e[skip] left out (skip may lie outside the range),
// where e[j] = exps(j0, len) gives the W values at j0 (len < W: the first len
// of them, the others 0). Two ranges, [0, skip) and (skip, n), summed by
// vectors from their starts: sum_stored_except and sum_exps_except below
// group the same values into the same lanes, so they agree bitwise.
template <class V, class Exps>
inline double sum_ranges_except(int64_t n, int64_t skip, const Exps& exps) {
    using A = typename V::scalar;
    constexpr int W = V::width;
    auto sum_range = [&](int64_t lo, int64_t len) {
        const int64_t full = len - len % W;
        V acc = V::broadcast(A(0));
        for (int64_t i = 0; i < full; i += W) acc = acc + exps(lo + i, W);
        if (len > full) acc = acc + exps(lo + full, len - full);
        return static_cast<double>(reduce_add(acc));
    };
    if (skip < 0 || skip >= n) return sum_range(0, n);
    return sum_range(0, skip) + sum_range(skip + 1, n - skip - 1);
}

// Stored exps e[0..n) (a block's, in the compute type), e[skip] left out.
template <class A>
inline double sum_stored_except(const A* e, int64_t n, int64_t skip) {
    using V = typename VecFor<A>::type;
    return sum_ranges_except<V>(n, skip, [&](int64_t j, int64_t len) PYCE_ALWAYS_INLINE {
        return len == V::width ? V::load(e + j) : V::load_partial(e + j, len, A(0));
    });
}

// The same exps as the sweeps compute them, exp_bounded(x_j - shift), from
// the logits x[0..n) of a block (bitwise what sum_stored_except reads when
// the sweep stored them), x[skip] left out.
template <class T>
inline double sum_exps_except(const T* x, int64_t n, Acc<T> shift, int64_t skip) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    const V vshift = V::broadcast(shift);
    const A ninf = -std::numeric_limits<A>::infinity();
    return sum_ranges_except<V>(n, skip, [&](int64_t j, int64_t len) PYCE_ALWAYS_INLINE {
        const V xv = len == V::width ? vload(x + j) : vload_partial(x + j, len, ninf);
        return exp_bounded(xv - vshift);
    });
}

// `row` rewritten around its dominant term top: max = top, log_sum =
// log1p(rest), and the factors block_factor uses.
inline void set_dominant(RowSums& row, double top, double rest) {
    row.max = top;
    row.log_sum = std::log1p(rest);
    row.inv_sum = 1.0 / (1.0 + rest);
    row.lse = top + row.log_sum;
}

// Refines a row of intact logits x[0..n) whose merged sums show a dominant
// term (lse - max below kLogDominated, max being the largest block shift).
template <class T>
inline void refine_if_dominated(const T* x, int64_t n, RowSums& row) {
    if (!(std::isfinite(row.lse) && row.log_sum < kLogDominated)) return;
    const double top = row_max(x, n);
    set_dominant(row, top, sum_below(x, n, static_cast<Acc<T>>(top)));
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
