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
#include <cstdint>
#include <cstring>

#include "../dispatch.hpp"
#include "block_math.hpp"
#include "parallel.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

template <class T, Extra E, bool kGrad>
struct CrossEntropyKernel {
    static constexpr bool kSoft = E == Extra::soft || E == Extra::soft_w;
    static constexpr bool kRescale = kGrad;
    using Stats = BlockStats;
    using V = typename VecFor<T>::type;

    struct Row {
        int64_t index = 0;
        T shift = 0;           // see row_shift
        bool ignored = false;
        int64_t target = -1;   // class index (hard targets)
        double x_target = 0;   // its logit, read before an in-place gradient overwrites it
        double alpha = 0;      // weight of -log q_t
        double scale = 1;      // grad_output (/ divisor for the mean)
        RowSums sums;          // lse is nan for a row without a distribution
        double grad_mul = 0;   // scale * (alpha + beta * K)
    };

    const CrossEntropyArgs& a;
    const T* x;
    T* g;
    const T* weight;
    int64_t C;
    double beta;        // eps / C for hard targets, 1 for probability targets
    double coef_total;  // K for hard targets: C, or sum(w)

    CrossEntropyKernel(const CrossEntropyArgs& args)
        : a(args),
          x(static_cast<const T*>(args.logits)),
          g(static_cast<T*>(args.grad)),
          weight(static_cast<const T*>(args.weight)),
          C(args.cols) {
        beta = kSoft ? 1.0 : args.label_smoothing / static_cast<double>(C);
        coef_total = static_cast<double>(C);
        if (weight) {
            coef_total = 0;
            for (int64_t c = 0; c < C; ++c) coef_total += static_cast<double>(weight[c]);
        }
    }

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        row.scale = a.grad_scale_rows ? a.grad_scale_rows[r] : a.grad_scale;
        row.shift = row_shift(x + r * C, C);
        if constexpr (!kSoft) {
            row.target = a.target[r];
            row.ignored = row.target == a.ignore_index;
            if (!row.ignored) {
                row.x_target = static_cast<double>(x[r * C + row.target]);
                const double w_t = weight ? static_cast<double>(weight[row.target]) : 1.0;
                row.alpha = (1.0 - a.label_smoothing) * w_t;
            }
        }
        return row;
    }

    Coefs<T> coefs(int64_t r) const {
        Coefs<T> c;
        c.weight = weight;
        if constexpr (kSoft) c.y = static_cast<const T*>(a.soft_target) + r * C;
        c.keep = static_cast<T>(1.0 - a.label_smoothing);
        c.uniform = static_cast<T>(a.label_smoothing / static_cast<double>(C));
        return c;
    }

    Stats stats(const Row& row, int64_t b) const {
        if (row.ignored) return Stats{};  // not even read
        const int64_t start = b * kBlock, n = C - start < kBlock ? C - start : kBlock;
        const int64_t off = row.index * C + start;
        return block_stats<T, E, kGrad>(x + off, n, kGrad ? g + off : nullptr, coefs(row.index), start, row.shift);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        if (row.ignored) {
            a.row_loss[row.index] = 0.0;
            return;
        }
        RowSums& sums = row.sums;
        sums = merge_blocks(stats, nblocks);
        // A +inf logit leaves no distribution: the loss is nan (as PyTorch).
        if (sums.lse == kInf) sums.lse = kNaN;
        const double lse = sums.lse;
        double loss, K;
        if constexpr (kSoft) {
            K = sums.coef;
            loss = K * lse - sums.dot;
        } else {
            K = coef_total;
            // lse - x_t, as (max - x_t) + log_sum when finite: exact near the max.
            const double nll = std::isfinite(lse) ? (sums.max - row.x_target) + sums.log_sum : lse - row.x_target;
            loss = row.alpha * nll;
            if (E != Extra::none) loss += beta * (K * lse - sums.dot);
        }
        a.row_loss[row.index] = loss;
        const double q_weight = E == Extra::none ? row.alpha : row.alpha + beta * K;
        row.grad_mul = row.scale * q_weight;
    }

    void rescale(const Row& row, int64_t b, const Stats& s) const {
        constexpr int W = V::width;
        const int64_t start = b * kBlock, n = C - start < kBlock ? C - start : kBlock;
        T* gb = g + row.index * C + start;
        if (row.ignored) {
            std::memset(static_cast<void*>(gb), 0, static_cast<size_t>(n) * sizeof(T));
            return;
        }
        const int64_t full = n - n % W, tail = n - full;
        const V mul = V::broadcast(static_cast<T>(row.grad_mul * block_factor(s, row.sums)));
        if constexpr (E == Extra::none) {
            for (int64_t i = 0; i < full; i += W) (V::load(gb + i) * mul).store(gb + i);
            if (tail) (V::load_partial(gb + full, tail, T(0)) * mul).store_partial(gb + full, tail);
        } else {
            // g = q * (scale * (alpha + beta K)) - scale * beta * coef
            const Coefs<T> c = coefs(row.index);
            const V sub = V::broadcast(static_cast<T>(-row.scale * beta));
            for (int64_t i = 0; i < full; i += W)
                fmadd(coef_at<E, V>(c, start + i, 0), sub, V::load(gb + i) * mul).store(gb + i);
            if (tail)
                fmadd(coef_at<E, V>(c, start + full, tail), sub, V::load_partial(gb + full, tail, T(0)) * mul)
                    .store_partial(gb + full, tail);
        }
        if constexpr (!kSoft) {
            const int64_t t = row.target - start;
            if (t >= 0 && t < n) gb[t] = static_cast<T>(static_cast<double>(gb[t]) - row.scale * row.alpha);
        }
    }
};

template <class T, Extra E, bool kGrad>
void run_case(const CrossEntropyArgs& args) {
    CrossEntropyKernel<T, E, kGrad> kernel(args);
    run_blocked(kernel, args.rows, args.cols, args.threads);
}

template <class T, Extra E>
void run_extra(const CrossEntropyArgs& args) {
    if (args.grad)
        run_case<T, E, true>(args);
    else
        run_case<T, E, false>(args);
}

// Picks the instantiation: which extra sums the sweep must gather.
template <class T>
void run(const CrossEntropyArgs& args) {
    const bool smoothing = args.label_smoothing > 0.0, weighted = args.weight != nullptr;
    if (args.soft_target)
        weighted ? run_extra<T, Extra::soft_w>(args) : run_extra<T, Extra::soft>(args);
    else if (!smoothing)
        run_extra<T, Extra::none>(args);
    else
        weighted ? run_extra<T, Extra::sum_wx>(args) : run_extra<T, Extra::sum_x>(args);
}

}  // namespace

void register_cross_entropy_kernels(KernelTable& table) {
    table.cross_entropy[static_cast<int>(DType::f32)] = run<float>;
    table.cross_entropy[static_cast<int>(DType::f64)] = run<double>;
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
