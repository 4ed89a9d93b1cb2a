// How a row kernel writes its rows x cols output (a gradient, a softmax) one
// block at a time, after the row's log-sum-exp is known: where the block's
// exps wait between the sweep and the writes, and whether the block is
// written with ordinary or non-temporal (streaming) stores. Shared by
// kernels/cross_entropy.cpp, softmax.cpp, focal.cpp and divergence.cpp.
//
// The writers take the block's values as `lanes(i, partial)`: the vector of
// output values [i, i + width), of which only the first `partial` are
// classes when partial > 0 (the block's last, partial vector).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/parallel.hpp"
#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// An output of at least this many bytes may be written with non-temporal
// stores: it cannot stay in cache for its consumer anyway, and skipping the
// read of each line before it is written cuts the traffic from three passes
// over the output's bytes to two.
constexpr int64_t kStreamMinBytes = int64_t{16} << 20;

// Whether an output of `elements` values of `value_size` bytes may be
// streamed: as large as kStreamMinBytes, not over the input (in place, its
// lines were just read and are in cache, where ordinary stores hit them), and
// aligned to its value size.
inline bool streamable_output(const void* out, const void* in, int64_t elements, size_t value_size) {
    return out != in && elements * static_cast<int64_t>(value_size) >= kStreamMinBytes &&
           reinterpret_cast<uintptr_t>(out) % value_size == 0;
}

// Whether an output in the compute type (float32/float64), which could hold
// its own exps, is streamed instead, its exps waiting in a scratch row (see
// kExpsInScratch): streamable, and with rows shared out whole, so that the
// scratch is one row per thread (the few-rows path keeps a scratch row per
// row: a second array of the output's size).
inline bool streams_wide_output(const void* out, const void* in, int64_t rows, int64_t cols,
                                size_t value_size, int threads) {
    return streamable_output(out, in, rows * cols, value_size) && shares_whole_rows(rows, threads);
}

// Where a kernel that keeps a block's exps until it writes the block keeps
// them: in the output itself when it is of the compute type A, else (a 16-bit
// output, or a streamed one, whose lines must hold nothing the writes read)
// in a scratch row.
template <class G, class A, bool kStreamed = false>
inline constexpr bool kExpsInScratch = !std::is_same_v<G, A> || kStreamed;

// An ignored row's block: zeros.
template <class G>
inline void zero_block(G* out, int64_t n) {
    std::memset(static_cast<void*>(out), 0, static_cast<size_t>(n) * sizeof(G));
}

// The first n lanes of v at p, through the stack: not a masked store, which
// stalls on a line that is not in cache (see store_lanes in vec_avx512.hpp;
// 16-bit partial stores already go through the stack).
template <class G, class V>
inline void store_unmasked(G* p, int64_t n, V v) {
    if constexpr (sizeof(G) == 2) {
        vstore_partial(p, n, v);
    } else {
        alignas(64) typename V::scalar values[V::width];
        v.store(values);
        std::memcpy(p, values, sizeof(G) * static_cast<size_t>(n));
    }
}

// Lanes [i, n) of a block with ordinary stores. `streamed`: the block's
// other lanes went with non-temporal stores, so its last partial vector is
// stored unmasked (store_unmasked).
template <class G, class Lanes>
PYCE_ALWAYS_INLINE inline void store_lanes(G* out, int64_t i, int64_t n, bool streamed, const Lanes& lanes) {
    constexpr int W = decltype(lanes(int64_t{0}, int64_t{0}))::width;
    for (; i + 2 * W <= n; i += 2 * W) vstore_pair(out + i, lanes(i, 0), lanes(i + W, 0));
    for (; i + W <= n; i += W) vstore(out + i, lanes(i, 0));
    if (i < n) {
        if (streamed)
            store_unmasked(out + i, n - i, lanes(i, n - i));
        else
            vstore_partial(out + i, n - i, lanes(i, n - i));
    }
}

