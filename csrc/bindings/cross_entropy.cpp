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

template <class T>
py::array row_losses_as(const std::vector<double>& row_loss) {
    py::array_t<T> out(static_cast<py::ssize_t>(row_loss.size()));
    T* o = out.mutable_data();
    for (size_t i = 0; i < row_loss.size(); ++i) o[i] = static_cast<T>(row_loss[i]);
    return out;
}

py::object cross_entropy_binding(const py::array& logits, const py::object& target, const py::object& soft_target,
                         const py::object& weight, int64_t ignore_index, double label_smoothing,
                         int reduction, const py::object& grad_output, const py::object& grad, double z_loss,
                         bool return_lse, double softcap) {
    CrossEntropyRequest q;
    q.dtype = dtype_of(logits, "logits");
    require_rows(logits, "logits", q.dtype);
    q.logits = logits.data();
    q.rows = logits.shape(0);
    q.cols = logits.shape(1);
    if (q.cols < 1) throw py::value_error("logits must have at least one class");
    if (reduction < 0 || reduction > 2) throw py::value_error("reduction must be 0 (none), 1 (mean) or 2 (sum)");
    q.reduction = static_cast<Reduction>(reduction);
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
        throw py::value_error("label_smoothing must be in [0, 1], got " + std::to_string(label_smoothing));
    q.label_smoothing = label_smoothing;
    q.ignore_index = ignore_index;
    if (!std::isfinite(z_loss)) throw py::value_error("z_loss must be finite, got " + std::to_string(z_loss));
    q.z_loss = z_loss;
    if (!(softcap >= 0.0 && std::isfinite(softcap)))
        throw py::value_error("softcap must be a finite number > 0 (or 0 for none), got " + std::to_string(softcap));
    q.softcap = softcap;
    q.want_lse = return_lse;

    // Keep every array referenced until the kernel is done.
    py::array target_arr, soft_arr, weight_arr, grad_out_arr, grad_arr;
    if (target.is_none() == soft_target.is_none())
        throw py::value_error("pass exactly one of target (class indices) and soft_target (probabilities)");
    if (!target.is_none()) {
        target_arr = py::array::ensure(target);
        if (!target_arr || !target_arr.dtype().is(py::dtype::of<int64_t>()))
            throw py::type_error("target must be an int64 array");
        require_vector(target_arr, "target", q.rows);
        q.target = static_cast<const int64_t*>(target_arr.data());
    } else {
        soft_arr = py::array::ensure(soft_target);
        if (!soft_arr) throw py::type_error("soft_target must be an array");
        require_rows(soft_arr, "soft_target", q.dtype, q.rows, q.cols);
        q.soft_target = soft_arr.data();
    }
    const DType compute = q.dtype == DType::f64 ? DType::f64 : DType::f32;
    if (!weight.is_none()) {
        weight_arr = py::array::ensure(weight);
        if (!weight_arr || dtype_of(weight_arr, "weight") != compute)
            throw py::type_error("weight must be float64 for float64 logits, float32 otherwise");
        require_vector(weight_arr, "weight", q.cols);
        q.weight = weight_arr.data();
    }
    if (!grad_output.is_none()) {
        grad_out_arr = py::array::ensure(grad_output);
        if (!grad_out_arr || !grad_out_arr.dtype().is(py::dtype::of<double>()))
            throw py::type_error("grad_output must be a float64 array");
        require_vector(grad_out_arr, "grad_output", q.reduction == Reduction::none ? q.rows : 1);
        q.grad_output = static_cast<const double*>(grad_out_arr.data());
        if (grad.is_none()) throw py::value_error("grad_output given without a grad array to write");
        grad_arr = py::array::ensure(grad);
        if (!grad_arr) throw py::type_error("grad must be an array");
        // The gradient has the logits' dtype, or float32 for 16-bit logits.
        q.grad_f32 = is_16bit(q.dtype) && dtype_of(grad_arr, "grad") == DType::f32;
        require_rows(grad_arr, "grad", q.grad_f32 ? DType::f32 : q.dtype, q.rows, q.cols);
        require_writeable(grad_arr, "grad");
        q.grad = grad_arr.mutable_data();
    }

    BadTarget bad;
    CrossEntropyResult result;
    {
        py::gil_scoped_release release;
        if (q.target) bad = find_bad_target(q.target, q.rows, q.cols, q.ignore_index);
        if (bad.position < 0) result = pyce::cross_entropy(q);
    }
    if (bad.position >= 0)
        throw py::index_error("target " + std::to_string(bad.value) + " at position " +
                              std::to_string(bad.position) + " (flattened) is out of range for " +
                              std::to_string(q.cols) + " classes: expected 0 <= target < " +
                              std::to_string(q.cols) + " or ignore_index (" + std::to_string(q.ignore_index) + ")");

    py::object loss;
    if (q.reduction == Reduction::none)
        loss = q.dtype == DType::f64 ? row_losses_as<double>(result.row_loss) : row_losses_as<float>(result.row_loss);
    else
        loss = py::float_(result.total);
    if (!return_lse) return loss;
    py::object lse = q.dtype == DType::f64 ? row_losses_as<double>(result.row_lse) : row_losses_as<float>(result.row_lse);
    return py::make_tuple(loss, lse);
}

}  // namespace

void register_cross_entropy(py::module_& m) {
    m.def("cross_entropy", &cross_entropy_binding, py::arg("logits"), py::arg("target"), py::arg("soft_target"),
          py::arg("weight"), py::arg("ignore_index"), py::arg("label_smoothing"), py::arg("reduction"),
          py::arg("grad_output"), py::arg("grad"), py::arg("z_loss") = 0.0, py::arg("return_lse") = false, py::arg("softcap") = 0.0,
          "Fused cross-entropy over C-contiguous (rows, C) logits. Returns the reduced loss (float) or the "
          "per-row losses (reduction 0); writes the gradient into `grad` when `grad_output` is given.");
}

}  // namespace pyce
