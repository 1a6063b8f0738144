"""Running one trial: build, sparsify, train, evaluate, save. Its effects beyond its record: the checkpoint it
writes, the corrupted-input cache it fills where none was made before it, and the torch threads it sets."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from sparsecap.data import DatasetName, ImageDataset
from sparsecap.devices import Placement, memory_format, placement
from sparsecap.models import ModelConfig, create_model, create_shape_only_model
from sparsecap.robustness import adversarial_robustness, default_epsilons, evaluate, weight_noise_robustness
from sparsecap.robustness.evaluation import evaluation_batch_size
from sparsecap.robustness.weight_noise import evaluations_at
from sparsecap.runtime import Runtime, reuse_freed_memory
from sparsecap.sparsity import (
    measure_connectivity,
    set_engine,
    summarize,
    weight_count,
)
from sparsecap.sparsity.flops import dense_multiply_accumulates
from sparsecap.sparsity.schedules import ScheduleSettings, SparsitySchedule, create_schedule
from sparsecap.studies.checkpoints import checkpoint_path, save_checkpoint
from sparsecap.studies.corruption_measure import corruption_rows
from sparsecap.studies.database import DIVERGED, FAILED, FINISHED, TrialRecord
from sparsecap.studies.generators import trial_generators
from sparsecap.studies.fitting import EpochDone, study_fit
from sparsecap.studies.progress import EpochReport, TrialProgress, group_name
from sparsecap.studies.spec import StudySpec
from sparsecap.studies.trials import Trial
from sparsecap.training import Precision, TrainingResult, numeric_precision, recompute_batch_norm_statistics
from sparsecap.training.multiseed import stacks_here


def base_nonzero(spec: StudySpec, trial: Trial, dataset: ImageDataset) -> int:
    """The capacity every model of the trial's family is held to: the dense base model's weight count, counted
    without storage: a base too large to build fails its trials, not the process that runs them."""
    return weight_count(create_shape_only_model(spec.base_for(trial.architecture), dataset.info))


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def trial_schedule(spec: StudySpec, trial: Trial, dataset: ImageDataset) -> SparsitySchedule:
    """The trial's schedule (`sparsecap.sparsity.schedules`) for the study's settings."""
    return create_schedule(trial.schedule, ScheduleSettings(
        base_nonzero(spec, trial, dataset), spec.allocation, spec.mask_granularity, spec.pruning_scope,
        spec.dynamic.config(), spec.training.max_epochs, spec.training.engine, dataset.train_images.device.type))


def prepare_model(spec: StudySpec, trial: Trial, dataset: ImageDataset) -> tuple[nn.Module, int]:
    """The trial's model ready to train on the dataset's device (masked or initialised on the CPU by its
    schedule, from the trial's generators, so the same on every device; stored for the engine) and its capacity."""
    generators = trial_generators(trial.seed)
    schedule = trial_schedule(spec, trial, dataset)
    model = create_model(ModelConfig(trial.architecture, trial.width, trial.depth), dataset.info)
    schedule.prepare(model, generators.mask, generators.initialization)
    device = dataset.train_images.device
    model = set_engine(model, spec.training.engine, device.type)  # auto: per layer and device
    return model.to(device, memory_format=memory_format(model, device)), schedule.settings.capacity


def train_by_schedule(spec: StudySpec, trials: Sequence[Trial], dataset: ImageDataset, models: Sequence[nn.Module],
                      epoch_done: EpochDone) -> list[TrainingResult]:
    """Train the prepared models of `trials` (one grid point's seeds) in place, as their schedule says."""
    fit = study_fit(spec, dataset, trials, models, epoch_done)
    return trial_schedule(spec, trials[0], dataset).train(
        models, fit, [trial_generators(trial.seed).mask_updates for trial in trials])


@contextlib.contextmanager
def _epochs_shown(spec: StudySpec, trials: Sequence[Trial], progress: TrialProgress) -> Iterator[EpochDone]:
    """The `EpochDone` of a group's training: it moves the epoch bar and sends an `EpochReport` per epoch
    (epochs counted over all of a schedule's rounds), then, once training is over, one saying the trials are
    being evaluated."""
    seeds = len(trials)
    latest: EpochReport | None = None
    with tqdm(total=spec.training.max_epochs, desc=group_name(trials[0].trial_id, seeds), unit="epoch",
              leave=False, disable=not progress.bars) as bar:

        def epoch_done(loss: float, training: int) -> None:
            nonlocal latest
            bar.update(1)
            bar.set_postfix({"loss": f"{loss:.4f}"} | ({"training": training} if seeds > 1 else {}))
            latest = EpochReport(progress.group or trials[0].trial_id, trials[0].trial_id, seeds,
                                 latest.epoch + 1 if latest else 1, spec.training.max_epochs, loss)
            if progress.on_epoch is not None:
                progress.on_epoch(latest)

        yield epoch_done
    if latest is not None and progress.on_epoch is not None:
        progress.on_epoch(dataclasses.replace(latest, evaluating=True))


def run_trial(
    spec: StudySpec, trial: Trial, dataset: ImageDataset, storage: Path, progress: TrialProgress
) -> TrialRecord:
    model, capacity = prepare_model(spec, trial, dataset)
    with _epochs_shown(spec, [trial], progress) as epoch_done:
        [training] = train_by_schedule(spec, [trial], dataset, [model], epoch_done)
    return evaluate_trial(spec, trial, dataset, model, capacity, training, storage, progress.bars)


def run_trials_together(
    spec: StudySpec, trials: Sequence[Trial], dataset: ImageDataset, storage: Path,
    progress: TrialProgress,
) -> list[TrialRecord]:
    """Trials that differ only in their seed trained as one stacked program (`train_together`) per round."""
    prepared = [prepare_model(spec, trial, dataset) for trial in trials]
    models = [model for model, _ in prepared]
    with _epochs_shown(spec, trials, progress) as epoch_done:
        results = train_by_schedule(spec, trials, dataset, models, epoch_done)
    return [  # one seed's failing evaluation fails that trial only
        _record_or_failure(spec, trial, dataset, functools.partial(
            evaluate_trial, spec, trial, dataset, model, capacity, training, storage, progress.bars))
        for trial, (model, capacity), training in zip(trials, prepared, results, strict=True)
    ]


def _evaluation_steps(spec: StudySpec, trial: Trial) -> int:
    """What the evaluation bar counts: the batch-norm statistics, clean, each weight-noise draw, the attacks and
    the corruptions."""
    noise = sum(evaluations_at(sigma, spec.weight_noise.draws) for sigma in spec.weight_noise.sigmas)
    statistics = spec.recomputes_batch_norm(trial.architecture)
    return statistics + 1 + noise + spec.adversarial.enabled + spec.corruptions.enabled


def evaluate_trial(
    spec: StudySpec,
    trial: Trial,
    dataset: ImageDataset,
    model: nn.Module,
    capacity: int,
    training: TrainingResult,
    storage: Path,
    show_progress: bool,
) -> TrialRecord:
    """Measure, save the checkpoint: the trained trial's record (its schedule has pruned it where it prunes).

    Batch norms first get the statistics of the final weights where the spec says so, and the checkpoint keeps
    them, so that what is measured is what is saved."""
    generators = trial_generators(trial.seed, str(dataset.test_images.device))
    info = dataset.info
    device = dataset.test_images.device
    # Whatever the training precision, the measures are of the weights in float32 (README: Precision, ...).
    with numeric_precision(Precision.FLOAT32, device), \
            tqdm(total=_evaluation_steps(spec, trial), desc=f"{trial.trial_id} evaluation", unit="step",
                 leave=False, disable=not show_progress) as bar:
        if spec.recomputes_batch_norm(trial.architecture):
            recompute_batch_norm_statistics(model, dataset.train_images, evaluation_batch_size(model, device),
                                            memory_format(model, device))
            bar.update(1)
        clean = evaluate(model, dataset.test_images, dataset.test_labels, info.num_classes)
        bar.update(1)
        adversarial = []
        if spec.adversarial.enabled:
            adversarial = adversarial_robustness(
                model, dataset.test_images, dataset.test_labels, spec.adversarial.attacks,
                spec.adversarial.epsilons or default_epsilons(info),
                steps=spec.adversarial.steps, examples=spec.adversarial.examples,
            )
            bar.update(1)
        corrupted = []
        if spec.corruptions.enabled:  # the study's cached corrupted inputs (generated by the first trial)
            corrupted = corruption_rows(spec, model, dataset, storage, show_progress)
            bar.update(1)
        noise = weight_noise_robustness(
            model, dataset.test_images, dataset.test_labels, info.num_classes,
            spec.weight_noise.sigmas, spec.weight_noise.draws, spec.weight_noise.mean,
            generators.weight_noise, clean, on_draw=lambda: bar.update(1),
        )
    summary = summarize(model, capacity)
    connectivity = measure_connectivity(model)  # of the final mask: after pruning
    checkpoint = checkpoint_path(storage, trial.trial_id)
    digest = save_checkpoint(model, checkpoint, {"trial_id": trial.trial_id, "width": str(trial.width),
                                                 "depth": str(trial.depth), "architecture": trial.architecture})
    return TrialRecord(
        trial_id=trial.trial_id,
        architecture=trial.architecture,
        dataset=trial.dataset.value,
        family=trial.family.value,
        width=trial.width,
        depth=trial.depth,
        schedule=trial.schedule.value,
        allocation=spec.allocation.value,
        seed=trial.seed,
        status=DIVERGED if training.diverged else FINISHED,
        total_weights=summary.total_weights,
        nonzero_weights=summary.total_nonzero,
        base_nonzero=capacity,
        remaining_percent=100.0 * summary.density,
        unmasked_parameters=summary.unmasked_parameters,
        disconnected_units=summary.disconnected_units,
        path_fraction_log10=connectivity.path_fraction_log10,
        min_effective_width_fraction=connectivity.min_effective_width_fraction,
        ineffective_units=connectivity.ineffective_units,
        layer_connectivity=[{"layer": layer.name, "units": layer.units, "effective_units": layer.effective_units}
                            for layer in connectivity.hidden_layers],
        epochs=training.epochs,
        final_train_loss=_finite_or_none(training.final_loss),
        test_accuracy=clean.accuracy,
        test_loss=_finite_or_none(clean.loss),
        min_class_recall=clean.min_class_recall,
        train_seconds=training.seconds,
        checkpoint=str(checkpoint.relative_to(storage)),
        checkpoint_sha256=digest,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        epoch_losses=[_finite_or_none(loss) for loss in training.epoch_losses],
        class_recall=clean.class_recall,
        weight_noise=[
            {"sigma": draw.sigma, "draw": draw.draw, "accuracy": draw.accuracy,
             "loss": draw.loss, "delta_loss": draw.delta_loss}  # +inf, an overflow, is a result
            for draw in noise
        ],
        adversarial=[
            {"attack": result.attack.value, "epsilon": result.epsilon, "robust_accuracy": result.robust_accuracy,
             "success_rate": _finite_or_none(result.success_rate), "examples": result.examples}
            for result in adversarial
        ],
        corruption=corrupted,
    )


def failed_record(spec: StudySpec, trial: Trial, dataset: ImageDataset, error: str, seconds: float) -> TrialRecord:
    """The record of a trial that raised: its error, and its grid position (counted without storage, so a model
    too large to build is still placed in the report)."""
    total, capacity = weight_count(meta_model(trial, dataset)), base_nonzero(spec, trial, dataset)
    return TrialRecord(
        trial_id=trial.trial_id, architecture=trial.architecture, dataset=trial.dataset.value,
        family=trial.family.value, width=trial.width, depth=trial.depth, schedule=trial.schedule.value,
        allocation=spec.allocation.value, seed=trial.seed, status=FAILED, total_weights=total,
        nonzero_weights=0, base_nonzero=capacity,
        remaining_percent=100.0 * min(capacity, total) / total,
        unmasked_parameters=0, disconnected_units=0, epochs=0, final_train_loss=None, test_accuracy=None,
        test_loss=None, min_class_recall=None, train_seconds=seconds, checkpoint="",
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"), error=error,
    )


def run_trial_or_failure(
    spec: StudySpec, trial: Trial, dataset: ImageDataset, storage: Path, progress: TrialProgress
) -> TrialRecord:
    """`run_trial`, but an exception becomes a record with status "failed" and the traceback, not an abort.

    KeyboardInterrupt and SystemExit are not caught: they stop the run (finished trials stay saved).
    """
    return _record_or_failure(spec, trial, dataset, functools.partial(
        run_trial, spec, trial, dataset, storage, progress))


def _record_or_failure(
    spec: StudySpec, trial: Trial, dataset: ImageDataset, compute: Callable[[], TrialRecord]
) -> TrialRecord:
    start = time.perf_counter()
    try:
        return compute()
    except torch.OutOfMemoryError:  # last line, the one `sparsecap run` prints: what to do about it
        error = f"{traceback.format_exc()}{out_of_memory_advice(spec, dataset)}"
        return failed_record(spec, trial, dataset, error, time.perf_counter() - start)
    except Exception:  # noqa: BLE001 - any error of one trial must not block the others
        return failed_record(spec, trial, dataset, traceback.format_exc(), time.perf_counter() - start)


def out_of_memory_advice(spec: StudySpec, dataset: ImageDataset) -> str:
    """What a trial that ran out of (GPU) memory records last: its batch size, and a smaller one to try."""
    batch_size = spec.training.batch_size
    return (f"out of memory on {dataset.train_images.device} at [training] batch_size = {batch_size}: try a "
            f"smaller batch, e.g. --set training.batch_size={max(1, batch_size // 2)} (a changed spec is a new "
            "study: give it its own --out)")


def seed_groups(spec: StudySpec, trials: Sequence[Trial]) -> list[list[Trial]]:
    """`trials` in order, those differing only in their seed grouped when the spec trains seeds together."""
    if not spec.training.seeds_together:
        return [[trial] for trial in trials]
    groups: dict[Trial, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(dataclasses.replace(trial, seed=0), []).append(trial)
    return list(groups.values())


def meta_model(trial: Trial, dataset: ImageDataset) -> nn.Module:
    """The trial's model without storage: its shapes and layer kinds decide how it runs, at no cost."""
    return create_shape_only_model(ModelConfig(trial.architecture, trial.width, trial.depth), dataset.info)


def multiply_accumulates_of(trial: Trial, dataset: ImageDataset) -> int:
    """The trial's dense multiply-accumulates per example: what the thread policy reads, and a group's cost."""
    return dense_multiply_accumulates(meta_model(trial, dataset), dataset.info.input_shape)


def costliest_first(groups: Sequence[list[Trial]],
                    datasets: Mapping[DatasetName, ImageDataset]) -> list[list[Trial]]:
    """`groups` in the order to start them: the most multiply-accumulates (per example, all seeds) first, so that a
    study ends with short groups side by side, not one long group alone. Ties keep the grid's order."""

    def cost(group: list[Trial]) -> int:
        return len(group) * multiply_accumulates_of(group[0], datasets[group[0].dataset])

    return sorted(groups, key=cost, reverse=True)


def run_group_or_failures(
    spec: StudySpec, trials: Sequence[Trial], dataset: ImageDataset, storage: Path, runtime: Runtime,
    progress: TrialProgress,
) -> list[TrialRecord]:
    """One group of `seed_groups` on `runtime`'s threads: trained together where its models can be stacked
    and gain, else one by one. Each record says how many threads it ran with.

    A group that raises is run again one trial at a time, so one trial's error fails only that trial.
    """
    progress = dataclasses.replace(progress, group=trials[0].trial_id)
    model = meta_model(trials[0], dataset)
    multiply_accumulates = dense_multiply_accumulates(model, dataset.info.input_shape)
    threads = runtime.threads_for(multiply_accumulates)
    torch.set_num_threads(threads)  # this process trains only this group now
    reuse_freed_memory()
    records = None
    together = trial_schedule(spec, trials[0], dataset).can_train_seeds_together()
    if together and stacks_here(model, len(trials), spec.training.batch_size, dataset.train_images.device.type,
                                multiply_accumulates):
        try:
            records = run_trials_together(spec, trials, dataset, storage, progress)
        except Exception as error:  # noqa: BLE001 - the trials get their own runs and records below
            print(f"warning: training seeds {[trial.seed for trial in trials]} of {trials[0].trial_id} together "
                  f"failed ({type(error).__name__}: {error}); running them one by one", file=sys.stderr)
    if records is None:
        records = [run_trial_or_failure(spec, trial, dataset, storage, progress) for trial in trials]
    return [placed(record, placement(runtime.device), threads) for record in records]


def placed(record: TrialRecord, where: Placement, threads: int) -> TrialRecord:
    """The record with where it ran and on how many threads."""
    return dataclasses.replace(record, threads=threads, device=where.device, device_name=where.device_name,
                               torch_version=where.torch_version, cuda_version=where.cuda_version)
