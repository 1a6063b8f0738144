"""The arithmetic a training run computes in (`[training] precision`), set for the run and undone after it.

- `float32`: IEEE float32. On CUDA this turns TF32 off for convolutions too, which torch otherwise allows
  by default, so float32 means the same arithmetic on every device.
- `tf32`: CUDA matrix products and cuDNN convolutions round their float32 inputs to TF32 (tensor cores).
  Nothing else changes: on a CPU or MPS it computes exactly as float32.
- `bfloat16`: `torch.autocast` on the run's device type runs products and convolutions in bfloat16 while
  the weights, their gradients, the optimiser and the loss stay float32. The context covers backward
  and the optimiser step as well as the forward pass, so one line sets a whole run: backward's products
  take the dtypes their forward saved, so this computes what autocast around each forward pass alone
  does, to the bit (tested). Autocast's cache of bfloat16 copies of the weights is off: it lives as long
  as the context, so over a run it would hand every step the first step's copies (stale biases); each
  step casts each weight once either way.

The TF32 switches are torch's process-wide backend flags, so they are saved on entry and restored on
exit, whatever the run raised. They are set through the `allow_tf32` flags rather than the newer
`fp32_precision` properties: with the latter set, `torch.get_float32_matmul_precision()`, which
torch.compile's autotuning calls, raises on a "mix of the legacy and new APIs" (torch 2.13).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sparsecap.training.config import Precision


@contextmanager
def numeric_precision(precision: Precision, device: torch.device | str) -> Iterator[None]:
    """Run the body at `precision` on `device`; the process's settings are as before afterwards."""
    device_type = torch.device(device).type
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tensor_float = precision is Precision.TF32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tensor_float
    try:
        bfloat16 = precision is Precision.BFLOAT16
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bfloat16, cache_enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bfloat16_emulated(device: torch.device | str) -> bool:
    """Whether bfloat16 autocast on `device` is emulated, and so far slower than float32: on a CPU without
    oneDNN's bfloat16 kernels (x86 without AVX-512), where VGG11 trained 22x slower than in float32
    (`benchmarks/cpu_precision.py`). Worth a warning before a long run."""
    return torch.device(device).type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported()
