// Scratch memory for the kernels: one buffer per thread, kept between calls.
//
// Why: a kernel that writes a 16-bit gradient keeps its exps in float32
// scratch rows (and a soft-capped kernel its capped logits). Allocating those
// rows on every call costs more than the kernel when rows are few and long:
// a decode step (8 x 256000 bfloat16) needs 8 MB of scratch, and a fresh
// zero-filled 8 MB costs a serial memset (and page faults) on the calling
// thread, several times the fused pass itself on a many-core machine. A kept
// buffer is already mapped and is not filled: every kernel writes its
// scratch before it reads it.
#pragma once

#include <cstddef>

namespace pyce {

// A thread keeps a buffer of up to this many bytes between calls; larger
// requests get memory of their own, freed when the lease ends.
constexpr std::size_t kKeepScratchBytes = std::size_t{32} << 20;

// `bytes` of uninitialised, 64-byte aligned memory for as long as the lease
// lives. Comes from the calling thread's buffer (grown when too small) unless
// the request is larger than kKeepScratchBytes or the buffer is already leased.
class ScratchLease {
  public:
    explicit ScratchLease(std::size_t bytes);
    ~ScratchLease();
    ScratchLease(const ScratchLease&) = delete;
    ScratchLease& operator=(const ScratchLease&) = delete;

    template <class T>
    T* as() const {
        return static_cast<T*>(data_);
    }

  private:
    void* data_ = nullptr;
    bool owned_ = false;  // memory of its own (freed here), not the thread's buffer
};

}  // namespace pyce
