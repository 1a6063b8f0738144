import contextlib
import gzip
import errno
import json
import math
import os
import signal
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import sparsecap
from sparsecap.cli import main
from sparsecap.runtime import physical_cores
from sparsecap.studies import StudyDatabase, load_spec
from tests.study_helpers import TINY_SPEC, finished_trial_count, write_spec


def _run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_describe_json_is_the_documented_contract(capsys):
    code, out, _ = _run(capsys, "describe", "mlp", "--width", "1024", "--allocation", "staggered", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_nonzero"] == data["base_nonzero"] == 101_632
    assert data["total_weights"] == 1024 * 794
    assert [layer["name"] for layer in data["layers"]] == ["network.hidden1", "network.output"]
    for layer in data["layers"]:
        assert {"name", "shape", "weights", "nonzero", "density"} <= set(layer)
    assert sum(layer["nonzero"] for layer in data["layers"]) == 101_632
    assert data["layers"][0]["shape"] == [1024, 784]


def test_describe_table_for_the_depth_family(capsys):
    code, out, _ = _run(capsys, "describe", "mlp", "--depth", "4", "--dataset", "fashion-mnist")
    assert code == 0
    assert "width 512 depth 4" in out and "masked to mlp width 512 depth 1" in out
    assert "406,528" in out  # the dense 1-layer net's weights: 784*512 + 512*10
    assert "network.hidden4" in out


def _describe_table_against_its_json(capsys, *arguments: str) -> tuple[str, dict]:
    """The table and the JSON of the same mask, each layer's row checked column by column against the JSON."""
    code, table, _ = _run(capsys, "describe", *arguments)
    assert code == 0
    data = json.loads(_run(capsys, "describe", *arguments, "--json")[1])
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("network.")}
    assert list(rows) == [layer["name"] for layer in data["layers"]]
    for layer in data["layers"]:
        name, shape, weights, nonzero, density, dead_outputs, unread = rows[layer["name"]]
        assert shape == "x".join(map(str, layer["shape"])) and int(weights.replace(",", "")) == layer["weights"]
        assert int(nonzero.replace(",", "")) == layer["nonzero"]
        assert density == f"{layer['nonzero'] / layer['weights']:.4f}" == f"{layer['density']:.4f}"
        assert [int(dead_outputs), int(unread)] == [layer["outputs_without_input"], layer["inputs_unread"]]
    total = next(line.split() for line in table.splitlines() if line.startswith("total"))
    assert total[1:] == [f"{data['total_weights']:,}", f"{data['total_nonzero']:,}", f"{data['density']:.4f}"]
    assert f"base nonzero (capacity): {data['base_nonzero']:,}" in table
    assert f"disconnected hidden units: {data['disconnected_units']:,}" in table
    return table, data


def test_describe_table_shows_what_its_json_holds_and_whole_kernels_keep_whole_kernels(capsys):
    """ERK gives VGG's layers different densities, and whole 3x3 kernels leave VGG width 20 3 weights short
    of width 17's capacity (a negative difference); at width 1024 the MLP's logits leave hidden units unread."""
    table, data = _describe_table_against_its_json(
        capsys, "vgg", "--width", "20", "--base-width", "17", "--allocation", "erk", "--whole-kernels")
    assert "(erk allocation, kernel masks)" in table
    assert len({layer["density"] for layer in data["layers"]}) > 1
    for layer in data["layers"]:  # weight masks leave conv5's and conv6's counts off a multiple of 9
        assert layer["nonzero"] % math.prod(layer["shape"][2:]) == 0
    shortfall = data["total_nonzero"] - data["base_nonzero"]
    assert -9 < shortfall < 0 and f"difference from the base: {shortfall:+,}" in table
    _, data = _describe_table_against_its_json(capsys, "mlp", "--width", "1024")
    assert data["layers"][1]["inputs_unread"] > 0 == data["layers"][1]["outputs_without_input"]


