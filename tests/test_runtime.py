"""The thread policy: one thread for small models, every core for large ones, an explicit count for all;
every trial records the count it ran with."""

import subprocess
import sys

import pytest

from sparsecap import runtime as runtime_module
from sparsecap.runtime import THREADED_FROM_MULTIPLY_ACCUMULATES, Runtime, physical_cores, prefer_passive_waiting
from sparsecap.studies import StudyDatabase, load_spec, run_study
from tests.study_helpers import write_spec


def test_small_models_get_one_thread_and_large_ones_every_core():
    runtime = Runtime(cores=4)
    assert runtime.threads_for(THREADED_FROM_MULTIPLY_ACCUMULATES - 1) == 1
    assert runtime.threads_for(THREADED_FROM_MULTIPLY_ACCUMULATES) == 4


def test_an_explicit_thread_count_holds_for_every_model():
    assert {Runtime(threads=3, cores=2).threads_for(macs) for macs in (1, 10**9)} == {3}


def test_a_trial_process_uses_its_share_of_the_cores_and_one_device():
    assert Runtime(cores=16).for_process(2, "cpu").threads_for(10**9) == 2
    assert Runtime(cores=16).for_process(0, "cpu").threads_for(10**9) == 1  # a fractional CPU still runs on one
    assert Runtime(threads=5, cores=16).for_process(2, "cpu").threads_for(10**9) == 5
    worker = Runtime(device="cuda", devices=("cuda:0", "cuda:1")).for_process(8, "cuda:1")
    assert (worker.device, worker.devices, worker.workers) == ("cuda:1", ("cuda:1",), 1)


def test_auto_workers_are_one_per_gpu_on_cuda():
    assert Runtime(device="cuda", devices=("cuda:0", "cuda:1", "cuda:2")).workers_for(10) == 3
    assert Runtime(device="cuda:1", devices=("cuda:1",)).workers_for(10) == 1


def test_auto_workers_count_each_physical_core_once_on_a_cpu(tmp_path, monkeypatch):
    """4 CPUs that are 2 cores' hyper-threads (Linux topology): 2 workers, as two trials on one core's threads
    share its arithmetic units; without topology, every CPU counts."""
    for cpu, siblings in ((0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")):
        topology = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(siblings + "\n")
    monkeypatch.setattr(runtime_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(runtime_module, "Path", lambda name: tmp_path / name.lstrip("/"))
    assert physical_cores() == 2 and Runtime(cores=4).workers_for(10) == 2
    monkeypatch.setattr(runtime_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})  # cpu4: no topology
    assert physical_cores() == 5


@pytest.mark.parametrize(("before", "after"), [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")])
def test_idle_threads_sleep_unless_the_user_chose_otherwise(before, after):
    environment = dict(before)
    prefer_passive_waiting(environment)
    assert environment["OMP_WAIT_POLICY"] == after


def test_every_trial_records_its_thread_count(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]", "schedules=['static']"])
    run_study(spec, tmp_path / "policy")
    run_study(spec, tmp_path / "two", runtime=Runtime(threads=2))
    assert {row["threads"] for row in StudyDatabase(tmp_path / "policy").rows("trials")} == {1}  # small models
    assert {row["threads"] for row in StudyDatabase(tmp_path / "two").rows("trials")} == {2}


_PAGE_FAULTS_PER_ROUND = """
import resource, sys, torch
from sparsecap.runtime import reuse_freed_memory

def faults_per_round(rounds=6):
    # a training step's pattern: several 16 MiB activations live at once, all freed at the step's end
    for round_ in range(rounds + 1):
        if round_ == 1:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tensors = [torch.empty(2**22).fill_(1.0) for _ in range(5)]
        del tensors
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds

default = faults_per_round()
if not reuse_freed_memory():
    sys.exit(3)
print(default, faults_per_round())
"""


def test_freed_activations_are_reused_without_page_faults():
    done = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_PER_ROUND], capture_output=True, text=True, check=False)
    if done.returncode == 3:
        pytest.skip("no glibc mallopt here")
    assert done.returncode == 0, done.stderr
    default, reused = map(float, done.stdout.split())
    assert default > 4096  # glibc returned at least one 16 MiB tensor's pages (4,096) to the OS each round
    assert reused < 50
