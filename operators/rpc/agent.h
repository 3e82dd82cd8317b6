#pragma once

#include "rpc/call_hooks.h"
#include "rpc/callback_pool.h"
#include "rpc/request.h"
#include "rpc/response.h"
#include "rpc/rref_context.h"
#include "rpc/thread_pool.h"
#include "transport/transport.h"

#include <ATen/core/function.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/core/ivalue.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace distgrad::rpc {

struct WorkerInfo {
  std::string name;
  int rank = 0;
};

struct AgentOptions {
  std::string name;
  int rank = 0;
  int world_size = 1;
  int num_worker_threads = 4;
  double default_timeout_seconds = 60.0;
  transport::Authenticator auth;  // the job key, for the connection handshakes
  double handshake_timeout_seconds = 10.0;
  double frame_stall_timeout_seconds = 60.0;  // see transport::TransportOptions
  transport::FrameLimits limits;
  uint64_t shared_memory_bytes = 0;  // see transport::TransportOptions::arena_bytes
};

using FuturePtr = c10::intrusive_ptr<c10::ivalue::Future>;

// The RPC endpoint of this process: sends requests, runs the requests other
// workers send, and matches responses to the calls waiting for them.
//
// Threading: call() may be used from any thread. Requests are decoded on the
// transport's reader threads and run on a pool of num_worker_threads threads;
// a request that waits for something (a TorchScript function suspended in
// wait(), an internal handler waiting for peers) gives its thread back and
// resumes through future callbacks. A call's future is completed on the
// thread that observes the outcome (a reader thread, the timeout thread, or
// the thread reporting a lost peer), so callbacks on it must not block; code
// that hands results to users completes its own future from pool().
class Agent : public std::enable_shared_from_this<Agent> {
 public:
  // Runs an internal request (CallKind::kInternal); the returned future's
  // value becomes the response.
  using InternalHandler = std::function<FuturePtr(int src, std::vector<c10::IValue> args)>;
  // Where an internal handler runs: on a pool thread, or on the reader
  // thread that received the request (saving a thread hop; the handler must
  // then never block, and hand long work to pool()).
  enum class HandlerThread { kPool, kReader };
  // Finds a TorchScript function by qualified name ("__torch__.pkg.fn"), or
  // throws c10::ValueError. Called on pool threads.
  using ScriptFunctionResolver = std::function<torch::jit::Function*(const std::string&)>;
  // Runs a pickled Python call; args are (payload, tensors, rrefs). The
  // future completes with the pickled result (payload, tensors, rrefs), or
  // with the Python value itself if keep_value (for remote()), or with a
  // RemoteError describing the Python exception. It may complete later (a
  // function marked async_execution) and on any thread.
  using PythonCallRunner =
      std::function<FuturePtr(const std::vector<c10::IValue>& args, bool keep_value)>;
  // Converts Python objects held as values (of RRefs) to what travels
  // (payload, tensors, rrefs) and back; both take the GIL themselves.
  struct PythonValueCodec {
    std::function<c10::IValue(const c10::IValue& value)> serialize;
    std::function<c10::IValue(const c10::IValue& serialized)> deserialize;
  };

  // The process's agent, between init_rpc and shutdown.
  static std::shared_ptr<Agent> current();  // throws DistError if there is none
  static std::shared_ptr<Agent> currentOrNull();
  static void install(std::shared_ptr<Agent> agent);  // throws DistError if one is installed
  static void uninstall();

  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Starts accepting connections on host; returns the port.
  int listen(const std::string& host);
  // Learns every worker's name and address (indexed by rank).
  void start(std::vector<std::string> names, std::vector<std::string> addresses);

  int rank() const { return options_.rank; }
  // Valid after start().
  const WorkerInfo& self() const { return workers_.at(options_.rank); }
  const std::vector<WorkerInfo>& workers() const { return workers_; }
  // Throws c10::ValueError naming the unknown worker.
  const WorkerInfo& worker(const std::string& name) const;
  const WorkerInfo& worker(int rank) const;
  // The timeout of calls made with a negative timeout (0: none). Calls
  // already made keep theirs.
  double defaultTimeout() const { return default_timeout_seconds_; }
  void setDefaultTimeout(double seconds) { default_timeout_seconds_ = seconds; }

