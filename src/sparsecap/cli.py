"""The `sparsecap` command line: run studies, report them, describe models, list datasets."""

from __future__ import annotations

import argparse
import atexit
import errno
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from pathlib import Path

import sparsecap
from sparsecap.errors import SparsecapError, StudyDirectoryError
from sparsecap.studies.ray_address import cluster_endpoint

if TYPE_CHECKING:
    from sparsecap.data.integrity import Verification
    from sparsecap.report.analysis import Analysis
    from sparsecap.studies.spec import StudySpec

EXIT_TRIALS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class TerminationHandler:
    """The SIGTERM handler (`kill`, a scheduler's time limit or preemption): stops a run as Ctrl-C does, by
    raising KeyboardInterrupt, so every `finally` that stops workers and Ray tasks runs and no trial's error
    handling takes it for a failure; and remembers that SIGTERM came, which the exception cannot carry:
    Ray's `ray.wait` runs signal handlers inside its own check and raises a fresh KeyboardInterrupt."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signal_number: int, frame: FrameType | None) -> None:
        self.received = True
        raise KeyboardInterrupt


def _integer_in(minimum: int, maximum: int | None, description: str) -> Callable[[str], int]:
    """An argparse type for whole numbers from `minimum` to `maximum` (None: no bound), with an error that
    says what was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {description}, got {value}")
        return value

    return parse


_positive_int = _integer_in(1, None, "a positive integer")
_non_negative_int = _integer_in(0, None, "a non-negative integer")


def _path(text: str) -> Path:
    """A path that is not empty (`--out "$UNSET"` would otherwise mean the current directory), in UTF-8: paths are
    written into study.json and the report, which a name of other bytes would fail only after the study ran."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise argparse.ArgumentTypeError(f"{shown!r} is not UTF-8 text; use a path whose names are UTF-8") from None
    return Path(text)


def _study_directory(text: str) -> Path:
    """A study directory, or its study.json, which `sparsecap run` takes for the study too."""
    from sparsecap.studies.spec import STUDY_FILE

    path = _path(text)
    return path.parent if path.name == STUDY_FILE and path.is_file() else path


def _seed(text: str) -> int:
    """A seed as a study's are: 0 to 2^63 - 1, what the results database stores and every generator takes."""
    from sparsecap.studies.spec import SQLITE_LARGEST_INTEGER

    return _integer_in(0, SQLITE_LARGEST_INTEGER, f"a seed from 0 to {SQLITE_LARGEST_INTEGER}")(text)


def _positive_int_or_auto(text: str) -> int | None:
    """`auto` (None: the policy decides) or a positive integer."""
    return None if text == "auto" else _integer_in(1, None, "a positive integer or auto")(text)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=_path, default=None,
                        help="directory holding datasets, searched first; then $SPARSECAP_DATA and ~/.cache/sparsecap/data")


def _refuse_more_than_the_cpus(arguments: argparse.Namespace) -> None:
    """Local workers and threads beyond this machine's usable CPUs only wait for one another (and a huge count
    exhausts memory or overflows torch), so they are refused up front, naming what is valid."""
    from sparsecap.runtime import available_cores

    cores = available_cores()
    for option, value in (("--workers", arguments.workers), ("--threads", arguments.threads)):
        if value is not None and value > cores:
            raise SparsecapError(f"{option} {value}: this run may use {cores} CPUs here; expected 1 to {cores}"
                                 f"{' or auto' if option == '--workers' else ''}")


