// The strided-class kernel (kernels/strided_classes.cpp registers it): logits
// laid out as (outer, C, inner), C-contiguous -- PyTorch's (N, C, d1, ...) and
// NumPy's axis=0 -- where the classes of one position lie `inner` elements
// apart.
//
// No transposing copy: the contiguous axis is the vector axis. A group of NV
// vectors holds NV * width neighbouring positions, one per lane, and the
// classes are visited one after the other with contiguous vector loads. Every
// lane is one position's whole reduction, and everything a position needs
// after its sums -- log, loss, gradient factors -- is computed for the whole
// group in vectors: nothing is reduced across lanes, nothing runs lane by
// lane on the way (bad lanes apart, below).
//
// Two ways through a group, chosen by how many classes it has:
//  - tile (C * L values fit kTileBytes): the group's logits are copied from
//    memory once into a contiguous (C, L) tile while their per-lane max is
//    taken; the exps against that max are computed from the tile (and kept
//    there when an output needs them); the outputs are written from the tile.
//    A copy, because with inner a power of two (512 x 512) a position's
//    classes all fall in one cache set and evict each other before a second
//    sweep over the array could find them.
//  - online (more classes: NumPy's axis 0 of a (32000, 2048) matrix): one
//    sweep keeps each lane's running max and its sums against it, rescaled
//    when a lane meets a larger logit (rarely, after the first classes). A
//    chunk's groups are swept together a block of classes at a time (see
//    online_chunk), so that memory is read in runs of the chunk's width, not
//    a group's. An output reads the logits a second time, in the same order.
//
// A lane's sum is kept as `ones` (the terms equal to its max, exp 0 = 1) and
// `rest` (the others): log(sum) = log(ones) + log1p(rest / ones), so a
// confident position keeps the relative precision of a small loss (SciPy
// gh-18295; kernels/dominant.hpp does the same for rows).
//
// Per-lane results depend only on the position -- not on the group or chunk
// that holds it, nor on the thread -- so they are bitwise the same for any
// thread count.
//
// Lanes that hold a nan or +inf, or only -inf, take a scalar path that writes
// what the row kernels write for such rows (nan, +inf or -inf lse; nan
// softmax and gradient; 0 for an ignored target).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "runtime/dispatch.hpp"
#include "kernels/block_math.hpp"
#include "kernels/dominant.hpp"
#include "kernels/focal_terms.hpp"
#include "kernels/lane_tile.hpp"
#include "kernels/output_store.hpp"
#include "kernels/parallel.hpp"
#include "kernels/tile_transpose.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// log(x) for positive normal lanes: x = 2^e m, log x = e ln2 + 2 atanh(u)
// with u = (m - 1) / (m + 1), |u| <= 0.2, whose series to u^11 is well
// inside float32's precision (the next term is below 3e-10 relative).
inline VecF32 log_positive(VecF32 x) {
    VecF32 m, e;
    split_exponent(x, m, e);
    const VecF32 one = VecF32::broadcast(1.0f);
    const VecF32 u = (m - one) / (m + one);
    const VecF32 u2 = u * u;
    VecF32 p = VecF32::broadcast(1.0f / 11);
    p = fmadd(p, u2, VecF32::broadcast(1.0f / 9));
    p = fmadd(p, u2, VecF32::broadcast(1.0f / 7));
    p = fmadd(p, u2, VecF32::broadcast(1.0f / 5));
    p = fmadd(p, u2, VecF32::broadcast(1.0f / 3));
    const VecF32 two_u = u + u;
    const VecF32 atanh2 = fmadd(two_u * u2, p, two_u);  // 2u + 2u^3 p
    // ln 2 split so that e * ln2_hi is exact for |e| < 2^8.
    const VecF32 ln2_hi = VecF32::broadcast(0.693145751953125f),
                 ln2_lo = VecF32::broadcast(1.428606765330187e-06f);
    return fmadd(e, ln2_hi, fmadd(e, ln2_lo, atanh2));
}
// float64: lane by lane (not a speed target; exact to libm).
inline VecF64 log_positive(VecF64 x) {
    alignas(64) double t[VecF64::width];
    x.store(t);
    for (double& v : t) v = std::log(v);
    return VecF64::load(t);
}

// log(ones) + log1p(rest / ones) for lanes with ones >= 1 and rest >= 0
// finite (what other lanes get does not matter: they take the scalar path).
// float32: u = 1 + r rounded, log1p(r) = log(u) * r / (u - 1) (Goldberg),
// exact r where u rounds to 1: a few ulp for every r, small ones included.
inline VecF32 log_of_split_sum(VecF32 ones, VecF32 rest) {
    const VecF32 one = VecF32::broadcast(1.0f), zero = VecF32::broadcast(0.0f);
    const VecF32 r = rest / ones;
    const VecF32 u = one + r, d = u - one;
    const VecF32 log1p_r = select_equal(d, zero, r, log_positive(u) * (r / d));
    return log1p_r + select_equal(ones, one, zero, log_positive(ones));
}
// float64: lane by lane with libm.
inline VecF64 log_of_split_sum(VecF64 ones, VecF64 rest) {
    alignas(64) double n[VecF64::width], r[VecF64::width];
    ones.store(n), rest.store(r);
    for (int l = 0; l < VecF64::width; ++l) {
        const double n1 = n[l] > 0 ? n[l] : 1.0;
        r[l] = (n1 == 1.0 ? 0.0 : std::log(n1)) + std::log1p(r[l] / n1);
    }
    return VecF64::load(r);
}

