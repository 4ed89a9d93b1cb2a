// A small cache of large output buffers (gradients, softmax outputs).
//
// Why: a freshly allocated array of hundreds of MB is not free. The OS maps
// and zeroes every page on first touch, which writes the whole array once
// more before the kernel writes it: a fused forward+backward into a new
// gradient moves 1.5x the bytes of one into a reused buffer. A training loop
// allocates a same-sized gradient every step and drops the previous one, so
// keeping the few most recently freed buffers and handing them out again
// removes that cost (as PyTorch's CUDA caching allocator does for the GPU).
//
// Policy: at most kMaxCachedBlocks freed blocks, together at most limit()
// bytes; a request takes the smallest cached block that fits it without
// wasting more than a quarter; the oldest block is freed first. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyce {

struct Block {
    void* data = nullptr;      // aligned to 64 bytes (2 MiB for large blocks)
    std::size_t capacity = 0;  // usable bytes
    void* mapping = nullptr;   // what to hand back to the OS
    std::size_t mapped = 0;
};

struct CacheStats {
    std::size_t limit;         // most bytes the cache may hold
    std::size_t cached_bytes;  // bytes held now, in freed blocks
    std::size_t cached_blocks;
    std::uint64_t hits;    // requests served from the cache
    std::uint64_t misses;  // requests that allocated from the OS
};

constexpr std::size_t kMaxCachedBlocks = 4;

// A block of at least `nbytes` bytes, from the cache or the OS. Throws
// std::bad_alloc when the OS has no memory.
Block acquire_block(std::size_t nbytes);

// Give a block back: cached if the limit allows, else returned to the OS.
void release_block(Block block);

// Return every cached block to the OS.
void empty_cache();

// Change the limit (0 disables the cache); frees blocks over the new limit.
void set_cache_limit(std::size_t nbytes);

CacheStats cache_stats();

}  // namespace pyce
