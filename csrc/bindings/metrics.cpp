// pyce._core.evaluate / entropy: per-row evaluation metrics from one pass
// over (rows, C) logits, or (outer, C, inner) ones with the classes in the
// middle (rows: the positions, in C order). The reductions over rows (means, top-k, calibration)
// are O(rows) and happen in pyce/metrics.py.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "runtime/reduce.hpp"
#include "kernels/evaluate_args.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

py::array_t<double> nan_vector(py::ssize_t n) {
    py::array_t<double> out(n);
    double* p = out.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) p[i] = std::numeric_limits<double>::quiet_NaN();
    return out;
}

// (loss, entropy, max_prob, rank): float64 vectors of length rows; nan for
// ignored rows.
py::tuple evaluate_binding(const py::array& logits, const py::array& target, int64_t ignore_index) {
    const DType dtype = dtype_of(logits, "logits");
    const ClassLayout layout = class_layout(logits, "logits", dtype);
    const int64_t rows = layout.rows, cols = layout.cols;
    if (cols < 1) throw py::value_error("logits must have at least one class");
    if (!target.dtype().is(py::dtype::of<int64_t>())) throw py::type_error("target must be an int64 array");
    require_vector(target, "target", rows);
    auto loss = nan_vector(rows), entropy = nan_vector(rows), max_prob = nan_vector(rows),
         rank = nan_vector(rows);
    EvaluateArgs args;
    args.logits = logits.data();
    args.rows = rows;
    args.cols = cols;
    args.inner = layout.inner;
    args.target = static_cast<const int64_t*>(target.data());
    args.ignore_index = ignore_index;
    args.loss = loss.mutable_data();
    args.entropy = entropy.mutable_data();
    args.max_prob = max_prob.mutable_data();
    args.rank = rank.mutable_data();
    BadTarget bad;
    {
        py::gil_scoped_release release;
        args.threads = num_threads();
        bad = find_bad_target(args.target, rows, cols, ignore_index);
        if (bad.position < 0) kernels().evaluate[static_cast<int>(dtype)](args);
    }
    raise_if_bad_target(bad, cols, ignore_index);
    return py::make_tuple(loss, entropy, max_prob, rank);
}

// The entropy of softmax of every row, float64.
py::array entropy_binding(const py::array& logits) {
    const DType dtype = dtype_of(logits, "logits");
    const ClassLayout layout = class_layout(logits, "logits", dtype);
    const int64_t rows = layout.rows, cols = layout.cols;
    if (cols < 1) throw py::value_error("logits must have at least one class");
    py::array_t<double> entropy(rows);
    EvaluateArgs args;
    args.logits = logits.data();
    args.rows = rows;
    args.cols = cols;
    args.inner = layout.inner;
    args.entropy = entropy.mutable_data();
    {
        py::gil_scoped_release release;
        args.threads = num_threads();
        kernels().evaluate[static_cast<int>(dtype)](args);
    }
    return entropy;
}

}  // namespace

void register_metrics(py::module_& m) {
    m.def("evaluate", &evaluate_binding, py::arg("logits"), py::arg("target"), py::arg("ignore_index"),
          "Per-row (loss, entropy, max_prob, rank) of C-contiguous (rows, C) logits (or (outer, C, inner) "
          "ones, classes in the middle) from one pass; nan for ignored rows. rank = #{j: x_j > x_target}.");
    m.def("entropy", &entropy_binding, py::arg("logits"),
          "Entropy of softmax of every row of C-contiguous (rows, C) logits (or of every position of (outer, "
          "C, "
          "inner) ones), as float64.");
}

}  // namespace pyce
