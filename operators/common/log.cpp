#include "common/log.h"

#include <cstdio>

namespace distgrad {

void logWarning(const std::string& who, const std::string& message) {
  std::fprintf(stderr, "[distgrad %s] %s\n", who.c_str(), message.c_str());
  std::fflush(stderr);
}

}  // namespace distgrad
