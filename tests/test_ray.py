"""The Ray executor against a real local Ray instance (2 CPUs): same results as the local executor, and
faults (a killed worker, a killed driver) neither lose nor duplicate trials."""

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sparsecap.data import load_dataset
from sparsecap.runtime import Runtime
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.errors import SparsecapError
from sparsecap.studies import ray_address
from sparsecap.studies import runner as runner_module
from sparsecap.studies.progress import EpochReport, StudyProgressView
from sparsecap.studies.ray_address import (
    HTTP2_OPENING,
    Target,
    check_reachable,
    cluster_endpoint,
    connection_target,
    join_refused,
    recorded_cluster_file,
)
from sparsecap.studies.ray_executor import (
    PRIVATE_INSTANCE_CONFIG,
    EpochInbox,
    RayOptions,
    _collect,
    _open_inbox,
    _Sender,
    node_slots,
    run_on_ray,
    unplaceable,
)
from sparsecap.studies.runner import Executor
from sparsecap.studies.trials import expand
from tests.study_helpers import (
    SEEDS_TOGETHER_SPEC,
    TINY_SPEC,
    WatchedView,
    comparable_results,
    descendants,
    finished_trial_count,
    write_spec,
)

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

# Trials of a few seconds each, so a worker or the driver can be killed while one runs.
LONGER_SPEC = (
    TINY_SPEC.replace("max_epochs = 2", "max_epochs = 60\nstop_loss = 0.0")
    .replace("widths = [16, 32]", "widths = [128, 256]")
    .replace('schedules = ["static", "posttrain"]', 'schedules = ["static"]')
)
TRIAL_PROCESS_TITLE = "ray::sparsecap-trial"  # Ray names a worker's process after the task it runs


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _refused(tmp_path: Path, address: str, environment: dict[str, str] | None = None) -> str:
    """The error of `sparsecap run --executor ray --address ADDRESS`, which must refuse in one line (exit 2)."""
    result = subprocess.run([sys.executable, "-m", "sparsecap.cli", "run", str(write_spec(tmp_path)), "--out",
                             str(tmp_path / "out"), "--executor", "ray", "--address", address, "--no-progress"],
                            capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    return result.stderr


def _without_ray_address(ray_temporary: Path) -> dict[str, str]:
    """This environment without $RAY_ADDRESS, with Ray's temporary directory (where 'ray start' records its
    cluster for `--address auto`) the test's own."""
    return {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"} | {
        "RAY_TMPDIR": str(ray_temporary)}


def test_an_address_with_no_cluster_is_refused_in_one_line(tmp_path):
    """First in the module: `--address auto` finds the instance `ray_instance` starts, while it runs. Ray's
    temporary directory is the test's own, which records no cluster."""
    error = _refused(tmp_path, "auto", _without_ray_address(tmp_path))
    assert "error: --address auto: no Ray cluster to connect to (" in error
    assert "start one (ray start --head) or leave out --address" in error


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1:{port}", "no Ray cluster answers there ("),  # Ray alone would retry it for minutes
    ("localhost", "not a Ray address; valid: auto, or HOST:PORT"),
    ("10.0.0.5:http", "not a Ray address; valid: auto, or HOST:PORT"),
])
def test_an_address_no_cluster_can_answer_is_refused_in_one_line(tmp_path, address, reason):
    assert reason in _refused(tmp_path, address.format(port=_closed_port()))
    if "valid" in reason:
        assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize(("address", "endpoint"), [
    ("auto", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head.cluster:10001", ("head.cluster", 10001)),
    ("[::1]:6379", ("::1", 6379)),
])
def test_cluster_endpoint_reads_the_host_and_port_to_check(address, endpoint):
    assert cluster_endpoint(address, "--address") == endpoint


@pytest.mark.parametrize("address", ["", ":6379", "head", "head:0", "head:65536", "head:-1", "tcp://head:6379"])
def test_cluster_endpoint_refuses_what_is_no_address(address):
    with pytest.raises(SparsecapError, match="^RAY_ADDRESS: not a Ray address; valid: auto, or HOST:PORT"):
        cluster_endpoint(address, "RAY_ADDRESS")


@pytest.mark.parametrize("address", ["http://127.0.0.1:8265", "https://ray.example.org"])
def test_a_dashboard_address_is_refused_as_the_wrong_kind(address):
    """What 'ray job submit' takes, and $RAY_ADDRESS often holds for it: saying "unreachable" would mislead."""
    with pytest.raises(SparsecapError, match="^RAY_ADDRESS: a web address, as the Ray dashboard and 'ray job "
                                             "submit' take, not a cluster's; valid: auto, or HOST:PORT"):
        cluster_endpoint(address, "RAY_ADDRESS")


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1:{port}", "no Ray cluster answers there ("),
    ("http://127.0.0.1:8265", "a web address, as the Ray dashboard and 'ray job submit' take, not a cluster's"),
])
def test_auto_with_a_ray_address_no_cluster_answers_at_is_refused_in_one_line(tmp_path, address, reason):
    """`--address auto` connects where $RAY_ADDRESS says (as a cluster's job environment sets it, or a shell set
    up for 'ray job submit')."""
    address = address.format(port=_closed_port())
    error = _refused(tmp_path, "auto", {**os.environ, "RAY_ADDRESS": address})
    assert f"error: --address auto (RAY_ADDRESS={address}): {reason}" in error


