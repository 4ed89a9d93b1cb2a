// Kernels for a class axis that is not the innermost one: logits laid out as
// (outer, C, inner), C-contiguous -- PyTorch's (N, C, d1, ...) and NumPy's
// axis=0 -- where the classes of one position lie `inner` elements apart.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
//
// The strided entries (logsumexp / softmax / log_softmax / cross_entropy
// _strided) run ClassLanes (kernels/strided_lanes.hpp). StridedKernel below
// serves the short rows of short_rows.hpp (Layout::rows); its strided layout
// is the earlier version of ClassLanes, no longer registered.
//
// No transposing copy: the contiguous axis is the vector axis. A group of
// kVecs vectors holds kVecs * width neighbouring positions (one per lane),
// and the classes are visited one after the other with contiguous vector
// loads: a vertical max, then a vertical exp-sum, then the outputs. Every
// lane is one position's whole reduction, so nothing is reduced across lanes.
//
// Classes are taken in blocks of kClassBlock. With one block (C <=
// kClassBlock, the common few-class case: segmentation, detection heads) a
// group's logits stay in L1/L2 between the sweeps and its exps wait in a
// scratch tile: each logit is read from memory once and each output written
// once. With more classes the blocks are merged per lane with one rescale
// each, and an output that needs the final log-sum-exp reads the logits again
// (its exps recomputed): a forward still reads each logit once.
//
// Per-lane results depend only on the position, never on which thread or
// which chunk took it: bitwise the same for any thread count.
//
// The same group machinery serves short rows of the usual (rows, C) layout
// (Layout::rows, see short_rows.hpp): there a lane is a row, each row's max
// and exp-sum are reduced in registers, and the group's lanes are finished
// together as above.
//
// Lanes that hold a nan or +inf, or only -inf, take a scalar path that writes
// what the row kernels write for such rows (nan, +inf or -inf lse; nan
// softmax and gradient; 0 for an ignored target).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "runtime/dispatch.hpp"
#include "kernels/block_math.hpp"
#include "kernels/parallel.hpp"
#include "kernels/registration.hpp"
#include "kernels/short_rows.hpp"
#include "kernels/strided_lanes.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

constexpr int kVecs = 4;              // vectors per group of positions
constexpr int64_t kClassBlock = 512;  // classes per block (see the top of the file)
constexpr int64_t kChunkGroups = 16;  // groups per unit of work shared out to threads
// Short rows of fewer classes than this take ClassLanes with rows as lanes
// (a transposing copy into its tile, a lane's sums in vector registers);
// from here on StridedKernel's rows (each row reduced across its vector).
// With the tile copies transposed in registers by whole blocks
// (tile_transpose.hpp) rows as lanes are faster up to 127 classes: fused
// 8192 x 88 0.89x and 16384 x 64 0.87x the rows' time (in-process A/B, 2
// threads, AVX2 on Zen 3), gradients within 1e-11 of the rows'. They were
// also faster from 128 classes on (1024 x 1000 fused out= 0.25 against 0.35
// ms), but their different rounding moved a tiny LLaMA's six-step SGD curve
// (tests/test_hf.py, lr 2, 211 classes) 1.9e-6 away from PyTorch's, where
// the rows' stays within 2e-7: left for a later change that matches the
// rows' accuracy first.
constexpr int64_t kRowLanesBelowCols = 128;
inline bool rows_as_lanes(int64_t cols) { return cols < kRowLanesBelowCols; }
enum class Mode { lse, softmax, log_softmax, loss, loss_grad };

// strided: (outer, C, inner), a lane is a position, classes `inner` apart.
// rows: (rows, C), a lane is a row, classes contiguous.
enum class Layout { strided, rows };

template <class T, class G, Mode M, SweepSums E, Layout kLayout = Layout::strided>
struct StridedKernel {
    static constexpr bool kRows = kLayout == Layout::rows;
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr int W = V::width;
    static constexpr int L = kVecs * W;  // positions per group
    static constexpr bool kCE = M == Mode::loss || M == Mode::loss_grad;
    static constexpr bool kWrite = M == Mode::softmax || M == Mode::log_softmax || M == Mode::loss_grad;
    static constexpr bool kNeedExps = M == Mode::softmax || M == Mode::loss_grad;

    const T* x;
    G* out;  // softmax / log_softmax / gradient: outer x C x inner of G
    A* lse;  // Mode::lse: outer x inner of A
    int64_t outer, C, inner;
    const CrossEntropyArgs* loss_args = nullptr;
    const A* weight = nullptr;
    double beta = 0, coef_total = 0;
    bool stream = false;

    int64_t nblocks() const { return (C + kClassBlock - 1) / kClassBlock; }
    // Element (o, c, j): class c of position j of outer index o (strided), or
    // class c of row j (rows: o is 0 and `inner` counts the rows).
    int64_t offset(int64_t o, int64_t c, int64_t j) const {
        return kRows ? j * C + c : (o * C + c) * inner + j;
    }
    const T* col(int64_t o, int64_t c, int64_t j) const { return x + offset(o, c, j); }
    G* out_col(int64_t o, int64_t c, int64_t j) const { return out + offset(o, c, j); }

