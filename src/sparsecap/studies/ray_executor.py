"""Running a study's pending trials as Ray tasks, on a local Ray instance or an existing cluster.

Each trial is one task declaring the study's `[resources]` (CPUs, GPUs, memory); with `seeds_together`,
each group of seeds is (`seed_groups`), submitted costliest first. The datasets are
loaded once by the driver and put in Ray's object store, so workers never read dataset files. Workers
write checkpoints under a storage directory every node sees and return the trial's record; the driver
alone writes the database, one transaction per trial, in the order results arrive (`ray.wait`). Tasks leave
their epochs with an `EpochInbox` actor, which the driver reads at each poll for a log's line of what runs.

An interrupted run started here only shuts Ray down, which ends its tasks: cancelling them first raced
with a task that was just finishing, and Ray 2.60 then aborted the driver ("Tried to complete task that
was not pending") before it could say the run was stopped.

Faults: a worker process that dies (killed, node lost) has its task rerun by Ray up to `Runtime.max_retries`
times; after that the trial is recorded as failed. An exception raised by the trial itself is never
retried: the task catches it and returns a failed record (`run_group_or_failures`). Either way the
other trials go on, and a rerun of the study retries the failed ones.

Ray is an optional dependency (`pip install 'sparsecap[cluster]'`): it is imported only here, and
only when a study runs with this executor.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsecap.data import DatasetName, ImageDataset
from sparsecap.errors import SparsecapError
from sparsecap.runtime import WAIT_POLICY_VARIABLE, Runtime
from sparsecap.studies.corruption_measure import prepare_corruption_inputs
from sparsecap.studies.database import TrialRecord
from sparsecap.studies.execute import costliest_first, failed_record, run_group_or_failures, seed_groups
from sparsecap.studies.progress import EpochReport, StudyProgressView, TrialProgress, write_line
from sparsecap.studies.ray_address import check_reachable, join_refused
from sparsecap.studies.spec import StudySpec
from sparsecap.studies.trials import Trial

GIB = 1024**3
POLL_SECONDS = 1.0
"""How often the progress view is refreshed while no result arrives."""
SLOTS_SECONDS = 10.0
"""How often the trials the cluster can run at once are counted again: a cluster may grow or shrink."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    """None: start a private local Ray instance for this run (shut down at the end); "auto" or HOST:PORT:
    connect to a running cluster (left running)."""
    num_cpus: int | None = None
    """CPUs of the local instance (None: Ray's count of this machine's); ignored with an address."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SparsecapError(
            "the Ray executor needs Ray: pip install 'sparsecap[cluster]' (on every node of the cluster)"
        ) from None
    return ray


class EpochInbox:
    """Where a study's tasks leave their latest `EpochReport`s (a Ray actor), for the driver to collect at each poll:
    a log then says which epoch each running trial has reached, as with the local executor."""

    def __init__(self) -> None:
        self._latest: dict[str, EpochReport] = {}

    def put(self, report: EpochReport) -> None:
        self._latest[report.group] = report

    def take(self) -> list[EpochReport]:
        taken, self._latest = list(self._latest.values()), {}
        return taken


def _open_inbox(ray: Any) -> Any:
    """The run's `EpochInbox`, on the driver's node (a worker node may leave the cluster), holding no CPU."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    on_this_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=on_this_node)(EpochInbox).remote()


class _Sender:
    """A task's `on_epoch`: a report sent to the run's inbox without waiting (waiting in a task lends its CPUs to
    another task), at most one per `interval` seconds, as often as the driver reads the inbox, but always the one
    saying the trials are evaluated: a send costs a fraction of a millisecond, a few percent of a small model's
    epoch. A lost inbox costs the log its epochs, never a trial."""

    def __init__(self, ray: Any, inbox: Any, interval: float = POLL_SECONDS) -> None:
        self._ray, self._inbox, self._interval = ray, inbox, interval
        self._latest, self._sent_at = None, -math.inf

    def __call__(self, report: EpochReport) -> None:
        if not report.evaluating and time.monotonic() - self._sent_at < self._interval:
            return
        self._sent_at = time.monotonic()
        self._latest = self._inbox.put.remote(report)  # to a lost inbox too: only the result would raise

    def delivered(self) -> None:
        """Wait, once the trials are done, until the last report has arrived: an actor takes one caller's calls in
        order, so the driver, collecting before it handles the task's records, has every report before them."""
        if self._latest is not None:
            with contextlib.suppress(self._ray.exceptions.RayError):
                self._ray.get(self._latest)


