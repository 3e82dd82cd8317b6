"""Tests of distgrad as a user meets it: the README's example, the demo, the
example programs of tools/examples/ and the wheel, each run as programs in
processes of their own, as a user would; and the API reference (docs/api.md)
against the docstrings, in this process. These tests share no fixture and no
cluster."""