def _command_run(arguments: argparse.Namespace) -> int:
    from sparsecap.runtime import physical_cores
    from sparsecap.studies.executor_choice import Executor
    from sparsecap.studies.fork_server import start_fork_server

    executor = Executor(arguments.executor)
    if executor is not Executor.RAY and (arguments.address is not None or arguments.num_cpus is not None):
        raise SparsecapError("--address and --num-cpus go with --executor ray")
    if executor is Executor.RAY and arguments.workers is not None:
        raise SparsecapError("--workers goes with the local executor; with --executor ray, Ray runs as many trials "
                             "at once as the cluster's CPUs allow ([resources] num_cpus per trial)")
    if executor is Executor.LOCAL:
        _refuse_more_than_the_cpus(arguments)
    if arguments.address is not None:  # a malformed address is refused before anything is written
        cluster_endpoint(arguments.address, f"--address {arguments.address}")
    if executor is Executor.LOCAL and arguments.workers != 1 and physical_cores() > 1:
        start_fork_server()  # its imports run beside this process's, should the study use workers
    spec = _run_spec(arguments.spec, arguments.set)
    from sparsecap.devices import detect, devices_of, resolve
    from sparsecap.runtime import Runtime
    from sparsecap.studies import StudyDatabase, run_study
    from sparsecap.studies.progress import ProgressStyle, counted, write_line
    from sparsecap.studies.ray_executor import RayOptions
    from sparsecap.studies.spec_warnings import spec_warnings
    from sparsecap.training.config import Precision
    from sparsecap.training.precision import bfloat16_emulated

    for warning in spec_warnings(spec):
        write_line(f"warning: {warning}", sys.stderr)
    available = detect()
    device = resolve(arguments.device, available)  # before anything is written: a missing device is refused
    if spec.training.precision is Precision.BFLOAT16 and bfloat16_emulated(device):
        write_line(f'warning: [training] precision = "bfloat16" on this {device} is emulated (it lacks oneDNN\'s '
                   f"bfloat16 kernels), so training runs many times slower than in float32 (22x for VGG11 on an "
                   f"AVX2 AMD EPYC); leave precision at float32 here, or run on a GPU", sys.stderr)
    runtime = Runtime(arguments.threads, workers=arguments.workers, device=device,
                      devices=tuple(devices_of(device, available)), max_retries=arguments.max_retries)
    directory = arguments.out or _default_directory(arguments.spec, spec.name)
    progress = run_study(spec, directory, arguments.data_root, arguments.download,
                         ProgressStyle.for_stream(not arguments.no_progress, sys.stderr), executor,
                         RayOptions(arguments.address, arguments.num_cpus), arguments.storage,
                         runtime)
    failed = f", {len(progress.failed)} failed" if progress.failed else ""
    print(f"{spec.name}: {counted(progress.ran, 'trial')} run{failed}, {progress.already_finished} already finished, "
          f"{progress.total} in all; results in {directory}")
    trials = StudyDatabase(directory).rows("trials")
    _say_under_trained(spec, trials)
    if progress.failed:
        errors = {row["trial_id"]: row["error"] for row in trials}
        print("failed trials (whole errors in the database's trials.error; a rerun retries them):", file=sys.stderr)
        for trial_id in progress.failed:
            last_line = ((errors.get(trial_id) or "").strip().splitlines() or ["(no error recorded)"])[-1]
            print(f"  {trial_id}: {last_line}", file=sys.stderr)
    if not arguments.no_report:
        _report_after_run(directory)
    return EXIT_TRIALS_FAILED if progress.failed else 0


def _say_under_trained(spec: StudySpec, trials: list[dict[str, Any]]) -> None:
    """Say, with or without a report, how many finished trials max_epochs ended before the stopping rule: their
    curves show how far training got, and every verdict over them is flagged."""
    from sparsecap.report.aggregate import under_trained_note

    note = under_trained_note(trials, spec.training.stop_loss)
    if note:
        print(f"{note}; verdicts over them are flagged [UNDER-TRAINED]", file=sys.stderr)


def _run_spec(spec_argument: str, overrides: list[str] | None) -> StudySpec:
    """The spec `sparsecap run` was given. A study directory's study.json is the readable copy of what its
    database records: where the copy cannot be read, or (without --set) describes another study than the
    database's, as one copied from elsewhere does, the record wins, with a warning, and the run writes the
    copy anew; so the resume the README and the incomplete-study warning suggest works."""
    from sparsecap.studies import load_spec

    path = Path(spec_argument)
    recorded = _recorded_beside(path)
    try:
        spec = load_spec(spec_argument, overrides)
    except SparsecapError as error:
        if recorded is None or _readable_spec(spec_argument):
            raise  # not a study's copy, or the overrides are what is wrong
        return _recorded_spec(path, recorded, overrides, str(error))
    if recorded is None or overrides or recorded.get("fingerprint") in (None, spec.fingerprint()):
        return spec
    return _recorded_spec(path, recorded, overrides, f"{path} describes another study ({spec.name!r}, fingerprint "
                                                     f"{spec.fingerprint()[:12]}) than its database records")