def test_describe_masks_to_the_base_width_given(capsys):
    code, out, _ = _run(capsys, "describe", "mlp", "--width", "64", "--base-width", "32", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_nonzero"] == data["base_nonzero"] == 32 * 784 + 32 * 10
    assert data["total_weights"] == 64 * 794
    code, out, _ = _run(capsys, "describe", "mlp", "--width", "64", "--base-width", "32")
    assert code == 0 and out.startswith("mlp width 64 depth 1 on mnist, masked to mlp width 32 depth 1")


def test_describe_counts_multiply_accumulates_by_hand(capsys):
    """An MLP applies each weight once per image; VGG11 at width 16 on 32x32 images applies each 3x3 conv at
    its output's pixels: 1024x432 + 256x4608 + 64x(18432+36864) + 16x(73728+147456) + 4x2x147456 + 1280."""
    mlp = json.loads(_run(capsys, "describe", "mlp", "--width", "1024", "--allocation", "staggered", "--json")[1])
    assert mlp["dense_multiply_accumulates"] == 784 * 1024 + 1024 * 10 == mlp["total_weights"]
    assert mlp["nonzero_multiply_accumulates"] == 101_632
    code, table, _ = _run(capsys, "describe", "mlp", "--width", "1024")
    assert code == 0 and "forward multiply-accumulates per image: 813,056 dense, 101,632 nonzero" in table
    vgg = json.loads(_run(capsys, "describe", "vgg11", "--width", "16", "--dataset", "cifar10", "--json")[1])
    by_hand = 1024 * 432 + 256 * 4608 + 64 * (18432 + 36864) + 16 * (73728 + 147456) + 4 * 2 * 147456 + 1280
    assert vgg["dense_multiply_accumulates"] == vgg["nonzero_multiply_accumulates"] == by_hand == 9_880_832


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["describe", "mlp", "--dataset", "imagenet"], "valid names: mnist, fashion-mnist"),
        (["describe", "transformer"], "valid: mlp, resnet, vgg, vgg11"),
        (["describe", "mlp", "--allocation", "dense"], "valid allocations: uniform, staggered, erk"),
        (["describe", "mlp", "--width", "64"], "must be at least as large as the base"),
        (["run", "quik"], "presets: "),
        (["report", "/nonexistent/study"], "/nonexistent/study"),
        (["describe", "mlp", "--width", str(10**11)], "has 79,400,000,000,000 weights: at least 591,576.1 GiB with"),
        (["describe", "mlp", "--depth", str(10**7)], "mlp has no depth 10000000: sparsecap builds 1 to 1024 hidden"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(capsys, arguments, message):
    code, _, err = _run(capsys, *arguments)
    assert code == 2
    assert err.startswith("error: ") and message in err


@pytest.mark.parametrize("severity", ["9", "high", "0"])
def test_a_severity_outside_1_to_5_is_refused_saying_so(capsys, severity):
    with pytest.raises(SystemExit) as exit_info:
        main(["corrupt", "mnist", "--out", "unused", "--severity", severity])
    assert exit_info.value.code == 2
    assert "argument --severity: expected a severity from 1 to 5, got " in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["describe", "mlp", "--depth", "0"], ["describe", "mlp", "--width", "x"]])
def test_width_and_depth_must_be_positive_integers(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["describe", "mlp", "--seed", "-1"], ["describe", "mlp", "--seed", str(2**64)],
                                       ["corrupt", "mnist", "--out", "unused", "--seed", "-3"]])
def test_seeds_outside_what_studies_store_are_refused(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert "expected a seed from 0 to 9223372036854775807" in capsys.readouterr().err


def _write_idx_images(path, magic: int, count: int, data_bytes: int) -> None:
    with gzip.open(path, "wb") as file:
        file.write(struct.pack(">IIII", magic, count, 28, 28) + bytes(data_bytes))


def _write_idx_labels(path, count: int) -> None:
    with gzip.open(path, "wb") as file:
        file.write(struct.pack(">II", 2049, count) + bytes(count))


def _write_mnist(directory, magic: int = 2051, count: int = 20, missing_bytes: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        _write_idx_images(directory / f"{split}-images-idx3-ubyte.gz", magic, count, count * 784 - missing_bytes)
        _write_idx_labels(directory / f"{split}-labels-idx1-ubyte.gz", count)


@pytest.mark.parametrize(
    ("corruption", "message"),
    [({"missing_bytes": 100}, "truncated"), ({"magic": 2049}, "magic")],
)
def test_bad_data_files_are_reported_and_results_are_untouched(capsys, tmp_path, monkeypatch, corruption, message):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)
    study, data = tmp_path / "out", tmp_path / "data"
    spec = write_spec(tmp_path, TINY_SPEC.replace('["digits"]', '["mnist"]'))
    _write_mnist(data / "mnist")
    command = ["run", str(spec), "--out", str(study), "--data-root", str(data), "--no-progress", "--no-report"]
    assert _run(capsys, *command)[0] == 0
    before = (study / "results.sqlite").read_bytes()

    _write_mnist(data / "mnist", **corruption)
    code, _, err = _run(capsys, *command)
    assert code == 2 and message in err
    assert "train-images-idx3-ubyte" in err
    assert (study / "results.sqlite").read_bytes() == before
    assert len(StudyDatabase(study).rows("trials")) == 8


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--corruptions", ""], "no corruption named; valid: identity, shot_noise"),
        (["--corruptions", "shot_noise,frost", "--frost-dir", "/nonexistent"],
         "frost directory /nonexistent does not exist or is not a directory; nothing was written"),
        (["--corruptions", "pessimal_noise"], "pass --pessimal-matrix"),
        (["--out", "/proc/sparsecap"], "cannot write to /proc/sparsecap: No such file or directory; choose a writable"),
    ],
)
def test_corrupt_refuses_bad_input_before_writing_anything(capsys, tmp_path, monkeypatch, arguments, message):
    monkeypatch.delenv("SPARSECAP_PESSIMAL_MATRIX", raising=False)
    _write_mnist(tmp_path / "data" / "mnist")
    code, _, err = _run(capsys, "corrupt", "mnist", "--out", str(tmp_path / "mnist-c"), "--data-root",
                        str(tmp_path / "data"), *arguments)
    assert code == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "mnist-c").exists()


