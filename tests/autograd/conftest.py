"""Tests of distributed autograd (operators/autograd, distgrad.autograd):
contexts, graphs recorded across RPCs and RRefs, the backward pass, its
errors and faults, and what it releases. Shared checks are in
tests/autograd_checks.py."""
