"""A Cluster backend that joins through distgrad.rpc and records what it
was asked (tests/rpc/test_rpc_launch.py)."""

import sys

from distgrad._testing import backend


class Recording:
    def __init__(self):
        self.joined_as = None
        self.left = None

    def init(self, name, rank, world_size, init_method, timeout):
        backend.init(name, rank, world_size, init_method, timeout)
        self.joined_as = name

    def shutdown(self, graceful, timeout):
        backend.shutdown(graceful, timeout)
        self.left = (graceful, timeout)


RECORDING = Recording()


def joined_as():
    return RECORDING.joined_as


def imported(module):
    return module in sys.modules
