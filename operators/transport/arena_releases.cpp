#include "transport/arena_releases.h"

#include "transport/handshake.h"

#include <map>

namespace distgrad::transport {

ArenaReleases::ArenaReleases() : queue_(std::make_shared<Queue>()) {
  thread_ = std::thread([this] { loop(); });
}

ArenaReleases::~ArenaReleases() {
  close();
}

std::function<void(uint64_t)> ArenaReleases::sinkFor(const std::shared_ptr<Connection>& conn) {
  return [queue = queue_, weak = std::weak_ptr<Connection>(conn)](uint64_t offset) {
    std::lock_guard<std::mutex> lock(queue->mu);
    if (!queue->closed) {
      queue->pending.emplace_back(weak, offset);
      queue->wakeup.notify_one();
    }
  };
}

void ArenaReleases::close() {
  {
    std::lock_guard<std::mutex> lock(queue_->mu);
    if (queue_->closed) {
      return;
    }
    queue_->closed = true;
  }
  queue_->wakeup.notify_one();
  thread_.join();
}

void ArenaReleases::loop() {
  std::unique_lock<std::mutex> lock(queue_->mu);
  while (true) {
    queue_->wakeup.wait(lock, [this] { return queue_->closed || !queue_->pending.empty(); });
    if (queue_->pending.empty()) {
      return;  // closed, nothing left
    }
    auto batch = std::move(queue_->pending);
    queue_->pending.clear();
    lock.unlock();
    std::map<std::shared_ptr<Connection>, std::vector<uint64_t>> by_connection;
    for (auto& [weak, offset] : batch) {
      if (auto conn = weak.lock()) {
        by_connection[conn].push_back(offset);
      }
    }
    for (auto& [conn, offsets] : by_connection) {
      try {
        conn->send(encodeArenaRelease(offsets));
      } catch (const std::exception&) {
        // The peer is gone; its arena no longer matters.
      }
    }
    lock.lock();
  }
}

}  // namespace distgrad::transport
