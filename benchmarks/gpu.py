"""Does sparsecap run right and fast on a CUDA GPU? Six parts (issue 12), a few minutes on an H200:

(a) check: a tiny study (MLP and VGG11 at widths 16 and 32, static and posttrain, two seeds) with every
    measure on (weight noise, every attack, MNIST-C corruptions), run end to end on `cuda` and on `cpu`.
    PASS when every trial finished on both, each static trial's checkpoint holds the same masks on both
    (posttrain masks come from the trained weights, which differ by float rounding, so they are not
    compared), and clean accuracies agree within 2 percentage points, or within what float rounding alone
    moves them on the CPU where that is more (the CPU study at one and at two threads: `accuracy_tolerances`).
    Its data are scikit-learn's digits scaled to 28×28 and written as MNIST files: nothing to download.
(b) timing: seconds per training epoch through the study's own code (`prepare_model`, `train`,
    `train_together`) on random uint8 data held on the GPU: every model on CIFAR-shaped data (50,000
    images, as issue 12 asks), the MLPs also on MNIST-shaped data (60,000, the MLP presets'). Each case trains
    runs of one and of three epochs of `--steps` batches after a warm-up; their difference, extrapolated to
    a whole epoch, is its epoch (so what a run pays once is left out). K = 5 is five
    seeds trained together (where the model stacks); its throughput is 5 × t(K=1) / t(K=5). Then the
    issue's targets beside the measurements, and an upper bound on the paper's whole grid (every paper-*
    preset, 5 seeds, each trial run to max_epochs), its epochs estimated from the measured ones.
(c) engine: the MLP's epoch on the dense and the sparse engine at widths 2^9..2^15 (densities 1/4..1/256),
    and the density below which sparse is faster on this GPU: what `auto`'s threshold for the device is
    calibrated from (`sparsecap.sparsity.engine`).
(d) graphs: training with its steps replayed as CUDA graphs (`sparsecap.training.graphed_steps`) against
    eager training: the weights after three epochs of a cosine schedule, and the epoch times.
(e) options: what might meet the targets graphs left missed, timed as in (b) with cuDNN's default choice of
    convolution algorithms and, in a process of its own, with its autotuner: strict-float32 ResNet18 w64; five
    VGG11 w16 (and ResNet18 w16) seeds stacked (channels-last and NCHW) and trained concurrently, each by
    `train` in a thread and on a CUDA stream of its own, so that small models' graphed steps run side by side.
(f) stopping: every CNN paper preset trained to its stopping rule, one seed, in bfloat16, on the datasets at
    hand (`--data-root`), each as `sparsecap run` in a process of its own within a share of
    `--stopping-budget`: the epochs each model needs and its seconds per epoch, the trials that did not stop
    in time, and what the grid's CNN trials on those datasets cost; part (b)'s bound covers the datasets not
    at hand.

    python benchmarks/gpu.py                    # every part
    python benchmarks/gpu.py --part timing --steps 20
    python benchmarks/gpu.py --part stopping --data-root ~/data --stopping-budget 600
    python benchmarks/gpu.py --part stopping --stopping-presets paper-vgg-width,paper-resnet-width

Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

EXIT_NO_CUDA = 2
BATCH = 128
SEEDS = 5
TRAIN_IMAGES = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
BASE_WIDTH = {"mlp": 128, "vgg": 16, "resnet": 16}
PRECISIONS = ("float32", "tf32", "bfloat16")
ACCURACY_TOLERANCE = 0.02

CHECK_SPEC = """
name = "gpu-check"
architectures = ["mlp", "vgg"]
datasets = ["mnist"]
widths = [16, 32]
schedules = ["static", "posttrain"]
seeds = [0, 1]

[training]
max_epochs = 6
batch_size = 64
learning_rate = 0.05

[weight_noise]
sigmas = [0.0, 0.3]
draws = 2

[adversarial]
enabled = true
steps = 5
examples = 100

[corruptions]
enabled = true
sample_size = 100
draws = 2
"""


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "check", "timing", "engine", "graphs", "options", "stopping"), default="all")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed epoch (default 20)")
    parser.add_argument("--out", type=Path,
                        help="where parts (a) and (f) write their studies (default: a temporary directory)")
    parser.add_argument("--data-root", type=Path,
                        help="where part (f) finds MNIST and CIFAR (default: sparsecap's usual places)")
    parser.add_argument("--stopping-budget", type=float, default=1800, metavar="SECONDS",
                        help="part (f)'s time in all; a preset past its share is stopped, and its trials still "
                             "training are reported as not stopped in time (default 1800)")
    parser.add_argument("--stopping-presets", type=lambda text: text.split(","), default=None, metavar="NAME,NAME",
                        help="the CNN paper presets part (f) trains (default: every one)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="with --part options only: time part (e) with cuDNN's autotuner alone (part (e) runs "
                             "this in a process of its own after its default table)")
    arguments = parser.parse_args(argv)
    if arguments.steps < 1:
        parser.error(f"--steps must be at least 1, got {arguments.steps}")
    if arguments.stopping_budget <= STOPPING_GRACE_SECONDS:
        parser.error(f"--stopping-budget must be more than {STOPPING_GRACE_SECONDS} seconds (what a stopped run "
                     f"has to save and exit), got {arguments.stopping_budget:g}")
    valid = cnn_presets()
    unknown = [name for name in arguments.stopping_presets or () if name not in valid]
    if unknown:
        parser.error(f"--stopping-presets: no CNN paper preset {', '.join(unknown)}; valid: {', '.join(valid)}")
    arguments.stopping_presets = arguments.stopping_presets or valid
    if arguments.cudnn_benchmark and arguments.part != "options":
        parser.error(f"--cudnn-benchmark goes with --part options only, got --part {arguments.part}")
    return arguments


def no_cuda_message(torch_version: str, cuda_build: str | None) -> str:
    why = "this PyTorch is built without CUDA" if cuda_build is None else "no CUDA device is visible"
    return (f"benchmarks/gpu.py needs a CUDA GPU, and {why} (torch {torch_version}). Run it on a GPU machine "
            "with a CUDA build of PyTorch; nothing else in sparsecap needs one.")


# -- the paper's grid, estimated from measured epochs (pure) -------------------------------------------


@dataclass(frozen=True)
class GridPoint:
    """One model of a paper preset and how many epochs its trials train at most."""

    preset: str
    architecture: str
    dataset: str
    width: int
    depth: int
    trials: int
    max_epochs: int


@dataclass(frozen=True)
class Measured:
    """One timing: a model's dense multiply-accumulates per image and its training seconds per image."""

    multiply_accumulates: float
    seconds_per_image: float