    // The group's vector k at p; with kFull false only the first n lanes of
    // the group are positions (the rest read as `fill`).
    template <bool kFull>
    static PYCE_ALWAYS_INLINE V load(const T* p, int k, int64_t n, A fill) {
        if constexpr (kFull) return vload(p + k * W);
        const int64_t m = std::clamp<int64_t>(n - int64_t{k} * W, 0, W);
        if (m == W) return vload(p + k * W);
        return m ? vload_partial(p + k * W, m, fill) : V::broadcast(fill);
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

    // Per-lane inputs of a cross-entropy group, in the compute type.
    struct LaneInputs {
        alignas(64) A target[L];        // class index as A; -1 for ignored lanes and padding
        alignas(64) A alpha[L];         // (1 - eps) w_t; 0 when ignored
        alignas(64) A scale[L];         // grad_output (/ divisor); 0 when ignored
        alignas(64) A at_hi[L];         // scale * alpha, split in two so that it is subtracted
        alignas(64) A at_lo[L];         //   exactly where q is near 1
        alignas(64) A xt[L];            // the target's logit
        double alpha_d[L], scale_d[L];  // alpha and scale in float64, for the loss and the factors
        bool ignored[L];
    };

    // xs: the group's logits as a (C, L) tile (strided, one block), else null
    // (the target's logit is read from the array).
    void lane_inputs(int64_t o, int64_t j0, int64_t n, const A* xs, LaneInputs& in) const {
        // Without class weights or per-row grad_output, every kept lane has
        // the same alpha and scale.
        const bool uniform = !weight && !loss_args->grad_scale_rows;
        const double alpha0 = 1.0 - loss_args->label_smoothing, scale0 = loss_args->grad_scale;
        const A alpha0_a = static_cast<A>(alpha0), scale0_a = static_cast<A>(scale0);
        const A hi0 = static_cast<A>(alpha0 * scale0);
        const A lo0 = static_cast<A>(alpha0 * scale0 - static_cast<double>(hi0));
        const int64_t* target = loss_args->target + o * inner + j0;
        for (int64_t l = 0; l < L; ++l) {
            const int64_t t = l < n ? target[l] : loss_args->ignore_index;
            const bool ignored = t == loss_args->ignore_index;
            in.ignored[l] = ignored;
            if (ignored) {
                in.target[l] = A(-1), in.alpha[l] = 0, in.scale[l] = 0, in.at_hi[l] = 0, in.at_lo[l] = 0;
                in.xt[l] = 0, in.alpha_d[l] = 0, in.scale_d[l] = 0;
                continue;
            }
            in.target[l] = static_cast<A>(t);
            in.xt[l] = xs ? xs[t * L + l] : to_acc(*col(o, t, j0 + l));
            if (uniform) {
                in.alpha[l] = alpha0_a, in.scale[l] = scale0_a, in.at_hi[l] = hi0, in.at_lo[l] = lo0;
                in.alpha_d[l] = alpha0, in.scale_d[l] = scale0;
                continue;
            }
            const double scale =
                loss_args->grad_scale_rows ? loss_args->grad_scale_rows[o * inner + j0 + l] : scale0;
            const double alpha = alpha0 * (weight ? static_cast<double>(weight[t]) : 1.0);
            in.alpha[l] = static_cast<A>(alpha);
            in.scale[l] = static_cast<A>(scale);
            in.alpha_d[l] = alpha, in.scale_d[l] = scale;
            const double at = scale * alpha;
            in.at_hi[l] = static_cast<A>(at);
            in.at_lo[l] = static_cast<A>(at - static_cast<double>(in.at_hi[l]));
        }
    }

    // The scratch of a strided group: its logits as a (classes, L) tile of A
    // (the block's, with several blocks), then its exps (one block, when an
    // output needs them). Short rows keep only their exps, (L, C).
    int64_t tile_classes() const { return std::min(C, kClassBlock); }
    A* exps_tile(A* scratch) const { return kRows ? scratch : scratch + tile_classes() * L; }
    const A* exps_tile(const A* scratch) const { return kRows ? scratch : scratch + tile_classes() * L; }
    size_t scratch_elems() const {
        const bool one_block = kRows || nblocks() == 1;
        const int64_t exps = kNeedExps && one_block ? C * L : 0;
        return static_cast<size_t>((kRows ? 0 : tile_classes() * L) + exps + 1);
    }

    // A strided group's per-lane max (ms: finite or 0; mtrue: as it is), sum
    // of exps against ms, and dot product of the label-smoothing coefficients.
    template <bool kFull>
    void strided_stats(int64_t o, int64_t j0, int64_t n, A* scratch, V* ms, V* s, V* dot, V* mtrue, V* rest,
                       V* ones) const {
        const A ninf = -std::numeric_limits<A>::infinity();
        const int64_t nb = nblocks();
        const bool one_block = nb == 1;
        // The logits are read from memory once, into the contiguous tile xs:
        // a position's classes lie `inner` apart, and with inner a power of
        // two (512 x 512) they all fall in one cache set, evicting each other
        // before a second sweep could find them. The prefetch runs 8 classes
        // ahead (8 lines per set in flight), into the next group after the last.
        constexpr int64_t kAhead = 8;
        constexpr int64_t kLines = (L * static_cast<int64_t>(sizeof(T)) + 63) / 64;
        constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(T));
        A* xs = scratch;
        A* es = exps_tile(scratch);

        for (int k = 0; k < kVecs; ++k) {
            ms[k] = V::broadcast(-std::numeric_limits<A>::max());
            s[k] = V::broadcast(0), dot[k] = V::broadcast(0), mtrue[k] = V::broadcast(ninf);
        }
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t c0 = b * kClassBlock, c1 = std::min(C, c0 + kClassBlock);
            V mb[kVecs];
            for (int k = 0; k < kVecs; ++k) mb[k] = V::broadcast(ninf);
            for (int64_t c = c0; c < c1; ++c) {
                const T* p = col(o, c, j0);
                const T* ahead = c + kAhead < C ? col(o, c + kAhead, j0) : col(o, c + kAhead - C, j0 + L);
                for (int64_t line = 0; line < kLines; ++line) prefetch_ahead(ahead + line * kLineElems, 0);
                A* xt = xs + (c - c0) * L;
                for (int k = 0; k < kVecs; ++k) {
                    const V xv = load<kFull>(p, k, n, ninf);
                    xv.store(xt + k * W);
                    mb[k] = max(mb[k], xv);
                }
            }
            V sb[kVecs], sum[kVecs], rb[kVecs], nb1[kVecs];
            const V one = V::broadcast(A(1)), zero = V::broadcast(A(0));
            for (int k = 0; k < kVecs; ++k)
                sb[k] = finite_or_zero(mb[k]), sum[k] = zero, rb[k] = zero, nb1[k] = zero;
            for (int64_t c = c0; c < c1; ++c) {
                const A* xt = xs + (c - c0) * L;
                A* e_out = es + (c - c0) * L;
                V coef;
                if constexpr (E == SweepSums::sum_x) coef = V::broadcast(A(1));
                if constexpr (E == SweepSums::sum_wx) coef = V::broadcast(weight[c]);
                for (int k = 0; k < kVecs; ++k) {
                    const V xv = V::load(xt + k * W);
                    const V e = exp_bounded(xv - sb[k]);
                    if (kNeedExps && one_block) e.store(e_out + k * W);
                    sum[k] = sum[k] + e;
                    // The terms other than the max's (exp 1), apart: log1p of them (see group).
                    rb[k] = rb[k] + select_equal(e, one, zero, e);
                    nb1[k] = nb1[k] + select_equal(e, one, one, zero);
                    // (Padding lanes read -inf: their dot is -inf, and never used.)
                    if constexpr (E != SweepSums::none) dot[k] = fmadd(coef, xv, dot[k]);
                }
            }
            if (one_block) {
                for (int k = 0; k < kVecs; ++k)
                    ms[k] = sb[k], s[k] = sum[k], mtrue[k] = mb[k], rest[k] = rb[k], ones[k] = nb1[k];
            } else {
                // (Ms, S) + (sb, sum) with one rescale; an all -inf block (sum 0)
                // leaves the shift where it was.
                for (int k = 0; k < kVecs; ++k) {
                    const V zero = V::broadcast(0);
                    const V mn = select_equal(sum[k], zero, ms[k], max(ms[k], sb[k]));
                    s[k] = fmadd(s[k], exp_bounded(ms[k] - mn), sum[k] * exp_bounded(sb[k] - mn));
                    ms[k] = mn;
                    mtrue[k] = max(mtrue[k], mb[k]);
                    // Several blocks: the sum near 1 as it is (no log1p split).
                    rest[k] = s[k] - V::broadcast(A(1)), ones[k] = V::broadcast(A(1));
                }
            }
        }
    }

    // The same for a group of n <= L short rows (Layout::rows), row by row:
    // its max and exp-sum reduced in registers, its exps kept in scratch.
    void row_stats(int64_t r0, int64_t n, A* scratch, V* ms, V* s, V* dot, V* mtrue, V* rest, V* ones) const {
        const A ninf = -std::numeric_limits<A>::infinity();
        constexpr int W2 = 2 * W;
        const int64_t full = C - C % W, tail = C - full;
        alignas(64) A m_l[L], sh_l[L], s_l[L], d_l[L], r_l[L], n_l[L];
        for (int64_t l = 0; l < L; ++l)
            m_l[l] = 0, sh_l[l] = 0, s_l[l] = 1, d_l[l] = 0, r_l[l] = 0, n_l[l] = 1;
        const V one = V::broadcast(A(1)), zero = V::broadcast(A(0));
        for (int64_t l = 0; l < n; ++l) {
            const T* row = x + (r0 + l) * C;
            prefetch_ahead(row, 4 * C * static_cast<int64_t>(sizeof(T)));
            V m0 = V::broadcast(ninf), m1 = m0;
            int64_t i = 0;
            for (; i + W2 <= full; i += W2) m0 = max(m0, vload(row + i)), m1 = max(m1, vload(row + i + W));
            if (i < full) m0 = max(m0, vload(row + i));
            if (tail) m1 = max(m1, vload_partial(row + full, tail, ninf));
            const A m = reduce_max(max(m0, m1));
            const A shift = std::isfinite(m) ? m : A(0);
            const V sh = V::broadcast(shift);
            A* e_out = scratch + l * C;
            V a0 = V::broadcast(0), a1 = a0, d0 = a0, r0 = a0, c1 = a0;
            auto sweep = [&](V xv, int64_t at, V& acc) PYCE_ALWAYS_INLINE {
                const V e = exp_bounded(xv - sh);
                if constexpr (kNeedExps) e.store(e_out + at);
                acc = acc + e;
                r0 = r0 + select_equal(e, one, zero, e);
                c1 = c1 + select_equal(e, one, one, zero);
                if constexpr (E != SweepSums::none) d0 = fmadd(row_coef(at, 0), xv, d0);
            };
            for (i = 0; i + W2 <= full; i += W2)
                sweep(vload(row + i), i, a0), sweep(vload(row + i + W), i + W, a1);
            if (i < full) sweep(vload(row + i), i, a0);
            if (tail) {
                const V e = exp_bounded(vload_partial(row + full, tail, ninf) - sh);
                if constexpr (kNeedExps) e.store_partial(e_out + full, tail);
                a1 = a1 + e;
                r0 = r0 + select_equal(e, one, zero, e);
                c1 = c1 + select_equal(e, one, one, zero);
                if constexpr (E != SweepSums::none)
                    d0 = fmadd(row_coef(full, tail), vload_partial(row + full, tail, A(0)), d0);
            }
            m_l[l] = m, sh_l[l] = shift, s_l[l] = reduce_add(a0 + a1);
            r_l[l] = reduce_add(r0), n_l[l] = reduce_add(c1);
            if constexpr (E != SweepSums::none) d_l[l] = reduce_add(d0);
        }
        for (int k = 0; k < kVecs; ++k) {
            ms[k] = V::load(sh_l + k * W), s[k] = V::load(s_l + k * W), mtrue[k] = V::load(m_l + k * W);
            dot[k] = V::load(d_l + k * W);
            rest[k] = V::load(r_l + k * W), ones[k] = V::load(n_l + k * W);
        }
    }

    // The label-smoothing coefficients of classes [i, i + W) of a short row
    // (the first `tail` only, if tail > 0).
    PYCE_ALWAYS_INLINE V row_coef(int64_t i, int64_t tail) const {
        if constexpr (E == SweepSums::sum_wx)
            return tail ? vload_partial(weight + i, tail, A(0)) : vload(weight + i);
        return V::broadcast(A(1));
    }

    // One group of n <= L positions starting at (o, j0).
    template <bool kFull>
    void group(int64_t o, int64_t j0, int64_t n, A* scratch) const {
        const bool one_block = kRows || nblocks() == 1;
        V ms[kVecs], s[kVecs], dot[kVecs], mtrue[kVecs], rest[kVecs], ones[kVecs];
        if constexpr (kRows)
            row_stats(j0, n, scratch, ms, s, dot, mtrue, rest, ones);
        else
            strided_stats<kFull>(o, j0, n, scratch, ms, s, dot, mtrue, rest, ones);

        // Lanes whose max or sum is not finite take the scalar path. (m - m)
        // + (s - s) is nan exactly there; a whole group rarely has one, and
        // then one vector sum tells (padding lanes of a short group are -inf).
        bool bad[L] = {};
        bool any_bad = false;
        {
            V t = V::broadcast(0);
            for (int k = 0; k < kVecs; ++k) t = t + ((mtrue[k] - mtrue[k]) + (s[k] - s[k]));
            if (!kFull || !(reduce_add(t) == A(0))) {
                alignas(64) A m_l[L], s_l[L];
                for (int k = 0; k < kVecs; ++k) mtrue[k].store(m_l + k * W), s[k].store(s_l + k * W);
                for (int64_t l = 0; l < n; ++l) {
                    bad[l] = !(std::isfinite(m_l[l]) && std::isfinite(s_l[l]) && s_l[l] > 0);
                    any_bad |= bad[l];
                }
            }
        }

        // log(sum) = log(n1) + log1p(rest / n1), n1 the terms equal to the max
        // (exp 1): a sum near 1 would lose the rest's relative precision
        // (SciPy gh-18295), and small losses with it. In vectors
        // (strided_lanes.hpp's log_of_split_sum; float64 lane by lane with
        // libm): a scalar log1p per row was an eighth of a fused 8192 x 88.
        // Lanes with no such term (padding, all -inf) take n1 = 1.
        V ls[kVecs];
        {
            const V zero = V::broadcast(A(0)), one = V::broadcast(A(1));
            for (int k = 0; k < kVecs; ++k)
                ls[k] = log_of_split_sum(select_equal(ones[k], zero, one, ones[k]), rest[k]);
        }

        if constexpr (M == Mode::lse) {
            A* lo = lse + o * inner + j0;
            for (int k = 0; k < kVecs; ++k) store<kFull, false>(lo, k, n, ms[k] + ls[k]);
            if (any_bad)
                for (int64_t l = 0; l < n; ++l)
                    if (bad[l]) lo[l] = static_cast<A>(bad_lse(o, j0 + l));
            return;
        } else if constexpr (M == Mode::softmax || M == Mode::log_softmax) {
            V f[kVecs];
            for (int k = 0; k < kVecs; ++k) f[k] = V::broadcast(A(1)) / s[k];
            write_pass<kFull>(o, j0, n, scratch, one_block, ms, f, ls, nullptr, nullptr, nullptr);
            if (any_bad)
                for (int64_t l = 0; l < n; ++l)
                    if (bad[l])
                        fill_lane(o, j0 + l,
                                  static_cast<G>(from_acc<G>(std::numeric_limits<A>::quiet_NaN())));
            return;
        } else {
            LaneInputs in;
            lane_inputs(o, j0, n, !kRows && one_block ? scratch : nullptr, in);
            // Each lane's loss and gradient factors in float64 from its
            // max, log-sum and sums, as the row kernels compute a row's: one
            // rounding to the compute type each.
            alignas(64) A ms_l[L], ls_l[L], s_l[L], dot_l[L], mul_l[L], sub_l[L];
            for (int k = 0; k < kVecs; ++k) {
                ms[k].store(ms_l + k * W), ls[k].store(ls_l + k * W), s[k].store(s_l + k * W);
                dot[k].store(dot_l + k * W);
            }
            const double z = loss_args->z_loss;
            for (int64_t l = 0; l < L; ++l) {
                mul_l[l] = 0, sub_l[l] = 0;
                if (l >= n) continue;
                const int64_t pos = o * inner + j0 + l;
                const double m = static_cast<double>(ms_l[l]), log_sum = static_cast<double>(ls_l[l]);
                double lse = m + log_sum, loss = kNaN;
                if (bad[l]) {
                    lse = bad_lse(o, j0 + l);
                } else {
                    const double alpha = in.alpha_d[l];
                    // lse - x_t as (max - x_t) + log_sum: exact near the max.
                    loss = alpha * ((m - static_cast<double>(in.xt[l])) + log_sum);
                    double q_weight = alpha;
                    if constexpr (E != SweepSums::none) {
                        loss += beta * (coef_total * lse - static_cast<double>(dot_l[l]));
                        q_weight += beta * coef_total;
                    }
                    if (z != 0.0) {
                        loss += z * lse * lse;
                        q_weight += 2.0 * z * lse;
                    }
                    const double scale = in.scale_d[l];
                    mul_l[l] = static_cast<A>(scale * q_weight / static_cast<double>(s_l[l]));
                    sub_l[l] = static_cast<A>(-beta * scale);
                }
                if (loss_args->row_lse) loss_args->row_lse[pos] = lse;
                loss_args->row_loss[pos] = in.ignored[l] ? 0.0 : loss;
            }
            V mul[kVecs], sub[kVecs];
            for (int k = 0; k < kVecs; ++k) mul[k] = V::load(mul_l + k * W), sub[k] = V::load(sub_l + k * W);
            if constexpr (M == Mode::loss_grad) {
                write_pass<kFull>(o, j0, n, scratch, one_block, ms, mul, ls, &in, sub, nullptr);
                if (any_bad)
                    for (int64_t l = 0; l < n; ++l)
                        if (bad[l])
                            fill_lane(o, j0 + l, from_acc<G>(static_cast<A>(in.ignored[l] ? 0.0 : kNaN)));
            }
        }
    }

    // The outputs of a group: softmax e * f, log_softmax (x - max) - log_sum,
    // or the gradient e * mul [+ sub * coef] [- scale alpha at the target].
    // e: the stored exps (one block), else recomputed from the logits.
    template <bool kFull>
    void write_pass(int64_t o, int64_t j0, int64_t n, const A* scratch, bool one_block, const V* ms,
                    const V* f, const V* ls, const LaneInputs* in, const V* sub, void*) const {
        if constexpr (kWrite && kRows) {
            write_rows(j0, n, scratch, ms, f, ls, in, sub);
        } else if constexpr (kWrite) {
            if (kFull && stream && reinterpret_cast<uintptr_t>(out_col(o, 0, j0)) % 64 == 0)
                write_classes<true, true>(o, j0, n, scratch, one_block, ms, f, ls, in, sub);
            else
                write_classes<kFull, false>(o, j0, n, scratch, one_block, ms, f, ls, in, sub);
        }
    }

    template <bool kFull, bool kStream>
    void write_classes(int64_t o, int64_t j0, int64_t n, const A* scratch, bool one_block, const V* ms,
                       const V* f, const V* ls, const LaneInputs* in, const V* sub) const {
        const A ninf = -std::numeric_limits<A>::infinity();
        V tgt[kVecs], hi[kVecs], lo[kVecs];
        if constexpr (M == Mode::loss_grad)
            for (int k = 0; k < kVecs; ++k)
                tgt[k] = V::load(in->target + k * W), hi[k] = V::load(in->at_hi + k * W),
                lo[k] = V::load(in->at_lo + k * W);
        for (int64_t c = 0; c < C; ++c) {
            const T* p = col(o, c, j0);
            G* q = out_col(o, c, j0);
            const A* e_in = exps_tile(scratch) + c * L;
            const A* x_in = scratch + c * L;  // the logits' tile (one block)
            V coef = V::broadcast(A(0)), cv = V::broadcast(static_cast<A>(c));
            if constexpr (E == SweepSums::sum_x) coef = V::broadcast(A(1));
            if constexpr (E == SweepSums::sum_wx) coef = V::broadcast(weight[c]);
            for (int k = 0; k < kVecs; ++k) {
                V v;
                if constexpr (M == Mode::log_softmax) {
                    v = ((one_block ? V::load(x_in + k * W) : load<kFull>(p, k, n, A(0))) - ms[k]) - ls[k];
                } else {
                    const V e =
                        one_block ? V::load(e_in + k * W) : exp_bounded(load<kFull>(p, k, n, ninf) - ms[k]);
                    v = e * f[k];
                    if constexpr (M == Mode::loss_grad) {
                        if constexpr (E != SweepSums::none) v = fmadd(coef, sub[k], v);
                        v = select_equal(tgt[k], cv, (v - hi[k]) - lo[k], v);
                    }
                }
                store<kFull, kStream>(q, k, n, v);
            }
        }
    }

    // The outputs of a group of short rows, row by row (see write_classes).
    void write_rows(int64_t r0, int64_t n, const A* scratch, const V* ms, const V* f, const V* ls,
                    const LaneInputs* in, const V* sub) const {
        alignas(64) A ms_l[L], f_l[L], ls_l[L], sub_l[L];
        for (int k = 0; k < kVecs; ++k) {
            ms[k].store(ms_l + k * W), f[k].store(f_l + k * W), ls[k].store(ls_l + k * W);
            if constexpr (M == Mode::loss_grad) sub[k].store(sub_l + k * W);
        }
        const int64_t full = C - C % W, tail = C - full;
        for (int64_t l = 0; l < n; ++l) {
            const T* p = x + (r0 + l) * C;
            G* q = out + (r0 + l) * C;
            const A* e_row = scratch + l * C;
            const V fv = V::broadcast(f_l[l]), mv = V::broadcast(ms_l[l]), lv = V::broadcast(ls_l[l]);
            V subv = V::broadcast(0);
            int64_t t = -1;  // the target's class (-1: ignored)
            double at = 0;   // scale * alpha, subtracted at the target in float64
            if constexpr (M == Mode::loss_grad) {
                subv = V::broadcast(sub_l[l]);
                if (!in->ignored[l])
                    t = static_cast<int64_t>(in->target[l]), at = in->scale_d[l] * in->alpha_d[l];
            }
            auto lanes = [&](int64_t i, int64_t part) PYCE_ALWAYS_INLINE {
                if constexpr (M == Mode::log_softmax) {
                    return ((part ? vload_partial(p + i, part, A(0)) : vload(p + i)) - mv) - lv;
                } else {
                    V v = (part ? V::load_partial(e_row + i, part, A(0)) : V::load(e_row + i)) * fv;
                    if constexpr (M == Mode::loss_grad) {
                        if constexpr (E != SweepSums::none) v = fmadd(row_coef(i, part), subv, v);
                        // As the row kernels: exact near q = 1.
                        if (t >= i && t < i + W) {
                            const int k = static_cast<int>(t - i);
                            v = with_lane(v, k, static_cast<A>(static_cast<double>(lane(v, k)) - at));
                        }
                    }
                    return v;
                }
            };
            for (int64_t i = 0; i < full; i += W) vstore(q + i, lanes(i, 0));
            if (tail) vstore_partial(q + full, tail, lanes(full, tail));
        }
    }

    // A lane the vector path cannot hold (see lse_of_lane).
    double bad_lse(int64_t o, int64_t j) const {
        return lse_of_lane(C, [&](int64_t c) { return static_cast<double>(to_acc(*col(o, c, j))); });
    }

    void fill_lane(int64_t o, int64_t j, G value) const {
        for (int64_t c = 0; c < C; ++c) *out_col(o, c, j) = value;
    }

    // Positions [j0, j1) of outer index o, group by group. A streamed output
    // whose class rows start off a line boundary (all by the same amount)
    // gets a short first group, so that the whole groups after it start on one.
    void chunk(int64_t o, int64_t j0, int64_t j1, A* scratch) const {
        int64_t j = j0;
        if (stream) {
            const int64_t off = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out_col(o, 0, j0)) % 64);
            const int64_t head = std::min(j1 - j0, off ? (64 - off) / static_cast<int64_t>(sizeof(G)) : 0);
            if (head > 0) group<false>(o, j0, head, scratch);
            j += head;
        }
        for (; j < j1; j += L) {
            const int64_t n = std::min<int64_t>(L, j1 - j);
            if (n == L)
                group<true>(o, j, n, scratch);
            else
                group<false>(o, j, n, scratch);
        }
    }

    void run(int threads) const {
        const int64_t elements = outer * C * inner;
        if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
            threads = 1;
        const int64_t chunk_lanes =
            kRows ? positions_per_unit(kChunkGroups * L, L, outer, inner, threads, C, kShortRowUnitElements)
                  : positions_per_unit(kChunkGroups * L, L, outer, inner, threads);
        const int64_t chunks_per_outer = (inner + chunk_lanes - 1) / chunk_lanes;
        const int64_t units = outer * chunks_per_outer;
        parallel_ranges(units, threads, [&](int64_t u0, int64_t u1) {
            const ScratchLease lease(scratch_elems() * sizeof(A));
            A* scratch = lease.as<A>();
            for (int64_t u = u0; u < u1; ++u) {
                const int64_t o = u / chunks_per_outer, j0 = (u % chunks_per_outer) * chunk_lanes;
                chunk(o, j0, std::min(inner, j0 + chunk_lanes), scratch);
            }
            if (stream) stream_fence();
        });
        note_kernel_end();
    }
};

