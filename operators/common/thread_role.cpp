#include "common/thread_role.h"

#include <pthread.h>

#include <stdexcept>
#include <string>

namespace distgrad {

namespace {

thread_local ThreadRole t_role = ThreadRole::kUser;

// What errors call a role, and the OS name of a thread that has it (for
// top, perf and /proc/<pid>/task/*/comm: at most 15 characters; none for
// users' threads, which keep theirs).
struct RoleNames {
  const char* text;
  const char* thread_name;
};

RoleNames namesOf(ThreadRole role) {
  switch (role) {
    case ThreadRole::kUser:
      return {"user", nullptr};
    case ThreadRole::kPool:
      return {"pool", "distgrad-pool"};
    case ThreadRole::kCallback:
      return {"callback pool", "distgrad-cb"};
    case ThreadRole::kReader:
      return {"reader", "distgrad-reader"};
    case ThreadRole::kAcceptor:
      return {"acceptor", "distgrad-accept"};
  }
  return {"unknown", nullptr};
}

}  // namespace

const char* threadRoleName(ThreadRole role) {
  return namesOf(role).text;
}

ThreadRole currentThreadRole() {
  return t_role;
}

void setCurrentThreadRole(ThreadRole role) {
  t_role = role;
  if (const char* name = namesOf(role).thread_name) {
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
