// Shared by the bindings of loss kernels that write per-row losses and, when
// asked, a gradient (divergence, focal loss): the gradient buffer and its
// scale in, the kernel run with the GIL released, the per-row losses out.
#pragma once

#include <vector>

#include "bindings/arrays.hpp"
#include "runtime/reduce.hpp"
#include "runtime/threading.hpp"

namespace pyce {

// Where a kernel's gradient goes and how it is scaled.
struct GradTarget {
    py::array grad_output, grad;  // kept referenced while the kernel runs
    void* data = nullptr;
    bool f32 = false;
    double scale = 1.0;
    const double* scale_rows = nullptr;
};

// grad_output: None (no gradient), or a float64 vector (one per row for
// reduction none, else one value); grad: the buffer to write, of the
// logits' shape ((rows, cols), or (outer, cols, inner)). `divisor`
// (runtime/reduce.hpp's divisor_of) divides a reduced gradient.
inline GradTarget check_grad_target(const py::object& grad_output, const py::object& grad, DType dtype,
                                    const py::array& logits, int64_t rows, Reduction reduction,
                                    double divisor) {
    GradTarget out;
    if (grad_output.is_none()) return out;
    const bool per_row = reduction == Reduction::none;
    out.grad_output = py::array::ensure(grad_output);
    if (!out.grad_output || !out.grad_output.dtype().is(py::dtype::of<double>()))
        throw py::type_error("grad_output must be a float64 array");
    require_vector(out.grad_output, "grad_output", per_row ? rows : 1);
    if (grad.is_none()) throw py::value_error("grad_output given without a grad array to write");
    out.grad = py::array::ensure(grad);
    if (!out.grad) throw py::type_error("grad must be an array");
    out.f32 = is_16bit(dtype) && dtype_of(out.grad, "grad") == DType::f32;
    require_like(out.grad, "grad", out.f32 ? DType::f32 : dtype, logits);
    require_writeable(out.grad, "grad");
    out.data = out.grad.mutable_data();
    const double* g = static_cast<const double*>(out.grad_output.data());
    if (per_row)
        out.scale_rows = g;
    else
        out.scale = reduced_grad_scale(reduction, g[0], divisor);
    return out;
}

// Per-row losses (reduction none) in the compute dtype, or the reduced value.
inline py::object reduced_result(const std::vector<double>& row_loss, DType dtype, Reduction reduction,
                                 double divisor) {
    if (reduction == Reduction::none) return per_row_array(row_loss, dtype);
    return py::float_(
        reduce_rows(row_loss.data(), static_cast<int64_t>(row_loss.size()), reduction, divisor));
}

// Runs `kernel` on `args` (an Args with row_loss, grad, grad_f32,
// grad_scale, grad_scale_rows and threads, which this sets: the losses into
// a vector of its own, the gradient as `gt` says) with the GIL released, and
// returns the per-row losses or their reduction (reduced_result).
template <class Args>
py::object run_loss_kernel(void (*kernel)(const Args&), Args& args, const GradTarget& gt, DType dtype,
                           Reduction reduction, double divisor) {
    std::vector<double> row_loss(static_cast<size_t>(args.rows), 0.0);
    args.row_loss = row_loss.data();
    args.grad = gt.data;
    args.grad_f32 = gt.f32;
    args.grad_scale = gt.scale;
    args.grad_scale_rows = gt.scale_rows;
    {
        py::gil_scoped_release release;
        args.threads = num_threads();
        kernel(args);
    }
    return reduced_result(row_loss, dtype, reduction, divisor);
}

}  // namespace pyce
