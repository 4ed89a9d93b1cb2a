// The number of threads the kernels use (pyce.set_num_threads / PYCE_NUM_THREADS).
#pragma once

namespace pyce {

bool have_openmp();
int num_threads();
void set_num_threads(int n);  // n >= 1; without OpenMP only 1 thread ever runs

}  // namespace pyce
