// Checks the bindings make on arrays before handing raw pointers to kernels.
// They protect memory (dtype, layout, shape); friendly validation of user
// input happens earlier, in pyce/_validation.py.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <string>
#include <vector>

#include "runtime/dispatch.hpp"
#include "runtime/reduce.hpp"

namespace pyce {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

inline DType dtype_of(const py::array& a, const char* name) {
    const py::dtype d = a.dtype();
    if (d.is(py::dtype::of<float>())) return DType::f32;
    if (d.is(py::dtype::of<double>())) return DType::f64;
    if (d.kind() == 'f' && d.itemsize() == 2) return DType::f16;
    // ml_dtypes.bfloat16 is a user-defined NumPy dtype: its type number is
    // only known once seen. Its name is a Python call (~1 us, a tenth of a
    // small call), so it is read once and the number kept.
    static std::atomic<int> bf16_num{-1};
    if (d.num() == bf16_num.load(std::memory_order_relaxed)) return DType::bf16;
    const std::string dtype_name = py::str(d).cast<std::string>();
    if (dtype_name == "bfloat16" && d.itemsize() == 2) {
        bf16_num.store(d.num(), std::memory_order_relaxed);
        return DType::bf16;
    }
    throw py::type_error(std::string(name) + " must be float32, float64, float16 or bfloat16, got " +
                         dtype_name);
}

inline bool is_16bit(DType d) { return d == DType::bf16 || d == DType::f16; }

// The NumPy dtype results of reductions come out in: float64 for float64,
// float32 otherwise (16-bit inputs compute in float32).
inline py::dtype compute_dtype(DType d) {
    return d == DType::f64 ? py::dtype::of<double>() : py::dtype::of<float>();
}

// A C-contiguous 2-D array of the given dtype (the kernels' layout).
inline void require_rows(const py::array& a, const char* name, DType dtype, py::ssize_t rows = -1,
                         py::ssize_t cols = -1) {
    if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D, got shape " + shape_str(a));
    if (dtype_of(a, name) != dtype) throw py::type_error(std::string(name) + " has the wrong dtype");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    if ((rows >= 0 && a.shape(0) != rows) || (cols >= 0 && a.shape(1) != cols))
        throw py::value_error(std::string(name) + " has shape " + shape_str(a) + ", expected (" +
                              std::to_string(rows) + ", " + std::to_string(cols) + ")");
}

// A C-contiguous (outer, C, inner) array: classes along the middle axis
// (kernels/strided_classes.cpp); -1 leaves a length free.
inline void require_strided(const py::array& a, const char* name, DType dtype, py::ssize_t outer = -1,
                            py::ssize_t classes = -1, py::ssize_t inner = -1) {
    if (a.ndim() != 3) throw py::value_error(std::string(name) + " must be 3-D, got shape " + shape_str(a));
    if (dtype_of(a, name) != dtype) throw py::type_error(std::string(name) + " has the wrong dtype");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
    if ((outer >= 0 && a.shape(0) != outer) || (classes >= 0 && a.shape(1) != classes) ||
        (inner >= 0 && a.shape(2) != inner))
        throw py::value_error(std::string(name) + " has shape " + shape_str(a) + ", expected (" +
                              std::to_string(outer) + ", " + std::to_string(classes) + ", " +
                              std::to_string(inner) + ")");
}

// Logits as the row kernels take them: C-contiguous (rows, C), or (outer, C,
// inner) with the classes in the middle (run tile by tile,
// kernels/strided_tiles.hpp). `rows` counts positions (outer x inner) in C
// order, as targets and per-row outputs do.
struct ClassLayout {
    int64_t rows = 0, cols = 0, inner = 1;
};

inline ClassLayout class_layout(const py::array& a, const char* name, DType dtype) {
    if (a.ndim() == 3) {
        require_strided(a, name, dtype);
        return {a.shape(0) * a.shape(2), a.shape(1), a.shape(2)};
    }
    if (a.ndim() != 2)
        throw py::value_error(std::string(name) +
                              " must be 2-D (rows, C) or 3-D (outer, C, inner), got shape " + shape_str(a));
    require_rows(a, name, dtype);
    return {a.shape(0), a.shape(1), 1};
}

// An array of `like`'s shape (2-D or 3-D), C-contiguous, of the given dtype.
inline void require_like(const py::array& a, const char* name, DType dtype, const py::array& like) {
    if (like.ndim() == 3)
        require_strided(a, name, dtype, like.shape(0), like.shape(1), like.shape(2));
    else
        require_rows(a, name, dtype, like.shape(0), like.shape(1));
}

inline void require_vector(const py::array& a, const char* name, py::ssize_t n) {
    if (a.ndim() != 1 || a.shape(0) != n || !(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + " must be a contiguous vector of length " +
                              std::to_string(n) + ", got shape " + shape_str(a));
}

inline void require_writeable(const py::array& a, const char* name) {
    if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
}

// The IndexError for a target find_bad_target found (call with the GIL held).
inline void raise_if_bad_target(const BadTarget& bad, int64_t cols, int64_t ignore_index) {
    if (bad.position < 0) return;
    throw py::index_error("target " + std::to_string(bad.value) + " at position " +
                          std::to_string(bad.position) + " (flattened) is out of range for " +
                          std::to_string(cols) + " classes: expected 0 <= target < " + std::to_string(cols) +
                          " or ignore_index (" + std::to_string(ignore_index) + ")");
}

// Per-row values (losses, log-sum-exps) as a NumPy vector of the compute dtype.
inline py::array per_row_array(const std::vector<double>& values, DType dtype) {
    const py::ssize_t n = static_cast<py::ssize_t>(values.size());
    if (dtype == DType::f64) {
        py::array_t<double> out(n);
        for (py::ssize_t i = 0; i < n; ++i) out.mutable_data()[i] = values[i];
        return std::move(out);
    }
    py::array_t<float> out(n);
    for (py::ssize_t i = 0; i < n; ++i) out.mutable_data()[i] = static_cast<float>(values[i]);
    return std::move(out);
}

// The reduction code from Python (pyce/_validation.py's REDUCTIONS, and 3
// for the KL divergence's batchmean); out of range would misread grad_output.
inline Reduction reduction_of(int code, bool allow_batchmean = false) {
    if (code < 0 || code > (allow_batchmean ? 3 : 2))
        throw py::value_error("reduction code " + std::to_string(code) + " is out of range");
    return static_cast<Reduction>(code);
}

}  // namespace pyce
