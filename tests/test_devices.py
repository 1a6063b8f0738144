"""Device choice (`--device`) with CUDA and MPS availability given, not probed: what a GPU machine gets."""

import copy
import re
from pathlib import Path

import pytest
import torch

from sparsecap.data import dataset_info, load_dataset
from sparsecap.devices import (
    Availability,
    auto_workers_phrase,
    cpu_name,
    devices_of,
    memory_format,
    placement,
    resolve,
)
from sparsecap.errors import SparsecapError
from sparsecap.models import ModelConfig, create_model
from sparsecap.sparsity import initialize_
from sparsecap.studies.checkpoints import save_checkpoint
from sparsecap.training import to_pixels

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
    ("mps", CPU_ONLY, "--device mps: no such device here; available: cpu (or auto)"),
    ("gpu", TWO_GPUS, "--device 'gpu' is not a device; expected auto, cpu, cuda, cuda:N or mps"),
])
def test_a_device_that_is_not_there_is_refused_naming_those_that_are(requested, available, message):
    with pytest.raises(SparsecapError) as error:
        resolve(requested, available)
    assert message in str(error.value)


@pytest.mark.parametrize(("available", "phrase"), [(CPU_ONLY, "one per physical core"), (TWO_GPUS, "one per GPU"),
                                                   (APPLE, "one (MPS is a single device)")])
def test_doctor_says_what_workers_auto_starts_on_the_auto_device(available, phrase):
    assert auto_workers_phrase(resolve("auto", available)) == phrase


def test_a_gpu_index_with_leading_zeros_is_written_as_torch_accepts_it():
    assert resolve("cuda:01", TWO_GPUS) == "cuda:1"
    torch.device(resolve("cuda:00", TWO_GPUS))


def test_plain_cuda_stands_for_every_gpu():
    assert devices_of("cuda", TWO_GPUS) == ["cuda:0", "cuda:1"]
    assert devices_of("cuda:1", TWO_GPUS) == ["cuda:1"] and devices_of("cpu", CPU_ONLY) == ["cpu"]


def test_a_cpu_trial_records_the_processor_and_no_cuda(monkeypatch):
    """Also under a CUDA build of torch (its version string faked here): the CPU trial used no CUDA."""
    monkeypatch.setattr("torch.version.cuda", "12.4")
    where = placement("cpu")
    assert where.device == "cpu" and where.device_name and where.cuda_version is None
    assert where.torch_version.startswith("2.")


def test_a_cpu_trial_records_the_processors_model_name():
    """/proc/cpuinfo's `model name` line, not its `model` number line that comes before it, nor MPS's name."""
    assert placement("cpu").device_name == cpu_name()
    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE) if cpuinfo.exists() else None
    if found is None:
        pytest.skip("no model name in /proc/cpuinfo here")
    assert cpu_name() == found[1].strip()


def test_the_device_is_not_part_of_the_study(tmp_path, capsys):
    """A study resumed with another --device is the same study (here cpu and auto, which is the cpu)."""
    from sparsecap.cli import main
    from tests.study_helpers import write_spec

    spec = write_spec(tmp_path)
    common = ["--out", str(tmp_path / "out"), "--no-report", "--set", "seeds=[0]"]
    assert main(["run", str(spec), *common, "--device", "cpu", "--set", "widths=[16]"]) == 0
    assert main(["run", str(spec), *common, "--device", "auto", "--set", "widths=[16]"]) == 0
    assert "0 trials run, 2 already finished" in capsys.readouterr().out


@pytest.mark.parametrize(("architecture", "device", "layout"), [
    ("vgg", "cuda", torch.channels_last), ("resnet", "cuda:1", torch.channels_last),
    ("mlp", "cuda", torch.contiguous_format), ("vgg", "cpu", torch.contiguous_format),
    ("resnet", "mps", torch.contiguous_format),
])
def test_convolutions_run_channels_last_on_cuda_only(architecture, device, layout):
    with torch.device("meta"):
        depth = 11 if architecture == "vgg" else 18
        model = create_model(ModelConfig(architecture, 16, depth), dataset_info("cifar10"))
    assert memory_format(model, torch.device(device)) == layout


def test_a_channels_last_cnn_computes_what_the_default_layout_does_and_saves_the_same_checkpoint(tmp_path):
    """The CUDA layout, run on the CPU: same outputs up to rounding, and checkpoints in torch's default layout."""
    model = create_model(ModelConfig("vgg", 8, 11), dataset_info("digits"))
    initialize_(model, torch.Generator().manual_seed(0))
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert nhwc.get_submodule("network.conv2").weight.is_contiguous(memory_format=torch.channels_last)
    images = load_dataset("digits").test_images[:64]
    pixels = to_pixels(images, torch.channels_last)
    assert pixels.is_contiguous(memory_format=torch.channels_last) and torch.equal(pixels, to_pixels(images))
    model.eval(), nhwc.eval()
    with torch.no_grad():
        assert torch.allclose(nhwc(pixels), model(to_pixels(images)), rtol=1e-4, atol=1e-5)
    digests = [save_checkpoint(each, tmp_path / f"{index}.safetensors", {}) for index, each in enumerate((model, nhwc))]
    assert digests[0] == digests[1]
