"""The shipped model as an ensemble of the models a study trained (``final.combine``), on real
stores with the tiny model: chosen on the validation logits each checkpoint keeps, scored on test
only after the choice, and the same model in ``best``, the export, predict and the MLflow model."""

from __future__ import annotations

import csv
import json

import numpy as np
import optuna
import pytest

from harness.export import export_model
from harness.export.mlflow_model import save_mlflow_model
from harness.export.predict import accuracy_on, predict
from harness.records import final as final_record
from harness.records import schema, trials
from harness.study import combine, run_sweep
from harness.train.checkpoints import load_checkpoint, load_logits
from harness.train.ensemble import greedy_selection, is_ensemble, load_classifier
from tests.helpers.configs import write_sentiment_csv
from tests.helpers.servers import mlflow_models_serve, post_json

pytestmark = pytest.mark.integration  # sweeps of the tiny BERT with ensembles and soups

TEXTS = ["what a wonderful happy day", "the worst movie, so boring", "a blue table on tuesday"]


calls: list[str] = []


def spy(name, function):
    def wrapper(*args, **kwargs):
        calls.append(name)
        return function(*args, **kwargs)

    return wrapper


def rows(path):
    with open(path, newline="") as handle:
        return [(r["text"], r["label"]) for r in csv.DictReader(handle)]


def accuracy(model, tokenizer, path):
    data = rows(path)
    ids = {v: int(k) for k, v in model.config.id2label.items()}
    return accuracy_on(model, tokenizer, [t for t, _ in data], [ids[label] for _, label in data])


@pytest.fixture
def combined(sweep_overrides, tmp_path, compose, sentiment_files, monkeypatch):
    """A three-trial study whose final stage ships an ensemble (``calls``: the order in which
    the final stage decided what ships and scored it on test)."""
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    overrides = [
        *[o for o in sweep_overrides if o != "final.seeds=0"],
        "study.n_trials=3",
        # 4 epochs: in 2 the tiny model may not leave chance (loss ln 3), and models that all
        # guess alike make an ensemble of one
        "train.num_train_epochs=4",
        "pruner=none",
        "final.top_k=1",
        "final.seeds=2",
        "final.combine=ensemble",
        "final.ensemble_size=4",
        "checkpoints.keep=3",
        f"data.test_file={test_file}",
        "report.enabled=false",
        # full precision on every host: under a CPU's bf16 the tiny model can stay at chance,
        # and an ensemble of models that all guess alike keeps one member
        "train.mixed_precision=no",
        # and torch's dropout masks: the tiny random model leaves chance in 4 epochs along their
        # path, not along the fast masks' (it stays at 0.38, and the ensemble keeps one member)
        "train.cpu_dropout=torch",
    ]
    calls.clear()
    for name in ("decide", "test_score"):
        monkeypatch.setattr(combine, name, spy(name, getattr(combine, name)))
    from harness.study import final

    monkeypatch.setattr(final, "score_checkpoint", spy("seed test", final.score_checkpoint))
    summary = run_sweep(compose(overrides))
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    return cfg, study, summary, test_file, overrides


