"""The sparsity schedules: every registered one ends at the base's count under every allocation; the moving
masks (set, rigl) keep it after every update; rigl and set regrow where their papers say; imp rewinds
bit for bit; the same seed gives the same model."""

import math

import pytest
import torch
from torch import nn

from sparsecap.data import dataset_info, load_dataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.report import write_report
from sparsecap.runtime import Runtime
from sparsecap.sparsity import (
    Allocation,
    Engine,
    MaskedLinear,
    MaskGranularity,
    PruningScope,
    SparseLinear,
    allocate,
    masked_layers,
    set_engine,
)
from sparsecap.sparsity.masked import layer_shapes
from sparsecap.sparsity.schedule_config import DynamicConfig, Schedule
from sparsecap.sparsity.schedules import ScheduleSettings, create_schedule, registered_schedules
from sparsecap.sparsity.schedules.gradients import largest_gradient_positions, layer_gradients
from sparsecap.sparsity.schedules.imp import rewind_, take_snapshot
from sparsecap.sparsity.schedules.moving import masked_position
from sparsecap.studies import StudyDatabase, expand, load_spec, run_study
from sparsecap.studies.execute import prepare_model
from sparsecap.studies.fitting import study_fit
from sparsecap.training import TrainingConfig, train
from sparsecap.training.step_hook import Step
from tests.study_helpers import TINY_SPEC, assert_same_up_to_rounding, comparable_results, write_spec

INFO = dataset_info("digits")
CAPACITY = 64 * 16 + 16 * 16 + 16 * 10  # the width-16, two-layer MLP on 8x8 digits
EPOCHS = 2
FAST = {"update_interval": 4, "imp_prune_fraction": 0.5, "finetune_epochs": 1}


def _settings(allocation: Allocation = Allocation.UNIFORM, engine: Engine = Engine.DENSE, **dynamic) -> ScheduleSettings:
    return ScheduleSettings(CAPACITY, allocation, MaskGranularity.WEIGHT, PruningScope.LAYERWISE,
                            DynamicConfig(**{**FAST, **dynamic}), EPOCHS, engine, "cpu")


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return (torch.randint(0, 256, (256, 1, 8, 8), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (256,), generator=generator))


def _fit(after_step=None, before_round=None, on_epoch_too=None):
    """A real Fit on random digits-shaped data; the callbacks let a test look at every step and round."""
    images, labels = _data()
    generator = torch.Generator().manual_seed(3)

    def fit(models, epochs, on_step=None, on_epoch=None):
        results = []
        for model in models:
            if before_round is not None:
                before_round(model)

            def step_hook(step, model=model):
                if on_step is not None:
                    on_step(step)
                if after_step is not None:
                    after_step(model, step)

            def epoch_hook(epoch, loss, model=model):
                if on_epoch_too is not None:
                    on_epoch_too(model, epoch)
                if on_epoch is not None:
                    on_epoch(epoch)

            config = TrainingConfig(max_epochs=epochs, learning_rate=0.05, batch_size=32, stop_loss=0.0)
            results.append(train(model, images, labels, config, generator, epoch_hook, step_hook))
        return results

    return fit


def _run(name, settings, fit=None, seed=0):
    model = create_model(ModelConfig("mlp", 64, 2), INFO)
    schedule = create_schedule(name, settings)
    schedule.prepare(model, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))
    schedule.store(model)
    results = schedule.train([model], fit or _fit(), [torch.Generator().manual_seed(seed + 2)])
    return model, results


def _assert_at_capacity(model, allocation):
    """Exactly the allocation's count per layer and the base's in total; removed weights exactly zero."""
    counts = [layer.kept_count for _, layer in masked_layers(model)]
    assert counts == allocate(layer_shapes(model), CAPACITY, allocation) and sum(counts) == CAPACITY
    for _, layer in masked_layers(model):
        kept = layer.kept_positions()
        assert kept.numel() == layer.kept_count and bool((kept[1:] > kept[:-1]).all())  # distinct, ascending
        removed = torch.ones(layer.weight_shape.numel(), dtype=torch.bool)
        removed[kept] = False
        assert torch.count_nonzero(layer.effective_weight().reshape(-1)[removed]) == 0
        if isinstance(layer, MaskedLinear):
            assert torch.count_nonzero(layer.weight.detach().reshape(-1)[removed]) == 0


