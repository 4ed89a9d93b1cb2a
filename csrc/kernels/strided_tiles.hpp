// Row kernels on logits whose class axis is not the innermost -- PyTorch's
// (N, C, d1, ...), NumPy's axis=0 -- laid out as (outer, C, inner),
// C-contiguous, without a transposing copy of the whole array.
//
// The positions (outer x inner, in C order, as the targets and per-row
// outputs are laid out) are cut into tiles of n consecutive positions. A
// thread gathers a tile's logits into a contiguous (n, C) tile in its
// scratch -- the class rows of the tile are n contiguous values each, read
// once from memory -- runs the row kernel on those n rows itself (exactly as
// run_rows runs a thread's rows, parallel.hpp's run_rows_here), with the
// kernel's per-row pointers moved to the tile's first position, and scatters
// the (n, C) gradient tile back to the class rows. The transposes happen in
// cache, and every row is computed by the same code on the same values as
// in the (rows, C) layout: the results are bitwise those of the same call
// on the array with its class axis moved last, whatever the tiling or the
// thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/scratch.hpp"
#include "runtime/threading.hpp"
#include "kernels/parallel.hpp"
#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// An (outer, C, inner) C-contiguous problem of outer x inner positions.
struct ClassAxisShape {
    int64_t outer = 0, C = 0, inner = 1;
    int64_t positions() const { return outer * inner; }
};

// A tile's arrays (logits, teacher, gradient) of this many bytes in all stay
// in L2 between the gather, the row kernel's sweeps and the scatter.
constexpr int64_t kTileBytes = int64_t{128} << 10;
// A tile holds at least a cache line of each class row (when that stays
// under this size), so that no line of the logits is read twice from memory.
constexpr int64_t kMaxLineTileBytes = int64_t{768} << 10;

// Positions per tile for `bytes_per_position` bytes of tile arrays per position.
inline int64_t tile_positions(int64_t bytes_per_position, int64_t line_positions) {
    int64_t n = std::max<int64_t>(1, kTileBytes / bytes_per_position);
    if (n < line_positions && line_positions * bytes_per_position <= kMaxLineTileBytes) n = line_positions;
    // Whole lines of each class row per tile, where the tile is larger than a line.
    if (n > line_positions) n -= n % line_positions;
    return n;
}

// Calls fn(o, j, l, m) for the runs of positions [p0, p0 + n): m
// positions j .. j + m of outer index o, the first at row l of the tile.
template <class Fn>
inline void for_each_run(const ClassAxisShape& shape, int64_t p0, int64_t n, const Fn& fn) {
    for (int64_t l = 0; l < n;) {
        const int64_t p = p0 + l, o = p / shape.inner, j = p % shape.inner;
        const int64_t m = std::min(n - l, shape.inner - j);
        fn(o, j, l, m);
        l += m;
    }
}

// The gather and the scatter transpose a run of positions a cache line of
// each class row at a time (fewer positions for many classes): those tile
// rows -- C values each, at most kTransposeBytes in all -- stay in L1 while
// the class rows are visited. (Whole runs at once wrote each tile value to
// another line of L2: a tile of (8, 21, 512, 512) float32 took twice as long.)
constexpr int64_t kTransposeBytes = int64_t{16} << 10;

inline int64_t transpose_positions(int64_t C, int64_t bytes) {
    return std::clamp<int64_t>(kTransposeBytes / (C * bytes), 1, 64 / bytes);
}

// The gather reads C streams at once (2C for a divergence), more than the
// hardware prefetchers follow: it asks for each class row's lines this far
// ahead of their use.
constexpr int64_t kGatherAheadBytes = 8 * 64;

// tile[l][c] = x[o][c][j + l] for the positions [p0, p0 + n): the C class
// rows read in order, a few contiguous values each at a time.
template <class T>
void gather_tile(const T* x, const ClassAxisShape& shape, int64_t p0, int64_t n, T* tile) {
    const int64_t C = shape.C, inner = shape.inner, step = transpose_positions(C, sizeof(T));
    for_each_run(shape, p0, n, [&](int64_t o, int64_t j, int64_t l0, int64_t m) {
        const T* src = x + o * C * inner + j;
        T* dst = tile + l0 * C;
        for (int64_t b = 0; b < m; b += step) {
            const int64_t e = std::min(m, b + step);
            for (int64_t c = 0; c < C; ++c) {
                const T* row = src + c * inner;
                prefetch_ahead(row + b, kGatherAheadBytes);
                for (int64_t l = b; l < e; ++l) dst[l * C + c] = row[l];
            }
        }
    });
}

// The inverse: out[o][c][j + l] = tile[l][c], each class row written in order.
template <class G>
void scatter_tile(const G* tile, const ClassAxisShape& shape, int64_t p0, int64_t n, G* out) {
    const int64_t C = shape.C, inner = shape.inner, step = transpose_positions(C, sizeof(G));
    for_each_run(shape, p0, n, [&](int64_t o, int64_t j, int64_t l0, int64_t m) {
        G* dst = out + o * C * inner + j;
        const G* src = tile + l0 * C;
        for (int64_t b = 0; b < m; b += step) {
            const int64_t e = std::min(m, b + step);
            for (int64_t c = 0; c < C; ++c) {
                G* row = dst + c * inner;
                for (int64_t l = b; l < e; ++l) row[l] = src[l * C + c];
            }
        }
    });
}

