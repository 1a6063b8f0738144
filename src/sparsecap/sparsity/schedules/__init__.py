"""Sparsity schedules: one class per schedule in a registry (`create_schedule`), beside the torch-free
names and settings of `sparsecap.sparsity.schedule_config`. Importing this package registers them all."""

from sparsecap.sparsity.schedules import fixed, imp, moving  # noqa: F401 - each registers its schedules
from sparsecap.sparsity.schedules.base import Fit, ScheduleSettings, SparsitySchedule
from sparsecap.sparsity.schedules.registry import create_schedule, register_schedule, registered_schedules

__all__ = ["Fit", "ScheduleSettings", "SparsitySchedule", "create_schedule", "register_schedule",
           "registered_schedules"]