@pytest.mark.parametrize("ray_address_variable", [None, "auto"])
def test_auto_with_a_recorded_cluster_that_has_stopped_is_refused_in_one_line(tmp_path, ray_address_variable):
    """'ray start' records its cluster for `--address auto`; one stopped without 'ray stop' (killed, or its
    '--block' process ended) leaves the record, and Ray retried that address for minutes. RAY_ADDRESS=auto is
    no address to Ray, which then goes to the record too."""
    recorded = f"127.0.0.1:{_closed_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(recorded)
    variable = {} if ray_address_variable is None else {"RAY_ADDRESS": ray_address_variable}
    error = _refused(tmp_path, "auto", _without_ray_address(tmp_path) | variable)
    record = tmp_path / "ray" / "ray_current_cluster"
    assert (f"error: --address auto (the cluster recorded in {record}: {recorded}): no Ray cluster answers there ("
            in error and "'ray stop' clears it" in error)


def test_a_trial_is_placed_on_one_node_so_the_clusters_sum_does_not_count():
    """Two 4-CPU nodes hold no 6-CPU trial, and a CPU node and a GPU node no trial asking for both; Ray would leave
    such a task pending for good."""
    nodes = [{"CPU": 4.0, "memory": 8 * 2**30}, {"CPU": 4.0, "GPU": 1.0}]
    assert unplaceable({"CPU": 4, "GPU": 1, "memory": 0}, nodes) is None
    assert unplaceable({"CPU": 6, "GPU": 0, "memory": 0}, nodes) == (
        ["CPU"], "each trial asks for 6 CPU ([resources]) but no node of the Ray cluster offers that (at most 4 CPU "
                 "on one node)")
    short, message = unplaceable({"CPU": 1, "GPU": 1, "memory": 2 * 2**30}, nodes)
    assert short == ["CPU", "GPU", "memory"] and message.endswith(
        "(at most 4 CPU, 1 GPU, 8 GiB of memory on one node)")
    assert unplaceable({"CPU": 1, "GPU": 0, "memory": 0}, []) is not None  # no node alive
    assert [node_slots(node, 2, 0) for node in nodes] == [2, 2]
    assert [node_slots(node, 6, 0) for node in nodes] == [0, 0]  # the summed 8 CPUs would hold one
    assert [node_slots(node, 1, 1) for node in nodes] == [0, 1]
    short, message = unplaceable({"CPU": 1, "GPU": 1, "memory": 0}, [{"CPU": 4.0}, {"GPU": 1.0}])
    assert short == ["CPU", "GPU"] and message.endswith("(at most 4 CPU, 1 GPU on one node)")  # not 0 memory


def test_a_node_holds_as_many_fractional_trials_as_its_resources_divide_into():
    """7 / 0.07 is 99.99999999999999 in floating point: a node of 7 CPUs (or GPUs) holds 100 trials of 0.07."""
    assert node_slots({"CPU": 7.0}, 0.07, 0) == 100
    assert node_slots({"CPU": 64.0, "GPU": 7.0}, 0.5, 0.07) == 100


