"""The fork server that worker processes start from, startable before this process has imported torch.

The server imports sparsecap's trial code and torch once (2-3 s), and every worker is forked from it
ready to train. Started first thing by `sparsecap run`, that import runs on another core while this
process imports the same and loads the data, instead of after it: the quick study's workers started
1.5 s sooner on 2 cores. Only the standard library here, so starting it costs this process nothing.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal

PRELOADED = ["sparsecap.studies.execute", "torch._dynamo"]
"""What the server imports for its workers; torch._dynamo because torch.optim's first step imports it
(0.8 s), which each worker would otherwise pay before its first trial."""


def start_fork_server() -> multiprocessing.context.BaseContext:
    """The fork server's context, its server started now if it is not running yet."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    # Started with Ctrl-C ignored, which it inherits: a terminal's Ctrl-C reaches the whole process group, and
    # would otherwise print the server's KeyboardInterrupt traceback mid-import (multiprocessing ignores it
    # only after the preloads). The run's process handles Ctrl-C, and stops the server.
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, before)
    return context


def stop_fork_server() -> None:
    """End the fork server now, mid-import if need be. A command that fails before any worker starts (a
    missing dataset, a device that is not there) would otherwise leave it importing torch for seconds, and
    holding this process's stdout and stderr open meanwhile: ``sparsecap run ... | tee log`` waited 4 s
    on a mistyped preset. The server is multiprocessing's own, which offers no public way to stop it."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if server is None or pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    server._stop()  # reaps it and removes its socket
