// Block sweeps for the information-theoretic kernels: entropy / evaluation
// metrics (evaluate.cpp) and the KL divergence (divergence.cpp).
//
// They follow block_math.hpp's design -- one sweep per block against the
// row's shift, exp computed once per element, blocks merged in block order
// with merge_blocks -- and gather, in the same sweep, an exp-weighted sum of
// deviations from which the entropy or the KL divergence follows exactly:
//
//   entropy:  with e_j = exp(x_j - s_b) over block b (shift s_b),
//             S_b = sum e_j, D_b = sum e_j (x_j - s_b), f_b = exp(s_b - lse):
//               H = lse - sum_j q_j x_j = sum_b f_b (S_b (lse - s_b) - D_b).
//   KL:       with u_j = t_j / T - st_b, v_j = s_j / T - ss_b (teacher and
//             student shifts), e_j = exp(u_j), D_b = sum e_j (u_j - v_j):
//               KL(p || q) = sum_b f_b (D_b - S_b ((lse_t - st_b) - (lse_s - ss_b))).
// Deviations from the block's shift (not raw logits) keep both free of the
// cancellation a large common offset of the logits would cause; lse - s_b is
// formed as (max - s_b) + log_sum, as block_factor does.
//
// A class whose exp is 0 contributes 0 (0 log 0 = 0) even where its
// deviation is -inf or nan (-inf - -inf): the deviation is clamped to the
// lowest finite value first, max(d, lowest), which maps -inf and nan (max
// returns its second operand for a nan) to a finite number that times 0 is 0.
// A +inf deviation with a positive exp (the student gives 0 where the teacher
// does not) stays +inf; with a zero exp (the teacher's probability
// underflows too) it is dropped (kl_block). keep_where_greater counts the rank.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/block_math.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// The largest of start and mul * x[i..n) (the rare path: a logit above the
// shift's margin). mul > 0.
template <class T, class A>
inline A scaled_max(const T* x, int64_t i, int64_t n, A mul, A start) {
    A m = start;
    for (int64_t j = i; j < n; ++j) {
        const A v = to_acc(x[j]) * mul;
        m = v > m ? v : m;
    }
    return m;
}

// The factor that moves exps from shift s to shift m >= s: 0 for m = +inf
// (the row has no distribution; its sum becomes +inf or nan below).
template <class A>
inline A shift_factor(A s, A m) {
    return m == std::numeric_limits<A>::infinity() ? A(0) : static_cast<A>(std::exp(s - m));
}

// The sum of a block whose shift went to +inf: +inf, or nan if it holds a nan.
template <class T>
inline double infinite_block_sum(const T* x, int64_t n) {
    return any_nan(x, n) ? kNaN : kInf;
}

// What entropy_block gathers: BlockStats with shift, sum = S_b, dot = D_b
// and, if kRank, coef = #{j : x_j > x_t} (exact: a block has at most kBlock
// elements, counted per lane in the compute type); and the block's max.
struct EntropyBlockStats {
    BlockStats b;
    double max = -kInf;
};

// One sweep of the entropy over x[0..n).
template <class T, bool kRank>
inline EntropyBlockStats entropy_block(const T* x, int64_t n, Acc<T> shift, Acc<T> x_t) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t full = n - n % W, tail = n - full;
    const V zero = V::broadcast(A(0)), one = V::broadcast(A(1)), vt = V::broadcast(x_t);
    V vshift = V::broadcast(shift), limit = V::broadcast(static_cast<A>(shift + kShiftMargin));
    const V lowest = V::broadcast(std::numeric_limits<A>::lowest());
    V acc = zero, dev = zero, count = zero, vmax = V::broadcast(ninf);

    auto raise = [&](int64_t i) {
        const A m = scaled_max(x, i, n, A(1), shift);
        const A c = shift_factor(shift, m);
        // D' = c (D - (m - s) S): the deviations are now from m.
        dev = c == A(0) ? zero : (dev - V::broadcast(m - shift) * acc) * V::broadcast(c);
        acc = acc * V::broadcast(c);
        shift = m;
        vshift = V::broadcast(shift);
        limit = V::broadcast(-ninf);
    };
    auto step = [&](V xv) {
        const V d = xv - vshift;
        const V e = exp(d);
        vmax = max(vmax, xv);  // nan is dropped here; the sum is nan then anyway
        acc = acc + e;
        dev = fmadd(e, max(d, lowest), dev);
        if constexpr (kRank) count = count + keep_where_greater(xv, vt, one);
    };
    for (int64_t i = 0; i < full; i += W) {
        const V xv = vload(x + i);
        if (any_greater(xv, limit)) raise(i);
        step(xv);
    }
    if (tail) {
        // Padding lanes read as -inf: exp 0, never above x_t.
        const V xv = vload_partial(x + full, tail, ninf);
        if (any_greater(xv, limit)) raise(full);
        step(xv);
    }
    EntropyBlockStats r;
    BlockStats& s = r.b;
    s.shift = static_cast<double>(shift);
    s.sum = static_cast<double>(reduce_add(acc));
    s.dot = static_cast<double>(reduce_add(dev));
    if constexpr (kRank) s.coef = static_cast<double>(reduce_add(count));
    if (shift == -ninf) s.sum = infinite_block_sum(x, n);
    r.max = static_cast<double>(reduce_max(vmax));
    return r;
}

