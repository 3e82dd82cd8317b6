"""Tests of the RPC layer (operators/rpc and operators/transport, distgrad.rpc):
calls, values and tensors on the wire, the handshake, rendezvous and launch,
errors, timeouts, shutdown, peer death, and remote references (RRefs live in
operators/rpc too). Worker functions only these tests call are in
async_fns.py and sparse_fns.py here; the shared ones are in tests/."""
