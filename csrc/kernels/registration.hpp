// How a kernel source registers its entry points into its ISA's KernelTable.
//
// Every kernels/<topic>.cpp defines, inside namespace pyce::CPU_CAPABILITY,
//     void register_<topic>_kernels(KernelTable& table);
// and lists <topic> in kernel_list.hpp, which is the only other place that
// names it. A kernel that exists for every logit dtype fills its slot with one
// line:
//     PYCE_REGISTER_EVERY_DTYPE(table.focal_loss, run);   // run<float>, run<double>, ...
#pragma once

#include "kernels/half_types.hpp"
#include "runtime/dispatch.hpp"

// table_slot[d] = entry<T> for the four logit dtypes (float32, float64,
// bfloat16, float16). `entry` is a function template (or a variable template
// holding a function pointer) of the element type.
#define PYCE_REGISTER_EVERY_DTYPE(table_slot, entry)                        \
    do {                                                                    \
        (table_slot)[static_cast<int>(::pyce::DType::f32)] = entry<float>;  \
        (table_slot)[static_cast<int>(::pyce::DType::f64)] = entry<double>; \
        (table_slot)[static_cast<int>(::pyce::DType::bf16)] = entry<bf16>;  \
        (table_slot)[static_cast<int>(::pyce::DType::f16)] = entry<f16>;    \
    } while (0)
