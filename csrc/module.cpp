// The compiled core of pyce. Only registration happens here.
#include "bindings/register.hpp"
#include "runtime/dispatch.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyce's compiled kernels (private: use the functions of the pyce package)";
    // Choose the kernel table now, so that a bad PYCE_CPU_CAPABILITY fails the
    // import with its message instead of the first call.
    pyce::kernels();
#define PYCE_CALL_BINDING(topic) pyce::register_##topic(m);
    PYCE_BINDING_TOPICS(PYCE_CALL_BINDING)
#undef PYCE_CALL_BINDING
}