def seconds_per_image(multiply_accumulates: float, measured: Sequence[Measured]) -> float:
    """A model's training time per image from its family's measurements: linear in multiply-accumulates
    between measured models, the smallest one's time below them (small models are bound by kernel
    launches, not arithmetic), and proportional to multiply-accumulates above the largest."""
    points = sorted(measured, key=lambda point: point.multiply_accumulates)
    if not points:
        raise ValueError("no measurement to estimate from")
    if multiply_accumulates <= points[0].multiply_accumulates:
        return points[0].seconds_per_image
    for low, high in zip(points, points[1:]):
        if multiply_accumulates <= high.multiply_accumulates:
            span = high.multiply_accumulates - low.multiply_accumulates
            share = (multiply_accumulates - low.multiply_accumulates) / span
            return low.seconds_per_image + share * (high.seconds_per_image - low.seconds_per_image)
    return points[-1].seconds_per_image * multiply_accumulates / points[-1].multiply_accumulates


def grid_seconds(points: Sequence[GridPoint], epoch_seconds: Callable[[GridPoint], float]) -> float:
    """The whole grid's training time when every trial runs to max_epochs (an upper bound)."""
    return sum(point.trials * point.max_epochs * epoch_seconds(point) for point in points)


def grid_hours_by(points: Sequence[GridPoint], epoch_seconds: Callable[[GridPoint], float], field: str) -> dict:
    """`grid_seconds` in hours, split by one of the points' fields ("preset", "dataset"): where the time goes."""
    values = sorted({getattr(point, field) for point in points})
    return {value: grid_seconds([point for point in points if getattr(point, field) == value], epoch_seconds) / 3600
            for value in values}


def paper_grid(seeds: int = SEEDS) -> list[GridPoint]:
    """Every model of every paper-* preset with its trial count at `seeds` seeds (all schedules)."""
    from sparsecap.studies import expand, list_presets, load_spec

    points = []
    for preset in (name for name in list_presets() if name.startswith("paper-")):
        spec = load_spec(preset)
        counts = Counter((trial.architecture, trial.dataset.value, trial.width, trial.depth) for trial in expand(spec))
        points += [GridPoint(preset, architecture, dataset, width, depth, count * seeds // len(spec.seeds),
                             spec.training.max_epochs)
                   for (architecture, dataset, width, depth), count in counts.items()]
    return points


# -- (a) the same study on cuda and cpu ----------------------------------------------------------------


def write_digits_as_mnist(directory: Path) -> None:
    """scikit-learn's digits, scaled to 28×28, as the four MNIST IDX files (learnable, 28×28, offline)."""
    import torch
    import torch.nn.functional as functional

    from sparsecap.data import load_dataset

    digits = load_dataset("digits")
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, images, labels in (("train", digits.train_images, digits.train_labels),
                                   ("t10k", digits.test_images, digits.test_labels)):
        large = functional.interpolate(images.float(), size=(28, 28), mode="bilinear", align_corners=False)
        pixels = large.round().clamp(0, 255).to(torch.uint8).numpy()
        header = b"".join(value.to_bytes(4, "big") for value in (2051, len(labels), 28, 28))
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
        header = b"".join(value.to_bytes(4, "big") for value in (2049, len(labels)))
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.to(torch.uint8).numpy().tobytes())


def _masks(path: Path) -> dict:
    from safetensors.torch import load_file

    return {name: tensor for name, tensor in load_file(str(path)).items() if name.endswith(("mask", "kept"))}


def accuracy_gaps(first: dict[str, dict], second: dict[str, dict]) -> dict[str, tuple[str, float]]:
    """Per trial finished in both studies: its architecture and how far its clean accuracies lie apart."""
    return {trial_id: (row["architecture"], abs(row["test_accuracy"] - second[trial_id]["test_accuracy"]))
            for trial_id, row in first.items() if row["status"] == second[trial_id]["status"] == "finished"}


def accuracy_tolerances(cpu: dict[str, dict], cpu_rounded_otherwise: dict[str, dict]) -> dict[str, float]:
    """Per architecture, how far the clean accuracies of the two devices may differ: 2 points, or more where
    float rounding alone moves them further: the largest gap between the CPU study and the same study on
    another thread count (which sums in another order). A short, unconverged VGG training amplifies rounding:
    on 2 CPU cores the check study's VGG11 trials differed by up to 5.6 points between 1 and 2 threads (8.3 on
    batch norms' running statistics), its MLPs by none."""
    tolerances = {row["architecture"]: ACCURACY_TOLERANCE for row in cpu.values()}
    for architecture, gap in accuracy_gaps(cpu, cpu_rounded_otherwise).values():
        tolerances[architecture] = max(tolerances[architecture], gap)
    return tolerances


