// pyce._core runtime functions: threads, CPU dispatch, build information.
#include <pybind11/stl.h>

#include <stdexcept>

#include "bindings/register.hpp"
#include "runtime/dispatch.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace py = pybind11;

namespace {

py::dict cpu_info() {
    py::dict d;
    d["isa"] = kernels().name;
    d["supported"] = supported_capabilities();
    d["openmp"] = have_openmp();
    d["threads"] = num_threads();
    d["forked_child"] = in_forked_child();
    const std::string forced = forced_capability();
    d["forced"] = forced.empty() ? py::object(py::none()) : py::object(py::str(forced));
#if defined(__clang__)
    d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    d["compiler"] = "msvc " + std::to_string(_MSC_VER);
#endif
    return d;
}

}  // namespace

void register_runtime(py::module_& m) {
    m.def("cpu_info", &cpu_info, "The chosen ISA, the supported ones, OpenMP and the thread count.");
    m.def("get_num_threads", &num_threads, "Threads the kernels use.");
    m.def("set_num_threads", &set_num_threads, py::arg("n"),
          "Set the threads the kernels use (capped to [1, max_threads()]).");
    m.def("max_threads", &max_threads,
          "The most threads set_num_threads takes: 4 per processor, at least 64.");
    m.def("set_spin_window_us", &set_spin_window_us, py::arg("us"),
          "How long OpenMP's workers spin after a parallel region (0: assume they sleep at once).");
    m.def(
        "set_capability",
        [](const std::string& name) {
            const std::string previous = kernels().name;
            try {
                set_capability(name);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
            return previous;
        },
        py::arg("name"),
        "Switch the kernel table ('avx512', 'avx2', 'baseline'); returns the previous one. For tests.");
}

}  // namespace pyce