template <class T, LaneOutput M, bool kRowLanes = false>
void run_normaliser(const void* x, int64_t outer, int64_t C, int64_t inner, void* out, int threads) {
    using A = Acc<T>;
    ClassLanes<T, T, M, SweepSums::none, kRowLanes> k{};
    k.x = static_cast<const T*>(x);
    k.outer = outer, k.C = C, k.inner = inner;
    if constexpr (M == LaneOutput::lse)
        k.lse = static_cast<A*>(out);
    else
        k.out = static_cast<T*>(out), k.stream = !kRowLanes && can_stream(out, x, outer, C, inner, sizeof(T));
    k.run(threads);
}

template <class T, class G, LaneOutput M, SweepSums E, bool kRowLanes>
void run_ce(const CrossEntropyArgs& args) {
    using A = Acc<T>;
    ClassLanes<T, G, M, E, kRowLanes> k{};
    k.x = static_cast<const T*>(args.logits);
    k.out = static_cast<G*>(args.grad);
    k.C = args.cols;
    // Row lanes: the rows are the positions (args.inner is 1).
    k.inner = kRowLanes ? args.rows : args.inner;
    k.outer = kRowLanes ? 1 : args.rows / args.inner;
    k.args = &args;
    k.weight = static_cast<const A*>(args.weight);
    k.beta = args.label_smoothing / static_cast<double>(args.cols);
    k.coef_total = static_cast<double>(args.cols);
    if (k.weight) {
        k.coef_total = 0;
        for (int64_t c = 0; c < args.cols; ++c) k.coef_total += static_cast<double>(k.weight[c]);
    }
    if constexpr (M == LaneOutput::loss_grad && !kRowLanes)
        k.stream = can_stream(args.grad, args.logits, k.outer, k.C, k.inner, sizeof(G));
    k.run(args.threads);
}

