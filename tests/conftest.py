"""Fixtures of all of tests/ (jit_tests/ imports them too): `cluster`, a job
per module, and `nothing_left_behind`, the check after every test that was in
one. tests/rpc, tests/autograd and tests/optim_nn put every test in its
module's cluster (tests/cluster_autouse.py). See docs/testing.md."""

from pathlib import Path

import pytest

from distgrad._testing import Cluster
from tests import leak_checks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(request):
    """A job shared by the tests of one module: this process is worker0, the
    other ranks are worker processes. A module sets its size with WORLD_SIZE
    (default 3) and other Cluster arguments with CLUSTER_OPTIONS."""
    world_size = getattr(request.module, "WORLD_SIZE", 3)
    options = getattr(request.module, "CLUSTER_OPTIONS", {})
    job = Cluster(world_size, root=ROOT, **options).start()
    yield job
    job.stop()


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """After every test that used its module's cluster, whether it asked for
    it or its folder put it there (tests/cluster_autouse.py): see
    tests/leak_checks.py."""
    if not {"cluster", "every_test_in_the_cluster"} & set(request.fixturenames):
        yield
        return
    # The job, and whatever the test's fixtures hold, are up before counting.
    for name in request.fixturenames:
        if name not in ("request", "nothing_left_behind"):
            request.getfixturevalue(name)
    # every_test_in_the_cluster has asked for it, unless the module opted out.
    if "cluster" not in request.fixturenames:
        yield
        return
    before = leak_checks.before_test()
    yield
    leak_checks.after_test(before)
