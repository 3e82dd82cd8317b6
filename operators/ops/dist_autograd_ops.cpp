#include "autograd/current_context.h"
#include "autograd/dist_autograd.h"
#include "autograd/dist_engine.h"

#include <torch/library.h>

namespace {

void distBackward(int64_t context_id, const std::vector<at::Tensor>& roots, bool retain_graph,
                  double timeout) {
  distgrad::autograd::DistEngine::backward(context_id, roots, retain_graph, timeout);
}

}  // namespace

// Every op is CONSERVATIVE: each has side effects or reads the thread's
// current context, so TorchScript must neither fold nor drop it.
TORCH_LIBRARY(dist_autograd, m) {
  m.def(torch::schema("get_gradients(int context_id) -> Dict(Tensor, Tensor)",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        &distgrad::autograd::getGradients);
  m.def(torch::schema("dist_backward(int context_id, Tensor[] roots, bool retain_graph=False, "
                      "float timeout=-1.) -> ()",
                      c10::AliasAnalysisKind::CONSERVATIVE),
        &distBackward);
  m.def(torch::schema("current_context_id() -> int", c10::AliasAnalysisKind::CONSERVATIVE),
        &distgrad::autograd::currentContextId);
}
