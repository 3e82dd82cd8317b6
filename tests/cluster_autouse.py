"""The fixture that puts every test of a multi-process folder in its
module's cluster. tests/rpc, tests/autograd and tests/optim_nn import it
into their conftest.py, which makes it autouse there only: defined in
tests/conftest.py it would be autouse for tests/unit and tests/user_facing
too."""

import pytest


@pytest.fixture(autouse=True)
def every_test_in_the_cluster(request):
    """Every test runs in its module's cluster (tests/conftest.py), which it
    need not ask for, and nothing_left_behind checks it after it. A module
    whose tests must run outside it (they start their own job or processes,
    or call init_rpc in this process) says so once, at its top:

        pytestmark = pytest.mark.no_cluster

    A test of such a module may still ask for `cluster`; it is then checked
    as any other."""
    module = request.node.getparent(pytest.Module)
    if module.get_closest_marker("no_cluster") is not None:
        return
    if request.node.get_closest_marker("no_cluster") is not None:
        pytest.fail(f"{request.node.nodeid}: no_cluster applies to whole modules (pytestmark = "
                    "pytest.mark.no_cluster): once one test has started the module's cluster, the "
                    "others run in it", pytrace=False)
    request.getfixturevalue("cluster")
