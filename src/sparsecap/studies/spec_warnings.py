"""What in a valid spec will not do what it seems to ask: said before a run starts, never refused.

Each is a setting that is legal but changes nothing (a table left off, severities MNIST-C ignores, [dynamic]
settings no schedule reads) or a grid that cannot answer the study's question (no model masked, a base
outside the grid). Pure: the command line writes them.
"""

from __future__ import annotations

from sparsecap.models import architecture_family
from sparsecap.sparsity.schedule_config import DYNAMIC_SCHEDULES
from sparsecap.studies.spec import StudySpec


def spec_warnings(spec: StudySpec) -> list[str]:
    """Each warning of `spec`, as one sentence that says what to change."""
    warnings = []
    for architecture, base in spec.unmasked_bases().items():
        family_base = architecture_family(architecture).base_width
        smaller = family_base if family_base < base.width else max(1, base.width // 2)
        warnings.append(f"every {architecture} model of {spec.name!r} is its own dense base (width {base.width}, "
                        f"depth {base.depth}), so nothing is masked and no model is sparse; hold them to a smaller "
                        f"model's weight count with base_width (e.g. --set base_width={smaller})")
    for architecture, base in spec.bases_outside_the_grid().items():
        warnings.append(f"the {architecture} base of {spec.name!r} (width {base.width}, depth {base.depth}) is no "
                        f"model of the grid, so every claim but c6 (which needs none) lacks its dense base point and "
                        f"will be inconclusive; to measure it, make the base one of the grid's models")
    if spec.ignores_severities():
        warnings.append(f"[corruptions] severities = {spec.corruptions.severities} changes nothing in "
                        f"{spec.name!r}: it sets CIFAR-C's severities, and MNIST-C measures each corruption at its "
                        f"published severity (1 for the extras, which have none)")
    warnings += [f"[{table}] has settings but is off, so {spec.name!r} does not measure it; add "
                 f"--set {table}.enabled=true to measure it" for table in spec.ignored_tables()]
    if spec.ignores_dynamic():
        configured = ", ".join(sorted(schedule.value for schedule in DYNAMIC_SCHEDULES))
        warnings.append(f"[dynamic] has settings, but none of the schedules of {spec.name!r} reads them; they "
                        f"configure {configured}: add one to schedules to use them")
    return warnings
