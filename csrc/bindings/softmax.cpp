// pyce._core.logsumexp / softmax / log_softmax over (rows, C) arrays.
#include <vector>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

py::array logsumexp(const py::array& x) {
    const DType dtype = dtype_of(x, "x");
    require_rows(x, "x", dtype);
    py::array out(compute_dtype(dtype), std::vector<py::ssize_t>{x.shape(0)});
    const auto fn = kernels().logsumexp[static_cast<int>(dtype)];
    const void* in = x.data();
    void* o = out.mutable_data();
    const int64_t rows = x.shape(0), cols = x.shape(1);
    {
        py::gil_scoped_release release;
        fn(in, rows, cols, o, num_threads());
    }
    return out;
}

// softmax and log_softmax write into `out` (same shape and dtype as x).
using RowsToRowsTable = RowsToRowsFn[kNumDTypes];

void rows_to_rows(RowsToRowsTable KernelTable::*member, const py::array& x, py::array& out) {
    const DType dtype = dtype_of(x, "x");
    require_rows(x, "x", dtype);
    require_rows(out, "out", dtype, x.shape(0), x.shape(1));
    require_writeable(out, "out");
    const auto fn = (kernels().*member)[static_cast<int>(dtype)];
    const void* in = x.data();
    void* o = out.mutable_data();
    const int64_t rows = x.shape(0), cols = x.shape(1);
    py::gil_scoped_release release;
    fn(in, rows, cols, o, num_threads());
}

py::array vector_exp(const py::array& x, bool sweep) {
    const DType dtype = dtype_of(x, "x");
    if (dtype != DType::f32 && dtype != DType::f64) throw py::type_error("x must be float32 or float64");
    if (x.ndim() != 1 || !(x.flags() & py::array::c_style)) throw py::value_error("x must be a contiguous vector");
    py::array out(x.dtype(), std::vector<py::ssize_t>{x.shape(0)});
    const auto fn = sweep ? kernels().exp_sweep : kernels().exp;
    fn[static_cast<int>(dtype)](x.data(), x.shape(0), out.mutable_data());
    return out;
}

}  // namespace

void register_softmax(py::module_& m) {
    m.def("vector_exp", &vector_exp, py::arg("x"), py::arg("sweep") = false,
          "The kernels' vectorised exp on a float32/float64 vector (for accuracy tests); sweep=True: the "
          "row sweeps' exp, defined for x <= 88 only.");
    m.def("logsumexp", &logsumexp, py::arg("x"),
          "Row-wise log-sum-exp of a C-contiguous (rows, C) float array (float32 result for 16-bit input).");
    m.def(
        "softmax", [](const py::array& x, py::array& out) { rows_to_rows(&KernelTable::softmax, x, out); },
        py::arg("x"), py::arg("out"), "Row-wise softmax of x into out (both C-contiguous (rows, C)).");
    m.def(
        "log_softmax", [](const py::array& x, py::array& out) { rows_to_rows(&KernelTable::log_softmax, x, out); },
        py::arg("x"), py::arg("out"), "Row-wise log-softmax of x into out (both C-contiguous (rows, C)).");
}

}  // namespace pyce
