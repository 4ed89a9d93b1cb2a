// Arguments of the vocabulary-shard kernels (kernels/vocab_shard.cpp), the
// per-rank halves of a cross-entropy whose classes are split across
// processes (pyce.torch.distributed). A shard is `rows` x `cols` logits,
// the columns [vocab_start, vocab_start + cols) of the full vocabulary,
// C-contiguous; targets are global class ids (a target outside the shard
// is simply not read here).
#pragma once

#include <cstdint>

namespace pyce {

// One read of the shard gives, per row that is not ignored: the shard's
// log-sum-exp, the shift its exps were taken against (a value at most
// 64 below the shard's largest logit; 0 if the shard row is all -inf), the
// sum of coef * z (coef = weight, or 1: label smoothing) and the target's
// logit if this shard holds it (else 0). With softcap > 0 the logits are
// soft-capped first (z = c tanh(x / c)). Ignored rows are not read; their
// outputs are 0.
struct ShardStatsArgs {
    const void* logits = nullptr;  // rows x cols, dtype
    int64_t rows = 0;
    int64_t cols = 0;
    const int64_t* target = nullptr;  // rows global class ids, or ignore_index
    int64_t vocab_start = 0;
    int64_t ignore_index = -100;
    const void* weight = nullptr;    // cols, compute type (float32 for 16-bit), or null
    bool want_dot = false;           // gather sum coef * z
    double softcap = 0.0;            // > 0: soft-cap first
    double* lse = nullptr;           // rows, out
    double* shift = nullptr;         // rows, out
    double* dot = nullptr;           // rows, out (want_dot)
    double* target_logit = nullptr;  // rows, out
    int threads = 1;
};

// One read of the shard and one write of its gradient: for every element
// of a row that is not ignored,
//     g_j = (mul * exp(z_j - shift) - sub * coef_j - at_target * [j == t]) * dz/dx
// (coef = weight, or 1; dz/dx = 1 - (z/c)^2 with a soft cap, else 1). The
// caller folds the global log-sum-exp, the options and the upstream
// gradient into the per-row mul, sub and at_target (float64). Ignored rows
// are zero. `grad` has the logits' dtype and may be the logits themselves.
struct ShardGradArgs {
    const void* logits = nullptr;  // rows x cols, dtype
    int64_t rows = 0;
    int64_t cols = 0;
    const int64_t* target = nullptr;  // rows global class ids, or ignore_index
    int64_t vocab_start = 0;
    int64_t ignore_index = -100;
    const void* weight = nullptr;       // cols, compute type, or null (coef = 1)
    const double* shift = nullptr;      // rows (from ShardStatsArgs)
    const double* mul = nullptr;        // rows
    const double* sub = nullptr;        // rows
    const double* at_target = nullptr;  // rows
    double softcap = 0.0;
    void* grad = nullptr;  // rows x cols, dtype
    int threads = 1;
};

}  // namespace pyce
