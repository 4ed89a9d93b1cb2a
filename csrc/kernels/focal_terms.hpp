// The focal loss's per-row terms (Lin et al., 2017), shared by the row
// kernel (focal.cpp) and the one-position-per-lane kernel (strided_lanes.hpp):
// with p = q_t = exp(-nll) and a = alpha_t,
//     loss = a (1 - p)^gamma nll,
//     G    = a ((1 - p)^gamma + gamma p (1 - p)^(gamma - 1) nll),
// G being the factor of the gradient G (q - onehot(t)).
#pragma once

#include <cmath>

#include "kernels/block_math.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// The loss and the gradient factor G of one row, from its nll = -log p_t >= 0.
// 1 - p is formed as -expm1(-nll): no cancellation near p = 1.
inline void focal_terms(double nll, double alpha, double gamma, double& loss, double& g) {
    if (gamma == 0.0) {
        loss = alpha * nll;
        g = alpha;
        return;
    }
    const double one_minus_p = -std::expm1(-nll);
    // p = 1 - (1 - p) where p > 1/2 (within an ulp of p there: 1 - p is
    // rounded once and p is at least half); exp otherwise, where 1 - p would
    // cancel. One libm call fewer for the confident rows.
    const double p = one_minus_p < 0.5 ? 1.0 - one_minus_p : std::exp(-nll);
    // gamma = 2 (the paper's and pyce's default) by products: pow costs more
    // than the rest of a lane of few classes.
    const bool squared = gamma == 2.0;
    const double mod = squared ? one_minus_p * one_minus_p : std::pow(one_minus_p, gamma);
    loss = alpha * mod * nll;
    // p = 1 (nll = 0): both terms vanish for gamma > 0; p = 0 (nll = inf): the
    // second term is p * inf -> 0 in the limit.
    double second = 0.0;
    if (one_minus_p > 0.0 && p > 0.0)
        second = gamma * p * (squared ? one_minus_p : std::pow(one_minus_p, gamma - 1.0)) * nll;
    g = alpha * (mod + second);
    if (nll != nll) loss = g = nll;  // nan stays nan
}

// The same for float32 lanes with gamma 0, 1 or 2 (2: the default), in
// vectors, for nll >= 0 or +inf (ClassLanes' focal lanes; other lanes are
// overwritten after). 1 - p = -expm1(-nll): its series below 0.35 (to
// nll^8; the next term is below 2e-10 relative), 1 - exp(-nll) above, where
// exp(-nll) < 0.71 cancels little; p = 1 - (1 - p) below 0.35, exp(-nll)
// above. Within a few float32 ulp of focal_terms.
inline void focal_terms_f32(VecF32 nll, int gamma, VecF32 alpha, VecF32& loss, VecF32& g) {
    if (gamma == 0) {
        loss = alpha * nll;
        g = alpha;
        return;
    }
    const VecF32 zero = VecF32::broadcast(0.0f), one = VecF32::broadcast(1.0f);
    const VecF32 y = zero - nll;
    // expm1(y) = y (1 + y/2 + y^2/6 + ... + y^7/8!), by Horner.
    VecF32 s = VecF32::broadcast(1.0f / 40320);
    for (const float c : {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 1.0f / 2, 1.0f})
        s = fmadd(s, y, VecF32::broadcast(c));
    const VecF32 ey = exp(y);
    const VecF32 small = less(nll, VecF32::broadcast(0.35f));  // 1 where nll < 0.35
    const VecF32 one_minus_p = select_equal(small, one, zero - s * y, one - ey);
    const VecF32 p = select_equal(small, one, one - one_minus_p, ey);
    const VecF32 mod = gamma == 2 ? one_minus_p * one_minus_p : one_minus_p;
    loss = alpha * mod * nll;
    // gamma p (1 - p)^(gamma - 1) nll, which tends to 0 as nll grows: nll
    // capped (p is below float32's range long before 88), so that p = 0,
    // nll = inf gives 0, not nan.
    const VecF32 capped = min(nll, VecF32::broadcast(88.0f));
    const VecF32 second = gamma == 2 ? (VecF32::broadcast(2.0f) * p) * one_minus_p * capped : p * capped;
    g = alpha * (mod + second);
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