// The whole vectors of a block with non-temporal stores, in order; returns
// how many lanes that wrote (store_lanes writes the rest). The output's lines
// must hold nothing the lanes read (kExpsInScratch), so whole lines are
// written without being read in first.
template <class G, class Lanes>
inline int64_t stream_lanes(G* out, int64_t n, const Lanes& lanes) {
    constexpr int W = decltype(lanes(int64_t{0}, int64_t{0}))::width;
    if constexpr (kStreamLines && sizeof(G) == 2) {
        const int64_t pairs = n / (2 * W);
        stream_lines(out, pairs, [&](int64_t p) PYCE_ALWAYS_INLINE {
            return pair_bits<G>(lanes(2 * W * p, 0), lanes(2 * W * p + W, 0));
        });
        return 2 * W * pairs;
    } else {
        // Vector by vector from the first line boundary, ordinary stores before it.
        const int64_t to_line = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(out) % 64) % 64);
        const int64_t head = std::min(n, to_line / static_cast<int64_t>(sizeof(G)));
        int64_t i = 0;
        for (; i + W <= head; i += W) vstore(out + i, lanes(i, 0));
        if (i < head) {
            store_unmasked(out + i, head - i, lanes(i, head - i));
            i = head;
        }
        for (; i + W <= n; i += W) vstream(out + i, lanes(i, 0));
        return i;
    }
}

// Writes a block of n values: with non-temporal stores when `stream`, else
// ordinary ones. kMayStream false keeps the streaming code out of a kernel
// that never streams (then `stream` must be false).
template <bool kMayStream, class G, class Lanes>
PYCE_ALWAYS_INLINE inline void store_block(G* out, int64_t n, bool stream, const Lanes& lanes) {
    int64_t i = 0;
    if constexpr (kMayStream) {
        if (stream) i = stream_lanes(out, n, lanes);
    }
    store_lanes(out, i, n, kMayStream && stream, lanes);
}

// A block of a kernel that never streams its output.
template <class G, class Lanes>
PYCE_ALWAYS_INLINE inline void store_block(G* out, int64_t n, const Lanes& lanes) {
    store_lanes(out, 0, n, false, lanes);
}

// The whole pairs of a block whose values come as pairs of vectors in
// vload_pair_any_order's order (kInterleavedPairs in vec.hpp; `pair(p, even,
// odd)` gives pair p: values [2Wp, 2Wp + 2W) as even and odd elements),
// stored in order, streamed when `stream`; returns how many lanes that wrote
// (store_lanes writes the rest). kNoNan: no value is nan (see bf16_rounded).
template <bool kMayStream, bool kNoNan, class G, class V, class Pair>
inline int64_t store_interleaved_pairs(G* out, int64_t n, bool stream, const Pair& pair) {
    constexpr int W = V::width;
    const int64_t pairs = n / (2 * W);
    // Every pair, stored by store(address, even, odd).
    auto each_pair = [&](auto store) PYCE_ALWAYS_INLINE {
        for (int64_t p = 0; p < pairs; ++p) {
            V even, odd;
            pair(p, even, odd);
            store(out + 2 * W * p, even, odd);
        }
        return 2 * W * pairs;
    };
    if constexpr (kMayStream && sizeof(G) == 2 && kStreamLines) {
        if (stream) {
            stream_lines(out, pairs, [&](int64_t p) PYCE_ALWAYS_INLINE {
                V even, odd;
                pair(p, even, odd);
                return bf16_interleaved_bits<kNoNan>(even, odd);
            });
            return 2 * W * pairs;
        }
    } else if constexpr (kMayStream && sizeof(G) == 2) {
        // AVX2: 16-byte non-temporal stores where the block allows them,
        // else ordinary stores. (A line cut by a block's end is shared with
        // the next block, streamed right after.)
        if (stream && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
            return each_pair([](G* dest, V even, V odd)
                                 PYCE_ALWAYS_INLINE { vstream_interleaved_pair<kNoNan>(dest, even, odd); });
        }
    }
    return each_pair([](G* dest, V even, V odd)
                         PYCE_ALWAYS_INLINE { vstore_interleaved_pair<kNoNan>(dest, even, odd); });
}

// After a streamed row's last block: once per row, as a fence waits for the
// row's lines to drain.
inline void end_streamed_row(bool stream, bool last_block) {
    if (stream && last_block) stream_fence();
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
