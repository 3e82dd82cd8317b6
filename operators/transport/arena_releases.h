#pragma once

#include "transport/connection.h"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace distgrad::transport {

// Tells peers which regions of their arenas the tensors of this process no
// longer use. Tensors are freed on any thread, sometimes holding the GIL or
// inside a reader thread, so the notices are queued and sent in batches from
// a thread of this class.
class ArenaReleases {
 public:
  ArenaReleases();
  ~ArenaReleases();
  ArenaReleases(const ArenaReleases&) = delete;
  ArenaReleases& operator=(const ArenaReleases&) = delete;

  // A release function for regions received on conn: it never blocks, and
  // may outlive this object (it then does nothing).
  std::function<void(uint64_t)> sinkFor(const std::shared_ptr<Connection>& conn);

  // Sends what is queued and stops the thread. Idempotent.
  void close();

 private:
  struct Queue {
    std::mutex mu;  // guards pending and closed
    std::condition_variable wakeup;
    std::vector<std::pair<std::weak_ptr<Connection>, uint64_t>> pending;
    bool closed = false;
  };

  void loop();

  const std::shared_ptr<Queue> queue_;
  std::thread thread_;
};

}  // namespace distgrad::transport
