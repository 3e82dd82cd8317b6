"""Entry point of one worker process of a Cluster:

    python -m distgrad._testing.worker --rank R --world-size N --init-method tcp://HOST:PORT
                                      [--backend MODULE[:ATTRIBUTE]] [--import MODULE ...]

Imports the modules given, joins the job as worker "workerR" through the
backend (default: distgrad.rpc, see distgrad._testing.backend), serves RPCs
until every worker has called shutdown, then exits 0. It exits 1 at once if
its parent process dies, so a crashed or killed test run leaves nothing
behind.
"""

import argparse
import ctypes
import importlib
import os
import pathlib
import signal
import threading
import time

from distgrad._testing.backend import resolve


def _exit_when_orphaned(parent):
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--init-method", required=True)
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--ready-file", help="created once the worker has imported everything")
    parser.add_argument("--backend", default="distgrad._testing.backend",
                        help="what the worker joins and leaves the job through")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        help="a module to import before joining (repeatable)")
    args = parser.parse_args(argv)

    # The kernel kills this process when its parent dies, even if it is stuck
    # holding the GIL; the thread covers a parent that died before this line.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    threading.Thread(target=_exit_when_orphaned, args=(args.parent_pid,), daemon=True).start()
    backend = resolve(args.backend)
    for module in args.imports:
        importlib.import_module(module)
    if args.ready_file:
        pathlib.Path(args.ready_file).touch()
    backend.init(f"worker{args.rank}", args.rank, args.world_size, args.init_method, None)
    print(f"worker{args.rank}: joined the job", flush=True)
    backend.shutdown(True, 0)
    print(f"worker{args.rank}: shut down", flush=True)


if __name__ == "__main__":
    main()
