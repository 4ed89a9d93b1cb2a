// The table of kernel entry points, one per ISA, and the choice between them.
//
// Every kernel source in kernels/ is compiled once per ISA (avx512, avx2,
// baseline) into its own namespace, and registers its functions into that
// ISA's KernelTable. At import the best table this CPU supports is chosen
// (or the one PYCE_CPU_CAPABILITY asks for); bindings call through it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/reduce.hpp"

namespace pyce {

// Logit dtypes. 16-bit logits compute in float32; their reductions
// (logsumexp, losses) come out in float32.
enum class DType : int { f32 = 0, f64 = 1, bf16 = 2, f16 = 3 };
constexpr int kNumDTypes = 4;

// One cross-entropy problem laid out as `rows` x `cols` (classes last,
// C-contiguous). Exactly one of `target` / `soft_target` is set. The binding
// fills in the problem (and dtype, reduction, grad_output, want_lse); the
// driver (runtime/cross_entropy_driver.cpp) the outputs, the gradient's
// scales and the thread count, then calls the kernel.
struct CrossEntropyArgs {
    const void* logits = nullptr;  // rows x cols, dtype
    int64_t rows = 0;
    int64_t cols = 0;
    const int64_t* target = nullptr;    // rows class indices (already bounds-checked)
    const void* soft_target = nullptr;  // rows x cols probabilities, dtype
    const void* weight = nullptr;  // cols class weights in the compute type (float32 for 16-bit), or null
    int64_t ignore_index = -100;
    double label_smoothing = 0.0;
    double z_loss = 0.0;   // adds z_loss * lse^2 to every row that is not ignored
    double softcap = 0.0;  // > 0: logits pass through softcap * tanh(z / softcap) first
    // The gradient is written when `grad` is set (it may alias `logits`):
    // row i is scaled by grad_scale_rows[i] if given, else by grad_scale.
    void* grad = nullptr;
    bool grad_f32 = false;  // 16-bit logits: the gradient is float32, not 16-bit
    double grad_scale = 1.0;
    const double* grad_scale_rows = nullptr;
    double* row_loss = nullptr;  // rows, out: each row's (unreduced) loss
    double* row_lse = nullptr;   // rows, out if set: each row's log-sum-exp (ignored rows too)
    int threads = 1;
    // For the driver, not read by the kernels:
    DType dtype = DType::f32;
    Reduction reduction = Reduction::mean;
    const double* grad_output = nullptr;  // rows (none) or 1 value; null: no gradient
    bool want_lse = false;                // also return every row's log-sum-exp
    // > 1: the class axis is not the innermost. The logits (and gradient) are
    // (rows / inner, cols, inner), C-contiguous: a position's classes lie
    // `inner` elements apart; `rows` counts positions in C order, as the
    // target does (kernels/strided_classes.cpp; hard targets, no soft cap).
    int64_t inner = 1;
};

// Row-wise functions over a rows x cols C-contiguous array. logsumexp writes
// `rows` values of the compute type (float32 for 16-bit input); softmax and
// log_softmax write rows x cols of the input dtype.
using RowsToVectorFn = void (*)(const void* x, int64_t rows, int64_t cols, void* out, int threads);
using RowsToRowsFn = void (*)(const void* x, int64_t rows, int64_t cols, void* out, int threads);
using CrossEntropyFn = void (*)(const CrossEntropyArgs& args);
// The same over (outer, C, inner) C-contiguous arrays, classes along the
// middle axis: logsumexp writes outer x inner values of the compute type,
// softmax and log_softmax outer x C x inner of the input dtype.
using StridedFn = void (*)(const void* x, int64_t outer, int64_t C, int64_t inner, void* out, int threads);
using ElementwiseFn = void (*)(const void* x, int64_t n, void* out);
// Evaluation metrics, divergences and focal loss (argument structs in
// kernels/evaluate_args.hpp, divergence_args.hpp and focal_args.hpp).
struct EvaluateArgs;
struct KLDivArgs;
struct FocalArgs;
// The vocabulary-shard kernels (vocab_shard_args.hpp).
struct ShardStatsArgs;
struct ShardGradArgs;
using EvaluateFn = void (*)(const EvaluateArgs& args);
using KLDivFn = void (*)(const KLDivArgs& args);
using FocalFn = void (*)(const FocalArgs& args);
using ShardStatsFn = void (*)(const ShardStatsArgs& args);
using ShardGradFn = void (*)(const ShardGradArgs& args);

struct KernelTable {
    const char* name = nullptr;
    RowsToVectorFn logsumexp[kNumDTypes] = {};
    RowsToRowsFn softmax[kNumDTypes] = {};
    RowsToRowsFn log_softmax[kNumDTypes] = {};
    CrossEntropyFn cross_entropy[kNumDTypes] = {};
    StridedFn logsumexp_strided[kNumDTypes] = {};  // kernels/strided_classes.cpp
    StridedFn softmax_strided[kNumDTypes] = {};
    StridedFn log_softmax_strided[kNumDTypes] = {};
    CrossEntropyFn cross_entropy_strided[kNumDTypes] = {};
    ElementwiseFn exp[kNumDTypes] = {};         // the kernels' exp (float32/float64), for accuracy tests
    ElementwiseFn exp_sweep[kNumDTypes] = {};   // the sweeps' exp (exp_bounded), for accuracy tests
    EvaluateFn evaluate[kNumDTypes] = {};       // kernels/evaluate.cpp (also entropy)
    KLDivFn kl_divergence[kNumDTypes] = {};     // kernels/divergence.cpp
    FocalFn focal_loss[kNumDTypes] = {};        // kernels/focal.cpp
    ShardStatsFn shard_stats[kNumDTypes] = {};  // kernels/vocab_shard.cpp
    ShardGradFn shard_grad[kNumDTypes] = {};    // kernels/vocab_shard.cpp
};

// The table in use.
const KernelTable& kernels();

// Names of the ISAs this CPU and this build can run, best first.
std::vector<std::string> supported_capabilities();

// Switch to the named ISA ("avx512", "avx2", "baseline"); throws
// std::invalid_argument naming the supported ones if it cannot run here.
void set_capability(const std::string& name);

// The PYCE_CPU_CAPABILITY value honoured at start-up, or "" if none.
std::string forced_capability();

}  // namespace pyce
