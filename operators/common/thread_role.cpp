#include "common/thread_role.h"

#include <pthread.h>

#include <stdexcept>
#include <string>

namespace distgrad {

namespace {

thread_local ThreadRole t_role = ThreadRole::kUser;

}  // namespace

const char* threadRoleName(ThreadRole role) {
  switch (role) {
    case ThreadRole::kUser:
      return "user";
    case ThreadRole::kPool:
      return "pool";
    case ThreadRole::kCallback:
      return "callback pool";
    case ThreadRole::kReader:
      return "reader";
    case ThreadRole::kAcceptor:
      return "acceptor";
  }
  return "unknown";
}

ThreadRole currentThreadRole() {
  return t_role;
}

void setCurrentThreadRole(ThreadRole role) {
  t_role = role;
  // Named for top, perf and /proc/<pid>/task/*/comm (at most 15 characters).
  const char* name = nullptr;
  switch (role) {
    case ThreadRole::kPool:
      name = "distgrad-pool";
      break;
    case ThreadRole::kCallback:
      name = "distgrad-cb";
      break;
    case ThreadRole::kReader:
      name = "distgrad-reader";
      break;
    case ThreadRole::kAcceptor:
      name = "distgrad-accept";
      break;
    case ThreadRole::kUser:
      break;
  }
  if (name != nullptr) {
    pthread_setname_np(pthread_self(), name);
  }
}

void checkNotCalledFrom(std::initializer_list<ThreadRole> roles, const char* what) {
  for (ThreadRole role : roles) {
    if (t_role == role) {
      throw std::logic_error(std::string(what) + " must not be called from a " +
                             threadRoleName(role) + " thread");
    }
  }
}

void checkCalledFrom(ThreadRole role, const char* what) {
  if (t_role != role) {
    throw std::logic_error(std::string(what) + " must run on a " + threadRoleName(role) +
                           " thread, not a " + threadRoleName(t_role) + " thread");
  }
}

}  // namespace distgrad
