#include "threading.hpp"

#include <atomic>
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

}  // namespace pyce
