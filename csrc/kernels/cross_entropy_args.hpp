// The cross-entropy driver around the ISA kernels (runtime/cross_entropy_driver.cpp):
// the reduction's divisor, per-row gradient scales and the final reduction.
// No Python here: bindings/cross_entropy.cpp fills a CrossEntropyArgs.
#pragma once

#include <vector>

#include "runtime/dispatch.hpp"
#include "runtime/reduce.hpp"

namespace pyce {

struct CrossEntropyResult {
    double total = 0;              // the reduced loss (mean / sum)
    std::vector<double> row_loss;  // every row's loss (reduction none)
    std::vector<double> row_lse;   // every row's log-sum-exp, if asked for
};

// Runs the kernel on `args` (its outputs, scales and thread count are set
// here). The caller has checked the targets with find_bad_target.
CrossEntropyResult cross_entropy(CrossEntropyArgs& args);

}  // namespace pyce
