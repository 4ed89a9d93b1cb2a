// How the kernels spread work over threads (OpenMP when the build has it).
//
// Every row kernel run_blocked runs describes a row as a sequence of
// fixed-size blocks (kBlock classes) and four steps, members of its struct:
//   Row   begin(r)                           row r's state (its shift, target, ...)
//   Stats stats(row, b, scratch)             block b's max, sum of exps, ...
//   void  finish(row, stats, nblocks)        merges the blocks' Stats in block order
//                                            into the row's lse, loss, output factors
//   void  write_block(row, b, stats, scratch)  writes block b's outputs (a gradient)
// with the types and constants that go with them: Row, Stats, Scratch (the
// scratch rows' element type), kWritesBlocks (false: write_block is never
// called and may be empty) and kScratchRows (rows of Scratch a row needs,
// see run_blocked). Because the blocks and the merge order depend only on the
// shape, the result is bitwise the same whichever thread computes which
// block -- and so the same for any thread count.
#pragma once

#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

#include "runtime/scratch.hpp"
#include "runtime/threading.hpp"
#include "kernels/block_math.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// Below this many elements a call is too small to pay for waking threads;
// from kMinAwakeParallelElements up it still gains from threads that are
// awake (see in_burst in threading.hpp).
constexpr int64_t kMinParallelElements = 1 << 17;
constexpr int64_t kMinAwakeParallelElements = 1 << 15;

// Short rows are processed kGroup at a time, side by side (see run_blocked);
// longer rows gain nothing from it (measured: slower from 256 columns up).
constexpr int kGroup = 4;
constexpr int64_t kGroupMaxCols = 128;

inline int64_t num_blocks(int64_t cols) { return (cols + kBlock - 1) / kBlock; }

// Whether run_rows gives each thread whole rows (and one scratch row per
// thread); with fewer rows it shares out (row, block) pairs instead.
inline bool shares_whole_rows(int64_t rows, int threads) {
    return threads <= 1 || rows >= 4 * static_cast<int64_t>(threads);
}

// Calls fn(begin, end) on `threads` contiguous, near-equal ranges of [0, n).
template <class Fn>
void parallel_ranges(int64_t n, int threads, const Fn& fn) {
#ifdef _OPENMP
    if (threads > 1 && n > 1) {
        const int64_t parts = n < threads ? n : threads;
#pragma omp parallel for num_threads(static_cast <int>(parts)) schedule(static, 1)
        for (int64_t p = 0; p < parts; ++p) fn(n * p / parts, n * (p + 1) / parts);
        return;
    }
#endif
    (void)threads;
    fn(int64_t{0}, n);
}

// Positions per unit of work for the kernels that share out chunks of
// positions (strided classes, short rows): `most`, halved (down to `least`,
// one group) while that leaves fewer units than threads -- 1024 rows of 1000
// classes, or the 2048 columns of a (32000, 2048) axis-0 reduction on 16
// threads, were one or two units and left the other threads idle. With
// `max_unit_elements`, also halved while a unit holds more elements than
// that (short rows, kShortRowUnitElements: units of even size, so threads
// finish together). Only how the work is shared out changes: a position's
// result is the same whichever unit holds it.
constexpr int64_t kShortRowUnitElements = int64_t{1} << 16;
inline int64_t positions_per_unit(int64_t most, int64_t least, int64_t outer, int64_t positions, int threads,
                                  int64_t elements_per_position = 0, int64_t max_unit_elements = 0) {
    int64_t lanes = most;
    if (max_unit_elements > 0)
        while (lanes > least && lanes * elements_per_position > max_unit_elements) lanes /= 2;
    while (lanes > least && outer * ((positions + lanes - 1) / lanes) < threads) lanes /= 2;
    return lanes;
}

// Rows of scratch a thread needs to run rows of `cols` classes itself
// (run_rows_here), in elements of Kernel::Scratch.
template <class Kernel>
size_t here_scratch_elems(int64_t cols) {
    const size_t per_row = static_cast<size_t>(Kernel::kScratchRows) * static_cast<size_t>(cols);
    return cols <= kGroupMaxCols ? per_row * kGroup : per_row;
}

