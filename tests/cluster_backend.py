"""A Cluster backend that joins through distgrad.rpc and records what it
was asked (tests/rpc/test_rpc_launch.py)."""

import sys

import distgrad.rpc


class Recording:
    def __init__(self):
        self.joined_as = None
        self.left = None

    def init(self, name, rank, world_size, init_method, timeout):
        distgrad.rpc.init_rpc(name, rank=rank, world_size=world_size, init_method=init_method,
                              timeout=timeout)
        self.joined_as = name

    def shutdown(self, graceful, timeout):
        distgrad.rpc.shutdown(graceful=graceful, timeout=timeout)
        self.left = (graceful, timeout)


RECORDING = Recording()


def joined_as():
    return RECORDING.joined_as


def imported(module):
    return module in sys.modules
