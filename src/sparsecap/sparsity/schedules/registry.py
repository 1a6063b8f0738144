"""The schedules by name (as timm's model registry): each schedule class registers itself where it is defined."""

from __future__ import annotations

from sparsecap.sparsity.schedule_config import Schedule
from sparsecap.sparsity.schedules.base import ScheduleSettings, SparsitySchedule

_SCHEDULES: dict[Schedule, type[SparsitySchedule]] = {}


def register_schedule(schedule: type[SparsitySchedule]) -> type[SparsitySchedule]:
    """Class decorator: make `schedule` available under its `name`."""
    if schedule.name in _SCHEDULES:
        raise ValueError(f"schedule {schedule.name.value!r} is registered twice")
    _SCHEDULES[schedule.name] = schedule
    return schedule


def registered_schedules() -> list[Schedule]:
    return list(_SCHEDULES)


def create_schedule(name: Schedule | str, settings: ScheduleSettings) -> SparsitySchedule:
    """The schedule called `name`, for a study's `settings`."""
    try:
        return _SCHEDULES[Schedule(name)](settings)
    except (KeyError, ValueError):
        valid = ", ".join(schedule.value for schedule in _SCHEDULES)
        raise ValueError(f"unknown schedule {getattr(name, 'value', name)!r}; valid: {valid}") from None
