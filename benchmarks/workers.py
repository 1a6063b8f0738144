"""A whole study's wall time with one worker process against the default, one per core (issue 12's target: at
least 1.6x on 2 cores for the quick study).

    python benchmarks/workers.py                  # the quick study, each setting twice (about 8 minutes on 2 cores)
    python benchmarks/workers.py --repeat 3 --preset quick

Each run is the command a user types, `sparsecap run PRESET --no-report --no-progress --workers W`, into a
fresh directory, timed from start to exit: imports, data loading, starting workers, training, evaluation and
the database included. Settings alternate (1, auto, 1, auto, ...), so a change in the machine's load falls on
both; the ratio is of the fastest run of each, measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run_seconds(preset: str, workers: str, directory: Path) -> float:
    command = [sys.executable, "-m", "sparsecap.cli", "run", preset, "--no-report", "--no-progress",
               "--workers", workers, "--out", str(directory)]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    taken = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr}")
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting (default 2)")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"`sparsecap run {arguments.preset}`, each setting {arguments.repeat} times, alternating")
    seconds: dict[str, list[float]] = {"1": [], "auto": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(arguments.repeat):
            for workers in seconds:
                taken = _run_seconds(arguments.preset, workers, Path(scratch) / f"{workers}-{repeat}")
                seconds[workers].append(taken)
                print(f"  --workers {workers:>4}: {taken:6.2f} s", flush=True)
    one, auto = min(seconds["1"]), min(seconds["auto"])
    print(f"fastest: --workers 1 {one:.2f} s, --workers auto {auto:.2f} s: {one / auto:.2f}x (target: at least 1.6x)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
