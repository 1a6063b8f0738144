#!/usr/bin/env bash
# What is left of issue 12's GPU measurements, as one command for a lent GPU machine (docs/performance.md):
# part (e), the options that might meet the two targets CUDA graphs left missed, and part (f), the CNN presets
# trained to their stopping rule on MNIST. A lent machine gives a session 15 minutes, its start included, and
# 10 minutes a command, so the parts get fixed shares: (e) at most 4 minutes, (f) 4 minutes of training.
#
#   benchmarks/gpu_session.sh prepare   # here: the wheels that machine lacks, and a link to ../shared/data
#   # then, through the device tool: carry [".whl", ".device-data/mnist"], timeout_s 600, command
#   # "bash benchmarks/gpu_session.sh measure"; the output is also in $OUT/gpu-session.log
set -uo pipefail
cd "$(dirname "$0")/.."

MISSING_THERE=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
# The GPU image has torch and every other dependency (the device tool's package list), not pydantic.

case "${1:-}" in
  prepare)
    mkdir -p .git/info
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.device-data' .git/info/exclude 2>/dev/null || echo '/.device-data' >> .git/info/exclude
    ln -sfn "$(cd .. && pwd)/shared/data" .device-data
    test -f .device-data/mnist/train-images-idx3-ubyte.gz || { echo "error: no MNIST in ../shared/data/mnist" >&2; exit 1; }
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${MISSING_THERE[@]}"
    ls .whl
    ;;
  measure)
    log="${OUT:-/tmp}/gpu-session.log"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "error: the carried wheels did not install; run '$0 prepare' here and carry .whl" >&2; exit 1; }
    export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
    {
      date -u; uptime; git log --oneline -1 2>/dev/null
      timeout 240 python3 benchmarks/gpu.py --part options --steps 12
      echo "part (e) exit status $?"
      python3 benchmarks/gpu.py --part stopping --data-root .device-data --stopping-budget 240
      echo "part (f) exit status $?"
      date -u
    } 2>&1 | tee "$log"
    ;;
  *)
    echo "usage: $0 prepare|measure (prepare here, measure on the GPU machine; see the comment at the top)" >&2
    exit 2
    ;;
esac
