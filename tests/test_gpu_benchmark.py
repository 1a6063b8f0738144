"""benchmarks/gpu.py: what it does without a GPU, its arguments, and its estimate of the paper's grid."""

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsecap.data import load_dataset
from sparsecap.studies import expand, list_presets, load_spec
from sparsecap.training import train

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs the benchmark")
def test_without_cuda_it_says_so_and_exits_2_without_a_traceback():
    finished = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 2 and finished.stdout == ""
    assert finished.stderr.startswith("error: benchmarks/gpu.py needs a CUDA GPU, and this PyTorch is built "
                                      f"without CUDA (torch {torch.__version__}). Run it on a GPU machine")
    assert "Traceback" not in finished.stderr


def test_the_message_tells_a_cpu_build_from_a_machine_without_a_gpu(gpu):
    assert "built without CUDA (torch 2.13.0+cpu)" in gpu.no_cuda_message("2.13.0+cpu", None)
    assert "no CUDA device is visible (torch 2.13.0)" in gpu.no_cuda_message("2.13.0", "12.8")


def test_arguments(gpu, capsys):
    defaults = gpu.parse_arguments([])
    assert (defaults.part, defaults.steps, defaults.out, defaults.cudnn_benchmark) == ("all", 20, None, False)
    assert defaults.stopping_presets == gpu.cnn_presets()
    chosen = gpu.parse_arguments(["--stopping-presets", "paper-vgg-width,paper-resnet-depth"]).stopping_presets
    assert chosen == ["paper-vgg-width", "paper-resnet-depth"]
    assert gpu.parse_arguments(["--part", "timing", "--steps", "5"]).steps == 5
    for wrong, message in ((["--steps", "0"], "--steps must be at least 1, got 0"),
                           (["--stopping-budget", "20"],
                            "--stopping-budget must be more than 20 seconds (what a stopped run"),
                           (["--cudnn-benchmark"], "--cudnn-benchmark goes with --part options only, got --part all"),
                           (["--stopping-presets", "paper-vgg-width,paper-mlp-mnist"],
                            "--stopping-presets: no CNN paper preset paper-mlp-mnist; valid: paper-resnet-depth, ")):
        with pytest.raises(SystemExit) as exited:
            gpu.parse_arguments(wrong)
        assert exited.value.code == 2 and message in capsys.readouterr().err


def test_the_autotuned_options_are_timed_by_this_script_in_a_process_of_its_own(gpu):
    command = gpu.autotuned_options_command(7)
    assert command[:2] == [sys.executable, str(SCRIPT)]
    arguments = gpu.parse_arguments(command[2:])
    assert (arguments.part, arguments.cudnn_benchmark, arguments.steps) == ("options", True, 7)


def test_time_per_image_is_interpolated_floored_below_and_proportional_above(gpu):
    measured = [gpu.Measured(4e9, 4e-5), gpu.Measured(1e6, 1e-6)]
    assert gpu.seconds_per_image(1e3, measured) == 1e-6  # launch-bound: no faster than the smallest measured
    assert gpu.seconds_per_image(1e6, measured) == 1e-6
    assert gpu.seconds_per_image(2e9, measured) == pytest.approx(1e-6 + (2e9 - 1e6) / (4e9 - 1e6) * 3.9e-5)
    assert gpu.seconds_per_image(8e9, measured) == pytest.approx(8e-5)
    with pytest.raises(ValueError, match="no measurement"):
        gpu.seconds_per_image(1e6, [])


def test_the_paper_grid_has_every_paper_preset_at_five_seeds_to_max_epochs(gpu):
    grid = gpu.paper_grid()
    presets = [name for name in list_presets() if name.startswith("paper-")]
    assert {point.preset for point in grid} == set(presets)
    for preset in presets:
        spec = load_spec(preset)
        points = [point for point in grid if point.preset == preset]
        assert sum(point.trials for point in points) == len(expand(spec)) * 5 // len(spec.seeds)
        assert {point.max_epochs for point in points} == {spec.training.max_epochs}
    assert gpu.grid_seconds(grid, lambda point: 2.0) == pytest.approx(
        2.0 * sum(point.trials * point.max_epochs for point in grid))
    resnet = next(point for point in grid if point.preset == "paper-resnet-depth" and point.depth == 50)
    assert gpu.grid_seconds([resnet], lambda point: 3.0) == resnet.trials * 300 * 3.0 == 5 * 300 * 3.0


