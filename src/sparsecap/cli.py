"""The `sparsecap` command line: run studies, report them, describe models, list datasets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sparsecap.errors import SparsecapError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="directory holding datasets (default: $SPARSECAP_DATA, then ~/.cache/sparsecap/data)")


def _command_run(arguments: argparse.Namespace) -> int:
    from sparsecap.report import write_report
    from sparsecap.studies import load_spec, run_study

    spec = load_spec(arguments.spec, arguments.set)
    directory = arguments.out or Path("runs") / spec.name
    progress = run_study(spec, directory, arguments.data_root, arguments.download, not arguments.no_progress)
    print(f"{spec.name}: {progress.ran} trials run, {progress.already_finished} already finished, "
          f"{progress.total} in all; results in {directory}")
    if not arguments.no_report:
        print(f"report: {write_report(directory)}")
    return 0


def _command_report(arguments: argparse.Namespace) -> int:
    from sparsecap.report import write_report

    print(f"report: {write_report(arguments.directory)}")
    return 0


def _command_describe(arguments: argparse.Namespace) -> int:
    from sparsecap.describe import describe_model, format_table
    from sparsecap.models import ModelConfig, architecture_family
    from sparsecap.sparsity import parse_allocation

    family = architecture_family(arguments.architecture)
    if arguments.depth is not None:
        model = ModelConfig(family.name, family.depth_family_width, arguments.depth)
        base = ModelConfig(family.name, arguments.base_width or family.depth_family_width,
                           arguments.base_depth or 1)
    else:
        model = ModelConfig(family.name, arguments.width or family.base_width, 1)
        base = ModelConfig(family.name, arguments.base_width or family.base_width, arguments.base_depth or 1)
    summary = describe_model(model, base, arguments.dataset, parse_allocation(arguments.allocation), arguments.seed)
    if arguments.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(f"{family.name} width {model.width} depth {model.depth} on {arguments.dataset}, masked to "
              f"{family.name} width {base.width} depth {base.depth} ({arguments.allocation} allocation)")
        print(format_table(summary))
    return 0


def _command_datasets(arguments: argparse.Namespace) -> int:
    from sparsecap.data import list_availability

    for entry in list_availability(arguments.data_root):
        state = "available" if entry.available else "missing"
        print(f"{entry.name.value:<15}{state:<11}{entry.location}")
    return 0


def _command_presets(arguments: argparse.Namespace) -> int:
    from sparsecap.studies import expand, list_presets, load_spec

    for name in list_presets():
        spec = load_spec(name)
        datasets = ",".join(dataset.value for dataset in spec.datasets)
        schedules = ",".join(schedule.value for schedule in spec.schedules)
        print(f"{name:<28}{len(expand(spec)):>5} trials  {datasets}, {spec.family.value} family, "
              f"schedules {schedules}, at most {spec.training.max_epochs} epochs")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a study and write its report")
    run.add_argument("spec", help="a preset name (see `sparsecap presets`) or a path to a TOML spec")
    run.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<study name>)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec value, e.g. --set training.max_epochs=3 --set 'datasets=[\"mnist\"]'")
    _add_data_arguments(run)
    run.add_argument("--download", action="store_true", help="download missing datasets (checksum-verified)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run.set_defaults(handler=_command_run)

    report = commands.add_parser("report", help="write the figures and HTML page of a study directory")
    report.add_argument("directory", type=Path)
    report.set_defaults(handler=_command_report)

    describe = commands.add_parser("describe", help="per-layer counts, density and connectivity of a masked model")
    describe.add_argument("architecture")
    size = describe.add_mutually_exclusive_group()
    size.add_argument("--width", type=_positive_int, help="width-family member (depth 1)")
    size.add_argument("--depth", type=_positive_int, help="depth-family member (at the family's width)")
    describe.add_argument("--base-width", type=_positive_int, help="width of the base the model is masked to")
    describe.add_argument("--base-depth", type=_positive_int, help="depth of the base the model is masked to")
    describe.add_argument("--dataset", default="mnist", help="sets input shape and classes (no data is read)")
    describe.add_argument("--allocation", default="uniform", help="uniform, staggered or erk")
    describe.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.set_defaults(handler=_command_describe)

    datasets = commands.add_parser("datasets", help="list datasets, whether available and from where")
    _add_data_arguments(datasets)
    datasets.set_defaults(handler=_command_datasets)

    presets = commands.add_parser("presets", help="list the shipped study presets")
    presets.set_defaults(handler=_command_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except SparsecapError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
