"""Tests of distributed autograd (operators/autograd, distgrad.autograd):
contexts, graphs recorded across RPCs and RRefs, the backward pass, its
errors and faults, and what it releases. Shared checks are in
tests/autograd_checks.py.

Multi-process: every test runs in its module's cluster without asking,
and is checked after for what it left behind (tests/cluster_autouse.py,
tests/conftest.py); a module that runs its own job is marked no_cluster."""

from tests.cluster_autouse import every_test_in_the_cluster  # noqa: F401 - autouse in this folder
