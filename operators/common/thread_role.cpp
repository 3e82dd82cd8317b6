#include "common/thread_role.h"

#include <ATen/Parallel.h>

#include <pthread.h>

#include <stdexcept>
#include <string>

namespace distgrad {

namespace {

thread_local ThreadRole t_role = ThreadRole::kUser;
thread_local bool t_role_borrowed = false;

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
  // OpenMP keeps its thread count per thread, and a new thread starts with
  // the default (one per core), not what torch.set_num_threads chose:
  // torch's own threads adopt torch's setting when they start, and so do
  // the runtime's, which run operators (requests, backward passes, users'
  // callbacks). Without it a worker that asked for one thread ran a
  // request's matrix products with an OpenMP team spinning on every core.
  at::init_num_threads();
  if (const char* name = namesOf(role).thread_name) {
    pthread_setname_np(pthread_self(), name);
  }
}

ThreadRoleScope::ThreadRoleScope(ThreadRole role)
    : previous_(t_role), previous_borrowed_(t_role_borrowed) {
  t_role = role;
  t_role_borrowed = true;
}

ThreadRoleScope::~ThreadRoleScope() {
  t_role = previous_;
  t_role_borrowed = previous_borrowed_;
}

bool threadRoleIsBorrowed() {
  return t_role_borrowed;
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