def accuracy_problems(first: dict[str, dict], second: dict[str, dict], tolerances: dict[str, float]) -> list[str]:
    """The trials finished on both devices whose clean accuracies differ by more than their architecture's
    tolerance."""
    return [f"{trial_id}: accuracy differs by {100 * gap:.1f} points (tolerance {100 * tolerances[architecture]:.1f})"
            for trial_id, (architecture, gap) in accuracy_gaps(first, second).items() if gap > tolerances[architecture]]


def _run_check_study(root: Path, name: str, runtime) -> dict[str, dict] | None:
    """The check study on `runtime`, its trials by id (None, with the reason printed, if a measure is empty)."""
    from sparsecap.studies import StudyDatabase, parse_spec, run_study

    started = time.perf_counter()
    spec = parse_spec(tomllib.loads(CHECK_SPEC), "benchmarks/gpu.py")
    run_study(spec, root / name, data_root=root / "data", runtime=runtime)
    database = StudyDatabase(root / name)
    rows = {row["trial_id"]: row for row in database.rows("trials")}
    measures = {table: len(database.rows(table)) for table in ("weight_noise", "adversarial", "corruption")}
    print(f"(a) {name}: {len(rows)} trials in {time.perf_counter() - started:.0f} s; rows: {measures}")
    for trial_id, row in rows.items():
        if row["status"] != "finished":
            print(f"    {trial_id}: {row['status']}: {(row['error'] or '').strip().splitlines()[-1:]}")
    if not all(measures.values()):
        print(f"    FAIL: a measure recorded nothing on {name}")
        return None
    return rows