@pytest.fixture
def web_server() -> Iterator[str]:
    """A real HTTP server on a free local port, as the dashboard or any other service there would be."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


NOT_RAY = re.escape("something answers there, but not a Ray cluster (no gRPC, which Ray's GCS speaks); check")


def test_a_server_that_is_not_rays_is_refused_where_ray_would_wait_for_minutes(web_server, monkeypatch):
    with pytest.raises(SparsecapError, match=f"^--address {web_server}: {NOT_RAY}"):
        check_reachable(web_server)
    monkeypatch.setenv("RAY_USE_TLS", "1")  # a TLS server stays silent to HTTP/2 in the clear: connecting suffices
    check_reachable(web_server)


def test_a_server_that_accepts_and_stays_silent_is_refused_once_the_wait_is_over(monkeypatch):
    monkeypatch.setattr(ray_address, "CONNECT_SECONDS", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nothing ever answers on it
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(SparsecapError, match=f"^--address {address}: {NOT_RAY}"):
            check_reachable(address)


def test_tls_as_ray_reads_it_checks_only_the_connection(web_server, monkeypatch):
    """Ray takes RAY_USE_TLS=true as well as 1: a TLS cluster must not be refused for staying silent in the clear."""
    monkeypatch.setenv("RAY_USE_TLS", "True")
    check_reachable(web_server)


def test_a_refused_join_names_the_likely_cause(monkeypatch, tmp_path):
    """The token hint is for an address given explicitly to a driver sending no token; `--address auto` that
    resolved to a server ($RAY_ADDRESS here) names that server, not "no Ray cluster"."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # records no cluster
    error = ConnectionError("Failed to connect")
    joined = "--address 10.0.0.5:6379: a Ray server answers there, but this driver could not join its cluster"
    assert join_refused("10.0.0.5:6379", error).startswith(f"{joined} (Failed to connect); if it uses token")
    assert "set RAY_AUTH_MODE=token here too" in join_refused("10.0.0.5:6379", error)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # set, but to no token: the hint stands
    assert "set RAY_AUTH_MODE=token here too" in join_refused("10.0.0.5:6379", error)
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert join_refused("auto", error).startswith("--address auto: no Ray cluster to connect to (Failed to connect)")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert join_refused("10.0.0.5:6379", error) == f"{joined} (Failed to connect)"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert join_refused("auto", error) == ("--address auto (RAY_ADDRESS=10.0.0.5:6379): a Ray server answers there, "
                                           "but this driver could not join its cluster (Failed to connect)")


def test_a_refused_join_of_the_recorded_cluster_names_it_without_the_token_hint(monkeypatch, tmp_path):
    """Ray sends its token to the cluster it finds recorded on this machine: the hint is for explicit addresses."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text("10.0.0.5:6379")
    assert join_refused("auto", ConnectionError("Failed to connect")) == (
        f"--address auto (the cluster recorded in {record}: 10.0.0.5:6379): a Ray server answers there, but this "
        f"driver could not join its cluster (Failed to connect)")


def test_auto_reads_the_cluster_record_where_and_as_ray_does(monkeypatch, tmp_path):
    """Ray's temporary directory is $RAY_TMPDIR, else $TMPDIR (Linux); it strips the record, and an empty one
    names no cluster."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))
    assert recorded_cluster_file() == tmp_path / "elsewhere" / "ray" / "ray_current_cluster"
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    record = recorded_cluster_file()
    assert record == tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text("10.0.0.5:6379\n")
    assert connection_target("auto").address == "10.0.0.5:6379"
    record.write_text("")
    assert connection_target("auto") == Target("auto", "--address auto")


def test_a_host_that_does_not_resolve_is_refused_in_one_line():
    with pytest.raises(SparsecapError, match=r"^--address nowhere\.invalid:6379: no Ray cluster answers there \("):
        check_reachable("nowhere.invalid:6379")  # .invalid never resolves (RFC 6761)


@contextlib.contextmanager
def _answering(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A real server on a free local port, whose first connection `answer` handles; its address."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def accept_one() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(len(HTTP2_OPENING))
                answer(connection)

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        yield f"127.0.0.1:{server.getsockname()[1]}"
        thread.join()


def _settings_in_two_pieces(connection: socket.socket) -> None:
    settings = bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))  # an empty SETTINGS frame, as a gRPC server opens with
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sendall(settings[:4])
    time.sleep(0.3)  # the client has read the first piece alone by now, on all but a very slow machine
    connection.sendall(settings[4:])


def _reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closing sends RST


def test_a_server_whose_settings_frame_comes_in_pieces_passes_the_check():
    """TCP may deliver a gRPC server's first frame in pieces: the check reads until it has the frame's header."""
    with _answering(_settings_in_two_pieces) as address:
        check_reachable(address)


