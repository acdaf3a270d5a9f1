"""Secrets: a password in the storage or tracking URL never shows, in output, MLflow, files or
errors. Model code: nothing from a model folder runs unless model.trust_remote_code=true.
Pickles: with study.trust_storage_pickles=false no sampler unpickles state from the storage."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.base.errors import ConfigError
from harness.base.secrets import mask, masked_output, register
from harness.study import run_sweep
from tests.helpers.sweeps import nothing_created

ROOT = Path(__file__).resolve().parents[2]


def test_mask_hides_url_passwords_and_registered_secrets(capsys):
    assert mask("postgresql://user:pa55word@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert mask("http://u:p%40ss@host/") == "http://u:***@host/"
    assert mask("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"
    # a password holding '/', as SQLAlchemy (Optuna's storage) reads the URL
    assert mask("postgresql://u:ab/cd@host/db") == "postgresql://u:***@host/db"
    register(["postgresql://u:slash/ed-pw@host/db"])
    assert mask("password slash/ed-pw rejected") == "password *** rejected"
    register(["mysql://me:hunter-22@h/db"])
    assert mask("auth failed for hunter-22") == "auth failed for ***"  # without the URL around it
    with masked_output(["postgresql://a:tops3cret@h/db"]):
        print("connecting with tops3cret")
        logging.getLogger("harness.test").warning("url postgresql://a:tops3cret@h/db")
    out = capsys.readouterr()
    assert "tops3cret" not in out.out + out.err and "***" in out.out


def test_mask_hides_secrets_in_a_urls_query_string(capsys):
    """Issue 27 item 14: ?password=… (and the like) in a URL's query string."""
    url = "postgresql://alice@db.example/optuna?password=hunter22"
    assert mask(url) == "postgresql://alice@db.example/optuna?password=***"
    assert (
        mask("mysql://h/db?user=bob&PWD=x7y8z9&charset=utf8")
        == "mysql://h/db?user=bob&PWD=***&charset=utf8"
    )
    for name in (
        "passwd",
        "pwd",
        "Password",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "API-Key",
        "key",
        "sig",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "credentials",
    ):
        assert mask(f"https://h/x?a=1&{name}=v4lu/e#f") == f"https://h/x?a=1&{name}=***#f", name
    # settings that only look alike stay: key and password files (paths), the user, the SSL mode
    kept = "postgresql://h/db?sslkey=/etc/client.key&passfile=/home/a/.pgpass&user=al&sslmode=x"
    assert mask(kept) == kept
    assert (
        mask("storage='postgresql://h/db?password=abc'")
        == "storage='postgresql://h/db?password=***'"
    )
    # registered: the bare value as a library prints it, read as the drivers decode it
    register([url, "study.storage=postgresql://h/db?sslmode=require&password=p%40ss+w0rd"])
    assert mask("authentication failed (hunter22)") == "authentication failed (***)"
    assert mask("p@ss+w0rd or p@ss w0rd") == "*** or ***"
    register(["postgresql://h/db?use_token=true"])  # a flag, not a secret: 'true' stays
    assert mask("trust_remote_code: true") == "trust_remote_code: true"
    with masked_output(["postgresql://a@h/db?sslmode=require&password=tops3cret-q"]):
        print("connecting with tops3cret-q")
        logging.getLogger("harness.test").warning("url postgresql://a@h/db?password=tops3cret-q")
    out = capsys.readouterr()
    assert "tops3cret-q" not in out.out + out.err and "***" in out.out


def test_output_nobody_reads_is_dropped_not_raised(monkeypatch):
    """A worker whose launcher died writes into a broken pipe: the lines are dropped, so the
    trial's record is not cut short by a BrokenPipeError."""
    read, write = os.pipe()
    os.close(read)
    broken = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stderr", broken)
    with masked_output([]):
        print("trial 3 interrupted", file=sys.stderr, flush=True)
        print("and more", file=sys.stderr, flush=True)
    with pytest.raises(BrokenPipeError):  # what the harness's output no longer raises
        print("unwrapped", file=broken, flush=True)
    monkeypatch.undo()
    with contextlib.suppress(BrokenPipeError):
        broken.close()


