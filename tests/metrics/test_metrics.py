"""Metrics through the `evaluate` API: bundled modules load offline and agree with sklearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from harness.base.errors import ConfigError
from harness.metrics import BUNDLED, load_metrics

PRED = [0, 1, 2, 2, 1, 0, 0, 2]
REF = [0, 1, 1, 2, 1, 2, 0, 2]


def test_bundled_metrics_load_offline_and_match_sklearn(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite = load_metrics(
        list(BUNDLED),
        {
            "f1": {"average": "macro"},
            "precision": {"average": "macro"},
            "recall": {"average": "macro"},
        },
    )
    out = suite.compute(PRED, REF)
    assert out["accuracy"] == pytest.approx(accuracy_score(REF, PRED))
    assert out["f1"] == pytest.approx(f1_score(REF, PRED, average="macro"))
    assert out["matthews_correlation"] == pytest.approx(matthews_corrcoef(REF, PRED))
    assert set(suite.output_names(3)) == set(BUNDLED)


def test_compute_metrics_takes_logits_from_the_trainer():
    suite = load_metrics(["accuracy"], None)
    logits = np.eye(3)[PRED] * 5.0
    out = suite(EvalPrediction(predictions=logits, label_ids=np.array(REF)))
    assert out == {"accuracy": pytest.approx(accuracy_score(REF, PRED))}


def test_unknown_metric_and_bad_arguments_name_the_field(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        load_metrics(["no_such_metric_xyz"], None, trust_remote_code=True)
    assert err.value.field == "metrics" and "no_such_metric_xyz" in err.value.message
    suite = load_metrics(["f1"], {"f1": {"average": "sideways"}})
    with pytest.raises(ConfigError) as err:
        suite.compute(PRED, REF)
    assert err.value.field == "metric_args.f1"


def test_a_metric_module_outside_the_bundled_ones_runs_only_with_the_opt_in(tmp_path):
    # a local evaluate module whose code leaves a mark when it is imported
    module = tmp_path / "marker"
    module.mkdir()
    mark = tmp_path / "ran"
    source = Path(__file__).resolve().parents[2] / "harness/metrics/accuracy/accuracy.py"
    (module / "marker.py").write_text(
        f"from pathlib import Path\nPath({str(mark)!r}).write_text('ran')\n" + source.read_text()
    )
    with pytest.raises(ConfigError) as err:
        load_metrics([str(module)], None)
    assert err.value.field == "metrics"
    assert "metrics_trust_remote_code=true" in err.value.message and not mark.exists()
    suite = load_metrics([str(module)], None, trust_remote_code=True)
    assert mark.read_text() == "ran" and suite.compute(PRED, REF)["accuracy"] > 0