def test_the_registry_holds_every_schedule_a_spec_can_name():
    assert set(registered_schedules()) == set(Schedule)
    with pytest.raises(ValueError, match="unknown schedule 'magic'; valid: static, posttrain"):
        create_schedule("magic", _settings())


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
@pytest.mark.parametrize("allocation", list(Allocation))
@pytest.mark.parametrize("name", registered_schedules())
def test_every_schedule_ends_at_the_base_count_per_layer_under_every_allocation(name, allocation, engine):
    model, results = _run(name, _settings(allocation, engine))
    _assert_at_capacity(model, allocation)
    assert all(not result.diverged and result.epochs >= EPOCHS for result in results)


@pytest.mark.parametrize("name", registered_schedules())
def test_the_same_seed_gives_the_same_model(name):
    first, first_results = _run(name, _settings())
    second, second_results = _run(name, _settings())
    assert first_results[0].epoch_losses == second_results[0].epoch_losses
    for (key, value), (other_key, other) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert key == other_key and torch.equal(value, other), key


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
@pytest.mark.parametrize("allocation", list(Allocation))
@pytest.mark.parametrize("name", [Schedule.SET, Schedule.RIGL])
def test_moving_masks_keep_the_count_after_every_update(name, allocation, engine):
    updates, moved = [], []

    def check(model, step):
        _assert_at_capacity(model, allocation)
        positions = [layer.kept_positions().clone() for _, layer in masked_layers(model)]
        if updates and any(not torch.equal(a, b) for a, b in zip(positions, updates[-1], strict=True)):
            moved.append(step.number)
        updates.append(positions)
        for _, layer in masked_layers(model):  # the momentum of removed weights is zero too: nothing moves them
            momentum = step.optimizer.state[layer.stored_weight]["momentum_buffer"]
            if isinstance(layer, MaskedLinear):
                assert torch.count_nonzero(momentum[layer.mask == 0]) == 0

    _run(name, _settings(allocation, engine), _fit(after_step=check))
    # 8 steps per epoch: a hook between every two steps, none after the last
    assert len(updates) == EPOCHS * 8 - 1 and moved and all(number % 4 == 0 for number in moved)


def _hand_built(engine: Engine, relu_before: bool) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    layer = MaskedLinear(4, 3, bias=False)
    mask = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1]], dtype=torch.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 0.0, -0.1, 0.0], [0.3, -0.05, 0.0, 0.0], [0.0, 0.9, 0.0, -0.2]]))
    layer.set_mask(mask)
    model = set_engine(nn.Sequential(*[nn.ReLU()] * relu_before, layer), engine)
    inputs = torch.tensor([[1.1, -2.0, 0.7, 3.3], [0.27, 1.3, -1.25, 2.9]])
    output_weights = torch.tensor([[1.0, -0.5, 2.0], [0.75, 1.5, -1.0]])
    return model, inputs, output_weights


