"""Tests of distgrad as a user meets it: the README's example, the demo, the
example programs of tools/examples/ and the wheel. Each runs programs in
processes of its own, as a user would, so these tests share no fixture and
no cluster."""
