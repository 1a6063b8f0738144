import math

import torch

from sparsecap.data import dataset_info, load_dataset
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import initialize_
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.training import LearningRateSchedule, TrainingConfig, train
from tests.study_helpers import TINY_SPEC, write_spec


def _model() -> torch.nn.Module:
    model = create_model(ModelConfig("mlp", 32, 1), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(0))
    return model


def test_training_stops_once_the_epoch_loss_is_below_the_threshold():
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=200, learning_rate=0.05, batch_size=32, stop_loss=0.3)
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0))
    assert result.epochs < 200
    assert result.epoch_losses[-1] < 0.3 <= min(result.epoch_losses[:-1])


def test_divergence_is_reported_not_raised():
    digits = load_dataset("digits")
    config = TrainingConfig(max_epochs=5, learning_rate=1e6, batch_size=32, stop_loss=0.0)
    result = train(_model(), digits.train_images, digits.train_labels, config, torch.Generator().manual_seed(0))
    assert result.diverged
    assert math.isnan(result.epoch_losses[-1])


def test_cosine_schedule_anneals_to_zero(monkeypatch):
    model = _model()
    images = torch.zeros((8, 1, 8, 8), dtype=torch.uint8)
    labels = torch.zeros(8, dtype=torch.int64)
    rates = []
    config = TrainingConfig(max_epochs=4, batch_size=8, stop_loss=0.0, schedule=LearningRateSchedule.COSINE)
    original_step = torch.optim.SGD.step

    def recording_step(self, *arguments, **keywords):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *arguments, **keywords)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    train(model, images, labels, config, torch.Generator().manual_seed(0))
    assert rates == [0.01, 0.01 * (1 + math.cos(math.pi / 4)) / 2, 0.005, 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2]


def test_a_diverged_trial_is_recorded_as_diverged(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, TINY_SPEC)), ["training.learning_rate=1e6", "seeds=[0]"])
    run_study(spec, tmp_path / "out", show_progress=False)
    statuses = {row["status"] for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert statuses == {"diverged"}