def _recorded_beside(path: Path) -> dict[str, Any] | None:
    """What the database beside a study.json file records (its spec a table of settings), or None."""
    from sparsecap.studies import StudyDatabase
    from sparsecap.studies.database import DATABASE_FILE
    from sparsecap.studies.spec import STUDY_FILE

    if path.name != STUDY_FILE or not path.is_file() or not (path.parent / DATABASE_FILE).is_file():
        return None  # a directory of that name is no copy to replace
    recorded = StudyDatabase(path.parent).metadata()
    return recorded if isinstance(recorded.get("spec"), dict) else None


def _recorded_spec(path: Path, recorded: dict[str, Any], overrides: list[str] | None, why: str) -> StudySpec:
    from sparsecap.studies.database import DATABASE_FILE
    from sparsecap.studies.spec import spec_data_of_record, spec_of_data

    database = path.parent / DATABASE_FILE
    spec = spec_of_data(spec_data_of_record(recorded["spec"]), overrides, f"{database}'s spec with the --set overrides")
    print(f"warning: {why}\nwarning: running the spec recorded in {database} instead; this run writes {path} anew",
          file=sys.stderr)
    return spec


def _readable_spec(spec_argument: str) -> bool:
    from sparsecap.studies import load_spec

    try:
        load_spec(spec_argument)
    except SparsecapError:
        return False
    return True


def _default_directory(spec_argument: str, name: str) -> Path:
    """Where a run without --out goes: the study directory whose study.json is the spec, so rerunning it
    resumes that study, else runs/<study name>."""
    from sparsecap.studies.spec import STUDY_FILE

    path = Path(spec_argument)
    return path.parent if path.name == STUDY_FILE and path.is_file() else Path("runs") / name


def _report_after_run(directory: Path) -> None:
    """The report and claims of the study just run, from one analysis. A study with nothing to summarise (every
    trial failed or diverged) says so instead: the run itself went as its exit status says (1 with failures,
    else 0), which a refusal's status 2 would misstate."""
    from sparsecap.report import REPORT_DIRECTORY, analyse, draw_report, read_results  # matplotlib, SciPy: here

    try:
        results = read_results([directory])
        analysis = analyse(results)
        report = draw_report(results, analysis, directory / REPORT_DIRECTORY)
    except StudyDirectoryError as error:
        print(f"no report: {error}", file=sys.stderr)
        return
    print(f"report: {report}")
    _print_analysis(analysis, "text")


def _command_report(arguments: argparse.Namespace) -> int:
    from sparsecap.report import write_report

    print(f"report: {write_report(*arguments.directories, out=arguments.out)}")
    return 0


def _print_analysis(analysis: Analysis, output: str) -> None:
    """The claims table of analysed results, as text, json or markdown."""
    from sparsecap.report.claims_format import claims_json, claims_markdown, claims_text, collapses_text

    if output == "json":
        print(json.dumps(claims_json(analysis), indent=2))
    elif output == "markdown":
        print(claims_markdown(analysis), end="")
    else:
        print(claims_text(analysis.claims) + "\n" + collapses_text(analysis.collapses), end="")


def _command_claims(arguments: argparse.Namespace) -> int:
    from sparsecap.report import analyse, read_results

    output = "json" if arguments.json else "markdown" if arguments.markdown else "text"
    _print_analysis(analyse(read_results(arguments.directories)), output)
    return 0


