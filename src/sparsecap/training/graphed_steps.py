"""Training steps replayed as CUDA graphs: on a GPU a small model's step is bound by launching its kernels.

On an H200 an eager step of the base MLP took 1.1-1.7 ms and one of ResNet18 at width 64 20 ms, most
of it the host launching a few hundred small kernels one by one (benchmarks/gpu.py, docs/performance.md).
A CUDA graph records a step's kernels once and launches them all with one call, so the step then costs
what the GPU computes. The replayed kernels are the recorded ones, with the same arguments, so a run
computes what the eager run computes.

What a graph cannot hold is decided on the host during a step: a learning rate read as a number (so a
step is recorded again whenever the rate changes, at most once per epoch), per-step hooks that read or
move the mask, augmentation drawn from a CPU generator, and the sparse engine's index structures (those
steps run eagerly: `graphs_apply`). A batch of another size (an epoch's last, partial batch) runs eagerly.

Recording needs the step to have run first (cuBLAS and cuDNN choose their kernels and workspaces, SGD
creates its momentum buffers), and running changes the model. So the step is rehearsed on the batch it is
about to train on, and every tensor it changed is put back exactly (`rehearse`), with momentum buffers
that did not exist yet set to zero: SGD's step from a zero buffer, ``0 · momentum + g``, is exactly its
first step, ``g``. The recorded step then starts from the state the eager step would have started from.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from sparsecap.sparsity.sparse_linear import SparseLinear
from sparsecap.training.config import TrainingConfig

Step = Callable[[torch.Tensor], torch.Tensor]
"""One training step on the examples at these indices (a device tensor); returns the step's logits, detached
(a recorded step's autograd nodes, kept alive, would be reused by the next eager step on another stream)."""

REHEARSALS = 2
"""Eager runs of a step before it is recorded (PyTorch's examples use a few; the first chooses kernels)."""

_RECORDING = threading.Lock()
"""CUDA graphs are captured one at a time in a process, so models trained in threads of their own record in turn."""


def graphs_apply(model: nn.Module, config: TrainingConfig, device: torch.device, hooked: bool) -> bool:
    """Whether `model`'s steps are replayed as CUDA graphs: on CUDA, where nothing in a step is decided on the
    host (no per-step hook, no augmentation, no sparse engine layer) and `[training] compile` is off
    (torch.compile makes its own graphs)."""
    return (device.type == "cuda" and not hooked and not config.augmentation and not config.compile
            and not any(isinstance(module, SparseLinear) for module in model.modules()))


def _changed_by_a_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                       accumulators: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every tensor a training step writes in place: parameters, buffers (batch-norm statistics), the
    optimiser's existing state tensors and the loss accumulators."""
    state = [value for per_parameter in optimizer.state.values() for value in per_parameter.values()
             if isinstance(value, torch.Tensor)]
    return [*model.parameters(), *model.buffers(), *state, *accumulators]


@torch.no_grad()
def rehearse(step: Step, indices: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
             accumulators: Sequence[torch.Tensor], rehearsals: int = REHEARSALS) -> None:
    """Run `step` on `indices` `rehearsals` times, then put back every tensor it changed: the model, the
    optimiser's state (its momentum buffers now exist, zero where they did not) and the accumulators are as
    they were, to the bit."""
    saved = [(tensor, tensor.clone()) for tensor in _changed_by_a_step(model, optimizer, accumulators)]
    existed = {id(value) for per_parameter in optimizer.state.values() for value in per_parameter.values()}
    with torch.enable_grad():
        for _ in range(rehearsals):
            step(indices)
    for tensor, value in saved:  # SGD updates its state in place, so these are the tensors it goes on with
        tensor.copy_(value)
    for per_parameter in optimizer.state.values():
        for value in per_parameter.values():
            if isinstance(value, torch.Tensor) and id(value) not in existed:
                value.zero_()
    optimizer.zero_grad(set_to_none=True)


@contextmanager
def _on_a_side_stream(side: torch.cuda.Stream) -> Iterator[None]:
    """Rehearse on a side stream, as CUDA graph capture requires of the work that precedes it."""
    current = torch.cuda.current_stream(side.device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        yield
    current.wait_stream(side)


@contextmanager
def _stream_put_back(device: torch.device) -> Iterator[None]:
    """The thread's stream put back however a recording ends: when ending a capture raises, `torch.cuda.graph`
    leaves the thread on the capture stream, where the eager steps that follow would race with its own."""
    previous = torch.cuda.current_stream(device)
    try:
        yield
    finally:
        torch.cuda.set_stream(previous)


class GraphedSteps:
    """`step` for every batch of one size, recorded as a CUDA graph at the first such batch (again when the
    learning rate changes) and replayed; batches of other sizes run `step` eagerly."""

    def __init__(self, step: Step, model: nn.Module, optimizer: torch.optim.Optimizer,
                 accumulators: Sequence[torch.Tensor]) -> None:
        self.step, self.model, self.optimizer, self.accumulators = step, model, optimizer, accumulators
        self.graph: torch.cuda.CUDAGraph | None = None
        self.indices: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.rates: tuple[float, ...] = ()
        self.failed = False
        self.side: torch.cuda.Stream | None = None
        """Where this model's steps are rehearsed and recorded, one stream for its whole run: a capture stream
        shared with a model training in another thread (`torch.cuda.graph`'s default) would record that model's
        kernels too, and streams come from a pool of 32 per device handed out in turn, so a new one per
        recording would soon come round to another thread's."""

    def _record(self, indices: torch.Tensor) -> None:
        if self.side is None:
            self.side = torch.cuda.Stream(indices.device)
        with _RECORDING:
            if self.graph is None:
                with _on_a_side_stream(self.side):
                    rehearse(self.step, indices, self.model, self.optimizer, self.accumulators)
            self.graph = None  # its memory goes back to the pool before the next recording
            self.indices = indices.clone()
            self.optimizer.zero_grad(set_to_none=True)  # gradients are then the graph's own tensors
            graph = torch.cuda.CUDAGraph()
            # Only this thread is barred from what capture forbids, so models trained in threads of their own,
            # each on its own stream, go on while one records (benchmarks/gpu.py, part (e)).
            with (_stream_put_back(indices.device),
                  torch.cuda.graph(graph, stream=self.side, capture_error_mode="thread_local")):
                self.logits = self.step(self.indices)
            self.graph = graph
        self.rates = self._rates()

    def _rates(self) -> tuple[float, ...]:
        return tuple(float(group["lr"]) for group in self.optimizer.param_groups)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.failed or (self.indices is not None and indices.shape != self.indices.shape):
            return self.step(indices)
        if self.graph is None or self._rates() != self.rates:
            try:
                self._record(indices)
            except RuntimeError as error:  # recording runs nothing, so the model is as it was: go on eagerly
                warnings.warn(f"training steps could not be recorded as a CUDA graph ({error}); they run one "
                              "kernel at a time, computing the same", RuntimeWarning, stacklevel=2)
                self.failed = True
                return self.step(indices)
        assert self.graph is not None and self.indices is not None and self.logits is not None
        self.indices.copy_(indices)
        self.graph.replay()
        return self.logits


def steps_for(step: Step, model: nn.Module, optimizer: torch.optim.Optimizer, accumulators: Sequence[torch.Tensor],
              config: TrainingConfig, device: torch.device, hooked: bool) -> Step:
    """`step` itself, or replayed as CUDA graphs where they apply (`graphs_apply`)."""
    if graphs_apply(model, config, device, hooked):
        return GraphedSteps(step, model, optimizer, accumulators)
    return step
