// The distillation loss T^2 * KL(softmax(teacher / T) || softmax(student / T))
// per row and its gradient w.r.t. the student, T * (q - p), reading each
// student and teacher logit once. (The entropy of a softmax, pyce.entropy,
// is the target-free case of kernels/evaluate.cpp.) Compiled once per ISA.
//
// The sweep (info_math.hpp's kl_block) computes both rows' exps against
// their shifts, their sums and D_b = sum e_t (u - v); with the gradient it
// keeps the teacher's exps in the scratch row and the student's in the
// gradient (or recomputes them there when the gradient is 16-bit), and the
// write_block turns them into T * (q - p) with one fused multiply-add.
// Few classes (either layout) take one position per vector lane
// (divergence_lanes.hpp); more, with the class axis in the middle, run tile
// by tile (strided_tiles.hpp).
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/registration.hpp"
#include "runtime/dispatch.hpp"
#include "kernels/divergence_args.hpp"
#include "kernels/divergence_lanes.hpp"
#include "kernels/block_math.hpp"
#include "kernels/info_math.hpp"
#include "kernels/output_store.hpp"
#include "kernels/parallel.hpp"
#include "kernels/strided_tiles.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// T: the logits' storage type; G: the gradient's (T, or float32 for 16-bit T).
template <class T, class G, bool kGrad>
struct KLKernel {
    using A = Acc<T>;
    using V = typename VecFor<T>::type;
    static constexpr bool kWritesBlocks = kGrad;
    // The teacher's exps live in the scratch row until write_block.
    static constexpr bool kScratch = kGrad;
    static constexpr int kScratchRows = kScratch ? 1 : 0;  // rows of scratch run_blocked provides
    // The student's exps are kept in the gradient unless it is 16-bit
    // (kernels/output_store.hpp's kExpsInScratch); a 16-bit gradient has no
    // second scratch row for them, so they are computed again (see write_block).
    // The gradient is written with ordinary stores: the non-temporal stores
    // of cross-entropy's gradient were measured for that kernel only.
    static constexpr bool kStoreStudent = kGrad && !kExpsInScratch<G, A>;
    using Scratch = A;
    using Stats = KLBlockStats;

    struct Row {
        int64_t index = 0;
        A shift_t = 0, shift_s = 0;
        RowSums teacher, student;
        double grad_mul = 0;  // grad_output * T (/ divisor)
    };

    const KLDivArgs& args;
    const T* s;
    const T* t;
    G* g;
    int64_t C;
    A inv_t;

    explicit KLKernel(const KLDivArgs& args)
        : args(args),
          s(static_cast<const T*>(args.student)),
          t(static_cast<const T*>(args.teacher)),
          g(static_cast<G*>(args.grad)),
          C(args.cols),
          inv_t(static_cast<A>(1.0 / args.temperature)) {}

    Row begin(int64_t r) const {
        Row row;
        row.index = r;
        row.shift_t = row_shift(t + r * C, C) * inv_t;
        row.shift_s = row_shift(s + r * C, C) * inv_t;
        return row;
    }

    Stats stats(const Row& row, int64_t b, A* scratch) const {
        const int64_t start = b * kBlock, n = block_length(C, b);
        const int64_t off = row.index * C + start;
        A* t_out = kGrad ? scratch + start : nullptr;
        A* s_out = nullptr;
        if constexpr (kStoreStudent) s_out = reinterpret_cast<A*>(g + off);
        return kl_block<T>(t + off, s + off, n, inv_t, row.shift_t, row.shift_s, t_out, s_out);
    }

    void finish(Row& row, const Stats* stats, int64_t nblocks) const {
        // merge_blocks takes an array of BlockStats: split the pairs (a
        // per-thread buffer, so no allocation per row).
        thread_local std::vector<BlockStats> tb, sb;
        tb.resize(static_cast<size_t>(nblocks));
        sb.resize(static_cast<size_t>(nblocks));
        for (int64_t k = 0; k < nblocks; ++k) tb[k] = stats[k].teacher, sb[k] = stats[k].student;
        row.teacher = merge_blocks(tb.data(), nblocks);
        row.student = merge_blocks(sb.data(), nblocks);
        double kl = kNaN;
        if (std::isfinite(row.teacher.lse) && std::isfinite(row.student.lse)) {
            kl = 0;
            for (int64_t k = 0; k < nblocks; ++k) {
                const BlockStats& bt = tb[k];
                if (bt.sum == 0) continue;  // p = 0 throughout: 0 log 0 = 0
                const double lse_t = (row.teacher.max - bt.shift) + row.teacher.log_sum;
                const double lse_s = (row.student.max - sb[k].shift) + row.student.log_sum;
                kl += block_factor(bt, row.teacher) * (bt.dot - bt.sum * (lse_t - lse_s));
            }
            // KL >= 0; rounding can leave a tiny negative value for p == q.
            if (kl < 0) kl = 0;
        } else {
            // No distribution on one side: make the factors nan, so the gradient is too.
            row.teacher.lse = kNaN;
        }
        args.row_loss[row.index] = args.temperature * args.temperature * kl;
        const double scale = args.grad_scale_rows ? args.grad_scale_rows[row.index] : args.grad_scale;
        row.grad_mul = scale * args.temperature;
    }

