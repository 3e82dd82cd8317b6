#include "optim/step_mutex.h"

namespace distgrad::optim {

std::mutex& stepMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace distgrad::optim
