// pyce._core.focal_loss over (rows, C) or (outer, C, inner) logits and
// class-index targets, optionally with its gradient.
#include <cmath>
#include <string>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "bindings/grad_args.hpp"
#include "kernels/focal_args.hpp"

namespace pyce {

namespace {

// reduction: 0 none, 1 mean (over rows that are not ignored), 2 sum. The
// options were validated in Python; the checks here protect memory.
py::object focal_binding(const py::array& logits, const py::array& target, int64_t ignore_index, double gamma,
                         const py::object& alpha, double alpha_scalar, int reduction_code,
                         const py::object& grad_output, const py::object& grad) {
    const DType dtype = dtype_of(logits, "logits");
    const ClassLayout layout = class_layout(logits, "logits", dtype);
    const int64_t rows = layout.rows, cols = layout.cols;
    if (cols < 1) throw py::value_error("logits must have at least one class");
    const Reduction reduction = reduction_of(reduction_code);
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
    BadTarget bad;
    {
        py::gil_scoped_release release;
        bad = find_bad_target(t, rows, cols, ignore_index);
    }
    raise_if_bad_target(bad, cols, ignore_index);
    // The mean is over the rows that are not ignored, whatever alpha.
    MeanOver over;
    over.rows = rows;
    over.target = t;
    over.ignore_index = ignore_index;
    const double divisor = divisor_of(reduction, over);
    GradTarget gt = check_grad_target(grad_output, grad, dtype, logits, rows, reduction, divisor);
    FocalArgs args;
    args.logits = logits.data();
    args.rows = rows;
    args.cols = cols;
    args.inner = layout.inner;
    args.target = t;
    args.ignore_index = ignore_index;
    args.gamma = gamma;
    args.alpha = alpha.is_none() ? nullptr : static_cast<const double*>(alpha_arr.data());
    args.alpha_scalar = alpha_scalar;
    return run_loss_kernel(kernels().focal_loss[static_cast<int>(dtype)], args, gt, dtype, reduction,
                           divisor);
}

}  // namespace

void register_focal(py::module_& m) {
    m.def(
        "focal_loss", &focal_binding, py::arg("logits"), py::arg("target"), py::arg("ignore_index"),
        py::arg("gamma"), py::arg("alpha"), py::arg("alpha_scalar"), py::arg("reduction"),
        py::arg("grad_output"), py::arg("grad"),
        "Focal loss -alpha_t (1 - p_t)^gamma log p_t of C-contiguous (rows, C) logits, or (outer, C, inner) "
        "ones with the classes in the middle; writes the gradient "
        "(times grad_output) into `grad` when grad_output is given.");
}

}  // namespace pyce