def _collect(ray: Any, inbox: Any) -> list[EpochReport]:
    """The reports left in `inbox` since the last collection (none once it is lost: progress never stops a run)."""
    try:
        return ray.get(inbox.take.remote())
    except ray.exceptions.RayError:
        return []


def _group_task(spec: StudySpec, trials: list[Trial], dataset: ImageDataset, storage: str,
                runtime: Runtime, inbox: Any) -> list[TrialRecord]:
    """What runs on a worker: one group of `seed_groups` (Ray resolves `dataset` before the call), on as
    many cores as the task reserved, and on the GPU Ray assigned it if it reserved one (Ray makes it the
    task's only visible CUDA device). Its epochs go to the driver through `inbox` (an `EpochInbox`)."""
    device = "cuda:0" if spec.resources.num_gpus > 0 else "cpu"
    here = runtime.for_process(math.floor(spec.resources.num_cpus), device)
    send = _Sender(import_ray(), inbox)
    records = run_group_or_failures(spec, trials, dataset.to(device), Path(storage), here,
                                    TrialProgress(on_epoch=send))
    send.delivered()
    return records


def node_slots(offer: dict[str, float], num_cpus: float, num_gpus: float) -> int:
    """How many trials one node can run at once: a trial's CPUs and GPUs come from a single node."""
    slots = math.floor(offer.get("CPU", 0.0) / num_cpus + 1e-9)
    if num_gpus > 0:
        slots = min(slots, math.floor(offer.get("GPU", 0.0) / num_gpus + 1e-9))
    return max(slots, 0)


def _node_offers(ray: Any) -> list[dict[str, float]]:
    """What each alive node of the cluster offers (Ray's resources by name): a task is placed on one of them."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _slots(ray: Any, spec: StudySpec) -> int:
    """How many trials the cluster can run at once (for the progress view's 'running'), node by node."""
    return sum(node_slots(offer, spec.resources.num_cpus, spec.resources.num_gpus) for offer in _node_offers(ray))


PRIVATE_INSTANCE_CONFIG = {"worker_niceness": 0}
"""Ray starts its workers at niceness 15, below every other process of the machine, so on a workstation
shared with other work its trials get only the cores nothing else wants: with two busy processes on 2 cores,
tests/test_ray.py took 9.4 times as long as at niceness 0. A run's private instance gives its trials the
priority the local executor's workers have. (A cluster started with `ray start` keeps its own setting: README.)"""


def _start_or_connect(ray: Any, options: RayOptions) -> None:
    """Start the run's private instance or connect to `options.address`, keeping the command's SIGTERM
    handler: Ray's own exits with status 1 and no word, where a stopped run must say so and exit 143."""
    handler = signal.getsignal(signal.SIGTERM)
    if options.address is None:  # "local": a private instance, even if another one runs on this machine
        ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 _system_config=PRIVATE_INSTANCE_CONFIG)
    else:
        check_reachable(options.address)
        try:
            ray.init(address=options.address, logging_level=logging.WARNING)
        except ConnectionError as error:
            raise SparsecapError(join_refused(options.address, error)) from None
    if threading.current_thread() is threading.main_thread() and handler is not None:
        signal.signal(signal.SIGTERM, handler)


def _amount(resource: str, amount: float) -> str:
    """A Ray resource as [resources] states it: memory in GiB."""
    return f"{amount / GIB:g} GiB of memory" if resource == "memory" else f"{amount:g} {resource}"


def unplaceable(wanted: dict[str, float], offers: Sequence[dict[str, float]]) -> tuple[list[str], str] | None:
    """The resources no node can give a trial asking for `wanted` (Ray resources), and why; None where a node
    can. A task runs on one node, so each node's offer counts (Ray's "Resources" of each alive node), never the
    cluster's sum."""
    asked = {name: amount for name, amount in wanted.items() if amount > 0}
    if any(all(amount <= offer.get(name, 0.0) for name, amount in asked.items()) for offer in offers):
        return None
    largest = {name: max((offer.get(name, 0.0) for offer in offers), default=0.0) for name in asked}
    short = [name for name in asked if asked[name] > largest[name]] or list(asked)  # else: no node has all at once
    return short, (f"each trial asks for {', '.join(_amount(name, asked[name]) for name in short)} ([resources]) "
                   f"but no node of the Ray cluster offers that (at most "
                   f"{', '.join(_amount(name, largest[name]) for name in short)} on one node)")


