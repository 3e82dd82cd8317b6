#pragma once

#include <cstdint>
#include <initializer_list>

namespace distgrad {

// What the calling thread is to the runtime. The runtime's own threads set
// their role when they start; every other thread is a user thread. The rules
// the headers state ("must not be called from a pool thread", "runs on the
// reader thread") are checked with it, always: a check is one thread_local
// read.
enum class ThreadRole : uint8_t {
  kUser = 0,
  kPool,      // rpc::ThreadPool: runs requests
  kCallback,  // rpc::CallbackPool: completes users' futures
  kReader,    // transport: reads one connection
  kAcceptor,  // transport: accepts and handshakes connections
};

const char* threadRoleName(ThreadRole role);

ThreadRole currentThreadRole();

// Gives the calling thread a role for its lifetime (a thread's main loop),
// a name saying it ("distgrad-pool", ...), and torch's intra-op thread
// count as set now (torch.set_num_threads), as torch's own threads take it.
void setCurrentThreadRole(ThreadRole role);

// Gives the calling thread role until the scope ends, without renaming it:
// a thread that does a runtime thread's work for a while (a thread waiting
// for a reply reads its connection as the reader would) is held to that
// thread's rules meanwhile.
class ThreadRoleScope {
 public:
  explicit ThreadRoleScope(ThreadRole role);
  ~ThreadRoleScope();
  ThreadRoleScope(const ThreadRoleScope&) = delete;
  ThreadRoleScope& operator=(const ThreadRoleScope&) = delete;

 private:
  const ThreadRole previous_;
  const bool previous_borrowed_;
};

// Whether the calling thread's role is borrowed for a ThreadRoleScope, not
// its own.
bool threadRoleIsBorrowed();

// Throws std::logic_error naming what and the role if the calling thread has
// one of roles (a rule of the runtime is broken: a deadlock would follow).
void checkNotCalledFrom(std::initializer_list<ThreadRole> roles, const char* what);
// Throws std::logic_error unless the calling thread has role.
void checkCalledFrom(ThreadRole role, const char* what);

}  // namespace distgrad