def test_a_server_that_resets_the_connection_is_refused_in_one_line():
    with _answering(_reset) as address, pytest.raises(SparsecapError, match=f"^--address {address}: {NOT_RAY}"):
        check_reachable(address)


@pytest.fixture
def token_cluster(tmp_path) -> Iterator[tuple[str, Path]]:
    """A real Ray head with token authentication ('ray start --head --block'), with a token file of its own;
    its address and that file."""
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    port = _closed_port()
    # Its own temporary directory (short: Ray's socket paths must fit 107 bytes): a head records its address
    # in ray_current_cluster there, and one left in /tmp/ray would send every later `--address auto` to it.
    temporary = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temporary}"],
        env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while head.poll() is None:  # until its GCS listens (a dead head ends the wait, and the test fails)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", token
    finally:
        head.terminate()  # it stops the processes it started
        head.wait()
        shutil.rmtree(temporary, ignore_errors=True)


@pytest.mark.slow
def test_a_cluster_with_token_authentication_is_joined_with_its_token_and_without_it_says_why(tmp_path, token_cluster):
    """Ray sends no token to an address given explicitly, and such a cluster's refusal says only "Failed to
    connect": the error names the likely cause and the fix, which then works."""
    address, token = token_cluster
    spec = write_spec(tmp_path, TINY_SPEC.replace("seeds = [0, 1]", "seeds = [0]"))
    without = {name: value for name, value in os.environ.items() if not name.startswith("RAY_AUTH")}

    def run(out: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sparsecap.cli", "run", str(spec), "--out", str(tmp_path / out),
                               "--executor", "ray", "--address", address, "--no-progress"],
                              capture_output=True, text=True, env=environment, check=False)
    refused = run("refused", without)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: --address {address}: a Ray server answers there, but this driver could not join its cluster (" \
           in refused.stderr and "set RAY_AUTH_MODE=token here too" in refused.stderr
    joined = run("joined", {**without, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})
    assert joined.returncode == 0, joined.stderr
    assert finished_trial_count(tmp_path / "joined" / "results.sqlite") == 4


@pytest.fixture(scope="module")
def ray_instance():
    """One private local Ray instance for the module (starting one takes seconds), its workers at the priority
    of a run's own instance: at Ray's default they starve while other processes keep the cores busy."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             _system_config=PRIVATE_INSTANCE_CONFIG)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The tiny study run by the local executor."""
    directory = tmp_path_factory.mktemp("local")
    run_study(load_spec(str(write_spec(directory))), directory / "out")
    return directory / "out"


def _ray(spec, directory: Path, runtime: Runtime | None = None) -> object:
    return run_study(spec, directory, executor=Executor.RAY, runtime=runtime)


def test_a_ray_clusters_own_address_passes_the_check(ray_instance):
    check_reachable(ray.get_runtime_context().gcs_address)  # a real GCS answers HTTP/2's opening


def test_ray_gives_the_local_executors_database(tmp_path, ray_instance, local_reference):
    spec = load_spec(str(write_spec(tmp_path)))
    progress = _ray(spec, tmp_path / "ray")
    assert (progress.total, progress.ran, progress.already_finished, progress.failed) == (8, 8, 0, ())
    assert comparable_results(tmp_path / "ray") == comparable_results(local_reference)
    for row in StudyDatabase(tmp_path / "ray").rows("trials"):
        assert not Path(row["checkpoint"]).is_absolute() and (tmp_path / "ray" / row["checkpoint"]).is_file()


def test_seed_groups_run_as_one_task_each_with_the_local_results(tmp_path, ray_instance):
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)))
    run_study(spec, tmp_path / "local")
    progress = _ray(spec, tmp_path / "ray")
    assert (progress.ran, progress.failed) == (8, ())
    assert comparable_results(tmp_path / "ray") == comparable_results(tmp_path / "local")


