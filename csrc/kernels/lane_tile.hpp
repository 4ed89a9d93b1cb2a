// What the kernels with one position per vector lane share (ClassLanes in
// strided_lanes.hpp, EvaluateLanes in evaluate_lanes.hpp, KLLanes in
// divergence_lanes.hpp): a group's logits copied into a contiguous (C, L)
// tile with their per-lane max, and the loop that shares the groups out to
// threads.
//
// The layouts: (outer, C, inner) C-contiguous (the class axis in the middle:
// a position's classes lie `inner` apart, neighbouring positions side by
// side), or, with kRowLanes, the rows of a (rows, C) array (outer 1, inner
// the number of rows), transposed in registers (tile_transpose.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/block_math.hpp"
#include "kernels/parallel.hpp"
#include "kernels/tile_transpose.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// Asks for the cache line `bytes` past p to be brought into L2 (prefetcht1).
// The tile copy reads C streams at once, more than the hardware prefetchers
// follow: its lines are asked for several groups ahead, into L2 so that the
// lines in flight do not crowd L1. Only a hint: never faults.
inline void prefetch_to_l2(const void* p, int64_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(
        reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)), 0, 2);
#else
    (void)p, (void)bytes;
#endif
}

// The strided tile copy asks for each class row's lines this many bytes (over
// all the classes' streams) ahead: 8 groups of 21 classes, measured best.
constexpr int64_t kLaneAheadBytes = int64_t{8 * 21 * 256};

// Vector k of a group at p; with kFull false only the first n lanes of the
// group are positions (the others read as `fill`).
template <class V, bool kFull, class T>
PYCE_ALWAYS_INLINE inline V lane_load(const T* p, int k, int64_t n, typename V::scalar fill) {
    constexpr int W = V::width;
    if constexpr (kFull) return vload(p + k * W);
    const int64_t m = std::clamp<int64_t>(n - int64_t{k} * W, 0, W);
    if (m == W) return vload(p + k * W);
    return m ? vload_partial(p + k * W, m, fill) : V::broadcast(fill);
}

// The n <= NV * W positions of a group starting at (o, j0) copied into the
// (C, L) tile (padding lanes -inf), and their per-lane max (nan-blind as
// `max` is; a nan shows in the lane's sum).
template <int NV, bool kFull, bool kRowLanes, class T, class V>
PYCE_ALWAYS_INLINE inline void fill_lane_tile(const T* x, int64_t C, int64_t inner, int64_t o, int64_t j0,
                                              int64_t n, Acc<T>* tile, V (&mx)[NV]) {
    using A = Acc<T>;
    constexpr int W = V::width;
    constexpr int64_t L = NV * W;
    const A ninf = -std::numeric_limits<A>::infinity();
    for (int k = 0; k < NV; ++k) mx[k] = V::broadcast(ninf);
    if constexpr (kRowLanes) {
        rows_to_tile(x + j0 * C, C, n, tile, L);
        for (int64_t c = 0; c < C; ++c)
            for (int k = 0; k < NV; ++k) mx[k] = max(mx[k], V::load(tile + c * L + k * W));
    } else {
        constexpr int64_t kLines = (L * static_cast<int64_t>(sizeof(T)) + 63) / 64;
        constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(T));
        // The lines in flight: kLaneAheadBytes over all the classes' streams.
        const int64_t ahead_bytes =
            std::max<int64_t>(1, kLaneAheadBytes / (C * L * static_cast<int64_t>(sizeof(T)))) * L *
            static_cast<int64_t>(sizeof(T));
        for (int64_t c = 0; c < C; ++c) {
            const T* p = x + (o * C + c) * inner + j0;
            for (int64_t line = 0; line < kLines; ++line) prefetch_to_l2(p + line * kLineElems, ahead_bytes);
            A* t = tile + c * L;
            for (int k = 0; k < NV; ++k) {
                const V xv = lane_load<V, kFull>(p, k, n, ninf);
                xv.store(t + k * W);
                mx[k] = max(mx[k], xv);
            }
        }
    }
}

// Every group of L positions, over threads: group(full, o, j0, n, scratch)
// for the n <= L positions from (o, j0), `full` a std::integral_constant
// telling whether n == L, scratch `scratch_bytes` of this thread's own.
// Units of work are chunks of chunk_lanes positions (a multiple of L) of
// one outer index, so a lane's group never depends on the thread count.
// streamed: the groups write with non-temporal stores, fenced per thread.
template <int64_t L, bool kRowLanes, class Group>
void run_lane_groups(int64_t outer, int64_t C, int64_t inner, int threads, int64_t chunk_lanes_most,
                     size_t scratch_bytes, const Group& group, bool streamed = false) {
    const int64_t elements = outer * C * inner;
    if (elements < kMinParallelElements && !(elements >= kMinAwakeParallelElements && in_burst()))
        threads = 1;
    const int64_t chunk_lanes =
        kRowLanes ? positions_per_unit(chunk_lanes_most, L, outer, inner, threads, C, kShortRowUnitElements)
                  : positions_per_unit(chunk_lanes_most, L, outer, inner, threads);
    const int64_t chunks_per_outer = (inner + chunk_lanes - 1) / chunk_lanes;
    const int64_t units = outer * chunks_per_outer;
    parallel_ranges(units, threads, [&](int64_t u0, int64_t u1) {
        const ScratchLease lease(scratch_bytes);
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t o = u / chunks_per_outer, j0 = (u % chunks_per_outer) * chunk_lanes;
            const int64_t j1 = std::min(inner, j0 + chunk_lanes);
            for (int64_t j = j0; j < j1; j += L) {
                const int64_t n = std::min<int64_t>(L, j1 - j);
                if (n == L)
                    group(std::true_type{}, o, j, n, lease.as<void>());
                else
                    group(std::false_type{}, o, j, n, lease.as<void>());
            }
        }
        if (streamed) stream_fence();
    });
    note_kernel_end();
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