// The (n, C) tiles of one tile of positions, handed to a kernel's rebase.
template <class T, class G, int kInputs>
struct Tile {
    int64_t first = 0;  // the tile's first position (an index into targets and per-row outputs)
    int64_t rows = 0;   // its positions: the rows of the tiles
    std::array<const T*, kInputs> inputs{};
    G* grad = nullptr;  // null when the call writes no gradient
};

// Runs Kernel (a run_blocked row kernel built from an Args) over the
// (outer, C, inner) `inputs` (kInputs arrays of T: the logits, and the
// teacher's for a divergence), writing its gradient, when `grad` is set, into
// the (outer, C, inner) array of G at `grad`. For each tile,
// rebase(Args&, const Tile&) points a copy of `args` -- already set to
// `rows` rows of one class row each (inner 1) -- at the tile: its logits at
// the input tiles, its gradient at the gradient tile, and its per-row arrays
// (targets, losses) `first` positions on.
template <class Kernel, class T, class G, int kInputs, class Args, class Rebase>
void run_on_tiles(const Args& args, const ClassAxisShape& shape, const std::array<const T*, kInputs>& inputs,
                  G* grad, int threads, const Rebase& rebase) {
    using Scratch = typename Kernel::Scratch;
    using Stats = typename Kernel::Stats;
    const int64_t positions = shape.positions(), C = shape.C;
    if (positions <= 0 || C <= 0) return;
    const int64_t bytes_per_position =
        C * (kInputs * static_cast<int64_t>(sizeof(T)) + (grad ? static_cast<int64_t>(sizeof(G)) : 0));
    const int64_t n =
        std::min(positions, tile_positions(bytes_per_position, 64 / static_cast<int64_t>(sizeof(T))));
    const int64_t tiles = (positions + n - 1) / n;
    const int64_t elements = positions * C;
    if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
        threads = 1;

    // One lease per thread: the input tiles, the gradient tile, the kernel's
    // scratch rows, each on its own cache lines.
    auto lines = [](size_t bytes) { return (bytes + 63) / 64 * 64; };
    const size_t tile_elems = static_cast<size_t>(n) * static_cast<size_t>(C);
    const size_t input_bytes = lines(tile_elems * sizeof(T));
    const size_t grad_bytes = grad ? lines(tile_elems * sizeof(G)) : 0;
    const size_t kernel_bytes = lines(here_scratch_elems<Kernel>(C) * sizeof(Scratch));
    parallel_ranges(tiles, threads, [&](int64_t t0, int64_t t1) {
        const ScratchLease lease(kInputs * input_bytes + grad_bytes + kernel_bytes);
        char* base = lease.as<char>();
        Tile<T, G, kInputs> tile;
        std::array<T*, kInputs> input_tiles;
        for (int i = 0; i < kInputs; ++i) input_tiles[i] = reinterpret_cast<T*>(base + i * input_bytes);
        G* grad_tile = grad ? reinterpret_cast<G*>(base + kInputs * input_bytes) : nullptr;
        Scratch* kernel_scratch = reinterpret_cast<Scratch*>(base + kInputs * input_bytes + grad_bytes);
        std::vector<Stats> stats;
        for (int64_t t = t0; t < t1; ++t) {
            tile.first = t * n;
            tile.rows = std::min(n, positions - tile.first);
            for (int i = 0; i < kInputs; ++i) {
                gather_tile(inputs[i], shape, tile.first, tile.rows, input_tiles[i]);
                tile.inputs[i] = input_tiles[i];
            }
            tile.grad = grad_tile;
            Args tile_args = args;
            tile_args.rows = tile.rows;
            tile_args.inner = 1;
            rebase(tile_args, tile);
            Kernel kernel(tile_args);
            run_rows_here(kernel, 0, tile.rows, C, kernel_scratch, stats);
            if (grad) scatter_tile(grad_tile, shape, tile.first, tile.rows, grad);
        }
    });
    note_kernel_end();
}

// A row kernel's call as its Args lay it out: classes last (inner <= 1), the
// rows as they are (run_blocked); classes in the middle, tile by tile
// (run_on_tiles, with `inputs`, `grad` and `rebase` as there).
template <class Kernel, class T, class G, int kInputs, class Args, class Rebase>
void run_rows_or_tiles(const Args& args, const std::array<const T*, kInputs>& inputs, G* grad,
                       const Rebase& rebase) {
    if (args.inner <= 1) {
        Kernel kernel(args);
        run_blocked(kernel, args.rows, args.cols, args.threads);
        return;
    }
    const ClassAxisShape shape{args.rows / args.inner, args.cols, args.inner};
    run_on_tiles<Kernel, T, G, kInputs>(args, shape, inputs, grad, args.threads, rebase);
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