def test_a_study_started_locally_is_finished_on_ray(tmp_path, monkeypatch, ray_instance, local_reference):
    spec = load_spec(str(write_spec(tmp_path)))
    calls = []

    def interrupted_after_three(*arguments, **keywords):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(*arguments, **keywords)

    original = runner_module.run_group_or_failures  # one trial per group: this spec does not stack seeds
    monkeypatch.setattr(runner_module, "run_group_or_failures", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "out", runtime=Runtime(workers=1))  # in this process, where the patch is
    monkeypatch.undo()
    before = StudyDatabase(tmp_path / "out").rows("trials")
    assert len(before) == 3

    progress = _ray(spec, tmp_path / "out")
    assert (progress.ran, progress.already_finished) == (5, 3)
    assert StudyDatabase(tmp_path / "out").rows("trials")[:3] == before  # not recomputed
    assert comparable_results(tmp_path / "out") == comparable_results(local_reference)


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _ray_killing_one_worker(spec, directory: Path, max_retries: int) -> tuple[object, list[int]]:
    """`_ray`, while SIGKILLing the worker process of one running trial (one of this process's Ray instance,
    nobody else's); the run's progress and the pids killed."""
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_running_trial() -> None:
        while not stop.is_set() and not killed:
            for pid in sorted(descendants(os.getpid())):
                if _title(pid).startswith(TRIAL_PROCESS_TITLE):
                    time.sleep(0.5)  # well inside the trial
                    if not _title(pid).startswith(TRIAL_PROCESS_TITLE):
                        break  # that trial has just ended: find another one
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_running_trial, daemon=True)
    killer.start()
    try:
        return _ray(spec, directory, Runtime(max_retries=max_retries)), killed
    finally:
        stop.set()
        killer.join()


def test_a_run_on_ray_shows_each_groups_epochs_before_its_records(tmp_path, ray_instance):
    """A log of a run on Ray says which epoch each running trial has reached, as the local executor's does. The
    inbox keeps a group's latest report only, but its last one (the trials are evaluated) always comes, and before
    the group's records, which end its line."""
    spec = load_spec(str(write_spec(tmp_path)), ["training.max_epochs=3", "training.stop_loss=0.0"])
    trials = expand(spec)
    records = []
    with WatchedView(len(trials)) as view:
        run_on_ray(spec, trials, {"digits": load_dataset("digits")}, tmp_path, records.append, view, RayOptions(),
                   Runtime(threads=1), show_progress=False)
    assert len(records) == len(trials) == 8
    for record in records:
        recorded_at = view.events.index((record.trial_id,))
        reports = [(at, event) for at, event in enumerate(view.events)
                   if isinstance(event, EpochReport) and event.group == record.trial_id]
        assert all(at < recorded_at and 1 <= report.epoch <= 3 for at, report in reports)
        assert (reports[-1][1].epoch, reports[-1][1].evaluating) == (3, True)


def test_the_inbox_keeps_each_groups_latest_report_until_taken():
    inbox = EpochInbox()
    first, second = (EpochReport("a", "a", 1, epoch, 3, 1.0) for epoch in (1, 2))
    other = EpochReport("b", "b", 1, 1, 3, 1.0)
    for report in (first, other, second):
        inbox.put(report)
    assert inbox.take() == [second, other] and inbox.take() == []


def test_a_task_sends_at_most_one_report_per_interval_but_always_the_last(ray_instance):
    inbox = _open_inbox(ray)
    send = _Sender(ray, inbox, interval=3600.0)
    reports = [EpochReport("a", "a", 1, epoch, 9, 1.0) for epoch in range(1, 10)]
    for report in reports:
        send(report)
    send.delivered()
    assert ray.get(inbox.take.remote()) == [reports[0]]  # the first: nothing sent within the hour before it
    last = dataclasses.replace(reports[-1], evaluating=True)
    send(last)
    send.delivered()
    assert ray.get(inbox.take.remote()) == [last]


def test_a_lost_inbox_costs_the_log_its_epochs_never_a_trial_or_the_run(ray_instance):
    inbox = _open_inbox(ray)
    ray.kill(inbox)
    send = _Sender(ray, inbox)
    send(EpochReport("a", "a", 1, 3, 3, 1.0, evaluating=True))
    send.delivered()
    assert _collect(ray, inbox) == []


def test_a_task_that_sent_no_report_waits_for_none(ray_instance):
    """A group that fails before its first epoch has sent nothing: its task returns its records all the same."""
    inbox = _open_inbox(ray)
    _Sender(ray, inbox).delivered()
    assert _collect(ray, inbox) == []


def test_a_killed_worker_has_its_trial_retried_and_every_trial_lands_once(tmp_path, ray_instance):
    """SIGKILL the worker process of a running trial (one of this process's Ray instance, nobody else's)."""
    spec = load_spec(str(write_spec(tmp_path, LONGER_SPEC)))
    progress, killed = _ray_killing_one_worker(spec, tmp_path / "out", max_retries=2)
    assert killed, "no running trial was found to kill"
    assert (progress.ran, progress.failed) == (4, ())
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert sorted(row["trial_id"] for row in rows) == sorted(
        f"mlp-digits-w{width}-d1-static-s{seed}" for width in (128, 256) for seed in (0, 1)
    )
    assert {row["status"] for row in rows} == {"finished"}
    assert {row["epochs"] for row in rows} == {60}