def test_corrupt_logs_one_line_per_corruption_without_a_terminal(capsys, tmp_path):
    _write_mnist(tmp_path / "data" / "mnist")
    code, out, err = _run(capsys, "corrupt", "mnist", "--out", str(tmp_path / "mnist-c"), "--data-root",
                          str(tmp_path / "data"), "--corruptions", "identity, shot_noise", "--severity", "2")
    assert code == 0 and "2 corruptions of mnist (mnist-c layout) written" in out
    assert err.splitlines() == ["[1/2] identity written at severity 2", "[2/2] shot_noise written at severity 2"]


def test_corrupt_passes_its_seed_limit_and_train_options_on(capsys, tmp_path):
    from sparsecap.data.corrupted import read_mnist_c

    _write_mnist(tmp_path / "data" / "mnist")
    out = tmp_path / "mnist-c"
    code, _, err = _run(capsys, "corrupt", "mnist", "--out", str(out), "--data-root", str(tmp_path / "data"),
                        "--corruptions", "identity", "--seed", "5", "--limit", "4", "--train", "--no-progress")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["seed"], manifest["limit"], manifest["splits"]) == (5, 4, ["test", "train"])
    for split in ("test", "train"):
        assert read_mnist_c(out, "identity", split).images.shape == (4, 28, 28, 1)


def test_bad_spec_key_via_the_cli(capsys, tmp_path):
    spec = write_spec(tmp_path, TINY_SPEC + "\nlearning_rate = 0.1\n")
    code, _, err = _run(capsys, "run", str(spec), "--out", str(tmp_path / "out"))
    assert code == 2
    assert ("weight_noise.learning_rate: unknown key; did you mean training.learning_rate? (in TOML, every key below "
            "a [weight_noise] header belongs to that table)") in err  # appended below the spec's last table
    assert not (tmp_path / "out").exists()


def test_bfloat16_on_a_cpu_that_emulates_it_is_warned_of_before_the_run(capsys, tmp_path):
    from sparsecap.training.precision import bfloat16_emulated

    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--set", "training.precision=bfloat16", "--set", "seeds=[0]", "--no-report", "--no-progress")
    assert code == 0
    assert ('warning: [training] precision = "bfloat16" on this cpu is emulated' in err) == bfloat16_emulated("cpu")


def test_corruption_severities_that_change_nothing_are_warned_of_before_the_run(capsys, tmp_path):
    code, _, err = _run(capsys, "run", "quick-corruptions", "--out", str(tmp_path / "out"), "--device", "cuda:99",
                        "--set", "corruptions.severities=[3]")
    assert ("warning: [corruptions] severities = [3] changes nothing in 'quick-corruptions': it sets CIFAR-C's "
            "severities, and MNIST-C measures each corruption at its published severity") in err
    assert code == 2 and not (tmp_path / "out").exists()  # refused on the missing device, after the warning


def test_a_base_outside_the_grid_is_warned_of_before_the_run(capsys, tmp_path):
    """No trial would be the dense base, so every verdict against it would only say "no dense base point"."""
    code, _, err = _run(capsys, "run", "quick", "--out", str(tmp_path / "out"), "--device", "cuda:99",
                        "--set", "base_width=64", "--set", "widths=[128, 256]")
    assert ("warning: the mlp base of 'quick' (width 64, depth 1) is no model of the grid, so every claim but c6 "
            "(which needs none) lacks its dense base point") in err
    assert code == 2 and not (tmp_path / "out").exists()
    assert "is no model of the grid" not in _run(capsys, "run", "quick", "--out", str(tmp_path / "out"),
                                                 "--device", "cuda:99")[2]


def test_measures_given_settings_but_left_off_are_warned_of_before_the_run(capsys, tmp_path):
    code, _, err = _run(capsys, "run", "quick", "--out", str(tmp_path / "out"), "--device", "cuda:99",
                        "--set", "adversarial.attacks=['pgd']")
    assert ("warning: [adversarial] has settings but is off, so 'quick' does not measure it; add --set "
            "adversarial.enabled=true to measure it") in err and "[corruptions]" not in err
    assert code == 2 and not (tmp_path / "out").exists()  # refused on the missing device, after the warning


