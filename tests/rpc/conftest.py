"""Tests of the RPC layer (operators/rpc and operators/transport, distgrad.rpc):
calls, values and tensors on the wire, the handshake, rendezvous and launch,
errors, timeouts, shutdown, peer death, and remote references (RRefs live in
operators/rpc too). Worker functions only these tests call are in
async_fns.py and sparse_fns.py here; the shared ones are in tests/.

Multi-process: every test runs in its module's cluster without asking,
and is checked after for what it left behind (tests/cluster_autouse.py,
tests/conftest.py); a module that runs its own job is marked no_cluster."""

from tests.cluster_autouse import every_test_in_the_cluster  # noqa: F401 - autouse in this folder
