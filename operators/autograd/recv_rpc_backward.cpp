#include "autograd/recv_rpc_backward.h"

#include <c10/util/Exception.h>

namespace distgrad::autograd {

torch::autograd::variable_list RecvRpcBackward::apply(torch::autograd::variable_list&& grads) {
  TORCH_CHECK(false, "this autograd graph crosses an RPC (distributed autograd context ",
              context_id_, "); run its backward pass with distgrad.autograd.backward(context_id, "
              "roots) instead of Tensor.backward() or torch.autograd.grad()");
}

}  // namespace distgrad::autograd