def test_a_model_larger_than_this_machine_is_refused_before_anything_is_created(capsys, tmp_path):
    """Its trials would otherwise each fail once their weights are allocated, with the study's directory made."""
    code, _, err = _run(capsys, "run", "quick", "--out", str(tmp_path / "out"), "--workers", "1",
                        "--set", f"widths=[16, {10**11}]", "--set", "seeds=[0]")
    assert code == 2 and "'quick' cannot run here: mlp width 100000000000 depth 1 has 7,400,000,000,000 weights" in err
    assert err.rstrip().endswith("; choose smaller widths or depths") and not (tmp_path / "out").exists()


def test_a_run_says_how_many_trials_max_epochs_ended_before_the_stopping_rule(capsys, tmp_path):
    """Said without a report too: a user of --no-report would otherwise never learn the curves are under-trained."""
    spec = str(write_spec(tmp_path, TINY_SPEC.replace('["static", "posttrain"]', '["static"]')))
    code, _, err = _run(capsys, "run", spec, "--out", str(tmp_path / "short"), "--no-report", "--workers", "1")
    assert code == 0 and ("4 of 4 finished trials are under-trained: max_epochs ended them after 2 epochs with a "
                          "training loss not below stop_loss (0.01); verdicts over them are flagged [UNDER-TRAINED]") in err
    code, _, err = _run(capsys, "run", spec, "--out", str(tmp_path / "met"), "--no-report", "--workers", "1",
                        "--set", "training.stop_loss=100")
    assert code == 0 and "under-trained" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("sparsecap ")


def test_claims_of_a_study_a_stopped_run_left_unfinished_warn_and_name_what_is_missing(capsys, tmp_path):
    from sparsecap.report import write_report
    from sparsecap.studies import load_spec, run_study

    out = tmp_path / "out"
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]"])
    run_study(spec, out)
    planned = spec.model_copy(update={"seeds": [0, 1]})  # as a run adding seed 1, stopped before its first trial
    StudyDatabase.create(out).write_metadata({"spec": planned.resolved(), "fingerprint": planned.fingerprint(),
                                              "seeds": [0, 1]})
    code, stdout, _ = _run(capsys, "claims", str(out), "--json")
    assert code == 0 and json.loads(stdout)["unfinished_trials"][0] == "mlp-digits-w16-d1-static-s1"
    code, stdout, _ = _run(capsys, "claims", str(out), "--markdown")
    assert stdout.startswith("**Incomplete study:** 4 planned trial(s) without a result, failed or not yet run (e.g. "
                             "mlp-digits-w16-d1-static-s1)")
    code, _, err = _run(capsys, "claims", str(out))
    assert code == 0
    assert ("warning: tiny is incomplete: 4 of its 8 planned trial(s) have no result (4 not run; e.g. "
            "mlp-digits-w16-d1-static-s1), so its figures and verdicts rest on the 4 that have one; to finish it, "
            f"rerun `sparsecap run {out}/study.json`\n") in err
    page = write_report(out).read_text()
    assert 'id="incomplete-study"' in page and "<li>mlp-digits-w32-d1-posttrain-s1</li>" in page


def test_datasets_lists_every_dataset(capsys, tmp_path):
    code, out, _ = _run(capsys, "datasets", "--data-root", str(tmp_path))
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [
        "mnist", "fashion-mnist", "cifar10", "cifar100", "digits", "mnist-c", "cifar10-c", "cifar100-c"
    ]
    assert "available" in next(line for line in lines if line.startswith("digits"))


def test_datasets_says_an_empty_corrupted_set_folder_is_there_but_empty(capsys, tmp_path, monkeypatch):
    """"not found" would send the user looking for a folder that is there."""
    monkeypatch.delenv("SPARSECAP_DATA", raising=False)
    (tmp_path / "mnist_c").mkdir()
    code, out, _ = _run(capsys, "datasets", "--data-root", str(tmp_path))
    (line,) = [line for line in out.splitlines() if line.startswith("mnist-c ")]
    assert code == 0 and line.split(None, 2)[1:] == ["missing", (
        f"{tmp_path / 'mnist_c'} holds no corruptions (expected <corruption>/test_images.npy and test_labels.npy "
        f"folders); `sparsecap corrupt mnist --out DIR` makes it")]
    (cifar_line,) = [line for line in out.splitlines() if line.startswith("cifar10-c ")]
    assert f"not found (looked for {tmp_path / 'CIFAR-10-C'}" in cifar_line


def test_datasets_points_out_a_data_root_that_cannot_hold_data(capsys, tmp_path, monkeypatch):
    """Every dataset but digits "missing" would hide the cause: a file given for its directory, or a typo."""
    afile = tmp_path / "mnist.tar"
    afile.write_bytes(b"")
    monkeypatch.setenv("SPARSECAP_DATA", str(tmp_path / "no-such-dir"))
    code, _, err = _run(capsys, "datasets", "--data-root", str(afile))
    assert code == 0
    assert err.splitlines() == [f"note: {afile} is not a directory", f"note: {tmp_path / 'no-such-dir'} does not exist"]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    code, _, err = _run(capsys, "datasets", "--data-root", str(tmp_path / "loop"))
    assert err.splitlines()[0] == f"note: {tmp_path / 'loop'} is a symbolic link to nothing (a missing target, or a loop)"