// Rows [r0, r1) on the calling thread, with `scratch` of here_scratch_elems
// elements and `stats` for the blocks of a row (resized here). run_rows
// gives each thread its rows this way; kernels/strided_tiles.hpp runs a
// tile's rows this way.
template <class Kernel>
void run_rows_here(Kernel& kernel, int64_t r0, int64_t r1, int64_t cols, typename Kernel::Scratch* scratch,
                   std::vector<typename Kernel::Stats>& stats) {
    using Stats = typename Kernel::Stats;
    using Row = typename Kernel::Row;
    const size_t scratch_cols = static_cast<size_t>(Kernel::kScratchRows) * static_cast<size_t>(cols);
    if (cols <= kGroupMaxCols) {
        // Short rows: the time of a row is its chain of dependent steps (max,
        // sweep, sums, log, gradient), not its arithmetic. Taking kGroup rows
        // step by step puts independent chains side by side, so the core
        // overlaps them.
        for (int64_t r = r0; r < r1; r += kGroup) {
            const int g = static_cast<int>(r1 - r < kGroup ? r1 - r : kGroup);
            Row row[kGroup];
            Stats group_stats[kGroup];
            // Built in place (guaranteed copy elision): copying a Row that
            // was just written field by field would stall on store forwarding.
            for (int k = 0; k < g; ++k) ::new (static_cast<void*>(&row[k])) Row(kernel.begin(r + k));
            for (int k = 0; k < g; ++k) group_stats[k] = kernel.stats(row[k], 0, scratch + k * scratch_cols);
            for (int k = 0; k < g; ++k) kernel.finish(row[k], &group_stats[k], 1);
            if (Kernel::kWritesBlocks)
                for (int k = 0; k < g; ++k)
                    kernel.write_block(row[k], 0, group_stats[k], scratch + k * scratch_cols);
        }
        return;
    }
    const int64_t nblocks = num_blocks(cols);
    stats.resize(static_cast<size_t>(nblocks));
    for (int64_t r = r0; r < r1; ++r) {
        Row row = kernel.begin(r);
        for (int64_t b = 0; b < nblocks; ++b) stats[b] = kernel.stats(row, b, scratch);
        kernel.finish(row, stats.data(), nblocks);
        if (Kernel::kWritesBlocks)
            for (int64_t b = 0; b < nblocks; ++b) kernel.write_block(row, b, stats[b], scratch);
    }
}

// The body of run_blocked, on the thread count it chose.
template <class Kernel>
void run_rows(Kernel& kernel, int64_t rows, int64_t cols, int threads) {
    using Stats = typename Kernel::Stats;
    using Row = typename Kernel::Row;
    using Scratch = typename Kernel::Scratch;
    const int64_t nblocks = num_blocks(cols);
    const size_t scratch_cols = static_cast<size_t>(Kernel::kScratchRows) * static_cast<size_t>(cols);

    if (cols <= kGroupMaxCols || shares_whole_rows(rows, threads)) {
        parallel_ranges(rows, threads, [&](int64_t r0, int64_t r1) {
            std::vector<Stats> stats;
            const ScratchLease lease(here_scratch_elems<Kernel>(cols) * sizeof(Scratch));
            run_rows_here(kernel, r0, r1, cols, lease.as<Scratch>(), stats);
        });
        return;
    }

    std::vector<Row> row_state;
    row_state.reserve(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) row_state.push_back(kernel.begin(r));
    std::vector<Stats> stats(static_cast<size_t>(rows * nblocks));
    const ScratchLease lease(scratch_cols * static_cast<size_t>(rows) * sizeof(Scratch));
    Scratch* scratch = lease.as<Scratch>();
    auto scratch_row = [&](int64_t r) { return scratch + scratch_cols * static_cast<size_t>(r); };
    const int64_t pairs = rows * nblocks;
    parallel_ranges(pairs, threads, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
            stats[i] = kernel.stats(row_state[i / nblocks], i % nblocks, scratch_row(i / nblocks));
    });
    for (int64_t r = 0; r < rows; ++r) kernel.finish(row_state[r], &stats[r * nblocks], nblocks);
    if (Kernel::kWritesBlocks) {
        parallel_ranges(pairs, threads, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i)
                kernel.write_block(row_state[i / nblocks], i % nblocks, stats[i], scratch_row(i / nblocks));
        });
    }
}

// Runs a blocked row kernel (see the top of this file) over `rows` rows.
//
// Many rows: each thread takes whole rows, so a row's blocks stay in its
// core's L2 between `stats` and `write_block`. Few rows (a decode step: 8 x 256k):
// the (row, block) pairs are shared out instead, so every thread works.
//
// A kernel that needs rows of scratch in its compute type (exps that cannot
// live in a 16-bit output, soft-capped logits) sets kScratchRows and gets
// that many rows: per thread for whole rows, per row when blocks are shared out
// (from the thread's kept buffer, scratch.hpp).
template <class Kernel>
void run_blocked(Kernel& kernel, int64_t rows, int64_t cols, int threads) {
    if (rows <= 0) return;
    const int64_t elements = rows * cols;
    if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
        threads = 1;
    run_rows(kernel, rows, cols, threads);
    note_kernel_end();
}

// The gradient storage a call asks for, as types a kernel template takes.
template <class G, bool kWithGrad>
struct GradKind {
    using type = G;
    static constexpr bool with_grad = kWithGrad;
};

// Calls run(GradKind<G, kWithGrad>{}) for a kernel on T logits: no gradient;
// a float32 gradient for 16-bit logits when `grad_f32`; else one of type T.
// One place decides this for every kernel that writes a gradient.
template <class T, class Run>
void with_grad_kind(const void* grad, bool grad_f32, const Run& run) {
    if (!grad)
        run(GradKind<T, false>{});
    else if (grad_f32 && !std::is_same_v<T, Acc<T>>)
        run(GradKind<Acc<T>, true>{});
    else
        run(GradKind<T, true>{});
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
