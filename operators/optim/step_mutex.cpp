#include "optim/step_mutex.h"

namespace distgrad::optim {

std::timed_mutex& stepMutex() {
  static std::timed_mutex mu;
  return mu;
}

}  // namespace distgrad::optim
