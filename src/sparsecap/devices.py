"""Which accelerators this machine has, which one a run uses (`--device`), and how a trial records it.

The device says where a trial runs, never what it computes, so it is no part of a study's fingerprint: a
study started on a GPU can be finished on a CPU and back. torch is imported only when devices are
detected, so the command line can check `--device` before loading anything else.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparsecap.errors import SparsecapError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class Availability:
    """What this process can run on: CUDA devices (by name) and whether Apple's MPS is there."""

    cuda: tuple[str, ...] = ()
    mps: bool = False
    torch_version: str = ""
    cuda_version: str | None = None

    @property
    def names(self) -> list[str]:
        """Every device a trial can be given, as `--device` takes them."""
        return ["cpu", *(f"cuda:{index}" for index in range(len(self.cuda))), *(["mps"] if self.mps else [])]


def detect() -> Availability:
    import torch

    cuda = tuple(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())) \
        if torch.cuda.is_available() else ()
    return Availability(cuda, bool(torch.backends.mps.is_available()), torch.__version__, torch.version.cuda)


def resolve(requested: str, available: Availability) -> str:
    """`requested` as a concrete device (auto: CUDA, then MPS, then the CPU), or an error naming what exists.

    Plain `cuda` means every CUDA device (one worker each); a trial on it runs on `cuda:0`.
    """
    if requested == "auto":
        return "cuda" if available.cuda else "mps" if available.mps else "cpu"
    if requested == "cpu" or (requested == "mps" and available.mps):
        return requested
    match = re.fullmatch(r"cuda(?::(\d+))?", requested)
    if match is not None and available.cuda and (match[1] is None or int(match[1]) < len(available.cuda)):
        return "cuda" if match[1] is None else f"cuda:{int(match[1])}"  # torch refuses cuda:01
    if requested == "mps" or match is not None:
        build = "" if requested == "mps" or available.cuda_version or not available.torch_version else \
            f" (this PyTorch, {available.torch_version}, is built without CUDA)"
        raise SparsecapError(f"--device {requested}: no such device here{build}; available: "
                             f"{', '.join(available.names)} (or auto)")
    raise SparsecapError(f"--device {requested!r} is not a device; expected {DEVICE_CHOICES}")


def auto_workers_phrase(device: str) -> str:
    """What `--workers auto` starts for a resolved `device`, in words (`Runtime.workers_for`)."""
    return {"cuda": "one per GPU", "mps": "one (MPS is a single device)"}.get(device, "one per physical core")


def devices_of(device: str, available: Availability) -> list[str]:
    """The concrete devices `device` stands for: each CUDA device for plain `cuda`, else itself."""
    return [f"cuda:{index}" for index in range(len(available.cuda))] if device == "cuda" else [device]


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo, else what the platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Placement:
    """Where one trial ran, as its record keeps it."""

    device: str
    device_name: str
    torch_version: str
    cuda_version: str | None


def placement(device: str) -> Placement:
    """The running process's description of `device` (a concrete one: cpu, cuda:N, mps)."""
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = "Apple MPS" if device == "mps" else cpu_name()
    return Placement(device, name, torch.__version__, torch.version.cuda if device.startswith("cuda") else None)


def memory_format(model: nn.Module, device: torch.device | str) -> torch.memory_format:
    """The layout a model's convolution weights and input batches take on `device`: channels-last (NHWC) for
    a model with convolutions on CUDA, where cuDNN's tensor-core kernels work in it natively (NCHW costs
    them a transpose per layer); elsewhere torch's default NCHW, so the CPU path is unchanged. The layout
    changes no value, only how tensors are stored, and so the order of some float reductions."""
    import torch
    from torch import nn

    convolutional = any(isinstance(module, nn.Conv2d) for module in model.modules())
    return torch.channels_last if convolutional and torch.device(device).type == "cuda" else torch.contiguous_format