template <class T, SweepSums E, bool kRowLanes>
void run_ce_extra(const CrossEntropyArgs& args) {
    with_grad_kind<T>(args.grad, args.grad_f32, [&](auto kind) {
        using G = typename decltype(kind)::type;
        if constexpr (decltype(kind)::with_grad)
            run_ce<T, G, LaneOutput::loss_grad, E, kRowLanes>(args);
        else
            run_ce<T, G, LaneOutput::loss, E, kRowLanes>(args);
    });
}

// Hard targets only (bindings/cross_entropy.cpp sends probability targets
// and soft-capped logits through the row kernels).
template <class T, bool kRowLanes = false>
void run_cross_entropy(const CrossEntropyArgs& args) {
    if (args.label_smoothing <= 0.0)
        run_ce_extra<T, SweepSums::none, kRowLanes>(args);
    else if (args.weight)
        run_ce_extra<T, SweepSums::sum_wx, kRowLanes>(args);
    else
        run_ce_extra<T, SweepSums::sum_x, kRowLanes>(args);
}

// Short rows (Layout::rows): the (rows, C) entries of softmax.cpp and
// cross_entropy.cpp hand over calls of at most kShortRowMaxCols classes.
template <class T, Mode M>
void run_short_normaliser(const void* x, int64_t rows, int64_t C, void* out, int threads) {
    using A = Acc<T>;
    StridedKernel<T, T, M, SweepSums::none, Layout::rows> k{};
    k.x = static_cast<const T*>(x);
    k.outer = 1, k.C = C, k.inner = rows;
    if constexpr (M == Mode::lse)
        k.lse = static_cast<A*>(out);
    else
        k.out = static_cast<T*>(out);
    k.run(threads);
}

