"""Running a study's pending groups in N worker processes on this machine (`--workers`).

Why processes: a small model's step uses one core well and two badly (sparsecap.runtime), so the way to
use every core of a machine is one trial per core. Each worker is its own process with its own torch
threads; the datasets reach it once, as shared-memory tensors, and it returns each group's records to
this process, which alone writes the database (one transaction per trial, in the order results arrive).
While it trains, it also sends each epoch's `EpochReport`, for the progress view.

Workers are forked from a fork server that has imported sparsecap and torch once (fast to start, and
safe: the server never ran an OpenMP region; `sparsecap.studies.fork_server`). A worker that dies
mid-group (killed, out of memory) is replaced and its group run again, up to `Runtime.max_retries` times, after
which its trials are recorded as failed; finished trials are never lost, as each was written when it
arrived.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tqdm import tqdm

from sparsecap.data import DatasetName, ImageDataset
from sparsecap.devices import Placement, placement
from sparsecap.runtime import Runtime
from sparsecap.studies.database import TrialRecord
from sparsecap.studies.execute import (
    costliest_first,
    failed_record,
    multiply_accumulates_of,
    placed,
    run_group_or_failures,
)
from sparsecap.studies.fork_server import start_fork_server
from sparsecap.studies.progress import EpochReport, StudyProgressView, TrialProgress
from sparsecap.studies.spec import StudySpec
from sparsecap.studies.trials import Trial

Group = list[Trial]


def _exit_with_the_parent() -> None:
    """Watch the process that started this worker, and end this one when it ends however it ended (even by
    SIGKILL, which runs no clean-up there): a worker must never go on training for a run that is gone."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(1)


def _work(spec: StudySpec, datasets: dict[DatasetName, ImageDataset], storage: Path, runtime: Runtime,
          connection: Connection) -> None:
    """A worker's life: run each group it is sent, send back its records, stop on None or once the run has
    closed its end (a stop that found this worker idle, so not among the busy ones it kills). The datasets
    go to the worker's device once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    # tqdm's default lock is a multiprocessing semaphore, which a worker killed mid-trial never releases: the
    # run's exit then warned of "leaked semaphore objects". This process's bars need only a thread lock.
    tqdm.set_lock(threading.RLock())
    threading.Thread(target=_exit_with_the_parent, daemon=True).start()
    datasets = {name: dataset.to(runtime.device) for name, dataset in datasets.items()}
    progress = TrialProgress(on_epoch=connection.send)
    # EOFError, BrokenPipeError: the run is gone (stopped while this worker waited between groups)
    with contextlib.suppress(EOFError, BrokenPipeError):
        connection.send(placement(runtime.device))  # for the records of its group, should this worker die
        while (group := connection.recv()) is not None:
            connection.send(run_group_or_failures(spec, group, datasets[group[0].dataset], storage, runtime,
                                                  progress))


class _Worker:
    """One worker process (in slot `slot`, which fixes its device) and the group it is running."""

    def __init__(self, context: multiprocessing.context.BaseContext, arguments: tuple, runtime: Runtime,
                 slot: int, group: Group) -> None:
        self.slot = slot
        self.runtime = runtime
        self.placement: Placement | None = None
        """Where it runs, as it said once started: the parent initialises no CUDA to find out."""
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_work, args=(*arguments, runtime, theirs), name="sparsecap-worker",
                                       daemon=True)
        self.process.start()
        theirs.close()
        self.give(group)

    def give(self, group: Group) -> None:
        self.group = group
        self.connection.send(group)

    def receive(self) -> list[TrialRecord] | EpochReport | Placement | None:
        """Its group's records, an epoch of it or where it runs, or None if it died before sending its records."""
        try:
            return self.connection.recv()
        except (EOFError, ConnectionResetError):
            self.process.join()
            return None

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except OSError:  # BrokenPipeError: it has died since sending its records, which is its stopping anyway
            pass
        self.process.join()