def test_the_grid_splits_by_preset_and_by_dataset_into_the_same_whole(gpu):
    grid = gpu.paper_grid()
    epoch = {"mnist": 1.0, "cifar10": 2.0, "cifar100": 4.0}
    by_preset, by_dataset = (gpu.grid_hours_by(grid, lambda point: epoch[point.dataset], field)
                             for field in ("preset", "dataset"))
    assert set(by_dataset) == set(epoch) and set(by_preset) == {point.preset for point in grid}
    assert sum(by_preset.values()) == pytest.approx(sum(by_dataset.values()))
    assert sum(by_dataset.values()) == pytest.approx(gpu.grid_seconds(grid, lambda point: epoch[point.dataset]) / 3600)
    cifar10_trials = sum(point.trials * point.max_epochs for point in grid if point.dataset == "cifar10")
    assert by_dataset["cifar10"] == pytest.approx(cifar10_trials * 2.0 / 3600)


def test_the_check_studys_data_are_the_digits_as_mnist_files(gpu, tmp_path):
    gpu.write_digits_as_mnist(tmp_path / "mnist")
    mnist, digits = load_dataset("mnist", tmp_path), load_dataset("digits")
    assert mnist.train_images.shape == (len(digits.train_labels), 1, 28, 28) and mnist.train_images.dtype == torch.uint8
    assert torch.equal(mnist.train_labels, digits.train_labels) and torch.equal(mnist.test_labels, digits.test_labels)
    brightness = [dataset.train_images.float().mean().item() for dataset in (mnist, digits)]
    assert brightness[0] == pytest.approx(brightness[1], rel=0.05)


def test_the_timing_cases_are_the_issues_on_cifar_shaped_data_and_the_mlps_also_on_mnist(gpu):
    cases = gpu.timing_cases()
    assert {(case.architecture, case.width) for case in cases if case.dataset == "cifar10"} == {
        ("mlp", 128), ("mlp", 32768), ("vgg", 16), ("vgg", 64), ("resnet", 16), ("resnet", 64)}
    assert {case.architecture for case in cases if case.dataset == "mnist"} == {"mlp"}
    assert {case.precision for case in cases} == {"float32", "tf32", "bfloat16"}


@pytest.mark.parametrize("seeds", [1, 2])
def test_an_epoch_is_timed_through_the_studys_code_on_any_device(gpu, seeds):
    case = gpu.Case("mlp", 128, 1, "cifar10", "auto", "float32")
    seconds = gpu.epoch_seconds(case, seeds, 2, "cpu")  # the path a CUDA run takes, on the CPU
    assert seconds is not None and seconds > 0


def test_the_sparse_engine_pays_below_the_highest_density_from_which_it_wins_at_every_lower_one(gpu):
    def timing(density, dense, sparse):
        return gpu.EngineTiming(density, dense, sparse, sparse / 2)

    wins_low = [timing(0.25, 1.0, 1.5), timing(0.0625, 1.0, 0.9), timing(0.125, 1.0, 1.1), timing(0.0039, 2.0, 0.5)]
    assert gpu.sparse_pays_below(wins_low) == 0.0625
    assert gpu.sparse_pays_below([timing(0.25, 1.0, 0.5), timing(0.0039, 2.0, 0.5)]) == 0.25
    assert gpu.sparse_pays_below([timing(0.25, 1.0, 0.5), timing(0.0039, 0.4, 0.5)]) == 0.0  # loses at the lowest
    assert gpu.sparse_pays_below([]) == 0.0


def test_a_narrowed_epoch_is_timed_through_the_studys_code(gpu):
    case = gpu.Case("mlp", 1024, 1, "mnist", "sparse", "float32")
    assert gpu.epoch_seconds(case, 1, 2, "cpu", narrowed=True) > 0