    void write_block(const Row& row, int64_t b, const Stats& st, A* scratch) const {
        const int64_t start = b * kBlock, n = block_length(C, b);
        const int64_t off = row.index * C + start;
        const A* et = scratch + start;
        G* gb = g + off;
        // g = (T scale) (q - p) = es * (T scale f_s) - et * (T scale f_t)
        const V ms = V::broadcast(static_cast<A>(row.grad_mul * block_factor(st.student, row.student)));
        const V mt = V::broadcast(static_cast<A>(-row.grad_mul * block_factor(st.teacher, row.teacher)));
        auto teacher = [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
            return partial ? V::load_partial(et + i, partial, A(0)) : V::load(et + i);
        };
        if constexpr (kStoreStudent) {
            const A* es = reinterpret_cast<const A*>(gb);  // the gradient itself: read before written
            store_block(gb, n, [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
                const V e = partial ? V::load_partial(es + i, partial, A(0)) : V::load(es + i);
                return fmadd(teacher(i, partial), mt, e * ms);
            });
        } else {
            // A 16-bit gradient cannot hold the exps: recompute the student's
            // against the block's (final) shift, exactly as the sweep did.
            const A ninf = -std::numeric_limits<A>::infinity();
            const V vss = V::broadcast(static_cast<A>(st.student.shift)), vinv = V::broadcast(inv_t);
            const T* sb = s + off;
            store_block(gb, n, [&](int64_t i, int64_t partial) PYCE_ALWAYS_INLINE {
                const V xs = partial ? vload_partial(sb + i, partial, ninf) : vload(sb + i);
                return fmadd(teacher(i, partial), mt, exp(xs * vinv - vss) * ms);
            });
        }
    }
};

template <class T, class G, bool kGrad, bool kRowLanes>
void run_lanes(const KLDivArgs& args) {
    KLLanes<T, G, kGrad, kRowLanes, KLKernel<T, G, kGrad>> lanes;
    lanes.args = &args;
    lanes.student = static_cast<const T*>(args.student);
    lanes.teacher = static_cast<const T*>(args.teacher);
    lanes.grad = static_cast<G*>(args.grad);
    lanes.C = args.cols;
    lanes.outer = kRowLanes ? 1 : args.rows / args.inner;
    lanes.inner = kRowLanes ? args.rows : args.inner;  // rows as lanes: the rows are the positions
    if constexpr (kGrad && !kRowLanes)
        lanes.stream = can_stream(args.grad, args.student, lanes.outer, lanes.C, lanes.inner, sizeof(G));
    lanes.run(args.threads);
}

// Few classes: the lanes. More: classes last, the rows as they are; classes
// in the middle, tile by tile, the student's and the teacher's tiles side by side.
template <class T>
void run(const KLDivArgs& args) {
    with_grad_kind<T>(args.grad, args.grad_f32, [&](auto kind) {
        using G = typename decltype(kind)::type;
        constexpr bool kGrad = decltype(kind)::with_grad;
        using Kernel = KLKernel<T, G, kGrad>;
        if (args.rows > 0 && args.cols > 0 && args.cols < kKLLanesBelowCols) {
            if (args.inner <= 1)
                run_lanes<T, G, kGrad, true>(args);
            else
                run_lanes<T, G, kGrad, false>(args);
            return;
        }
        const std::array<const T*, 2> inputs{static_cast<const T*>(args.student),
                                             static_cast<const T*>(args.teacher)};
        run_rows_or_tiles<Kernel, T, G, 2>(args, inputs, static_cast<G*>(args.grad),
                                           [](KLDivArgs& a, const Tile<T, G, 2>& tile) {
                                               a.student = tile.inputs[0];
                                               a.teacher = tile.inputs[1];
                                               a.grad = tile.grad;
                                               a.row_loss += tile.first;
                                               if (a.grad_scale_rows) a.grad_scale_rows += tile.first;
                                           });
    });
}

}  // namespace

void register_divergence_kernels(KernelTable& table) { PYCE_REGISTER_EVERY_DTYPE(table.kl_divergence, run); }

}  // namespace CPU_CAPABILITY
}  // namespace pyce
