"""Tests of what is built on RPC and distributed autograd:
distgrad.optim.DistributedOptimizer and distgrad.nn.RemoteModule. The
modules and optimizers workers build are in optim_fns.py and nn_fns.py here."""
