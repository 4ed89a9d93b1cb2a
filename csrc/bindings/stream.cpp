// pyce._core.stream_read / stream_scale: the memory-bandwidth probes of `pyce bench`.
#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "runtime/stream.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

void require_f32_contiguous(const py::array& a, const char* name) {
    if (!a.dtype().is(py::dtype::of<float>()) || !(a.flags() & py::array::c_style))
        throw py::type_error(std::string(name) + " must be a C-contiguous float32 array");
}

}  // namespace

void register_stream(py::module_& m) {
    m.def(
        "stream_read",
        [](const py::array& x) {
            require_f32_contiguous(x, "x");
            const float* p = static_cast<const float*>(x.data());
            const int64_t n = x.size();
            py::gil_scoped_release release;
            return stream_read(p, n, num_threads());
        },
        py::arg("x"), "Read every element once (all threads); returns the sum. A bandwidth probe.");
    m.def(
        "stream_scale",
        [](const py::array& src, py::array& dst, float scale) {
            require_f32_contiguous(src, "src");
            require_f32_contiguous(dst, "dst");
            require_writeable(dst, "dst");
            if (src.size() != dst.size()) throw py::value_error("src and dst must have the same size");
            const float* s = static_cast<const float*>(src.data());
            float* d = static_cast<float*>(dst.mutable_data());
            const int64_t n = src.size();
            py::gil_scoped_release release;
            stream_scale(s, d, n, scale, num_threads());
        },
        py::arg("src"), py::arg("dst"), py::arg("scale") = 1.0f,
        "dst = src * scale (all threads): read once + write once; dst may be src. A bandwidth probe.");
    m.def(
        "stream_scale_nt",
        [](const py::array& src, py::array& dst, float scale) {
            require_f32_contiguous(src, "src");
            require_f32_contiguous(dst, "dst");
            require_writeable(dst, "dst");
            if (src.size() != dst.size()) throw py::value_error("src and dst must have the same size");
            const float* s = static_cast<const float*>(src.data());
            float* d = static_cast<float*>(dst.mutable_data());
            const int64_t n = src.size();
            py::gil_scoped_release release;
            stream_scale_nt(s, d, n, scale, num_threads());
        },
        py::arg("src"), py::arg("dst"), py::arg("scale") = 1.0f,
        "dst = src * scale with non-temporal stores (all threads): read once + write once, dst's lines "
        "never read. The bandwidth probe of a streamed output.");
}

}  // namespace pyce
