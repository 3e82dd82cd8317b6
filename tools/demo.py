"""The demo `make demo` runs: a small model split across three local worker
processes, trained with distributed autograd, from eager Python and from
TorchScript. Prints what each step did."""

import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import distgrad.autograd as dist_autograd  # noqa: E402
import distgrad.rpc as rpc  # noqa: E402
from distgrad._testing import Cluster  # noqa: E402
from tools import demo_fns  # noqa: E402


def main():
    torch.manual_seed(0)
    cluster = Cluster(3, root=ROOT).start()
    try:
        print(f"job up: {[w.name for w in rpc.get_worker_infos()]}")
        print("rpc_sync(worker1, torch.add, 3x3 ones + ones) ->",
              rpc.rpc_sync("worker1", torch.add, args=(torch.ones(3, 3), torch.ones(3, 3)))[0].tolist())

        # Training loop: the first layer lives here, the second on worker1,
        # the loss on worker2.
        w0 = torch.randn(4, 8, requires_grad=True)
        x = torch.randn(16, 4)
        y = torch.randn(16, 1)
        for step in range(5):
            with dist_autograd.context() as context_id:
                hidden = torch.relu(x @ w0)
                loss = rpc.rpc_sync("worker1", demo_fns.second_layer_and_loss, args=(hidden, y, "worker2"))
                dist_autograd.backward(context_id, [loss])
                grad = dist_autograd.get_gradients(context_id)[w0]
                remote = rpc.rpc_sync("worker1", demo_fns.step_second_layer, args=(context_id, 0.05))
                with torch.no_grad():
                    w0 -= 0.05 * grad
            print(f"step {step}: loss {loss.item():.4f}  |grad w0| {grad.norm():.4f}  |grad w1| on worker1 {remote:.4f}")

        # The same pattern in TorchScript: a scripted function forks an RPC.
        with dist_autograd.context() as context_id:
            t1 = torch.ones(2, 2, requires_grad=True)
            t2 = torch.ones(2, 2, requires_grad=True)
            result = demo_fns.fork_add(t1, t2, "worker1")
            dist_autograd.backward(context_id, [result.sum()])
            grads = dist_autograd.get_gradients(context_id)
            print("scripted fork_add -> worker1: grads", grads[t1].tolist(), grads[t2].tolist())
        print("live contexts per worker after the job:",
              [rpc.rpc_sync(w, dist_autograd.debug_info)["num_autograd_contexts"] for w in ("worker1", "worker2")])
    finally:
        cluster.stop()
    print("done: all workers shut down cleanly")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
