// Logit soft-capping (Gemma 2): z -> c * tanh(z / c), vectorised.
//
// tanh(y) for |y| < 0.35 is y times its Taylor series in y^2 (6 terms in
// float32, 14 in float64: truncation below 1.3e-8 resp. 5e-19 relative);
// above, (1 - t) / (1 + t) with t = exp(-2|y|), where 1 - t >= 0.5 loses at
// most a bit to cancellation. Both branches are computed and one is kept
// (multiplying by 0/1), so there is no branch per element.
#pragma once

#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

template <class S>
struct TanhSeries;
template <>
struct TanhSeries<float> {
    static constexpr int terms = 6;
    static constexpr float a[terms] = {-8.863235529902196568863236e-3f, 2.186948853615520282186949e-2f,
                                       -5.396825396825396825396825e-2f, 1.333333333333333333333333e-1f,
                                       -3.333333333333333333333333e-1f, 1.0f};
};
template <>
struct TanhSeries<double> {
    static constexpr int terms = 14;
    static constexpr double a[terms] = {-6.451689215655430763190842e-6, 1.591890506932896474074428e-5,
                                        -3.927832388331683405337081e-5, 9.691537956929450325595875e-5,
                                        -2.391291142435524814857315e-4, 5.900274409455859813780760e-4,
                                        -1.455834387051318268249485e-3, 3.592128036572481016925461e-3,
                                        -8.863235529902196568863236e-3, 2.186948853615520282186949e-2,
                                        -5.396825396825396825396825e-2, 1.333333333333333333333333e-1,
                                        -3.333333333333333333333333e-1, 1.0};
};

template <class V>
inline V tanh(V y) {
    using S = typename V::scalar;
    using Series = TanhSeries<S>;
    const V zero = V::broadcast(S(0)), one = V::broadcast(S(1)), threshold = V::broadcast(S(0.35));
    const V a = max(y, zero - y);  // |y|
    // Small |y|: the series (on |y| clamped to the threshold, so it stays finite).
    const V as = min(a, threshold);
    const V z = as * as;
    V p = V::broadcast(Series::a[0]);
    for (int k = 1; k < Series::terms; ++k) p = fmadd(p, z, V::broadcast(Series::a[k]));
    const V small = as * p;
    // Large |y|: through exp.
    const V t = exp(zero - (a + a));
    const V large = (one - t) / (one + t);
    const V use_small = less(a, threshold);
    const V r = fmadd(small, use_small, large * (one - use_small));
    const V negative = less(y, zero);
    return r * (one - (negative + negative));
}

// c * tanh(x / c)
template <class V>
inline V softcap(V x, V cap, V inv_cap) {
    return cap * tanh(x * inv_cap);
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
