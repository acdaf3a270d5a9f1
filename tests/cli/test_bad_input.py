"""Bad input, through the command line: one ``error:`` line naming the problem, exit status 2,
and nothing created (no study, no MLflow run, no output folder).

The table runs ``harness.sweep.cli`` in this process (Hydra composes the command line exactly as
for ``python -m harness.sweep``); one case also runs as a real subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import sweep
from tests.helpers.sweeps import nothing_created

ROOT = Path(__file__).resolve().parents[2]


def _files(tmp_path: Path) -> dict[str, Path]:
    """Malformed inputs written for the table."""
    folder = tmp_path / "bad"
    (folder / "conf" / "sweep").mkdir(parents=True)
    (folder / "conf" / "sweep" / "broken.yaml").write_text(
        "# @package _global_\nsearch_space:\n  train.learning_rate: {low: 1e-3, high: [\n"
    )
    (folder / "empty.csv").write_text("text,label\n")
    (folder / "null_text.csv").write_text("text,label\nfine,positive\n,negative\nok,neutral\n")
    (folder / "numbers.jsonl").write_text(
        "".join(
            json.dumps({"text": i if i == 3 else f"t {i}", "label": ["a", "b"][i % 2]}) + "\n"
            for i in range(10)
        )
    )
    (folder / "a_file").write_text("")
    (folder / "int_labels.csv").write_text("text,label\ngood,2\nbad,0\nmeh,1\n")
    (folder / "surprise.csv").write_text("text,label\ngood,positive\nwow,surprised\n")
    (folder / "long.csv").write_text(
        "text,label\n" + "great " * 200 + ",positive\nbad,negative\nfine,neutral\ngood,positive\n"
    )
    (folder / "three.csv").write_text("text,label\ngood,positive\nbad,negative\nok,positive\n")
    (folder / "one_class.csv").write_text(
        "text,label\n" + "".join(f"good {i},positive\n" for i in range(20))
    )
    (folder / "latin1.csv").write_bytes(
        "text,label\ncaf\u00e9 great,positive\nbad,negative\nok,neutral\n".encode("latin-1")
    )
    readonly = folder / "readonly.db"
    readonly.write_text("")
    readonly.chmod(0o444)
    return {"dir": folder, "file": folder / "a_file"}


# (override(s), the start of the one error line). {tmp} and {bad} are filled in per test.
CASES = [
    # malformed YAML in a user's own sweep file
    (["--config-dir={bad}/conf", "+sweep=broken"], "error: {bad}/conf/sweep/broken.yaml: line "),
    # an override that does not parse
    (["search_space={train.learning_rate: {low: 1e-3}"], "error: cannot parse the override"),
    # an unknown key (a typo)
    (["study.n_trail=5"], "error: study.n_trail: no such setting"),
    # an unknown option of a config group, an unknown sweep
    (["sampler=nope"], "error: sampler: no config named 'nope' (available: cmaes"),
    (["+sweep=nope"], "error: sweep: no config named 'nope' (available: full, ia3, lora"),
    # a value of the wrong type
    (["study.n_trials=ten"], "error: study.n_trials: must be a positive integer, got 'ten'"),
    (["study=3"], "error: study: must be a mapping of settings, got 3"),
    # the loss maximized
    (
        ["study.metric=loss"],
        "error: study.direction: the loss is minimized: study.metric=loss "
        "needs study.direction=minimize, got 'maximize'",
    ),
    # empty dataset
    (
        ["data.train_file={bad}/empty.csv"],
        "error: data.train_file: '{bad}/empty.csv' has no data rows",
    ),
    # missing label column; labels that the given names cannot map
    (["data.label_column=sentiment"], "error: data.label_column: column 'sentiment' is not in"),
    (
        ["data.label_names=[negative,positive]"],
        "error: data.label_names: label(s) ['neutral'] in column 'label' are not in",
    ),
    # labels of another kind in validation than in train (text / integers), labels that the
    # train split never has, label names that are not a list of distinct names
    (
        ["data.validation_file={bad}/int_labels.csv"],
        "error: data.validation_file: label(s) ['0', '1', '2'] in '{bad}/int_labels.csv' never "
        "occur in '",
    ),
    (
        ["data.validation_file={bad}/surprise.csv"],
        "error: data.validation_file: label(s) ['surprised'] in '{bad}/surprise.csv' never occur "
        "in '",
    ),
    (
        ["data.test_file={bad}/surprise.csv"],
        "error: data.test_file: label(s) ['surprised'] in '{bad}/surprise.csv' never occur in '",
    ),
    (
        ["data.label_names=[negative,negative,positive]"],
        "error: data.label_names: names must differ: ['negative'] given more than once",
    ),
    (
        ["data.label_names=abc"],
        "error: data.label_names: must be a list of names (e.g. [negative,positive]), got 'abc'",
    ),
    # texts longer than the model's positions (the tiny model has 128), cut at more than that
    (
        ["data.train_file={bad}/long.csv", "data.max_length=300"],
        "error: data.max_length: 300 is above the model's 128 positions and some texts are 202 "
        "tokens long",
    ),
    # a storage file that cannot be written (found before the data and model are prepared)
    (
        ["study.storage=sqlite:///{bad}/readonly.db"],
        "error: study.storage: '{bad}/readonly.db' is read-only (mode 444)",
    ),
    # a file that is not UTF-8 (here latin-1)
    (
        ["data.train_file={bad}/latin1.csv"],
        "error: data.train_file: '{bad}/latin1.csv' is not UTF-8 text",
    ),
    # a validation share that leaves nothing to train or validate on
    (
        [
            "data.train_file={bad}/three.csv",
            "data.validation_file=null",
            "data.validation_size=0.9",
        ],
        "error: data.validation_size: 0.9 of 3 training rows leaves 0 to train on and 3 to "
        "validate on",
    ),
    # null or non-text rows
    (["data.train_file={bad}/null_text.csv"], "error: data.text_column: 1 row(s) of "),
    (
        ["data.train_file={bad}/numbers.jsonl", "data.validation_file=null"],
        "error: data.text_column: 1 row(s) of ",
    ),
    # non-positive sizes
    (["study.n_trials=0"], "error: study.n_trials: must be a positive integer, got 0"),
    (["data.max_length=0"], "error: data.max_length: must be a positive integer, got 0"),
    (["train.learning_rate=-1"], "error: train.learning_rate: must be a positive number, got -1"),
    (
        ["train.num_train_epochs=0"],
        "error: train.num_train_epochs: must be a positive number, got 0",
    ),
    (
        ["train.per_device_train_batch_size=0"],
        "error: train.per_device_train_batch_size: must be a positive integer, got 0",
    ),
    (["checkpoints.keep=0"], "error: checkpoints.keep: must be a positive integer or null"),
    (
        ["report.plots=[history,histogram]"],
        "error: report.plots: unknown plot 'histogram' (known: history, intermediate, "
        "expected_max, importances, parallel, slice, pareto)",
    ),
    (["report.max_params=0"], "error: report.max_params: must be a positive integer, got 0"),
    (
        ["display.log_level=LOUD"],
        "error: display.log_level: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'",
    ),
    (
        ["display.log_file={bad}/a_file/sweep.log"],
        "error: display.log_file: cannot write to '{bad}/a_file': ",
    ),
    # an unreachable, then a malformed storage URL
    (
        ["study.storage=postgresql://harness:pw@127.0.0.1:1/nowhere"],
        "error: study.storage: cannot open 'postgresql://harness:***@127.0.0.1:1/nowhere'",
    ),
    (["study.storage=not-a-database-url"], "error: study.storage: cannot open"),
    # an MLflow server that is not there: at once, not after minutes of retries
    (
        ["tracking.uri=http://u:pw@127.0.0.1:1"],
        "error: tracking.uri: cannot reach 'http://u:***@127.0.0.1:1' within 5 s",
    ),
    (
        ["study.storage=postgresql://harness:p/w@127.0.0.1:1/nowhere"],
        "error: study.storage: cannot open 'postgresql://harness:***@127.0.0.1:1/nowhere'",
    ),
    # unwritable tracking store, artifact location and output folder
    (["tracking.uri=sqlite:///{file}/mlflow.db"], "error: tracking.uri: cannot use"),
    (
        ["tracking.artifact_location={file}/artifacts"],
        "error: tracking.artifact_location: cannot write to",
    ),
    (["study.output_dir=/proc/harness-study"], "error: study.output_dir: cannot write to"),
    # a search space that contradicts itself
    (
        ["search_space={train.learning_rate: {low: 1.0}}"],
        "error: search_space.train.learning_rate: low (1.0) must be less than high",
    ),
    (["search_space={peft.config.r: {choices: []}}"], "error: search_space.peft.config.r: "),
    # an entry given with a type replaces the entry: its keys are checked against that type
    (
        ["search_space={train.learning_rate: {type: categorical, chioces: [1e-4]}}"],
        "error: search_space.train.learning_rate: unknown key(s) chioces for type categorical "
        "(allowed: choices, type)",
    ),
    (
        ["search_space={peft.config.r: {type: fixed}}"],
        "error: search_space.peft.config.r: 'value' is required for type fixed",
    ),
    # a dotted path into the space (its keys hold dots), a refused key inside a dict
    (
        ["search_space.train.learning_rate.high=1e-2"],
        "error: search_space.train.learning_rate.high: no such setting (the keys of search_space "
        "hold dots: change an entry with a dict",
    ),
    (["study={n_trail: 5}"], "error: study.n_trail: no such setting"),
    # trials to queue that do not fit the search space, a warm start from a study not there
    (
        ["study.enqueue=[{train.learning_rate: 0.5, peft.config.r: 8}]"],
        "error: study.enqueue[0].train.learning_rate: 0.5 is outside its range [0.01, 0.05]",
    ),
    (
        ["study.enqueue=[{peft.config.r: 8}, {peft.config.rank: 8}]"],
        "error: study.enqueue[1].peft.config.rank: is not a param of this study's search space",
    ),
    (
        ["study.enqueue=[{peft.config.r: 5}]"],
        "error: study.enqueue[0].peft.config.r: 5 is not one of its choices [4, 8, 16]",
    ),
    (
        ["study.enqueue=[8]"],
        "error: study.enqueue: must be a list of parameter sets ([{name: value, …}, …]), got [8]",
    ),
    (
        ["study.warm_start.name=earlier"],
        "error: study.warm_start.name: no study 'earlier': 'sqlite:///{tmp}/sweeps/optuna.db' does "
        "not exist",
    ),
    (
        ["study.warm_start.name=earlier", "study.warm_start.storage=sqlite:///{bad}/none.db"],
        "error: study.warm_start.storage: no study 'earlier': 'sqlite:///{bad}/none.db' does not "
        "exist",
    ),
    (["study.warm_start.top_k=0"], "error: study.warm_start.top_k: must be a positive integer"),
    # a recipe that is not one configuration of the search space
    (
        [
            "recipe={train.learning_rate: 1.0e-3, peft.config.r: 8, peft.config.lora_alpha: 16, "
            "peft.config.lora_dropout: 0.1, train.warmup_steps: 0.06}"
        ],
        "error: recipe.train.learning_rate: 0.001 is outside its range [0.01, 0.05]",
    ),
    (
        ["~recipe", "+recipe={train.learning_rate: 0.02}"],
        "error: recipe: gives no value for peft.config.r: a recipe is one configuration",
    ),
    # the promotion scheduler's settings
    (
        ["pruner=promotion", "pruner.reduction_factor=1"],
        "error: pruner.reduction_factor: must be an integer >= 2, got 1",
    ),
    (["checkpoints.paused_gb=0"], "error: checkpoints.paused_gb: must be a positive number of GB"),
    # a report folder that would replace what the study needs, or someone else's folder
    (["report.dir={tmp}"], "error: report.dir: '{tmp}' holds the study storage (study.storage)"),
    (
        ["report.dir={tmp}/sweeps/study"],
        "error: report.dir: '{tmp}/sweeps/study' is the study's output folder (study.output_dir)",
    ),
    (["report.dir=."], "error: report.dir: '.' is the working directory"),
    (["report.dir={bad}"], "error: report.dir: '{bad}' exists and is not the report of study "),
    # a grid over a methods study (its space differs per method)
    (
        ["+sweep=methods", "++search_space={}", "sampler=grid"],
        "error: sampler: a grid cannot search a methods study",
    ),
    # search-space paths that no trial reads (set once per study)
    (
        [
            "~search_space",
            "+search_space={metric_args.f1.average: {type: categorical, choices: [macro, micro]}}",
        ],
        "error: search_space.metric_args.f1.average: 'metric_args' is not read by a trial",
    ),
    (
        ["~search_space", "+search_space={checkpoints.keep: {type: int, low: 1, high: 3}}"],
        "error: search_space.checkpoints.keep: 'checkpoints' is not read by a trial",
    ),
    (
        ["~search_space", "+search_space={metrics: {type: categorical, choices: [accuracy, f1]}}"],
        "error: search_space.metrics: 'metrics' is not read by a trial",
    ),
    # the final stage's settings are the study's, never a trial's
    (
        ["~search_space", "+search_space={final.seeds: {type: int, low: 1, high: 3}}"],
        "error: search_space.final.seeds: 'final' is not read by a trial",
    ),
    (
        ["data.train_file=/nonexistent/train.csv"],
        "error: data.train_file: file '/nonexistent/train.csv' does not exist",
    ),
    # a metric the evaluation does not produce
    (["study.metric=precision"], "error: study.metric: 'precision' is not computed by metrics"),
    (
        ["study.prune_metric=precision"],
        "error: study.prune_metric: 'precision' is not computed by metrics",
    ),
    (["study.direction=up"], "error: study.direction: must be maximize or minimize"),
    # a study name becomes folder names: it must not lead out of them
    (
        ["study.name=../../escape"],
        "error: study.name: must be a name, not a path (no '/', '\\' or '..'), got '../../escape'",
    ),
    (["study.name=/tmp/x"], "error: study.name: must be a name, not a path"),
    (["study.name=.."], "error: study.name: must be a name, not a path"),
    (["study.failure_limit.rate=2"], "error: study.failure_limit.rate: must be in [0, 1)"),
    # issue 27, items 9-13
    # one-class training data, label names given or not
    (
        [
            "data.train_file={bad}/one_class.csv",
            "data.validation_file=null",
            "data.label_names=[negative,positive]",
        ],
        "error: data.label_column: classification needs at least 2 labels: '{bad}/one_class.csv' "
        "has only 'positive'",
    ),
    # the final stage's settings, checked with the others (not after the search)
    (["final.top_k=0"], "error: final.top_k: must be a positive integer, got 0"),
    (["final.seeds=-1"], "error: final.seeds: must be an integer >= 0, got -1"),
    (["final.ensemble_size=0"], "error: final.ensemble_size: must be a positive integer, got 0"),
    (
        ["final.combine=all"],
        "error: final.combine: must be one of best, ensemble, soup, auto, got 'all'",
    ),
    # the name of a study's final-stage companion ("<study>::final")
    (
        ["study.name=pc::final"],
        "error: study.name: must not end with '::final', got "
        "'pc::final': the study '<name>::final' holds the final-stage "
        "runs of study '<name>'",
    ),
    # a queued value off a float's step grid (Optuna only warns, and runs it)
    (
        [
            "++search_space={train.learning_rate: {low: 1.0e-2, high: 5.0e-2}, "
            "train.warmup_steps: {type: float, low: 0.0, high: 0.3, step: 0.1}}",
            "study.enqueue=[{train.warmup_steps: 0.1}, {train.warmup_steps: 0.05}]",
        ],
        "error: study.enqueue[1].train.warmup_steps: 0.05 is not one of its values (0.0 to 0.3, "
        "step 0.1)",
    ),
    # bad data leaves no MLflow store (every data row above checks it), with workers too
    (
        ["study.workers=2", "data.train_file={bad}/empty.csv"],
        "error: data.train_file: '{bad}/empty.csv' has no data rows",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_created(
    bare_overrides, tmp_path, monkeypatch, capsys, overrides, expected
):
    files = _files(tmp_path)
    places = {"{tmp}": tmp_path, "{bad}": files["dir"], "{file}": files["file"]}

    def fill(text: str) -> str:
        for place, path in places.items():
            text = text.replace(place, str(path))
        return text

    overrides = [fill(o) for o in overrides]
    keys = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    base = [o for o in bare_overrides if o.split("=", 1)[0].lstrip("+") not in keys]
    flags = [o for o in overrides if o.startswith("--")]  # before the overrides, as argparse wants
    overrides = [o for o in overrides if not o.startswith("--")]
    monkeypatch.setattr(sys, "argv", ["harness.sweep", *flags, *base, *overrides])
    with pytest.raises(SystemExit) as exited:
        sweep.cli()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exited.value.code == 2, err
    assert len(errors) == 1 and errors[0].startswith(fill(expected)), err
    assert "Traceback" not in err
    nothing_created(tmp_path)


# An optional dependency (an extra of the harness) that is not installed: (module, overrides,
# the start of the one error line). The module is hidden from this process's imports.
MISSING_EXTRAS = [
    (
        "psycopg",
        ["study.storage=postgresql://harness:pw@127.0.0.1:5432/harness"],
        "error: study.storage: 'postgresql://harness:***@127.0.0.1:5432/harness' needs the "
        "PostgreSQL driver: pip install 'harness[postgres]'",
    ),
    (
        "cmaes",
        ["sampler=cmaes"],
        "error: sampler: CmaEsSampler needs the cmaes package: pip install 'harness[samplers]'",
    ),
]


@pytest.mark.parametrize(
    ("module", "overrides", "expected"), MISSING_EXTRAS, ids=[c[0] for c in MISSING_EXTRAS]
)
def test_a_missing_extra_is_one_line_naming_it(
    bare_overrides, tmp_path, monkeypatch, capsys, module, overrides, expected
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    test_bad_input_is_one_line_exit_2_and_nothing_created(
        bare_overrides, tmp_path, monkeypatch, capsys, overrides, expected
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("study.n_trail=5", "error: study.n_trail: no such setting"),
    ],
)
def test_bad_input_in_a_real_process(bare_overrides, tmp_path, override, expected):
    key = override.split("=", 1)[0]
    overrides = [o for o in bare_overrides if not o.startswith(key + "=")] + [override]
    result = subprocess.run(
        [sys.executable, "-m", "harness.sweep", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(expected), result.stderr
    nothing_created(tmp_path)
