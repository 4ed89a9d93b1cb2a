// The register_<topic>(module) functions of csrc/bindings/<topic>.cpp, each of
// which adds one group of functions to the _core module (list: binding_list.hpp).
#pragma once

#include <pybind11/pybind11.h>

#include "bindings/binding_list.hpp"

namespace pyce {

#define PYCE_DECLARE_BINDING(topic) void register_##topic(pybind11::module_& m);
PYCE_BINDING_TOPICS(PYCE_DECLARE_BINDING)
#undef PYCE_DECLARE_BINDING

}  // namespace pyce