def test_python_dash_m_sparsecap_is_the_command():
    """Where the environment's scripts are not on PATH, `python -m sparsecap` must still work."""
    result = subprocess.run([sys.executable, "-m", "sparsecap", "presets"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout.startswith("cnn-smoke") and "\nquick " in result.stdout


def test_presets_lists_the_shipped_presets(capsys):
    code, out, _ = _run(capsys, "presets")
    assert code == 0
    for name in ("quick", "paper-mlp-mnist", "paper-mlp-mnist-depth", "paper-mlp-mnist-posttrain"):
        assert name in out


def test_presets_lists_each_presets_trial_count(capsys):
    from sparsecap.studies.trials import expand

    code, out, _ = _run(capsys, "presets")
    assert code == 0
    for name in ("quick", "paper-mlp-mnist-depth"):
        (line,) = [line for line in out.splitlines() if line.split()[0] == name]
        assert line.split()[1:3] == [str(len(expand(load_spec(name)))), "trials"]


def test_presets_prints_a_presets_toml_to_start_a_spec_from(capsys, tmp_path):
    """What it prints, saved to a file, runs as the preset itself does: the same study, comments kept."""
    code, out, _ = _run(capsys, "presets", "quick")
    assert code == 0 and out.startswith("# The README's main job") and 'name = "quick"' in out
    copy = tmp_path / "my-study.toml"
    copy.write_text(out, encoding="utf-8")
    assert load_spec(str(copy)).fingerprint() == load_spec("quick").fingerprint()
    code, out, err = _run(capsys, "presets", "quik")
    assert (code, out) == (2, "") and err.startswith("error: 'quik' is not a preset; presets: cnn-smoke, ")


def _sigterm_seen_through_a_library_check(arguments) -> int:
    """What Ray's `ray.wait` does with a signal: runs its handler, catches the KeyboardInterrupt it raised
    and raises a plain one in its place."""
    try:
        signal.raise_signal(signal.SIGTERM)  # the handler runs before this returns
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None
    return 0


@pytest.mark.parametrize(("command", "arguments", "said"), [
    ("run", ["run", "quick"], "terminated: finished trials are saved; rerun the same command to resume"),
    ("corrupt", ["corrupt", "mnist", "--out", "unused"],
     "terminated: corruptions written so far are kept; rerun the same command to write the rest"),
    ("presets", ["presets"], "terminated"),  # nothing to resume
])
def test_sigterm_ends_a_command_as_terminated_even_when_a_library_replaces_the_exception(capsys, monkeypatch, command,
                                                                                      arguments, said):
    monkeypatch.setattr(f"sparsecap.cli._command_{command}", _sigterm_seen_through_a_library_check)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = _run(capsys, *arguments)
    assert code == 143
    assert err.strip() == said
    assert signal.getsignal(signal.SIGTERM) is before  # the command's handler is gone once it returns


_WITHOUT_TRAINING = """
import contextlib, io, sys
from sparsecap.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    for arguments, code in [(["presets"], 0), (["run", "/nonexistent.toml"], 2), (["run", "quick", "--set", "x"], 2)]:
        assert main(arguments) == code, arguments
    for arguments in (["--help"], ["run", "--help"]):
        with contextlib.suppress(SystemExit):
            main(arguments)
print(sorted(name for name in ("torch", "sklearn", "scipy", "skimage", "cv2") if name in sys.modules))
"""


def test_commands_that_do_not_train_import_neither_torch_nor_sklearn():
    """Listing presets, help and spec errors must answer at once, not after importing torch and scikit-learn (or
    the corruptions' SciPy, scikit-image and OpenCV, which checking a spec's corruption names does not need)."""
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TRAINING], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_run_logs_one_plain_line_per_trial_and_resumes_from_its_study_json(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(out), "--no-report")
    assert code == 0 and "\x1b[" not in err and "\r" not in err  # stderr is no terminal here: no bar codes
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0].split(",")[0] for line in lines] == [f"[{done}/8" for done in range(1, 9)]
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
    assert all(" finished: 2 epochs, final loss " in line and ", accuracy 0." in line for line in lines)
    code, stdout, _ = _run(capsys, "run", "out/study.json", "--no-report")  # its directory, without --out
    assert code == 0 and "0 trials run, 8 already finished, 8 in all; results in out" in stdout
    assert not (tmp_path / "runs").exists()