template <class T, class G, Mode M, SweepSums E>
void run_short_ce(const CrossEntropyArgs& args) {
    using A = Acc<T>;
    StridedKernel<T, G, M, E, Layout::rows> k{};
    k.x = static_cast<const T*>(args.logits);
    k.out = static_cast<G*>(args.grad);
    k.C = args.cols;
    k.inner = args.rows;
    k.outer = 1;
    k.loss_args = &args;
    k.weight = static_cast<const A*>(args.weight);
    k.beta = args.label_smoothing / static_cast<double>(args.cols);
    k.coef_total = static_cast<double>(args.cols);
    if (k.weight) {
        k.coef_total = 0;
        for (int64_t c = 0; c < args.cols; ++c) k.coef_total += static_cast<double>(k.weight[c]);
    }
    k.run(args.threads);
}

template <class T, SweepSums E>
void run_short_ce_extra(const CrossEntropyArgs& args) {
    with_grad_kind<T>(args.grad, args.grad_f32, [&](auto kind) {
        using G = typename decltype(kind)::type;
        if constexpr (decltype(kind)::with_grad)
            run_short_ce<T, G, Mode::loss_grad, E>(args);
        else
            run_short_ce<T, G, Mode::loss, E>(args);
    });
}

template <class T>
void logsumexp_entry(const void* x, int64_t outer, int64_t C, int64_t inner, void* out, int threads) {
    run_normaliser<T, LaneOutput::lse>(x, outer, C, inner, out, threads);
}
template <class T>
void softmax_entry(const void* x, int64_t outer, int64_t C, int64_t inner, void* out, int threads) {
    run_normaliser<T, LaneOutput::softmax>(x, outer, C, inner, out, threads);
}
template <class T>
void log_softmax_entry(const void* x, int64_t outer, int64_t C, int64_t inner, void* out, int threads) {
    run_normaliser<T, LaneOutput::log_softmax>(x, outer, C, inner, out, threads);
}

}  // namespace

