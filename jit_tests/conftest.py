from tests.conftest import cluster  # noqa: F401  (the same module-scoped worker fixture)