// H(softmax(x)) of a row from its merged sums and its blocks (entropy_block);
// nan when the row has no distribution.
inline double row_entropy(const RowSums& row, const BlockStats* b, int64_t nblocks) {
    if (!std::isfinite(row.lse)) return kNaN;
    double h = 0;
    for (int64_t k = 0; k < nblocks; ++k) {
        if (b[k].sum == 0) continue;  // all exps 0: nothing to add
        const double lse_minus_shift = (row.max - b[k].shift) + row.log_sum;
        h += block_factor(b[k], row) * (b[k].sum * lse_minus_shift - b[k].dot);
    }
    // Rounding can leave a tiny negative value for a one-hot distribution.
    return h > 0 ? h : 0.0;
}

// One block of the KL divergence: teacher t and student s, both scaled by
// inv_t = 1 / T. `teacher.dot` holds D_b. When given, the exps are stored:
// the teacher's to t_out, the student's to s_out (in the compute type).
struct KLBlockStats {
    BlockStats teacher, student;
};

template <class T>
inline KLBlockStats kl_block(const T* t, const T* s, int64_t n, Acc<T> inv_t, Acc<T> shift_t, Acc<T> shift_s,
                             Acc<T>* t_out, Acc<T>* s_out) {
    using V = typename VecFor<T>::type;
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t full = n - n % W, tail = n - full;
    const V zero = V::broadcast(A(0)), vinv = V::broadcast(inv_t);
    const V lowest = V::broadcast(std::numeric_limits<A>::lowest());
    V vst = V::broadcast(shift_t), vss = V::broadcast(shift_s);
    V lim_t = V::broadcast(static_cast<A>(shift_t + kShiftMargin));
    V lim_s = V::broadcast(static_cast<A>(shift_s + kShiftMargin));
    V acc_t = zero, acc_s = zero, dev = zero;

    auto raise_teacher = [&](int64_t i) {
        const A m = scaled_max(t, i, n, inv_t, shift_t);
        const A c = shift_factor(shift_t, m);
        // u' = u - (m - st): D' = c (D - (m - st) S_t).
        dev = c == A(0) ? zero : (dev - V::broadcast(m - shift_t) * acc_t) * V::broadcast(c);
        acc_t = acc_t * V::broadcast(c);
        if (t_out)
            for (int64_t j = 0; j < i; ++j) t_out[j] *= c;
        shift_t = m;
        vst = V::broadcast(shift_t);
        lim_t = V::broadcast(-ninf);
    };
    auto raise_student = [&](int64_t i) {
        const A m = scaled_max(s, i, n, inv_t, shift_s);
        const A c = shift_factor(shift_s, m);
        // v' = v - (m - ss): D' = D + (m - ss) S_t (the teacher's exps do not change).
        if (c != A(0)) dev = fmadd(V::broadcast(m - shift_s), acc_t, dev);
        acc_s = acc_s * V::broadcast(c);
        if (s_out)
            for (int64_t j = 0; j < i; ++j) s_out[j] *= c;
        shift_s = m;
        vss = V::broadcast(shift_s);
        lim_s = V::broadcast(-ninf);
    };
    auto step = [&](V tv, V sv, int64_t i, int64_t lanes) {
        const V u = tv - vst, v = sv - vss;
        const V et = exp(u), es = exp(v);
        if (lanes == W) {
            if (t_out) et.store(t_out + i);
            if (s_out) es.store(s_out + i);
        } else {
            if (t_out) et.store_partial(t_out + i, lanes);
            if (s_out) es.store_partial(s_out + i, lanes);
        }
        acc_t = acc_t + et;
        acc_s = acc_s + es;
        // Where the teacher's exp is 0 (its probability underflows) the class
        // adds 0, even against a -inf student logit (u - v = +inf, and 0 * inf
        // would be nan): the deviation is kept only where et > 0.
        dev = fmadd(et, keep_where_greater(et, zero, max(u - v, lowest)), dev);
    };
    for (int64_t i = 0; i < full; i += W) {
        const V tv = vload(t + i) * vinv, sv = vload(s + i) * vinv;
        if (any_greater(tv, lim_t)) raise_teacher(i);
        if (any_greater(sv, lim_s)) raise_student(i);
        step(tv, sv, i, W);
    }
    if (tail) {
        const V tv = vload_partial(t + full, tail, ninf) * vinv,
                sv = vload_partial(s + full, tail, ninf) * vinv;
        if (any_greater(tv, lim_t)) raise_teacher(full);
        if (any_greater(sv, lim_s)) raise_student(full);
        step(tv, sv, full, tail);
    }
    KLBlockStats r;
    r.teacher.shift = static_cast<double>(shift_t);
    r.teacher.sum = static_cast<double>(reduce_add(acc_t));
    r.teacher.dot = static_cast<double>(reduce_add(dev));
    if (shift_t == -ninf) r.teacher.sum = infinite_block_sum(t, n);
    r.student.shift = static_cast<double>(shift_s);
    r.student.sum = static_cast<double>(reduce_add(acc_s));
    if (shift_s == -ninf) r.student.sum = infinite_block_sum(s, n);
    return r;
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
