#include "rpc/agent.h"

#include "common/errors.h"
#include "common/log.h"
#include "common/thread_role.h"
#include "rpc/builtin_operator.h"
#include "rpc/reader_work.h"
#include "rpc/rref_messages.h"

#include <ATen/ThreadLocalState.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <sstream>

namespace distgrad::rpc {

namespace {

std::mutex g_agent_mu;  // guards g_agent
std::shared_ptr<Agent> g_agent;

// The peer of the calling thread's last call() (and the agent it went
// through): where the reply it may wait for next comes from.
thread_local const Agent* t_last_call_agent = nullptr;
thread_local int t_last_call_dst = -1;

FuturePtr completedFuture(c10::IValue value) {
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  future->markCompleted(std::move(value));
  return future;
}

void runInScope(const std::shared_ptr<CallScope>& scope, const std::function<void()>& fn) {
  if (scope) {
    scope->run(fn);
  } else {
    fn();
  }
}

// A future failed with the error in eptr as a caller would see it: a
// RemoteError naming the worker that raised it.
FuturePtr failedFuture(std::exception_ptr eptr, const std::string& worker) {
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  future->setError(std::make_exception_ptr(RemoteError::describe(std::move(eptr), worker)));
  return future;
}

// A future of what f's value is, waiting for it when it is itself a future
// (a TorchScript function returning Future[T], async_execution).
FuturePtr flatten(const FuturePtr& f) {
  if (f->completed() && (f->hasError() || !f->value().isFuture())) {
    return f;
  }
  auto out = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  f->addCallback([out](c10::ivalue::Future& done) {
    if (done.hasError()) {
      out->setErrorIfNeeded(done.exception_ptr());
    } else if (!done.value().isFuture()) {
      out->markCompleted(done.value());
    } else {
      flatten(done.value().toFuture())->addCallback([out](c10::ivalue::Future& inner) {
        if (inner.hasError()) {
          out->setErrorIfNeeded(inner.exception_ptr());
        } else {
          out->markCompleted(inner.value());
        }
      });
    }
  });
  return out;
}

// User callbacks that block each hold a thread of the callback pool.
constexpr int kMaxCallbackThreads = 256;

std::string seconds(double s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

}  // namespace

std::shared_ptr<Agent> Agent::current() {
  auto agent = currentOrNull();
  if (!agent) {
    throw DistError("distgrad RPC is not initialized in this process; call init_rpc() first");
  }
  return agent;
}

std::shared_ptr<Agent> Agent::currentOrNull() {
  std::lock_guard<std::mutex> lock(g_agent_mu);
  return g_agent;
}

void Agent::install(std::shared_ptr<Agent> agent) {
  std::lock_guard<std::mutex> lock(g_agent_mu);
  if (g_agent) {
    throw DistError("init_rpc() was already called in this process (as worker '" +
                    g_agent->options_.name + "'); call shutdown() before initializing again");
  }
  g_agent = std::move(agent);
}

void Agent::uninstall() {
  std::lock_guard<std::mutex> lock(g_agent_mu);
  g_agent.reset();
}

Agent::Agent(AgentOptions options)
    : options_(std::move(options)),
      pool_(options_.num_worker_threads),
      callbacks_(kMaxCallbackThreads),
      rrefs_(std::make_unique<RRefContext>(*this)),
      default_timeout_seconds_(options_.default_timeout_seconds) {
  rrefs_->install();
  // Like at::launch, tasks carry the launching thread's state (grad mode,
  // the current distributed autograd context, ...): TorchScript restores it
  // itself for continuations after wait(), but not for forked tasks.
  task_launcher_ = [this](std::function<void()> task) {
    pool_.run([task = std::move(task), state = at::ThreadLocalState()] {
      at::ThreadLocalStateGuard guard(state);
      task();
    });
  };
  transport::TransportOptions transport_options;
  transport_options.rank = options_.rank;
  transport_options.world_size = options_.world_size;
  transport_options.name = options_.name;
  transport_options.auth = options_.auth;
  transport_options.handshake_timeout_seconds = options_.handshake_timeout_seconds;
  transport_options.frame_stall_timeout_seconds = options_.frame_stall_timeout_seconds;
  transport_options.limits = options_.limits;
  transport_options.arena_bytes = options_.shared_memory_bytes;
  // A polling reader takes a core (2 cores and a few processes are common):
  // it polls only while a frame is due and no pool thread computes. A frame
  // is due while a call to the peer awaits its reply, and once this worker
  // has answered every request of the peer, if answering was the last thing
  // between them (the peer's next request tends to follow; also when the
  // peer's reply to a nested call came before this worker's answer, as in
  // a backward pass). Not while a request is still being served (in a chain
  // of nested calls the peer waits for this worker's reply), and after a
  // reply with no other call outstanding the core goes to the threads the
  // reply woke. A pool thread blocked in a nested call's wait does not
  // count as computing: the reply it waits for is what the reader would
  // poll for.
  pending_by_peer_.reset(new std::atomic<int>[options_.world_size]());
  serving_by_peer_.reset(new std::atomic<int>[options_.world_size]());
  answered_last_.reset(new std::atomic<bool>[options_.world_size]());
  transport_options.may_poll = [this](int peer) {
    return pool_.computing() == 0 &&
           (pending_by_peer_[peer].load(std::memory_order_relaxed) > 0 ||
            (answered_last_[peer].load(std::memory_order_relaxed) &&
             serving_by_peer_[peer].load(std::memory_order_relaxed) == 0));
  };
  transport_ = std::make_unique<transport::Transport>(
      transport_options,
      [this](int src, transport::Message&& message) { onMessage(src, std::move(message)); },
      [this](int rank, const std::string& reason) { onPeerLost(rank, reason); });
  timeout_thread_ = std::thread([this] { timeoutLoop(); });
}

Agent::~Agent() {
  shutdown();
}

int Agent::listen(const std::string& host) {
  return transport_->listen(host);
}

void Agent::start(std::vector<std::string> names, std::vector<std::string> addresses) {
  TORCH_CHECK(static_cast<int>(names.size()) == options_.world_size &&
                  names.size() == addresses.size(),
              "expected ", options_.world_size, " worker names and addresses");
  for (int rank = 0; rank < options_.world_size; ++rank) {
    workers_.push_back({names[rank], rank});
    rank_by_name_[names[rank]] = rank;
  }
  transport_->setPeers(std::move(names), std::move(addresses));
}

const WorkerInfo& Agent::worker(const std::string& name) const {
  auto it = rank_by_name_.find(name);
  if (it == rank_by_name_.end()) {
    std::string known;
    for (const auto& w : workers_) {
      known += (known.empty() ? "" : ", ") + w.name;
    }
    TORCH_CHECK_VALUE(false, "unknown worker '", name, "' (the workers are: ", known, ")");
  }
  return workers_[it->second];
}

const WorkerInfo& Agent::worker(int rank) const {
  TORCH_CHECK_VALUE(rank >= 0 && rank < options_.world_size, "unknown worker rank ", rank,
                    " (ranks are 0 to ", options_.world_size - 1, ")");
  return workers_[rank];
}

void Agent::registerInternalHandler(const std::string& name, InternalHandler handler,
                                    HandlerThread thread) {
  internal_handlers_[name] = {std::move(handler), thread};
}

void Agent::setCallHooks(std::shared_ptr<CallHooks> hooks) {
  hooks_ = std::move(hooks);
}

void Agent::setScriptFunctionResolver(ScriptFunctionResolver resolver) {
  script_resolver_ = std::move(resolver);
}

void Agent::setPythonCallRunner(PythonCallRunner runner) {
  python_runner_ = std::move(runner);
}

void Agent::setPythonValueCodec(PythonValueCodec codec) {
  python_codec_ = std::move(codec);
}

void Agent::setServingState(std::shared_ptr<const at::ThreadLocalState> state) {
  std::atomic_store(&serving_state_, std::move(state));
}

std::string Agent::spanName(int src, const Request& request) const {
  static const char* kinds[] = {"", "", "python", "", "rref.to_here"};
  std::string target = request.target.empty() ? kinds[static_cast<int>(request.kind)] : request.target;
  return std::string(request.remote ? "rpc_remote#" : "rpc#") + target + "(" + workers_[src].name +
         " -> " + options_.name + ")";
}

void Agent::addPeerLostListener(std::function<void(int rank)> listener) {
  peer_lost_listeners_.push_back(std::move(listener));
}

FuturePtr Agent::call(int dst, Request request, double timeout_seconds) {
  worker(dst);  // validates dst
  if (timeout_seconds < 0) {
    timeout_seconds = default_timeout_seconds_;
  }
  // A timeout too long to represent as a deadline (inf) means none.
  constexpr double kLongestTimeout = 1e9;  // seconds: over 30 years
  if (!(timeout_seconds <= kLongestTimeout)) {
    timeout_seconds = 0;
  }
  auto future = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  {
    // Checked before anything is recorded for a call that cannot be made.
    std::lock_guard<std::mutex> lock(pending_mu_);
    if (stopping_) {
      throw DistNetworkError("distgrad RPC has been shut down on this worker");
    }
    auto lost = lost_peers_.find(dst);
    if (lost != lost_peers_.end()) {
      future->setError(std::make_exception_ptr(DistNetworkError(lost->second)));
      return future;
    }
  }
  EncodedBody body = encodeRequestBody(request);
  transport::FrameLimits limits;
  try {
    limits = transport_->peerLimits(dst);  // connects first if needed
  } catch (const std::exception&) {
    future->setError(std::current_exception());
    return future;
  }
  try {
    transport::checkOutgoing(body.body.size(), body.wire_tensors, limits);
  } catch (const std::length_error& e) {
    TORCH_CHECK_VALUE(false, "cannot send to worker '", workers_[dst].name, "': ", e.what());
  }
  c10::IValue extension;
  if (hooks_ && request.kind != CallKind::kInternal) {
    extension = hooks_->onSendRequest(dst, body.tensors);
  }
  uint64_t id = next_call_id_++;
  std::vector<c10::IValue> rref_states = rrefs_->fork(body.rrefs, dst);
  transport::Message message = assembleMessage(kRequestType, id, body, rref_states, extension);
  {
    // A peer lost or a shutdown since the check above shows as a failed send.
    std::lock_guard<std::mutex> lock(pending_mu_);
    PendingCall pending{future, dst, std::move(extension), timeout_seconds};
    if (timeout_seconds > 0) {
      auto deadline = std::chrono::steady_clock::now() +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                          std::chrono::duration<double>(timeout_seconds));
      pending.deadline = deadlines_.emplace(deadline, id);
      pending.has_deadline = true;
      if (deadline < timeout_thread_wakes_at_) {
        timeout_thread_wakes_at_ = deadline;
        timeout_cv_.notify_one();
      }
    }
    pending_by_peer_[dst].fetch_add(1, std::memory_order_relaxed);
    pending_.emplace(id, std::move(pending));
  }
  try {
    transport_->send(dst, message);
  } catch (const std::exception&) {
    rrefs_->abortForks(rref_states);
    if (auto pending = takePending(id)) {
      pending->future->setError(std::current_exception());
    }
  }
  t_last_call_agent = this;
  t_last_call_dst = dst;
  return future;
}

void Agent::pollForReply(const FuturePtr& reply) {
  // Each call is polled for once at most: a later wait for something else
  // does not poll the connection of a call made long before.
  const int dst = t_last_call_agent == this ? t_last_call_dst : -1;
  t_last_call_agent = nullptr;
  if (dst < 0 || dst == options_.rank || reply->completed()) {
    return;
  }
  ThreadPool::WaitScope waiting;  // the reply is what the gates let readers poll for
  transport_->pollFrames(dst, [&reply] { return !reply->completed(); });
}

RRefPtr Agent::remote(int dst, Request request, double timeout_seconds) {
  worker(dst);  // validates dst
  auto [rref, target] = rrefs_->prepareRemote(dst);
  request.remote = target;
  FuturePtr future;
  try {
    future = call(dst, std::move(request), timeout_seconds);
  } catch (...) {
    rrefs_->finishRemote(rref, nullptr);
    throw;
  }
  rrefs_->finishRemote(rref, future);
  return rref;
}

FuturePtr Agent::fetch(const RRefPtr& rref, double timeout_seconds) {
  if (rref->isOwner()) {
    return rref->owner()->value();
  }
  if (rref->user()->agent().lock().get() != this) {
    throw DistError("RRef " + std::to_string(rref->id()) +
                    " belongs to an RPC job that has shut down");
  }
  const auto& created = rref->user()->created();
  if (created->completed() && created->hasError()) {
    // remote() failed: that is what using the RRef raises.
    return created;
  }
  Request request;
  request.kind = CallKind::kRRefFetch;
  request.args.emplace_back(rref->id());
  FuturePtr fetched = call(rref->ownerRank(), std::move(request), timeout_seconds);
  if (created->completed()) {
    return fetched;
  }
  // Still being created: a failed creation (a timeout) fails the fetch too.
  auto out = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  auto done = std::make_shared<std::atomic<bool>>(false);
  created->addCallback([out, done](c10::ivalue::Future& creation) {
    if (creation.hasError() && !done->exchange(true)) {
      out->setError(creation.exception_ptr());
    }
  });
  fetched->addCallback([out, done](c10::ivalue::Future& result) {
    if (done->exchange(true)) {
      return;
    }
    if (result.hasError()) {
      out->setError(result.exception_ptr());
    } else {
      out->markCompleted(result.value());
    }
  });
  return out;
}

c10::IValue Agent::toHere(const RRefPtr& rref, double timeout_seconds) {
  FuturePtr fetched = fetch(rref, timeout_seconds);
  {
    ThreadPool::WaitScope waiting;
    fetched->waitAndThrow();
  }
  return rref->isOwner() ? fetched->value() : decodeFetched(fetched->value());
}

c10::IValue Agent::decodeFetched(const c10::IValue& fetched) const {
  FetchedValue value = FetchedValue::fromIValue(fetched);
  if (!value.python) {
    return value.value;
  }
  TORCH_CHECK(python_codec_.deserialize, "this worker cannot decode Python objects");
  return python_codec_.deserialize(value.value);
}

transport::Message Agent::notification(int dst, const Request& request) const {
  worker(dst);  // validates dst
  TORCH_CHECK(request.kind == CallKind::kInternal, "only internal requests go without a reply");
  return assembleMessage(kRequestType, kNoReply, encodeRequestBody(request), {}, c10::IValue());
}

void Agent::notify(int dst, Request request) {
  auto message = notification(dst, request);
  try {
    transport_->send(dst, message);
  } catch (const std::exception&) {
    // A peer that is gone needs no notice.
  }
}

bool Agent::tryNotify(int dst, const Request& request) {
  auto message = notification(dst, request);
  try {
    return transport_->trySend(dst, message);
  } catch (const std::exception&) {
    return true;  // a peer that is gone needs no notice
  }
}

std::optional<Agent::PendingCall> Agent::takePending(uint64_t id) {
  std::lock_guard<std::mutex> lock(pending_mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    return std::nullopt;
  }
  PendingCall pending = std::move(it->second);
  pending_by_peer_[pending.dst].fetch_sub(1, std::memory_order_relaxed);
  pending_.erase(it);
  if (pending.has_deadline) {
    deadlines_.erase(pending.deadline);
  }
  if (pending_.empty()) {
    idle_cv_.notify_all();
  }
  return pending;
}

void Agent::onMessage(int src, transport::Message&& message) {
  if (message.type == kRequestType) {
    onRequest(src, std::move(message));
  } else if (message.type == kResponseType) {
    onResponse(src, std::move(message));
  } else {
    logWarning(options_.name, "ignored a frame of unknown type " + std::to_string(message.type) +
                                  " from " + worker(src).name);
  }
}

void Agent::onRequest(int src, transport::Message&& message) {
  ++active_requests_;
  serving_by_peer_[src].fetch_add(1, std::memory_order_relaxed);
  const uint64_t id = message.id;
  std::shared_ptr<CallScope> scope;
  std::optional<RemoteTarget> remote;
  try {
    auto request = std::make_shared<Request>(decodeRequest(message, src, *rrefs_));
    remote = request->remote;
    if (remote) {
      // Before anything can fail: setValue below always follows.
      rrefs_->expectValue(*remote, src);
    }
    if (hooks_ && request->kind != CallKind::kInternal) {
      scope = hooks_->onReceiveRequest(src, request->extension, message.tensors);
    }
    const bool inline_on_reader = runsInline(*request, message);
    // The request holds its tensors from here. The reader must not drop the
    // last reference to one after a pool thread has run Python with it:
    // freeing a tensor Python has seen takes the GIL, for as long as
    // Python holds it.
    message.tensors.clear();
    auto serve = [this, src, id, request = std::move(request), scope] {
      FuturePtr result;
      try {
        auto profiling = std::atomic_load(&serving_state_);
        if (profiling) {
          at::ThreadLocalStateGuard state(*profiling);
          RECORD_USER_SCOPE(spanName(src, *request));
          result = execute(src, *request, scope);
        } else {
          result = execute(src, *request, scope);
        }
      } catch (...) {
        result = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
        result->setError(std::current_exception());
      }
      result->addCallback([this, src, id, scope, remote = request->remote](c10::ivalue::Future& done) {
        if (remote) {
          // The owner keeps the value (or the error, attributed to this
          // worker as it would be on the caller); the caller learns the
          // outcome.
          rrefs_->setValue(remote->rref_id, done.hasError()
                                                ? failedFuture(done.exception_ptr(), self().name)
                                                : FuturePtr::reclaim_copy(&done));
        }
        if (done.hasError()) {
          respond(src, id, Response::fromException(done.exception_ptr(), self().name), scope);
        } else {
          Response response;
          response.value = remote ? c10::IValue() : done.value();
          respond(src, id, std::move(response), scope);
        }
      });
    };
    if (inline_on_reader) {
      serve();
    } else {
      pool_.run(std::move(serve));
    }
  } catch (...) {
    if (remote) {
      rrefs_->setValue(remote->rref_id, failedFuture(std::current_exception(), self().name));
    }
    respond(src, id, Response::fromException(std::current_exception(), self().name), scope);
  }
}

bool Agent::runsInline(const Request& request, const transport::Message& message) const {
  // Running on the reader thread saves a thread hop per call, which costs
  // as much as a loopback round trip. Only work that cannot block and is
  // short goes there: internal handlers registered for it, and aten
  // operators on small inputs. The rest (TorchScript, Python, other
  // namespaces, large inputs) goes to the pool so the connection keeps
  // being read.
  if (request.kind == CallKind::kInternal) {
    auto handler = internal_handlers_.find(request.target);
    return handler != internal_handlers_.end() && handler->second.second == HandlerThread::kReader;
  }
  if (request.kind == CallKind::kRRefFetch) {
    return true;  // a lookup; Python values are serialized on the pool
  }
  if (request.kind != CallKind::kBuiltin || request.target.rfind("aten::", 0) != 0) {
    return false;
  }
  return tensorBytes(message.tensors) <= kMaxReaderInputBytes;
}

FuturePtr Agent::execute(int src, Request& request, const std::shared_ptr<CallScope>& scope) {
  switch (request.kind) {
    case CallKind::kBuiltin: {
      // A result for a peer is computed in shared memory where it can be,
      // so that it travels without a copy (not the value of an RRef, which
      // stays here).
      ResultAllocator results;
      if (!request.remote && src != options_.rank) {
        results = [this, src](c10::IntArrayRef sizes, c10::ScalarType dtype) {
          return transport_->emptyLendable(src, sizes, dtype);
        };
      }
      c10::IValue value;
      runInScope(scope, [&] {
        value = runBuiltinOperator(request.target, std::move(request.args), request.kwargs,
                                   results);
      });
      return completedFuture(std::move(value));
    }
    case CallKind::kScript: {
      TORCH_CHECK(script_resolver_, "this worker cannot run TorchScript functions");
      torch::jit::Function* fn = script_resolver_(request.target);
      torch::jit::Stack stack = std::move(request.args);
      fn->getSchema().checkAndNormalizeInputs(stack, request.kwargs);
      FuturePtr result;
      runInScope(scope, [&] { result = fn->runAsync(stack, task_launcher_); });
      // A function returning Future[T] (async_execution) answers with T.
      return flatten(result);
    }
    case CallKind::kPython: {
      TORCH_CHECK(python_runner_, "this worker cannot run Python functions");
      FuturePtr result;
      runInScope(scope, [&] { result = python_runner_(request.args, request.remote.has_value()); });
      return result;
    }
    case CallKind::kRRefFetch: {
      TORCH_CHECK(request.args.size() == 1 && request.args[0].isInt(), "malformed RRef fetch");
      return fetchedValue(request.args[0].toInt());
    }
    case CallKind::kInternal: {
      auto handler = internal_handlers_.find(request.target);
      TORCH_CHECK(handler != internal_handlers_.end(), "unknown internal request '",
                  request.target, "'");
      return handler->second.first(src, std::move(request.args));
    }
  }
  TORCH_CHECK(false, "unknown request kind");
}

FuturePtr Agent::fetchedValue(int64_t rref_id) {
  FuturePtr value = rrefs_->ownerValue(rref_id);
  auto out = c10::make_intrusive<c10::ivalue::Future>(c10::AnyType::get());
  value->addCallback([this, out](c10::ivalue::Future& done) {
    if (done.hasError()) {
      out->setError(done.exception_ptr());
      return;
    }
    c10::IValue v = done.value();
    if (!v.isPyObject()) {
      out->markCompleted(FetchedValue{false, std::move(v)}.toIValue());
      return;
    }
    // The value may be set on any thread (a reader thread): Python work
    // goes to the pool.
    pool_.run([this, out, v = std::move(v)] {
      try {
        TORCH_CHECK(python_codec_.serialize, "this worker cannot send Python objects");
        out->markCompleted(FetchedValue{true, python_codec_.serialize(v)}.toIValue());
      } catch (...) {
        out->setErrorIfNeeded(std::current_exception());
      }
    });
  });
  return out;
}

void Agent::respond(int src, uint64_t id, Response response,
                    const std::shared_ptr<CallScope>& scope) {
  serving_by_peer_[src].fetch_sub(1, std::memory_order_relaxed);
  answered_last_[src].store(true, std::memory_order_relaxed);
  if (id == kNoReply) {
    requestFinished();
    return;
  }
  try {
    transport::Message message;
    std::vector<c10::IValue> rref_states;
    try {
      EncodedBody body = encodeResponseBody(response);
      try {
        transport::checkOutgoing(body.body.size(), body.wire_tensors,
                                 transport_->peerLimits(src));
      } catch (const std::length_error& e) {
        throw std::length_error("cannot send the result to worker '" + workers_[src].name +
                                "': " + e.what());
      }
      c10::IValue extension = scope ? scope->onSendResponse(src, body.tensors) : c10::IValue();
      rref_states = rrefs_->fork(body.rrefs, src);
      message = assembleMessage(kResponseType, id, body, rref_states, extension);
    } catch (...) {
      // The result itself cannot travel (or recording it failed): say why.
      rrefs_->abortForks(rref_states);
      rref_states.clear();
      Response error = Response::fromException(std::current_exception(), self().name);
      message = assembleMessage(kResponseType, id, encodeResponseBody(error), {}, c10::IValue());
    }
    try {
      transport_->send(src, message);
    } catch (const std::exception&) {
      rrefs_->abortForks(rref_states);
      throw;
    }
  } catch (const std::exception&) {
    // The caller is unreachable; its own side reports the lost connection.
  }
  requestFinished();
}

void Agent::requestFinished() {
  if (--active_requests_ == 0) {
    std::lock_guard<std::mutex> lock(pending_mu_);
    idle_cv_.notify_all();
  }
}

void Agent::onResponse(int src, transport::Message&& message) {
  answered_last_[src].store(false, std::memory_order_relaxed);
  auto pending = takePending(message.id);
  if (!pending) {
    return;  // the call already timed out or failed
  }
  try {
    Response response = decodeResponse(message, src, *rrefs_);
    if (hooks_ && !pending->request_extension.isNone()) {
      hooks_->onReceiveResponse(src, pending->request_extension, response.extension,
                                message.tensors);
    }
    // As for a request: the caller's Python code may be done with a
    // tensor before the reader's reference to it goes.
    message.tensors.clear();
    if (response.ok) {
      pending->future->markCompleted(std::move(response.value));
    } else {
      pending->future->setError(response.toException());
    }
  } catch (...) {
    pending->future->setErrorIfNeeded(std::current_exception());
  }
}

void Agent::onPeerLost(int rank, const std::string& reason) {
  rrefs_->onPeerLost(rank);
  std::vector<PendingCall> failed;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    lost_peers_.emplace(rank, reason);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.dst == rank) {
        if (it->second.has_deadline) {
          deadlines_.erase(it->second.deadline);
        }
        pending_by_peer_[rank].fetch_sub(1, std::memory_order_relaxed);
        failed.push_back(std::move(it->second));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    idle_cv_.notify_all();
  }
  for (auto& call : failed) {
    call.future->setErrorIfNeeded(std::make_exception_ptr(DistNetworkError(reason)));
  }
  for (const auto& listener : peer_lost_listeners_) {
    listener(rank);
  }
}

