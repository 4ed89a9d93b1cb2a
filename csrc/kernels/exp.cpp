// The kernels' vectorised exps applied to a whole array: what the tests use to
// measure their accuracy (tests/test_exp.py) for every ISA.
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

// The same with the exp the sweeps over 16-bit logits use (Exp2F32).
void exp_fast_array(const void* in, int64_t n, void* out) {
    constexpr int W = VecF32::width;
    const float* x = static_cast<const float*>(in);
    float* y = static_cast<float*>(out);
    const int64_t full = n - n % W;
    for (int64_t i = 0; i < full; i += W) exp_bounded_fast(VecF32::load(x + i)).store(y + i);
    if (n > full) exp_bounded_fast(VecF32::load_partial(x + full, n - full, 0.0f)).store_partial(y + full, n - full);
}

}  // namespace

void register_exp_kernels(KernelTable& table) {
    table.exp[static_cast<int>(DType::f32)] = exp_array<float>;
    table.exp[static_cast<int>(DType::f64)] = exp_array<double>;
    table.exp_fast = exp_fast_array;
}

}  // namespace CPU_CAPABILITY
}  // namespace pyce