@pytest.mark.parametrize("relu_before", [False, True])  # sparse after a ReLU: a ReluSparseLinear
@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
def test_rigl_regrows_exactly_the_largest_dense_gradient_positions(engine, relu_before):
    model, inputs, output_weights = _hand_built(engine, relu_before)
    layer = model[-1]
    weights = layer.effective_weight().reshape(-1).tolist()
    kept = layer.kept_positions().tolist()
    multiplied = inputs.relu() if relu_before else inputs
    gradient = (output_weights.t() @ multiplied).abs().reshape(-1).tolist()  # d/dW of sum(W x · c), by hand
    dropped = sorted(kept, key=lambda position: abs(weights[position]))[:3]  # int(0.55 · 6) = 3
    survivors = sorted(set(kept) - set(dropped))
    candidates = [position for position in range(12) if position not in survivors]
    grown = sorted(candidates, key=lambda position: -gradient[position])[:3]
    assert len({gradient[position] for position in candidates}) == len(candidates)  # no ties to break

    schedule = create_schedule(Schedule.RIGL, _settings(zeta=0.55, update_interval=1, stop_fraction=1.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = Step(1, 10**9, optimizer, lambda: (model(inputs) * output_weights).sum())
    schedule.update(model, torch.Generator(), step)

    assert layer.kept_positions().tolist() == sorted(survivors + grown)
    after = layer.effective_weight().reshape(-1).tolist()
    returning = set(grown) & set(dropped)  # dropped and regrown at once: it never left (RigL's reference code)
    assert returning and all(after[position] == weights[position] for position in survivors + sorted(returning))
    assert all(after[position] == 0.0 for position in set(grown) - returning)


def test_tied_gradients_grow_in_position_order_whole_or_in_blocks():
    """Dead units give equal (zero) gradients; which of them grow must depend neither on the device's topk nor on
    the blocks the scores are computed in."""
    model = create_model(ModelConfig("mlp", 64, 2), INFO)
    (_, first), (name, second) = masked_layers(model)[:2]
    with torch.no_grad():
        first.bias[:16] = -1e6  # 16 dead units: hidden2's inputs from them are zero
    images, labels = _data()
    gradients = layer_gradients(model, lambda: nn.functional.cross_entropy(model(images.float() / 255), labels))
    inputs, grad_outputs = gradients[name]
    zeros = ((grad_outputs.t() @ inputs).abs().reshape(-1) == 0).nonzero().flatten()
    count = second.weight_shape.numel() - zeros.numel() + 100
    none = torch.empty(0, dtype=torch.long)
    whole = largest_gradient_positions(second, gradients[name], none, count)
    assert sorted(whole.tolist()) == sorted(largest_gradient_positions(second, gradients[name], none, count,
                                                                       block_elements=64).tolist())
    assert zeros.numel() >= 16 * 64 and sorted(set(whole.tolist()) & set(zeros.tolist())) == zeros[:100].tolist()


def test_dense_gradient_scores_in_row_blocks_are_those_of_the_whole_matrix():
    model = create_model(ModelConfig("mlp", 64, 2), INFO)
    layer = masked_layers(model)[1][1]
    images, labels = _data()
    gradients = layer_gradients(model, lambda: nn.functional.cross_entropy(model(images.float() / 255), labels))
    excluded = torch.arange(0, layer.weight_shape.numel(), 3)
    whole = largest_gradient_positions(layer, gradients["network.hidden2"], excluded, 40)
    assert torch.equal(whole, largest_gradient_positions(layer, gradients["network.hidden2"], excluded, 40, block_elements=64))
    inputs, grad_outputs = gradients["network.hidden2"]
    scores = (grad_outputs.t() @ inputs).abs().reshape(-1)
    scores[excluded] = -math.inf
    assert set(whole.tolist()) == set(torch.topk(scores, 40).indices.tolist())


def test_masked_position_maps_ranks_among_unkept_positions():
    kept = torch.tensor([0, 3, 4, 9])
    unkept = [position for position in range(12) if position not in kept.tolist()]
    assert masked_position(kept, torch.arange(len(unkept))).tolist() == unkept


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
def test_set_drops_the_smallest_and_regrows_only_among_previously_masked_positions(engine):
    model = create_model(ModelConfig("mlp", 64, 2), INFO)
    schedule = create_schedule(Schedule.SET, _settings(engine=engine, update_interval=1))
    schedule.prepare(model, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    schedule.store(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(5)
    for number in range(1, 4):
        before = [(set(layer.kept_positions().tolist()), layer.kept_values().abs()) for _, layer in masked_layers(model)]
        schedule.update(model, generator, Step(number, 100, optimizer, lambda: torch.zeros(())))
        for (kept, magnitudes), (_, layer) in zip(before, masked_layers(model), strict=True):
            now = set(layer.kept_positions().tolist())
            grown, dropped = now - kept, kept - now
            assert len(grown) == len(dropped) == int(0.3 * len(kept)) > 0
            assert not grown & kept  # only positions masked before the update
            order = sorted(kept)
            smallest = {order[slot] for slot in torch.topk(magnitudes, len(dropped), largest=False).indices.tolist()}
            assert dropped == smallest


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
def test_imp_rewinds_every_round_to_the_stored_epoch_k_weights_bit_for_bit(engine):
    stored, rounds = {}, []

    def keep_epoch_one(model, epoch):
        if epoch == 1 and "weights" not in stored:
            stored.update(weights=[layer.effective_weight().clone() for _, layer in masked_layers(model)],
                          biases=[layer.bias.detach().clone() for _, layer in masked_layers(model)])

    def check_rewound(model):
        if not stored:
            return  # the dense training round
        rounds.append(sum(layer.kept_count for _, layer in masked_layers(model)))
        for (_, layer), weights, bias in zip(masked_layers(model), stored["weights"], stored["biases"], strict=True):
            assert torch.equal(layer.effective_weight(), weights * layer.mask)
            assert torch.equal(layer.bias.detach(), bias)

    settings = _settings(engine=engine, rewind_epoch=1, imp_prune_fraction=0.5)
    model, _ = _run(Schedule.IMP, settings, _fit(before_round=check_rewound, on_epoch_too=keep_epoch_one))
    assert rounds == [4416, 2208, CAPACITY]  # 8832 weights halved until the base's 1440


def test_snapshots_rewind_across_engines():
    model = create_model(ModelConfig("mlp", 32, 1), INFO)
    snapshot = take_snapshot(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    layer = masked_layers(model)[0][1]
    layer.set_mask(torch.rand(layer.weight_shape, generator=torch.Generator().manual_seed(0)) < 0.5)
    model = set_engine(model, Engine.SPARSE)
    rewind_(model, snapshot)
    layer = masked_layers(model)[0][1]
    assert isinstance(layer, SparseLinear)
    assert torch.equal(layer.effective_weight(), snapshot.weights["network.hidden1"] * layer.mask)
    assert torch.equal(layer.bias.detach(), snapshot.others["network.hidden1.bias"])


DYNAMIC_SPEC = TINY_SPEC.replace('schedules = ["static", "posttrain"]',
                                 'schedules = ["static", "posttrain-finetune", "set", "rigl", "imp"]') + """
[dynamic]
update_interval = 5
imp_prune_fraction = 0.5
finetune_epochs = 1
"""


@pytest.mark.slow
def test_a_study_of_every_schedule_runs_and_reports_each_as_its_own_curve(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, DYNAMIC_SPEC)))
    run_study(spec, tmp_path / "run", runtime=Runtime(workers=1))
    rows = StudyDatabase(tmp_path / "run").rows("trials")
    assert {row["schedule"] for row in rows} == {"static", "posttrain-finetune", "set", "rigl", "imp"}
    assert all(row["status"] == "finished" and row["nonzero_weights"] == row["base_nonzero"] for row in rows)
    page = write_report(tmp_path / "run").read_text()
    for schedule in ("posttrain-finetune", "set", "rigl", "imp"):
        assert f"· {schedule}" in page


@pytest.mark.slow
def test_rounds_of_stacked_seeds_give_the_one_by_one_results(tmp_path, monkeypatch):
    import sparsecap.studies.fitting as fitting

    stacked: list[int] = []
    original = fitting.train_together

    def counting(models, *arguments, **options):
        stacked.append(len(models))
        return original(models, *arguments, **options)

    monkeypatch.setattr(fitting, "train_together", counting)
    text = DYNAMIC_SPEC.replace('"static", "posttrain-finetune", "set", "rigl", "imp"', '"posttrain-finetune", "imp"')
    run_study(load_spec(str(write_spec(tmp_path, text))), tmp_path / "alone", runtime=Runtime(workers=1))
    assert stacked == []
    together = text.replace("[training]\n", "[training]\nseeds_together = true\n")
    run_study(load_spec(str(write_spec(tmp_path, together, "together.toml"))), tmp_path / "together",
              runtime=Runtime(workers=1))
    # posttrain-finetune: 2 rounds per width; imp: width 32 has 1 dense + 2 pruning rounds, width 16 (the base) 1
    assert stacked == [2] * 7
    assert_same_up_to_rounding(comparable_results(tmp_path / "alone"), comparable_results(tmp_path / "together"))


def test_rigl_drop_fraction_decays_by_a_cosine_to_stop_fraction_of_the_planned_steps():
    """RigL's f(t) = ζ/2·(1 + cos(π t / T_end)) on update steps, with T_end = stop_fraction × planned steps, and
    no update from T_end on (Evci et al. 2020)."""
    schedule = create_schedule(Schedule.RIGL, _settings(zeta=0.3, update_interval=10, stop_fraction=0.75))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    def fraction(number: int) -> float:
        return schedule.drop_fraction(Step(number, 400, optimizer, lambda: torch.zeros(())))  # T_end = 300

    assert fraction(100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)))  # 0.225
    assert fraction(150) == pytest.approx(0.15)
    assert fraction(10) == pytest.approx(0.15 * (1 + math.cos(math.pi / 30)))
    assert fraction(290) == pytest.approx(0.15 * (1 + math.cos(math.pi * 29 / 30))) and fraction(290) > 0
    assert fraction(105) == 0.0 and fraction(300) == 0.0 and fraction(310) == 0.0


def test_set_moves_int_zeta_of_the_kept_and_can_regrow_every_previously_masked_position():
    """5 kept of 10: int(0.3 · 5) = 1 weight moves per update, the smallest, to one of the 5 masked positions, each
    equally likely (200 draws: 40 expected hits each, sd ~5.7), the last position too."""
    schedule = create_schedule(Schedule.SET, _settings(update_interval=1))
    hits = [0] * 10
    for seed in range(200):
        layer = MaskedLinear(10, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[0.5, 0.4, 0.03, 0.6, 0.7, 0, 0, 0, 0, 0]]))
        layer.set_mask((torch.arange(10) < 5).float().view(1, 10))
        model = nn.Sequential(layer)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        schedule.update(model, torch.Generator().manual_seed(seed), Step(1, 100, optimizer, lambda: torch.zeros(())))
        kept = layer.kept_positions().tolist()
        assert len(kept) == 5 and kept[:4] == [0, 1, 3, 4] and kept[4] >= 5  # position 2 (0.03) dropped
        hits[kept[4]] += 1
    assert min(hits[5:]) > 20


