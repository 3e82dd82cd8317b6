"""Example programs: a parameter server, an RNN split with RRefs and a
pipeline with async execution, each trained with distributed autograd and
the distributed optimizer (see docs/usage.md, "Examples")."""
