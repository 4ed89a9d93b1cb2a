// pyce._core.focal_loss over (rows, C) logits and class-index targets,
// optionally with its gradient.
#include <cmath>
#include <string>
#include <vector>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "bindings/grad_args.hpp"
#include "kernels/metrics_args.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

// reduction: 0 none, 1 mean (over rows that are not ignored), 2 sum.
py::object focal_binding(const py::array& logits, const py::array& target, int64_t ignore_index, double gamma,
                         const py::object& alpha, double alpha_scalar, int reduction, const py::object& grad_output,
                         const py::object& grad) {
    const DType dtype = dtype_of(logits, "logits");
    require_rows(logits, "logits", dtype);
    const int64_t rows = logits.shape(0), cols = logits.shape(1);
    if (cols < 1) throw py::value_error("logits must have at least one class");
    if (reduction < 0 || reduction > 2) throw py::value_error("reduction must be 0 (none), 1 (mean) or 2 (sum)");
    if (!(gamma >= 0.0) || !std::isfinite(gamma))
        throw py::value_error("gamma must be a finite number >= 0, got " + std::to_string(gamma));
    if (!target.dtype().is(py::dtype::of<int64_t>())) throw py::type_error("target must be an int64 array");
    require_vector(target, "target", rows);
    py::array alpha_arr;
    if (!alpha.is_none()) {
        alpha_arr = py::array::ensure(alpha);
        if (!alpha_arr || !alpha_arr.dtype().is(py::dtype::of<double>()))
            throw py::type_error("alpha must be a float64 array");
        require_vector(alpha_arr, "alpha", cols);
    }
    const int64_t* t = static_cast<const int64_t*>(target.data());
    const BadTarget bad = find_bad_target(t, rows, cols, ignore_index);
    if (bad.position >= 0)
        throw py::index_error("target " + std::to_string(bad.value) + " at position " +
                              std::to_string(bad.position) + " (flattened) is out of range for " +
                              std::to_string(cols) + " classes: expected 0 <= target < " + std::to_string(cols) +
                              " or ignore_index (" + std::to_string(ignore_index) + ")");
    double divisor = 1.0;
    if (reduction == 1) {
        divisor = 0.0;
        for (int64_t i = 0; i < rows; ++i) divisor += t[i] != ignore_index;
    }
    const bool per_row = reduction == 0;
    GradTarget gt = check_grad_target(grad_output, grad, dtype, rows, cols, per_row, divisor);
    std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
    FocalArgs args;
    args.logits = logits.data();
    args.rows = rows;
    args.cols = cols;
    args.target = t;
    args.ignore_index = ignore_index;
    args.gamma = gamma;
    args.alpha = alpha.is_none() ? nullptr : static_cast<const double*>(alpha_arr.data());
    args.alpha_scalar = alpha_scalar;
    args.row_loss = row_loss.data();
    args.grad = gt.data;
    args.grad_f32 = gt.f32;
    args.grad_scale = gt.scale;
    args.grad_scale_rows = gt.scale_rows;
    {
        py::gil_scoped_release release;
        args.threads = num_threads();
        kernels().focal_loss[static_cast<int>(dtype)](args);
    }
    return reduce_rows(row_loss, dtype, per_row, divisor);
}

}  // namespace

void register_focal(py::module_& m) {
    m.def("focal_loss", &focal_binding, py::arg("logits"), py::arg("target"), py::arg("ignore_index"),
          py::arg("gamma"), py::arg("alpha"), py::arg("alpha_scalar"), py::arg("reduction"), py::arg("grad_output"),
          py::arg("grad"),
          "Focal loss -alpha_t (1 - p_t)^gamma log p_t of C-contiguous (rows, C) logits; writes the gradient "
          "(times grad_output) into `grad` when grad_output is given.");
}

}  // namespace pyce
