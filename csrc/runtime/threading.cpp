#include "runtime/threading.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pyce {

namespace {

// Start-up default: PYCE_NUM_THREADS if it is a positive integer, else
// OpenMP's own default (OMP_NUM_THREADS or the number of cores).
int default_threads() {
    if (const char* env = std::getenv("PYCE_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return n;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

std::atomic<int>& setting() {
    static std::atomic<int> threads{default_threads()};
    return threads;
}

}  // namespace

bool have_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

int num_threads() { return have_openmp() ? setting().load() : 1; }

void set_num_threads(int n) { setting().store(n < 1 ? 1 : n); }

namespace {

std::atomic<int64_t> last_kernel_end_ns{0};
std::atomic<int64_t> spin_window_ns{0};

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

void note_kernel_end() { last_kernel_end_ns.store(now_ns(), std::memory_order_relaxed); }

bool in_burst() {
    const int64_t window = spin_window_ns.load(std::memory_order_relaxed);
    return window > 0 && now_ns() - last_kernel_end_ns.load(std::memory_order_relaxed) < window;
}

void set_spin_window_us(int us) { spin_window_ns.store(us > 0 ? int64_t(us) * 1000 : 0); }

}  // namespace pyce