void Agent::timeoutLoop() {
  std::unique_lock<std::mutex> lock(pending_mu_);
  while (!stopping_) {
    if (deadlines_.empty()) {
      timeout_thread_wakes_at_ = std::chrono::steady_clock::time_point::max();
      timeout_cv_.wait(lock);
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    // A copy: wait_until reads its deadline again after waking, and the entry
    // may have been erased meanwhile (its call answered). Answered calls
    // leave their deadline to pass: the thread then looks again.
    auto next = deadlines_.begin()->first;
    if (now < next) {
      timeout_thread_wakes_at_ = next;
      timeout_cv_.wait_until(lock, next);
      continue;
    }
    std::vector<PendingCall> expired;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto it = pending_.find(deadlines_.begin()->second);
      deadlines_.erase(deadlines_.begin());
      if (it != pending_.end()) {
        it->second.has_deadline = false;
        pending_by_peer_[it->second.dst].fetch_sub(1, std::memory_order_relaxed);
        expired.push_back(std::move(it->second));
        pending_.erase(it);
      }
    }
    idle_cv_.notify_all();
    lock.unlock();
    for (auto& call : expired) {
      call.future->setErrorIfNeeded(std::make_exception_ptr(DistTimeoutError(
          "RPC to worker '" + workers_[call.dst].name + "' (rank " + std::to_string(call.dst) +
          ") timed out after " + seconds(call.timeout_seconds) + " seconds")));
    }
    lock.lock();
  }
}