def check_devices(root: Path, device: str = "cuda:0") -> bool:
    """Part (a): run the check study on `device` and on the CPU (twice: at one and at two threads per trial,
    whose gap is what rounding alone does); print what differs and PASS or FAIL."""
    from sparsecap.runtime import Runtime, physical_cores

    write_digits_as_mnist(root / "data" / "mnist")
    on_device, cpu, rounded_otherwise = device.replace(":", ""), "cpu-1-thread", "cpu-2-threads"
    runtimes = {on_device: Runtime(device=device, devices=(device,)), cpu: Runtime(threads=1),
                rounded_otherwise: Runtime(threads=2, workers=max(1, physical_cores() // 2))}
    rows = {}
    for name, runtime in runtimes.items():
        rows[name] = _run_check_study(root, name, runtime)
        if rows[name] is None:
            return False
    first, second = rows[on_device], rows[cpu]
    problems = [f"{trial_id}: {row['status']} on {name}" for name in (on_device, cpu)
                for trial_id, row in rows[name].items() if row["status"] != "finished"]
    tolerances = accuracy_tolerances(second, rows[rounded_otherwise])
    problems += accuracy_problems(first, second, tolerances)
    gaps = accuracy_gaps(first, second)
    static = [trial_id for trial_id in gaps if "-static-" in trial_id]
    for trial_id in static:
        masks = [_masks(root / name / rows[name][trial_id]["checkpoint"]) for name in (on_device, cpu)]
        if not masks[0] or masks[0].keys() != masks[1].keys() \
                or any(not masks[0][name].equal(masks[1][name]) for name in masks[0]):
            problems.append(f"{trial_id}: masks differ (or none saved)")
    for problem in problems:
        print(f"    {problem}")
    shown = ", ".join(f"{architecture} {100 * tolerance:.1f}" for architecture, tolerance in tolerances.items())
    largest = max((gap for _, gap in gaps.values()), default=0.0)
    print(f"(a) largest clean-accuracy gap {100 * largest:.2f} points over {len(gaps)} trials "
          f"(tolerance in points: {shown}); masks identical in {len(static) - sum('masks' in p for p in problems)} "
          f"of {len(static)} static trials")
    print(f"(a) {'PASS' if not problems else 'FAIL'}: {on_device} vs {cpu}")
    return not problems


# -- (b) epoch times -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    architecture: str
    width: int
    depth: int
    dataset: str
    engine: str
    precision: str

    @property
    def label(self) -> str:
        name = {"mlp": "MLP", "vgg": f"VGG{self.depth}", "resnet": f"ResNet{self.depth}"}[self.architecture]
        return f"{name} w{self.width}" + (f" {self.engine}" if self.architecture == "mlp" else "")


def timing_cases() -> list[Case]:
    cases = [Case("mlp", width, 1, dataset, engine, precision) for dataset in ("cifar10", "mnist")
             for width in (2**7, 2**15) for engine in ("dense", "sparse", "auto") for precision in PRECISIONS]
    cases += [Case(architecture, width, depth, "cifar10", "dense", precision)
              for architecture, depth in (("vgg", 11), ("resnet", 18)) for width in (16, 64)
              for precision in PRECISIONS]
    return cases


def _random_dataset(name: str, count: int, device: str):
    import torch

    from sparsecap.data import ImageDataset, dataset_info

    info = dataset_info(name)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (count, *info.input_shape), dtype=torch.uint8, generator=generator, device=device)
    labels = torch.randint(0, info.num_classes, (count,), generator=generator, device=device)
    return ImageDataset(info, images, labels, images[:BATCH], labels[:BATCH], "random")


def _prepared(case: Case, seeds: int, images: int, device: str, narrowed: bool = False):
    """`seeds` models of `case` prepared as a study prepares them, random data of `images` images on
    `device`, and the training settings; None where the models do not stack."""
    from sparsecap.data import DatasetName
    from sparsecap.studies import parse_spec
    from sparsecap.studies.execute import prepare_model
    from sparsecap.studies.spec import Family, Schedule
    from sparsecap.studies.trials import Trial
    from sparsecap.sparsity.unread_units import without_unread_units
    from sparsecap.training.multiseed import can_stack

    spec = parse_spec({"name": "timing", "architectures": [case.architecture], "datasets": [case.dataset],
                       "widths": sorted({BASE_WIDTH[case.architecture], case.width}), "depths": [case.depth],
                       "training": {"engine": case.engine, "precision": case.precision, "batch_size": BATCH,
                                    "max_epochs": 1, "stop_loss": 0.0}}, "timing")
    dataset = _random_dataset(case.dataset, images, device)
    models = [prepare_model(spec, Trial(case.architecture, DatasetName(case.dataset), Family.WIDTH, case.width,
                                        case.depth, Schedule.STATIC, seed), dataset)[0] for seed in range(seeds)]
    if seeds > 1 and not can_stack(models[0]):
        return None
    if narrowed:
        models = [without_unread_units(models[0])]
    return models, dataset, spec.training.config()


def _train(models, dataset, config) -> list:
    """Train `models` (one, or seeds together) on the dataset as a study does."""
    import torch

    from sparsecap.training import train
    from sparsecap.training.multiseed import train_together

    images, labels = dataset.train_images, dataset.train_labels
    generators = [torch.Generator().manual_seed(seed) for seed in range(len(models))]
    if len(models) == 1:
        return [train(models[0], images, labels, config, generators[0])]
    return train_together(models, images, labels, config, generators)


def _train_concurrently(models, dataset, config) -> list:
    """Train `models` as `_train` trains one, each in a thread of its own and on CUDA on a stream of its own:
    where one model keeps only part of the GPU busy, the seeds' steps then run side by side, each computing
    exactly what it computes alone (no grouped convolutions). On a CPU the threads share its cores."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from sparsecap.training import train
    from sparsecap.training.precision import numeric_precision

    images, labels = dataset.train_images, dataset.train_labels

    def alone(index: int):
        stream = torch.cuda.Stream(labels.device) if labels.device.type == "cuda" else None
        with torch.cuda.stream(stream):  # None: the current stream
            return train(models[index], images, labels, config, torch.Generator().manual_seed(index))

    # Precision flags are the process's: set here for all threads, no thread's exit puts them back under another.
    with numeric_precision(config.precision, labels.device), ThreadPoolExecutor(len(models)) as pool:
        return list(pool.map(alone, range(len(models))))


def epoch_seconds(case: Case, seeds: int, steps: int, device: str, narrowed: bool = False,
                  training: Callable[..., list] = _train) -> float | None:
    """Seconds per whole training epoch of `seeds` models trained together (None: this model does not stack);
    `narrowed`: one model without its unread units, as a study trains it while its mask stays fixed;
    `training`: how the models are trained (`_train`, or `_train_concurrently`).

    One epoch's cost is the difference of runs of one and three epochs of `steps` batches: what a run pays
    once (the optimiser, recording CUDA graphs) is not extrapolated to a whole epoch."""
    import dataclasses

    import torch

    prepared = _prepared(case, seeds, steps * BATCH, device, narrowed)
    if prepared is None:
        return None
    models, dataset, config = prepared

    def seconds(epochs: int) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        training(models, dataset, dataclasses.replace(config, max_epochs=epochs))  # ends reading the loss
        return time.perf_counter() - started

    seconds(1)  # warm-up: kernels chosen, memory pools grown
    per_epoch = (seconds(3) - seconds(1)) / 2
    return per_epoch * TRAIN_IMAGES[case.dataset] / (steps * BATCH)


def eager_steps() -> contextlib.AbstractContextManager:
    """Training without CUDA graphs (`sparsecap.training.graphed_steps`), the reference they are compared to."""
    from sparsecap.training import graphed_steps

    return mock.patch.object(graphed_steps, "graphs_apply", lambda *arguments, **keywords: False)


@contextlib.contextmanager
def stacked_in_nchw():
    """Stacked CNN seeds (`sparsecap.training.stacked_cnn`) in NCHW, where on CUDA they are channels-last: the
    stacked network and the batches `multiseed` feeds it, so that no step converts one layout to the other."""
    import torch

    from sparsecap.training import multiseed, stacked_cnn

    def in_nchw(*arguments) -> torch.memory_format:
        return torch.contiguous_format

    with contextlib.ExitStack() as patches:
        for module in (stacked_cnn, multiseed):
            patches.enter_context(mock.patch.object(module, "memory_format", in_nchw))
        yield


@contextlib.contextmanager
def cudnn_flag(name: str):
    """A `torch.backends.cudnn` flag on for the block: `deterministic` (its fastest convolution gradients sum in
    an order that varies from run to run, which would hide whether graphs change anything) or `benchmark` (it
    times each convolution's algorithms at a shape's first step and keeps the fastest, rather than choosing by
    heuristics)."""
    import torch

    saved = getattr(torch.backends.cudnn, name)
    setattr(torch.backends.cudnn, name, True)
    try:
        yield
    finally:
        setattr(torch.backends.cudnn, name, saved)


def _largest_gap(first_models, second_models) -> float:
    """The largest absolute difference between the two runs' weights and buffers."""
    return max(float((first.double() - second.double()).abs().max())
               for first_model, second_model in zip(first_models, second_models, strict=True)
               for first, second in zip(first_model.state_dict().values(), second_model.state_dict().values(),
                                        strict=True))


GRAPH_CASES = (Case("mlp", 128, 1, "mnist", "auto", "float32"), Case("vgg", 16, 11, "cifar10", "dense", "float32"),
               Case("resnet", 64, 18, "cifar10", "dense", "bfloat16"))


def compare_graphs(steps: int, device: str) -> bool:
    """Part (d): training replayed as CUDA graphs against eager training: the same weights after three epochs
    of a cosine schedule with a partial last batch (one model, and three seeds together), and the epoch time
    of each. True when graphed training is as close to eager training as eager training is to itself (both
    with cuDNN's deterministic kernels)."""
    import copy
    import dataclasses

    from sparsecap.training import LearningRateSchedule

    print("\n(d) CUDA graphs against eager steps: weights after 3 epochs (cosine, 5 batches + a partial one; "
          "cuDNN's deterministic kernels), "
          f"epoch seconds ({steps} timed steps)")
    print(f"{'model':<22}{'precision':<10}{'K':>3}{'largest weight gap':>26}{'eager s':>9}{'graphs s':>9}{'gain':>7}")
    identical = True
    for case in GRAPH_CASES:
        for seeds in (1, 3):
            prepared = _prepared(case, seeds, 5 * BATCH + 17, device)
            if prepared is None:
                continue
            models, dataset, config = prepared
            config = dataclasses.replace(config, max_epochs=3, schedule=LearningRateSchedule.COSINE)
            runs = [copy.deepcopy(models) for _ in range(3)]  # eager twice (is eager itself repeatable?), graphed
            losses = []
            for index, run in enumerate(runs):
                with eager_steps() if index < 2 else contextlib.nullcontext(), cudnn_flag("deterministic"):
                    losses.append([result.epoch_losses for result in _train(run, dataset, config)])
            eager_gap, graph_gap = (_largest_gap(runs[0], runs[other]) for other in (1, 2))
            equal = graph_gap == 0.0 and losses[0] == losses[2]
            identical &= graph_gap <= eager_gap
            shown = "bit-identical" if equal else f"{graph_gap:.1e} (eager {eager_gap:.1e})"
            with eager_steps():
                eager = epoch_seconds(case, seeds, steps, device)
            graphed = epoch_seconds(case, seeds, steps, device)
            gain = f"{eager / graphed:.1f}x" if eager and graphed else "-"
            print(f"{case.label:<22}{case.precision:<10}{seeds:>3}{shown:>26}{_cell(eager):>9}{_cell(graphed):>9}"
                  f"{gain:>7}")
    print(f"(d) {'PASS' if identical else 'FAIL'}: graphed training {'equals' if identical else 'differs from'} "
          "eager training")
    return identical


OPTION_CASES = (Case("resnet", 64, 18, "cifar10", "dense", "float32"), Case("vgg", 16, 11, "cifar10", "dense", "float32"),
                Case("resnet", 16, 18, "cifar10", "dense", "float32"))
"""The models of the targets graphs left missed: ResNet18 w64 in strict float32 (6 s), five VGG11 w16 seeds
together (3× one by one); and ResNet18 w16, the other small CNN whose seeds studies stack on a GPU."""


def option_ways(case: Case) -> list[tuple[str, int, Callable[[], contextlib.AbstractContextManager], Callable]]:
    """How part (e) trains `case`: alone; and, for a model whose seeds studies stack on a GPU (up to
    `CNN_STACKING_LIMIT`), five seeds stacked (channels-last, as studies do on CUDA, and NCHW) or concurrently,
    one thread and stream each."""
    from sparsecap.training.multiseed import CNN_STACKING_LIMIT

    ways = [("alone", 1, contextlib.nullcontext, _train)]
    if multiply_accumulates(case.architecture, case.width, case.depth, case.dataset) <= CNN_STACKING_LIMIT:
        ways += [("stacked", SEEDS, contextlib.nullcontext, _train), ("stacked, NCHW", SEEDS, stacked_in_nchw, _train),
                 ("concurrent streams", SEEDS, contextlib.nullcontext, _train_concurrently)]
    return ways


def compare_options(steps: int, device: str, autotuned: bool) -> dict[tuple[str, str], float | None]:
    """Part (e): what might meet the targets graphs left missed. cuDNN's autotuner (`autotuned`) for the
    strict-float32 ResNet18; for five VGG11 seeds, their stacked convolutions in NCHW, or the seeds trained
    concurrently rather than stacked. Epoch seconds (K seeds: the epoch of all K), and each way's gain over
    training the K one by one; keyed by (model, way). cuDNN keeps the algorithms it chose per process and
    shape whatever `benchmark` says, so `main` times the autotuned table in a process of its own."""
    cudnn = "autotuned (cudnn.benchmark, a process of its own)" if autotuned else "cuDNN's default algorithms"
    print(f"\n(e) options for the missed targets, {cudnn}: epoch seconds, {steps} timed steps; "
          "gain = K × t(alone) / t")
    print(f"{'model':<22}{'precision':<10}{'way':<20}{'K':>3}{'seconds':>9}{'gain':>7}")
    times: dict[tuple[str, str], float | None] = {}
    for case in OPTION_CASES:
        for way, seeds, context, training in option_ways(case):
            try:
                with context(), cudnn_flag("benchmark") if autotuned else contextlib.nullcontext():
                    seconds = epoch_seconds(case, seeds, steps, device, training=training)
            except Exception as error:  # noqa: BLE001 - one failing way must not hide the others
                print(f"    {case.label} {way}: {type(error).__name__}: {error}")
                seconds = None
            times[case.label, way] = seconds
            alone = times.get((case.label, "alone"))
            gain = f"{seeds * alone / seconds:.1f}x" if alone and seconds else "-"
            print(f"{case.label:<22}{case.precision:<10}{way:<20}{seeds:>3}{_cell(seconds):>9}{gain:>7}", flush=True)
    return times


def autotuned_options_command(steps: int) -> list[str]:
    """This script timing part (e) with cuDNN's autotuner, for a process of its own."""
    return [sys.executable, str(Path(__file__).resolve()), "--part", "options", "--cudnn-benchmark",
            "--steps", str(steps)]


@functools.cache
def multiply_accumulates(architecture: str, width: int, depth: int, dataset: str) -> int:
    import torch

    from sparsecap.data import dataset_info
    from sparsecap.models import ModelConfig, create_model
    from sparsecap.sparsity.flops import dense_multiply_accumulates

    info = dataset_info(dataset)
    with torch.device("meta"):
        model = create_model(ModelConfig(architecture, width, depth), info)
    return dense_multiply_accumulates(model, info.input_shape)


def _cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def time_epochs(steps: int, device: str) -> dict[tuple[Case, int], float | None]:
    """Part (b): every case at K = 1 and K = 5, printed as a table as it goes."""
    print(f"\n(b) seconds per training epoch, batch {BATCH}, {steps} timed steps per case; "
          f"K = 5: five seeds trained together, gain = 5 × t(K=1) / t(K=5)")
    print(f"{'model':<22}{'data':<9}{'precision':<10}{'K=1 s':>8}{'K=5 s':>8}{'gain':>7}")
    times = {}
    for case in timing_cases():
        for seeds in (1, SEEDS):
            try:
                times[case, seeds] = epoch_seconds(case, seeds, steps, device)
            except Exception as error:  # noqa: BLE001 - one failing case must not hide the others
                print(f"    {case.label} {case.precision} K={seeds}: {type(error).__name__}: {error}")
                times[case, seeds] = None
        one, five = times[case, 1], times[case, SEEDS]
        gain = f"{SEEDS * one / five:.1f}x" if one and five else "-"
        print(f"{case.label:<22}{case.dataset:<9}{case.precision:<10}{_cell(one):>8}{_cell(five):>8}{gain:>7}")
    return times


CALIBRATION_WIDTHS = tuple(2**exponent for exponent in range(9, 16))
"""The MLP widths of the engine calibration: every layer's density is 128 / width (uniform allocation of the
base's weights), 1/4 down to 1/256."""


@dataclass(frozen=True)
class EngineTiming:
    """One width's epoch on each engine: the whole network dense and sparse, and sparse without unread units."""

    density: float
    dense: float
    sparse: float
    sparse_narrowed: float


def sparse_pays_below(timings: Sequence[EngineTiming]) -> float:
    """The density below which the sparse engine trains the whole network faster than dense: the highest
    measured density from which sparse wins at every lower one (0.0: it never wins at the lowest)."""
    threshold = 0.0
    for timing in sorted(timings, key=lambda timing: timing.density):
        if timing.sparse >= timing.dense:
            break
        threshold = timing.density
    return threshold


def calibrate_engine(steps: int, device: str) -> list[EngineTiming]:
    """Part (c): the MLP's epoch on MNIST-shaped data, float32, on each engine across widths, for `auto`'s
    density threshold on this device."""
    print(f"\n(c) the sparse engine against dense on this device: MLP epoch seconds, MNIST-shaped data, float32, "
          f"{steps} timed steps; 'narrowed' is what a study trains while the mask stays fixed")
    print(f"{'width':>7}{'density':>10}{'dense':>8}{'sparse':>8}{'narrowed':>10}{'dense/sparse':>14}")
    timings = []
    for width in CALIBRATION_WIDTHS:
        seconds = [epoch_seconds(Case("mlp", width, 1, "mnist", engine, "float32"), 1, steps, device, narrowed)
                   for engine, narrowed in (("dense", False), ("sparse", False), ("sparse", True))]
        timing = EngineTiming(BASE_WIDTH["mlp"] / width, *seconds)
        timings.append(timing)
        print(f"{width:>7}{timing.density:>10.4f}{timing.dense:>8.2f}{timing.sparse:>8.2f}"
              f"{timing.sparse_narrowed:>10.2f}{timing.dense / timing.sparse:>13.2f}x")
    print(f"(c) the sparse engine trains the whole network faster at densities up to {sparse_pays_below(timings)} "
          "(0.0: at none measured)")
    return timings


def _time_of(times: dict, architecture: str, width: int, precision: str, seeds: int = 1,
             engine: str = "auto") -> float | None:
    """The measured epoch of a case on CIFAR-shaped data, the data of the issue's targets."""
    engine = engine if architecture == "mlp" else "dense"
    return next((value for (case, count), value in times.items() if count == seeds and case.architecture == architecture
                 and case.width == width and case.precision == precision and case.engine == engine
                 and case.dataset == "cifar10"), None)


def print_targets(times: dict) -> None:
    def gain(architecture: str, width: int) -> float | None:
        one, five = (_time_of(times, architecture, width, "float32", seeds) for seeds in (1, SEEDS))
        return SEEDS * one / five if one and five else None

    targets = [  # (what, measured, bound, at most?)
        ("ResNet18 w64 epoch, bfloat16", _time_of(times, "resnet", 64, "bfloat16"), 3.0, True),
        ("ResNet18 w64 epoch, float32", _time_of(times, "resnet", 64, "float32"), 6.0, True),
        ("VGG11 w16 epoch, float32", _time_of(times, "vgg", 16, "float32"), 0.5, True),
        ("MLP w2^15 epoch (auto engine), float32", _time_of(times, "mlp", 2**15, "float32"), 1.0, True),
        ("K=5 throughput gain, MLP w128 (auto)", gain("mlp", 128), 3.0, False),
        ("K=5 throughput gain, VGG11 w16", gain("vgg", 16), 3.0, False),
    ]
    print("\ntargets (issue 12; on the CIFAR-shaped data)")
    for what, measured, bound, at_most in targets:
        verdict = "-" if measured is None else "met" if (measured <= bound) == at_most else "MISSED"
        shown = "-" if measured is None else f"{measured:.2f}"
        print(f"  {what:<42}{'<=' if at_most else '>='} {bound:<5} measured {shown:>7}  {verdict}")


def print_grid_estimate(times: dict) -> None:
    print(f"\nthe paper's grid (every paper-* preset, {SEEDS} seeds, every trial to max_epochs: an upper bound; "
          "the stopping rule ends most runs far sooner; evaluation not counted)")
    grid = paper_grid()
    for precision in PRECISIONS:
        measured: dict[str, list[Measured]] = {}
        for (case, seeds), seconds in times.items():
            if seeds == 1 and seconds is not None and case.precision == precision and case.engine in ("auto", "dense") \
                    and (case.architecture != "mlp" or case.engine == "auto"):
                macs = multiply_accumulates(case.architecture, case.width, case.depth, case.dataset)
                measured.setdefault(case.architecture, []).append(
                    Measured(macs, seconds / TRAIN_IMAGES[case.dataset]))
        if {point.architecture for point in grid} - measured.keys():
            print(f"  {precision}: not every architecture was measured")
            continue

        def estimate(point: GridPoint) -> float:
            macs = multiply_accumulates(point.architecture, point.width, point.depth, point.dataset)
            return seconds_per_image(macs, measured[point.architecture]) * TRAIN_IMAGES[point.dataset]

        per_preset, per_dataset = (grid_hours_by(grid, estimate, field) for field in ("preset", "dataset"))
        listed = ", ".join(f"{preset} {hours:.1f}" for preset, hours in per_preset.items())
        print(f"  {precision}: {sum(per_preset.values()):.0f} GPU-hours in all ({listed}); by dataset: "
              + ", ".join(f"{dataset} {hours:.1f}" for dataset, hours in per_dataset.items()))


# -- (f) epochs to the stopping rule --------------------------------------------------------------------

STOPPING_OVERRIDES = ("seeds=[0]", "training.precision=bfloat16", "weight_noise.sigmas=[0.0]", "weight_noise.draws=1")
"""How part (f) runs a CNN preset: one seed, in bfloat16 (the fast precision), weight noise at σ = 0 only, since
what it measures is training to the stopping rule."""


@dataclass(frozen=True)
class Stopped:
    """One model of a preset trained to its stopping rule: epochs, and training seconds per epoch on this device
    (recording and warm-up included, so an upper bound)."""

    preset: str
    architecture: str
    dataset: str
    width: int
    depth: int
    epochs: int
    seconds_per_epoch: float


def cnn_presets() -> list[str]:
    from sparsecap.studies import list_presets, load_spec

    return [name for name in list_presets() if name.startswith("paper-") and "mlp" not in load_spec(name).architectures]


def stopping_overrides(datasets: Sequence[str]) -> list[str]:
    """The `--set` overrides part (f) runs a preset with, on `datasets` (those of its own at hand)."""
    listed = ", ".join(f'"{dataset}"' for dataset in datasets)
    return [f"datasets=[{listed}]", *STOPPING_OVERRIDES]


def stopping_spec(preset: str, datasets: Sequence[str]):
    """`preset` as part (f) runs it, on `datasets`."""
    from sparsecap.studies import load_spec

    return load_spec(preset, stopping_overrides(datasets))


def stopping_command(preset: str, datasets: Sequence[str], out: Path, data_root: Path | None, device: str) -> list[str]:
    """`sparsecap run` of `preset` as part (f) runs it: in a process of its own, so that a budget can stop it
    with SIGTERM, which keeps every finished trial; one worker, so trials do not share the device's time."""
    command = [sys.executable, "-m", "sparsecap.cli", "run", preset, "--out", str(out), "--device", device,
               "--workers", "1", "--no-report", "--no-progress"]
    for override in stopping_overrides(datasets):
        command += ["--set", override]
    return command + (["--data-root", str(data_root)] if data_root is not None else [])


STOPPING_GRACE_SECONDS = 20
"""How long a run stopped by SIGTERM has to save and exit (it stops at its current step's end) before it is
killed; part (f) keeps it out of the presets' shares, so the part ends within its budget."""


def run_within(command: Sequence[str], seconds: float) -> bool:
    """Run `command`; past `seconds`, stop it with SIGTERM (and kill it if it has not gone
    `STOPPING_GRACE_SECONDS` later). Whether it ended by itself."""
    sys.stdout.flush()  # what this process printed comes before what the child prints
    process = subprocess.Popen(command)
    try:
        process.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=STOPPING_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return False


def stopped_models(preset: str, rows: Sequence[dict]) -> list[Stopped]:
    """The finished trials of `preset`'s study as `Stopped`, one per trial."""
    return [Stopped(preset, row["architecture"], row["dataset"], row["width"], row["depth"], row["epochs"],
                    row["train_seconds"] / row["epochs"]) for row in rows if row["status"] == "finished"]


def stopped_grid_hours(grid: Sequence[GridPoint], stopped: Sequence[Stopped]) -> dict[str, float]:
    """Per dataset, the hours of the grid's CNN trials there at the measured epochs and epoch seconds; only
    datasets where every such point was measured (a point's schedules averaged)."""
    measured: dict[tuple, list[Stopped]] = {}
    for model in stopped:
        key = (model.preset, model.architecture, model.dataset, model.width, model.depth)
        measured.setdefault(key, []).append(model)
    hours: dict[str, float] = {}
    for dataset in sorted({point.dataset for point in grid}):
        points = [point for point in grid if point.dataset == dataset and point.architecture != "mlp"]
        keys = [(point.preset, point.architecture, point.dataset, point.width, point.depth) for point in points]
        if not points or any(key not in measured for key in keys):
            continue
        hours[dataset] = sum(point.trials * sum(model.epochs * model.seconds_per_epoch for model in measured[key])
                             / len(measured[key]) for point, key in zip(points, keys, strict=True)) / 3600
    return hours


def unstopped_trials(preset: str, datasets: Sequence[str], rows: Sequence[dict]) -> list[str]:
    """The trials of `preset` on `datasets` that have no record: those a budget stopped."""
    from sparsecap.studies import expand

    recorded = {row["trial_id"] for row in rows}
    return [trial.trial_id for trial in expand(stopping_spec(preset, datasets)) if trial.trial_id not in recorded]


def measure_stopping(root: Path, data_root: Path | None, device: str, budget_seconds: float,
                     chosen: Sequence[str]) -> list[Stopped]:
    """Part (f): the `chosen` CNN paper presets trained to their stopping rule (`STOPPING_OVERRIDES`) on the
    datasets at hand under `data_root`, within `budget_seconds` in all (each an equal share of what is left):
    epochs and seconds per model, the trials that did not stop in time, and what the grid's trials on those
    datasets cost."""
    from sparsecap.data import list_availability
    from sparsecap.studies import StudyDatabase, load_spec
    from sparsecap.studies.database import DATABASE_FILE

    at_hand = {availability.name.value for availability in list_availability(data_root) if availability.available}
    wanted = {preset: [dataset.value for dataset in load_spec(preset).datasets] for preset in chosen}
    presets = {preset: [dataset for dataset in datasets if dataset in at_hand] for preset, datasets in wanted.items()}
    presets = {preset: datasets for preset, datasets in presets.items() if datasets}
    used = sorted({dataset for datasets in presets.values() for dataset in datasets})
    missing = sorted({dataset for datasets in wanted.values() for dataset in datasets} - set(used))
    print(f"\n(f) epochs to the stopping rule: the CNN presets, one seed, {', '.join(STOPPING_OVERRIDES[1:])}; "
          f"datasets at hand: {', '.join(used) or 'none'}; missing: {', '.join(missing) or 'none'} (--data-root); "
          f"budget {budget_seconds:.0f} s", flush=True)
    stopped: list[Stopped] = []
    deadline = time.monotonic() + budget_seconds - STOPPING_GRACE_SECONDS
    for index, (preset, datasets) in enumerate(presets.items()):
        share = max(deadline - time.monotonic(), 0.0) / (len(presets) - index)
        out = root / preset
        in_time = run_within(stopping_command(preset, datasets, out, data_root, device), share)
        rows = StudyDatabase(out).rows("trials") if (out / DATABASE_FILE).exists() else []
        for row in rows:
            if row["status"] != "finished":
                print(f"    {row['trial_id']}: {row['status']}: {(row['error'] or '').strip().splitlines()[-1:]}")
        unstopped = unstopped_trials(preset, datasets, rows)
        if unstopped:
            why = f"did not stop within {share:.0f} s" if not in_time else "not run (see the errors above)"
            print(f"    {preset}: {len(unstopped)} trial(s) {why}: {', '.join(unstopped)}")
        stopped += stopped_models(preset, rows)
    print(f"{'preset':<22}{'model':<16}{'data':<10}{'epochs':>7}{'s/epoch':>9}")
    for model in stopped:
        label = Case(model.architecture, model.width, model.depth, model.dataset, "dense", "").label
        print(f"{model.preset:<22}{label:<16}{model.dataset:<10}{model.epochs:>7}{model.seconds_per_epoch:>9.2f}")
    for dataset, hours in stopped_grid_hours(paper_grid(), stopped).items():
        print(f"(f) the grid's CNN trials on {dataset}, {SEEDS} seeds, at these epochs: {hours:.2f} GPU-hours of training")
    return stopped


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    sys.stdout.reconfigure(line_buffering=True)  # children print to the same output; a timeout loses no line
    import torch

    if not torch.cuda.is_available():
        print(f"error: {no_cuda_message(torch.__version__, torch.version.cuda)}", file=sys.stderr)
        return EXIT_NO_CUDA
    from sparsecap.devices import cpu_name

    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}; host {cpu_name()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f}")
    passed = True
    if arguments.part in ("all", "check"):
        with tempfile.TemporaryDirectory() as temporary:
            passed = check_devices(arguments.out or Path(temporary))
    if arguments.part in ("all", "timing"):
        times = time_epochs(arguments.steps, "cuda:0")
        print_targets(times)
        print_grid_estimate(times)
    if arguments.part in ("all", "engine"):
        calibrate_engine(arguments.steps, "cuda:0")
    if arguments.part in ("all", "graphs"):
        passed &= compare_graphs(arguments.steps, "cuda:0")
    if arguments.part in ("all", "options"):
        compare_options(arguments.steps, "cuda:0", autotuned=arguments.cudnn_benchmark)
        if not arguments.cudnn_benchmark:
            torch.cuda.empty_cache()  # the memory this process's allocator keeps is the child's to use
            passed &= subprocess.run(autotuned_options_command(arguments.steps), check=False).returncode == 0
    if arguments.part in ("all", "stopping"):
        torch.cuda.empty_cache()  # as above, for part (f)'s `sparsecap run`
        with tempfile.TemporaryDirectory() as temporary:
            measure_stopping(arguments.out or Path(temporary), arguments.data_root, "cuda:0",
                             arguments.stopping_budget, arguments.stopping_presets)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
