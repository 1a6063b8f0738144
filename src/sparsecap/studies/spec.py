"""Study specifications: a TOML file (or a shipped preset) validated into a typed, resolved spec.

Validation is strict: an unknown or mistyped key, a value of the wrong type or an unknown name is an
error that says what was wrong and what is valid, before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import itertools
import json
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sparsecap.corruptions.protocol import ProtocolConfig
from sparsecap.corruptions.registry import Suite, suite_for_dataset
from sparsecap.data import DatasetName, dataset_info
from sparsecap.errors import CorruptionError, SpecError
from sparsecap.models import ModelConfig, architecture_family, list_architectures, validate_input
from sparsecap.models.architectures import depth_problem
from sparsecap.robustness.attack_names import DEFAULT_EXAMPLES, DEFAULT_STEPS, Attack
from sparsecap.sparsity import Allocation, Engine, MaskGranularity, PruningScope
from sparsecap.sparsity.schedule_config import (
    DYNAMIC_SCHEDULES,
    MOVING_MASK_SCHEDULES,
    DynamicConfig,
    Schedule,
    imp_round_targets,
)
from sparsecap.training import BatchNormStatistics, LearningRateSchedule, Precision, TrainingConfig

PositiveInt = Annotated[int, Field(gt=0)]
SQLITE_LARGEST_INTEGER = 2**63 - 1
"""The largest seed: the results database stores seeds as SQLite integers."""
FLOAT32_MAX = 3.4028234663852886e38
"""torch.finfo(torch.float32).max: the numbers a spec hands to float32 tensors must fit, or every trial fails."""
NonNegativeFloat = Annotated[float, Field(ge=0, le=FLOAT32_MAX)]


class Family(str, enum.Enum):
    WIDTH = "width"
    DEPTH = "depth"


def reject_repeats(values: list[Any] | None) -> list[Any] | None:
    """Validator body shared by every list that is a set in disguise (widths, seeds, attacks, ...). The error names
    the values given more than once: in a long list of widths, the whole list would hide them."""
    if values is not None and len(set(values)) != len(values):
        counts = Counter(getattr(value, "value", value) for value in values)
        repeated = ", ".join(str(value) for value, count in counts.items() if count > 1)
        raise ValueError(f"values must not repeat; given more than once: {repeated}")
    return values


class _Strict(BaseModel):
    # No infinities anywhere: every bound below (gt=0, le=1, ...) refuses NaN but would let inf through.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, use_enum_values=False, allow_inf_nan=False)


_TRAINING_DEFAULTS = TrainingConfig()


class TrainingSpec(_Strict):
    max_epochs: PositiveInt = _TRAINING_DEFAULTS.max_epochs
    learning_rate: Annotated[float, Field(gt=0, le=FLOAT32_MAX)] = _TRAINING_DEFAULTS.learning_rate
    momentum: Annotated[float, Field(ge=0, lt=1)] = _TRAINING_DEFAULTS.momentum
    batch_size: PositiveInt = _TRAINING_DEFAULTS.batch_size
    stop_loss: NonNegativeFloat = _TRAINING_DEFAULTS.stop_loss
    learning_rate_schedule: LearningRateSchedule = _TRAINING_DEFAULTS.schedule
    augmentation: bool = _TRAINING_DEFAULTS.augmentation
    """Random crop (4-pixel zero padding) and horizontal flip of each training batch (CIFAR practice)."""
    engine: Engine = Engine.DENSE
    """How masked linear layers compute: dense weight × mask, sparse (nonzeros only) or auto (by density).
    The same numbers up to float rounding (docs/performance.md); convolutions are always dense."""
    seeds_together: bool = False
    """Train the seeds of each grid point as one stacked program (`train_together`) where it gains
    (`stacks_here`): MLPs small enough (`stacking_pays`), CNNs (one grouped-convolution network) off the
    CPU and below 10^8 multiply-accumulates per example; other models train seed by seed. The same numbers
    up to float rounding (docs/performance.md)."""
    precision: Precision = _TRAINING_DEFAULTS.precision
    """The arithmetic of training (`sparsecap.training.precision`); evaluation is always float32."""
    compile: bool = _TRAINING_DEFAULTS.compile
    """Train through torch.compile: the same numbers up to float rounding, faster on a GPU (slow to start)."""
    batch_norm_statistics: BatchNormStatistics = BatchNormStatistics.RECOMPUTED
    """What batch norms normalise with in evaluation: statistics recomputed over the training set with the
    final weights, or the running averages of training (`sparsecap.training.batch_norm` says why the first)."""

    def config(self) -> TrainingConfig:
        return TrainingConfig(
            max_epochs=self.max_epochs,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            batch_size=self.batch_size,
            stop_loss=self.stop_loss,
            schedule=self.learning_rate_schedule,
            augmentation=self.augmentation,
            precision=self.precision,
            compile=self.compile,
        )


class WeightNoiseSpec(_Strict):
    sigmas: list[NonNegativeFloat] = Field(default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], min_length=1)
    draws: PositiveInt = 5
    mean: Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)] = 0.0

    @field_validator("sigmas")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        return reject_repeats(values)


class AdversarialSpec(_Strict):
    """L-infinity attacks on a seeded sample of test examples (off unless enabled: attacks cost time)."""

    enabled: bool = False
    attacks: list[Attack] = Field(default=list(Attack), min_length=1)
    epsilons: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(default=None, min_length=1)
    """Budgets in pixel units; None: 0.05, 0.1, 0.2, 0.3 for 1-channel datasets, 1, 2, 4, 8 /255 for CIFAR."""
    steps: PositiveInt = DEFAULT_STEPS
    examples: PositiveInt = DEFAULT_EXAMPLES

    @field_validator("attacks", "epsilons")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        return reject_repeats(values)


_PROTOCOL_DEFAULTS = {field.name: field.default for field in dataclasses.fields(ProtocolConfig)}


class CorruptionsSpec(_Strict):
    """Accuracy on corrupted test data, MNIST-C / CIFAR-C protocol (off unless enabled: generation costs time)."""

    enabled: bool = False
    corruptions: list[str] | None = Field(default=None, min_length=1)
    """Names in each dataset's suite; None: the published set (MNIST-C's 15 and identity, CIFAR-C's 19)."""
    severities: list[Annotated[int, Field(ge=1, le=5)]] = Field(default=list(_PROTOCOL_DEFAULTS["severities"]),
                                                                 min_length=1)
    """CIFAR-C severities; MNIST-C uses each corruption's published severity."""
    sample_size: PositiveInt = _PROTOCOL_DEFAULTS["sample_size"]
    draws: PositiveInt = _PROTOCOL_DEFAULTS["draws"]
    seed: Annotated[int, Field(ge=0)] = _PROTOCOL_DEFAULTS["seed"]

    @field_validator("corruptions", "severities")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        return reject_repeats(values)

    def protocol(self, dataset: DatasetName) -> ProtocolConfig:
        """The protocol for one dataset; raises CorruptionError for a dataset without a suite or a bad name."""
        suite = suite_for_dataset(dataset.value)
        options = {"severities": tuple(self.severities), "sample_size": self.sample_size, "draws": self.draws,
                   "seed": self.seed}
        if self.corruptions is None:
            return ProtocolConfig.default(suite, **options)
        return ProtocolConfig(suite=suite, corruptions=tuple(self.corruptions), **options)