  // Sends request to dst. The future completes with the callee's result, or
  // with an error: RemoteError (raised by the callee), DistTimeoutError
  // (timeout_seconds < 0 means the default, 0 means none) or
  // DistNetworkError (dst lost or unreachable). Invalid arguments (unknown
  // rank, tensors that cannot travel) throw here instead.
  FuturePtr call(int dst, Request request, double timeout_seconds);

  // Sends an internal request whose outcome nobody waits for: no reply
  // travels back. Errors (dst lost, shut down) are ignored.
  void notify(int dst, Request request);
  // notify() if it needs no wait (see Transport::trySend): returns false,
  // having sent nothing, if it would have to connect or wait for the
  // connection; true once sent (or dst is gone: nothing to tell).
  bool tryNotify(int dst, const Request& request);

  // Before a thread blocks waiting for reply (of its last call() on this
  // agent, or of work that ends with the reply to it): reads the frames of
  // that call's connection itself while reply is not complete and a reader
  // would poll (Transport::pollFrames). Saves the wakeup of the thread by
  // the reader, which costs as much as a round trip. Returns with reply
  // complete or not; the wait that follows is unchanged.
  void pollForReply(const FuturePtr& reply);

  // remote(): sends request to dst, which keeps the result as the value of
  // the returned RRef. Returns at once; errors of the call surface when the
  // RRef is used. Invalid arguments throw here, as for call().
  RRefPtr remote(int dst, Request request, double timeout_seconds);

  // to_here(): the value of rref, a copy fetched from its owner (recorded by
  // the call hooks like any call), or the value itself on the owner. The
  // future's value is for decodeFetched(); it completes on any thread.
  FuturePtr fetch(const RRefPtr& rref, double timeout_seconds);
  // The value a completed fetch() carries (Python objects are deserialized,
  // taking the GIL).
  c10::IValue decodeFetched(const c10::IValue& fetched) const;
  // fetch(), waited for and decoded. Throws what the owner raised.
  c10::IValue toHere(const RRefPtr& rref, double timeout_seconds);

  RRefContext& rrefs() { return *rrefs_; }

  // Serves requests under state (the thread-local state of a thread that
  // runs a profiler: requests then appear in its trace, each as a span
  // naming its caller and target), or as usual when null. Any thread.
  void setServingState(std::shared_ptr<const at::ThreadLocalState> state);

  // Configuration by the layers above; set before requests arrive.
  void registerInternalHandler(const std::string& name, InternalHandler handler,
                               HandlerThread thread = HandlerThread::kPool);
  void setCallHooks(std::shared_ptr<CallHooks> hooks);
  void setScriptFunctionResolver(ScriptFunctionResolver resolver);
  void setPythonCallRunner(PythonCallRunner runner);
  void setPythonValueCodec(PythonValueCodec codec);
  // Called with the rank of every peer that is lost (after the calls
  // pending to it have failed), on the thread that noticed, with no lock
  // of the agent held.
  void addPeerLostListener(std::function<void(int rank)> listener);

  ThreadPool& pool() { return pool_; }
  // Where futures handed to users are completed (see CallbackPool).
  CallbackPool& callbacks() { return callbacks_; }

  // Blocks until no call from here is pending and no request is being served
  // here, or until timeout_seconds (0 = no limit) pass. Returns whether idle.
  bool waitUntilIdle(double timeout_seconds);

  // Says goodbye to peers, closes connections, fails pending calls with
  // DistNetworkError and joins every thread. Idempotent; must not be called
  // from a pool or reader thread.
  void shutdown();

  // Connects to rank unless connected, so that a worker that died is known
  // to be lost even if this worker never talked to it. Errors are ignored
  // (lostPeers() tells). Blocks up to the connection timeouts.
  void probe(int rank);

  // The peers this worker lost (died, unreachable, or shut down): rank and why.
  std::vector<std::pair<int, std::string>> lostPeers() const;

  uint64_t sharedMemoryInUse() const { return transport_->sharedMemoryInUse(); }
  uint64_t sharedMemoryLends() const { return transport_->sharedMemoryLends(); }
  size_t numPendingCalls() const;
  size_t numActiveRequests() const;

