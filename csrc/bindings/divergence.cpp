// pyce._core.kl_divergence: T^2 KL(softmax(teacher/T) || softmax(student/T))
// over (rows, C) logits, or (outer, C, inner) ones with the classes in the
// middle, optionally with its gradient w.r.t. the student.
#include <cmath>
#include <string>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "bindings/grad_args.hpp"
#include "kernels/divergence_args.hpp"

namespace pyce {

namespace {

// reduction: 0 none (per row), 1 mean (over rows x C), 2 sum, 3 batchmean
// (over rows). The temperature was validated in Python.
py::object kl_binding(const py::array& student, const py::array& teacher, double temperature,
                      int reduction_code, const py::object& grad_output, const py::object& grad) {
    const DType dtype = dtype_of(student, "student_logits");
    const ClassLayout layout = class_layout(student, "student_logits", dtype);
    const int64_t rows = layout.rows, cols = layout.cols;
    require_like(teacher, "teacher_logits", dtype, student);
    if (cols < 1) throw py::value_error("logits must have at least one class");
    const Reduction reduction = reduction_of(reduction_code, /*allow_batchmean=*/true);
    MeanOver over;
    over.rows = rows;
    over.per_row = cols;
    const double divisor = divisor_of(reduction, over);
    GradTarget gt = check_grad_target(grad_output, grad, dtype, student, rows, reduction, divisor);
    KLDivArgs args;
    args.student = student.data();
    args.teacher = teacher.data();
    args.rows = rows;
    args.cols = cols;
    args.inner = layout.inner;
    args.temperature = temperature;
    return run_loss_kernel(kernels().kl_divergence[static_cast<int>(dtype)], args, gt, dtype, reduction,
                           divisor);
}

}  // namespace

void register_divergence(py::module_& m) {
    m.def("kl_divergence", &kl_binding, py::arg("student"), py::arg("teacher"), py::arg("temperature"),
          py::arg("reduction"), py::arg("grad_output"), py::arg("grad"),
          "T^2 KL(softmax(teacher/T) || softmax(student/T)) of C-contiguous (rows, C) logits (or (outer, C, "
          "inner) ones, classes in the middle): per row "
          "(reduction 0), or their mean over elements (1), sum (2) or mean over rows (3, batchmean); "
          "writes T (q - p) * grad_output (divided as the reduction divides) into `grad` when grad_output "
          "is given.");
}

}  // namespace pyce
