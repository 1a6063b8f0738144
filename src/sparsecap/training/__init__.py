"""Training: SGD with momentum, the paper's schedules and stopping rules."""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "batch_norm": ["recompute_batch_norm_statistics"],
    "config": ["BatchNormStatistics", "LearningRateSchedule", "Precision", "TrainingConfig"],
    "precision": ["numeric_precision"],
    "trainer": ["TrainingResult", "to_pixels", "train"],
})
