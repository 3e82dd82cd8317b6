#pragma once

#include <mutex>

namespace distgrad::optim {

// Serializes the optimizer steps of this worker, native and Python alike
// (distgrad.optim takes it around a torch.optim step): steps of several
// trainers over the same parameters apply one after the other, each with
// its own gradients, and an optimizer's state is never updated by two steps
// at once.
//
// Threading: any thread may take it; a reader thread only with try_lock
// (a Python step may hold it for long); a Python thread in slices it can
// interrupt (a timed mutex for that).
std::timed_mutex& stepMutex();

}  // namespace distgrad::optim