def _command_describe(arguments: argparse.Namespace) -> int:
    from sparsecap.describe import describe_model, format_table
    from sparsecap.models import ModelConfig, default_base, parse_model_name
    from sparsecap.sparsity import MaskGranularity, parse_allocation

    family, named_depth = parse_model_name(arguments.architecture)
    if named_depth is not None and arguments.depth not in (None, named_depth):
        raise SparsecapError(f"{arguments.architecture} has depth {named_depth}, not --depth {arguments.depth}")
    depth = arguments.depth or named_depth or family.base_depth
    width = arguments.width or (family.depth_family_width if depth != family.base_depth else family.base_width)
    model = ModelConfig(family.name, width, depth)
    default = default_base(model)
    base = ModelConfig(family.name, arguments.base_width or default.width, arguments.base_depth or default.depth)
    granularity = MaskGranularity.KERNEL if arguments.whole_kernels else MaskGranularity.WEIGHT
    allocation = parse_allocation(arguments.allocation)
    description = describe_model(model, base, arguments.dataset, allocation, arguments.seed, granularity)
    if arguments.json:
        print(json.dumps(description.to_json(), indent=2))
    else:
        print(f"{family.name} width {model.width} depth {model.depth} on {arguments.dataset}, masked to "
              f"{family.name} width {base.width} depth {base.depth} ({allocation.value} allocation, "
              f"{granularity.value} masks)")
        print(format_table(description))
    return 0


def _command_datasets(arguments: argparse.Namespace) -> int:
    from sparsecap.data import DatasetName, list_availability, search_roots
    from sparsecap.data.corrupted import CorruptedLayout, describe_availability
    from sparsecap.data.integrity import verify_corrupted, verify_dataset
    from sparsecap.data.locate import root_problems

    roots = search_roots(arguments.data_root)
    differing = []
    for entry in list_availability(arguments.data_root):
        files = arguments.verify and entry.available and entry.name is not DatasetName.DIGITS  # digits: bundled
        verification = verify_dataset(entry.name, Path(entry.location)) if files else None
        differing += _print_dataset(entry.name.value, entry.available, entry.location, verification)
    for layout in CorruptedLayout:  # corrupted test sets: published folders, or written by `sparsecap corrupt`
        directory, where = describe_availability(layout, roots)
        verification = verify_corrupted(layout, directory) if arguments.verify and directory else None
        differing += _print_dataset(layout.value, directory is not None, where, verification)
    for problem in root_problems(roots):
        print(f"note: {problem}", file=sys.stderr)
    if not differing:
        return 0
    print(f"error: {', '.join(differing)}: not the published files (for a corrupted set, not as `sparsecap "
          f"corrupt` wrote them), or unreadable, as the lines above say: give an unreadable file read permission; "
          f"replace one that differs: delete it and `sparsecap run --download` fetches MNIST, Fashion-MNIST and "
          f"CIFAR again, `sparsecap corrupt` writes a corrupted set again", file=sys.stderr)
    return 1


def _print_dataset(name: str, available: bool, where: str, verification: Verification | None) -> list[str]:
    """One dataset's line of `sparsecap datasets`, with what `--verify` found; [name] where its files differ."""
    if verification is None:
        print(f"{name:<15}{'available' if available else 'missing':<11}{where}", flush=True)
        return []
    state = "verified" if verification.verified else "DIFFERS"
    print(f"{name:<15}{state:<11}{where}: {verification.checked}", flush=True)
    for problem in verification.problems:
        print(f"{'':<26}{problem}", flush=True)
    return [] if verification.verified else [name]


