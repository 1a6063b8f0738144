"""A sparse execution engine for static-sparse linear layers: work only at the mask's nonzeros.

`MaskedLinear` computes ``linear(x, weight * mask, bias)`` with dense matrices, so a layer costs what
its dense shape costs whatever its density. With the sparse engine the same layer computes

- forward ``y = x Wᵀ + b`` as a CSR product of the kept weights (``torch.sparse.mm``),
- the input gradient ``dx = dy W`` as a CSR product with the transposed structure,
- the weight gradient only at the kept positions, as a sampled dense-dense product
  (``torch.sparse.sampled_addmm``: ``(dyᵀ x)`` evaluated at the mask's nonzeros only).

The dense weight Parameter stays the single source of truth: every forward pass reads the kept values
out of it (so weight noise, pruning, loading a checkpoint and the optimiser all act on the same
tensor), and the weight gradient is a sparse COO tensor at the kept positions, which
``torch.optim.SGD`` (momentum included) handles natively: masked weights get no gradient, no momentum
and stay exactly zero, as with the dense engine. Only the index structures are derived from the
mask: rows, columns, the CSR row pointers of W and Wᵀ and the permutation between their value
orders. They are built once per mask and rebuilt only when the mask buffer changes (its version
counter: ``set_mask``, ``load_state_dict``, pruning) or is replaced (``model.double()``, ``.to()``).

The mask is taken to hold 0 and 1 only (what every sparsecap mask holds). Convolutions stay dense.
See docs/performance.md for the measurements behind `AUTO_DENSITY_THRESHOLD`.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# CSR support is marked beta in PyTorch; it is what this module is built on, and tested here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


class Engine(str, enum.Enum):
    """How a `MaskedLinear` computes its products."""

    DENSE = "dense"
    """Dense weight × mask (the reference; what costs the dense shape)."""
    SPARSE = "sparse"
    """CSR products and a sampled weight gradient at the nonzeros only."""
    AUTO = "auto"
    """Sparse where the layer's density is below `AUTO_DENSITY_THRESHOLD`, dense elsewhere."""


AUTO_DENSITY_THRESHOLD = 0.15
"""`auto` uses the sparse engine for a layer whose kept fraction is below this (measured:
benchmarks/sparse_engine.py: sparse wins from density 0.125 (width 2^10) down, dense at 0.25 and
above; docs/performance.md)."""


@dataclass(frozen=True)
class SparseStructure:
    """The index structures of one mask, computed once."""

    key: tuple[Any, ...]
    shape: tuple[int, int]
    flat: torch.Tensor
    """Kept positions as flat indices into the row-major weight, ascending (the CSR value order of W)."""
    indices: torch.Tensor
    """(2, nnz) rows and columns, coalesced order: the sparse gradient's indices."""
    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    """CSR row pointers of Wᵀ."""
    col_t: torch.Tensor
    permutation_t: torch.Tensor
    """Wᵀ's values are W's values[permutation_t]."""
    density: float

    @property
    def nnz(self) -> int:
        return int(self.flat.numel())


def build_structure(mask: torch.Tensor, key: tuple[Any, ...] = ()) -> SparseStructure:
    """The CSR structures of W and Wᵀ for a 2-D 0/1 mask."""
    if mask.dim() != 2:
        raise ValueError(f"the sparse engine needs a 2-D mask, got shape {tuple(mask.shape)}")
    out_features, in_features = mask.shape
    flat = torch.nonzero(mask.reshape(-1)).reshape(-1)
    rows, cols = flat // in_features, flat % in_features
    crow = torch._convert_indices_from_coo_to_csr(rows, out_features)
    permutation_t = torch.argsort(cols * out_features + rows)
    crow_t = torch._convert_indices_from_coo_to_csr(cols[permutation_t], in_features)
    return SparseStructure(
        key=key, shape=(out_features, in_features), flat=flat, indices=torch.stack([rows, cols]),
        crow=crow, col=cols, crow_t=crow_t, col_t=rows[permutation_t].contiguous(),
        permutation_t=permutation_t, density=flat.numel() / max(mask.numel(), 1),
    )


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)  # built from a valid mask


