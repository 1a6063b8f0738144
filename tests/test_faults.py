"""Faults a study directory meets in real use: damaged checkpoints are noticed and trained again; a
damaged, empty or unreadable database and an unwritable directory are refused with a plain message
(exit 2, no traceback) and left exactly as they were."""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecap.cli import main
from sparsecap.data import load_dataset
from sparsecap.errors import StudyDirectoryError
from sparsecap.studies import StudyDatabase, load_spec, run_study
from sparsecap.studies import runner as runner_module
from sparsecap.studies.execute import base_nonzero, failed_record
from sparsecap.studies.trials import expand
from tests.study_helpers import TINY_SPEC, comparable_results, write_spec


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Path:
    """The tiny study (8 trials), run once; tests work on copies."""
    root = tmp_path_factory.mktemp("finished")
    run_study(load_spec(str(write_spec(root))), root / "out")
    return root


def _copy(finished_study: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(finished_study, tmp_path / "study")
    return tmp_path / "study" / "spec.toml", tmp_path / "study" / "out"


def _run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(directory: Path) -> dict[str, str]:
    """Every file below `directory` with its SHA-256: what 'nothing was changed' compares."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_damaged_checkpoints_are_named_by_the_report_and_trained_again_on_resume(finished_study, tmp_path, capsys):
    spec, out = _copy(finished_study, tmp_path)
    before = comparable_results(out)
    rows = {row["trial_id"]: row for row in StudyDatabase(out).rows("trials")}
    truncated, random_bytes, missing = sorted(rows)[:3]
    checkpoint = {trial_id: out / rows[trial_id]["checkpoint"] for trial_id in rows}
    checkpoint[truncated].write_bytes(checkpoint[truncated].read_bytes()[:100])
    checkpoint[random_bytes].write_bytes(bytes(range(256)) * 8)
    checkpoint[missing].unlink()

    code, out_text, err = _run(capsys, "report", str(out))
    assert code == 0
    page = Path(out_text.split("report: ")[1].strip()).read_text()
    for trial_id in (truncated, random_bytes, missing):
        assert f"checkpoint of {trial_id} is" in err and trial_id in page
    assert "3 checkpoint(s) missing or damaged" in page and err.count("warning: checkpoint") == 3

    code, out_text, err = _run(capsys, "run", str(spec), "--out", str(out), "--no-report")
    assert code == 0 and "3 trials run, 5 already finished" in out_text
    assert f"checkpoint of {missing} is missing" in err
    assert f"checkpoint of {truncated} is damaged" in err and f"checkpoint of {random_bytes} is damaged" in err
    after = {row["trial_id"]: row for row in StudyDatabase(out).rows("trials")}
    assert {trial_id: row for trial_id, row in after.items() if trial_id not in (truncated, random_bytes, missing)} \
        == {trial_id: row for trial_id, row in rows.items() if trial_id not in (truncated, random_bytes, missing)}
    assert comparable_results(out) == before  # retrained to the same numbers and the same bytes
    code, _, err = _run(capsys, "report", str(out))
    assert code == 0 and "warning" not in err


def _sqlite_prefix(database: Path) -> bytes:
    return database.read_bytes()[: database.stat().st_size // 2]


@pytest.mark.parametrize("damage", ["empty", "random bytes", "truncated"])
def test_a_damaged_database_is_refused_and_left_as_it_was(finished_study, tmp_path, capsys, damage):
    spec, out = _copy(finished_study, tmp_path)
    database = out / "results.sqlite"
    database.write_bytes({"empty": b"", "random bytes": bytes(range(256)) * 64,
                          "truncated": _sqlite_prefix(database)}[damage])
    before = _tree(out)
    for command in (["report", str(out)], ["run", str(spec), "--out", str(out)]):
        code, _, err = _run(capsys, *command)
        assert code == 2, command
        assert f"{database} is not a usable sparsecap results database" in err and "Traceback" not in err
        assert _tree(out) == before


def test_text_where_a_number_belongs_is_named_not_a_traceback(finished_study, tmp_path, capsys):
    """SQLite keeps any value in any column: a hand-edited cell is the database's problem, said as such."""
    spec, out = _copy(finished_study, tmp_path)
    database = out / "results.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE trials SET test_accuracy = 'abc' WHERE rowid = 2")
    connection.close()
    for command in (["claims", str(out)], ["report", str(out)]):
        code, _, err = _run(capsys, *command)
        assert code == 2, command
        assert f"{database} is not a usable sparsecap results database (trials.test_accuracy of row 2 is 'abc', " \
               f"not a number)" in err and "Traceback" not in err