def test_a_damaged_study_json_resumes_from_the_spec_its_database_records(capsys, tmp_path, monkeypatch):
    """study.json is the database's readable copy: damaged, the resume the README suggests still works and
    writes it anew; an override that is wrong is still refused as such, with no word of the record."""
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "run", str(write_spec(tmp_path)), "--out", "out", "--no-report")[0] == 0
    recorded = json.loads((tmp_path / "out" / "study.json").read_text())
    (tmp_path / "out" / "study.json").write_text("{bad")
    code, stdout, err = _run(capsys, "run", "out/study.json", "--no-report")
    assert code == 0 and "0 trials run, 8 already finished, 8 in all; results in out" in stdout
    assert err.startswith("warning: study spec out/study.json is not valid JSON: ")
    assert "warning: running the spec recorded in out/results.sqlite instead; this run writes out/study.json anew" in err
    assert json.loads((tmp_path / "out" / "study.json").read_text())["fingerprint"] == recorded["fingerprint"]
    code, _, err = _run(capsys, "run", "out/study.json", "--set", "training.max_epochs=0", "--no-report")
    assert code == 2 and "recorded" not in err and "max_epochs" in err
    (tmp_path / "out" / "study.json").write_text("{bad")  # damaged, and a wrong override: the override is named
    code, _, err = _run(capsys, "run", "out/study.json", "--set", "training.bogus=1", "--no-report")
    assert code == 2 and "anew" not in err and "training.bogus" in err
    other = tmp_path / "other"
    assert _run(capsys, "run", str(write_spec(tmp_path)), "--set", "seeds=[5]", "--out", str(other), "--no-report")[0] == 0
    (tmp_path / "out" / "study.json").write_text((other / "study.json").read_text())  # copied from another study
    code, stdout, err = _run(capsys, "run", "out/study.json", "--no-report")
    assert code == 0 and "0 trials run, 8 already finished, 8 in all; results in out" in stdout
    assert err.startswith("warning: out/study.json describes another study ('tiny', fingerprint ")
    assert json.loads((tmp_path / "out" / "study.json").read_text())["fingerprint"] == recorded["fingerprint"]
    (tmp_path / "out" / "study.json").unlink()
    (tmp_path / "out" / "study.json").mkdir()  # no damaged copy: no study is resumed, nor a new one started
    code, _, err = _run(capsys, "run", "out/study.json", "--no-report")
    assert code == 2 and "is a directory" in err and not (tmp_path / "runs").exists()


def test_an_override_of_a_matching_study_json_is_refused_without_blaming_the_copy(capsys, tmp_path, monkeypatch):
    """study.json agrees with its database: a --set that changes the study is refused as such, not taken for a
    copy from another study that the record replaces."""
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "run", str(write_spec(tmp_path)), "--out", "out", "--no-report")[0] == 0
    code, _, err = _run(capsys, "run", "out/study.json", "--set", "training.max_epochs=3", "--no-report")
    assert code == 2 and err.startswith("error: out holds results of a different study ('tiny')")
    assert "warning" not in err and "describes another study" not in err


@pytest.mark.parametrize("arguments", [["run", "quick", "--out", "runs/q\udcff"], ["report", "\udcfe"],
                                       ["corrupt", "mnist", "--out", "c\udcff"]])
def test_a_path_that_is_not_utf8_is_refused_before_anything_runs(capsys, arguments):
    """As the shell hands sys.argv a name of other bytes: decoded with surrogates, which no report can write."""
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert "is not UTF-8 text; use a path whose names are UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("name_length", [256, 300])
def test_a_path_the_system_refuses_is_an_error_naming_it_not_a_traceback(capsys, tmp_path, name_length):
    too_long = tmp_path / ("a" * name_length)
    for arguments in (["report", str(too_long)], ["datasets", "--data-root", str(too_long)],
                      ["run", str(too_long / "spec.toml")]):
        code, _, err = _run(capsys, *arguments)
        assert code == 2, arguments
        assert err.startswith(f"error: {too_long}") and err.endswith(
            ": File name too long; each name in a path may have at most 255 bytes\n"), arguments


def test_an_unreadable_path_is_an_error_saying_what_to_give_instead():
    from sparsecap.cli import os_error_text

    error = PermissionError(errno.EACCES, "Permission denied", "/data/mnist")
    assert os_error_text(error) == "/data/mnist: Permission denied; give a path this user may read (and write, for an output)"
    assert os_error_text(OSError(errno.EIO, "Input/output error")) == "Input/output error"


