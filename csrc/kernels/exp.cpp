// The kernels' vectorised exp applied to a whole array: what the tests use to
// measure its accuracy (tests/test_exp.py) for every ISA.
// Compiled once per ISA (see CMakeLists.txt); registers into that ISA's table.
#include <cstdint>

#include "../dispatch.hpp"
#include "vec.hpp"

namespace pyce {
namespace CPU_CAPABILITY {
namespace {

template <class T>
void exp_array(const void* in, int64_t n, void* out) {
    using V = typename VecFor<T>::type;
    constexpr int W = V::width;
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    const int64_t full = n - n % W;
    for (int64_t i = 0; i < full; i += W) exp(V::load(x + i)).store(y + i);
    if (n > full) exp(V::load_partial(x + full, n - full, T(0))).store_partial(y + full, n - full);
}

}  // namespace

void register_exp_kernels(KernelTable& table) {
    table.exp[static_cast<int>(DType::f32)] = exp_array<float>;
    table.exp[static_cast<int>(DType::f64)] = exp_array<double>;
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
