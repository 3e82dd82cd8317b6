#include "autograd/send_rpc_backward.h"

#include "common/torch_private.h"

namespace distgrad::autograd {

SendRpcBackward::SendRpcBackward(const std::vector<at::Tensor>& sent, int peer,
                                 int64_t message_id)
    : peer_(peer), message_id_(message_id) {
  for (const auto& t : sent) {
    add_input_metadata(t);
    add_next_edge(torch_private::gradient_edge(t));
  }
}

torch::autograd::variable_list SendRpcBackward::apply(torch::autograd::variable_list&& grads) {
  return std::move(grads);
}

}  // namespace distgrad::autograd
