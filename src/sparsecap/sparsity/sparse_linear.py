"""A linear layer stored and computed at its kept weights only: the sparse engine.

`MaskedLinear` keeps a dense weight and a dense mask and computes ``linear(x, weight * mask, bias)``,
so it costs its dense shape in memory and arithmetic whatever its density. `SparseLinear` is the same
layer stored compactly: the kept weights' values are its Parameter (in row-major order of their
positions), their flat positions a buffer. It computes

- forward ``y = x Wᵀ + b`` as a product of W, held in CSR form (an embedding bag per row: `_product`),
- the input gradient ``dx = dy W`` as the same product with the transposed structure,
- the values' gradient as a sampled dense-dense product: ``dyᵀ x`` evaluated at the kept positions
  only (``torch.sparse.sampled_addmm``).

Each product writes its (features, batch) output once and reads nothing of it (`_product`): at width
2^15 an output is as large as the activations, and the step's time is passes over them, not its
nonzeros' arithmetic. Where a layer's output is wider than its input, the bias is one more column of
the CSR matrix (`BiasColumn`), so neither adding it nor summing its gradient costs a pass. Where a
layer reads few of its inputs (the width-2^15 output layer reads at most 1,280 of 32,768 hidden units),
it gathers those (`SparseStructure.live_inputs`) and computes over them alone: its input gradient is
then a zero fill and a scatter of those rows, not a product writing every row. A sparse layer right
after a ReLU applies that ReLU itself, to the inputs it gathers (`ReluSparseLinear`), so neither the
ReLU nor its gradient passes over the whole hidden layer.

The values' gradient is a plain dense vector, so `torch.optim.SGD` (momentum included) updates exactly
the kept weights, and a removed weight does not exist to be moved. The index structures (CSR row
pointers of W and Wᵀ, the permutation between their value orders) are derived from the positions once
and rebuilt only when the positions buffer is written or replaced.

For everything that reads a layer's weights (summaries, pruning, weight noise, initialisation) a
`SparseLinear` answers the same questions as a `MaskedLinear`: `weight_shape`, `mask` and
`effective_weight()` give the dense view (materialised on request), `stored_weight`, `stored_mask` and
`to_stored_layout` the trainable storage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as functional
from torch import nn

@dataclass(frozen=True)
class SparseStructure:
    """The index structures of one set of kept positions, computed once."""

    positions: torch.Tensor
    """The positions buffer they were built from. Held, so a new buffer cannot take over its memory and pass
    for it: a cache keyed on the address (and version) alone reused stale structures after two `set_mask`
    calls without a forward pass between them."""
    key: tuple[Any, ...]
    shape: tuple[int, int]
    crow: torch.Tensor
    col: torch.Tensor
    crow_t: torch.Tensor
    """CSR row pointers of Wᵀ."""
    col_t: torch.Tensor
    permutation_t: torch.Tensor
    """Wᵀ's values are W's values[permutation_t]."""
    bias_column: BiasColumn | None
    """Where the bias is computed as one more column of W (`bias_folds`), its structure."""
    live_inputs: torch.Tensor | None
    """The inputs W reads, ascending, where it reads at most `COMPACT_INPUTS_UP_TO` of them; the other
    structures then number their columns among these (None: W's own columns, all inputs)."""


@dataclass(frozen=True)
class BiasColumn:
    """The CSR structure of ``[W | b]``, which multiplies the inputs with a row of ones appended.

    The product then adds each bias as it writes its output row, where ``addmm(b, W, X)`` would first
    copy the broadcast bias into the whole (out, batch) output and read it back; and the sampled weight
    gradient gives the bias gradient (``dY · 1``) with the values', without a pass summing ``dY``.
    """

    crow: torch.Tensor
    col: torch.Tensor
    value_slots: torch.Tensor
    """W's values are ``[W | b]``'s values[value_slots]."""
    bias_slots: torch.Tensor
    """b is ``[W | b]``'s values[bias_slots]: the last entry of each row."""

    def entries(self, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``[W | b]``'s values, for W's `values` and the bias `bias`."""
        combined = values.new_empty(self.col.numel())
        combined[self.value_slots] = values
        combined[self.bias_slots] = bias
        return combined


def bias_folds(shape: tuple[int, int]) -> bool:
    """Whether a bias is cheaper as a column of W: appending the ones row copies the (in, batch) inputs,
    adding the bias separately passes over the (out, batch) outputs."""
    out_features, in_features = shape
    return in_features < out_features


def _bias_column(crow: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, in_features: int) -> BiasColumn:
    """Row r of ``[W | b]`` is row r of W, then b_r in column `in_features`."""
    shifts = torch.arange(crow.numel(), device=crow.device)
    value_slots = torch.arange(cols.numel(), device=cols.device) + rows  # r earlier bias entries before row r
    bias_slots = crow[1:] + shifts[:-1]
    col = cols.new_empty(cols.numel() + bias_slots.numel())
    col[value_slots] = cols
    col[bias_slots] = in_features
    return BiasColumn(crow=crow + shifts, col=col, value_slots=value_slots, bias_slots=bias_slots)


COMPACT_INPUTS_UP_TO = 0.5
"""The fraction of its inputs up to which a layer gathers the ones it reads: gathering costs a copy of
them forward and a zero fill backward, which pays only when it spares a product over many unread rows."""


def build_structure(kept: torch.Tensor, shape: tuple[int, int], key: tuple[Any, ...] = (),
                    with_bias: bool = False, fold_bias: bool | None = None) -> SparseStructure:
    """The CSR structures of W and Wᵀ for ascending flat positions `kept` in a row-major `shape`, and of
    ``[W | b]`` for a layer `with_bias` whose bias folds into W (`fold_bias`; None: where `bias_folds`);
    over the live inputs only where W reads few (`COMPACT_INPUTS_UP_TO`)."""
    out_features, in_features = shape
    rows, cols = kept // in_features, kept % in_features
    live, live_cols = torch.unique(cols, sorted=True, return_inverse=True)
    live_inputs = None
    if 0 < live.numel() <= COMPACT_INPUTS_UP_TO * in_features:
        live_inputs, cols, in_features = live, live_cols, live.numel()
    crow = torch._convert_indices_from_coo_to_csr(rows, out_features)
    permutation_t = torch.argsort(cols * out_features + rows)
    crow_t = torch._convert_indices_from_coo_to_csr(cols[permutation_t], in_features)
    folds = with_bias and (bias_folds((out_features, in_features)) if fold_bias is None else fold_bias)
    bias_column = _bias_column(crow, rows, cols, in_features) if folds else None
    return SparseStructure(positions=kept, key=key, shape=(out_features, in_features), crow=crow, col=cols,
                           crow_t=crow_t, col_t=rows[permutation_t].contiguous(), permutation_t=permutation_t,
                           bias_column=bias_column, live_inputs=live_inputs)


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor of valid positions, built without invariant checks. torch warns at each build that CSR is beta
    and that the checks are off, both known here (this module is built on CSR, and tested): silenced for this
    call only, not for the process that imports sparsecap."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _product(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``W @ dense`` for W in CSR form (`crow`, `col`, `values`), written once into a fresh tensor.

    Row r of the product is the sum of the `dense` rows W's row r names, each times its value: an embedding
    bag per row, whose kernel (FBGEMM's on a CPU) streams the dense rows. At the width-2^15 MLP's shapes it
    took 0.3-0.56× the time of ``torch.addmm`` on the CSR matrix, on one CPU thread and on two
    (benchmarks/sparse_product.py). It writes each output entry once, empty rows as zeros, where
    `torch.sparse.mm` zero-fills its result and copies it. Each row sums its entries in their CSR order
    whatever the other rows, so a row's result does not depend on which rows are computed beside it.
    """
    return functional.embedding_bag(col, dense, crow, mode="sum", per_sample_weights=values,
                                    include_last_offset=True)


def _sampled_gradient(crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int], grad_t: torch.Tensor,
                      inputs_t: torch.Tensor) -> torch.Tensor:
    """``dY Xᵀ`` at the positions of (`crow`, `col`) only, in their order: the stored values' gradient."""
    pattern = _csr(crow, col, grad_t.new_zeros(col.numel()), shape)
    return torch.sparse.sampled_addmm(pattern, grad_t, inputs_t.t(), beta=0.0).values()


class SparseProduct(torch.autograd.Function):
    """``W X + b`` in (features, batch) layout, for W holding `values` at the positions of `structure`.

    The (features, batch) layout is what the products take and give, so callers that keep it between
    layers (elementwise layers preserve it) pay no transposing copies.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, inputs_t: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, structure: SparseStructure
    ) -> torch.Tensor:
        inputs_t = inputs_t.contiguous()  # free when the previous layer kept the layout
        column = structure.bias_column if bias is not None else None
        crow, col, entries = structure.crow, structure.col, values
        if column is not None:  # [W | b] times the inputs with a row of ones appended
            crow, col, entries = column.crow, column.col, column.entries(values, bias)
            inputs_t = torch.cat([inputs_t, inputs_t.new_ones(1, inputs_t.shape[1])])
        outputs_t = _product(crow, col, entries, inputs_t)
        if bias is not None and column is None:
            outputs_t.add_(bias.unsqueeze(1))  # unfolded: the outputs are no larger than the inputs
        ctx.structure, ctx.column, ctx.pattern = structure, column, (crow, col)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(inputs_t, values)
        return outputs_t

    @staticmethod
    def backward(ctx: Any, grad_outputs_t: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        structure: SparseStructure = ctx.structure
        inputs_t, values = ctx.saved_tensors
        grad_t = grad_outputs_t.contiguous()
        grad_inputs_t = grad_values = grad_bias = None
        with torch.autocast(grad_t.device.type, enabled=False):  # float32, as `product_t` says
            if ctx.needs_input_grad[0]:
                grad_inputs_t = _product(structure.crow_t, structure.col_t, values[structure.permutation_t], grad_t)
            column: BiasColumn | None = ctx.column
            if ctx.needs_input_grad[1] or (column is not None and ctx.needs_input_grad[2]):
                sampled = _sampled_gradient(*ctx.pattern, (structure.shape[0], inputs_t.shape[0]), grad_t, inputs_t)
                grad_values = sampled if column is None else sampled[column.value_slots]
                if column is not None:
                    grad_bias = sampled[column.bias_slots]  # dY · 1, from the ones row
            if ctx.has_bias and ctx.needs_input_grad[2] and column is None:
                grad_bias = grad_t.sum(1)
        return grad_inputs_t, grad_values, grad_bias, None


class SparseLinear(nn.Module):
    """A static-sparse linear layer that holds only its kept weights (see the module docstring)."""

    kept: torch.Tensor

    def __init__(self, in_features: int, out_features: int, kept: torch.Tensor, values: torch.Tensor,
                 bias: torch.Tensor | None, fold_bias: bool | None = None) -> None:
        super().__init__()
        if kept.dim() != 1 or kept.shape != values.shape:
            raise ValueError(f"kept positions {tuple(kept.shape)} and values {tuple(values.shape)} must be "
                             "vectors of one length")
        self.in_features, self.out_features = in_features, out_features
        self.fold_bias = fold_bias
        """Whether the bias is computed as a column of W; None: where the shape makes that cheaper
        (`bias_folds`). A narrowed layer keeps its full layer's choice (`unread_units`), so it sums the bias
        gradient in the same order and training it is the full layer's run bit for bit."""
        self.register_buffer("kept", kept.to(torch.int64))
        self.values = nn.Parameter(values)
        self.bias = nn.Parameter(bias) if bias is not None else None

    @classmethod
    def from_dense(cls, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None) -> SparseLinear:
        """The layer whose kept weights are `weight` where the 0/1 `mask` is nonzero."""
        kept = torch.nonzero(mask.reshape(-1)).reshape(-1)
        out_features, in_features = weight.shape
        return cls(in_features, out_features, kept, weight.detach().reshape(-1)[kept].clone(),
                   None if bias is None else bias.detach().clone())

    @property
    def weight_shape(self) -> torch.Size:
        return torch.Size((self.out_features, self.in_features))

    @property
    def density(self) -> float:
        return self.kept.numel() / max(math.prod(self.weight_shape), 1)

    def _scatter(self, values: torch.Tensor) -> torch.Tensor:
        dense = values.new_zeros(math.prod(self.weight_shape))
        return dense.index_copy_(0, self.kept, values).view(self.weight_shape)

    @property
    def mask(self) -> torch.Tensor:
        """The dense 0/1 mask (materialised on each read: for summaries, not for training)."""
        return self._scatter(torch.ones_like(self.values.detach()))

    def effective_weight(self) -> torch.Tensor:
        """The dense weight matrix this layer computes with (materialised)."""
        return self._scatter(self.values.detach())

    @property
    def stored_weight(self) -> nn.Parameter:
        """The Parameter holding the weights: here only the kept values."""
        return self.values

    @property
    def stored_mask(self) -> torch.Tensor:
        """Which stored weights are kept: all of them."""
        return torch.ones((), dtype=self.values.dtype)

    def to_stored_layout(self, dense: torch.Tensor) -> torch.Tensor:
        """A tensor of the weight's dense shape, read at the stored weights' positions."""
        return dense.reshape(-1)[self.kept]

    @property
    def kept_count(self) -> int:
        return self.kept.numel()

    def kept_to_stored_layout(self, kept: torch.Tensor) -> torch.Tensor:
        """Values of the kept weights, in row-major order: the stored layout itself (`kept` ascends)."""
        return kept

    def kept_positions(self) -> torch.Tensor:
        """Flat row-major positions of the kept weights, ascending: the positions buffer."""
        return self.kept

    def kept_values(self) -> torch.Tensor:
        """The kept weights' values, in the order of `kept_positions`: the Parameter itself."""
        return self.values.detach()

    @torch.no_grad()
    def move_kept_(self, dropped: torch.Tensor, grown: torch.Tensor, companions: Sequence[torch.Tensor] = ()) -> None:
        """Keep flat positions `grown` (not kept) in place of `dropped` (kept), in place: the positions
        buffer and the values Parameter keep their size and identity (an optimiser keeps tracking them), and
        `companions` (tensors in the values' layout, e.g. momentum) are reordered with them. Grown weights and
        their companions start at zero. Costs O(kept), never the dense shape."""
        survivors = torch.ones(self.kept.numel(), dtype=torch.bool, device=self.kept.device)
        survivors[torch.searchsorted(self.kept, dropped)] = False
        positions = torch.cat([self.kept[survivors], grown])
        order = torch.argsort(positions)
        for tensor in (self.values, *companions):
            tensor.copy_(torch.cat([tensor[survivors], tensor.new_zeros(grown.numel())])[order])
        self.kept.copy_(positions[order])  # a new version of the buffer: the index structures are rebuilt

    def set_mask(self, mask: torch.Tensor) -> None:
        """Keep the positions `mask` keeps, with their current weights (zero where none was kept)."""
        if mask.shape != self.weight_shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight {tuple(self.weight_shape)}")
        kept = torch.nonzero(mask.reshape(-1)).reshape(-1)
        values = self.effective_weight().reshape(-1)[kept]
        self.kept = kept
        self.values = nn.Parameter(values)

    def structure(self) -> SparseStructure:
        """The cached index structures, rebuilt when the positions buffer was written to or replaced."""
        key = (self.kept._version, self.kept.numel(), self.bias is not None, self.fold_bias)
        cached: SparseStructure | None = getattr(self, "_structure", None)
        if cached is None or cached.positions is not self.kept or cached.key != key:
            cached = build_structure(self.kept, (self.out_features, self.in_features), key, self.bias is not None,
                                     self.fold_bias)
            self._structure = cached  # plain attribute: not a buffer, never saved
        return cached

    def read_inputs(self, inputs_t: torch.Tensor, structure: SparseStructure) -> torch.Tensor:
        """The inputs (features, batch) the product takes: those W reads, where it gathers them."""
        return inputs_t if structure.live_inputs is None else inputs_t.index_select(0, structure.live_inputs)

    def product_t(self, inputs_t: torch.Tensor) -> torch.Tensor:
        """``W X + b`` for inputs in (features, batch) layout. The sampled weight gradient has no bfloat16
        kernel, so under autocast (`[training] precision = "bfloat16"`) the layer runs in its float32."""
        with torch.autocast(inputs_t.device.type, enabled=False):
            structure = self.structure()
            inputs_t = self.read_inputs(inputs_t, structure).to(self.values.dtype)
            return SparseProduct.apply(inputs_t, self.values, self.bias, structure)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # The result is the transposed view of a (features, batch) tensor: elementwise layers keep that
        # layout, so the next sparse layer's transpose (and this one's backward) costs nothing.
        outputs_t = self.product_t(inputs.reshape(-1, self.in_features).t())
        return outputs_t.t().reshape(*inputs.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kept={self.kept.numel()}, "
                f"bias={self.bias is not None}")


class ReluSparseLinear(SparseLinear):
    """ReLU, then a sparse linear layer: the ReLU applied to the inputs the product reads, after gathering
    them. The sparse engine puts it in place of a ReLU and the sparse layer after it (`ReluMovedOn` marks
    where the ReLU was), so at width 2^15 the ReLU and its gradient pass over the few hidden units the
    output layer reads instead of all of them. Stored exactly as a `SparseLinear`."""

    def read_inputs(self, inputs_t: torch.Tensor, structure: SparseStructure) -> torch.Tensor:
        return torch.relu(super().read_inputs(inputs_t, structure))

    def weight_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the weights multiply, given the layer's inputs: their ReLU."""
        return torch.relu(inputs)


class ReluMovedOn(nn.Identity):
    """Where a ReLU was, once the `ReluSparseLinear` after it applies it."""
