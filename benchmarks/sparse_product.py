"""The sparse engine's product kernel: an embedding bag per row against ``torch.addmm`` on a CSR matrix.

    python benchmarks/sparse_product.py                 # one thread, then torch's (under a minute on 2 cores)

`SparseProduct` computes ``W X`` for a CSR W and a dense (features, batch) X, forward and for the input
gradient (with Wᵀ). Both kernels run here on the structures of the width-2^15 MLP of paper-mlp-mnist
(101,632 kept weights, uniform): the whole network's layers, and the layers a study trains and evaluates
once the hidden units no layer reads are left out (`sparsecap.sparsity.unread_units`), at the training batch
(128) and at the batch five weight-noise draws are evaluated in side by side. Each time is the fastest of
several repeats, in this one process, alternating the kernels; the last column is CSR's time over the
embedding bag's, so above 1 means the embedding bag (what `_product` uses) is faster.
"""

from __future__ import annotations

import argparse
import math
import os

import torch

from sparse_engine import fastest_ms  # this folder's benchmark: the script's own directory is on the path
from sparsecap.data import DatasetName, dataset_info
from sparsecap.devices import cpu_name
from sparsecap.models import ModelConfig, create_model
from sparsecap.robustness.evaluation import evaluation_batch_size
from sparsecap.runtime import reuse_freed_memory
from sparsecap.sparsity import Allocation, SparseLinear, masked_layers, set_engine, sparse_model_at_init
from sparsecap.sparsity.side_by_side import side_by_side
from sparsecap.sparsity.sparse_linear import _csr, _product
from sparsecap.sparsity.unread_units import without_unread_units

CAPACITY = 101_632


def _csr_product(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """The kernel `_product` replaced: ``addmm`` on the CSR matrix, at beta 0 so it writes its output once."""
    result = dense.new_empty(crow.numel() - 1, dense.shape[1])
    matrix = _csr(crow, col, values, (crow.numel() - 1, dense.shape[0]))
    return torch.addmm(result, matrix, dense, beta=0.0, out=result)


def _cases(model: torch.nn.Module, label: str, batch: int) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """(name, (crow, col, values, dense)) for each layer's forward product and, but the first's, its Wᵀ."""
    cases = []
    for index, (name, layer) in enumerate(masked_layers(model)):
        assert isinstance(layer, SparseLinear)
        structure = layer.structure()  # the layer's own, cached: W's CSR whether or not its bias folds in
        rows, columns = structure.shape
        values = layer.values.detach()
        cases.append((f"{label}: {name.split('.')[-1]} W ({rows}x{columns}, {values.numel()} kept), batch {batch}",
                      (structure.crow, structure.col, values, torch.randn(columns, batch))))
        if index:
            cases.append((f"{label}: {name.split('.')[-1]} W^T, batch {batch}",
                          (structure.crow_t, structure.col_t, values[structure.permutation_t], torch.randn(rows, batch))))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="timings of each kernel per case (default 30)")
    arguments = parser.parse_args()
    reuse_freed_memory()
    info = dataset_info(DatasetName.MNIST)
    model = create_model(ModelConfig("mlp", 32768, 1), info)
    sparse_model_at_init(model, CAPACITY, Allocation.UNIFORM, torch.Generator().manual_seed(0),
                         torch.Generator().manual_seed(1))
    model = set_engine(model, "sparse")
    narrowed = without_unread_units(model)
    draws = side_by_side([narrowed] * 5)
    cases = (_cases(model, "network", 128) + _cases(narrowed, "trained", 128)
             + _cases(draws, "5 draws", evaluation_batch_size(draws, torch.device("cpu"))))
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        print(f"\n{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread(s), "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':<72} {'csr ms':>8} {'bag ms':>8} {'csr/bag':>8}")
        for name, operands in cases:
            torch.testing.assert_close(_product(*operands), _csr_product(*operands))
            csr = bag = math.inf
            for _ in range(3):
                csr = min(csr, fastest_ms(lambda: _csr_product(*operands), max(1, arguments.repeat // 3)))
                bag = min(bag, fastest_ms(lambda: _product(*operands), max(1, arguments.repeat // 3)))
            print(f"{name:<72} {csr:8.3f} {bag:8.3f} {csr / bag:8.2f}")
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
