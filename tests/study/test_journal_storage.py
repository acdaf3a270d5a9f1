"""Studies without a database server: ``study.storage=journal:///…`` (Optuna's journal file, for a
shared filesystem) and ``study.storage=grpc://HOST:PORT`` (Optuna's gRPC proxy, which
``python -m harness.storage_proxy`` starts in front of an RDB). The URLs and their errors, the
heartbeat the harness gives both, the study lock on each, a fast-tier study on a journal that
resumes, 2 workers on a journal with one killed by ``kill -9``, and a study through the proxy."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages._heartbeat import is_heartbeat_enabled

from harness.base import storages
from harness.base.errors import ConfigError
from harness.base.files import journal_path, storage_file
from harness.base.storages import GrpcStorage, JournalFileStorage, check_url, kind, open_url
from harness.records import schema
from harness.records.lookup import load_study
from harness.study import run_sweep
from harness.study.lock import study_lock
from tests.helpers.fake_finetune import FakeFineTune
from tests.helpers.servers import free_port
from tests.helpers.sweeps import SweepProcess, assert_consistent, finished_trials, stores

ROOT = Path(__file__).resolve().parents[2]
TrialState = optuna.trial.TrialState


def journal_overrides(overrides: list[str], folder: Path) -> list[str]:
    keep = [o for o in overrides if not o.startswith("study.storage=")]
    return [*keep, f"study.storage=journal:///{folder}/sweeps/optuna.log"]


# ------------------------------------------------------------------------------ URLs


def test_journal_urls_read_as_sqlite_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert journal_path("journal:///sweeps/optuna.log") == Path("sweeps/optuna.log")  # relative
    assert journal_path("journal:////shared/optuna.log") == Path("/shared/optuna.log")  # absolute
    assert journal_path("sqlite:///sweeps/optuna.db") is None
    assert storage_file("sqlite:///sweeps/optuna.db") == Path("sweeps/optuna.db")
    assert storage_file("journal:///sweeps/optuna.log") == Path("sweeps/optuna.log")
    assert storage_file("grpc://login:13000") is None
    assert [kind(u) for u in ("journal:///a", "grpc://h:1", "postgresql://h/db")] == [
        "journal",
        "grpc",
        "rdb",
    ]
    assert storages.grpc_address("grpc://login-node:13000") == ("login-node", 13000)
    assert storages.dashboard_command("journal:///sweeps/optuna.log") == (
        "optuna-dashboard sweeps/optuna.log"
    )
    assert storages.dashboard_command("grpc://login:13000") is None  # the dashboard cannot
    for url in ("journal:///sweeps/optuna.log", f"journal:///{tmp_path}/a/b.log", "grpc://h:1"):
        check_url("study.storage", url)  # nothing is created
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nosuchdb://host/x", "not a storage URL"),
        ("journal://host/optuna.log", "names no journal file"),
        ("journal:///", "names no journal file"),
        ("journal:///{blocker}/sub/optuna.log", "cannot use"),
        ("journal:///{tmp}", "is a folder"),
        ("grpc://login-node", "grpc://HOST:PORT"),
        ("grpc://login-node:port", "grpc://HOST:PORT"),
    ],
)
def test_a_bad_storage_url_is_one_config_error_and_no_study(
    url, said, tmp_path, fast_overrides, compose
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    url = url.format(blocker=blocker, tmp=tmp_path)
    overrides = [*fast_overrides, f"study.storage={url}", "study.n_trials=1"]
    with pytest.raises(ConfigError) as error:
        run_sweep(compose(overrides), finetune=FakeFineTune())
    assert error.value.field == "study.storage" and said in error.value.message
    assert not (tmp_path / "sweeps").exists()  # no study, no output folder


def test_a_read_only_journal_is_refused_before_anything_is_made(tmp_path):
    journal = tmp_path / "optuna.log"
    journal.write_text("")
    journal.chmod(0o444)
    with pytest.raises(ConfigError, match="read-only"):
        check_url("study.storage", f"journal:///{journal}")


def test_a_grpc_storage_without_grpcio_names_the_extra(monkeypatch, compose):
    from harness.study.storage import open_storage

    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    cfg = compose(["study.storage=grpc://127.0.0.1:1"])
    with pytest.raises(ConfigError) as error:
        open_storage(cfg.study, None)
    assert error.value.field == "study.storage"
    assert "pip install 'harness[grpc]'" in error.value.message


# ------------------------------------------------------------------------------ the builder


def test_load_study_opens_a_journal_through_the_builder_and_creates_nothing(tmp_path, compose):
    url = f"journal:///{tmp_path}/j/optuna.log"
    cfg = compose([f"study.storage={url}", "study.name=there"])
    with pytest.raises(ConfigError, match="no study storage"):
        load_study(cfg)
    assert not (tmp_path / "j").exists()
    made = optuna.create_study(study_name="there", storage=open_url(url))
    made.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study = load_study(cfg)
    assert isinstance(study._storage, JournalFileStorage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    with pytest.raises(ConfigError, match="no study 'elsewhere'.*there"):
        load_study(compose([f"study.storage={url}", "study.name=elsewhere"]))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # ask() here
def test_the_journal_has_the_heartbeat_an_rdb_has(tmp_path):
    failed: list[int] = []
    storage = open_url(
        f"journal:///{tmp_path}/optuna.log",
        heartbeat_interval=1,
        grace_period=1,
        stale_callback=lambda study, trial: failed.append(trial.number),
    )
    assert is_heartbeat_enabled(storage)
    study = optuna.create_study(study_name="beats", storage=storage)
    alive, dead, never = study.ask(), study.ask(), study.ask()
    storage.record_heartbeat(alive._trial_id)
    storage.record_heartbeat(dead._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(1.3)
    storage.record_heartbeat(alive._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == [dead._trial_id]  # never: no beat
    optuna.storages.fail_stale_trials(study)
    assert failed == [dead.number]
    assert study.trials[dead.number].state == TrialState.FAIL
    assert study.trials[never.number].state == TrialState.RUNNING
    # a retry carries its failed trial's system attributes: its old beat is not its own
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[dead.number])
    retry = storage.get_trial(study.ask()._trial_id)
    assert retry.system_attrs.get("failed_trial") == dead.number
    assert retry.system_attrs[storages.HEARTBEAT_ATTR]["trial_id"] == dead._trial_id
    assert storage._get_stale_trial_ids(study._study_id) == []
    storage.record_heartbeat(dead._trial_id)  # a beat for a finished trial: ignored, no error


def test_the_study_lock_on_a_journal_is_an_flock_beside_it(tmp_path):
    storage = open_url(f"journal:///{tmp_path}/optuna.log")
    optuna.create_study(study_name="locked", storage=storage)
    beside = tmp_path / "optuna.log.harness-lock"
    with (
        study_lock(storage, "locked", "promotion"),
        beside.open("a") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another holder is refused
    with beside.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once released


def test_the_proxy_keeps_one_lease_per_lock_until_freed_or_run_out():
    leases = storages._Leases()
    ask = storages.LEASE_PREFIX + "final" + storages.LEASE_ASK
    free = storages.LEASE_PREFIX + "final" + storages.LEASE_FREE
    held = storages.LEASE_PREFIX + "final"
    assert leases.handle(1, ask, {"token": "a", "seconds": 0.3})
    assert leases.handle(1, ask, {"token": "b", "seconds": 0.3})  # taken: b waits
    assert leases.view(1)[held] == "a" and held not in leases.view(2)
    leases.handle(1, free, "b")  # not b's to free
    assert leases.view(1)[held] == "a"
    time.sleep(0.4)  # a died: its lease ran out
    assert held not in leases.view(1)
    leases.handle(1, ask, {"token": "b", "seconds": 30})
    assert leases.view(1)[held] == "b"
    leases.handle(1, free, "b")
    assert held not in leases.view(1) and leases.view(1)[storages.LEASE_PROXY] == 1
    assert not leases.handle(1, storages.LEASE_PREFIX + "other", 1)  # stored as it is


# ----------------------------------------------------------------------- a study on a journal


def test_a_study_on_a_journal_resumes_to_its_total(fast_overrides, compose, tmp_path):
    first = journal_overrides([*fast_overrides, "study.n_trials=2", "pruner=none"], tmp_path)
    summary = run_sweep(compose(first), finetune=FakeFineTune())
    assert summary.complete == 2
    assert (tmp_path / "sweeps" / "optuna.log").is_file()
    assert not (tmp_path / "sweeps" / "optuna.db").exists()
    _, before, _, parent_before, _ = stores(first)
    assert isinstance(before._storage, JournalFileStorage)
    earlier = finished_trials(before)

    again = journal_overrides([*fast_overrides, "study.n_trials=4", "pruner=none"], tmp_path)
    fake = FakeFineTune()
    summary = run_sweep(compose(again), finetune=fake)
    _, after, _, parent_after, children = assert_consistent(again, n_trials=4)
    assert len(fake.calls) == 2 and summary.complete == 4
    assert {n: v for n, v in finished_trials(after).items() if n in earlier} == earlier
    assert parent_after.info.run_id == parent_before.info.run_id
    assert sorted(children) == [0, 1, 2, 3]
    tags = parent_after.data.tags
    assert tags[schema.STORAGE_TAG] == f"journal:///{tmp_path}/sweeps/optuna.log"
    assert summary.dashboard  # the dev extra installs it
    assert f"Optuna dashboard: optuna-dashboard {tmp_path}/sweeps/optuna.log" in summary.format()
    idle = FakeFineTune()
    assert run_sweep(compose(again), finetune=idle).complete == 4 and not idle.calls


# ------------------------------------------------------------------------------ real processes


@pytest.mark.integration  # worker processes, kill -9
@pytest.mark.slow  # two real worker processes, twice: about 2 minutes on 2 cores
def test_two_workers_on_a_journal_one_killed_then_the_same_command_resumes(
    sweep_overrides, tmp_path
):
    from tests.study.test_scale_out import check_shared_study

    name = f"journal-{uuid.uuid4().hex[:8]}"
    storage = f"journal:///{tmp_path}/shared/optuna.log"
    tracking = next(o for o in sweep_overrides if o.startswith("tracking.uri=")).split("=", 1)[1]
    overrides = [
        *journal_overrides(sweep_overrides, tmp_path),
        f"study.storage={storage}",
        f"study.name={name}",
        "pruner=none",
        "train.num_train_epochs=1",
        "study.heartbeat_interval=1",
        "study.grace_period=3",
        "study.workers=2",
        "study.n_trials=6",
    ]
    target = 2
    sweep = SweepProcess(overrides, faults=f"train_step:{target}:3=pause")
    line = f"harness fault: train_step reached (trial {target}, pid "
    sweep.wait_for(line)
    pid = int(re.search(re.escape(line) + r"(\d+)\)", sweep.err).group(1))
    os.kill(pid, signal.SIGKILL)  # one worker, mid-trial
    # as if it had run on another node: only its heartbeat in the journal can tell it died
    journal = open_url(storage, create=False)
    trial = optuna.load_study(study_name=name, storage=journal).trials[target]
    elsewhere = {"host": "elsewhere", "boot": "", "pid": 1}
    journal.set_trial_user_attr(trial._trial_id, schema.WORKER_ATTR, elsewhere)
    assert sweep.wait(timeout=600) == 0, sweep.err
    assert "was killed (SIGKILL)" in sweep.err

    again = SweepProcess(overrides)  # the same command
    assert again.wait(timeout=600) == 0, again.err
    study, _, by_number, _ = check_shared_study(storage, tracking, name, 6, 2)
    killed = study.trials[target]
    assert killed.state == TrialState.FAIL and by_number[target].info.status == "FAILED"
    assert "no heartbeat" in by_number[target].data.tags[schema.ERROR_TAG]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == target]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == killed.params
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert not (tmp_path / "shared" / "optuna.log.lock").exists()  # the journal's lock is free


@pytest.fixture
def storage_proxy(tmp_path):
    """``python -m harness.storage_proxy`` in front of an SQLite file, on a free port."""
    port = free_port()
    database = tmp_path / "behind" / "optuna.db"
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.storage_proxy",
            "--storage",
            f"sqlite:///{database}",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert "listening on 127.0.0.1:" in (proxy.stdout.readline() if proxy.stdout else "")
    yield f"grpc://127.0.0.1:{port}", database
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(timeout=30) == 0


@pytest.mark.integration  # a proxy process and an mlflow server
def test_a_study_through_the_grpc_proxy_tracked_by_a_server(
    storage_proxy, mlflow_server, fast_overrides, compose
):
    """The cluster without a database server: the study through the proxy, MLflow through a
    tracking server (on a login node: here both on loopback, each on a local SQLite file)."""
    url, database = storage_proxy
    keep = [o for o in fast_overrides if not o.startswith(("tracking.", "study.storage="))]
    overrides = [
        *keep,
        f"study.storage={url}",
        f"study.name=grpc-{uuid.uuid4().hex[:8]}",  # one experiment per test on the server
        f"tracking.uri={mlflow_server}",
        "tracking.artifact_location=null",
        "pruner=none",
        "study.heartbeat_interval=1",
    ]
    assert (
        run_sweep(compose([*overrides, "study.n_trials=2"]), finetune=FakeFineTune()).complete == 2
    )
    resumed = [*overrides, "study.n_trials=3"]
    summary = run_sweep(compose(resumed), finetune=FakeFineTune())
    assert summary.complete == 3 and "optuna-dashboard" not in summary.format()
    _, study, _, parent, _ = assert_consistent(resumed, n_trials=3)
    assert isinstance(study._storage, GrpcStorage)
    assert parent.data.tags[schema.STORAGE_TAG] == url
    # the heartbeat went through the proxy: each trial has its own beat
    beats = [t.system_attrs.get(storages.HEARTBEAT_ATTR) for t in study.trials]
    assert all(b and b["trial_id"] == t._trial_id for b, t in zip(beats, study.trials, strict=True))
    # and the study is in the SQLite file behind the proxy
    direct = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{database}")
    assert len(direct.trials) == 3


@pytest.mark.integration  # a proxy process
def test_the_study_lock_through_the_proxy_excludes_other_holders(storage_proxy):
    url, _ = storage_proxy
    first, second = open_url(url), open_url(url)
    optuna.create_study(study_name="locked", storage=first)
    order: list[str] = []
    held = threading.Event()

    def hold() -> None:
        with study_lock(first, "locked", "final"):
            order.append("first in")
            held.set()
            time.sleep(1.0)
            order.append("first out")

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(timeout=30)
    with study_lock(second, "locked", "final"):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    with study_lock(second, "locked", "promotion"), study_lock(first, "locked", "final"):
        pass  # locks of other purposes are independent


def test_the_proxy_refuses_a_journal_behind_it(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.storage_proxy",
            "--storage",
            f"journal:///{tmp_path}/optuna.log",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "serves an RDB storage" in result.stderr
    assert not (tmp_path / "optuna.log").exists()