class SparseLinearFunction(torch.autograd.Function):
    """``x Wᵀ + b`` for the kept weights of `structure`; the weight gradient is sparse COO."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, structure: SparseStructure
    ) -> torch.Tensor:
        values = weight.reshape(-1).index_select(0, structure.flat)
        matrix = _csr(structure.crow, structure.col, values, structure.shape)
        flat_inputs = inputs.reshape(-1, structure.shape[1])
        # Work in (features, batch) layout and hand back the transposed view: elementwise layers keep
        # that layout, so the next sparse layer's transpose (and this one's backward) costs nothing.
        inputs_t = flat_inputs.t().contiguous()
        if bias is not None:
            outputs = torch.addmm(bias.unsqueeze(1), matrix, inputs_t).t()
        else:
            outputs = torch.sparse.mm(matrix, inputs_t).t()
        ctx.structure = structure
        ctx.input_shape = inputs.shape
        ctx.has_bias = bias is not None
        ctx.save_for_backward(flat_inputs, values)
        return outputs.reshape(*inputs.shape[:-1], structure.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        structure: SparseStructure = ctx.structure
        flat_inputs, values = ctx.saved_tensors
        grad_t = grad_outputs.reshape(-1, structure.shape[0]).t().contiguous()  # (out, batch)
        grad_inputs = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            transposed = _csr(structure.crow_t, structure.col_t, values[structure.permutation_t], structure.shape[::-1])
            grad_inputs = torch.sparse.mm(transposed, grad_t).t().reshape(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            pattern = _csr(structure.crow, structure.col, values, structure.shape)
            sampled = torch.sparse.sampled_addmm(pattern, grad_t, flat_inputs, beta=0.0)
            grad_weight = torch.sparse_coo_tensor(
                structure.indices, sampled.values(), structure.shape, is_coalesced=True, check_invariants=False
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_t.sum(1)
        return grad_inputs, grad_weight, grad_bias, None


def structure_for(layer: nn.Module) -> SparseStructure:
    """The layer's cached structure, rebuilt when its mask buffer was written to or replaced."""
    mask: torch.Tensor = layer.mask  # type: ignore[assignment]
    key = (mask.data_ptr(), mask._version, mask.device, tuple(mask.shape))
    cached: SparseStructure | None = getattr(layer, "_sparse_structure", None)
    if cached is None or cached.key != key:
        cached = build_structure(mask.detach(), key)
        layer._sparse_structure = cached  # plain attribute: not a buffer, never saved
    return cached


def uses_sparse(layer: nn.Module) -> bool:
    """Whether the layer's current engine and density select the sparse path."""
    engine: Engine = getattr(layer, "engine", Engine.DENSE)
    if engine is Engine.DENSE:
        return False
    if engine is Engine.SPARSE:
        return True
    return structure_for(layer).density < AUTO_DENSITY_THRESHOLD


def sparse_linear(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """A masked linear layer's output through the sparse engine."""
    return SparseLinearFunction.apply(inputs, layer.weight, layer.bias, structure_for(layer))


def set_engine(model: nn.Module, engine: Engine | str) -> nn.Module:
    """Give every `MaskedLinear` of `model` the engine (convolutions stay dense); returns the model."""
    from sparsecap.sparsity.masked import MaskedLinear

    engine = Engine(engine)
    for module in model.modules():
        if isinstance(module, MaskedLinear):
            module.engine = engine
    return model


class SGD(torch.optim.SGD):
    """`torch.optim.SGD`, with a fast path for the sparse engine's fixed-pattern sparse gradients.

    PyTorch's SGD handles a sparse COO gradient through generic sparse additions (a merge for the
    momentum buffer, a coalesce for the update: most of a width-2^15 sparse step). The sparse engine's
    gradient always has the same pattern, so the same update is done on the values: the momentum buffer
    holds the kept entries' values (every other entry of PyTorch's buffer is zero forever), and
    ``buf = momentum * buf + grad; weight -= lr * buf`` is applied with one ``index_add_``. Dense
    gradients, and sparse ones with weight decay, dampening, Nesterov or maximize, take PyTorch's path.
    """

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        taken: list[tuple[dict[str, Any], torch.Tensor, torch.Tensor]] = []
        for group in self.param_groups:
            plain = (group["weight_decay"] == 0 and group["dampening"] == 0 and not group["nesterov"]
                     and not group["maximize"])
            for parameter in group["params"]:
                grad = parameter.grad
                if plain and grad is not None and grad.is_sparse and grad.dim() == 2:
                    taken.append((group, parameter, grad))
                    parameter.grad = None  # hidden from PyTorch's step, restored below
        try:
            loss = super().step(closure)
        finally:
            for group, parameter, grad in taken:
                parameter.grad = grad
        for group, parameter, grad in taken:
            flat, values = _flat_pattern(grad, parameter.shape[1])
            state = self.state[parameter]
            momentum = group["momentum"]
            previous = state.get("sparse_momentum")
            if previous is not None and previous[0].shape == flat.shape and torch.equal(previous[0], flat):
                update = previous[1].mul_(momentum).add_(values) if momentum != 0 else values
            else:
                if previous is not None:
                    raise RuntimeError("the sparse gradient's pattern changed during training")
                # First step: make sure the pattern has no repeated positions, then keep it.
                flat, values = _flat_pattern(grad.coalesce(), parameter.shape[1])
                update = values.clone() if momentum != 0 else values
                state["sparse_momentum"] = (flat, update)
            parameter.view(-1).index_add_(0, flat, update, alpha=-group["lr"])
        return loss


def _flat_pattern(grad: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    indices = grad._indices()
    return indices[0] * columns + indices[1], grad._values()
