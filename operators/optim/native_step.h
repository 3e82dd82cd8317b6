#pragma once

#include "rpc/agent.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace distgrad::optim {

// The step of a DistributedOptimizer whose owners all hold native
// optimizers (optim/optimizer_registry.h): one internal request per owner,
// served without Python, and this worker's own optimizer stepped in place
// meanwhile.

// A native optimizer: the rank of the worker holding it and its id there.
struct StepTarget {
  int rank = 0;
  int64_t optimizer_id = 0;
};

// Registers the handler of StepOptimizer requests with agent; called when
// RPC starts. The handler runs on the reader thread when the step is small
// (see kMaxReaderParameters) and the step mutex is free, else on the pool.
void install(rpc::Agent& agent);

// Steps optimizer_id of this worker with the gradients this worker holds
// in context_id, under stepMutex(), and returns when done. If
// context_carried, a context unknown here is created, as for an RPC that
// carries it (see StepOptimizer). Throws c10::ValueError naming this worker
// and the id for an unknown optimizer, naming the context for an unknown
// context, and what the optimizer throws. May block on the step mutex: never
// called from a reader thread (checked).
void stepHere(int64_t optimizer_id, int64_t context_id, bool context_carried);

// Steps every target's optimizer with the gradients of context_id: sends a
// request to each other worker, steps this worker's targets on the calling
// thread, and returns one future per target, in order, completed with None
// or failed with a RemoteError naming the worker where the step failed.
// The context is carried (see StepOptimizer) if it is current on this thread
// with grad mode on. Throws c10::ValueError, before any step, if context_id
// is unknown here; DistError if RPC is not running. Blocks like stepHere.
std::vector<rpc::FuturePtr> stepAll(const std::vector<StepTarget>& targets, int64_t context_id);

// Given the completed futures stepAll returned: throws, as a RemoteError of
// the same type, the error of the first target (in order) whose step
// failed, its message prefixed with "Error running optimizer on <worker>: ".
void throwFirstError(const std::vector<StepTarget>& targets,
                     const std::vector<rpc::FuturePtr>& futures);

// num_native_optimizers (registered here), num_native_optimizer_steps (run
// here since the process started).
std::map<std::string, int64_t> debugInfo();

}  // namespace distgrad::optim