@pytest.mark.parametrize("engine", [Engine.DENSE, Engine.SPARSE])
def test_rigl_never_regrows_a_surviving_weight_where_gradients_tie_at_zero(engine):
    """Dead inputs give zero gradients at kept and masked positions alike; the zero-gradient positions grown must
    be masked or just dropped ones (in position order), never a survivor, or the count would fall."""
    layer = MaskedLinear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.9, 0.01, 0.02, 0.03], [0.04, 0.8, 0.0, 0.0]]))
    layer.set_mask(torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]]))  # kept 0-5, masked 6 and 7
    model = set_engine(nn.Sequential(layer), engine)
    layer = model[0]
    inputs, output_weights = torch.tensor([[0.0, 0.0, 0.0, 1.0]]), torch.tensor([[1.0, 2.0]])
    schedule = create_schedule(Schedule.RIGL, _settings(zeta=0.55, update_interval=1, stop_fraction=1.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule.update(model, torch.Generator(), Step(1, 10**9, optimizer, lambda: (model(inputs) * output_weights).sum()))
    # dropped: 1, 2, 3 (smallest); survivors 0, 4, 5; nonzero gradient only at 3 and 7; the tie at 0 goes to 1
    assert layer.kept_positions().tolist() == [0, 1, 3, 4, 5, 7]
    assert layer.effective_weight().reshape(-1).tolist() == pytest.approx([0.9, 0.01, 0, 0.03, 0.04, 0.8, 0, 0])


def test_imp_retrains_max_epochs_minus_the_rewind_epoch_and_finetune_its_epochs():
    """imp with k = 1: 2 dense epochs, then 3 rounds of 2 - 1 epochs; posttrain-finetune: 2 + finetune_epochs."""
    _, results = _run(Schedule.IMP, _settings(rewind_epoch=1, imp_prune_fraction=0.5))
    assert results[0].epochs == EPOCHS + 3 * (EPOCHS - 1)
    _, results = _run(Schedule.POSTTRAIN_FINETUNE, _settings(finetune_epochs=1))
    assert results[0].epochs == EPOCHS + 1


def _study_fit_of_one_model(tmp_path, epochs_seen: list[int]):
    """The `Fit` a study hands the schedules, for one width-16 MLP trial of the tiny spec (2 epochs, never stopped)."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.stop_loss=0.0", 'schedules=["static"]', "seeds=[0]"])
    trial, dataset = expand(spec)[0], load_dataset("digits")
    model, _ = prepare_model(spec, trial, dataset)
    fit = study_fit(spec, dataset, [trial], [model], lambda loss, training: epochs_seen.append(training))
    return fit, model, len(dataset.train_labels)


def test_a_study_fit_trains_for_the_epochs_a_schedule_asks_not_the_studys(tmp_path):
    """A schedule's round (a fine-tuning, an IMP round) asks its own epoch count; the spec's max_epochs is 2."""
    reported: list[int] = []
    fit, model, _ = _study_fit_of_one_model(tmp_path, reported)
    (result,) = fit([model], 1)
    assert len(result.epoch_losses) == 1 and reported == [1]


def test_a_study_fit_hands_every_step_to_a_schedules_step_hook(tmp_path):
    """SET and RigL move masks from the step hook: a fit given only that hook must still call it at each step."""
    steps: list[Step] = []
    fit, model, examples = _study_fit_of_one_model(tmp_path, [])
    (result,) = fit([model], 1, on_step=steps.append)
    planned = math.ceil(examples / 64)  # one epoch of batch_size 64; a step's hook runs before the next step
    assert len(result.epoch_losses) == 1 and {step.planned for step in steps} == {planned}
    assert [step.number for step in steps] == list(range(1, len(steps) + 1)) and len(steps) >= planned - 1


@pytest.mark.parametrize("name", [Schedule.POSTTRAIN_FINETUNE, Schedule.IMP])
def test_a_diverged_model_is_not_trained_again_in_later_rounds(name):
    """Its result stays that of the epoch it blew up in; retraining would give a diverged model more epochs."""
    schedule = create_schedule(name, _settings())
    models = [create_model(ModelConfig("mlp", 64, 2), INFO) for _ in range(2)]
    for seed, model in enumerate(models):
        schedule.prepare(model, torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))
        schedule.store(model)
    with torch.no_grad():
        models[1].network.output.weight.mul_(1e4)  # logits in the thousands: the first epoch's loss diverges
    trained, real_fit = [], _fit()

    def fit(chosen, epochs, on_step=None, on_epoch=None):
        trained.append([next(index for index, model in enumerate(models) if model is each) for each in chosen])
        return real_fit(chosen, epochs, on_step, on_epoch)

    results = schedule.train(models, fit, [torch.Generator().manual_seed(seed + 2) for seed in range(2)])
    assert len(trained) >= 2 and trained[0] == [0, 1] and all(chosen == [0] for chosen in trained[1:])
    assert [result.diverged for result in results] == [False, True]
    assert results[1].epochs == 1 and results[0].epochs > EPOCHS
