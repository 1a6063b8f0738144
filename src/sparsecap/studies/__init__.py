"""Studies: specs expanded into trials, run resumably into a results database."""

from sparsecap.studies.database import StudyDatabase, TrialRecord
from sparsecap.studies.runner import Executor, StudyProgress, run_study
from sparsecap.studies.spec import Family, Schedule, StudySpec, list_presets, load_spec, parse_spec
from sparsecap.studies.trials import Trial, expand

__all__ = [
    "Executor",
    "Family",
    "Schedule",
    "StudyDatabase",
    "StudyProgress",
    "StudySpec",
    "Trial",
    "TrialRecord",
    "expand",
    "list_presets",
    "load_spec",
    "parse_spec",
    "run_study",
]
