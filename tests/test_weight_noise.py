import math

import torch

from sparsecap.data import dataset_info
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness import add_weight_noise_, evaluate, weight_noise_robustness
from sparsecap.robustness.evaluation import Evaluation, class_recall
from sparsecap.sparsity import Allocation, masked_layers, sparse_model_at_init


def _model_and_data():
    info = dataset_info("digits")
    model = create_model(ModelConfig("mlp", 512, 1), info)
    sparse_model_at_init(model, 64 * 128 + 128 * 10, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (300,), generator=generator)
    return model, images, labels


def test_sigma_zero_is_the_clean_evaluation_once_and_a_constant_shift_is_evaluated_once():
    model, images, labels = _model_and_data()
    clean = evaluate(model, images, labels, 10)
    draws = weight_noise_robustness(model, images, labels, 10, [0.0], 3, 0.0, torch.Generator().manual_seed(0), clean)
    assert [(draw.draw, draw.accuracy, draw.delta_loss) for draw in draws] == [(0, clean.accuracy, 0.0)]
    shifted = weight_noise_robustness(model, images, labels, 10, [0.0, 0.2], 3, 0.05, torch.Generator().manual_seed(0),
                                      clean)
    assert [(draw.sigma, draw.draw) for draw in shifted] == [(0.0, 0), (0.2, 0), (0.2, 1), (0.2, 2)]
    assert shifted[0].delta_loss != 0.0  # the shift by the mean is a different model


def test_noise_is_zero_on_masked_weights_and_the_model_is_restored():
    model, images, labels = _model_and_data()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    add_weight_noise_(model, 0.5, 0.1, torch.Generator().manual_seed(0))
    for name, layer in masked_layers(model):
        removed = layer.mask == 0
        assert torch.count_nonzero(layer.weight[removed]) == 0
        original = before[f"{name}.weight"]
        assert bool((layer.weight[~removed] != original[~removed]).all())
    model.load_state_dict(before)
    clean = evaluate(model, images, labels, 10)
    draws = weight_noise_robustness(model, images, labels, 10, [0.3, 1.0], 2, 0.0, torch.Generator().manual_seed(0), clean)
    assert len(draws) == 4
    assert any(draw.delta_loss != 0 for draw in draws)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_a_draw_whose_loss_overflows_records_an_infinite_loss_increase():
    """A shift by 1e30 overflows the activations (NaN logits): the draw is the worst there is, not a missing one."""
    model, images, labels = _model_and_data()
    clean = evaluate(model, images, labels, 10)
    draws = weight_noise_robustness(model, images, labels, 10, [0.0, 0.1], 2, 1e30, torch.Generator().manual_seed(0),
                                    clean)
    assert [(draw.loss, draw.delta_loss) for draw in draws] == [(math.inf, math.inf)] * 3
    assert all(0.0 <= draw.accuracy <= 1.0 for draw in draws)
    assert math.isfinite(clean.loss)


def test_noise_is_multiplicative_with_the_requested_spread():
    model, _, _ = _model_and_data()
    layer = next(layer for _, layer in masked_layers(model))
    original = layer.weight.detach().clone()
    add_weight_noise_(model, 0.2, 0.0, torch.Generator().manual_seed(0))
    kept = layer.mask.bool()
    relative = (layer.weight[kept] - original[kept]) / original[kept]
    assert abs(relative.std().item() - 0.2) < 0.01
    assert abs(relative.mean().item()) < 0.01


def test_the_mean_is_added_to_every_kept_weight_and_to_no_removed_one():
    """w ← w + μ + σ·w·ε: with σ = 0 a kept weight moves by exactly μ, whatever its size."""
    model, _, _ = _model_and_data()
    before = [layer.weight.detach().clone() for _, layer in masked_layers(model)]
    add_weight_noise_(model, 0.0, 0.05, torch.Generator().manual_seed(0))
    for (_, layer), original in zip(masked_layers(model), before, strict=True):
        kept = layer.mask.bool()
        assert torch.allclose(layer.weight[kept], original[kept] + 0.05, rtol=0, atol=1e-7)
        assert torch.count_nonzero(layer.weight[~kept]) == 0


def test_wide_models_are_evaluated_in_cache_sized_batches_with_the_same_results():
    from sparsecap.robustness.evaluation import evaluation_batch_size

    wide = create_model(ModelConfig("mlp", 32768, 1), dataset_info("mnist"))
    narrow = create_model(ModelConfig("mlp", 128, 1), dataset_info("mnist"))
    assert evaluation_batch_size(wide, torch.device("cpu")) == 128
    assert evaluation_batch_size(narrow, torch.device("cpu")) == 1000
    assert evaluation_batch_size(wide, torch.device("meta")) == 1000  # a GPU takes the whole batch
    model, images, labels = _model_and_data()
    whole, batched = evaluate(model, images, labels, 10, batch_size=300), evaluate(model, images, labels, 10, batch_size=7)
    assert whole.accuracy == batched.accuracy and whole.class_recall == batched.class_recall
    assert abs(whole.loss - batched.loss) < 1e-6


def test_class_recall_counts_each_class_over_its_examples_and_the_minimum_skips_absent_ones():
    """Recall = correct / examples of the class (not / predictions of it: that is precision); class 0 is absent,
    so its recall is NaN and the minimum (paper Fig. 8, claim c4) is the worst present class."""
    labels = torch.tensor([1, 1, 1, 1, 2, 2, 3, 3, 3, 3])
    predictions = torch.tensor([1, 1, 1, 2, 2, 3, 3, 0, 0, 0])
    recall = class_recall(predictions, labels, 4)
    assert math.isnan(recall[0]) and recall[1:] == (0.75, 0.5, 0.25)
    assert Evaluation(accuracy=0.6, loss=1.0, class_recall=recall).min_class_recall == 0.25
    assert math.isnan(Evaluation(accuracy=0.0, loss=1.0, class_recall=(math.nan,)).min_class_recall)
