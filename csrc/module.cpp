// The compiled core of pyce. Only registration happens here.
#include "bindings/register.hpp"
#include "runtime/dispatch.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyce's compiled kernels (private: use the functions of the pyce package)";
    // Choose the kernel table now, so that a bad PYCE_CPU_CAPABILITY fails the
    // import with its message instead of the first call.
    pyce::kernels();
    pyce::register_runtime(m);
    pyce::register_softmax(m);
    pyce::register_cross_entropy(m);
    pyce::register_stream(m);
    pyce::register_metrics(m);
    pyce::register_divergence(m);
    pyce::register_focal(m);
    pyce::register_cache(m);
}
