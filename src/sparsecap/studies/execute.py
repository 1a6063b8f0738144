"""Running one trial: build, sparsify, train, evaluate, save. Pure apart from the checkpoint it writes."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from sparsecap.data import ImageDataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import evaluate, weight_noise_robustness
from sparsecap.sparsity import initialize_, magnitude_prune_, sparse_model_at_init, summarize, weight_count
from sparsecap.studies.checkpoints import save_checkpoint
from sparsecap.studies.database import TrialRecord
from sparsecap.studies.spec import Schedule, StudySpec
from sparsecap.studies.trials import Trial, trial_generators
from sparsecap.training import train


def base_nonzero(spec: StudySpec, trial: Trial, dataset: ImageDataset) -> int:
    """The capacity every model of the trial's family is held to: the dense base model's weight count."""
    base = ModelConfig(trial.architecture, spec.resolved_base_width, spec.resolved_base_depth)
    return weight_count(create_model(base, dataset.info))


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_trial(
    spec: StudySpec, trial: Trial, dataset: ImageDataset, checkpoint_directory: Path, show_progress: bool
) -> TrialRecord:
    generators = trial_generators(trial.seed)
    capacity = base_nonzero(spec, trial, dataset)
    model = create_model(ModelConfig(trial.architecture, trial.width, trial.depth), dataset.info)
    if trial.schedule is Schedule.STATIC:
        sparse_model_at_init(model, capacity, spec.allocation, generators.mask, generators.initialization)
    else:
        initialize_(model, generators.initialization)

    config = spec.training.config()
    with tqdm(total=config.max_epochs, desc=trial.trial_id, unit="epoch", leave=False,
              disable=not show_progress) as bar:

        def on_epoch(epoch: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

        training = train(model, dataset.train_images, dataset.train_labels, config, generators.data_order, on_epoch)

    if trial.schedule is Schedule.POSTTRAIN:
        magnitude_prune_(model, capacity, spec.pruning_scope, spec.allocation)

    info = dataset.info
    clean = evaluate(model, dataset.test_images, dataset.test_labels, info.num_classes)
    noise = weight_noise_robustness(
        model, dataset.test_images, dataset.test_labels, info.num_classes,
        spec.weight_noise.sigmas, spec.weight_noise.draws, spec.weight_noise.mean,
        generators.weight_noise, clean,
    )
    summary = summarize(model, capacity)
    checkpoint = checkpoint_directory / f"{trial.trial_id}.safetensors"
    save_checkpoint(model, checkpoint, {"trial_id": trial.trial_id, "width": str(trial.width),
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
        status="diverged" if training.diverged else "finished",
        total_weights=summary.total_weights,
        nonzero_weights=summary.total_nonzero,
        base_nonzero=capacity,
        remaining_percent=100.0 * summary.density,
        unmasked_parameters=summary.unmasked_parameters,
        disconnected_units=summary.disconnected_units,
        epochs=training.epochs,
        final_train_loss=_finite_or_none(training.final_loss),
        test_accuracy=clean.accuracy,
        test_loss=_finite_or_none(clean.loss),
        min_class_recall=clean.min_class_recall,
        train_seconds=training.seconds,
        checkpoint=str(checkpoint.relative_to(checkpoint_directory.parent)),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        epoch_losses=[_finite_or_none(loss) for loss in training.epoch_losses],
        class_recall=clean.class_recall,
        weight_noise=[
            {"sigma": draw.sigma, "draw": draw.draw, "accuracy": draw.accuracy,
             "loss": _finite_or_none(draw.loss), "delta_loss": _finite_or_none(draw.delta_loss)}
            for draw in noise
        ],
    )