def _check_fits(ray: Any, spec: StudySpec, local: bool) -> None:
    """Refuse (local instance) or warn (a cluster may grow) when no node offers what one trial asks for."""
    wanted = {"CPU": spec.resources.num_cpus, "GPU": spec.resources.num_gpus,
              "memory": (spec.resources.memory_gib or 0) * GIB}  # Ray counts memory in bytes
    found = unplaceable(wanted, _node_offers(ray))
    if found is None:
        return
    short, message = found
    if local:
        more = " or give the local instance more (--num-cpus)" if "CPU" in short else ""
        raise SparsecapError(f"{message}: lower [resources]{more}")
    write_line(f"warning: {message}; trials wait until such a node joins", sys.stderr)


def run_on_ray(
    spec: StudySpec,
    pending: Sequence[Trial],
    datasets: dict[DatasetName, ImageDataset],
    storage: Path,
    on_record: Callable[[TrialRecord], None],
    view: StudyProgressView,
    options: RayOptions,
    runtime: Runtime,
    show_progress: bool,
) -> None:
    """Run `pending` as Ray tasks, handing each record to `on_record` (the database writer) as it arrives."""
    ray = import_ray()
    if not pending:  # nothing to run: no need for a Ray instance
        return
    started_here = not ray.is_initialized()
    if started_here:
        _start_or_connect(ray, options)
    in_flight: dict[Any, list[Trial]] = {}
    try:
        _check_fits(ray, spec, local=options.address is None)
        used = {trial.dataset for trial in pending}
        if spec.corruptions.enabled:  # on the driver: concurrent workers must not all generate them
            prepare_corruption_inputs(spec, datasets, used, storage, show_progress)
        references = {name: ray.put(datasets[name]) for name in used}  # once, shared by every task
        resources = spec.resources
        task = ray.remote(_group_task).options(
            num_cpus=resources.num_cpus,
            num_gpus=resources.num_gpus,
            memory=int(resources.memory_gib * GIB) if resources.memory_gib is not None else None,
            max_retries=runtime.max_retries,
            retry_exceptions=False,
            name="sparsecap-trial",
            # OpenMP reads this once, at torch's import in the worker: idle threads sleep (sparsecap.runtime)
            runtime_env={"env_vars": {WAIT_POLICY_VARIABLE: os.environ.get(WAIT_POLICY_VARIABLE, "PASSIVE")}},
        )
        shared = str(Path(storage).resolve())  # workers do not run in the driver's working directory
        inbox = _open_inbox(ray)
        for group in costliest_first(seed_groups(spec, pending), datasets):  # Ray starts tasks in this order
            in_flight[task.remote(spec, group, references[group[0].dataset], shared, runtime, inbox)] = group
        slots, checked = _slots(ray, spec), time.monotonic()
        while in_flight:
            view.set_running(sum(len(group) for group in list(in_flight.values())[:slots]))  # trials, not tasks
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
            for report in _collect(ray, inbox):  # before the records, which end a group's line
                view.epoch_done(report)
            for reference in ready:
                group = in_flight.pop(reference)
                try:
                    records = ray.get(reference)
                except ray.exceptions.RayError as error:  # the worker died more than max_retries times, ...
                    records = [failed_record(
                        spec, trial, datasets[trial.dataset],
                        f"{type(error).__name__} (after at most {runtime.max_retries} retries): {error}", 0.0,
                    ) for trial in group]
                for record in records:
                    on_record(record)
                view.recorded(records)
            if time.monotonic() - checked > SLOTS_SECONDS:
                slots, checked = _slots(ray, spec), time.monotonic()
    finally:
        if started_here:
            ray.shutdown()  # also ends the run's tasks: its private instance stops, or its job on a cluster ends
        else:
            for reference in in_flight:  # interrupted on the caller's instance, which goes on: stop our trials
                ray.cancel(reference, force=True)
