"""What every corruption does to the probe images at every severity, summed up in three numbers, against
the record in corruption_fingerprints.json.

The other corruption tests check contracts and properties; a wrong value in a parameter table kept them
green. The record pins the tables, the order of operations and the warps of the spec
(../shared/specs/corruptions.md), which the code was checked against on 2026-12-06. The summaries (mean
output, mean absolute change, share of values changed) are compared to within a few hundredths of a grey
level, so a newer numpy, SciPy, scikit-image or OpenCV rounding a pixel otherwise passes while a changed
parameter fails. After a deliberate change to a corruption, rewrite the record with
`python -m tests.test_corruption_fingerprints --write` and say why in the commit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from sparsecap.corruptions import Suite, get_corruption, list_corruptions
from tests.dataset_files import SHARED_DATA, real_data
from tests.test_corruptions import IMAGES, SUITES, pessimal_matrix, pessimal_matrix_file, seeded_pessimal_matrix

RECORD = Path(__file__).with_name("corruption_fingerprints.json")
FROST_PICTURES = SHARED_DATA / "frost"
"""The real frost pictures, in ../shared/data beside the repository (as in CI)."""
TOLERANCE = (0.02, 0.02, 0.0005)
"""Of the mean output and the mean absolute change (grey levels), and of the share of values changed."""


def fingerprint(suite: Suite, name: str, severity: int, pessimal_matrix: Path) -> list[float]:
    """Mean output, mean absolute change and share of values changed, corrupting the probe images with a
    generator seeded by the severity."""
    images = IMAGES[suite]
    corrupted = get_corruption(name, suite)(images, severity, np.random.default_rng(severity),
                                            frost_directory=FROST_PICTURES, pessimal_matrix=pessimal_matrix)
    change = np.abs(corrupted.astype(np.float64) - images)
    return [round(float(corrupted.mean()), 4), round(float(change.mean()), 4), round(float((change > 0).mean()), 5)]


def fingerprints(suite: Suite, pessimal_matrix: Path) -> dict[str, list[float]]:
    """Every corruption of the suite at each severity it distinguishes, keyed NAME-sSEVERITY."""
    return {f"{name}-s{severity}": fingerprint(suite, name, severity, pessimal_matrix)
            for name in list_corruptions(suite) for severity in get_corruption(name, suite).severities}


@pytest.mark.parametrize("suite", SUITES, ids=[suite.value for suite in SUITES])
def test_every_corruption_at_every_severity_does_what_was_recorded(suite, pessimal_matrix):
    real_data(FROST_PICTURES, "../shared/data/frost beside the repository (see its README.md)")
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))[suite.value]
    measured = fingerprints(suite, pessimal_matrix)
    assert measured.keys() == recorded.keys()
    differing = [f"{entry}: {measured[entry]}, recorded {recorded[entry]}" for entry in recorded
                 if any(abs(value - expected) > tolerance for value, expected, tolerance
                        in zip(measured[entry], recorded[entry], TOLERANCE, strict=True))]
    assert not differing, "\n".join(differing)


def test_the_record_tells_every_severity_of_a_graded_corruption_apart():
    """A record in which two severities summed up alike could not catch one severity's table value changed."""
    for suite, entries in json.loads(RECORD.read_text(encoding="utf-8")).items():
        for name in list_corruptions(suite):
            values = [entries[f"{name}-s{severity}"] for severity in get_corruption(name, suite).severities]
            assert len({tuple(value) for value in values}) == len(values), (suite, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite {RECORD.name} (else print the values)")
    with tempfile.TemporaryDirectory() as directory:
        matrix = pessimal_matrix_file(Path(directory) / "pessimal_noise_matrix", seeded_pessimal_matrix())
        record = {suite.value: fingerprints(suite, matrix) for suite in SUITES}
    suites = [f'  "{suite}": {{\n' + ",\n".join(f'    "{entry}": {json.dumps(values)}'
                                               for entry, values in entries.items()) + "\n  }"
              for suite, entries in record.items()]
    text = "{\n" + ",\n".join(suites) + "\n}\n"  # one line per entry: a rewrite's diff names what changed
    if parser.parse_args().write:
        RECORD.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
