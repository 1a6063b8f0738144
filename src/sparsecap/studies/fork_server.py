"""The fork server that worker processes start from, startable before this process has imported torch.

The server imports sparsecap's trial code and torch once (2-3 s), and every worker is forked from it
ready to train. Started first thing by `sparsecap run`, that import runs on another core while this
process imports the same and loads the data, instead of after it: the quick study's workers started
1.5 s sooner on 2 cores. Only the standard library here, so starting it costs this process nothing.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver

PRELOADED = ["sparsecap.studies.execute", "torch._dynamo"]
"""What the server imports for its workers; torch._dynamo because torch.optim's first step imports it
(0.8 s), which each worker would otherwise pay before its first trial."""


def start_fork_server() -> multiprocessing.context.BaseContext:
    """The fork server's context, its server started now if it is not running yet."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    multiprocessing.forkserver.ensure_running()
    return context