def test_a_run_interrupted_on_the_callers_instance_stops_its_trials(tmp_path, monkeypatch, ray_instance):
    """The caller's Ray instance outlives the run, so the run must cancel what it started: its trials, which
    would train for a million epochs, give their CPUs back."""
    endless = TINY_SPEC.replace("max_epochs = 2", "max_epochs = 1000000\nstop_loss = 0.0")
    spec = load_spec(str(write_spec(tmp_path, endless)))
    cpus = ray.cluster_resources()["CPU"]

    def interrupt_once_every_cpu_is_busy(view, running: int) -> None:
        if ray.available_resources().get("CPU", 0.0) == 0.0:
            raise KeyboardInterrupt

    monkeypatch.setattr(StudyProgressView, "set_running", interrupt_once_every_cpu_is_busy)
    with pytest.raises(KeyboardInterrupt):
        _ray(spec, tmp_path / "out")
    while ray.available_resources().get("CPU", 0.0) < cpus:  # bounded by the suite's per-test timeout
        time.sleep(0.05)
    assert StudyDatabase(tmp_path / "out").rows("trials") == []


def test_a_run_on_ray_counts_the_trials_of_the_groups_running_at_once(tmp_path, monkeypatch, ray_instance):
    """Two CPUs hold two one-CPU tasks: with seeds together, two groups of two seeds, so four trials of the eight."""
    spec = load_spec(str(write_spec(tmp_path, SEEDS_TOGETHER_SPEC)))
    running: list[int] = []

    def interrupt_once_counted(view, count: int) -> None:
        running.append(count)
        raise KeyboardInterrupt

    monkeypatch.setattr(StudyProgressView, "set_running", interrupt_once_counted)
    cpus = ray.cluster_resources()["CPU"]
    with pytest.raises(KeyboardInterrupt):
        _ray(spec, tmp_path / "out")
    while ray.available_resources().get("CPU", 0.0) < cpus:  # its tasks end (bounded by the per-test timeout)
        time.sleep(0.05)
    assert running == [4]


def _niceness_of_ray_workers(pids: set[int]) -> set[int]:
    """The niceness of those of `pids` that are Ray worker processes (titled `ray::...`) and still run."""
    niceness = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                niceness.add(os.getpriority(os.PRIO_PROCESS, pid))
        except OSError:  # it ended meanwhile
            continue
    return niceness


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_a_killed_driver_is_resumed_without_recomputing(tmp_path, ray_instance, stop, status):
    """SIGKILL runs nothing in the driver; SIGTERM (a scheduler's limit) must still be the command's, not
    Ray's: the run says it was terminated and exits 143."""
    spec_path = write_spec(tmp_path, LONGER_SPEC)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sparsecap.cli", "run", str(spec_path), "--out", str(out), "--executor", "ray",
               "--num-cpus", "2", "--no-report", "--no-progress"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ray_processes: set[int] = set()
    try:
        while finished_trial_count(out / "results.sqlite") < 1:  # however slow the machine
            assert driver.poll() is None, driver.communicate()
            ray_processes |= descendants(driver.pid)
            time.sleep(0.05)
        ray_processes |= descendants(driver.pid)
        assert _niceness_of_ray_workers(ray_processes) == {0}  # the run's instance: not below other processes
        driver.send_signal(stop)
        _, err = driver.communicate()
    finally:
        driver.kill()
        for pid in ray_processes:  # the driver's own Ray instance: some of its helpers outlive a SIGKILL
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert driver.returncode == status
    assert stop == signal.SIGKILL or "terminated: finished trials are saved" in err
    survivors = StudyDatabase(out).rows("trials")
    assert 1 <= len(survivors) < 4

    progress = _ray(load_spec(str(spec_path)), out)
    assert (progress.ran, progress.already_finished) == (4 - len(survivors), len(survivors))
    rows = StudyDatabase(out).rows("trials")
    assert len(rows) == 4 and len({row["trial_id"] for row in rows}) == 4
    assert rows[: len(survivors)] == survivors  # earlier trials untouched, not recomputed


