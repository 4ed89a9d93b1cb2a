// The binding files of csrc/bindings/, one entry per file: X(topic) stands for
// register_<topic>(pybind11::module_&), defined in bindings/<topic>.cpp.
// register.hpp declares them and module.cpp calls them, both from this list;
// a new binding file adds its topic here.
#pragma once

#define PYCE_BINDING_TOPICS(X)             \
    X(runtime)                             \
    X(softmax)                             \
    X(cross_entropy)                       \
    X(stream)                              \
    X(metrics)     /* evaluate, entropy */ \
    X(divergence)  /* kl_divergence */     \
    X(focal)       /* focal_loss */        \
    X(cache)       /* empty, cache_info */ \
    X(vocab_shard) /* shard_stats, shard_grad */
