#include "runtime/scratch.hpp"

#include <new>

namespace pyce {
namespace {

constexpr std::align_val_t kAlign{64};

void* allocate(std::size_t bytes) { return ::operator new(bytes, kAlign); }
void release(void* p) { ::operator delete(p, kAlign); }

struct ThreadBuffer {
    void* data = nullptr;
    std::size_t capacity = 0;
    bool leased = false;
    ~ThreadBuffer() { release(data); }
};

thread_local ThreadBuffer buffer;

}  // namespace

ScratchLease::ScratchLease(std::size_t bytes) {
    if (bytes == 0) return;
    if (buffer.leased || bytes > kKeepScratchBytes) {
        data_ = allocate(bytes);
        owned_ = true;
        return;
    }
    if (bytes > buffer.capacity) {
        // Grow by at least a quarter, so that slowly growing requests do not
        // reallocate every time.
        std::size_t grown = buffer.capacity + buffer.capacity / 4;
        if (grown < bytes) grown = bytes;
        if (grown > kKeepScratchBytes) grown = kKeepScratchBytes;
        release(buffer.data);
        buffer.data = nullptr;
        buffer.capacity = 0;
        buffer.data = allocate(grown);  // may throw: the thread is left with no buffer
        buffer.capacity = grown;
    }
    buffer.leased = true;
    data_ = buffer.data;
}

ScratchLease::~ScratchLease() {
    if (owned_)
        release(data_);
    else if (data_)
        buffer.leased = false;
}

}  // namespace pyce
