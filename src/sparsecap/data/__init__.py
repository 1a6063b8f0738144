"""Dataset layer: find dataset files on disk (or download them on request) and load them into memory as tensors.

Images are uint8 (N, C, H, W) and labels int64 (N,); normalisation is left to the consumer, using
`DatasetInfo.mean` / `std`. Search order and layouts are documented in `sparsecap.data.locate`.
"""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "loading": ["list_availability", "load_dataset"],
    "locate": ["search_roots"],
    "registry": ["DatasetAvailability", "DatasetInfo", "DatasetName", "ImageDataset", "dataset_info",
                 "parse_dataset_name"],
})
