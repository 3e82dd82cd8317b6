# The same module-scoped worker fixture, and the same check after each test.
from tests.conftest import cluster, nothing_left_behind  # noqa: F401