def test_a_study_json_deleted_or_damaged_comes_back_on_resume(finished_study, tmp_path, capsys):
    spec, out = _copy(finished_study, tmp_path)
    expected = json.loads((out / "study.json").read_text())
    for damage in ("deleted", "damaged"):
        if damage == "deleted":
            (out / "study.json").unlink()
        else:
            (out / "study.json").write_text("{broken")
        code, out_text, err = _run(capsys, "run", str(spec), "--out", str(out), "--no-report")
        assert code == 0 and "0 trials run, 8 already finished" in out_text, err
        assert json.loads((out / "study.json").read_text()) == expected, damage


def test_a_spec_record_damaged_under_an_intact_fingerprint_is_written_anew_by_the_spec_that_matches_it(
        finished_study, tmp_path, capsys):
    """The fingerprint proves the given spec is the study's: its record is mended, so the next resume works too."""
    spec, out = _copy(finished_study, tmp_path)
    expected = json.loads((out / "study.json").read_text())
    with sqlite3.connect(out / "results.sqlite") as connection:
        connection.execute("UPDATE study SET value = '[1]' WHERE key = 'spec'")
    connection.close()
    for _ in range(2):
        code, out_text, err = _run(capsys, "run", str(out / "study.json") if _ else str(spec), "--out", str(out),
                                   "--no-report")
        assert code == 0 and "0 trials run, 8 already finished" in out_text, err
    assert json.loads((out / "study.json").read_text()) == expected


def test_a_value_in_the_study_table_that_is_not_json_is_refused_and_left_as_it_was(finished_study, tmp_path, capsys):
    spec, out = _copy(finished_study, tmp_path)
    database = out / "results.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE study SET value = '{oops' WHERE key = 'fingerprint'")
    before = _tree(out)
    for command in (["claims", str(out)], ["run", str(spec), "--out", str(out)]):
        code, _, err = _run(capsys, *command)
        assert code == 2 and "Traceback" not in err, command
        assert f"{database} is not a usable sparsecap results database (its study table holds a value that is not " \
               "JSON" in err
        assert _tree(out) == before


def test_a_database_a_stopped_run_left_without_its_study_is_taken_by_the_next(tmp_path, capsys):
    spec = write_spec(tmp_path)
    (tmp_path / "out").mkdir()
    StudyDatabase.create(tmp_path / "out")  # stopped between creating the database and recording the study
    code, out_text, err = _run(capsys, "run", str(spec), "--out", str(tmp_path / "out"), "--no-report")
    assert code == 0 and "8 trials run, 0 already finished" in out_text, err
    assert StudyDatabase(tmp_path / "out").metadata()["fingerprint"] == load_spec(str(spec)).fingerprint()


def test_another_spec_that_made_the_directory_while_this_run_loaded_its_data_is_refused(tmp_path, monkeypatch):
    """The directory is checked again once locked: a run that checked it before loading its data must not
    write into a study another spec created meanwhile."""
    out = tmp_path / "out"
    other = load_spec(str(write_spec(tmp_path, TINY_SPEC.replace("max_epochs = 2", "max_epochs = 1"), "other.toml")))
    loading, other_ran = runner_module.load_dataset, []

    def load_while_the_other_runs(*arguments, **options):
        if not other_ran:
            other_ran.append(True)
            run_study(other, out)
        return loading(*arguments, **options)

    monkeypatch.setattr(runner_module, "load_dataset", load_while_the_other_runs)
    with pytest.raises(StudyDirectoryError, match="holds results of a different study"):
        run_study(load_spec(str(write_spec(tmp_path))), out)
    assert {row["epochs"] for row in StudyDatabase(out).rows("trials")} == {1}


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_output_directory_that_cannot_be_made_is_refused(tmp_path, capsys, where):
    (tmp_path / "a-file").write_text("")
    out = {"under a file": tmp_path / "a-file" / "out", "in /proc": Path("/proc/sparsecap-study")}[where]
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(out))
    assert code == 2 and f"cannot write the study to {out}" in err and "choose a writable --out" in err
    assert not out.exists()
    code, _, err = _run(capsys, "run", str(write_spec(tmp_path)), "--out", str(tmp_path / "study"), "--storage", str(out))
    assert code == 2 and f"cannot write the study to {out}" in err and "choose a writable --storage" in err
    assert not (tmp_path / "study").exists()  # refused before any training, and before the study's directory