def _command_corrupt(arguments: argparse.Namespace) -> int:
    from sparsecap.corruptions.datasets import write_corrupted_dataset
    from sparsecap.data import load_dataset
    from sparsecap.data.corrupted import MANIFEST
    from sparsecap.studies.database import DATABASE_FILE
    from sparsecap.studies.progress import ProgressStyle

    if (arguments.out / DATABASE_FILE).is_file():  # its corrupted files would mix with a study's results
        raise SparsecapError(f"--out {arguments.out} is a study directory (it holds {DATABASE_FILE}); give the "
                             f"corrupted dataset a directory of its own")
    dataset = load_dataset(arguments.dataset, arguments.data_root, arguments.download)
    corruptions = None if arguments.corruptions is None else [
        name.strip() for name in arguments.corruptions.split(",") if name.strip()]
    summary = write_corrupted_dataset(
        dataset, arguments.out, corruptions=corruptions, seed=arguments.seed, severity=arguments.severity,
        limit=arguments.limit, include_train=arguments.train, frost_directory=arguments.frost_dir,
        pessimal_matrix=arguments.pessimal_matrix,
        progress=ProgressStyle.for_stream(not arguments.no_progress, sys.stderr),
    )
    for name, reason in summary.skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if summary.kept:
        print(f"kept {', '.join(summary.kept)}: already written by an earlier run with these settings", file=sys.stderr)
    print(f"{len(summary.written)} corruptions of {dataset.info.name.value} ({summary.suite.value} layout) "
          f"written to {summary.directory}, manifest {summary.directory / MANIFEST}")
    return 0


def _command_doctor(arguments: argparse.Namespace) -> int:
    from sparsecap.devices import auto_workers_phrase, cpu_name, detect, resolve
    from sparsecap.runtime import THREADED_FROM_MULTIPLY_ACCUMULATES, available_cores, physical_cores
    from sparsecap.studies.environment import versions

    installed = versions()
    available = detect()
    print(f"sparsecap {installed['sparsecap']}, Python {installed['python']}, numpy {installed['numpy']}, "
          f"on {installed['platform']}")
    print(f"torch {available.torch_version}, CUDA {available.cuda_version or 'none (CPU-only build)'}")
    print(f"cpu       {cpu_name()}: {available_cores()} usable CPUs, {physical_cores()} physical cores")
    for index, name in enumerate(available.cuda):
        print(f"cuda:{index:<5}{name}")
    if available.mps:
        print("mps       Apple MPS")
    auto_device = resolve("auto", available)
    print(f"--device auto runs on: {auto_device}; --workers auto: {auto_workers_phrase(auto_device)}; "
          f"torch threads per trial: 1 below "
          f"{THREADED_FROM_MULTIPLY_ACCUMULATES:,} multiply-accumulates per example, else every core of its worker")
    return 0


