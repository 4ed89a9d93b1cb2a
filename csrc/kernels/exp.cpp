// The kernels' vectorised exps applied to a whole array: what the tests use to
// measure their accuracy (tests/test_exp.py) for every ISA. `exp` is the
// general one; `exp_bounded` the one the row sweeps use (block_math.hpp),
// defined for x <= 88 only.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
#include <cstdint>

#include "runtime/dispatch.hpp"
#include "kernels/vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

template <class T, bool kSweep>
void exp_array(const void* in, int64_t n, void* out) {
    using V = typename VecFor<T>::type;
    constexpr int W = V::width;
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    auto f = [](V v) PYCE_ALWAYS_INLINE {
        if constexpr (kSweep)
            return exp_bounded(v);
        else
            return exp(v);
    };
    const int64_t full = n - n % W;
    for (int64_t i = 0; i < full; i += W) f(V::load(x + i)).store(y + i);
    if (n > full) f(V::load_partial(x + full, n - full, T(0))).store_partial(y + full, n - full);
}

}  // namespace

void register_exp_kernels(KernelTable& table) {
    table.exp[static_cast<int>(DType::f32)] = exp_array<float, false>;
    table.exp[static_cast<int>(DType::f64)] = exp_array<double, false>;
    table.exp_sweep[static_cast<int>(DType::f32)] = exp_array<float, true>;
    table.exp_sweep[static_cast<int>(DType::f64)] = exp_array<double, true>;
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