 private:
  struct PendingCall {
    FuturePtr future;
    int dst = 0;
    c10::IValue request_extension;
    double timeout_seconds = 0;
    std::multimap<std::chrono::steady_clock::time_point, uint64_t>::iterator deadline;
    bool has_deadline = false;
  };

  void onMessage(int src, transport::Message&& message);
  void onRequest(int src, transport::Message&& message);
  void onResponse(int src, transport::Message&& message);
  void onPeerLost(int rank, const std::string& reason);

  bool runsInline(const Request& request, const transport::Message& message) const;
  FuturePtr execute(int src, Request& request, const std::shared_ptr<CallScope>& scope);
  // "rpc#aten::add.Tensor(worker0 -> worker1)": a served request in a trace.
  std::string spanName(int src, const Request& request) const;
  // The value of an RRef owned here, as it travels to a fetching worker.
  FuturePtr fetchedValue(int64_t rref_id);
  void respond(int src, uint64_t id, Response response, const std::shared_ptr<CallScope>& scope);
  void requestFinished();

  // Removes and returns the pending call id, if it is still pending.
  std::optional<PendingCall> takePending(uint64_t id);
  // The frame of an internal request sent without a reply (notify,
  // tryNotify); checks dst and the request's kind.
  transport::Message notification(int dst, const Request& request) const;
  void timeoutLoop();

  const AgentOptions options_;
  std::vector<WorkerInfo> workers_;  // set by start(), then read-only
  std::unordered_map<std::string, int> rank_by_name_;  // likewise

  // Set before requests arrive, then read-only.
  std::shared_ptr<CallHooks> hooks_;
  std::unordered_map<std::string, std::pair<InternalHandler, HandlerThread>> internal_handlers_;
  ScriptFunctionResolver script_resolver_;
  PythonCallRunner python_runner_;
  PythonValueCodec python_codec_;
  std::vector<std::function<void(int)>> peer_lost_listeners_;
  // Read with std::atomic_load on every request; see setServingState.
  std::shared_ptr<const at::ThreadLocalState> serving_state_;

  ThreadPool pool_;
  CallbackPool callbacks_;
  torch::jit::TaskLauncher task_launcher_;
  const std::unique_ptr<RRefContext> rrefs_;
  std::unique_ptr<transport::Transport> transport_;

  // Call ids start at 1: id 0 marks a request sent with notify(), which
  // gets no reply.
  static constexpr uint64_t kNoReply = 0;
  std::atomic<uint64_t> next_call_id_{1};
  // guards pending_, deadlines_, timeout_thread_wakes_at_, lost_peers_, stopping_
  mutable std::mutex pending_mu_;
  std::unordered_map<uint64_t, PendingCall> pending_;
  // How many of pending_ go to each rank; written under pending_mu_, read
  // without it by the readers' poll gates.
  std::unique_ptr<std::atomic<int>[]> pending_by_peer_;
  // How many requests of each rank are being served (from onRequest to
  // respond); read by the readers' poll gates.
  std::unique_ptr<std::atomic<int>[]> serving_by_peer_;
  // Whether this worker's last exchange with each rank was answering one of
  // its requests (set by respond, cleared by a response from it); read by
  // the readers' poll gates.
  std::unique_ptr<std::atomic<bool>[]> answered_last_;
  std::multimap<std::chrono::steady_clock::time_point, uint64_t> deadlines_;
  std::unordered_map<int, std::string> lost_peers_;
  bool stopping_ = false;
  // When the timeout thread wakes up by itself next: only an earlier deadline
  // needs to wake it (a call's deadline is usually the latest, and waking
  // it for every call cost a context switch per call).
  std::chrono::steady_clock::time_point timeout_thread_wakes_at_ =
      std::chrono::steady_clock::time_point::max();
  std::condition_variable timeout_cv_;  // wakes the timeout thread
  std::condition_variable idle_cv_;     // signalled when a call or request ends
  std::atomic<size_t> active_requests_{0};
  std::atomic<double> default_timeout_seconds_;
  std::thread timeout_thread_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace distgrad::rpc