def _command_presets(arguments: argparse.Namespace) -> int:
    from sparsecap.studies import expand, list_presets, load_spec, preset_text
    from sparsecap.studies.progress import counted

    if arguments.name is not None:
        sys.stdout.write(preset_text(arguments.name))
        return 0
    for name in list_presets():
        spec = load_spec(name)
        datasets = ",".join(dataset.value for dataset in spec.datasets)
        schedules = ",".join(schedule.value for schedule in spec.schedules)
        print(f"{name:<28}{len(expand(spec)):>5} trials  {datasets}, {spec.family.value} family, "
              f"schedules {schedules}, at most {counted(spec.training.max_epochs, 'epoch')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sparsecap {sparsecap.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a study and write its report")
    run.add_argument("spec", help="a preset name (see `sparsecap presets`) or a path to a TOML spec")
    run.add_argument("--out", type=_path, default=None,
                     help="output directory (default: the study directory of a study.json given as the spec, which "
                          "resumes it; else runs/<study name>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec value, e.g. --set training.max_epochs=3 --set 'datasets=[\"mnist\"]'")
    _add_data_arguments(run)
    run.add_argument("--download", action="store_true", help="download missing datasets (checksum-verified)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars: one plain line per finished trial instead (as when stderr is not a "
                          "terminal)")
    run.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N|mps",
                     help="where trials run (default auto: CUDA if there is a GPU, then MPS, then the CPU; cuda: every "
                          "GPU, one worker each); how a trial runs, not what it is: a study can be resumed on another")
    run.add_argument("--workers", type=_positive_int_or_auto, default=None, metavar="N|auto",
                     help="trial processes of the local executor (default auto: one per physical core, at most one "
                          "per group of trials)")
    run.add_argument("--threads", type=_positive_int, default=None,
                     help="torch threads per trial (default: 1 for small models, every core for large ones; "
                          "see docs/performance.md)")
    run.add_argument("--no-report", action="store_true",
                     help="do not write the report nor print the claims table at the end")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: trials on this machine, in --workers processes (default); ray: Ray tasks on a "
                          "local Ray instance or, with --address, a running cluster (pip install 'sparsecap[cluster]')")
    run.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                     help="Ray cluster to use (default: start a local Ray instance for this run)")
    run.add_argument("--num-cpus", type=_positive_int, default=None,
                     help="CPUs of the local Ray instance (default: all of this machine's)")
    run.add_argument("--max-retries", type=_non_negative_int, default=2,
                     help="reruns of a trial whose worker process died (a local worker or a Ray task) before it is "
                          "recorded failed (default 2)")
    run.add_argument("--storage", type=_path, default=None, metavar="PATH",
                     help="where checkpoints are written (PATH/checkpoints), seen by every node "
                          "(default: the one the study's last run used, else the output directory)")
    run.set_defaults(handler=_command_run, stopped_note="finished trials are saved; rerun the same command to resume")

    report = commands.add_parser("report", help="write the figures and HTML page of one study, or of several combined")
    report.add_argument("directories", type=_study_directory, nargs="+", metavar="DIR",
                        help="study directories (or their study.json)")
    report.add_argument("--out", type=_path, default=None, metavar="REPORTDIR",
                        help="where to write the report (default: DIR/report; required with several studies)")
    report.set_defaults(handler=_command_report)

    claims = commands.add_parser("claims", help="whether the paper's claims hold: verdicts with confidence intervals")
    claims.add_argument("directories", type=_study_directory, nargs="+", metavar="DIR",
                        help="study directories; several are compared as one (e.g. static in one, posttrain in another)")
    claims_format = claims.add_mutually_exclusive_group()
    claims_format.add_argument("--json", action="store_true", help="print JSON, with each verdict's curves")
    claims_format.add_argument("--markdown", action="store_true", help="print a Markdown table")
    claims.set_defaults(handler=_command_claims)

    describe = commands.add_parser("describe", help="per-layer counts, density and connectivity of a masked model")
    describe.add_argument("architecture", help="mlp, vgg, resnet, or a member such as vgg16 or resnet50")
    describe.add_argument("--width", type=_positive_int,
                          help="units per hidden layer (mlp) or first layer's channels (vgg, resnet)")
    describe.add_argument("--depth", type=_positive_int,
                          help="hidden layers (mlp) or member (vgg: 11, 13, 16; resnet: 18, 34, 50)")
    describe.add_argument("--base-width", type=_positive_int,
                          help="width of the dense base the model is masked to (default: the width family's "
                               "base, or the model's own width for a deeper member)")
    describe.add_argument("--base-depth", type=_positive_int,
                          help="depth of the dense base (default: the family's shallowest member)")
    describe.add_argument("--whole-kernels", action="store_true",
                          help="mask whole convolution kernels (total within one kernel of the base)")
    describe.add_argument("--dataset", default="mnist", help="sets input shape and classes (no data is read)")
    describe.add_argument("--allocation", default="uniform", help="uniform, staggered or erk")
    describe.add_argument("--seed", type=_seed, default=0, help="seed of the random mask")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.set_defaults(handler=_command_describe)

    datasets = commands.add_parser("datasets", help="list datasets, whether available and from where")
    _add_data_arguments(datasets)
    datasets.add_argument("--verify", action="store_true",
                          help="also compare each dataset found with the published files (checksums of their "
                               "content; for a set `sparsecap corrupt` wrote, the checksums of its manifest); "
                               "exit status 1 if any differs")
    datasets.set_defaults(handler=_command_datasets)

    corrupt = commands.add_parser("corrupt", help="write a corrupted test set (MNIST-C or CIFAR-C layout)")
    corrupt.add_argument("dataset", help="mnist, fashion-mnist (MNIST-C layout), cifar10 or cifar100 (CIFAR-C layout)")
    corrupt.add_argument("--out", type=_path, required=True, help="output directory")
    corrupt.add_argument("--corruptions", default=None, metavar="A,B",
                         help="comma-separated names (default: the published set of the layout)")
    corrupt.add_argument("--seed", type=_seed, default=0, help="seed of the random corruptions (default 0)")
    corrupt.add_argument("--severity", type=_integer_in(1, 5, "a severity from 1 to 5"), default=None,
                         help="MNIST-C only: one severity for every corruption (default: each one's published)")
    corrupt.add_argument("--limit", type=_positive_int, default=None, help="corrupt only the first N images")
    corrupt.add_argument("--train", action="store_true", help="MNIST-C only: write the train split too")
    corrupt.add_argument("--frost-dir", type=_path, default=None,
                         help="frost pictures frost1.png ... frost5.jpg (default: $SPARSECAP_FROST; "
                              "without them frost is skipped)")
    corrupt.add_argument("--pessimal-matrix", type=_path, default=None, metavar="PATH",
                         help="MNIST-C's pessimal_noise_matrix file (default: $SPARSECAP_PESSIMAL_MATRIX; "
                              "without it pessimal_noise is skipped, and refused where named)")
    _add_data_arguments(corrupt)
    corrupt.add_argument("--download", action="store_true", help="download the clean dataset if missing")
    corrupt.add_argument("--no-progress", action="store_true",
                         help="no progress bar: one plain line per corruption written instead (as when stderr is "
                              "not a terminal)")
    corrupt.set_defaults(handler=_command_corrupt,
                         stopped_note="corruptions written so far are kept; rerun the same command to write the rest")

    doctor = commands.add_parser("doctor", help="what this machine offers: devices, cores, threads, versions")
    doctor.set_defaults(handler=_command_doctor)

    presets = commands.add_parser("presets", help="list the shipped study presets, or print one's TOML")
    presets.add_argument("name", nargs="?", default=None, metavar="NAME",
                         help="print this preset's TOML, to start a spec of your own: "
                              "sparsecap presets quick > my-study.toml")
    presets.set_defaults(handler=_command_presets)
    return parser


