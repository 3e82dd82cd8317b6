"""Tests of what is built on RPC and distributed autograd:
distgrad.optim.DistributedOptimizer and distgrad.nn.RemoteModule. The
modules and optimizers workers build are in optim_fns.py and nn_fns.py here.

Multi-process: every test runs in its module's cluster without asking,
and is checked after for what it left behind (tests/cluster_autouse.py,
tests/conftest.py); a module that runs its own job is marked no_cluster."""

from tests.cluster_autouse import every_test_in_the_cluster  # noqa: F401 - autouse in this folder