def test_the_final_stage_ships_an_ensemble_chosen_on_validation(
    combined, sentiment_files, compose, tmp_path
):
    cfg, study, summary, test_file, overrides = combined
    out = tmp_path / "sweeps" / "study"
    record = study.user_attrs[schema.FINAL_ATTR]
    ensemble = record["ensemble"]
    weights = {m["name"]: m["weight"] for m in ensemble["members"]}
    assert sum(weights.values()) == pytest.approx(1.0)
    # every kept model was a candidate: 2 final runs + 3 search trials
    assert ensemble["candidates"] == 5
    # the recorded logits are what the checkpoints predict on validation (per member)
    validation = sentiment_files["validation"]
    for member in ensemble["members"]:
        folder = out / member["checkpoint"]
        model, tokenizer = load_checkpoint(folder)
        logits = load_logits(folder)
        assert logits.shape == (len(rows(validation)), 3)
        assert accuracy(model, tokenizer, validation) == pytest.approx(member["val"])
    # the selection recomputed from the files the study left is the recorded one
    found = combine.candidates(study, final_record.companion(study), out, out / "final")
    # (labels in the order the harness evaluates the split: sorted by length)
    from harness.data import load_labelled_data, tokenize

    _, tokenizer = load_checkpoint(out / ensemble["members"][0]["checkpoint"])
    truth = list(
        tokenize(load_labelled_data(cfg.data), tokenizer, cfg.data.max_length)["validation"][
            "label"
        ]
    )
    again = greedy_selection(
        {c.name: c.probabilities for c in found},
        truth,
        lambda p: float((p.argmax(-1) == np.asarray(truth)).mean()),
        4,
    )
    assert again.weights == pytest.approx(weights)
    assert again.value == pytest.approx(ensemble["val"])
    assert ensemble["val"] >= max(c.value for c in found)  # never worse than its best member
    # best is the ensemble; loaded, it scores the recorded validation and test accuracy
    assert is_ensemble(out / "best") and (out / "best").resolve() == out / "final" / "ensemble"
    model, tokenizer = load_classifier(out / "best")
    assert accuracy(model, tokenizer, validation) == pytest.approx(ensemble["val"])
    assert accuracy(model, tokenizer, test_file) == pytest.approx(ensemble["test"]["value"])
    # the test split is read once, after the choice (the ensemble, then the chosen seeds)
    assert calls == ["decide", "test_score", "seed test", "seed test"]
    # the members' checkpoints stay; the final runs outside it are removed
    kept_runs = {p.name for p in (out / "final" / "checkpoints").iterdir()}
    member_runs = {
        m["checkpoint"].rsplit("/", 1)[1]
        for m in ensemble["members"]
        if m["checkpoint"].startswith("final/")
    }
    chosen_run = record["checkpoint"].rsplit("/", 1)[1]
    assert kept_runs == member_runs | {chosen_run}
    # the summary and the parent run say what ships
    text = summary.format()
    assert f"Shipped: an ensemble of {len(weights)} models" in text
    from mlflow.tracking import MlflowClient

    parent = (
        MlflowClient(str(cfg.tracking.uri))
        .get_run(study.user_attrs[schema.PARENT_RUN_ATTR])
        .data.metrics
    )
    assert parent["shipped_val_accuracy"] == pytest.approx(ensemble["val"])
    assert parent["shipped_test_accuracy"] == pytest.approx(ensemble["test"]["value"])
    # a rerun of the finished study chooses nothing again and scores nothing again
    calls.clear()
    run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    assert study.user_attrs[schema.FINAL_ATTR]["ensemble"] == ensemble and calls == []
    # extended by one trial: what ships is chosen again, once (a model more to select from)
    extended = compose([*overrides, "study.n_trials=4"])
    run_sweep(extended)
    assert calls.count("decide") == 1
    run_sweep(extended)
    assert calls.count("decide") == 1
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    again = study.user_attrs[schema.FINAL_ATTR]
    complete = optuna.trial.TrialState.COMPLETE
    assert again["pool"] == sorted(
        {f"trial-{t.number}" for t in study.trials if t.state == complete}
        | {
            "final-{}-seed{}".format(*trials.final_key(t))
            for t in final_record.companion(study).trials
            if t.state == complete
        }
    )
    assert len(again["pool"]) > len(record["pool"])
    assert again["ensemble"]["val"] >= max(m["val"] for m in again["ensemble"]["members"])
    if again["ensemble"] != ensemble:  # the extension's ensemble ships: best points at it
        assert (out / "best").resolve() == out / "final" / "ensemble"
    ensemble = again["ensemble"]
    weights = {m["name"]: m["weight"] for m in ensemble["members"]}

    # export -> reload: the same ensemble, the same validation accuracy; predict and the
    # MLflow model answer alike
    exported = export_model(compose([*overrides, f"export.dir={tmp_path}/export"]))
    folder = tmp_path / "export"
    assert exported.members == len(weights) and is_ensemble(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["shipped"] == "ensemble" and metrics["ensemble_val"] == ensemble["val"]
    assert "ensemble of" in (folder / "README.md").read_text()
    model, tokenizer = load_classifier(folder)
    assert accuracy(model, tokenizer, validation) == pytest.approx(ensemble["val"])
    expected = predict(model, tokenizer, TEXTS, top_k=3)
    import mlflow.pyfunc

    served = mlflow.pyfunc.load_model(
        str(save_mlflow_model(folder, tmp_path / "mlflow-model", int(cfg.data.max_length)))
    )
    assert served.predict(TEXTS) == [p.label for p in expected]
    classifier = served._model_impl  # the loader module's TextClassifier
    probabilities, names = classifier.probabilities(TEXTS), classifier.names
    for row, p in zip(probabilities.tolist(), expected, strict=True):
        by_name = {names[i]: v for i, v in enumerate(row)}
        for label, value in p.top:
            assert by_name[label] == pytest.approx(value, abs=1e-5)


@pytest.mark.slow  # a study, an export and a real `mlflow models serve` (~1.5 min)
def test_the_registered_ensemble_serves_what_predict_answers(
    combined, compose, tmp_path, monkeypatch
):
    import mlflow.pyfunc

    cfg, study, _, _, overrides = combined
    exported = export_model(
        compose([*overrides, f"export.dir={tmp_path}/export", "export.register=true"])
    )
    assert exported.members >= 2 and exported.registered
    model, tokenizer = load_classifier(exported.folder)
    expected = predict(model, tokenizer, TEXTS, int(cfg.data.max_length), top_k=3)
    uri = f"models:/{study.study_name}/1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(cfg.tracking.uri))
    classifier = mlflow.pyfunc.load_model(uri)._model_impl
    for row, p in zip(classifier.probabilities(TEXTS).tolist(), expected, strict=True):
        by_name = {classifier.names[i]: v for i, v in enumerate(row)}
        assert all(by_name[label] == pytest.approx(v, abs=1e-5) for label, v in p.top)
    with mlflow_models_serve(uri, str(cfg.tracking.uri), tmp_path) as base:
        answer = post_json(f"{base}/invocations", {"inputs": TEXTS})
    assert answer == {"predictions": [p.label for p in expected]}


@pytest.mark.slow  # a study run twice (~40 s)
def test_a_study_finished_before_ensembles_resumes_unchanged(sweep_overrides, tmp_path, compose):
    """Checkpoints without validation logits (made before this change): the rerun trains
    nothing, keeps the chosen seed as what ships, and says nothing of an ensemble."""
    overrides = [
        *[o for o in sweep_overrides if o != "final.seeds=0"],
        "study.n_trials=2",
        "train.num_train_epochs=1",
        "pruner=none",
        "final.top_k=1",
        "final.seeds=2",
        "final.combine=best",
        "report.enabled=false",
    ]
    run_sweep(compose(overrides))
    out = tmp_path / "sweeps" / "study"
    for logits in out.rglob("val_logits.npy"):
        logits.unlink()
    cfg = compose([*overrides[:-2], "final.combine=auto", "report.enabled=false"])
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    before = (
        len(study.trials),
        len(final_record.companion(study).trials),
        study.user_attrs[schema.FINAL_ATTR],
    )
    summary = run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    after = (
        len(study.trials),
        len(final_record.companion(study).trials),
        study.user_attrs[schema.FINAL_ATTR],
    )
    added = {k: after[2].pop(k) for k in ("ships", "combine")}  # the rerun says what ships
    assert after[2].pop("pool")  # the models it chose from
    before[2].pop("ships", None), before[2].pop("combine", None)
    assert after == before and "ensemble" not in after[2] and "soup" not in after[2]
    assert added == {"ships": "seed", "combine": "auto"}
    assert (out / "best").resolve() == out / after[2]["checkpoint"]
    assert "Shipped: an ensemble" not in summary.format()
    assert trials.count(study)["finished"] == 2


@pytest.mark.slow  # a study with a final stage and an export (~40 s)
def test_a_soup_of_the_chosen_seeds_ships_and_exports(
    sweep_overrides, tmp_path, compose, sentiment_files
):
    test_file = write_sentiment_csv(tmp_path / "test.csv", 45, seed=3)
    overrides = [
        *[o for o in sweep_overrides if o != "final.seeds=0"],
        "study.n_trials=2",
        "train.num_train_epochs=2",
        "pruner=none",
        "final.top_k=1",
        "final.seeds=3",
        "final.combine=soup",
        "final.vary=data_order",
        f"data.test_file={test_file}",
        "report.enabled=false",
    ]
    summary = run_sweep(compose(overrides))
    cfg = compose(overrides)
    study = optuna.load_study(study_name=cfg.study.name, storage=cfg.study.storage)
    record = study.user_attrs[schema.FINAL_ATTR]
    out = tmp_path / "sweeps" / "study"
    seeds = record["configs"][str(record["trial"])]["values"]
    if record["ships"] == "seed":  # no second seed kept validation up: said, nothing written
        assert "soup" not in record and not (out / "final" / "soup").exists()
        pytest.skip("the greedy soup kept one seed on this data")
    soup = record["soup"]
    assert record["ships"] == "soup" and len(soup["members"]) >= 2
    assert soup["members"][0] == f"final-{record['trial']}-seed{record['seed']}"
    assert soup["val"] >= max(seeds.values())  # never worse than its best seed: by construction
    assert (out / "best").resolve() == out / "final" / "soup"
    validation = sentiment_files["validation"]
    model, tokenizer = load_checkpoint(out / "best")
    assert accuracy(model, tokenizer, validation) == pytest.approx(soup["val"])
    assert accuracy(model, tokenizer, test_file) == pytest.approx(soup["test"]["value"])
    assert "Shipped: a soup" in summary.format()
    exported = export_model(compose([*overrides, f"export.dir={tmp_path}/export"]))
    assert exported.soup == soup["members"]
    model, tokenizer = load_checkpoint(tmp_path / "export")
    assert accuracy(model, tokenizer, validation) == pytest.approx(soup["val"])
    assert json.loads((tmp_path / "export" / "metrics.json").read_text())["shipped"] == "soup"