def _everything_in_sqlite(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(str(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)


def _everything_in_postgres(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return "\n".join(str(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def _everything_in_files(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )


# the password as user:password@, and as a query-string parameter (libpq's ?password=…)
STORAGE_FORMS = {
    "userinfo": (
        "postgresql://postgres:{secret}@127.0.0.1:{port}/{database}",
        "postgresql://postgres:***@127.0.0.1:5432/",
    ),
    "query": (
        "postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable&password={secret}",
        "?sslmode=disable&password=***",
    ),
}


# the query-string form end to end in the slow run (~25 s); its masking is checked in the
# default run by the unit, resume-line and provenance tests
@pytest.mark.integration
@pytest.mark.parametrize("form", ["userinfo", pytest.param("query", marks=pytest.mark.slow)])
def test_a_storage_password_never_shows_anywhere(
    form, sweep_overrides, tmp_path, postgres_database, compose
):
    from harness.records import provenance, schema

    secret = f"s3c/ret-{uuid.uuid4().hex[:12]}"  # '/' in a password is legal for SQLAlchemy
    database = postgres_database("secrets")
    template, shown = STORAGE_FORMS[form]
    storage = template.format(secret=secret, port=5432, database=database)  # trust auth: accepted
    overrides = [o for o in sweep_overrides if not o.startswith("study.storage=")]
    # quoted: Hydra reads an unquoted '=' in a value as a syntax error
    overrides += [
        f"study.storage='{storage}'",
        "study.n_trials=1",
        "pruner=none",
        "train.num_train_epochs=1",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "harness.sweep", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout  # masked, not dropped
    places = {
        "stdout and stderr": result.stdout + result.stderr,
        "MLflow store (params, tags, metrics)": _everything_in_sqlite(
            tmp_path / "mlruns" / "mlflow.db"
        ),
        "MLflow artifacts (config.yaml included)": _everything_in_files(tmp_path / "mlruns"),
        "checkpoints": _everything_in_files(tmp_path / "sweeps"),
        "Optuna storage": _everything_in_postgres(
            f"postgresql://postgres@127.0.0.1:5432/{database}"
        ),
    }
    for place, text in places.items():
        assert secret not in text, place
    assert shown in places["MLflow artifacts (config.yaml included)"]
    with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as conn:
        tags = conn.execute(
            "SELECT key, value FROM tags WHERE key IN (?, ?)",
            (provenance.COMMAND_TAG, schema.STORAGE_TAG),
        ).fetchall()
    assert {key for key, _ in tags} == {provenance.COMMAND_TAG, schema.STORAGE_TAG}
    assert all(shown in value for _, value in tags), tags  # every run's, the parent's

    # the same URL to a server that is not there: the error masks it too
    bad = template.format(secret=secret, port=1, database=database)
    with pytest.raises(ConfigError) as err:
        run_sweep(compose([*overrides[:-4], f"study.storage='{bad}'"]))
    assert err.value.field == "study.storage" and secret not in str(err.value)
    assert shown.replace("5432", "1") in str(err.value)


@pytest.mark.integration
def test_the_command_line_masks_passwords_under_a_mistyped_key_and_in_tracebacks(
    monkeypatch, capsys
):
    from harness import sweep
    from harness.config.command import run_hydra

    secret = f"pw/{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(
        sys, "argv", ["harness.sweep", "+sweep=lora", f"study.storag=postgresql://u:{secret}@h/db"]
    )
    with pytest.raises(SystemExit) as exited:
        sweep.cli()
    out = capsys.readouterr()
    assert exited.value.code == 2 and out.err.startswith("error: study.storag: no such setting")
    assert secret not in out.out + out.err

    def crashes() -> None:  # an error outside the ones the entry points catch
        raise RuntimeError(f"cannot reach http://u:{secret}@mlflow.example:5000/api")

    with pytest.raises(SystemExit) as exited:
        run_hydra(crashes)
    out = capsys.readouterr()
    assert exited.value.code == 1 and "Traceback" in out.err and "RuntimeError" in out.err
    assert "http://u:***@mlflow.example:5000/api" in out.err and secret not in out.err


@pytest.mark.integration
def test_the_resume_line_masks_a_query_string_password(sweep_overrides, monkeypatch, capsys):
    """Ctrl-C prints the command that resumes the study: its password is masked, also where it
    is a query-string parameter (?password=…)."""
    import harness.study
    from harness import sweep
    from harness.cli import sweep as sweep_cli

    secret = f"qs-{uuid.uuid4().hex[:10]}"
    storage = f"postgresql://postgres@127.0.0.1:5432/nowhere?password={secret}"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Ctrl-C before the first trial (the command imports run_sweep once the config passed)
    monkeypatch.setattr(harness.study, "run_sweep", interrupted)
    monkeypatch.setattr(sweep_cli, "configure_logging", lambda *args, **kwargs: None)
    overrides = [o for o in sweep_overrides if not o.startswith("study.storage=")]
    # Hydra reads an unquoted '=' in a value as a syntax error: the value is quoted
    monkeypatch.setattr(sys, "argv", ["harness.sweep", *overrides, f"study.storage='{storage}'"])
    with pytest.raises(SystemExit) as exited:
        sweep.cli()
    out = capsys.readouterr()
    assert exited.value.code == 130, out.err
    resume = next(line for line in out.err.splitlines() if line.startswith("Resume with: "))
    assert "?password=***" in resume and secret not in out.out + out.err


@pytest.mark.integration
def test_samplers_that_unpickle_storage_state_are_refused_on_request(
    bare_overrides, tmp_path, monkeypatch, capsys, compose
):
    """Issue 27 item 15: CmaEsSampler unpickles its state from the study storage (whoever can
    write the storage runs code in every worker). study.trust_storage_pickles=false refuses it:
    one error line naming the setting, exit 2, nothing created."""
    import optuna

    from harness import sweep
    from harness.study.setup import check_storage_pickles, validate_config

    monkeypatch.setattr(
        sys,
        "argv",
        ["harness.sweep", *bare_overrides, "sampler=cmaes", "study.trust_storage_pickles=false"],
    )
    with pytest.raises(SystemExit) as exited:
        sweep.cli()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.splitlines() == [err.strip()] and err.startswith(
        "error: study.trust_storage_pickles: is false and CmaEsSampler keeps its state in the "
        "study storage as a pickle"
    ), err
    nothing_created(tmp_path)

    validate_config(compose([*bare_overrides, "sampler=cmaes"]))  # trusted by default
    for sampler in ("tpe", "gp", "random", "qmc", "grid", "nsga2"):  # JSON in the storage only
        validate_config(
            compose([*bare_overrides, f"sampler={sampler}", "study.trust_storage_pickles=false"])
        )

    class OwnSampler(optuna.samplers.RandomSampler):  # not Optuna's: cannot be vouched for
        pass

    check_storage_pickles(optuna.samplers.CmaEsSampler(), trusted=True)
    check_storage_pickles(optuna.samplers.TPESampler(), trusted=False)  # Optuna's, JSON only
    inside = optuna.samplers.PartialFixedSampler({}, optuna.samplers.CmaEsSampler())
    for refused, named in ((inside, "CmaEsSampler keeps"), (OwnSampler(), "OwnSampler is not")):
        with pytest.raises(ConfigError) as error:
            check_storage_pickles(refused, trusted=False)
        assert error.value.field == "study.trust_storage_pickles" and named in str(error.value)


def _model_with_code(folder: Path, marker: Path, tiny_model_dir: Path) -> Path:
    """A model folder whose config needs its own Python code (which would leave ``marker``)."""
    import shutil

    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="harness-custom",
        architectures=["CustomModel"],
        auto_map={
            "AutoConfig": "custom.CustomConfig",
            "AutoModelForSequenceClassification": "custom.CustomModel",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('code from the model folder ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n\n\n"
        "class CustomConfig(BertConfig):\n    model_type = 'harness-custom'\n\n\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    return folder


@pytest.mark.integration
def test_model_code_runs_only_when_the_user_opts_in(
    sweep_overrides, tmp_path, tiny_model_dir, compose
):
    from harness.train.model import load_base_model, load_tokenizer

    marker = tmp_path / "ran.txt"
    folder = _model_with_code(tmp_path / "custom-model", marker, tiny_model_dir)
    overrides = [o for o in sweep_overrides if not o.startswith("model.name_or_path=")]
    overrides.append(f"model.name_or_path={folder}")
    with pytest.raises(ConfigError) as err:
        run_sweep(compose(overrides))
    assert err.value.field == "model.trust_remote_code"
    assert "runs only with model.trust_remote_code=true" in str(err.value)
    assert not marker.exists()  # refused before any of its code ran

    cfg = compose([*overrides, "model.trust_remote_code=true"]).model
    base = load_base_model(cfg, ["a", "b"], load_tokenizer(cfg), seed=0)
    assert marker.exists() and type(base.model).__name__ == "CustomModel"
