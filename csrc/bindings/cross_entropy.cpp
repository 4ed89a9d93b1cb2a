// pyce._core.cross_entropy: arrays in, checks that protect memory, GIL
// released around the kernel, the loss out (and the gradient written in place).
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "kernels/cross_entropy_args.hpp"

namespace pyce {

namespace {

py::object cross_entropy_binding(const py::array& logits, const py::object& target,
                                 const py::object& soft_target, const py::object& weight,
                                 int64_t ignore_index, double label_smoothing, int reduction,
                                 const py::object& grad_output, const py::object& grad, double z_loss,
                                 bool return_lse, double softcap) {
    // The options were validated in Python (pyce/_validation.py); what is
    // checked here protects memory: dtypes, shapes, the target bounds.
    CrossEntropyArgs args;
    args.dtype = dtype_of(logits, "logits");
    // 3-D: (outer, C, inner), the class axis in the middle (kernels/strided_classes.cpp).
    const bool strided = logits.ndim() == 3;
    if (strided) {
        require_strided(logits, "logits", args.dtype);
        args.rows = logits.shape(0) * logits.shape(2);
        args.cols = logits.shape(1);
        args.inner = logits.shape(2);
        if (!soft_target.is_none() || softcap != 0.0)
            throw py::value_error("(outer, C, inner) logits take class-index targets without a soft cap");
    } else {
        require_rows(logits, "logits", args.dtype);
        args.rows = logits.shape(0);
        args.cols = logits.shape(1);
    }
    args.logits = logits.data();
    if (args.cols < 1) throw py::value_error("logits must have at least one class");
    args.reduction = reduction_of(reduction);
    args.label_smoothing = label_smoothing;
    args.ignore_index = ignore_index;
    args.z_loss = z_loss;
    args.softcap = softcap;
    args.want_lse = return_lse;

    // Keep every array referenced until the kernel is done.
    py::array target_arr, soft_arr, weight_arr, grad_out_arr, grad_arr;
    if (target.is_none() == soft_target.is_none())
        throw py::value_error("pass exactly one of target (class indices) and soft_target (probabilities)");
    if (!target.is_none()) {
        target_arr = py::array::ensure(target);
        if (!target_arr || !target_arr.dtype().is(py::dtype::of<int64_t>()))
            throw py::type_error("target must be an int64 array");
        require_vector(target_arr, "target", args.rows);
        args.target = static_cast<const int64_t*>(target_arr.data());
    } else {
        soft_arr = py::array::ensure(soft_target);
        if (!soft_arr) throw py::type_error("soft_target must be an array");
        require_rows(soft_arr, "soft_target", args.dtype, args.rows, args.cols);
        args.soft_target = soft_arr.data();
    }
    const DType compute = args.dtype == DType::f64 ? DType::f64 : DType::f32;
    if (!weight.is_none()) {
        weight_arr = py::array::ensure(weight);
        if (!weight_arr || dtype_of(weight_arr, "weight") != compute)
            throw py::type_error("weight must be float64 for float64 logits, float32 otherwise");
        require_vector(weight_arr, "weight", args.cols);
        args.weight = weight_arr.data();
    }
    if (!grad_output.is_none()) {
        grad_out_arr = py::array::ensure(grad_output);
        if (!grad_out_arr || !grad_out_arr.dtype().is(py::dtype::of<double>()))
            throw py::type_error("grad_output must be a float64 array");
        require_vector(grad_out_arr, "grad_output", args.reduction == Reduction::none ? args.rows : 1);
        args.grad_output = static_cast<const double*>(grad_out_arr.data());
        if (grad.is_none()) throw py::value_error("grad_output given without a grad array to write");
        grad_arr = py::array::ensure(grad);
        if (!grad_arr) throw py::type_error("grad must be an array");
        // The gradient has the logits' dtype, or float32 for 16-bit logits.
        args.grad_f32 = is_16bit(args.dtype) && dtype_of(grad_arr, "grad") == DType::f32;
        const DType grad_dtype = args.grad_f32 ? DType::f32 : args.dtype;
        if (strided)
            require_strided(grad_arr, "grad", grad_dtype, logits.shape(0), args.cols, args.inner);
        else
            require_rows(grad_arr, "grad", grad_dtype, args.rows, args.cols);
        require_writeable(grad_arr, "grad");
        args.grad = grad_arr.mutable_data();
    }

    BadTarget bad;
    CrossEntropyResult result;
    {
        py::gil_scoped_release release;
        if (args.target) bad = find_bad_target(args.target, args.rows, args.cols, args.ignore_index);
        if (bad.position < 0) result = pyce::cross_entropy(args);
    }
    raise_if_bad_target(bad, args.cols, args.ignore_index);

    py::object loss;
    if (args.reduction == Reduction::none)
        loss = per_row_array(result.row_loss, args.dtype);
    else
        loss = py::float_(result.total);
    if (!return_lse) return loss;
    return py::make_tuple(loss, per_row_array(result.row_lse, args.dtype));
}

}  // namespace

void register_cross_entropy(py::module_& m) {
    m.def(
        "cross_entropy", &cross_entropy_binding, py::arg("logits"), py::arg("target"), py::arg("soft_target"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("reduction"),
        py::arg("grad_output"), py::arg("grad"), py::arg("z_loss") = 0.0, py::arg("return_lse") = false,
        py::arg("softcap") = 0.0,
        "Fused cross-entropy over C-contiguous (rows, C) logits, or (outer, C, inner) ones with the classes "
        "along the middle axis. Returns the reduced loss (float) or the "
        "per-row losses (reduction 0); writes the gradient into `grad` when `grad_output` is given.");
}

}  // namespace pyce
