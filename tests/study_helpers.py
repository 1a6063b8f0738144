"""Small study specs shared by the study and CLI tests."""

from pathlib import Path

TINY_SPEC = """
name = "tiny"
architectures = ["mlp"]
datasets = ["digits"]
widths = [16, 32]
schedules = ["static", "posttrain"]
seeds = [0, 1]

[training]
max_epochs = 2
batch_size = 64

[weight_noise]
sigmas = [0.0, 0.5]
draws = 2
"""


def write_spec(directory: Path, text: str = TINY_SPEC, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path
