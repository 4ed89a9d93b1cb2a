// Moves a group of short rows into the (C, L) tile the lane kernels sweep,
// one row per vector lane, and the tile's outputs back into rows
// (kernels/strided_lanes.hpp, ClassLanes with kRowLanes).
//
// The copies go by W x W blocks (W the vector width) transposed in
// registers: W row vectors in, W class vectors out. Lane by lane (what this
// replaced) a 64-row group of 32 classes cost about as much as all its exps
// (perf: the copy loops were 35 % of a fused 32768 x 32 call). Values are
// only moved, never rounded, so the tile is bitwise what the element loop
// made; the outputs are rounded to the output type as every vector store is.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

// v[i] lane j <-> v[j] lane i, through memory: the vector types that have no
// in-register version (float64, the portable build). vec_avx512.hpp and
// vec_avx2.hpp define transpose_square for VecF32, which overload resolution
// prefers to this template.
template <class V>
inline void transpose_square(V (&v)[V::width]) {
    using S = typename V::scalar;
    constexpr int W = V::width;
    alignas(64) S a[W * W], b[W * W];
    for (int i = 0; i < W; ++i) v[i].store(a + i * W);
    for (int i = 0; i < W; ++i)
        for (int j = 0; j < W; ++j) b[j * W + i] = a[i * W + j];
    for (int i = 0; i < W; ++i) v[i] = V::load(b + i * W);
}

// Where class block c0 (of W classes) of a row of C classes starts: at c0,
// except that in a row of at least W classes a last block that would be
// short starts at C - W instead, overlapping the block before it. Every
// block of a whole group of rows is then whole vectors: masked loads and
// stores of a short block cost more than the block's transpose (perf on AVX2,
// Zen 3: the masked stores of tile_to_rows were 30 % of a fused 262144 x 2
// call). The classes two blocks share are moved twice, the same values.
inline int64_t whole_block_start(int64_t c0, int64_t C, int W) { return C >= W && c0 + W > C ? C - W : c0; }

// tile[c * L + l] = rows[l * C + c] in the compute type, for the n rows
// (n <= L) of a group; lanes n to L are -inf, so that they add nothing to a
// max or a sum of exps. L is a multiple of the vector width.
//
// The loads of a whole W x W block (the common case) go without a branch
// per row, and each asks for the same line of the next group (`ahead`
// elements on: L rows) to be brought into cache: the rows are read from
// memory here, and the hardware prefetcher alone left these loads waiting
// (perf: a third of a fused 32768 x 32 call stalled on them).
template <class T, class V = typename VecFor<T>::type>
inline void rows_to_tile(const T* rows, int64_t C, int64_t n, Acc<T>* tile, int64_t L) {
    using A = Acc<T>;
    constexpr int W = V::width;
    const A ninf = -std::numeric_limits<A>::infinity();
    const int64_t ahead = L * C;
    V v[W];
    for (int64_t l0 = 0; l0 < L; l0 += W) {
        const int64_t nr = std::clamp<int64_t>(n - l0, 0, W);
        for (int64_t c0 = 0; c0 < C; c0 += W) {
            const int64_t nc = std::min<int64_t>(W, C - c0);
            if (nr == 0) {
                for (int64_t j = 0; j < nc; ++j) V::broadcast(ninf).store(tile + (c0 + j) * L + l0);
                continue;
            }
            if (nr == W && C >= W) {
                const int64_t cs = whole_block_start(c0, C, W);
                const T* p = rows + l0 * C + cs;
                for (int i = 0; i < W; ++i) {
                    prefetch_ahead(p + i * C, ahead * static_cast<int64_t>(sizeof(T)));
                    v[i] = vload(p + i * C);
                }
                transpose_square(v);
                for (int j = 0; j < W; ++j) v[j].store(tile + (cs + j) * L + l0);
                continue;
            }
            // A short group's last rows, or rows shorter than a vector.
            const T* p = rows + l0 * C + c0;
            for (int64_t i = 0; i < W; ++i)
                v[i] = i >= nr   ? V::broadcast(ninf)
                       : nc == W ? vload(p + i * C)
                                 : vload_partial(p + i * C, nc, ninf);
            transpose_square(v);
            for (int64_t j = 0; j < nc; ++j) v[j].store(tile + (c0 + j) * L + l0);
        }
    }
}

// rows[l * C + c] = tile[c * L + l] rounded to G, for the n rows of a group.
template <class G, class V>
inline void tile_to_rows(const typename V::scalar* tile, int64_t L, int64_t C, int64_t n, G* rows) {
    constexpr int W = V::width;
    V v[W];
    for (int64_t l0 = 0; l0 < n; l0 += W) {
        const int64_t nr = std::min<int64_t>(W, n - l0);
        for (int64_t c0 = 0; c0 < C; c0 += W) {
            const int64_t nc = std::min<int64_t>(W, C - c0);
            if (nr == W && C >= W) {  // whole blocks: no branch per vector
                const int64_t cs = whole_block_start(c0, C, W);
                G* q = rows + l0 * C + cs;
                for (int j = 0; j < W; ++j) v[j] = V::load(tile + (cs + j) * L + l0);
                transpose_square(v);
                for (int i = 0; i < W; ++i) vstore(q + i * C, v[i]);
                continue;
            }
            G* q = rows + l0 * C + c0;
            if (nr == W) {
                // Rows shorter than a vector: the block's W rows are W * C
                // values in a row. Transposed, row i is the first C lanes of
                // v[i]; they are stored whole into an aligned buffer and
                // moved from there one by one (W masked stores cost more).
                for (int j = 0; j < W; ++j) v[j] = j < C ? V::load(tile + j * L + l0) : V::broadcast(0);
                transpose_square(v);
                alignas(64) G buf[W * W];
                for (int i = 0; i < W; ++i) vstore(buf + i * W, v[i]);
                for (int i = 0; i < W; ++i)
                    for (int64_t c = 0; c < C; ++c) q[i * C + c] = buf[i * W + c];
                continue;
            }
            for (int64_t j = 0; j < W; ++j)
                v[j] = j < nc ? V::load(tile + (c0 + j) * L + l0) : V::broadcast(0);
            transpose_square(v);
            for (int64_t i = 0; i < nr; ++i) {
                if (nc == W)
                    vstore(q + i * C, v[i]);
                else
                    vstore_partial(q + i * C, nc, v[i]);
            }
        }
    }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace pyce