template <class T>
bool short_rows_normaliser(ShortRowOutput what, const void* x, int64_t rows, int64_t cols, void* out,
                           int threads) {
    if (rows < 1 || cols < 1) return false;
    if (cols > kShortRowMaxCols) return false;
    if (rows_as_lanes(cols)) {
        // Rows as lanes (ClassLanes; see rows_as_lanes).
        if (what == ShortRowOutput::lse)
            run_normaliser<T, LaneOutput::lse, true>(x, 1, cols, rows, out, threads);
        else if (what == ShortRowOutput::softmax)
            run_normaliser<T, LaneOutput::softmax, true>(x, 1, cols, rows, out, threads);
        else
            run_normaliser<T, LaneOutput::log_softmax, true>(x, 1, cols, rows, out, threads);
        return true;
    }
    if (what == ShortRowOutput::lse)
        run_short_normaliser<T, Mode::lse>(x, rows, cols, out, threads);
    else if (what == ShortRowOutput::softmax)
        run_short_normaliser<T, Mode::softmax>(x, rows, cols, out, threads);
    else
        run_short_normaliser<T, Mode::log_softmax>(x, rows, cols, out, threads);
    return true;
}

template <class T>
bool short_rows_cross_entropy(const CrossEntropyArgs& args) {
    if (args.cols > kShortRowMaxCols || args.cols < 1 || args.rows < 1 || args.inner != 1 ||
        args.soft_target || args.softcap > 0)
        return false;
    if (rows_as_lanes(args.cols)) {
        run_cross_entropy<T, true>(args);
        return true;
    }
    if (args.label_smoothing <= 0.0)
        run_short_ce_extra<T, SweepSums::none>(args);
    else if (args.weight)
        run_short_ce_extra<T, SweepSums::sum_wx>(args);
    else
        run_short_ce_extra<T, SweepSums::sum_x>(args);
    return true;
}