def os_error_text(error: OSError) -> str:
    """What the system refused, on which path, and what would do instead."""
    what = error.strerror or str(error)
    if error.filename is None:
        return what
    denied = "; give a path this user may read (and write, for an output)"
    hint = {errno.EACCES: denied, errno.EPERM: denied, errno.ENAMETOOLONG: "; each name in a path may have at most "
            "255 bytes", errno.ENOSPC: "; free some space and rerun"}.get(error.errno, "")
    return f"{error.filename}: {what}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    from sparsecap.runtime import prefer_passive_waiting
    from sparsecap.studies.fork_server import stop_fork_server

    prefer_passive_waiting(os.environ)  # before anything imports torch
    arguments = build_parser().parse_args(argv)
    termination = TerminationHandler()
    before = signal.signal(signal.SIGTERM, termination)
    try:
        return arguments.handler(arguments)
    except SparsecapError as error:
        stop_fork_server()  # `sparsecap run`'s early server: no worker will start now
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Whoever read the output has gone (`sparsecap ... | head -1`): what was computed is saved; say nothing
        # more, and let the exit's flush write to nowhere rather than raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as error:  # a path the system refuses: said plainly, as bad input is
        stop_fork_server()
        print(f"error: {os_error_text(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        stop_fork_server()
        how = "terminated" if termination.received else "interrupted"
        note = getattr(arguments, "stopped_note", None)
        print(f"\n{how}" + (f": {note}" if note else ""), file=sys.stderr)
        return EXIT_TERMINATED if termination.received else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, before)


def run_and_exit() -> NoReturn:
    """The `sparsecap` command: `main`, then its exit handlers (Ray's, multiprocessing's, temporary
    files') and flushed output, then the exit, without the interpreter freeing torch's and the libraries'
    objects one by one first: that took 0.9-1.4 s after every study, 10% of the quick study's time."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run_and_exit()