def test_graphed_and_eager_training_are_compared_through_the_studys_code_on_any_device(gpu, monkeypatch, capsys):
    monkeypatch.setattr(gpu, "GRAPH_CASES", (gpu.Case("mlp", 128, 1, "mnist", "auto", "float32"),))
    assert gpu.compare_graphs(1, "cpu")  # no graphs on a CPU: eager against eager, which is repeatable there
    printed = capsys.readouterr().out
    assert printed.count("bit-identical") == 2 and "(d) PASS" in printed


def test_seeds_trained_concurrently_are_each_trained_as_alone(gpu):
    case = gpu.Case("mlp", 128, 1, "mnist", "auto", "float32")
    models, dataset, config = gpu._prepared(case, 3, 2 * gpu.BATCH + 5, "cpu")
    alone = [copy.deepcopy(model) for model in models]
    concurrent = gpu._train_concurrently(models, dataset, config)
    for seed, model in enumerate(alone):
        result = train(model, dataset.train_images, dataset.train_labels, config, torch.Generator().manual_seed(seed))
        assert result.epoch_losses == concurrent[seed].epoch_losses
        for mine, theirs in zip(model.state_dict().values(), models[seed].state_dict().values(), strict=True):
            assert torch.equal(mine, theirs)
    assert concurrent[0].epoch_losses != concurrent[1].epoch_losses  # each its own data order and weights


def test_the_options_part_times_every_way_with_and_without_the_autotuner(gpu, monkeypatch, capsys):
    case = gpu.Case("vgg", 16, 11, "cifar10", "dense", "float32")
    assert [way for way, *_ in gpu.option_ways(case)] == ["alone", "stacked", "stacked, NCHW", "concurrent streams"]
    assert [way for way, *_ in gpu.option_ways(gpu.Case("resnet", 64, 18, "cifar10", "dense", "float32"))] == ["alone"]
    monkeypatch.setattr(gpu, "OPTION_CASES", (gpu.Case("mlp", 128, 1, "mnist", "auto", "float32"),))
    for autotuned, title in ((False, "cuDNN's default algorithms"), (True, "autotuned (cudnn.benchmark")):
        times = gpu.compare_options(1, "cpu", autotuned=autotuned)
        assert len(times) == 4 and all(seconds > 0 for seconds in times.values())
        printed = capsys.readouterr().out
        assert title in printed and printed.count("MLP w128") == 4 and "concurrent streams" in printed
        assert torch.backends.cudnn.benchmark is False  # put back


def test_the_stopping_part_runs_each_cnn_preset_with_one_seed_in_bfloat16_on_the_datasets_given(gpu):
    assert gpu.cnn_presets() == ["paper-resnet-depth", "paper-resnet-width", "paper-vgg-depth", "paper-vgg-posttrain",
                                 "paper-vgg-width"]
    spec = gpu.stopping_spec("paper-vgg-width", ["mnist"])
    assert [dataset.value for dataset in spec.datasets] == ["mnist"] and spec.seeds == [0]
    assert spec.training.precision.value == "bfloat16" and spec.weight_noise.sigmas == [0.0]
    assert spec.widths == load_spec("paper-vgg-width").widths and spec.training.stop_loss == 0.1


def _stopped(gpu, point, epochs, seconds):
    return gpu.Stopped(point.preset, point.architecture, point.dataset, point.width, point.depth, epochs, seconds)


def test_the_grids_trials_on_a_dataset_cost_their_measured_epochs_once_every_model_there_is_measured(gpu):
    grid = gpu.paper_grid()
    mnist = [point for point in grid if point.dataset == "mnist" and point.architecture != "mlp"]
    stopped = [_stopped(gpu, point, 2, 10.0) for point in mnist]
    hours = gpu.stopped_grid_hours(grid, stopped)
    assert set(hours) == {"mnist"}  # CIFAR not measured
    assert hours["mnist"] == pytest.approx(sum(point.trials for point in mnist) * 2 * 10.0 / 3600)
    assert gpu.stopped_grid_hours(grid, stopped[1:]) == {}  # one model missing: no figure for the dataset
    schedules = stopped + [_stopped(gpu, mnist[0], 4, 10.0)]  # a second schedule of the first point: averaged
    assert gpu.stopped_grid_hours(grid, schedules)["mnist"] == pytest.approx(
        hours["mnist"] + mnist[0].trials * 10.0 / 3600)


