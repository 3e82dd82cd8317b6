"""Complete programs that use distgrad, runnable with ``python -m``:

- ``distgrad.examples.train``: a digit classifier trained by three worker
  processes, against torch.distributed.rpc in the same run.
"""