// v where v is finite, else 0: the shift a lane's exps are computed against.
template <class V>
inline V finite_or_zero(V v) {
    const V zero = V::broadcast(0);
    return select_equal(v - v, zero, v, zero);
}

// Whether an output of `bytes` per element may be streamed: as
// output_store.hpp's streamable_output, and every class row off a line
// boundary by the same amount (chunk then starts the groups on one).
inline bool can_stream(const void* out, const void* in, int64_t outer, int64_t C, int64_t inner,
                       size_t bytes) {
    return streamable_output(out, in, outer * C * inner, bytes) &&
           (inner * static_cast<int64_t>(bytes)) % 64 == 0;
}

// focal_loss / focal_grad: the focal loss (kernels/focal.cpp), whose
// gradient is cross-entropy's with a per-lane factor (focal_terms.hpp).
enum class LaneOutput { lse, softmax, log_softmax, loss, loss_grad, focal_loss, focal_grad };

// The lse of one lane, class by class in float64, for the lanes the vector
// path cannot hold: nan (a nan), +inf (a +inf, no nan) or -inf (only -inf).
// logit(c) is the lane's logit of class c.
template <class Logit>
inline double lse_of_lane(int64_t C, Logit logit) {
    bool pinf = false, nan = false, finite = false;
    for (int64_t c = 0; c < C; ++c) {
        const double v = logit(c);
        nan |= v != v;
        pinf |= v == kInf;
        finite |= std::isfinite(v);
    }
    if (nan) return kNaN;
    if (pinf) return kInf;
    // Not reached for a finite lane (the vector path held it); kept exact anyway.
    if (finite) {
        double m = -kInf, s = 0;
        for (int64_t c = 0; c < C; ++c) m = std::max(m, logit(c));
        for (int64_t c = 0; c < C; ++c) s += std::exp(logit(c) - m);
        return m + std::log(s);
    }
    return -kInf;
}

// kRowLanes: the lanes are the rows of a (rows, C) array instead (few
// classes, where a row reduced on its own is a chain of dependent steps far
// longer than its C exps; see short_rows.hpp). Then outer is 1, inner the
// number of rows, only the tile way is taken, and the tile is filled by a
// transposing copy of the group's rows (contiguous in memory: one short
// stream), its outputs copied back into the rows the same way.
template <class T, class G, LaneOutput M, SweepSums E, bool kRowLanes = false>
struct ClassLanes {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr int W = V::width;
    static constexpr bool kFocal = M == LaneOutput::focal_loss || M == LaneOutput::focal_grad;
    // Per-lane targets (the loss needs the target's logit).
    static constexpr bool kCE = M == LaneOutput::loss || M == LaneOutput::loss_grad || kFocal;
    static constexpr bool kGradient = M == LaneOutput::loss_grad || M == LaneOutput::focal_grad;
    static constexpr bool kWrite = M == LaneOutput::softmax || M == LaneOutput::log_softmax || kGradient;
    // The exps kept in the tile for the write.
    static constexpr bool kNeedExps =
        M == LaneOutput::softmax || M == LaneOutput::loss_grad || M == LaneOutput::focal_grad;
    // Focal's sweep takes its terms with the rounding of x - max recovered
    // (dominant.hpp's exp_recovered): a confident lane's small loss keeps its
    // relative precision without a second sum over the tile (which, with the
    // exps stored over the logits, would have to read the logits again).

    // Tile groups: 4 vectors (the per-lane sums of 4 chains in flight).
    static constexpr int kTileVecs = 4;
    static constexpr int kTileLanes = kTileVecs * W;
    // Online groups as wide (narrower ones, one line per class so that the
    // re-read finds the group in cache, were slower: softmax of (32000, 2048)
    // along axis 0, 2 threads, 311 ms at one vector vs 80 ms at four).
    static constexpr int kOnlineVecs = kTileVecs;
    // A tile of at most this many bytes stays in L2 between its sweeps.
    static constexpr int64_t kTileBytes = int64_t{256} << 10;
    // The tile sweep sums its exps in blocks of this many classes (see tile_sums).
    static constexpr int64_t kSumBlock = 32;
    // The online sweep takes its classes in blocks of this many (see online_chunk).
    static constexpr int64_t kOnlineBlock = 64;
    // Positions per unit of work shared out to threads (a multiple of every group).
    static constexpr int64_t kChunkLanes = 16 * kTileLanes;

    const T* x = nullptr;
    G* out = nullptr;  // softmax / log_softmax / gradient: outer x C x inner of G
    A* lse = nullptr;  // LaneOutput::lse: outer x inner of A
    int64_t outer = 0, C = 0, inner = 0;
    const CrossEntropyArgs* args = nullptr;
    const A* weight = nullptr;
    double beta = 0, coef_total = 0;
    bool stream = false;
    // Focal: alpha per class (or null: focal_alpha_scalar) and gamma.
    const double* focal_alpha = nullptr;
    double focal_alpha_scalar = 1, focal_gamma = 0;

    bool tiled() const { return C * kTileLanes * static_cast<int64_t>(sizeof(A)) <= kTileBytes; }
    const T* col(int64_t o, int64_t c, int64_t j) const {
        if constexpr (kRowLanes) return x + j * C + c;
        return x + (o * C + c) * inner + j;
    }
    G* out_col(int64_t o, int64_t c, int64_t j) const {
        if constexpr (kRowLanes) return out + j * C + c;
        return out + (o * C + c) * inner + j;
    }