@pytest.mark.parametrize(("setting", "message"), [
    ("resources.num_gpus=1", r"each trial asks for 1 GPU \(\[resources\]\) but no node of the Ray cluster offers "
                             r"that \(at most 0 GPU on one node\): lower"),
    ("resources.memory_gib=100000", r"each trial asks for 100000 GiB of memory \(\[resources\]\) but no node of the "
                                    r"Ray cluster offers that \(at most [0-9.]+ GiB of memory on one node\): lower "
                                    r"\[resources\]$"),
])
def test_a_trial_no_node_can_hold_is_refused_on_a_local_instance(tmp_path, ray_instance, setting, message):
    spec = load_spec(str(write_spec(tmp_path)), [setting])
    with pytest.raises(SparsecapError, match=message):
        _ray(spec, tmp_path / "out")


def test_a_runs_own_instance_has_the_cpus_asked_for_and_is_shut_down_however_the_run_ends(tmp_path):
    """`num_cpus` (--num-cpus) sizes the run's own instance: one CPU holds no trial asking for two, and the refusal
    says what to do; the instance is shut down even so. In a process of its own: this one's Ray is the module's."""
    spec = write_spec(tmp_path, TINY_SPEC + "\n[resources]\nnum_cpus = 2\n")
    script = f"""
import ray
from sparsecap.errors import SparsecapError
from sparsecap.studies import load_spec, run_study
from sparsecap.studies.ray_executor import RayOptions
from sparsecap.studies.runner import Executor
try:
    run_study(load_spec({str(spec)!r}), {str(tmp_path / "out")!r}, executor=Executor.RAY,
              ray_options=RayOptions(num_cpus=1))
except SparsecapError as error:
    print("refused:", error)
print("still initialized:", ray.is_initialized())
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert ("refused: each trial asks for 2 CPU ([resources]) but no node of the Ray cluster offers that (at most 1 "
            "CPU on one node): lower [resources] or give the local instance more (--num-cpus)\n") in output
    assert output.endswith("still initialized: False\n")


def test_a_trial_no_node_can_hold_is_only_warned_of_on_a_cluster(tmp_path, monkeypatch, capsys, ray_instance):
    """A cluster may grow, so its run warns and waits where a local instance's is refused (the module's instance
    stands in for the cluster: a run on the caller's Ray instance leaves it running)."""
    spec = load_spec(str(write_spec(tmp_path)), ["resources.num_gpus=1"])

    def interrupt_while_waiting(view, running: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(StudyProgressView, "set_running", interrupt_while_waiting)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "out", executor=Executor.RAY, ray_options=RayOptions(address="auto"))
    assert ("warning: each trial asks for 1 GPU ([resources]) but no node of the Ray cluster offers that (at most 0 "
            "GPU on one node); trials wait until such a node joins") in capsys.readouterr().err
    assert ray.is_initialized() and StudyDatabase(tmp_path / "out").rows("trials") == []


def test_a_run_with_nothing_pending_neither_starts_nor_checks_ray(tmp_path):
    """A rerun of a finished study on Ray does nothing, even where no node could hold its trials (as here)."""
    spec = load_spec(str(write_spec(tmp_path)), ["resources.num_gpus=1"])
    records = []
    with WatchedView(0) as view:
        run_on_ray(spec, [], {}, tmp_path, records.append, view, RayOptions(), Runtime(), show_progress=False)
    assert records == [] and view.events == []


def test_a_raising_trial_is_recorded_failed_on_ray_and_retried_by_a_rerun(tmp_path, ray_instance):
    """A directory where each checkpoint file should go: every trial raises when saving it, on the worker."""
    spec = load_spec(str(write_spec(tmp_path)))
    in_the_way = [tmp_path / "out" / "checkpoints" / f"{trial.trial_id}.safetensors" for trial in expand(spec)]
    for path in in_the_way:
        path.mkdir(parents=True)
    progress = run_study(spec, tmp_path / "out", executor=Executor.RAY)
    assert progress.ran == 8 and len(progress.failed) == 8
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert {row["status"] for row in rows} == {"failed"}
    assert all("Error" in row["error"] and "save_checkpoint" in row["error"] for row in rows)

    for path in in_the_way:
        path.rmdir()
    progress = _ray(spec, tmp_path / "out")
    assert (progress.ran, progress.already_finished, progress.failed) == (8, 0, ())
    rows = StudyDatabase(tmp_path / "out").rows("trials")
    assert len(rows) == 8 and {row["status"] for row in rows} == {"finished"}