@pytest.mark.slow
def test_cnn_presets_are_trained_to_their_stopping_rule_through_the_study_on_any_device(gpu, tmp_path, monkeypatch,
                                                                                     capsys):
    gpu.write_digits_as_mnist(tmp_path / "data" / "mnist")
    # float32: a CPU without bfloat16 units emulates it, 5x slower (55 s here), and nothing below could tell
    # the two precisions apart (test_precision checks bfloat16 training)
    overrides = ("widths=[16]", "training.max_epochs=2", "training.precision=float32")
    monkeypatch.setattr(gpu, "STOPPING_OVERRIDES", (*gpu.STOPPING_OVERRIDES, *overrides))
    stopped = gpu.measure_stopping(tmp_path / "out", tmp_path / "data", "cpu", 3600, ["paper-vgg-width"])
    assert [(model.architecture, model.dataset, model.width) for model in stopped] == [("vgg", "mnist", 16)]
    assert 1 <= stopped[0].epochs <= 2 and stopped[0].seconds_per_epoch > 0
    printed = capsys.readouterr().out
    assert "datasets at hand: mnist" in printed and "missing: cifar10, cifar100" in printed and "VGG11 w16" in printed
    assert "did not stop" not in printed


def test_a_preset_past_its_budget_is_stopped_and_its_trials_named_as_not_stopped_in_time(gpu, tmp_path, monkeypatch,
                                                                                        capsys):
    gpu.write_digits_as_mnist(tmp_path / "data" / "mnist")
    monkeypatch.setattr(gpu, "STOPPING_OVERRIDES", (*gpu.STOPPING_OVERRIDES, "widths=[16, 32]"))
    assert gpu.measure_stopping(tmp_path / "out", tmp_path / "data", "cpu", 0.01, ["paper-vgg-width"]) == []
    printed = capsys.readouterr().out
    expected = "paper-vgg-width: 2 trial(s) did not stop within 0 s: vgg-mnist-w16-d11-static-s0, vgg-mnist-w32-d11"
    assert expected in printed


def _trials(**accuracies):
    return {trial_id: {"architecture": trial_id.split("_")[0], "status": "finished" if accuracy is not None
                       else "failed", "test_accuracy": accuracy} for trial_id, accuracy in accuracies.items()}


def test_accuracies_may_differ_between_devices_by_2_points_or_by_what_rounding_moves_them_on_the_cpu(gpu):
    cpu = _trials(mlp_a=0.90, mlp_b=0.80, vgg_a=0.95, vgg_b=0.10)
    one_thread = _trials(mlp_a=0.90, mlp_b=0.81, vgg_a=0.97, vgg_b=0.18)
    tolerances = gpu.accuracy_tolerances(cpu, one_thread)
    assert tolerances == {"mlp": 0.02, "vgg": pytest.approx(0.08)}
    cuda = _trials(mlp_a=0.93, mlp_b=0.80, vgg_a=0.88, vgg_b=0.10)
    assert gpu.accuracy_problems(cuda, cpu, tolerances) == ["mlp_a: accuracy differs by 3.0 points (tolerance 2.0)"]
    assert gpu.accuracy_problems(_trials(mlp_a=None, mlp_b=0.5, vgg_a=0.95, vgg_b=0.1), cpu, tolerances) == [
        "mlp_b: accuracy differs by 30.0 points (tolerance 2.0)"]  # a failed trial is reported as failed instead
    assert gpu.accuracy_tolerances(cpu, _trials(mlp_a=None, mlp_b=0.8, vgg_a=0.95, vgg_b=0.1)) == {
        "mlp": 0.02, "vgg": 0.02}
