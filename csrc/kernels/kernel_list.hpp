// The kernel sources of csrc/kernels/, one entry per file: X(topic) stands for
// register_<topic>_kernels(KernelTable&), defined in kernels/<topic>.cpp for
// every ISA (see registration.hpp). runtime/dispatch.cpp declares and calls
// each one for each ISA from this list. A new kernel source adds its topic here.
#pragma once

#define PYCE_KERNEL_TOPICS(X) \
    X(softmax)                \
    X(cross_entropy)          \
    X(evaluate)               \
    X(divergence)             \
    X(focal)                  \
    X(vocab_shard)            \
    X(strided_classes)        \
    X(exp)
