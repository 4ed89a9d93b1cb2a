#include "runtime/threading.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define PYCE_HAVE_ATFORK 1
#endif

namespace pyce {

namespace {

// Set in a fork()ed child. OpenMP's worker threads do not survive fork, but
// libgomp's record of them does: the child's first parallel region would wait
// for them forever. So a child runs everything on its own thread (as PyTorch
// does), whatever the parent used.
std::atomic<bool> forked_child{false};

}  // namespace

int max_threads() {
    if (forked_child.load(std::memory_order_relaxed)) return 1;
#ifdef _OPENMP
    const int procs = omp_get_num_procs();
#else
    const int procs = 1;
#endif
    return procs > 16 ? 4 * procs : 64;
}

namespace {

int capped(long n) { return n < 1 ? 1 : n > max_threads() ? max_threads() : static_cast<int>(n); }

// Start-up default: PYCE_NUM_THREADS if it is a positive integer, else
// OpenMP's own default (OMP_NUM_THREADS or the number of cores); at most
// max_threads() either way.
int default_threads() {
    if (const char* env = std::getenv("PYCE_NUM_THREADS")) {
        const long n = std::strtol(env, nullptr, 10);
        if (n >= 1) return capped(n);
    }
#ifdef _OPENMP
    return capped(omp_get_max_threads());
#else
    return 1;
#endif
}

std::atomic<int>& setting() {
    static std::atomic<int> threads{default_threads()};
    return threads;
}

#ifdef PYCE_HAVE_ATFORK
void drop_to_one_thread_in_child() {
    forked_child.store(true, std::memory_order_relaxed);
    setting().store(1);
}

// Registered when the module loads (before any call can start a team).
const int atfork_registered = pthread_atfork(nullptr, nullptr, &drop_to_one_thread_in_child);
#endif

}  // namespace

bool in_forked_child() { return forked_child.load(std::memory_order_relaxed); }

bool have_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

int num_threads() { return have_openmp() ? setting().load() : 1; }

void set_num_threads(int n) { setting().store(capped(n)); }

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