@pytest.mark.parametrize("arguments", [["run", "quick", "--out", ""], ["report", " "], ["corrupt", "mnist", "--out", ""]])
def test_an_empty_path_is_refused_rather_than_taken_for_the_current_directory(capsys, arguments):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert "expected a path, got an empty one" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_or_a_study_that_does_not_exist_is_named_as_such(capsys, tmp_path):
    """Not mkdir's "File exists" or "not a directory" for a path that is missing: the error says what is wrong."""
    afile = tmp_path / "afile"
    afile.write_text("kept")
    _write_mnist(tmp_path / "data" / "mnist")
    code, _, err = _run(capsys, "corrupt", "mnist", "--out", str(afile), "--data-root", str(tmp_path / "data"),
                        "--corruptions", "fog", "--no-progress")
    assert code == 2 and f"output path {afile} exists and is not a directory; give --out a directory" in err
    code, _, err = _run(capsys, "report", str(tmp_path / "nowhere"))
    assert code == 2 and f"{tmp_path / 'nowhere'} does not exist; expected a study directory" in err
    study = tmp_path / "study"
    assert _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(study), "--no-report", "--set", "seeds=[0]",
                "--set", "schedules=['static']")[0] == 0
    code, _, err = _run(capsys, "report", str(study), "--out", str(afile))
    assert code == 2 and f"the report's path {afile} exists and is not a directory" in err
    assert afile.read_text() == "kept" and "Traceback" not in err
    code, out, _ = _run(capsys, "report", str(study / "study.json"))  # as `run` takes it, for the study
    assert code == 0 and f"report: {study / 'report' / 'index.html'}" in out
    assert _run(capsys, "claims", str(study / "study.json"), "--json")[0] == 0
    before = sorted(path.name for path in study.iterdir())
    code, _, err = _run(capsys, "corrupt", "mnist", "--out", str(study), "--data-root", str(tmp_path / "data"),
                        "--corruptions", "fog", "--no-progress")
    assert code == 2 and f"--out {study} is a study directory (it holds results.sqlite)" in err
    assert sorted(path.name for path in study.iterdir()) == before
    corrupted = tmp_path / "mnist-c"  # and the other way round
    assert _run(capsys, "corrupt", "mnist", "--out", str(corrupted), "--data-root", str(tmp_path / "data"),
                "--corruptions", "fog", "--limit", "5", "--no-progress")[0] == 0
    before = sorted(path.name for path in corrupted.rglob("*"))
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(corrupted), "--no-report")
    assert code == 2 and f"output path {corrupted} holds a corrupted dataset (manifest.json of sparsecap" in err
    assert sorted(path.name for path in corrupted.rglob("*")) == before


def test_a_run_whose_every_trial_diverged_ends_without_a_report_and_not_as_a_refusal(capsys, tmp_path):
    """Diverged trials are results, not failures (exit 0); the missing report is said, not a refusal (exit 2)."""
    code, stdout, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(tmp_path / "out"),
                             "--set", "training.learning_rate=1000", "--set", "widths=[32]")
    assert code == 0 and "4 trials run, 0 already finished" in stdout and "report:" not in stdout
    assert "no report: all 4 trial(s) in" in err and "diverged" in err


def test_a_study_whose_models_are_all_their_own_base_warns_and_names_base_width(capsys, tmp_path):
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--no-report",
                        "--set", "widths=[32]", "--set", "seeds=[0]", "--set", "schedules=['static']")
    assert code == 0
    assert "every mlp model of 'tiny' is its own dense base (width 32, depth 1)" in err
    assert "--set base_width=16" in err  # below the family's base of 128: half the width


@pytest.mark.slow
def test_output_whose_reader_is_gone_before_the_first_line_stops_no_trial(tmp_path):
    """The unmasked-base warning is the run's first line; a reader already gone must not stop the study."""
    reader, writer = os.pipe()
    os.close(reader)
    out = tmp_path / "out"
    with contextlib.closing(os.fdopen(writer, "w")) as gone:
        code = subprocess.run([sys.executable, "-m", "sparsecap.cli", "run", str(write_spec(tmp_path)),
                               "--out", str(out), "--no-report", "--workers", "1",
                               "--set", "widths=[32]", "--set", "seeds=[0]"],
                              stdout=gone, stderr=gone, check=False).returncode
    assert code == 141 and finished_trial_count(out / "results.sqlite") == 2


@pytest.mark.parametrize("arguments", [["--threads", "0"], ["--threads", "two"]])
def test_bad_thread_counts_are_refused(capsys, tmp_path, arguments):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "quick", "--out", str(tmp_path / "out"), *arguments])
    assert exit_.value.code == 2 and "expected a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "valid"), [("--workers", "or auto"), ("--threads", "")])
def test_more_workers_or_threads_than_cpus_are_refused_naming_the_range(capsys, tmp_path, option, valid):
    cores = len(os.sched_getaffinity(0))
    code, _, err = _run(capsys, "run", "quick", "--out", str(tmp_path / "out"), option, "100000000000")
    message = f"{option} 100000000000: this run may use {cores} CPUs here; expected 1 to {cores} {valid}".strip()
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_workers_and_threads_up_to_the_cpus_pass_and_one_more_is_refused(capsys, tmp_path):
    """The bound itself: as many workers or threads as usable CPUs is valid (the run goes on to find its spec),
    one more is refused naming the range."""
    cores = len(os.sched_getaffinity(0))
    for option in ("--workers", "--threads"):
        command = ["run", "nosuchpreset", "--out", str(tmp_path / "out"), "--workers", "1", option]
        code, _, err = _run(capsys, *command, str(cores + 1))
        assert code == 2 and f"{option} {cores + 1}: this run may use {cores} CPUs here; expected 1 to {cores}" in err
        code, _, err = _run(capsys, *command, str(cores))
        assert code == 2 and "'nosuchpreset' is neither a preset nor a spec file" in err
    assert not (tmp_path / "out").exists()