template bool short_rows_normaliser<float>(ShortRowOutput, const void*, int64_t, int64_t, void*, int);
template bool short_rows_normaliser<double>(ShortRowOutput, const void*, int64_t, int64_t, void*, int);
template bool short_rows_normaliser<bf16>(ShortRowOutput, const void*, int64_t, int64_t, void*, int);
template bool short_rows_normaliser<f16>(ShortRowOutput, const void*, int64_t, int64_t, void*, int);
template bool short_rows_cross_entropy<float>(const CrossEntropyArgs&);
template bool short_rows_cross_entropy<double>(const CrossEntropyArgs&);
template bool short_rows_cross_entropy<bf16>(const CrossEntropyArgs&);
template bool short_rows_cross_entropy<f16>(const CrossEntropyArgs&);

void register_strided_classes_kernels(KernelTable& table) {
    PYCE_REGISTER_EVERY_DTYPE(table.logsumexp_strided, logsumexp_entry);
    PYCE_REGISTER_EVERY_DTYPE(table.softmax_strided, softmax_entry);
    PYCE_REGISTER_EVERY_DTYPE(table.log_softmax_strided, log_softmax_entry);
    PYCE_REGISTER_EVERY_DTYPE(table.cross_entropy_strided, run_cross_entropy);
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
