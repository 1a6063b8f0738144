"""Studies: specs expanded into trials, run resumably into a results database."""

from sparsecap.lazy_imports import lazy_package

__getattr__, __all__ = lazy_package(__name__, {
    "database": ["StudyDatabase", "TrialRecord"],
    "executor_choice": ["Executor"],
    "runner": ["StudyProgress", "run_study"],
    "spec": ["Family", "Schedule", "StudySpec", "list_presets", "load_spec", "parse_spec", "preset_text"],
    "trials": ["Trial", "expand"],
})
