// Each bindings/*.cpp registers one group of functions on the _core module.
#pragma once

#include <pybind11/pybind11.h>

namespace pyce {

void register_runtime(pybind11::module_& m);
void register_softmax(pybind11::module_& m);
void register_cross_entropy(pybind11::module_& m);
void register_stream(pybind11::module_& m);
void register_metrics(pybind11::module_& m);     // evaluate, entropy
void register_divergence(pybind11::module_& m);  // kl_divergence
void register_focal(pybind11::module_& m);       // focal_loss
void register_cache(pybind11::module_& m);       // empty, cache_info

}  // namespace pyce