def test_a_worker_that_dies_past_its_retries_fails_only_its_trial(tmp_path, ray_instance):
    """With no retries, the killed trial is recorded failed (Ray's error, said as such) and the others finish."""
    spec = load_spec(str(write_spec(tmp_path, LONGER_SPEC)))
    progress, killed = _ray_killing_one_worker(spec, tmp_path / "out", max_retries=0)
    assert killed, "no running trial was found to kill"
    assert (progress.ran, len(progress.failed)) == (4, 1)
    rows = {row["trial_id"]: row for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert len(rows) == 4 and rows[progress.failed[0]]["status"] == "failed"
    assert "Error (after at most 0 retries): " in rows[progress.failed[0]]["error"]
    assert {row["status"] for trial_id, row in rows.items() if trial_id not in progress.failed} == {"finished"}


def test_a_seed_group_whose_worker_dies_past_its_retries_fails_each_of_its_trials(tmp_path, ray_instance):
    """Seeds trained together die together: each of the group's trials is recorded failed, under its own id."""
    together = LONGER_SPEC.replace("[training]\n", "[training]\nseeds_together = true\n")
    spec = load_spec(str(write_spec(tmp_path, together)))
    progress, killed = _ray_killing_one_worker(spec, tmp_path / "out", max_retries=0)
    assert killed, "no running trial was found to kill"
    assert progress.ran == 4 and len(set(progress.failed)) == 2
    rows = {row["trial_id"]: row for row in StudyDatabase(tmp_path / "out").rows("trials")}
    assert len(rows) == 4 and {rows[trial_id]["status"] for trial_id in progress.failed} == {"failed"}
    assert {trial_id.rsplit("-s", 1)[0] for trial_id in progress.failed} == {progress.failed[0].rsplit("-s", 1)[0]}


def test_a_trial_reserves_the_cpus_and_memory_its_resources_state(tmp_path, monkeypatch, ray_instance):
    """[resources] are per trial: two CPUs and a quarter GiB, so on this 2-CPU instance one trial runs at a time
    and holds exactly that memory (Ray counts it in bytes)."""
    endless = TINY_SPEC.replace("max_epochs = 2", "max_epochs = 1000000\nstop_loss = 0.0")
    spec = load_spec(str(write_spec(tmp_path, endless)), ["resources.num_cpus=2", "resources.memory_gib=0.25"])
    total = ray.cluster_resources()
    held: list[dict[str, float]] = []

    def interrupt_once_every_cpu_is_busy(view, running: int) -> None:
        if (available := ray.available_resources()).get("CPU", 0.0) == 0.0:
            held.append(available)
            raise KeyboardInterrupt

    monkeypatch.setattr(StudyProgressView, "set_running", interrupt_once_every_cpu_is_busy)
    with pytest.raises(KeyboardInterrupt):
        _ray(spec, tmp_path / "out")
    while ray.available_resources().get("CPU", 0.0) < total["CPU"]:  # bounded by the suite's per-test timeout
        time.sleep(0.05)
    assert total["memory"] - held[0]["memory"] == pytest.approx(0.25 * 1024**3)


def test_a_trial_trains_on_no_more_threads_than_the_whole_cpus_it_reserves(tmp_path, ray_instance):
    """A trial reserving 1.5 CPUs has one core of its own: a model big enough for every core gets one thread."""
    wide = TINY_SPEC.replace("widths = [16, 32]", "widths = [2048]").replace("seeds = [0, 1]", "seeds = [0]")
    spec = load_spec(str(write_spec(tmp_path, wide)), ["resources.num_cpus=1.5", "training.max_epochs=1",
                                                       'schedules=["static"]'])
    assert _ray(spec, tmp_path / "out").failed == ()
    assert [row["threads"] for row in StudyDatabase(tmp_path / "out").rows("trials")] == [1]


def test_a_relative_study_directory_is_where_workers_write_checkpoints(tmp_path, monkeypatch, ray_instance):
    """Workers do not run in the driver's working directory: `--out out` must still put checkpoints there."""
    monkeypatch.chdir(tmp_path)
    spec = load_spec(str(write_spec(tmp_path, TINY_SPEC.replace("seeds = [0, 1]", "seeds = [0]"))))
    progress = _ray(spec, Path("out"))
    assert (progress.ran, progress.failed) == (4, ())
    for row in StudyDatabase(tmp_path / "out").rows("trials"):
        assert (tmp_path / "out" / row["checkpoint"]).is_file()