def _hand_on(worker: _Worker, waiting: deque[Group], busy: list[_Worker]) -> None:
    """Give a worker whose group is recorded the next waiting group, or stop it if none waits. One that has died
    since sending its records (killed between groups) never ran the group: it goes back to the head of the
    queue, for the new worker its free slot starts, without counting as a death of that group."""
    if not waiting:
        worker.stop()
        return
    group = waiting.popleft()
    try:
        worker.give(group)
    except OSError:  # BrokenPipeError: nobody reads its end any more
        waiting.appendleft(group)
        worker.process.join()
        return
    busy.append(worker)


def worker_context() -> multiprocessing.context.BaseContext:
    """The fork server's context (`start_fork_server`), with torch's reductions registered, which send
    tensors to the workers as shared memory."""
    import torch.multiprocessing  # noqa: F401 - registering the reductions is the import's effect

    return start_fork_server()


def _died_records(spec: StudySpec, worker: _Worker, dataset: ImageDataset, deaths: int) -> list[TrialRecord]:
    """The failed records of the group of a worker that died `deaths` times: where it ran (if it said so before
    dying) and on the threads it had, as a finished record says."""
    records = [failed_record(spec, trial, dataset, f"the worker process running it died {deaths} times (last "
                             f"exit code {worker.process.exitcode}: killed, or out of memory?)", 0.0)
               for trial in worker.group]
    if worker.placement is None:
        return records
    threads = worker.runtime.threads_for(multiply_accumulates_of(worker.group[0], dataset))
    return [placed(record, worker.placement, threads) for record in records]


def worker_runtimes(runtime: Runtime, workers: int) -> list[Runtime]:
    """Each of `workers` trial processes' runtime: an equal share of the cores, and `runtime`'s devices in turn (one
    worker per GPU by default, so each trains on its own)."""
    return [runtime.for_process(runtime.cores // workers, runtime.devices[slot % len(runtime.devices)])
            for slot in range(workers)]


def run_on_workers(
    context: multiprocessing.context.BaseContext,
    spec: StudySpec,
    groups: Sequence[Group],
    datasets: dict[DatasetName, ImageDataset],
    storage: Path,
    on_record: Callable[[TrialRecord], None],
    view: StudyProgressView,
    runtime: Runtime,
    workers: int,
) -> None:
    """Run `groups` on `workers` processes of `context` (`worker_context`), each with `runtime`'s threads for
    its share of the cores, the costliest groups first."""
    used = {group[0].dataset for group in groups}
    arguments = (spec, {name: datasets[name] for name in used}, storage)
    slot_runtimes = worker_runtimes(runtime, workers)
    waiting = deque(costliest_first(groups, datasets))
    deaths: Counter[tuple[str, ...]] = Counter()  # a group's trial ids -> how often its worker died
    busy: list[_Worker] = []
    try:
        while waiting or busy:
            for slot in sorted(set(range(workers)) - {worker.slot for worker in busy})[:len(waiting)]:
                busy.append(_Worker(context, arguments, slot_runtimes[slot], slot, waiting.popleft()))
            view.set_running(sum(len(worker.group) for worker in busy))
            ready = set(wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy]))
            for worker in [worker for worker in busy if {worker.connection, worker.process.sentinel} & ready]:
                records = worker.receive()
                if isinstance(records, EpochReport):
                    view.epoch_done(records)
                    continue
                if isinstance(records, Placement):
                    worker.placement = records
                    continue
                busy.remove(worker)
                alive = records is not None
                if not alive:  # died mid-group: run it again on a new worker, or record it failed
                    key = tuple(trial.trial_id for trial in worker.group)
                    deaths[key] += 1
                    if deaths[key] <= runtime.max_retries:
                        waiting.appendleft(worker.group)
                        continue
                    records = _died_records(spec, worker, datasets[worker.group[0].dataset], deaths[key])
                for record in records:  # written before anything else can go wrong with this worker
                    on_record(record)
                view.recorded(records)
                if alive:
                    _hand_on(worker, waiting, busy)
    finally:  # interrupted: stop the workers (their groups are not recorded, so a rerun runs them)
        for worker in busy:
            worker.process.kill()
            worker.process.join()
