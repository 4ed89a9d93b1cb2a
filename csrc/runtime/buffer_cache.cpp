#include "runtime/buffer_cache.hpp"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <new>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define PYCE_HAVE_MMAP 1
#endif

namespace pyce {

namespace {

constexpr std::size_t kHugePage = std::size_t(2) << 20;  // x86-64 / arm64 transparent huge page
constexpr std::size_t kLineAlign = 64;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::size_t physical_memory() {
#if defined(PYCE_HAVE_MMAP) && defined(_SC_PHYS_PAGES)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return std::size_t(pages) * std::size_t(page);
#endif
    return std::size_t(16) << 30;
}

// PYCE_CACHE_MB if set (0 disables), else a quarter of the machine's memory.
std::size_t default_limit() {
    if (const char* env = std::getenv("PYCE_CACHE_MB")) {
        char* end = nullptr;
        const double mb = std::strtod(env, &end);
        if (end != env && mb >= 0) return std::size_t(mb * 1048576.0);
    }
    return physical_memory() / 4;
}

Block allocate_from_os(std::size_t nbytes) {
    Block b;
#ifdef PYCE_HAVE_MMAP
    // Map 2 MiB more than needed and use a 2 MiB-aligned range inside, so the
    // kernel can back it with huge pages: one page fault per 2 MiB instead of
    // 512 (what NumPy's allocator asks for too).
    b.capacity = round_up(std::max<std::size_t>(nbytes, 1), kHugePage);
    b.mapped = b.capacity + kHugePage;
    void* p = mmap(nullptr, b.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    b.mapping = p;
    b.data = reinterpret_cast<void*>(round_up(reinterpret_cast<std::uintptr_t>(p), kHugePage));
#ifdef MADV_HUGEPAGE
    madvise(b.data, b.capacity, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
#else
    b.capacity = round_up(std::max<std::size_t>(nbytes, 1), kLineAlign);
    b.mapped = b.capacity + kLineAlign;
    b.mapping = std::malloc(b.mapped);
    if (!b.mapping) throw std::bad_alloc();
    b.data = reinterpret_cast<void*>(round_up(reinterpret_cast<std::uintptr_t>(b.mapping), kLineAlign));
#endif
    return b;
}

void free_to_os(const Block& b) {
#ifdef PYCE_HAVE_MMAP
    munmap(b.mapping, b.mapped);
#else
    std::free(b.mapping);
#endif
}

// A request of n bytes may take a cached block of up to 1.25 n (+ one huge
// page of rounding): more would keep too much memory idle behind a small array.
bool fits(const Block& b, std::size_t nbytes) {
    return b.capacity >= nbytes && b.capacity <= round_up(nbytes + nbytes / 4, kHugePage) + kHugePage;
}

struct Cache {
    std::mutex mutex;
    std::deque<Block> blocks;  // most recently freed first
    std::size_t bytes = 0;
    std::size_t limit = default_limit();
    std::uint64_t hits = 0, misses = 0;

    // Drop the oldest blocks until the cache is within its limits; returns them
    // so that the caller unmaps them outside the lock.
    std::deque<Block> trim() {
        std::deque<Block> evicted;
        while (!blocks.empty() && (bytes > limit || blocks.size() > kMaxCachedBlocks)) {
            evicted.push_back(blocks.back());
            bytes -= blocks.back().capacity;
            blocks.pop_back();
        }
        return evicted;
    }
};

Cache& cache() {
    static Cache* c = new Cache();  // never destroyed: arrays may outlive static teardown
    return *c;
}

void free_all(const std::deque<Block>& blocks) {
    for (const Block& b : blocks) free_to_os(b);
}

}  // namespace

Block acquire_block(std::size_t nbytes) {
    Cache& c = cache();
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        auto best = c.blocks.end();
        for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
            if (fits(*it, nbytes) && (best == c.blocks.end() || it->capacity < best->capacity)) best = it;
        if (best != c.blocks.end()) {
            Block b = *best;
            c.blocks.erase(best);
            c.bytes -= b.capacity;
            ++c.hits;
            return b;
        }
        ++c.misses;
    }
    return allocate_from_os(nbytes);
}

void release_block(Block block) {
    Cache& c = cache();
    std::deque<Block> evicted;
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        if (block.capacity <= c.limit) {
            c.blocks.push_front(block);
            c.bytes += block.capacity;
            evicted = c.trim();
        } else {
            evicted.push_back(block);
        }
    }
    free_all(evicted);
}

void empty_cache() {
    Cache& c = cache();
    std::deque<Block> evicted;
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        evicted.swap(c.blocks);
        c.bytes = 0;
    }
    free_all(evicted);
}

void set_cache_limit(std::size_t nbytes) {
    Cache& c = cache();
    std::deque<Block> evicted;
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        c.limit = nbytes;
        evicted = c.trim();
    }
    free_all(evicted);
}

CacheStats cache_stats() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    return {c.limit, c.bytes, c.blocks.size(), c.hits, c.misses};
}

}  // namespace pyce
