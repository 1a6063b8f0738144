"""Device choice (`--device`) with CUDA and MPS availability given, not probed: what a GPU machine gets."""

import pytest

from sparsecap.devices import Availability, devices_of, placement, resolve
from sparsecap.errors import SparsecapError

CPU_ONLY = Availability(torch_version="2.13.0+cpu")
TWO_GPUS = Availability(cuda=("NVIDIA H200", "NVIDIA H200"), torch_version="2.13.0", cuda_version="12.8")
APPLE = Availability(mps=True, torch_version="2.13.0")


@pytest.mark.parametrize(("available", "expected"), [(CPU_ONLY, "cpu"), (TWO_GPUS, "cuda"), (APPLE, "mps"),
                                                     (Availability(cuda=("A100",), mps=True), "cuda")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(available, expected):
    assert resolve("auto", available) == expected


def test_named_devices_that_exist_are_taken():
    assert [resolve(name, TWO_GPUS) for name in ("cpu", "cuda", "cuda:0", "cuda:1")] == ["cpu", "cuda", "cuda:0", "cuda:1"]
    assert resolve("mps", APPLE) == "mps"


@pytest.mark.parametrize(("requested", "available", "message"), [
    ("cuda", CPU_ONLY, "--device cuda: no such device here (this PyTorch, 2.13.0+cpu, is built without CUDA); "
                       "available: cpu (or auto)"),
    ("cuda:2", TWO_GPUS, "--device cuda:2: no such device here; available: cpu, cuda:0, cuda:1 (or auto)"),
    ("mps", TWO_GPUS, "--device mps: no such device here; available: cpu, cuda:0, cuda:1"),
    ("gpu", TWO_GPUS, "--device 'gpu' is not a device; expected auto, cpu, cuda, cuda:N or mps"),
])
def test_a_device_that_is_not_there_is_refused_naming_those_that_are(requested, available, message):
    with pytest.raises(SparsecapError) as error:
        resolve(requested, available)
    assert message in str(error.value)


def test_plain_cuda_stands_for_every_gpu():
    assert devices_of("cuda", TWO_GPUS) == ["cuda:0", "cuda:1"]
    assert devices_of("cuda:1", TWO_GPUS) == ["cuda:1"] and devices_of("cpu", CPU_ONLY) == ["cpu"]


def test_a_cpu_trial_records_the_processor_and_no_cuda():
    where = placement("cpu")
    assert where.device == "cpu" and where.device_name and where.cuda_version is None
    assert where.torch_version.startswith("2.")


def test_the_device_is_not_part_of_the_study(tmp_path, capsys):
    """A study resumed with another --device is the same study (here cpu and auto, which is the cpu)."""
    from sparsecap.cli import main
    from tests.study_helpers import write_spec

    spec = write_spec(tmp_path)
    common = ["--out", str(tmp_path / "out"), "--no-report", "--set", "seeds=[0]"]
    assert main(["run", str(spec), *common, "--device", "cpu", "--set", "widths=[16]"]) == 0
    assert main(["run", str(spec), *common, "--device", "auto", "--set", "widths=[16]"]) == 0
    assert "0 trials run, 2 already finished" in capsys.readouterr().out