bool Agent::waitUntilIdle(double timeout_seconds) {
  std::unique_lock<std::mutex> lock(pending_mu_);
  auto idle = [this] { return stopping_ || (pending_.empty() && active_requests_ == 0); };
  if (timeout_seconds <= 0) {
    idle_cv_.wait(lock, idle);
    return true;
  }
  return idle_cv_.wait_for(lock, std::chrono::duration<double>(timeout_seconds), idle);
}

void Agent::shutdown() {
  if (shut_down_) {
    return;
  }
  // It joins the runtime's threads: from one of them, it would wait for itself.
  checkNotCalledFrom({ThreadRole::kPool, ThreadRole::kReader, ThreadRole::kCallback},
                     "Agent::shutdown()");
  if (shut_down_.exchange(true)) {
    return;
  }
  transport_->sayGoodbye();
  transport_->close();
  std::unordered_map<uint64_t, PendingCall> pending;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    stopping_ = true;
    pending.swap(pending_);
    deadlines_.clear();
    for (int rank = 0; rank < options_.world_size; ++rank) {
      pending_by_peer_[rank] = 0;
    }
  }
  timeout_cv_.notify_all();
  idle_cv_.notify_all();
  for (auto& [id, call] : pending) {
    call.future->setErrorIfNeeded(std::make_exception_ptr(DistNetworkError(
        "distgrad RPC was shut down on worker '" + options_.name + "' before the call to worker '" +
        workers_[call.dst].name + "' completed")));
  }
  timeout_thread_.join();
  pool_.stop();
  callbacks_.stop();
  rrefs_->clear();
}