    // Vector k of a group at p; with kFull false only the first n lanes of
    // the group are positions (the rest read as `fill` / are not written).
    template <bool kFull>
    static PYCE_ALWAYS_INLINE V load(const T* p, int k, int64_t n, A fill) {
        return lane_load<V, kFull>(p, k, n, fill);
    }
    template <bool kFull, bool kStream, class S>
    static PYCE_ALWAYS_INLINE void store(S* p, int k, int64_t n, V v) {
        if constexpr (kFull) {
            if constexpr (kStream)
                vstream(p + k * W, v);
            else
                vstore(p + k * W, v);
        } else {
            const int64_t m = std::clamp<int64_t>(n - int64_t{k} * W, 0, W);
            if (m == W)
                vstore(p + k * W, v);
            else if (m)
                vstore_partial(p + k * W, m, v);
        }
    }
    template <int NV>
    static void spill(const V* v, A* lanes) {
        for (int k = 0; k < NV; ++k) v[k].store(lanes + k * W);
    }

    PYCE_ALWAYS_INLINE V class_coef(int64_t c) const {
        if constexpr (E == SweepSums::sum_wx) return V::broadcast(weight[c]);
        return V::broadcast(A(1));
    }

    // What a group's sweep gathers per lane.
    template <int NV>
    struct Sums {
        V shift[NV];  // the max where finite, else 0: what the exps are taken against
        V top[NV];    // the max as it is (+-inf, or nan-blind)
        V ones[NV];   // how many terms are exp(0) = 1 (the max's)
        V rest[NV];   // the sum of the other terms
        V dot[NV];    // sum of coef * x (label smoothing)
        V xt[NV];     // the target's logit (cross-entropy; 0 for an ignored lane)
    };

    // Per-lane inputs of a cross-entropy group, in the compute type.
    template <int NV>
    struct Targets {
        int64_t index[NV * W];  // the class index; -1 for ignored lanes and padding
        V cls[NV];              // the class index as A; -1 for ignored lanes and padding
        V kept[NV];             // 1, or 0 for ignored lanes and padding
        V alpha[NV];            // (1 - eps) w_t; 0 when ignored
        V scale[NV];            // grad_output (/ divisor); 0 when ignored
        V at_hi[NV];            // scale * alpha, split in two so that it is subtracted
        V at_lo[NV];            //   exactly where q is near 1
    };

    template <int NV>
    void targets(int64_t o, int64_t j0, int64_t n, Targets<NV>& in) const {
        constexpr int L = NV * W;
        const CrossEntropyArgs& loss_args = *args;
        const int64_t* target = loss_args.target + o * inner + j0;
        alignas(64) A cls[L];
        // (Branch-free loops the compiler vectorises: at a few classes a
        // group's per-lane steps cost as much as its exps.)
        const int64_t ignore = loss_args.ignore_index;
        for (int64_t l = 0; l < n; ++l) in.index[l] = target[l] == ignore ? -1 : target[l];
        for (int64_t l = n; l < L; ++l) in.index[l] = -1;
        for (int64_t l = 0; l < L; ++l) cls[l] = static_cast<A>(in.index[l]);
        const V one = V::broadcast(A(1)), zero = V::broadcast(A(0)), none = V::broadcast(A(-1));
        for (int k = 0; k < NV; ++k) {
            in.cls[k] = V::load(cls + k * W);
            in.kept[k] = select_equal(in.cls[k], none, zero, one);
        }
        const double alpha0 = 1.0 - loss_args.label_smoothing, scale0 = loss_args.grad_scale;
        if (!weight && !loss_args.grad_scale_rows) {
            // Every kept lane has the same alpha and scale.
            const A hi0 = static_cast<A>(alpha0 * scale0);
            const A lo0 = static_cast<A>(alpha0 * scale0 - static_cast<double>(hi0));
            // (Selected, not multiplied by kept: the scale is inf when every row is ignored.)
            auto kept_or_zero = [&](int k, A v) {
                return select_equal(in.cls[k], none, zero, V::broadcast(v));
            };
            for (int k = 0; k < NV; ++k) {
                in.alpha[k] = kept_or_zero(k, static_cast<A>(alpha0));
                in.scale[k] = kept_or_zero(k, static_cast<A>(scale0));
                in.at_hi[k] = kept_or_zero(k, hi0);
                in.at_lo[k] = kept_or_zero(k, lo0);
            }
            return;
        }
        alignas(64) A al[L], sc[L], hi[L], lo[L];
        for (int64_t l = 0; l < L; ++l) {
            al[l] = sc[l] = hi[l] = lo[l] = 0;
            if (cls[l] < 0) continue;
            const double scale =
                loss_args.grad_scale_rows ? loss_args.grad_scale_rows[o * inner + j0 + l] : scale0;
            const double alpha = alpha0 * (weight ? static_cast<double>(weight[target[l]]) : 1.0);
            const double at = scale * alpha;
            al[l] = static_cast<A>(alpha), sc[l] = static_cast<A>(scale);
            hi[l] = static_cast<A>(at), lo[l] = static_cast<A>(at - static_cast<double>(hi[l]));
        }
        for (int k = 0; k < NV; ++k) {
            in.alpha[k] = V::load(al + k * W), in.scale[k] = V::load(sc + k * W);
            in.at_hi[k] = V::load(hi + k * W), in.at_lo[k] = V::load(lo + k * W);
        }
    }