_DYNAMIC_DEFAULTS = DynamicConfig()


class DynamicSpec(_Strict):
    """[dynamic]: the set, rigl, imp and posttrain-finetune schedules' parameters (`DynamicConfig`; defaults
    from their papers). Part of the fingerprint only when one of those schedules is in the study."""

    zeta: float = _DYNAMIC_DEFAULTS.zeta
    update_interval: int = _DYNAMIC_DEFAULTS.update_interval
    stop_fraction: float = _DYNAMIC_DEFAULTS.stop_fraction
    rewind_epoch: int = _DYNAMIC_DEFAULTS.rewind_epoch
    imp_prune_fraction: float = _DYNAMIC_DEFAULTS.imp_prune_fraction
    imp_rounds: int = _DYNAMIC_DEFAULTS.imp_rounds
    finetune_epochs: int = _DYNAMIC_DEFAULTS.finetune_epochs

    @field_validator("zeta", "imp_prune_fraction")
    @classmethod
    def _open_unit_interval(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("must be in (0, 1), both ends excluded")
        return value

    @field_validator("stop_fraction")
    @classmethod
    def _fraction_of_training(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("must be in (0, 1]: a fraction of training")
        return value

    @field_validator("update_interval", "imp_rounds", "finetune_epochs")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be an integer >= 1")
        return value

    @field_validator("rewind_epoch")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be an integer from 0 (the initialisation) to max_epochs - 1")
        return value

    def config(self) -> DynamicConfig:
        return DynamicConfig(**self.model_dump())


def _weight_count(config: ModelConfig, dataset: DatasetName) -> int:
    """A model's maskable weights, counted without storage. It imports torch, so only the specs that need
    counts (imp's rounds) pay for that at validation."""
    from sparsecap.models import create_shape_only_model
    from sparsecap.sparsity import weight_count

    return weight_count(create_shape_only_model(config, dataset_info(dataset)))


class ResourcesSpec(_Strict):
    """What one trial asks of a cluster node (the Ray executor): how it runs, never what it computes."""

    num_cpus: Annotated[float, Field(gt=0)] = 1.0
    num_gpus: NonNegativeFloat = 0.0
    memory_gib: Annotated[float, Field(gt=0)] | None = None
    """Memory reserved per trial for scheduling (None: no reservation)."""


class StudySpec(_Strict):
    """A grid of trials: architectures × datasets × widths × depths × schedules × seeds.

    Exactly one of widths and depths may hold several values (the width or the depth family);
    every model is masked to the nonzero count of its architecture's dense base model (base_width,
    base_depth), which defaults to the smallest width and depth of the grid. Depths default to each
    architecture's shallowest member (1 hidden layer, VGG11, ResNet18).
    """

    name: str
    """Names the study's directory (runs/<name>): letters, digits, '_', '.' and '-', not dots alone."""
    architectures: list[str] = Field(min_length=1)
    datasets: list[DatasetName] = Field(min_length=1)
    widths: list[PositiveInt] = Field(min_length=1)
    depths: list[PositiveInt] | None = Field(default=None, min_length=1)
    base_width: PositiveInt | None = None
    base_depth: PositiveInt | None = None
    schedules: list[Schedule] = Field(default=[Schedule.STATIC], min_length=1)
    schedule_widths: dict[Schedule, Annotated[list[PositiveInt], Field(min_length=1)]] | None = None
    """Widths per schedule, each a subset of `widths` holding the base width (None, or a schedule left out:
    all of `widths`): an expensive post-training width can be left out without splitting the study."""
    allocation: Allocation = Allocation.UNIFORM
    mask_granularity: MaskGranularity = MaskGranularity.WEIGHT
    pruning_scope: PruningScope = PruningScope.LAYERWISE
    train_examples: PositiveInt | None = None
    """Train on a fixed, seeded subset of this many examples (None: the whole training set)."""
    test_examples: PositiveInt | None = None
    """Evaluate on a fixed, seeded subset of this many test examples (None: the whole test set)."""
    seeds: list[Annotated[int, Field(ge=0, le=SQLITE_LARGEST_INTEGER)]] = Field(default=[0, 1, 2, 3, 4], min_length=1)
    training: TrainingSpec = TrainingSpec()
    weight_noise: WeightNoiseSpec = WeightNoiseSpec()
    adversarial: AdversarialSpec = AdversarialSpec()
    corruptions: CorruptionsSpec = CorruptionsSpec()
    dynamic: DynamicSpec = DynamicSpec()
    resources: ResourcesSpec = ResourcesSpec()

    @field_validator("name")
    @classmethod
    def _a_directory_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not name.strip("."):
            raise ValueError("must be letters, digits, '_', '.' and '-', with at least one that is not a dot: it "
                             "names the study's directory, runs/<name>")
        return name

    @field_validator("architectures")
    @classmethod
    def _known_architectures(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in list_architectures()]
        if unknown:
            raise ValueError(f"unknown architecture(s) {unknown}; valid: {', '.join(list_architectures())}")
        return names

    @field_validator("widths", "depths", "seeds", "datasets", "architectures", "schedules")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        return reject_repeats(values)

    @model_validator(mode="after")
    def _one_family_and_a_base_below_it(self) -> StudySpec:
        if len(self.widths) > 1 and self.depths is not None and len(self.depths) > 1:
            raise ValueError("vary either widths (width family) or depths (depth family), not both")
        for architecture in self.architectures:
            family, depths = architecture_family(architecture), self.depths_for(architecture)
            if family.depths is not None and not set(depths) <= set(family.depths):
                valid = ", ".join(map(str, family.depths))
                raise ValueError(f"{architecture} has no depth {sorted(set(depths) - set(family.depths))}; valid: {valid}")
            for dataset in self.datasets:
                validate_input(family, dataset_info(dataset).input_shape)
            base = self.base_for(architecture)
            if family.depths is not None and base.depth not in family.depths:
                valid = ", ".join(map(str, family.depths))
                raise ValueError(f"{architecture} has no depth {base.depth} (base_depth); valid: {valid}")
            too_deep = depth_problem(family, max(*depths, base.depth))
            if too_deep is not None:
                raise ValueError(too_deep)
            if base.width > min(self.widths) or base.depth > min(depths):
                raise ValueError(
                    f"the {architecture} base (width {base.width}, depth {base.depth}) must not be larger "
                    f"than the grid's smallest model (width {min(self.widths)}, depth {min(depths)})"
                )
        return self

    @model_validator(mode="after")
    def _corruptions_fit_the_datasets(self) -> StudySpec:
        if self.corruptions.enabled:
            for dataset in self.datasets:
                try:
                    self.corruptions.protocol(dataset)
                except CorruptionError as error:
                    raise ValueError(f"[corruptions] on {dataset.value}: {error}") from None
        return self

    @model_validator(mode="after")
    def _dynamic_schedules_can_run(self) -> StudySpec:
        if self.dynamic.rewind_epoch >= self.training.max_epochs:
            raise ValueError(f"dynamic.rewind_epoch {self.dynamic.rewind_epoch} is beyond training; valid: 0 to "
                             f"max_epochs - 1 = {self.training.max_epochs - 1}")
        moving = sorted(schedule.value for schedule in MOVING_MASK_SCHEDULES & set(self.schedules))
        if moving and self.mask_granularity is not MaskGranularity.WEIGHT:
            raise ValueError(f"{', '.join(moving)} move single weights: mask_granularity must be 'weight' with them")
        if Schedule.IMP in self.schedules:
            for architecture, dataset in itertools.product(self.architectures, self.datasets):
                capacity = _weight_count(self.base_for(architecture), dataset)
                largest = max((_weight_count(ModelConfig(architecture, width, depth), dataset), width, depth)
                              for width, depth in itertools.product(self.widths_for(Schedule.IMP),
                                                                  self.depths_for(architecture)))
                try:  # the largest model needs the most rounds
                    imp_round_targets(largest[0], capacity, self.dynamic.imp_prune_fraction, self.dynamic.imp_rounds)
                except ValueError as error:
                    raise ValueError(f"imp on {architecture} width {largest[1]} depth {largest[2]}: {error}") from None
        return self

    @model_validator(mode="after")
    def _schedule_widths_within_the_grid(self) -> StudySpec:
        for schedule, widths in (self.schedule_widths or {}).items():
            if schedule not in self.schedules:
                raise ValueError(f"schedule_widths names {schedule.value}, which is not in schedules "
                                 f"({', '.join(item.value for item in self.schedules)})")
            try:
                reject_repeats(widths)
            except ValueError as error:  # a rule across keys: its message must name the key
                raise ValueError(f"schedule_widths.{schedule.value}: {error}") from None
            outside = sorted(set(widths) - set(self.widths))
            if outside:
                raise ValueError(f"schedule_widths.{schedule.value} has width(s) {outside} outside widths {self.widths}")
            for architecture in self.architectures:
                base = self.base_for(architecture).width
                if base in self.widths and base not in widths:
                    raise ValueError(f"schedule_widths.{schedule.value} must hold the base width {base}: every "
                                     f"schedule's curve starts at its dense base")
        return self

    def widths_for(self, schedule: Schedule) -> list[int]:
        """The widths this schedule is trained at."""
        return (self.schedule_widths or {}).get(schedule, self.widths)

    @property
    def family(self) -> Family:
        return Family.DEPTH if self.depths is not None and len(self.depths) > 1 else Family.WIDTH

    def depths_for(self, architecture: str) -> list[int]:
        return self.depths if self.depths is not None else [architecture_family(architecture).base_depth]

    def base_for(self, architecture: str) -> ModelConfig:
        """The dense model whose weight count every `architecture` model of the study keeps."""
        width = self.base_width if self.base_width is not None else min(self.widths)
        depth = self.base_depth if self.base_depth is not None else min(self.depths_for(architecture))
        return ModelConfig(architecture, width, depth)

    def bases(self) -> dict[str, ModelConfig]:
        """Each architecture's dense base (`base_for`)."""
        return {architecture: self.base_for(architecture) for architecture in self.architectures}

    def unmasked_bases(self) -> dict[str, ModelConfig]:
        """Architectures whose every model is its own dense base (nothing masked), with that base: a
        one-width study of a large model is usually meant to be masked to a smaller base."""
        return {architecture: base for architecture, base in self.bases().items()
                if set(self.widths) == {base.width} and set(self.depths_for(architecture)) == {base.depth}}

    def bases_outside_the_grid(self) -> dict[str, ModelConfig]:
        """Architectures whose dense base is no model of the grid, with that base: no trial measures the point
        every claim but c6 compares with, so those verdicts can only be inconclusive."""
        return {architecture: base for architecture, base in self.bases().items()
                if base.width not in self.widths or base.depth not in self.depths_for(architecture)}

    def ignores_severities(self) -> bool:
        """Whether `[corruptions] severities` was changed for a study none of whose datasets is measured on
        CIFAR-C: MNIST-C measures each corruption at its published severity, so the setting changes nothing."""
        corruptions = self.corruptions
        default = CorruptionsSpec.model_fields["severities"].default
        return (corruptions.enabled and corruptions.severities != default
                and all(suite_for_dataset(dataset.value) is not Suite.CIFAR_C for dataset in self.datasets))

    def ignored_tables(self) -> list[str]:
        """The measures left off (`enabled = false`) with settings other than their defaults: those settings
        change nothing, and a user who changed them most likely meant the measure to run."""
        return [name for name, table in (("adversarial", self.adversarial), ("corruptions", self.corruptions))
                if not table.enabled and table != type(table)()]

    def ignores_dynamic(self) -> bool:
        """Whether `[dynamic]` was changed for a study with none of the schedules it configures: its settings then
        change nothing, and a user who changed them most likely meant such a schedule to run."""
        return not DYNAMIC_SCHEDULES & set(self.schedules) and self.dynamic != DynamicSpec()

    def recomputes_batch_norm(self, architecture: str) -> bool:
        """Whether the study's `architecture` models have their batch-norm statistics recomputed after training."""
        recomputed = self.training.batch_norm_statistics is BatchNormStatistics.RECOMPUTED
        return recomputed and architecture_family(architecture).batch_norm

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in, as plain JSON data (saved beside the results)."""
        data = self.model_dump(mode="json")
        data["bases"] = {architecture: {"width": base.width, "depth": base.depth}
                         for architecture, base in self.bases().items()}
        if not self.adversarial.enabled:
            # Disabled attacks change no result: leave them out, so studies from before the
            # [adversarial] table existed keep their fingerprint and can be resumed.
            del data["adversarial"]
        if not self.corruptions.enabled:  # likewise: studies from before [corruptions] keep their fingerprint
            del data["corruptions"]
        if self.training.engine is Engine.DENSE:  # likewise: studies from before the sparse engine
            del data["training"]["engine"]
        if not self.schedule_widths:  # likewise: studies from before widths per schedule (`{}` narrows nothing)
            del data["schedule_widths"]
        if not self.training.seeds_together:  # likewise: studies from before seeds were trained together
            del data["training"]["seeds_together"]
        if self.training.precision is Precision.FLOAT32:  # likewise: studies from before precisions
            del data["training"]["precision"]
        if not self.training.compile:  # likewise (compile, like the engine, is in it when set: README)
            del data["training"]["compile"]
        if not DYNAMIC_SCHEDULES & set(self.schedules):  # likewise: studies from before [dynamic]
            del data["dynamic"]
        if not any(self.recomputes_batch_norm(architecture) for architecture in self.architectures):
            # Likewise: studies from before recomputed statistics ran on the running ones, and MLPs have none.
            # So a study.json without the key is read as "running" (`_read_study_json`).
            del data["training"]["batch_norm_statistics"]
        # Resources say where and how trials run, not what they compute: a study started on one executor
        # (or with other resources) can be finished on another.
        del data["resources"]
        return data

    def fingerprint(self) -> str:
        """Identifies the study: a different fingerprint in an output directory means a different study."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()


GRID_AND_RUN_KEYS = frozenset({
    "name", "architectures", "datasets", "widths", "depths", "base_width", "base_depth", "bases", "schedules",
    "schedule_widths", "seeds", "resources", "training.engine", "training.seeds_together", "training.compile",
    "training.batch_norm_statistics",
})
"""Recorded keys that place a trial in the grid or say how it runs, not what it computes: the engine, stacking
and compiling give the same numbers up to float rounding. (Batch-norm statistics do change the numbers, but
only for architectures with batch norms: `BatchNormStatistics.recorded_in` reads them.)"""
OPTIONAL_TABLES = frozenset({"adversarial", "corruptions", "dynamic"})
"""Tables a study records only when it measures them, or runs a schedule they configure."""


def _flattened(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def spec_differences(recorded: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, str]:
    """Where a recorded spec and a resolved one differ: dotted key -> `key (recorded A, now B)`, what makes a
    study directory refuse a spec, said so the user can tell a typo from another experiment."""
    before, after = _flattened(recorded), _flattened(resolved)
    return {key: f"{key} (recorded {before.get(key, 'unset')}, now {after.get(key, 'unset')})"
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)}


def _recorded_defaults() -> dict[str, Any]:
    """Every always-recorded setting at its default, as a recorded spec writes it."""
    minimal = StudySpec(name="defaults", architectures=["mlp"], datasets=[DatasetName.DIGITS], widths=[1])
    return {key: value for key, value in _flattened(minimal.model_dump(mode="json")).items()
            if key.partition(".")[0] not in OPTIONAL_TABLES}


def compared_settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """What decides the numbers of a recorded (resolved) spec's trials beyond their place in the grid, by dotted
    key (`training.learning_rate`): keys `StudySpec.resolved` leaves out at their default get it back, and an
    optional table (`OPTIONAL_TABLES`) is there only if recorded. Two studies whose settings differ where both
    have a key ran different experiments, and their seeds cannot be pooled."""
    settings = {**_recorded_defaults(), **_flattened(recorded)}
    if settings["training.learning_rate_schedule"] == LearningRateSchedule.CONSTANT.value and "dynamic" not in recorded:
        # Then max_epochs only caps training: a trial the stopping rule ended is the same under any cap, and one
        # the cap ended is flagged under-trained. (A cosine rate or a dynamic schedule is timed by it.)
        del settings["training.max_epochs"]
    return {key: value for key, value in settings.items()
            if key not in GRID_AND_RUN_KEYS and key.partition(".")[0] not in GRID_AND_RUN_KEYS}


TABLES: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in StudySpec.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
"""The spec's tables, by key (read off the model, so a new table is never missed): where an unknown key's valid
neighbours are looked up."""


def _unknown_key(location: tuple[str | int, ...]) -> str:
    """An unknown key, with the nearest valid one where a typo is likely, and the keys valid where it stood:
    those of its own table only, so the line stays short enough to read."""
    *parents, key = (str(part) for part in location)
    table = StudySpec if not parents else TABLES.get(parents[0]) if len(parents) == 1 else None
    if table is None:
        return f"  {'.'.join(parents + [key])}: unknown key"
    valid = list(table.model_fields)
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    elsewhere = [f"{name}.{key}" for name, fields in TABLES.items()
                 if name not in parents and key in fields.model_fields]
    elsewhere += [key] if parents and key in StudySpec.model_fields else []
    misplaced = f" (in TOML, every key below a [{parents[0]}] header belongs to that table)" if parents else ""
    guess = (f"; did you mean {'.'.join(parents + nearest)}?" if nearest
             else f"; did you mean {elsewhere[0]}?{misplaced}" if elsewhere else "")
    where = f"[{parents[0]}]" if parents else "top-level"
    shown = ", ".join(f"[{name}]" if table is StudySpec and name in TABLES else name for name in valid)
    return f"  {'.'.join(parents + [key])}: unknown key{guess} (valid {where} keys: {shown})"


def _describe_errors(error: ValidationError) -> str:
    lines = []
    for detail in error.errors():
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            lines.append(_unknown_key(detail["loc"]))
        elif not detail["loc"]:  # a rule across keys: its message names them, and the input is the whole spec
            lines.append(f"  {message}")
        else:
            lines.append(f"  {'.'.join(str(part) for part in detail['loc'])}: {message} (got {detail.get('input')!r})")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], source: str) -> StudySpec:
    """Validate raw spec data; each problem is named, an unknown key with the keys valid in its place."""
    try:
        # JSON-mode validation: strict about types, yet takes enum members by their names.
        return StudySpec.model_validate_json(json.dumps(data, default=str))
    except ValidationError as error:
        raise SpecError(f"invalid study spec {source}:\n{_describe_errors(error)}") from None


