"""Running a whole study into an output directory, resumably.

The directory holds the results database, the resolved spec and versions (`study.json`), the
checkpoints and the report. Each finished trial is one database transaction, so an interrupted run
loses at most the trial in flight, and re-running the same command skips every finished trial.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from sparsecap.data import DatasetName, ImageDataset, dataset_info, load_dataset
from sparsecap.data.corrupted import MANIFEST
from sparsecap.data.subset import take_subset
from sparsecap.errors import SpecError, StudyDirectoryError
from sparsecap.models import ModelConfig
from sparsecap.robustness.adversarial import check_sample_size
from sparsecap.runtime import Runtime, physical_memory_bytes
from sparsecap.sparsity import beyond_memory
from sparsecap.studies.checkpoints import CHECKPOINTS_DIRECTORY, kept_checkpoint_problems
from sparsecap.studies.database import DATABASE_FILE, FAILED, STORAGE_KEY, StudyDatabase, TrialRecord
from sparsecap.studies.environment import versions
from sparsecap.studies.execute import run_group_or_failures, seed_groups
from sparsecap.studies.executor_choice import Executor
from sparsecap.studies.progress import ProgressStyle, StudyProgressView, TrialProgress, counted, write_line
from sparsecap.studies.ray_executor import RayOptions, import_ray, run_on_ray
from sparsecap.studies.spec import STUDY_FILE, StudySpec, spec_differences
from sparsecap.studies.corruption_measure import prepare_corruption_inputs, skipped_corruptions
from sparsecap.studies.trials import expand
from sparsecap.studies.workers import run_on_workers, worker_context, worker_runtimes

LOCK_FILE = ".lock"


@dataclass(frozen=True)
class StudyProgress:
    total: int
    already_finished: int
    ran: int
    failed: tuple[str, ...] = ()
    """Ids of the trials of this run recorded as failed (a rerun retries them)."""


def _refuse_other_study(directory: Path, spec: StudySpec) -> dict[str, Any]:
    """Raise, touching nothing, if `directory` is not a directory or holds a different study; else return the
    study's record ({} where there is none yet). A database with no study recorded and no trial (a run stopped
    between creating it and recording its spec) is this study's to take. Seeds alone do not make another study:
    they are added to it (`_with_recorded_seeds`)."""
    if directory.exists() and not directory.is_dir():
        raise StudyDirectoryError(f"output path {directory} exists and is not a directory")
    if not (directory / DATABASE_FILE).exists():
        if (directory / MANIFEST).is_file():  # as `sparsecap corrupt` refuses a study directory
            raise StudyDirectoryError(f"output path {directory} holds a corrupted dataset ({MANIFEST} of sparsecap "
                                      f"corrupt); give the study a directory of its own")
        return {}
    database = StudyDatabase(directory)
    recorded = database.metadata()
    if "fingerprint" not in recorded:
        if database.rows("trials"):
            raise StudyDirectoryError(
                f"{directory / DATABASE_FILE} holds trials but no record of their study (its study table is "
                f"empty), so {spec.name!r} cannot be checked against them; nothing was changed. Run it into a new "
                f"--out directory (sparsecap report still reads these trials)"
            )
        return recorded
    recorded_spec = recorded.get("spec") if isinstance(recorded.get("spec"), dict) else {}
    differences = [text for key, text in spec_differences(recorded_spec, spec.resolved()).items() if key != "seeds"]
    if recorded["fingerprint"] != spec.fingerprint() and (differences or not recorded_spec):
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise StudyDirectoryError(
            f"{directory} holds results of a different study ({recorded_spec.get('name', 'unknown')!r}), "
            f"which differs in {shown or 'its fingerprint'}; nothing was changed. Use a new --out directory "
            f"for {spec.name!r}, or resume that study as it was made: sparsecap run {directory / STUDY_FILE}, "
            f"with no --set that changes it"
        )
    return recorded


def seeds_note(recorded: Sequence[int], named: Sequence[int]) -> str | None:
    """What a rerun naming other seeds than a study's does to it, or None where they are the same: seeds it adds
    join the study, and recorded ones it leaves out stay in it (and in its report), so nothing is lost."""
    added = sorted(set(named) - set(recorded))
    kept = sorted(set(recorded) - set(named))
    if not added and not kept:
        return None
    parts = ([f"adding seed(s) {', '.join(map(str, added))} to the {len(recorded)} it holds"] if added else []) + (
        [f"keeping its seed(s) {', '.join(map(str, kept))}, which the spec leaves out"] if kept else [])
    return f"{'; '.join(parts)}; the study now has seeds {', '.join(map(str, sorted({*recorded, *named})))}"


def _with_recorded_seeds(recorded: Sequence[int], spec: StudySpec) -> StudySpec:
    """`spec` with every seed its study already holds: rerunning a study with more seeds extends it in place
    (the trials of one seed never depend on another's), and naming fewer drops none."""
    if set(recorded) <= set(spec.seeds):
        return spec
    return spec.model_copy(update={"seeds": sorted({*spec.seeds, *recorded})})


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """Hold the directory's lock for the whole run: two runs into one directory would duplicate work."""
    with open(directory / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyDirectoryError(
                f"another sparsecap run is using {directory}; wait for it to finish (or stop it) first"
            ) from None
        yield


STUDY_FILE_KEYS = ("spec", "fingerprint", "seeds", "versions", "created")
"""What study.json repeats of the database's study table (with `devices`, from the trials)."""


def _open_study(directory: Path, spec: StudySpec) -> tuple[StudyDatabase, StudySpec]:
    """The directory's database, recording the spec and versions the first time (and the seeds a rerun adds),
    and its study.json; with the spec of the study it holds now (every seed recorded)."""
    database = StudyDatabase.create(directory)
    recorded = database.metadata()
    if "fingerprint" not in recorded:
        database.write_metadata({
            "spec": spec.resolved(),
            "fingerprint": spec.fingerprint(),
            "seeds": spec.seeds,
            "versions": versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    else:
        recorded_seeds = recorded.get("seeds") if isinstance(recorded.get("seeds"), list) else []
        note = seeds_note(recorded_seeds, spec.seeds)
        spec = _with_recorded_seeds(recorded_seeds, spec)
        if note is not None:
            write_line(f"{directory}: {note}", sys.stderr)
        # Seeds added, or a spec record damaged under an intact fingerprint (which this spec matched): written anew.
        if recorded["fingerprint"] != spec.fingerprint() or not isinstance(recorded.get("spec"), dict):
            database.write_metadata({"spec": spec.resolved(), "fingerprint": spec.fingerprint(), "seeds": spec.seeds})
    _write_study_file(directory, database)
    return database, spec


def _recorded_storage(directory: Path, record: dict[str, Any]) -> Path | None:
    """The `--storage` the study's last run wrote its checkpoints to (None: the study directory), said on stderr:
    a resume that left the option out would otherwise find no checkpoint and train every kept trial again."""
    recorded = record.get(STORAGE_KEY)
    if not recorded:
        return None
    write_line(f"{directory}: checkpoints in {recorded}, the --storage of the study's last run "
               f"(give --storage to choose another)", sys.stderr)
    return Path(recorded)


def _checkpoints_to_redo(rows: list[dict[str, Any]], storage: Path) -> dict[str, str]:
    """Kept trials whose checkpoint is missing or no longer what was written: trial id -> the problem and path."""
    paths = {row["trial_id"]: storage / row["checkpoint"] for row in rows}
    return {trial_id: f"{problem} ({paths[trial_id]})"
            for trial_id, problem in kept_checkpoint_problems(rows, storage).items()}


@contextmanager
def _writable(directory: Path, option: str = "--out") -> Iterator[None]:
    """Turn an unwritable output directory (read-only, under a file, in /proc) into a plain message naming the
    `option` that chose it."""
    try:
        yield
    except OSError as error:
        raise StudyDirectoryError(
            f"cannot write the study to {directory}: {error.strerror or error} ({error.filename or directory}); "
            f"choose a writable {option} directory"
        ) from None


def run_study(
    spec: StudySpec,
    directory: Path,
    data_root: Path | None = None,
    download: bool = False,
    progress: ProgressStyle = ProgressStyle.NONE,
    executor: Executor = Executor.LOCAL,
    ray_options: RayOptions | None = None,
    storage: Path | None = None,
    runtime: Runtime | None = None,
) -> StudyProgress:
    """Run every trial of `spec` not yet finished (or diverged) in `directory`'s database.

    Trials recorded as failed are run again, and so are kept trials whose checkpoint is missing or
    damaged (said on stderr). Checkpoints go to `storage`/checkpoints (default: the storage the study's last
    run recorded, else the study directory's), their database paths relative to `storage`; with Ray, every node
    must see `storage`.
    """
    directory = Path(directory)
    record = _refuse_other_study(directory, spec)
    if executor is Executor.RAY:
        import_ray()  # a missing Ray is an error before anything is created
    else:  # a Ray node's memory is not this machine's
        _refuse_beyond_memory(spec)
    runtime = runtime or Runtime()
    workers = 1 if executor is Executor.RAY else runtime.workers_for(len(seed_groups(spec, expand(spec))))
    waiting = waiting_threads(spec, executor, runtime, workers)
    if waiting is not None:
        write_line(f"warning: {waiting}", sys.stderr)
    context = worker_context() if workers > 1 else None  # its fork server starts while the data loads
    # Load data before creating anything, so a missing dataset leaves nothing behind.
    datasets: dict[DatasetName, ImageDataset] = {
        name: take_subset(load_dataset(name, data_root, download), spec.train_examples, spec.test_examples)
        for name in spec.datasets
    }
    for line in skipped_corruptions(spec):  # said once, before anything is created; a named one is refused
        write_line(line, sys.stderr)
    if spec.adversarial.enabled:  # before any training: a too-large sample would fail every trial
        for name, dataset in datasets.items():
            check_sample_size(spec.adversarial.examples, len(dataset.test_labels), name.value)
    storage = storage if storage is not None else _recorded_storage(directory, record)
    if storage is not None:  # before any training: every trial would train, then fail to save its checkpoint
        with _writable(Path(storage), "--storage"):
            (Path(storage) / CHECKPOINTS_DIRECTORY).mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        with _writable(directory):
            directory.mkdir(parents=True, exist_ok=True)
            held.enter_context(_exclusive(directory))
            _refuse_other_study(directory, spec)  # again, locked: another spec's run may have made it meanwhile
            database, spec = _open_study(directory, spec)
            # Where this run writes checkpoints, for the report's check of them (None: the study directory).
            database.write_metadata({STORAGE_KEY: str(Path(storage).resolve()) if storage is not None else None})
        try:
            return _run_pending(spec, database, datasets, progress, executor, ray_options or RayOptions(),
                                Path(storage) if storage is not None else directory, runtime, workers, context)
        finally:  # also after Ctrl-C or a failure: it lists the devices of every trial recorded
            with _writable(directory):
                _write_study_file(directory, database)


def waiting_threads(spec: StudySpec, executor: Executor, runtime: Runtime, workers: int) -> str | None:
    """Why the chosen `--threads` will make trials wait for one another's cores, which the thread policy
    never does (each process gets its share): more torch threads on this machine than its cores, or more in
    a Ray task than the CPUs Ray places it by. None where they fit, or where the policy chooses them."""
    threads = runtime.threads
    if threads is None:
        return None
    if executor is Executor.RAY:
        reserved = spec.resources.num_cpus
        return None if threads <= reserved else (
            f"--threads {threads} is more than the {reserved:g} CPU(s) each Ray task reserves ([resources] "
            f"num_cpus), by which Ray places tasks: tasks on one node will wait for one another's cores; raise "
            f"num_cpus or lower --threads")
    if runtime.device != "cpu" or threads * workers <= runtime.cores:
        return None
    return (f"--threads {threads} × {counted(workers, 'worker')} = {threads * workers} torch threads for this "
            f"machine's {counted(runtime.cores, 'CPU')}: trials will wait for cores held by other threads; leave --threads out "
            f"(each worker then gets its share) or run fewer --workers")


def _refuse_beyond_memory(spec: StudySpec) -> None:
    """Each architecture's largest model must fit in this machine's memory, said before anything is created:
    otherwise every trial of that model fails only once its weights are allocated."""
    for architecture, dataset in itertools.product(spec.architectures, spec.datasets):
        largest = ModelConfig(architecture, max(spec.widths), max(spec.depths_for(architecture)))
        problem = beyond_memory(largest, dataset_info(dataset), physical_memory_bytes())
        if problem is not None:
            raise SpecError(f"{spec.name!r} cannot run here: {problem}; choose smaller widths or depths")


def _write_study_file(directory: Path, database: StudyDatabase) -> None:
    """study.json, written anew from the database at the start and end of every run (so a deleted or damaged
    one comes back): the recorded study, and where its trials ran and how many on each (a study can be
    resumed on another machine, so this is a list, from the trials' own records)."""
    keys = ("device", "device_name", "torch_version", "cuda_version")
    counts = Counter(tuple(row[key] for key in keys) for row in database.rows("trials") if row["device"])
    recorded = database.metadata()
    metadata = {key: recorded[key] for key in STUDY_FILE_KEYS if key in recorded}
    metadata["devices"] = [dict(zip(keys, placement, strict=True)) | {"trials": count}
                           for placement, count in sorted(counts.items(), key=lambda item: -item[1])]
    (directory / STUDY_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _run_pending(
    spec: StudySpec,
    database: StudyDatabase,
    datasets: dict[DatasetName, ImageDataset],
    progress: ProgressStyle,
    executor: Executor,
    ray_options: RayOptions,
    storage: Path,
    runtime: Runtime,
    workers: int,
    context: BaseContext | None,
) -> StudyProgress:
    trials = expand(spec)
    rows = database.rows("trials")
    redo = _checkpoints_to_redo(rows, storage)
    for trial_id, problem in redo.items():
        write_line(f"checkpoint of {trial_id} is {problem}: running the trial again", sys.stderr)
    kept = {row["trial_id"] for row in rows if row["status"] != FAILED} - set(redo)
    pending = [trial for trial in trials if trial.trial_id not in kept]
    failed: list[str] = []

    def write(record: TrialRecord) -> None:  # the single writer: one transaction per trial
        database.record_trial(record)
        if record.status == FAILED:
            failed.append(record.trial_id)

    bars = progress is ProgressStyle.BARS
    groups = seed_groups(spec, pending)
    with StudyProgressView(spec.name, len(trials), len(trials) - len(pending), progress) as view:
        if executor is Executor.RAY:
            run_on_ray(spec, pending, datasets, storage, write, view, ray_options, runtime, bars)
        elif context is not None and len(groups) > 1:
            if spec.corruptions.enabled:  # once, here: concurrent workers must not all generate them
                prepare_corruption_inputs(spec, datasets, {trial.dataset for trial in pending}, storage, bars)
            run_on_workers(context, spec, groups, datasets, storage, write, view, runtime, workers)
        else:  # in this process, as one worker of `workers` would (the same threads, so the same numbers)
            here = worker_runtimes(runtime, workers)[0]
            on_device = {name: dataset.to(here.device) for name, dataset in datasets.items()}
            shown = TrialProgress(bars, view.epoch_done)
            for group in groups:
                view.set_running(len(group))
                results = run_group_or_failures(spec, group, on_device[group[0].dataset], storage,
                                                here, shown)
                for result in results:
                    write(result)
                view.recorded(results)
    return StudyProgress(total=len(trials), already_finished=len(trials) - len(pending), ran=len(pending),
                         failed=tuple(failed))