    // The tile sweeps of a group: its logits copied into the (C, L) tile
    // with their max, then the exps from the tile (stored over the logits
    // when an output needs them).
    template <bool kFull>
    void tile_sums(int64_t o, int64_t j0, int64_t n, A* tile, const Targets<kTileVecs>& in,
                   Sums<kTileVecs>& s) const {
        constexpr int NV = kTileVecs, L = kTileLanes;
        V mx[NV];
        fill_lane_tile<NV, kFull, kRowLanes>(x, C, inner, o, j0, n, tile, mx);
        const V zero = V::broadcast(A(0));
        for (int k = 0; k < NV; ++k) {
            s.top[k] = mx[k], s.shift[k] = finite_or_zero(mx[k]);
            s.ones[k] = zero, s.rest[k] = zero, s.dot[k] = zero;
        }
        if constexpr (kCE) {
            // The targets' logits, from the tile before the exps overwrite it.
            alignas(64) A xt[L];
            for (int64_t l = 0; l < L; ++l) xt[l] = in.index[l] >= 0 ? tile[in.index[l] * L + l] : A(0);
            for (int k = 0; k < NV; ++k) s.xt[k] = V::load(xt + k * W);
        }
        // The sum in two levels, kSumBlock classes at a time and then the
        // blocks' sums: a lane's rounding error grows with the block length
        // plus the number of blocks, not with C (1000 one-level terms made
        // the gradient 4.5 ulp off on average, against 1.8 for the row
        // kernels). C <= kSumBlock: one block, its sum as before, bitwise.
        for (int64_t c0 = 0; c0 < C; c0 += kSumBlock) {
            const int64_t c1 = std::min(C, c0 + kSumBlock);
            V part[NV];
            for (int k = 0; k < NV; ++k) part[k] = zero;
            for (int64_t c = c0; c < c1; ++c) {
                A* t = tile + c * L;
                const V coef = class_coef(c);
                for (int k = 0; k < NV; ++k) {
                    const V xv = V::load(t + k * W);
                    V e;
                    if constexpr (kFocal)
                        e = exp_recovered(xv, zero - s.shift[k]);
                    else
                        e = exp_bounded(xv - s.shift[k]);
                    if constexpr (kNeedExps) e.store(t + k * W);
                    add_split(e, s.ones[k], part[k]);
                    // (Padding lanes read -inf: their dot is -inf, and never used.)
                    if constexpr (E != SweepSums::none) s.dot[k] = fmadd(coef, xv, s.dot[k]);
                }
            }
            for (int k = 0; k < NV; ++k) s.rest[k] = s.rest[k] + part[k];
        }
    }

    // The online sweep's start for a group: no classes seen yet (and, for
    // cross-entropy, the targets' logits read from memory).
    template <int NV>
    void online_start(int64_t o, int64_t j0, int64_t n, const Targets<NV>& in, Sums<NV>& s) const {
        constexpr int L = NV * W;
        const A ninf = -std::numeric_limits<A>::infinity();
        const V zero = V::broadcast(A(0));
        for (int k = 0; k < NV; ++k) {
            s.top[k] = V::broadcast(ninf), s.shift[k] = zero;
            s.ones[k] = zero, s.rest[k] = zero, s.dot[k] = zero;
        }
        if constexpr (kCE) {
            alignas(64) A xt[L];
            for (int64_t l = 0; l < L; ++l)
                xt[l] = l < n && in.index[l] >= 0 ? to_acc(*col(o, in.index[l], j0 + l)) : A(0);
            for (int k = 0; k < NV; ++k) s.xt[k] = V::load(xt + k * W);
        }
    }