PRESET_PACKAGE = "sparsecap.studies.presets"


def list_presets() -> list[str]:
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(file.name.removesuffix(".toml") for file in files if file.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """A shipped preset's TOML as written, comments included: what `load_spec` reads, and what a user copies to
    start a spec of their own."""
    if name not in list_presets():
        raise SpecError(f"{name!r} is not a preset; presets: {', '.join(list_presets())}")
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except ValueError as error:  # TOMLDecodeError, or an integer beyond Python's 4300 digits
        raise SpecError(f"study spec {source} is not valid TOML: {error}") from None


def _set_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one KEY=VALUE (dotted key, TOML value; a bare word is taken as a string; a table is merged)."""
    key, separator, value = assignment.partition("=")
    if not separator or not key.strip():
        raise SpecError(f"override {assignment!r} must look like KEY=VALUE, e.g. training.max_epochs=3")
    parsed = _override_value(value, assignment)
    *parents, leaf = key.strip().split(".")
    target = data
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise SpecError(f"override {assignment!r}: {parent!r} is not a table")
    target[leaf] = _merged(target.get(leaf), parsed)


def _override_value(value: str, assignment: str) -> Any:
    """An override's TOML value; a bare word (`bfloat16`, `posttrain-finetune`) is taken as a string, since shells
    strip the quotes TOML wants. Anything else that is not TOML is refused, not passed on as a string: a list
    with a typo would otherwise be reported as "not a list"."""
    try:
        return tomllib.loads(f"value = {value}")["value"]
    except ValueError as error:  # TOMLDecodeError, or an integer beyond Python's 4300 digits
        if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*", value.strip()):
            return value.strip()
        raise SpecError(f"override {assignment!r}: {value.strip()!r} is not a TOML value ({error}); write strings "
                        f"as words or in quotes, lists as [a, b], numbers as decimals (1/255 as 0.00392)") from None


def _merged(current: Any, value: Any) -> Any:
    """An override's value in place of the current one, except that a table is merged key by key into the table
    it overrides: `--set 'training={max_epochs=3}'` keeps the spec's other [training] keys, as
    `--set training.max_epochs=3` does."""
    if isinstance(current, dict) and isinstance(value, dict):
        return {**current, **{key: _merged(current.get(key), item) for key, item in value.items()}}
    return value


STUDY_FILE = "study.json"
"""What a study directory records of its spec (`studies.runner`); accepted as a spec to rerun the study."""


def _read_study_json(text: str, source: str) -> dict[str, Any]:
    """The spec recorded in a study directory's study.json (or a plain JSON spec)."""
    try:
        data = json.loads(text)
    except ValueError as error:  # JSONDecodeError, or an integer beyond Python's 4300 digits
        raise SpecError(f"study spec {source} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"study spec {source} must hold a JSON object, not {type(data).__name__}")
    if "fingerprint" in data:  # a study.json: the resolved spec in it
        if not isinstance(data.get("spec"), dict):
            raise SpecError(f"{source} is a study.json whose \"spec\" is not a table of settings (it holds "
                            f"{type(data.get('spec')).__name__}): it is damaged. Resume the study from the spec it was "
                            f"run with (sparsecap run SPEC --out {Path(source).parent}), which writes it anew from "
                            f"the study's database")
        return spec_data_of_record(data["spec"])
    return data


def spec_data_of_record(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """Spec data (for `parse_spec`) from a spec as a study records it (`StudySpec.resolved`): its bases are
    derived, and batch-norm statistics are recorded only where recomputed."""
    data = {key: value for key, value in recorded.items() if key != "bases"}
    if isinstance(data.get("training"), dict):  # validation names a value that is not a setting
        data["training"] = {**data["training"],
                            "batch_norm_statistics": BatchNormStatistics.recorded_value(data["training"])}
    return data


def load_spec(spec: str, overrides: list[str] | None = None) -> StudySpec:
    """A preset name, a path to a TOML file or to a study directory's study.json, with optional KEY=VALUE
    overrides applied before validation."""
    path = Path(spec)
    if spec in list_presets():
        source, text = f"preset {spec!r}", preset_text(spec)
    elif path.suffix in (".toml", ".json") or path.exists():
        if path.is_dir():
            raise SpecError(f"spec path {path} is a directory; give a TOML spec file, a study directory's "
                            f"{STUDY_FILE} (e.g. {path / STUDY_FILE}) or a preset")
        if not path.is_file():
            raise SpecError(f"spec file {path} does not exist")
        try:
            source, text = str(path), path.read_text(encoding="utf-8-sig")  # some editors write a BOM
        except UnicodeDecodeError as error:
            raise SpecError(f"spec file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                            f"give a TOML spec, a study directory's {STUDY_FILE} or a preset") from None
    else:
        raise SpecError(f"{spec!r} is neither a preset nor a spec file; presets: {', '.join(list_presets())}")
    data = _read_study_json(text, source) if path.suffix == ".json" else _read_toml(text, source)
    return spec_of_data(data, overrides, source)


def spec_of_data(data: dict[str, Any], overrides: list[str] | None, source: str) -> StudySpec:
    """Spec data (a parsed TOML file, a study's record) with KEY=VALUE overrides applied, validated."""
    for assignment in overrides or []:
        _set_override(data, assignment)
    return parse_spec(data, source)