def test_doctor_reports_this_machines_cpus_and_what_auto_chooses(capsys):
    from sparsecap.devices import auto_workers_phrase, cpu_name, detect, resolve
    from sparsecap.runtime import available_cores, physical_cores

    import platform

    code, out, _ = _run(capsys, "doctor")
    available = detect()
    first, second = out.splitlines()[:2]
    assert code == 0 and first.startswith(f"sparsecap {sparsecap.__version__}, Python {platform.python_version()}, ")
    assert second.startswith(f"torch {available.torch_version}, CUDA ")
    assert f"cpu       {cpu_name()}: {available_cores()} usable CPUs, {physical_cores()} physical cores" in out
    auto = resolve("auto", available)
    assert f"--device auto runs on: {auto}; --workers auto: {auto_workers_phrase(auto)}; " in out
    assert "torch threads per trial: 1 below 100,000 multiply-accumulates per example" in out


def _fork_servers_whose_environment_holds(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                process = Path("/proc", entry)
                if b"forkserver" in (process / "cmdline").read_bytes() and marker.encode() in (
                        process / "environ").read_bytes():
                    found.append(int(entry))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads processes from /proc")
def test_a_run_that_fails_leaves_no_fork_server_behind(tmp_path):
    """`sparsecap run` starts its workers' fork server first thing; a run refused afterwards must end it at
    once, not leave it importing torch with the command's stdout (a pipe, say) held open. (multiprocessing's
    resource tracker, which comes with it, ends by itself as soon as the command has.)"""
    if physical_cores() < 2:
        pytest.skip("the fork server starts only where workers run side by side")
    name, value = "SPARSECAP_TEST_MARKER", str(uuid.uuid4())
    log = tmp_path / "log"
    with log.open("w") as output:  # a file, not a pipe: waiting for the pipe's end would wait for the server
        command = subprocess.Popen([sys.executable, "-m", "sparsecap.cli", "run", "nosuchpreset", "--workers", "2"],
                                   stdout=output, stderr=subprocess.STDOUT, env={**os.environ, name: value})
        assert command.wait() == 2
    assert "'nosuchpreset' is neither a preset nor a spec file" in log.read_text()
    assert _fork_servers_whose_environment_holds(f"{name}={value}") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-cpus", "2"], "--address and --num-cpus go with --executor ray"),
        (["--address", "auto"], "--address and --num-cpus go with --executor ray"),
        (["--executor", "ray", "--workers", "2"], "--workers goes with the local executor"),
        (["--device", "gpu"], "expected auto, cpu, cuda, cuda:N or mps"),
        (["--set", "training.max_epochs"], "must look like KEY=VALUE, e.g. training.max_epochs=3"),
    ],
)
def test_run_options_that_do_not_fit_are_refused_before_anything_is_written(capsys, tmp_path, arguments, message):
    """Each names what is valid and exits 2 before the study directory exists."""
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), *arguments)
    assert code == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_a_study_directory_given_as_the_spec_points_at_its_study_json(capsys, tmp_path):
    """`sparsecap run DIR` is a likely slip for `DIR/study.json`: the refusal says which file to give."""
    code, _, err = _run(capsys, "run", str(tmp_path))
    assert code == 2 and f"(e.g. {tmp_path}/study.json)" in err


def test_a_named_member_and_a_different_depth_are_refused(capsys):
    """`describe vgg16 --depth 11` must not quietly describe VGG11 under the name the user typed."""
    code, _, err = _run(capsys, "describe", "vgg16", "--depth", "11")
    assert code == 2 and "vgg16 has depth 16, not --depth 11" in err


def test_a_named_member_takes_its_depth_with_or_without_the_same_depth_given(capsys) -> None:
    """`describe vgg16` (the README's example) and `describe vgg16 --depth 16` describe VGG16 masked to VGG11."""
    for extra in ([], ["--depth", "16"]):
        code, out, err = _run(capsys, "describe", "vgg16", "--width", "8", "--json", *extra)
        assert code == 0, err
        data = json.loads(out)
        assert data["total_weights"] > data["total_nonzero"] == data["base_nonzero"]
    code, out, _ = _run(capsys, "describe", "vgg16", "--width", "8")
    assert code == 0 and out.startswith("vgg width 8 depth 16 on mnist, masked to vgg width 8 depth 11")
