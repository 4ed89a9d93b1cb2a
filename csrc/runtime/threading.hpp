// The number of threads the kernels use (pyce.set_num_threads / PYCE_NUM_THREADS).
#pragma once

namespace pyce {

bool have_openmp();
int num_threads();
void set_num_threads(int n);  // capped to [1, max_threads()]; without OpenMP only 1 thread ever runs
// The most threads pyce uses: 4 per processor, at least 64. Thread creation
// that fails ends the process in libgomp, so absurd counts are refused early.
// 1 in a fork()ed child (see in_forked_child).
int max_threads();
// Whether this process is a fork()ed child of one that loaded pyce: it then
// runs every kernel on one thread (OpenMP's threads do not survive fork).
bool in_forked_child();

// Whether calls come in a burst, so OpenMP's workers are (or will stay)
// awake. After a parallel region they spin for a while before they sleep
// (pyce sets a short spin at import), and waking a sleeping worker costs tens
// of microseconds: more than a mid-sized call gains from a second thread. So
// such calls go parallel only when the previous kernel call ended less than
// the spin window ago: in a tight loop the first parallel call wakes the
// workers and the next ones find them spinning; an isolated call stays on
// one thread.
void note_kernel_end();
bool in_burst();
void set_spin_window_us(int us);  // 0: never assume the workers are awake

}  // namespace pyce