    // The online sweep of a group over classes [c0, c1), straight from the
    // logits; the lines of the same lanes one class block on are asked for
    // on the way (the next block of the chunk, see online_chunk).
    template <int NV, bool kFull>
    void online_sweep(int64_t o, int64_t j0, int64_t n, int64_t c0, int64_t c1, Sums<NV>& s) const {
        constexpr int L = NV * W;
        const A ninf = -std::numeric_limits<A>::infinity();
        constexpr int64_t kLines = (L * static_cast<int64_t>(sizeof(T)) + 63) / 64;
        constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(T));
        const V zero = V::broadcast(A(0));
        for (int64_t c = c0; c < c1; ++c) {
            const T* p = col(o, c, j0);
            if (c + kOnlineBlock < C)
                for (int64_t line = 0; line < kLines; ++line)
                    prefetch_to_l2(p + line * kLineElems,
                                   kOnlineBlock * inner * static_cast<int64_t>(sizeof(T)));
            const V coef = class_coef(c);
            for (int k = 0; k < NV; ++k) {
                const V xv = load<kFull>(p, k, n, ninf);
                if (any_greater(xv, s.top[k])) {
                    // A larger max in some lane: its sums so far are rescaled
                    // to the new shift (every term, its old ones too, now
                    // below the max). The other lanes keep theirs bitwise.
                    const V top = max(s.top[k], xv), shift = finite_or_zero(top);
                    const V f = exp_bounded(s.shift[k] - shift);
                    s.rest[k] = select_equal(top, s.top[k], s.rest[k], (s.rest[k] + s.ones[k]) * f);
                    s.ones[k] = select_equal(top, s.top[k], s.ones[k], zero);
                    s.top[k] = top, s.shift[k] = shift;
                }
                const V e = exp_bounded(xv - s.shift[k]);
                add_split(e, s.ones[k], s.rest[k]);
                if constexpr (E != SweepSums::none) s.dot[k] = fmadd(coef, xv, s.dot[k]);
            }
        }
    }

    // What a group's outputs need once its sums are complete: the shift and
    // log-sum of every lane, the factor on its exps (1 / sum, or the
    // gradient's scale / sum), the gradient's smoothing term, and the lanes
    // that take the scalar path.
    template <int NV>
    struct Finish {
        V shift[NV], ls[NV], f[NV], sub[NV];
        V at_hi[NV], at_lo[NV];  // focal: the gradient's -G at the target, split (as Targets')
        bool bad[NV * W];
        bool any_bad;
    };

    // One tile group of n <= NV * W positions starting at (o, j0).
    template <int NV, bool kFull>
    void tile_group(int64_t o, int64_t j0, int64_t n, A* tile) const {
        Targets<NV> in;
        if constexpr (kCE) targets<NV>(o, j0, n, in);
        Sums<NV> s;
        tile_sums<kFull>(o, j0, n, tile, in, s);
        Finish<NV> fin;
        finish<NV, kFull>(o, j0, n, s, in, fin, tile);
        write<NV, kFull, true>(o, j0, n, tile, fin, in, 0, C);
        fill_bad_lanes<NV>(o, j0, n, fin, in);
    }

    // A group's per-position results (lse; loss and lse per position) from
    // its sums, and what its class outputs need (fin).
    template <int NV, bool kFull>
    void finish(int64_t o, int64_t j0, int64_t n, const Sums<NV>& s, const Targets<NV>& in, Finish<NV>& fin,
                const A* tile = nullptr) const {
        constexpr int L = NV * W;
        V sum[NV];
        for (int k = 0; k < NV; ++k) sum[k] = s.ones[k] + s.rest[k], fin.shift[k] = s.shift[k];
        // Lanes whose max or sum is not finite take the scalar path. (m - m)
        // + (s - s) is nan exactly there; a whole group rarely has one, and
        // then one vector sum tells (padding lanes of a short group are -inf).
        bool* bad = fin.bad;
        for (int64_t l = 0; l < L; ++l) bad[l] = false;
        bool any_bad = false;
        {
            V t = V::broadcast(0);
            for (int k = 0; k < NV; ++k) t = t + ((s.top[k] - s.top[k]) + (sum[k] - sum[k]));
            if (!kFull || !(reduce_add(t) == A(0))) {
                alignas(64) A m_l[L], s_l[L];
                spill<NV>(s.top, m_l), spill<NV>(sum, s_l);
                for (int64_t l = 0; l < n; ++l) {
                    bad[l] = !(std::isfinite(m_l[l]) && std::isfinite(s_l[l]) && s_l[l] > 0);
                    any_bad |= bad[l];
                }
            }
        }
        fin.any_bad = any_bad;
        V* ls = fin.ls;
        for (int k = 0; k < NV; ++k) ls[k] = log_of_split_sum(s.ones[k], s.rest[k]);
        if constexpr (kRowLanes && (M == LaneOutput::lse || M == LaneOutput::log_softmax))
            refine_dominated<NV>(tile, s, fin);

        if constexpr (M == LaneOutput::lse) {
            A* lo = lse + o * inner + j0;
            for (int k = 0; k < NV; ++k) store<kFull, false>(lo, k, n, s.shift[k] + ls[k]);
            if (any_bad)
                for (int64_t l = 0; l < n; ++l)
                    if (bad[l]) lo[l] = static_cast<A>(bad_lse(o, j0 + l));
        } else if constexpr (M == LaneOutput::softmax || M == LaneOutput::log_softmax) {
            for (int k = 0; k < NV; ++k) fin.f[k] = V::broadcast(A(1)) / sum[k], fin.sub[k] = fin.f[k];
        } else if constexpr (kFocal) {
            focal_finish<NV>(o, j0, n, s, in, sum, fin);
        } else {
            // Each lane's loss and gradient factors, as the row kernels
            // compute a row's (block_math.hpp), in the compute type.
            const CrossEntropyArgs& loss_args = *args;
            const V beta_v = V::broadcast(static_cast<A>(beta)),
                    total = V::broadcast(static_cast<A>(coef_total));
            const V z = V::broadcast(static_cast<A>(loss_args.z_loss));
            V loss[NV], lse_v[NV];
            for (int k = 0; k < NV; ++k) {
                lse_v[k] = s.shift[k] + ls[k];
                // lse - x_t as (max - x_t) + log_sum: exact near the max.
                loss[k] = in.alpha[k] * ((s.shift[k] - s.xt[k]) + ls[k]);
                V q_weight = in.alpha[k], kept_terms = V::broadcast(A(0)), kept_q = V::broadcast(A(0));
                if constexpr (E != SweepSums::none) {
                    kept_terms = beta_v * (total * lse_v[k] - s.dot[k]);
                    kept_q = beta_v * total;
                }
                if (loss_args.z_loss != 0.0) {
                    kept_terms = fmadd(z * lse_v[k], lse_v[k], kept_terms);
                    kept_q = fmadd(z + z, lse_v[k], kept_q);
                }
                if (E != SweepSums::none || loss_args.z_loss != 0.0) {
                    loss[k] = fmadd(in.kept[k], kept_terms, loss[k]);
                    q_weight = fmadd(in.kept[k], kept_q, q_weight);
                }
                fin.f[k] = in.scale[k] * q_weight / sum[k];
                fin.sub[k] = V::broadcast(static_cast<A>(-beta)) * in.scale[k];
            }
            alignas(64) A loss_l[L], lse_l[L], cls_l[L];
            spill<NV>(loss, loss_l), spill<NV>(in.cls, cls_l);
            if (loss_args.row_lse) spill<NV>(lse_v, lse_l);
            const int64_t pos = o * inner + j0;
            if (!any_bad && !loss_args.row_lse) {
                // The common case, without a branch per lane (vectorised).
                double* row_loss = loss_args.row_loss + pos;
                for (int64_t l = 0; l < n; ++l)
                    row_loss[l] = cls_l[l] < 0 ? 0.0 : static_cast<double>(loss_l[l]);
                return;
            }
            for (int64_t l = 0; l < n; ++l) {
                const bool ignored = cls_l[l] < 0;
                double lane_loss = static_cast<double>(loss_l[l]), lane_lse = 0;
                if (loss_args.row_lse) lane_lse = static_cast<double>(lse_l[l]);
                if (bad[l]) {
                    lane_loss = kNaN;
                    if (loss_args.row_lse) lane_lse = bad_lse(o, j0 + l);
                }
                if (loss_args.row_lse) loss_args.row_lse[pos + l] = lane_lse;
                loss_args.row_loss[pos + l] = ignored ? 0.0 : lane_loss;
            }
        }
    }

    // Lanes whose largest term dominates their sum (log-sum below
    // kLogDominated) take their log-sum from the lane summed once more without
    // that term, its exps' argument rounding recovered, as the row kernels do
    // (kernels/dominant.hpp, term_below): the log-sum-exp and the dominant
    // class's log-probability keep their relative precision near 0, where the
    // sweep's exps of rounded differences (5e-6 relative at a gap of 80) do
    // not. In vectors over the tile, which still holds the logits (lse and
    // log_softmax store no exps): row by row, this second sum made a
    // logsumexp of 262144 x 2 slower than PyTorch's (3.6 against 2.7 ms).
    template <int NV>
    void refine_dominated(const A* tile, const Sums<NV>& s, Finish<NV>& fin) const {
        constexpr int L = NV * W;
        const V limit = V::broadcast(static_cast<A>(kLogDominated)), zero = V::broadcast(A(0)),
                one = V::broadcast(A(1));
        bool any = false;
        for (int k = 0; k < NV; ++k) any |= any_greater(limit, fin.ls[k]);
        if (!any) return;
        V neg_top[NV], rest[NV];
        for (int k = 0; k < NV; ++k) neg_top[k] = zero - s.top[k], rest[k] = zero;
        for (int64_t c = 0; c < C; ++c) {
            const A* t = tile + c * L;
            for (int k = 0; k < NV; ++k)
                rest[k] = rest[k] + term_below(V::load(t + k * W), s.top[k], neg_top[k]);
        }
        // Lanes not dominated, and those the scalar path takes (bad), keep theirs.
        for (int k = 0; k < NV; ++k)
            fin.ls[k] = select_equal(less(fin.ls[k], limit), one, log_of_split_sum(one, rest[k]), fin.ls[k]);
    }

    // A focal group's losses and gradient factors from each lane's
    // nll = (max - x_t) + log S (as the row kernel's finish): the loss
    // a (1 - p)^gamma nll and the factor G of the gradient G (q - onehot(t))
    // (focal_terms.hpp), so f = scale G / S on the exps and scale G
    // subtracted at the target, split in two as cross-entropy's scale alpha
    // (exact near q_t = 1). float32 lanes with gamma 0, 1 or 2 take the terms
    // in vectors (libm's expm1 and exp, lane by lane, cost a 21-class lane
    // more than its exps did); other gammas and float64, lane by lane in
    // double. Ignored lanes get 0; the lanes the scalar path takes, nan
    // (fill_bad_lanes their gradient).
    template <int NV>
    void focal_finish(int64_t o, int64_t j0, int64_t n, const Sums<NV>& s, const Targets<NV>& in,
                      const V (&sum)[NV], Finish<NV>& fin) const {
        constexpr int L = NV * W;
        const V zero = V::broadcast(A(0));
        V nll[NV];
        for (int k = 0; k < NV; ++k) nll[k] = (s.shift[k] - s.xt[k]) + fin.ls[k];
        const CrossEntropyArgs& loss_args = *args;
        const int64_t pos = o * inner + j0;
        double* row_loss = loss_args.row_loss + pos;
        const bool small_gamma = focal_gamma == 0.0 || focal_gamma == 1.0 || focal_gamma == 2.0;
        if constexpr (std::is_same_v<A, float>) {
            if (small_gamma) {
                alignas(64) A alpha_l[L], loss_l[L];
                for (int64_t l = 0; l < L; ++l) {
                    const int64_t t = in.index[l];
                    alpha_l[l] =
                        t < 0 ? A(0) : static_cast<A>(focal_alpha ? focal_alpha[t] : focal_alpha_scalar);
                }
                for (int k = 0; k < NV; ++k) {
                    V loss, factor;
                    focal_terms_f32(nll[k], static_cast<int>(focal_gamma), V::load(alpha_l + k * W), loss,
                                    factor);
                    loss.store(loss_l + k * W);
                    if constexpr (kGradient) {
                        // scale G and its rounding error (an exact product).
                        fin.at_hi[k] = in.scale[k] * factor;
                        fin.at_lo[k] = fmadd(in.scale[k], factor, zero - fin.at_hi[k]);
                        fin.f[k] = fin.at_hi[k] / sum[k], fin.sub[k] = zero;
                    }
                }
                for (int64_t l = 0; l < n; ++l)
                    row_loss[l] = in.index[l] < 0 ? 0.0 : fin.bad[l] ? kNaN : static_cast<double>(loss_l[l]);
                return;
            }
        }
        alignas(64) A nll_l[L], hi_l[L], lo_l[L];
        for (int k = 0; k < NV; ++k) nll[k].store(nll_l + k * W);
        for (int64_t l = 0; l < L; ++l) {
            hi_l[l] = lo_l[l] = A(0);
            if (l >= n) continue;
            const int64_t t = in.index[l];
            if (t < 0) {
                row_loss[l] = 0.0;
                continue;
            }
            if (fin.bad[l]) {
                row_loss[l] = kNaN;
                continue;
            }
            const double alpha = focal_alpha ? focal_alpha[t] : focal_alpha_scalar;
            double loss, factor;
            focal_terms(static_cast<double>(nll_l[l]), alpha, focal_gamma, loss, factor);
            row_loss[l] = loss;
            if constexpr (kGradient) {
                const double scale =
                    loss_args.grad_scale_rows ? loss_args.grad_scale_rows[pos + l] : loss_args.grad_scale;
                const double mul = scale * factor;
                hi_l[l] = static_cast<A>(mul);
                lo_l[l] = static_cast<A>(mul - static_cast<double>(hi_l[l]));
            }
        }
        if constexpr (kGradient) {
            for (int k = 0; k < NV; ++k) {
                fin.at_hi[k] = V::load(hi_l + k * W), fin.at_lo[k] = V::load(lo_l + k * W);
                fin.f[k] = fin.at_hi[k] / sum[k], fin.sub[k] = zero;
            }
        }
    }

    // The class outputs of the lanes the vector path could not hold (after
    // the vector writes, over them): nan, or 0 for an ignored target.
    template <int NV>
    void fill_bad_lanes(int64_t o, int64_t j0, int64_t n, const Finish<NV>& fin,
                        const Targets<NV>& in) const {
        if constexpr (kWrite) {
            if (!fin.any_bad) return;
            for (int64_t l = 0; l < n; ++l) {
                if (!fin.bad[l]) continue;
                const bool ignored = kCE && in.index[l] < 0;
                fill_lane(o, j0 + l, from_acc<G>(ignored ? A(0) : std::numeric_limits<A>::quiet_NaN()));
            }
        }
    }

    // The online way through a chunk of positions [j0, j1) of outer index o
    // (many classes): its groups are swept a block of kOnlineBlock classes at
    // a time, all the groups over one block before the next block, so that
    // every class row is read in one run of the chunk's width (whole lines,
    // one page) rather than a group's width, and the next block's lines are
    // asked for while this one is summed. Each lane still meets its classes
    // in order, so its sums are those of a group swept alone. The outputs
    // are written block by block in the same order.
    template <int NV>
    void online_chunk(int64_t o, int64_t j0, int64_t j1) const {
        constexpr int L = NV * W;
        constexpr int kMaxGroups = static_cast<int>(kChunkLanes / L) + 1;
        int64_t start[kMaxGroups], count[kMaxGroups];
        int groups = 0;
        int64_t j = j0;
        const int64_t head = stream_head(o, j0, j1);
        if (head > 0) start[groups] = j, count[groups++] = head, j += head;
        for (; j < j1; j += L) start[groups] = j, count[groups++] = std::min<int64_t>(L, j1 - j);

        Targets<NV> in[kMaxGroups];
        Sums<NV> s[kMaxGroups];
        for (int g = 0; g < groups; ++g) {
            if constexpr (kCE) targets<NV>(o, start[g], count[g], in[g]);
            online_start<NV>(o, start[g], count[g], in[g], s[g]);
        }
        for (int64_t c0 = 0; c0 < C; c0 += kOnlineBlock) {
            const int64_t c1 = std::min(C, c0 + kOnlineBlock);
            for (int g = 0; g < groups; ++g) {
                if (count[g] == L)
                    online_sweep<NV, true>(o, start[g], count[g], c0, c1, s[g]);
                else
                    online_sweep<NV, false>(o, start[g], count[g], c0, c1, s[g]);
            }
        }
        Finish<NV> fin[kMaxGroups];
        for (int g = 0; g < groups; ++g) {
            if (count[g] == L)
                finish<NV, true>(o, start[g], count[g], s[g], in[g], fin[g]);
            else
                finish<NV, false>(o, start[g], count[g], s[g], in[g], fin[g]);
        }
        if constexpr (kWrite) {
            for (int64_t c0 = 0; c0 < C; c0 += kOnlineBlock) {
                const int64_t c1 = std::min(C, c0 + kOnlineBlock);
                for (int g = 0; g < groups; ++g) {
                    if (count[g] == L)
                        write<NV, true, false>(o, start[g], count[g], nullptr, fin[g], in[g], c0, c1);
                    else
                        write<NV, false, false>(o, start[g], count[g], nullptr, fin[g], in[g], c0, c1);
                }
            }
            for (int g = 0; g < groups; ++g) fill_bad_lanes<NV>(o, start[g], count[g], fin[g], in[g]);
        }
    }

    // The class outputs of a group for classes [c0, c1), streamed where the
    // group starts on a line.
    template <int NV, bool kFull, bool kTile>
    void write(int64_t o, int64_t j0, int64_t n, A* tile, const Finish<NV>& fin, const Targets<NV>& in,
               int64_t c0, int64_t c1) const {
        if constexpr (kWrite && kRowLanes) {
            // Into the tile, then the tile transposed back into the rows.
            write_classes<NV, kFull, kTile, false>(o, j0, n, tile, fin, in, c0, c1);
            tile_to_rows<G, V>(tile, NV * W, C, n, out + j0 * C);
        } else if constexpr (kWrite) {
            if (kFull && stream && reinterpret_cast<uintptr_t>(out_col(o, 0, j0)) % 64 == 0)
                write_classes<NV, kFull, kTile, true>(o, j0, n, tile, fin, in, c0, c1);
            else
                write_classes<NV, kFull, kTile, false>(o, j0, n, tile, fin, in, c0, c1);
        }
    }

    // The outputs of a group: softmax e * f, log_softmax (x - max) - log_sum,
    // or the gradient e * mul [+ sub * coef] [- scale alpha at the target].
    // e and x: from the tile, or read again from the logits (online).
    template <int NV, bool kFull, bool kTile, bool kStream>
    void write_classes(int64_t o, int64_t j0, int64_t n, A* tile, const Finish<NV>& fin,
                       const Targets<NV>& in, int64_t c0, int64_t c1) const {
        constexpr int L = NV * W;
        constexpr int64_t kLines = (L * static_cast<int64_t>(sizeof(T)) + 63) / 64;
        constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(T));
        const A ninf = -std::numeric_limits<A>::infinity();
        for (int64_t c = c0; c < c1; ++c) {
            const T* p = col(o, c, j0);
            if constexpr (!kTile)
                if (c + kOnlineBlock < C)
                    for (int64_t line = 0; line < kLines; ++line)
                        prefetch_to_l2(p + line * kLineElems,
                                       kOnlineBlock * inner * static_cast<int64_t>(sizeof(T)));
            A* t = tile + c * L;
            G* q = out_col(o, c, j0);
            const V coef = class_coef(c), cv = V::broadcast(static_cast<A>(c));
            for (int k = 0; k < NV; ++k) {
                V v;
                if constexpr (M == LaneOutput::log_softmax) {
                    const V xv = kTile ? V::load(t + k * W) : load<kFull>(p, k, n, A(0));
                    v = (xv - fin.shift[k]) - fin.ls[k];
                } else {
                    const V e =
                        kTile ? V::load(t + k * W) : exp_bounded(load<kFull>(p, k, n, ninf) - fin.shift[k]);
                    v = e * fin.f[k];
                    if constexpr (M == LaneOutput::loss_grad) {
                        if constexpr (E != SweepSums::none) v = fmadd(coef, fin.sub[k], v);
                        v = select_equal(in.cls[k], cv, (v - in.at_hi[k]) - in.at_lo[k], v);
                    } else if constexpr (M == LaneOutput::focal_grad) {
                        v = select_equal(in.cls[k], cv, (v - fin.at_hi[k]) - fin.at_lo[k], v);
                    }
                }
                if constexpr (kRowLanes)
                    v.store(t + k * W);  // written to the rows by write()
                else
                    store<kFull, kStream>(q, k, n, v);
            }
        }
    }

    // A lane the vector path cannot hold (see lse_of_lane).
    double bad_lse(int64_t o, int64_t j) const {
        return lse_of_lane(C, [&](int64_t c) { return static_cast<double>(to_acc(*col(o, c, j))); });
    }

    void fill_lane(int64_t o, int64_t j, G value) const {
        for (int64_t c = 0; c < C; ++c) *out_col(o, c, j) = value;
    }

    // The positions of a short first group for [j0, j1) of outer index o, or
    // 0: a streamed output whose class rows start off a line boundary (all by
    // the same amount) gets one, so that the whole groups after it start on one.
    int64_t stream_head(int64_t o, int64_t j0, int64_t j1) const {
        if (!stream) return 0;
        const int64_t off = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out_col(o, 0, j0)) % 64);
        return std::min(j1 - j0, off ? (64 - off) / static_cast<int64_t>(sizeof(G)) : 0);
    }

    // The tile way through positions [j0, j1) of outer index o, group by
    // group (a short first group: stream_head).
    void tile_chunk(int64_t o, int64_t j0, int64_t j1, A* tile) const {
        constexpr int NV = kTileVecs, L = kTileLanes;
        const int64_t head = stream_head(o, j0, j1);
        if (head > 0) tile_group<NV, false>(o, j0, head, tile);
        int64_t j = j0 + head;
        for (; j < j1; j += L) {
            const int64_t n = std::min<int64_t>(L, j1 - j);
            if (n == L)
                tile_group<NV, true>(o, j, n, tile);
            else
                tile_group<NV, false>(o, j, n, tile);
        }
    }

    void run(int threads) const {
        const int64_t elements = outer * C * inner;
        if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
            threads = 1;
        const int64_t chunk_lanes =
            kRowLanes
                ? positions_per_unit(kChunkLanes, kTileLanes, outer, inner, threads, C, kShortRowUnitElements)
                : positions_per_unit(kChunkLanes, kTileLanes, outer, inner, threads);
        const int64_t chunks_per_outer = (inner + chunk_lanes - 1) / chunk_lanes;
        const int64_t units = outer * chunks_per_outer;
        const bool tile = tiled();
        parallel_ranges(units, threads, [&](int64_t u0, int64_t u1) {
            const ScratchLease lease(tile ? static_cast<size_t>(C * kTileLanes) * sizeof(A) : sizeof(A));
            A* scratch = lease.as<A>();
            for (int64_t u = u0; u < u1; ++u) {
                const int64_t o = u / chunks_per_outer, j0 = (u % chunks_per_outer) * chunk_lanes;
                const int64_t j1 = std::min(inner, j0 + chunk_lanes);
                if (tile)
                    tile_chunk(o, j0, j1, scratch);
                else
                    online_chunk<kOnlineVecs>(o, j0, j1);
            }
            if (stream) stream_fence();
        });
        note_kernel_end();
    }
};

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
