// pyce._core.logsumexp / softmax / log_softmax over (rows, C) arrays.
#include <vector>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

// (outer, C, inner) arrays: classes along the middle axis, no transposing
// copy (kernels/strided_classes.cpp).
py::array logsumexp_strided(const py::array& x) {
    const DType dtype = dtype_of(x, "x");
    require_strided(x, "x", dtype);
    const int64_t outer = x.shape(0), C = x.shape(1), inner = x.shape(2);
    if (C < 1) throw py::value_error("x must have at least one class");
    py::array out(compute_dtype(dtype), std::vector<py::ssize_t>{x.shape(0), x.shape(2)});
    const auto fn = kernels().logsumexp_strided[static_cast<int>(dtype)];
    const void* in = x.data();
    void* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        fn(in, outer, C, inner, o, num_threads());
    }
    return out;
}

py::array logsumexp(const py::array& x) {
    if (x.ndim() == 3) return logsumexp_strided(x);
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

using StridedTable = StridedFn[kNumDTypes];

void strided_to_strided(StridedTable KernelTable::*member, const py::array& x, py::array& out) {
    const DType dtype = dtype_of(x, "x");
    require_strided(x, "x", dtype);
    require_strided(out, "out", dtype, x.shape(0), x.shape(1), x.shape(2));
    require_writeable(out, "out");
    const auto fn = (kernels().*member)[static_cast<int>(dtype)];
    const void* in = x.data();
    void* o = out.mutable_data();
    const int64_t outer = x.shape(0), C = x.shape(1), inner = x.shape(2);
    if (outer * C * inner == 0) return;
    py::gil_scoped_release release;
    fn(in, outer, C, inner, o, num_threads());
}

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
    if (x.ndim() != 1 || !(x.flags() & py::array::c_style))
        throw py::value_error("x must be a contiguous vector");
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
          "Log-sum-exp over the rows of a C-contiguous (rows, C) float array, or along the middle axis of an "
          "(outer, C, inner) one (float32 result for 16-bit input).");
    m.def(
        "softmax",
        [](const py::array& x, py::array& out) {
            if (x.ndim() == 3)
                strided_to_strided(&KernelTable::softmax_strided, x, out);
            else
                rows_to_rows(&KernelTable::softmax, x, out);
        },
        py::arg("x"), py::arg("out"),
        "Softmax of x into out (both C-contiguous): over the rows of (rows, C), or along the middle axis of "
        "(outer, C, inner).");
    m.def(
        "log_softmax",
        [](const py::array& x, py::array& out) {
            if (x.ndim() == 3)
                strided_to_strided(&KernelTable::log_softmax_strided, x, out);
            else
                rows_to_rows(&KernelTable::log_softmax, x, out);
        },
        py::arg("x"), py::arg("out"),
        "Log-softmax of x into out (both C-contiguous): over the rows of (rows, C), or along the middle axis "
        "of "
        "(outer, C, inner).");
}

}  // namespace pyce