def _read_only_view_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def _in_read_only_view(directory: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`sparsecap ARGUMENTS` in a private mount namespace where `directory` is a read-only file system: a real
    read-only mount, seen by that process only and gone with it (root needs no permission bits)."""
    return subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(directory),
                           sys.executable, "-m", "sparsecap.cli", *arguments], capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.skipif(not _read_only_view_works(), reason="needs root and mount namespaces (unshare -m)")
def test_a_read_only_study_directory_is_refused_by_report_and_resume(finished_study, tmp_path):
    spec, out = _copy(finished_study, tmp_path)
    shutil.rmtree(out / "report", ignore_errors=True)
    before = _tree(tmp_path)
    report = _in_read_only_view(out, "report", str(out))
    assert report.returncode == 2, report.stderr
    assert f"cannot write the report to {out / 'report'}: Read-only file system" in report.stderr
    resume = _in_read_only_view(tmp_path, "run", str(spec), "--out", str(out), "--set", "seeds=[0, 1]")
    assert resume.returncode == 2, resume.stderr
    assert f"cannot write the study to {out}: Read-only file system" in resume.stderr
    new = _in_read_only_view(tmp_path, "run", str(spec), "--out", str(tmp_path / "new"))
    assert new.returncode == 2 and "cannot write the study to" in new.stderr
    assert "Traceback" not in report.stderr + resume.stderr + new.stderr
    assert _tree(tmp_path) == before


WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                    "--inh-caps=-dac_override,-dac_read_search"]
"""A process that honours permission bits although it runs as root (which otherwise reads and writes anything)."""


def _as_a_user_bound_by_permissions(*arguments: str) -> subprocess.CompletedProcess:
    prefix = WITHOUT_OVERRIDE if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-m", "sparsecap.cli", *arguments], capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root needs setpriv to honour modes")
def test_a_database_this_user_may_not_read_or_write_is_said_to_be_so_not_to_be_damaged(finished_study, tmp_path):
    """Moving such a database aside, the advice for a damaged one, would cost every trial in it."""
    spec, out = _copy(finished_study, tmp_path)
    database = out / "results.sqlite"
    before = _tree(out)
    for mode, arguments, said in ((0o444, ["run", str(spec), "--out", str(out)], "cannot be written by this user"),
                                  (0o000, ["claims", str(out)], "cannot be read by this user")):
        database.chmod(mode)
        try:
            result = _as_a_user_bound_by_permissions(*arguments)
        finally:
            database.chmod(0o644)
        assert result.returncode == 2, result.stderr
        assert f"error: {database} {said}" in result.stderr and f"access to it and to {out}" in result.stderr
        assert "damaged" not in result.stderr and "Traceback" not in result.stderr
    assert _tree(out) == before


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root needs setpriv to honour modes")
def test_datasets_lists_every_dataset_past_a_folder_this_user_may_not_read(tmp_path):
    """One unreadable folder is that dataset's line, not an error that hides the rest."""
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist_c").mkdir()
    for folder in ("mnist", "mnist_c"):
        (tmp_path / folder).chmod(0o000)
    try:
        result = _as_a_user_bound_by_permissions("datasets", "--data-root", str(tmp_path), "--verify")
    finally:
        for folder in ("mnist", "mnist_c"):
            (tmp_path / folder).chmod(0o755)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in lines] == [
        "mnist", "fashion-mnist", "cifar10", "cifar100", "digits", "mnist-c", "cifar10-c", "cifar100-c"]
    assert lines[0].split(None, 2)[1:] == ["missing", f"unreadable: {tmp_path / 'mnist' / 'train-images-idx3-ubyte'}: "
                                           f"Permission denied; give this user read access to it"]
    assert lines[5].split(None, 2)[1:] == ["missing", f"unreadable: {tmp_path / 'mnist_c'}: Permission denied; give "
                                           f"this user read access to it"]


def test_the_report_checks_checkpoints_where_the_run_stored_them(tmp_path, capsys):
    out, storage = tmp_path / "out", tmp_path / "shared"
    spec = load_spec(str(write_spec(tmp_path)), ["seeds=[0]", "schedules=['static']"])
    run_study(spec, out, storage=storage)
    code, _, err = _run(capsys, "report", str(out))
    assert code == 0 and "warning" not in err  # found under --storage, not the study directory
    next((storage / "checkpoints").iterdir()).unlink()
    code, _, err = _run(capsys, "report", str(out))
    assert code == 0 and err.count("is missing") == 1


def test_a_model_too_large_to_build_still_gets_its_counts_and_its_failed_record(tmp_path):
    """Counting happens without storage: a width whose weights could never be allocated (10^12 of them)
    fails its own trial, recorded with its place in the grid, instead of the process that runs it."""
    width = 10**10
    spec = load_spec(write_spec(tmp_path, TINY_SPEC), [f"widths=[{width}]", "seeds=[0]"])
    trial = expand(spec)[0]
    digits = load_dataset("digits")
    assert base_nonzero(spec, trial, digits) == width * (64 + 10)
    record = failed_record(spec, trial, digits, "RuntimeError: can't allocate memory", 0.0)
    assert record.total_weights == record.base_nonzero == width * 74 and record.remaining_percent == 100.0


def test_a_results_database_that_is_a_directory_is_said_to_be_one(tmp_path, capsys):
    (tmp_path / "study" / "results.sqlite").mkdir(parents=True)
    for command in (["claims", str(tmp_path / "study")], ["report", str(tmp_path / "study")]):
        code, _, err = _run(capsys, *command)
        assert code == 2 and f"{tmp_path / 'study' / 'results.sqlite'} is not a file (a directory?)" in err, err