void Agent::probe(int rank) {
  worker(rank);  // validates rank
  try {
    transport_->connectTo(rank);
  } catch (const std::exception&) {
    // A lost peer is recorded by the transport; a slow one is left alone.
  }
}

std::vector<std::pair<int, std::string>> Agent::lostPeers() const {
  std::lock_guard<std::mutex> lock(pending_mu_);
  return {lost_peers_.begin(), lost_peers_.end()};
}

size_t Agent::numPendingCalls() const {
  std::lock_guard<std::mutex> lock(pending_mu_);
  // The leak checks of every test come here: the per-peer counts the poll
  // gates read must add up on every path a call leaves by.
  size_t by_peer = 0;
  for (int rank = 0; rank < options_.world_size; ++rank) {
    by_peer += pending_by_peer_[rank];
  }
  TORCH_INTERNAL_ASSERT(by_peer == pending_.size(), "pending calls by peer add up to ", by_peer,
                        ", not ", pending_.size());
  return pending_.size();
}

size_t Agent::numActiveRequests() const {
  // Counted from the per-peer counts the poll gates read, so that the leak
  // checks of every test find them back at zero on every path a request
  // leaves by (active_requests_ only wakes waits for idle).
  int by_peer = 0;
  for (int rank = 0; rank < options_.world_size; ++rank) {
    by_peer += serving_by_peer_[rank].load(std::memory_order_relaxed);
  }
  return static_cast<size_t>(by_peer);
}

}  // namespace distgrad::rpc
