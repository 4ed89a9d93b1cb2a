// pyce._core.shard_stats / shard_grad: the per-rank kernels of a
// vocabulary-parallel cross-entropy (kernels/vocab_shard_args.hpp). The
// collectives and the options' arithmetic live in pyce/_vocab_shard.py.
#include <cmath>
#include <string>

#include "bindings/register.hpp"
#include "bindings/arrays.hpp"
#include "kernels/vocab_shard_args.hpp"
#include "runtime/threading.hpp"

namespace pyce {

namespace {

// The checks both kernels share: (rows, cols) logits, an int64 target per
// row, an optional weight per column in the compute type, a finite cap.
struct ShardInputs {
    DType dtype;
    int64_t rows, cols;
    py::array target, weight;
};

ShardInputs check_shard_inputs(const py::array& logits, const py::object& target, const py::object& weight,
                               double softcap) {
    ShardInputs in;
    in.dtype = dtype_of(logits, "logits");
    require_rows(logits, "logits", in.dtype);
    in.rows = logits.shape(0);
    in.cols = logits.shape(1);
    in.target = py::array::ensure(target);
    if (!in.target || !in.target.dtype().is(py::dtype::of<int64_t>()))
        throw py::type_error("target must be an int64 array");
    require_vector(in.target, "target", in.rows);
    if (!weight.is_none()) {
        in.weight = py::array::ensure(weight);
        if (!in.weight || !in.weight.dtype().is(compute_dtype(in.dtype)))
            throw py::type_error("weight must be an array of the logits' compute dtype");
        require_vector(in.weight, "weight", in.cols);
    }
    if (!(softcap >= 0.0 && std::isfinite(softcap)))
        throw py::value_error("softcap must be a finite number > 0 (or 0 for none), got " +
                              std::to_string(softcap));
    return in;
}

const double* row_vector(const py::array& a, const char* name, int64_t rows) {
    if (!a.dtype().is(py::dtype::of<double>())) throw py::type_error(std::string(name) + " must be float64");
    require_vector(a, name, rows);
    return static_cast<const double*>(a.data());
}

// (lse, shift, dot or None, target_logit): float64 vectors of length rows.
py::tuple shard_stats_binding(const py::array& logits, const py::object& target, int64_t vocab_start,
                              int64_t ignore_index, const py::object& weight, bool want_dot, double softcap) {
    const ShardInputs in = check_shard_inputs(logits, target, weight, softcap);
    py::array_t<double> lse(in.rows), shift(in.rows), target_logit(in.rows);
    py::object dot = py::none();
    ShardStatsArgs args;
    if (want_dot) {
        py::array_t<double> d(in.rows);
        args.dot = d.mutable_data();
        dot = d;
    }
    args.logits = logits.data();
    args.rows = in.rows;
    args.cols = in.cols;
    args.target = static_cast<const int64_t*>(in.target.data());
    args.vocab_start = vocab_start;
    args.ignore_index = ignore_index;
    args.weight = weight.is_none() ? nullptr : in.weight.data();
    args.want_dot = want_dot;
    args.softcap = softcap;
    args.lse = lse.mutable_data();
    args.shift = shift.mutable_data();
    args.target_logit = target_logit.mutable_data();
    if (in.cols > 0) {
        py::gil_scoped_release release;
        args.threads = num_threads();
        kernels().shard_stats[static_cast<int>(in.dtype)](args);
    } else {
        // An empty shard: nothing to sum (a rank may hold no columns).
        for (int64_t r = 0; r < in.rows; ++r) {
            args.lse[r] = -INFINITY;
            args.shift[r] = args.target_logit[r] = 0.0;
            if (args.dot) args.dot[r] = 0.0;
        }
    }
    return py::make_tuple(lse, shift, dot, target_logit);
}

void shard_grad_binding(const py::array& logits, const py::object& target, int64_t vocab_start,
                        int64_t ignore_index, const py::object& weight, const py::array& shift,
                        const py::array& mul, const py::object& sub, const py::array& at_target,
                        double softcap, py::array grad) {
    const ShardInputs in = check_shard_inputs(logits, target, weight, softcap);
    require_rows(grad, "grad", in.dtype, in.rows, in.cols);
    require_writeable(grad, "grad");
    ShardGradArgs args;
    args.logits = logits.data();
    args.rows = in.rows;
    args.cols = in.cols;
    args.target = static_cast<const int64_t*>(in.target.data());
    args.vocab_start = vocab_start;
    args.ignore_index = ignore_index;
    args.weight = weight.is_none() ? nullptr : in.weight.data();
    args.shift = row_vector(shift, "shift", in.rows);
    args.mul = row_vector(mul, "mul", in.rows);
    py::array sub_arr;
    if (!sub.is_none()) {
        sub_arr = py::array::ensure(sub);
        if (!sub_arr) throw py::type_error("sub must be an array");
        args.sub = row_vector(sub_arr, "sub", in.rows);
    }
    args.at_target = row_vector(at_target, "at_target", in.rows);
    args.softcap = softcap;
    args.grad = grad.mutable_data();
    if (in.cols == 0) return;
    py::gil_scoped_release release;
    args.threads = num_threads();
    kernels().shard_grad[static_cast<int>(in.dtype)](args);
}

}  // namespace

void register_vocab_shard(py::module_& m) {
    m.def("shard_stats", &shard_stats_binding, py::arg("logits"), py::arg("target"), py::arg("vocab_start"),
          py::arg("ignore_index"), py::arg("weight"), py::arg("want_dot"), py::arg("softcap"),
          "Per-row (lse, shift, dot or None, target_logit) of a vocabulary shard, from one read of it.");
    m.def("shard_grad", &shard_grad_binding, py::arg("logits"), py::arg("target"), py::arg("vocab_start"),
          py::arg("ignore_index"), py::arg("weight"), py::arg("shift"), py::arg("mul"), py::arg("sub"),
          py::arg("at_target"), py::arg("softcap"), py::arg("grad"),
          "Writes a vocabulary shard's gradient (mul e^(z - shift) - sub coef - at_target [j == t]) dz/dx "
          "into grad, from one read of the logits.");
}

}  // namespace pyce
